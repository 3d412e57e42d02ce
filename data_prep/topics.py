"""The obligation topics: what mining classifies a duty as, what a registry entry may declare under
``topics:``, and what feature templates exist for. Its own module so the registry can check topic names
without importing the miner."""

from __future__ import annotations

# Topic -> keywords (regex fragments, matched case-insensitively). Order matters: the first topic with the
# most hits wins ties, so specific topics come before broad ones.
TOPICS: dict[str, tuple[str, ...]] = {
    "ai_transparency": (r"interacting with an AI system", r"interact directly with natural persons", r"deep fake",
                        r"artificially generated", r"synthetic audio", r"machine-readable format"),
    "ai_manipulation": (r"subliminal", r"manipulative", r"exploits any of the vulnerabilities",
                        r"materially distorting the behaviour"),
    "gatekeeper_data_combination": (r"combine personal data", r"cross-use personal data",
                                    r"sign in end users", r"personal data of end users using services of third"),
    "gatekeeper_choice": (r"un-?install", r"default settings?", r"as their default", r"choice screen"),
    "csam_reporting": (r"child sexual abuse", r"cybertipline", r"apparent violation", r"child pornography",
                       r"sexual exploitation"),
    "time_of_day_limits": (r"10:30 p\.?m", r"6:30 a\.?m", r"between the hours", r"curfew", r"time of day",
                           r"12 a\.?m\.?", r"6 a\.?m\.?", r"hours of"),
    "addictive_feeds": (r"addictive", r"infinite scroll", r"auto-?play", r"push notification", r"engagement",
                        r"\bfeed"),
    "parental_consent": (r"\bparent(?:al|s)?\b", r"guardian", r"consent of (?:a|the) parent", r"holder of parental"),
    "age_assurance": (r"age verification", r"verify the age", r"age assurance", r"age of", r"years of age",
                      r"under (?:the age of )?1[3-8]", r"\bminors?\b", r"account holder", r"date of birth"),
    "recommender_transparency": (r"recommender system", r"recommendation", r"ranking", r"profiling",
                                 r"main parameters"),
    "ads_to_minors": (r"advertis", r"targeting", r"sponsored", r"commercial communication"),
    "data_minimisation": (r"personal data", r"retention", r"retain", r"delete", r"erasure", r"minimi[sz]",
                          r"storage limitation", r"collect"),
    "notice_and_action": (r"notice", r"illegal content", r"statement of reasons", r"complaint", r"trusted flagger",
                          r"remov(?:e|al)", r"disabl(?:e|ing) access"),
    "transparency_reporting": (r"transparency report", r"publish", r"terms and conditions", r"annual"),
    "risk_assessment": (r"systemic risk", r"risk assessment", r"audit", r"mitigat"),
}
