"""Product feature specs from obligations (positives) plus negatives, and import of the user's own features.

No LLM is available at prep time, so features come from templates: per topic several specs written the way
product teams write them (codenames and abbreviations from the glossary: PF, ASL, GH, Jellybean, Snowcap,
ShadowMode, T5, ...). Choices are seeded, so the same obligations and seed give the same features.

Kinds of generated feature (``FeatureSpec.kind``):

* ``positive``: implements an obligation for its jurisdiction -> Needs Geo-Compliance, grounded in it;
* ``uncovered``: the same feature, later paired with context of an unrelated law -> Not Enough Information;
* ``ambiguous``: a geo-targeted spec that does not say why -> Not Enough Information;
* ``business``: geofenced for business reasons (market test, staged rollout, capacity) -> No Geo-Compliance
  Needed, whatever law the retriever brings back.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from data_prep.mine import Obligation
from sft.core.contract import ContractError, Feature, Label, iter_jsonl, read_records
from sft.core.files import write_jsonl_atomic
from sft.core.tables import check_unique_ids, csv_dicts, open_text

POSITIVE, UNCOVERED, AMBIGUOUS, BUSINESS, IMPORTED = "positive", "uncovered", "ambiguous", "business", "imported"

REGION_NAMES = {
    "EU": "the EU", "US": "the US", "US-CA": "California", "US-FL": "Florida", "US-UT": "Utah",
    "US-TX": "Texas", "US-NY": "New York", "UK": "the UK",
}

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

BUSINESS_REASONS = [
    "The geofence exists for a business experiment, not because a law requires region-specific behaviour.",
    "Regional targeting here is a rollout or capacity decision; the feature touches no legal obligation.",
    "Nothing in the feature creates a legal duty; the retrieved law is unrelated to its regional scope.",
]


class FeatureSpec(BaseModel):
    """A feature plus what it was generated from; ``group`` keeps related examples in one split."""

    model_config = ConfigDict(extra="ignore")

    feature: Feature
    kind: str
    group: str
    jurisdiction: str | None = None
    obligation_id: str | None = None
    topic: str | None = None


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("|".join((str(seed), *parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def region_name(jurisdiction: str) -> str:
    return REGION_NAMES.get(jurisdiction, jurisdiction)


def positive_features(ob: Obligation, seed: int, count: int = 2) -> list[FeatureSpec]:
    """``count`` differently worded features implementing ``ob`` (one group: they share a split)."""
    templates = list(TEMPLATES.get(ob.topic) or TEMPLATES["notice_and_action"])
    _rng(seed, ob.id).shuffle(templates)
    where = region_name(ob.jurisdiction)
    out = []
    for i, (name, desc) in enumerate(templates[:count]):
        feature = Feature(id=f"f{i}-{ob.id}", name=name.format(where=where), description=desc.format(where=where),
                          label=Label.NEEDS, law=ob.title)
        out.append(FeatureSpec(feature=feature, kind=POSITIVE, group=ob.id, jurisdiction=ob.jurisdiction,
                               obligation_id=ob.id, topic=ob.topic))
    return out


def positive_reason(ob: Obligation) -> str:
    return (f"The feature implements {TOPIC_PHRASES.get(ob.topic, ob.topic)} for users in "
            f"{region_name(ob.jurisdiction)}, which {ob.title} requires in {ob.citation}.")


def negative_features(jurisdictions: Iterable[str], count: int, seed: int) -> list[FeatureSpec]:
    """``count`` ambiguous and ``count`` business-geofenced specs across ``jurisdictions``.

    A template (not its region variant) is one group: the same wording never lands in both splits.
    """
    regions = sorted(set(jurisdictions)) or ["EU"]
    out: list[FeatureSpec] = []
    for kind, templates, label in ((AMBIGUOUS, AMBIGUOUS_TEMPLATES, Label.NEI),
                                   (BUSINESS, BUSINESS_TEMPLATES, Label.NOT_NEEDED)):
        for i in range(count):
            t = i % len(templates)
            jur = regions[(i // len(templates) + t) % len(regions)]
            where = region_name(jur)
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
    specs = [s for ob in select_obligations(obligations, per_law, seed) for s in positive_features(ob, seed, per_obligation)]
    n = negatives_per_kind if negatives_per_kind is not None else max(8, len(specs) // 3)
    return specs + negative_features((o.jurisdiction for o in obligations), n, seed)


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
    """Read the user's features (name, description, optional label and law) as FeatureSpecs.

    A bad row raises ``ContractError`` naming ``file:line`` and the field; with ``on_error`` it is reported
    there and skipped. An imported feature with a label keeps it; the law name (if any) picks its context.
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
            feature = Feature.model_validate({k: v for k, v in row.items() if k in ("name", "description",
                                                                                   "label", "law", "id")})
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
        out.append((where, FeatureSpec(feature=feature, kind=IMPORTED, group=f"imported:{fid}")))
    return [spec for _, spec in check_unique_ids(out, lambda s: s.feature.id, on_duplicate, on_drop)]


def write_features(path: str | Path, specs: Iterable[FeatureSpec]) -> int:
    return write_jsonl_atomic(path, (s.model_dump_json(exclude_none=True) for s in specs))


def read_features(path: str | Path) -> list[FeatureSpec]:
    return list(read_records(path, FeatureSpec))
