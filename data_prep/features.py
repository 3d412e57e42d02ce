"""Product feature specs from obligations (positives) plus negatives, and import of the user's own features.

No LLM is available at prep time, so features come from templates: per topic several specs written the way
product teams write them (codenames and abbreviations from the glossary: PF, ASL, GH, Jellybean, Snowcap,
ShadowMode, T5, ...). Choices are seeded, so the same obligations and seed give the same features.

Kinds of generated feature (``FeatureSpec.kind``):

* ``positive``: implements an obligation for its jurisdiction -> Needs Geo-Compliance, grounded in it;
* ``uncovered``: a positive whose retrieved context holds no law that covers it -> Needs Geo-Compliance with no
  citation (set by ``geoprep build``);
* ``ambiguous``: a geo-targeted spec that does not say why -> Not Enough Information;
* ``business``: geofenced for business reasons (market test, staged rollout, capacity) -> No Geo-Compliance
  Needed, whatever law the retriever brings back.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_prep.mine import Obligation
from sft.core.contract import ContractError, Feature, Label, iter_jsonl, read_records
from sft.core.files import write_jsonl_atomic
from sft.core.prompt import applies
from sft.core.reasons import region_name
from sft.core.tables import check_unique_ids, csv_dicts, open_text

POSITIVE, UNCOVERED, AMBIGUOUS, BUSINESS, IMPORTED = "positive", "uncovered", "ambiguous", "business", "imported"


# topic -> [(name, description)]; {where} is the region name. Several per topic for varied phrasing.
TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "time_of_day_limits": [
        ("Curfew-based login restriction for under-18s in {where}",
         "Use ASL to detect minor accounts and GH to enforce a 10:30pm-6:30am lockout for users in {where}; "
         "Jellybean lets a parent lift the curfew."),
        ("Night-mode Softblock for teen accounts ({where})",
         "Between late evening and early morning, Softblock posting and PF access for accounts flagged by ASL "
         "as minors located in {where}. Routed via GH."),
        ("Quiet hours enforcement for minors in {where}",
         "Spanner rule blocks app sessions overnight for minor users in {where}; EchoTrace logs each lockout."),
    ],
    "addictive_feeds": [
        ("Chronological default feed for minors in {where}",
         "Switch PF off by default for ASL-flagged minors in {where} and serve a chronological feed unless "
         "Jellybean records verified parental consent."),
        ("Disable autoplay and infinite scroll for teens in {where}",
         "GH routes users under 18 in {where} to a feed build without autoplay or infinite scroll; "
         "ShadowMode first to measure BB impact."),
        ("Overnight push notification suppression ({where} minors)",
         "Suppress engagement push notifications overnight and during school hours for minor accounts in "
         "{where}; parents can override via Jellybean."),
    ],
    "parental_consent": [
        ("Jellybean consent gate for new teen accounts in {where}",
         "Before a minor in {where} can create an account, Jellybean collects verifiable parental consent; "
         "ASL decides who needs the gate."),
        ("Parent dashboard with account controls for {where}",
         "Jellybean dashboard lets parents of minors in {where} view activity, set time limits and approve "
         "account changes. Rollout gated by GH."),
        ("Guardian approval before DMs for minors in {where}",
         "Direct messaging stays off for ASL-flagged minors in {where} until a guardian approves it in "
         "Jellybean."),
    ],
    "age_assurance": [
        ("ASL age assurance at signup in {where}",
         "New signups in {where} go through ASL age estimation plus document fallback; accounts under the "
         "threshold get Snowcap defaults. GH enforces by region."),
        ("Age verification re-check for existing accounts ({where})",
         "Run ASL age verification on existing accounts in {where} before keeping full access; unverified "
         "accounts are Softblocked."),
        ("Minor account detection and defaults in {where}",
         "Use ASL signals to find likely minors in {where} and apply Snowcap safety defaults; verified "
         "ages stored as T5 data."),
    ],
    "recommender_transparency": [
        ("'Why am I seeing this' panel for PF in {where}",
         "Explain the main parameters of PF ranking to users in {where} and offer a non-profiled feed option; "
         "GH gates the panel by region."),
        ("Non-personalised feed toggle for {where} users",
         "Add a settings toggle that switches PF to a feed not based on profiling for users in {where}; "
         "default state tracked by Spanner."),
        ("Recommender parameter disclosure in T&Cs ({where})",
         "Publish the main ranking signals of PF in the terms for {where} and let users change their "
         "recommendation options."),
    ],
    "ads_to_minors": [
        ("Block profiling-based ads for minors in {where}",
         "Ads stack stops serving ads based on profiling to ASL-flagged minors in {where}; contextual ads "
         "only. GH enforces per region."),
        ("Ad transparency labels for {where}",
         "Show who paid for an ad and why the user sees it, for every ad served in {where}; Spanner rule keeps "
         "the ad repository in sync."),
        ("Sensitive-category ad targeting filter ({where})",
         "Strip T5 sensitive categories from ad targeting for users in {where}; EchoTrace verifies routing."),
    ],
    "data_minimisation": [
        ("DRT-based log purge for {where} users",
         "Apply a DRT to personal data logs of users in {where}: auto-delete after the threshold; T5 data "
         "never leaves the region."),
        ("Data minimisation for minor accounts in {where}",
         "Stop collecting precise location and contacts for ASL-flagged minors in {where}; LCP review via "
         "Redline."),
        ("Right-to-erasure pipeline for {where}",
         "Self-serve account deletion for users in {where} that erases personal data from all stores within "
         "the legal deadline; IMT alerts on misses."),
    ],
    "csam_reporting": [
        ("Automated CSAM reporting pipeline for {where}",
         "When CDS detects apparent child sexual abuse material from users in {where}, file a report with "
         "the designated authority and preserve content under NSP."),
        ("Snowcap evidence preservation for CSAM reports ({where})",
         "Preserve reported CSAM and account data for the statutory period for {where} reports; access "
         "restricted, EchoTrace audit."),
        ("Hash-matching upload scan with mandatory reporting ({where})",
         "Scan uploads in {where} against known CSAM hashes via CDS; matches are reported and Redlined."),
    ],
    "notice_and_action": [
        ("Illegal content notice form for {where}",
         "In-app form lets anyone in {where} flag illegal content with the exact URL and a reason; CDS "
         "queues it and sends a confirmation."),
        ("Statement of reasons on takedown ({where})",
         "Every removal or Softblock of content from users in {where} sends the uploader a statement of "
         "reasons with redress options."),
        ("Trusted flagger priority queue for {where}",
         "Notices from trusted flaggers in {where} go to a priority moderation queue with tracked SLAs."),
    ],
    "transparency_reporting": [
        ("Moderation transparency report for {where}",
         "Publish periodic moderation metrics (notices, removals, appeals) for {where}; data pulled from CDS "
         "and EchoTrace."),
        ("Plain-language T&Cs for {where}",
         "Rewrite terms and conditions for {where} in plain language, including content restrictions and "
         "moderation tools."),
    ],
    "ai_transparency": [
        ("'You are chatting with an AI' banner for {where}",
         "The support chatbot and AI companion show a clear notice that users in {where} are talking to an AI "
         "system; GH gates the banner by region, EchoTrace logs each display."),
        ("Synthetic media watermark for AI effects ({where})",
         "AI-generated images and videos from AR effects carry a machine-readable watermark and an "
         "'AI-generated' label for users in {where}; CDS checks the mark on upload."),
        ("Deepfake disclosure label in {where}",
         "Uploads in {where} that CDS flags as AI-manipulated faces or voices get a visible 'altered or "
         "synthetic' label; ShadowMode first to tune the classifier."),
    ],
    "ai_manipulation": [
        ("Block age-exploiting AI nudges for minors in {where}",
         "The AI engagement optimiser in PF may not use signals that exploit the age of ASL-flagged minors in "
         "{where} (no urgency prompts or dark-pattern nudges); LCP review via Redline."),
        ("Manipulative-technique guardrail for the AI assistant ({where})",
         "Guardrail model blocks subliminal or deceptive persuasion by the AI assistant for users in {where}; "
         "EchoTrace audits blocked replies."),
    ],
    "gatekeeper_data_combination": [
        ("Consent gate before combining Stories and Shopping data in {where}",
         "Personal data from Stories and the Shopping tab is only combined for ads profiles of users in {where} "
         "after an explicit consent choice; Spanner rule enforces the split, T5 data never crosses."),
        ("No auto sign-in across our apps without consent ({where})",
         "Stop signing users in {where} into our other apps automatically to merge profiles; a consent screen "
         "with an equal 'no' option comes first. Rollout via GH."),
        ("Third-party site data out of the ads stack for {where}",
         "The ads stack stops using personal data from third-party sites using our SDK for ads to users in "
         "{where} unless they consented; EchoTrace verifies routing."),
    ],
    "gatekeeper_choice": [
        ("Uninstallable preinstalled apps on our OS ({where})",
         "Let users in {where} uninstall every preinstalled app except core system ones; GH enables the "
         "uninstall option by region."),
        ("Default browser and search choice screen in {where}",
         "On first use, users in {where} pick their default browser and search engine from a choice screen; "
         "they can change defaults later in settings. Spanner tracks the choice."),
        ("Third-party app store as default ({where})",
         "Allow users in {where} to set a downloaded third-party app store as default and switch back easily; "
         "ShadowMode first to measure install flows."),
    ],
    "risk_assessment": [
        ("Systemic risk assessment before PF launch in {where}",
         "Before launching the new PF ranking in {where}, run a risk assessment on minors and civic "
         "discourse; mitigations tracked in Spanner."),
        ("Independent audit support for {where}",
         "Build evidence exports so the annual independent audit for {where} can check CDS and PF controls."),
    ],
}

# The generic family: duties outside TOPICS (laws that declare no topics); {duty} is "actor verb object".
TEMPLATES["generic"] = [
    ("Compliance control for {where}: {duty}",
     "Ship the product change so that, for users in {where}, the {duty}; gated by region config."),
    ("{where} rollout: meet the rule that the {duty}",
     "Region-specific logic for {where}: the platform flow is changed so the {duty}, tracked per account."),
    ("Regional requirement backlog item ({where})",
     "Engineering work for {where} only: make sure the {duty}. Legal asked for this before launch there."),
]

TOPIC_PHRASES = {
    "time_of_day_limits": "time-of-day limits for minors",
    "addictive_feeds": "addictive feeds and notifications for minors",
    "parental_consent": "parental consent and controls",
    "age_assurance": "age assurance and minor accounts",
    "recommender_transparency": "recommender system transparency",
    "ads_to_minors": "advertising rules",
    "data_minimisation": "personal data minimisation and retention",
    "csam_reporting": "reporting of child sexual abuse material",
    "notice_and_action": "notice-and-action on illegal content",
    "transparency_reporting": "transparency and terms of service",
    "risk_assessment": "systemic risk assessment and audit",
    "ai_transparency": "transparency about AI interactions and AI-generated content",
    "ai_manipulation": "the ban on manipulative AI that exploits age-related vulnerabilities",
    "gatekeeper_data_combination": "consent before a gatekeeper combines personal data across services",
    "gatekeeper_choice": "uninstalling apps and changing defaults on a gatekeeper's platform",
}

AMBIGUOUS_TEMPLATES = [
    ("Roll out new video filter in select regions", "Launch the new AR video filter in a few regions first."),
    ("Region-specific PF tuning", "Adjust PF weights differently for some regions. Details TBD."),
    ("Geo-gated Glow badge", "Show a Glow badge on profiles in certain countries."),
    ("Limit feature X for some users in {where}", "Restrict feature X for a subset of users in {where}."),
    ("Softblock rollout (phase 2)", "Extend Softblock to additional markets; scope per LCP review."),
    ("Update GH routing table for {where}", "GH routing changes for {where}; see ticket for context."),
    ("New ASL thresholds", "Tune ASL thresholds; markets to be decided."),
    ("ShadowMode analytics for {where}", "Run a new flow in ShadowMode for {where} to collect analytics."),
    ("Creator payouts changes in {where}", "Change how creators are paid in {where} starting next quarter."),
    ("Regional content settings revamp", "Revamp content settings per region; requirements pending."),
    ("Spanner rule update for {where}", "Add new Spanner rules for {where}. Rule list to follow."),
    ("EchoTrace for new flows", "Enable EchoTrace on some new flows in a few markets; owner TBD."),
    ("Adjust DRT for some logs", "Change the DRT for a subset of logs in certain regions; numbers not final."),
    ("Jellybean v2 in {where}", "Ship Jellybean v2 to {where}; scope and behaviour changes still being discussed."),
    ("Glow alerts expansion", "Expand Glow alerts to more countries once the pilot data is in."),
    ("IMT tuning per market", "Retune IMT triggers per market; thresholds pending analysis."),
    ("Profile visibility tweak in {where}", "Tweak default profile visibility for some accounts in {where}."),
    ("CDS coverage for new regions", "Extend CDS coverage to new regions; which checks apply is open."),
    ("NSP handling in {where}", "Handle NSP content differently in {where}; see design doc (draft)."),
    ("Messaging limits in some regions", "Apply new messaging limits in some regions for certain users."),
    ("Snowcap alignment ({where})", "Align the {where} experience with Snowcap; specifics to be scoped."),
    ("Data export changes for {where}", "Change what the data export includes for {where}; details in review."),
]

BUSINESS_TEMPLATES = [
    ("Market test of Stories layout in {where}",
     "A/B test the new Stories layout with 5% of users in {where} to measure engagement before a global "
     "launch; no policy change."),
    ("Staged rollout of video transcoder by region",
     "Roll out the new transcoder region by region ({where} first) to watch server capacity; FR tracked "
     "per region."),
    ("Localized stickers pack for {where}",
     "Ship a sticker pack with local holidays for users in {where}; purely cosmetic, content from our "
     "design team."),
    ("Payments UI refresh pilot in {where}",
     "Pilot a refreshed checkout UI in {where} because of partner availability; same data flows as today."),
    ("Dark theme beta for {where}",
     "Offer the dark theme beta to users in {where} first for translation QA; ShadowMode metrics only."),
    ("Creator fund launch in {where}",
     "Launch the creator fund in {where} first where the business team has partner agencies."),
    ("CDN edge expansion for {where}",
     "Serve media from new edge locations for users in {where} to cut latency; no user-facing change."),
    ("Pricing experiment for Premium in {where}",
     "Test a lower Premium price in {where} for four weeks to study conversion."),
    ("Regional leaderboard for creators in {where}",
     "Show a weekly top-creators leaderboard scoped to {where} so local creators get visibility; FR at 10%."),
    ("Local language captions default in {where}",
     "Turn on auto-captions in the local language by default for {where} after the translation model passed QA."),
    ("Holiday campaign banner in {where}",
     "Marketing wants a seasonal banner for users in {where} during the holiday campaign; GH only picks the "
     "region."),
    ("Music licensing catalog switch for {where}",
     "Serve the {where} music catalog from the new label deal; availability differs by region for contract "
     "reasons."),
    ("Server-side video compression trial ({where})",
     "Trial a new compression profile for uploads from {where} to cut storage cost; BB metrics monitored."),
    ("Shopping tab soft launch in {where}",
     "Soft launch the Shopping tab in {where} where merchant onboarding is complete; other regions follow."),
    ("Weather stickers by region ({where})",
     "Offer weather-based stickers to users in {where} using the city they pick; decoration only."),
    ("Load test of upload service in {where}",
     "Route 2% of uploads from {where} to the new upload service to load-test it; BB compared per region."),
    ("Regional trending sounds shelf for {where}",
     "Show a trending-sounds shelf built from {where} plays so the music feels local; no new data collected."),
    ("Time-zone aware push scheduling ({where})",
     "Send reminder pushes at local daytime hours in {where} to improve open rates; same opt-in as today."),
    ("Ad inventory test in {where}",
     "Sell a new ad slot format in {where} first because the sales team is there; targeting unchanged."),
    ("Local currency display for tips in {where}",
     "Show creator tip amounts in the local currency for users in {where}; conversion only, same payment flow."),
    ("Translation memory rollout for {where}",
     "Use the new translation memory for UI strings shown in {where}; FR starts at 25%."),
    ("Data centre migration for {where} traffic",
     "Move serving of {where} traffic to a new data centre in the same region to balance load; storage unchanged."),
    ("Regional app icon for the {where} festival",
     "Swap the app icon for users in {where} during the national festival week; purely cosmetic."),
    ("Customer support hours extension ({where})",
     "Extend in-app chat support hours for {where} where the new support team sits."),
]


UNIVERSAL_TEMPLATES = [
    ("Dark mode for the video editor", "Add a dark theme to the in-app video editor; follows the system setting."),
    ("Faster thumbnail generation", "Move thumbnail rendering to the new GPU pool to cut upload-to-post time by 30%."),
    ("Duet layout refresh", "Redesign the side-by-side duet layout with draggable split; design review done."),
    ("Comment pinning for creators", "Let creators pin up to three comments on their videos. Ships to everyone."),
    ("Search typo tolerance", "Add fuzzy matching to search so misspelled creator names still match; BB watched."),
    ("Offline drafts sync", "Drafts saved offline sync when the device reconnects; conflict resolution keeps the newest."),
    ("New sticker picker", "Rebuild the sticker picker with recent and favourite tabs; same sticker catalogue."),
    ("Playback speed control", "Add 0.5x-2x playback speed to the player menu for all videos."),
    ("Creator analytics: audience retention chart", "Show a per-second retention curve in creator analytics."),
    ("Live stream co-host invites", "Hosts can invite a co-host from their followers list; global launch."),
    ("Video upload resumable chunks", "Uploads resume from the last 5 MB chunk after a network drop."),
    ("Notification settings redesign", "Group notification toggles by type with a single master switch."),
    ("Shop: saved items list", "Users can save products to a list and get a price-drop alert they opt into."),
    ("Profile QR code", "Generate a QR code that opens the user's profile; shareable from settings."),
    ("Caption editor undo", "Undo/redo in the caption editor, up to 50 steps."),
    ("Crash reporting for the Android app", "Switch the Android crash reporter to the new pipeline; no user-facing change."),
    ("DM read receipts toggle", "A setting to turn read receipts off in direct messages, for everyone."),
    ("Trending hashtags refresh rate", "Recompute trending hashtags every 10 minutes instead of hourly."),
]


# ----------------------------------------------------------------------------- reason-driven variants
# The label follows the reason a spec states, not its vocabulary: every positive action is also written with a
# business reason (-> No Geo-Compliance Needed: a twin sharing the positive's words), with no reason at all
# (-> Not Enough Information), and shipped everywhere (-> No Geo-Compliance Needed). Region names, legal-driver
# phrasing (explicit law name or implicit), jargon notes and length vary independently, seeded.

BUSINESS_TWIN, NO_REASON_TWIN, UNIVERSAL_TWIN = "business_twin", "no_reason_twin", "universal_twin"
BARE_TWIN, UNIVERSAL, ELSEWHERE_TWIN = "bare_twin", "universal", "elsewhere_twin"
# The kinds a law drives (Needs, citing it when the context supports it): a stated legal driver, and the law's own
# mechanism in its place with no reason (reason_variants).
LAW_DRIVEN = (POSITIVE, NO_REASON_TWIN)

# Places no bundled law covers, with their codes in sft.core.prompt's place list: the action a law requires in its
# own place, geofenced to one of these with no reason, is Not Enough Information (the law in the prompt does not
# apply there; whether another one does cannot be told).
ELSEWHERE = ["GB", "BR", "CAN", "JP", "IN", "AU", "KR", "US-TX", "US-NY"]


def elsewhere(jurisdiction: str) -> list[str]:
    """The places of ELSEWHERE a law of ``jurisdiction`` neither covers nor lies within (US law covers Texas)."""
    return [c for c in ELSEWHERE if not applies(jurisdiction, c) and not applies(c, jurisdiction)]

REGION_VARIANTS: dict[str, list[str]] = {
    # Noun phrases that read after "in" / "for": templates say "... for minors in {where}".
    "EU": ["the EU", "the EEA", "EU member states", "Europe", "EU countries", "the European Union"],
    "US": ["the US", "the United States", "the USA", "all US states"],
    "US-CA": ["California", "CA", "the state of California"],
    "US-FL": ["Florida", "FL", "the state of Florida"],
    "US-UT": ["Utah", "UT", "the state of Utah"],
}

# Reasons are composed, not picked from a handful of fixed sentences: with six legal-driver sentences to learn,
# the demo model answered "Needs" for 14 of the 51 legally driven hand-written specs ("State law in Utah requires
# us to...", "Per DSA Art 28, ...", "Brussels' rules, not optional"; realistic set, 2026-12-03, 300 steps). Who
# states the reason, what they say and where it sits vary independently: ~55 explicit and ~170 implicit legal
# wordings, 70 business ones. {law}: a name of the law (title, short name, citation);
# {where}: the region as the spec names it; {phrase}: the obligation's duty.
LEGAL_EXPLICIT = [
    "Required to comply with {law}.",
    "This is a {law} requirement.",
    "Legal confirmed {law} applies here.",
    "Driver: {law} compliance.",
    "Needed so we meet our obligations under {law}.",
    "Per {law}, this must be in place for users in {where}.",
    "{law} requires this for users in {where}.",
    "Under {law} we have to do this for users in {where}.",
    "{law} obliges us to ship this in {where}.",
    "Audit finding: we do not meet {law} in {where} yet; this closes the gap.",
    "{law} says this is not optional.",
    "Context: {law} applies to us in {where}.",
    "Compliance item for {law}.",
    "Privacy legal asked for this under {law}.",
]
LEGAL_IMPLICIT_WHO = [  # (who, plural?)
    ("State law in {where}", False), ("The law in {where}", False), ("A new statute in {where}", False),
    ("Regulators in {where}", True), ("The regulator in {where}", False), ("The online safety law in {where}", False),
    ("Legal", False), ("Counsel", False), ("Our DPO", False), ("Privacy legal", False), ("Outside counsel", False),
    ("The legal team", False),
]
LEGAL_IMPLICIT_WHAT = [  # (singular, plural)
    ("requires this", "require this"), ("makes this mandatory", "make this mandatory"),
    ("obliges us to do this", "oblige us to do this"), ("says this is not optional", "say this is not optional"),
    ("treats this as a legal duty", "treat this as a legal duty"),
    ("expects this of platforms like ours", "expect this of platforms like ours"),
    ("says we must ship this", "say we must ship this"),
]
LEGAL_IMPLICIT = [
    "Needed to meet the legal requirements in {where} on {phrase}.",
    "A statutory duty in {where}: {phrase}.",
    "This is a legal requirement for users in {where}, not a product choice.",
    "Non-negotiable: the law in {where} requires it.",
    "Required by the law that now applies to platforms in {where}.",
    "Counsel flagged this as a statutory duty in {where}.",
]
TWIN_BUSINESS_WHY = [
    "as a market test", "because the growth team has capacity there this quarter",
    "for a staged rollout while we watch server load", "because our partner deal only covers that market",
    "to measure retention before deciding on other markets", "as an A/B test with 10% of users",
    "to line up with the local marketing campaign", "because translations are only ready for that market",
    "because the payment provider is only live there", "because that is where the beta cohort is",
    "to test a price point before a wider launch", "because support has coverage in that time zone",
    "since the data center there has spare capacity", "because that market asked for it in user research",
]
TWIN_BUSINESS_FRAME = [
    "{where} first {why}.", "Scoped to {where} only {why}.", "Launching in {where} {why}; not a compliance item.",
    "Limited to {where} {why}; no policy driver.", "{where} only for now, {why}: a business call, not a requirement.",
]
TWIN_NO_REASON = [
    "Only for {where}.",
    "Rollout limited to {where}.",
    "Geo-gate to {where} via GH.",
    "{where} only for now.",
    "Applies to users in {where}.",
    "Enable for {where} accounts.",
    "Launch market: {where}.",
    "Flag on for {where}, off elsewhere.",
    "Target users: {where}.",
    "GH rule: {where} users only.",
]


def legal_driver(rng: random.Random, ob: Obligation, where: str) -> str:
    """A sentence saying the feature is legally required: the law named (half the time) or not."""
    if rng.random() < 0.5:
        names = [ob.title, _law_short(ob.title)] + ([ob.citation, f"{_law_short(ob.title)} ({ob.citation})"]
                                                    if ob.citation else [])
        return rng.choice(LEGAL_EXPLICIT).format(law=rng.choice(names), where=where)
    if rng.random() < 0.3:
        return rng.choice(LEGAL_IMPLICIT).format(where=where, phrase=_phrase(ob))
    who, plural = rng.choice(LEGAL_IMPLICIT_WHO)
    scope = "" if "{where}" in who else rng.choice([f" for users in {where}", f" in {where}", ""])
    return f"{who.format(where=where)} {rng.choice(LEGAL_IMPLICIT_WHAT)[plural]}{scope}."


def business_reason(rng: random.Random, where: str) -> str:
    return rng.choice(TWIN_BUSINESS_FRAME).format(where=where, why=rng.choice(TWIN_BUSINESS_WHY))


TWIN_UNIVERSAL = [
    "Ships to all users worldwide as a product improvement; no regional logic.",
    "Global launch, same behaviour in every market; decided by the product team.",
    "Rolling out everywhere at once to improve the experience; no region-specific rules.",
]
DETAILS = [
    "Owner: T&S eng. Target: end of Q3.",
    "ShadowMode for two weeks before enforcement.",
    "Success metric: fewer than 0.5% false positives in review.",
    "EchoTrace logs each decision for audit.",
    "Behind a feature flag; FR starts at 5%.",
    "Support macros and help-center copy to be updated.",
    "Dashboards in the weekly T&S review.",
    "Design review done; eng estimate two sprints.",
]


_R = "\x00"  # where the template's region went


def strip_region(template: str) -> str:
    """A template with its region phrase removed ('... for minors in {where}' -> '... for minors')."""
    t = template.format(where=_R)
    t = re.sub(r"\s*\(\x00( minors)?\)", "", t)
    t = re.sub(r"\s+located\s+in\s+\x00", "", t)
    t = re.sub(r"\s*\b(?:for|in|from|to|of)\s+(?:(?:users|minors|accounts|residents)\s+)?(?:(?:located|based)\s+)?"
               r"(?:in\s+)?\x00(?:\s+(?:users|minors|reports))?", "", t)
    t = re.sub(r"\x00\s+(users|minors)", r"\1", t).replace(_R, "")
    return re.sub(r"\s+([,.;])", r"\1", re.sub(r"\s{2,}", " ", t)).strip()


def _law_short(title: str) -> str:
    """A name a PM would write: 'Florida HB 3', 'DSA', 'GDPR', '18 U.S.C. § 2258A', 'SB 976'."""
    short = {"EU Digital Services Act": "the DSA", "EU General Data Protection Regulation": "GDPR",
             "EU Digital Markets Act": "the DMA", "EU Artificial Intelligence Act": "the EU AI Act"}
    if title in short:
        return short[title]
    return title.split(" (")[0]


def _with_region(text: str, jurisdiction: str, variant: str) -> str:
    """Swap the template's region name for a variant ('Utah' -> 'UT')."""
    return text.replace(region_name(jurisdiction), variant)


def _compose(rng: random.Random, description: str, reason: str | None) -> str:
    parts = [description]
    if reason:
        parts.insert(rng.randrange(2), reason[:1].upper() + reason[1:])  # the reason leads or follows
    parts += rng.sample(DETAILS, rng.choice([0, 0, 1, 1, 2]))
    return " ".join(parts)


def _templates_for(ob: Obligation) -> list[tuple[str, str]]:
    """The obligation's topic templates; the generic family's ``{duty}`` filled in (only ``{where}`` is left)."""
    templates = TEMPLATES.get(ob.topic) or TEMPLATES["notice_and_action"]
    duty = (ob.duty or "").replace("{", "{{").replace("}", "}}")
    return [(name.replace("{duty}", duty), desc.replace("{duty}", duty)) for name, desc in templates]


def _phrase(ob: Obligation) -> str:
    return f"the duty that the {ob.duty}" if ob.duty else TOPIC_PHRASES.get(ob.topic, ob.topic)


def reason_variants(ob: Obligation, seed: int) -> list[FeatureSpec]:
    """One positive action of ``ob`` written with a legal reason, a business reason, no reason (in the law's place,
    and in a place the law does not reach), and globally.

    The no-reason twin is labelled by the realistic set's rule "states or clearly implies a legal obligation":
    the action is the law's own mechanism (a CyberTipline report, a chronological feed for California minors
    without parental consent) in the place the law governs, so it needs the law even unstated. Labelled NEI
    until 2026-12-04, it taught that such specs are undecidable: the demo answered "Not Enough Information" for
    5 of the 18 example specs a compliance reader flags at once (F-103 Florida under-14/under-16 sign-ups, F-104
    NCMEC reports, F-107, F-108, F-117). What stays NEI: the same action where no bundled law applies (the
    elsewhere twin), without any place (the bare twin), and vague geofences (``negative_features``)."""
    rng = _rng(seed, "variants", ob.id)
    name, desc = rng.choice(_templates_for(ob))
    where = region_name(ob.jurisdiction)
    variant = rng.choice(REGION_VARIANTS.get(ob.jurisdiction, [where]))
    name_r = _with_region(name.format(where=where), ob.jurisdiction, variant)
    desc_r = _with_region(desc.format(where=where), ob.jurisdiction, variant)
    legal = legal_driver(rng, ob, variant)
    bare_name, bare_desc = strip_region(name), strip_region(desc)
    other_code = rng.choice(elsewhere(ob.jurisdiction))
    other = region_name(other_code)
    out = [
        (POSITIVE, name_r, _compose(rng, desc_r, legal), Label.NEEDS, ob.title, ob.jurisdiction),
        (BUSINESS_TWIN, name_r, _compose(rng, desc_r, business_reason(rng, variant)),
         Label.NOT_NEEDED, None, ob.jurisdiction),
        (NO_REASON_TWIN, name_r, _compose(rng, desc_r, rng.choice(TWIN_NO_REASON).format(where=variant)),
         Label.NEEDS, ob.title, ob.jurisdiction),
        (ELSEWHERE_TWIN, name.format(where=other),
         _compose(rng, desc.format(where=other), rng.choice(TWIN_NO_REASON).format(where=other)),
         Label.NEI, None, other_code),
        (UNIVERSAL_TWIN, bare_name, _compose(rng, bare_desc, rng.choice(TWIN_UNIVERSAL)), Label.NOT_NEEDED, None, None),
        # The action alone: no place, no reason. Whether a law drives it cannot be told -> NEI.
        (BARE_TWIN, bare_name, _compose(rng, bare_desc, None), Label.NEI, None, None),
    ]
    # Not every twin for every obligation: the three positives per obligation (two plain, this one with a stated
    # driver) would otherwise be outnumbered by the negatives built from them. The no-reason twin is kept always
    # (0.5 until 2026-12-04): it is how product specs are written (no "to comply with ..."), the one kind that
    # teaches a law's own mechanism without its name, and with half of them the demo still answered NEI for the
    # EU's non-profiling feed option and profiling ads to minors (examples/features.csv F-107, F-108) whatever
    # the head's L2 (docs/model-quality.md, session 10).
    keep = {POSITIVE: 1.0, BUSINESS_TWIN: 0.6, NO_REASON_TWIN: 1.0, ELSEWHERE_TWIN: 0.5, UNIVERSAL_TWIN: 0.3,
            BARE_TWIN: 0.3}
    return [FeatureSpec(feature=Feature(id=f"{kind}-{ob.id}", name=n, description=d, label=label, law=law),
                        kind=kind, group=ob.id, jurisdiction=jur, obligation_id=ob.id, topic=ob.topic)
            for kind, n, d, label, law, jur in out if rng.random() < keep[kind]]


class FeatureSpec(BaseModel):
    """A feature plus what it was generated from; ``group`` keeps related examples in one split."""

    model_config = ConfigDict(extra="ignore")

    feature: Feature
    kind: str
    group: str
    jurisdiction: str | None = None
    obligation_id: str | None = None
    topic: str | None = None
    # An imported feature's acceptable citations ('DSA Art. 16' matches 'DSA Art. 16(1)'): build cites the
    # retrieved provision that matches, else its law's best hit.
    citations: list[str] = Field(default_factory=list)


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("|".join((str(seed), *parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def positive_features(ob: Obligation, seed: int, count: int = 2) -> list[FeatureSpec]:
    """``count`` differently worded features implementing ``ob`` (one group: they share a split)."""
    templates = _templates_for(ob)
    _rng(seed, ob.id).shuffle(templates)
    where = region_name(ob.jurisdiction)
    out = []
    for i, (name, desc) in enumerate(templates[:count]):
        # A positive states its legal driver, explicitly or not: the same action geofenced with no reason is NEI
        # (the labelling rule), so a positive without one would teach the model the opposite of its twin.
        rng = _rng(seed, "driver", ob.id, str(i))
        description = _compose(rng, desc.format(where=where), legal_driver(rng, ob, where))
        feature = Feature(id=f"f{i}-{ob.id}", name=name.format(where=where)[:200], description=description,
                          label=Label.NEEDS, law=ob.title)
        out.append(FeatureSpec(feature=feature, kind=POSITIVE, group=ob.id, jurisdiction=ob.jurisdiction,
                               obligation_id=ob.id, topic=ob.topic))
    return out


def negative_features(jurisdictions: Iterable[str], count: int, seed: int) -> list[FeatureSpec]:
    """``count`` ambiguous, ``count`` business-geofenced specs across ``jurisdictions`` and up to ``count`` universal
    product features (no region, no legal angle).

    A template (not its region variant) is one group: the same wording never lands in both splits.
    """
    regions = sorted(set(jurisdictions)) or ["EU"]
    out: list[FeatureSpec] = []
    for kind, templates, label in ((AMBIGUOUS, AMBIGUOUS_TEMPLATES, Label.NEI),
                                   (BUSINESS, BUSINESS_TEMPLATES, Label.NOT_NEEDED),
                                   (UNIVERSAL, UNIVERSAL_TEMPLATES, Label.NOT_NEEDED)):
        for i in range(count):
            t = i % len(templates)
            jur = regions[(i // len(templates) + t) % len(regions)] if kind != UNIVERSAL else None
            where = _rng(seed, kind, str(t), str(jur)).choice(REGION_VARIANTS.get(jur or "", [region_name(jur or "")]))
            name, desc = templates[t]
            feature = Feature(id=f"{kind}-{t}-{jur}", name=name.format(where=where),
                              description=desc.format(where=where), label=label)
            out.append(FeatureSpec(feature=feature, kind=kind, group=f"{kind}:{t}", jurisdiction=jur))
    # Unique by id (fewer regions than repeats would repeat a spec verbatim).
    unique = {s.feature.id: s for s in out}
    specs = list(unique.values())
    _rng(seed, "negatives").shuffle(specs)
    return specs


def select_obligations(obligations: list[Obligation], per_law: int | None, seed: int = 0) -> list[Obligation]:
    """At most ``per_law`` obligations per law, taken round-robin over topics so every topic is represented.

    The big EU acts yield hundreds of obligations; without a cap they would drown the state laws.
    """
    if per_law is None:
        return list(obligations)
    by_law: dict[str, dict[str, list[Obligation]]] = {}
    for ob in obligations:
        by_law.setdefault(ob.law_id, {}).setdefault(ob.topic, []).append(ob)
    chosen: list[Obligation] = []
    for law_id in sorted(by_law):
        queues = [list(v) for _, v in sorted(by_law[law_id].items())]
        for q in queues:
            _rng(seed, law_id, q[0].topic).shuffle(q)
        picked: list[Obligation] = []
        while len(picked) < per_law and any(queues):
            for q in queues:
                if q and len(picked) < per_law:
                    picked.append(q.pop())
        chosen.extend(picked)
    return chosen


def generate(
    obligations: list[Obligation], *, seed: int = 0, per_law: int | None = 30, per_obligation: int = 2,
    negatives_per_kind: int | None = None,
) -> list[FeatureSpec]:
    """Positives (``per_obligation`` per selected obligation) and negatives (default: a third of the
    positives per kind)."""
    chosen = select_obligations(obligations, per_law, seed)
    specs = [s for ob in chosen for s in positive_features(ob, seed, per_obligation)]
    n = negatives_per_kind if negatives_per_kind is not None else max(8, len(specs) // 3)
    variants = [s for ob in chosen for s in reason_variants(ob, seed)]
    return specs + variants + negative_features((o.jurisdiction for o in obligations), n, seed)


def obligations_by_id(obligations: Iterable[Obligation]) -> dict[str, Obligation]:
    return {o.id: o for o in obligations}


# ------------------------------------------------------------------------------------------ import


def _import_rows(path: Path, on_error) -> Iterable[tuple[str, dict]]:
    if path.suffix.lower() in (".jsonl", ".json"):
        for where, obj in iter_jsonl(path, on_error):
            if not isinstance(obj, dict):
                err = ContractError(f"{where}: expected a JSON object")
                if on_error is None:
                    raise err
                on_error(err)
                continue
            yield where, obj
    elif path.suffix.lower() == ".csv":
        with open_text(path) as fh:
            # Strict, with the line each row starts on: a stray quote stops the import naming its line
            # instead of swallowing the rest of the file into one field (sft.core.tables).
            _, rows = csv_dicts(fh, str(path))
            # feature_name / feature_description: the TechJam dataset's column names.
            for line, row in rows:
                norm = {(k or "").strip().lower().removeprefix("feature_"): v for k, v in row.items()}
                yield f"{path}:{line}", norm
    else:
        raise ContractError(f"{path}: unsupported feature file type (use .csv or .jsonl)")


def import_features(path: str | Path, *, on_error=None, on_duplicate: str = "error",
                    on_drop=None) -> list[FeatureSpec]:
    """Read the user's features (name, description, optional label, law or law_id, citation) as FeatureSpecs.

    A bad row raises ``ContractError`` naming ``file:line`` and the field; with ``on_error`` it is reported
    there and skipped. An imported feature with a label keeps it; the law name or id (if any; several joined
    by '|') picks what it cites, the citation (same) which provision.
    Two rows with one id (given, or the content hash of name + description) follow ``on_duplicate``
    (:data:`sft.core.tables.ON_DUPLICATE`; dropped rows are reported to ``on_drop``). A stray quote in a CSV is
    always an error naming the line it opens on.
    """
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: no such file")
    out: list[tuple[str, FeatureSpec]] = []
    for where, row in _import_rows(path, on_error):
        try:
            for key in ("name", "description"):
                if not str(row.get(key) or "").strip():
                    raise ContractError(f"{where}: field '{key}': missing or empty")
            fields = {k: v for k, v in row.items() if k in ("name", "description", "label", "law", "id")}
            if not fields.get("law") and row.get("law_id"):  # the labelled spec files' column (examples/realistic)
                fields["law"] = row["law_id"]
            feature = Feature.model_validate(fields)
            citations = [c.strip() for c in str(row.get("citation") or "").split("|") if c.strip()]
        except ContractError as e:
            if on_error is None:
                raise
            on_error(e)
            continue
        except ValidationError as e:
            err = e.errors()[0]
            exc = ContractError(f"{where}: field '{err['loc'][0]}': {err['msg']}")
            if on_error is None:
                raise exc from None
            on_error(exc)
            continue
        fid = feature.id or "imp-" + hashlib.sha1(f"{feature.name}\n{feature.description}".encode()).hexdigest()[:12]
        feature = feature.model_copy(update={"id": fid})
        out.append((where, FeatureSpec(feature=feature, kind=IMPORTED, group=f"imported:{fid}", citations=citations)))
    return [spec for _, spec in check_unique_ids(out, lambda s: s.feature.id, on_duplicate, on_drop)]


def write_features(path: str | Path, specs: Iterable[FeatureSpec]) -> int:
    return write_jsonl_atomic(path, (s.model_dump_json(exclude_none=True) for s in specs))


def read_features(path: str | Path) -> list[FeatureSpec]:
    return list(read_records(path, FeatureSpec))
