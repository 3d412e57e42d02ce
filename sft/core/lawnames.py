"""What names a law in English legal/product prose, shared by inference (grounded reasons) and prep (teacher
answers that must not name a law)."""

from __future__ import annotations

import re

# A capitalised name ending in Act/Code/Regulation/..., a bill number, an article/section pinpoint, a U.S.C. cite,
# or a well-known acronym.
LAW_MENTION = re.compile(
    r"(?:\b(?:[A-Z][\w'’.&-]*\s+(?:of\s+|for\s+|on\s+|the\s+)?){1,7}"
    r"(?:Act|Code|Regulation|Directive|Bill|Amendments|Statute|Ordinance)\b(?:\s*\((?:[^()]{1,40})\))?)"
    r"|(?:\b(?:S\.?\s?B\.?|H\.?\s?B\.?|A\.?\s?B\.?|SB|HB|AB|CS/HB|CS/CS/HB)\s?\d{1,5}\b)"
    r"|(?:\b(?:Art(?:icle)?s?\.?|Sections?|Sec\.|§+)\s?\d+[\w.\-]*(?:\(\w{1,4}\))*)"
    r"|(?:\b\d+\s+U\.\s?S\.\s?C\.(?:\s*§+\s*\d+\w*)?)"
    r"|(?:\b(?:GDPR|DSA|DMA|COPPA|CCPA|CPRA|LGPD|DPDP|KOSA|PIPEDA|PIPL|BIPA|OSA)\b)"
)
