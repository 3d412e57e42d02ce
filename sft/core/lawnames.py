"""What names a law in English legal/product prose, shared by inference (grounded reasons) and prep (teacher
answers that must not name a law)."""

from __future__ import annotations

import re

# The words that end a law's name.
_LAW_NOUNS = r"(?:Act|Code|Regulation|Directive|Bill|Amendments|Statute|Ordinance)"
# One of them on its own, however the name before it is written ("(Artificial Intelligence-A) Act").
LAW_NOUN = re.compile(rf"\b{_LAW_NOUNS}\b")
# A capitalised name ending in Act/Code/Regulation/..., a bill number, an article/section pinpoint, a U.S.C. cite,
# or a well-known acronym.
LAW_MENTION = re.compile(
    r"(?:\b(?:[A-Z][\w'’.&-]*\s+(?:of\s+|for\s+|on\s+|the\s+)?){1,7}"
    rf"{_LAW_NOUNS}\b(?:\s*\((?:[^()]{{1,40}})\))?)"
    r"|(?:\b(?:S\.?\s?B\.?|H\.?\s?B\.?|A\.?\s?B\.?|SB|HB|AB|CS/HB|CS/CS/HB)\s?\d{1,5}\b)"
    r"|(?:\b(?:Art(?:icle)?s?\.?|Sections?|Sec\.|§+)\s?\d+[\w.\-]*(?:\(\w{1,4}\))*)"
    r"|(?:\b\d+\s+U\.\s?S\.\s?C\.(?:\s*§+\s*\d+\w*)?)"
    r"|(?:\b(?:GDPR|DSA|DMA|COPPA|CCPA|CPRA|LGPD|DPDP|KOSA|PIPEDA|PIPL|BIPA|OSA)\b)"
)
