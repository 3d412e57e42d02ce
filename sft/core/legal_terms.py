"""Product words -> the words statutes use for the same thing, added to the retrieval query.

Why (#13, 2026-12-04): BM25 matches words, and product specs and statutes name the same things differently. "Stop
serving profiling-based ads to minors in EU markets" shares "minors" and "profiling" with DSA Art. 28(2) ("shall
not present advertisements on their interface based on profiling ... minor"), but not "ads": the query's best EU
hit was the DMA's Art. 5 (personal data "for online advertising"), and the answer could not cite the DSA. With
"advertisements" in the query, DSA Art. 28(2) comes first. Glossary notes already expand internal codenames
(ASL, PF, ...); this does the same for everyday product vocabulary, once, for training data and every inference
path alike (:func:`sft.core.prompt.retrieval_query`), so prompts stay identical between the two.

Each entry was written from the bundled laws' own wording (the word a statute uses, where product teams use
another), not fitted to an evaluation set; ``geoprep eval-retrieval`` measures the effect (docs/retrieval.md).
Only words the statutes do not already share with the spec are added, and each entry at most once.
"""

from __future__ import annotations

import re

# (product words as a regex, statute words). Case-insensitive, word-bounded.
_TERMS: list[tuple[str, str]] = [
    (r"ads?|ad[- ]targeting|sponsored|promoted posts?", "advertisements advertising"),
    (r"teens?|teenagers?|kids|under[- ]1[3-8]s?|young users|youth", "minors children"),
    (r"curfew|night[- ]?time|overnight|quiet hours|bedtime", "hours of access night"),
    (r"log[- ]?ins?|sign[- ]?ins?|logging in", "access account"),
    (r"sign[- ]?ups?|onboarding|account creation|registration|new accounts?", "open an account holder"),
    (r"delet(?:e|es|ed|ion)|purg(?:e|es|ed|ing)|wipe", "erasure erase"),
    (r"retention|retain(?:ed)?|TTL|keep(?:ing)? (?:logs|data)", "storage limitation kept no longer than necessary"),
    (r"DMs?|direct messages?|chats?", "messages communications"),
    (r"feeds?|for you|recommendations?|algorithmic ranking", "recommender system addictive feed"),
    (r"report(?:ing)? (?:button|form|flow)|flag(?:ging)? content|user reports?", "notice and action mechanism"),
    (r"transparency reports?|MAU", "transparency reporting average monthly active recipients"),
    (r"dark patterns?|confirmshaming|nagging|manipulative (?:design|UI|interface)",
     "deceive manipulate online interface design"),
    (r"AI[- ]generated|deep ?fakes?|synthetic media|face[- ]swaps?|generative",
     "artificially generated manipulated content deep fake"),
    (r"chat ?bots?|AI (?:assistant|companion)", "interact with an AI system natural persons"),
    (r"CSAM|child (?:sexual )?abuse (?:material|imagery)|hash match(?:es|ing)?",
     "child sexual abuse material apparent violation CyberTipline"),
    (r"NCMEC", "CyberTipline National Center for Missing and Exploited Children"),
    (r"age (?:checks?|gates?|estimation|assurance)|verify age|age[- ]verif\w*", "age verification"),
    (r"data (?:export|download)|download (?:your|my) data|export (?:your|my) data", "data portability copy"),
    (r"auto[- ]?bans?|automated (?:bans?|enforcement|suspensions?)", "decision based solely on automated processing"),
    (r"DPIA", "data protection impact assessment"),
    (r"risk assessments?", "systemic risks assessment"),
    (r"(?:data )?breach(?:es)?|data leaks?", "personal data breach notification supervisory authority"),
    (r"parental controls?|parent dashboard|family pairing", "parent supervisory tools"),
    (r"push|notifications?|alerts?", "notifications"),
]
_COMPILED = [(re.compile(rf"\b(?:{words})\b", re.I), legal) for words, legal in _TERMS]


def legal_terms(text: str) -> str:
    """The statute words for the product words ``text`` uses ('' when none), each entry once, in table order;
    words already in ``text`` are not repeated."""
    have = set(re.findall(r"\w+", text.lower()))
    out: list[str] = []
    for rx, legal in _COMPILED:
        if rx.search(text):
            new = [w for w in legal.split() if w.lower() not in have and w not in out]
            out += new
    return " ".join(out)
