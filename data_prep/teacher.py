"""Feature specs written by a teacher model (``geoprep features --generator bedrock|openai``).

The templates in :mod:`data_prep.features` are the offline default. A user with a teacher model gets more varied
wording: each obligation becomes a few :class:`Recipe`\\ s (kind, region name, reason kind, style, jargon), the
teacher writes ONE spec per recipe as ``{"name": ..., "description": ...}``, and the answer is checked against the
recipe before it is kept. The label is always the recipe's: a teacher that writes "required by law" into a
business recipe is rejected and asked again, never relabelled.

Every answer (kept or finally rejected) is cached in sqlite keyed by (backend, model, recipe id, prompt hash), one
commit per recipe: a re-run makes no repeat calls, an interrupted run resumes where it stopped, and changing the
prompt or the model asks again. Transport failures (throttling, 429, 5xx, timeouts) are retried with backoff; if
they persist the run stops with a one-line error and a re-run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from data_prep.features import (
    BUSINESS_TWIN,
    ELSEWHERE_TWIN,
    NO_REASON_TWIN,
    POSITIVE,
    REGION_VARIANTS,
    TOPIC_PHRASES,
    UNIVERSAL_TWIN,
    FeatureSpec,
    _law_short,
    _rng,
    elsewhere,
    region_name,
    select_obligations,
)
from data_prep.mine import Obligation
from sft.core.contract import Feature, Label
from sft.core.errors import UserError
from sft.core.lawnames import LAW_MENTION

log = logging.getLogger(__name__)

GENERATORS = ("templates", "bedrock", "openai")
LEGAL_EXPLICIT, LEGAL_IMPLICIT, BUSINESS, NONE, UNIVERSAL = "legal_explicit", "legal_implicit", "business", "none", \
    "universal"
ELSEWHERE = "elsewhere"  # no reason, in a place no bundled law covers (data_prep.features.ELSEWHERE)
STYLES = {
    "one-liner": "a one-line ticket: the description is a single sentence of at most 30 words",
    "short": "a short spec of 2-3 sentences",
    "long": "a long paragraph (5-8 sentences) with implementation details, owners and rollout notes",
}
# Product jargon the teacher may use (the TechJam terminology table); a --glossary replaces it.
DEFAULT_JARGON = {
    "PF": "personalized feed", "ASL": "age-sensitive logic", "GH": "geo-handler, routes features by user region",
    "CDS": "compliance detection system", "DRT": "data retention threshold", "LCP": "local compliance policy",
    "Redline": "flag for legal review", "Softblock": "silently limit a user or content", "Spanner": "rule engine",
    "ShadowMode": "deploy in non-user-impact mode to collect analytics", "T5": "tier-5 (most sensitive) data",
    "Glow": "compliance-flagging status for geo-based alerts", "NSP": "non-shareable policy",
    "Jellybean": "internal parental control system", "EchoTrace": "log tracing mode for audits",
    "BB": "baseline behaviour", "Snowcap": "child safety policy framework", "FR": "feature rollout status",
    "IMT": "internal monitoring trigger",
}

# Words that state a legal driver. A business / no-reason / universal spec must contain none of them (nor a law
# name, LAW_MENTION); a legal_implicit spec needs one of them and no law name.
LEGAL_WORDS = re.compile(
    r"\b(laws?|legal(?:ly)?|legislat\w*|regulat\w*|statut\w*|compl(?:y|ies|iance|iant)|mandat\w*|obligat\w*"
    r"|required|requirements?|counsel|lawyers?|attorneys?|regulators?|penalt\w*|obliged|DPO)\b",
    re.IGNORECASE)
# Words that give a reason for a regional scope; a no-reason spec must contain none of them.
REASON_WORDS = re.compile(
    r"\b(because|due to|in order to|so we|since|driven by|driver|to comply|required|requirement|mandatory"
    r"|market test|a/b|experiment\w*|pilot|test(?:ing)? market|staged rollout|capacity|partner deal|partnership"
    r"|campaign|growth team|engagement read-?out)\b", re.IGNORECASE)
# Not listed although they can state a reason: 'why' and 'reason' ('Why am I seeing this' panels, statements of
# reasons are features), 'retention' (data retention is a feature).
MAX_NAME, MIN_DESC, MAX_DESC = 120, 20, 1500


# ------------------------------------------------------------------------------------------------ recipes


@dataclass(frozen=True)
class Recipe:
    """What one teacher-written spec must be. ``label`` (and ``law`` for legal kinds) come from here, never from
    the teacher's text."""

    id: str
    obligation_id: str
    kind: str  # a FeatureSpec kind: positive, business_twin, no_reason_twin, universal_twin
    label: Label
    jurisdiction: str | None  # None for universal (ships everywhere)
    where: str  # the region name the spec must use ("all markets" for universal)
    topic: str
    topic_phrase: str
    reason: str  # legal_explicit, legal_implicit, business, none, universal
    duty: str  # the obligation's text: what the feature implements
    style: str  # a key of STYLES
    law: str | None = None  # the law title: legal kinds, and the no-reason twin in the law's place
    law_name: str | None = None  # how the spec names it (legal_explicit only)
    jargon: tuple[str, ...] = ()  # 3-5 glossary terms to use; empty: plain language


_KIND_OF = {LEGAL_EXPLICIT: POSITIVE, LEGAL_IMPLICIT: POSITIVE, BUSINESS: BUSINESS_TWIN, NONE: NO_REASON_TWIN,
            ELSEWHERE: ELSEWHERE_TWIN, UNIVERSAL: UNIVERSAL_TWIN}
# The templates' rule (data_prep.features.reason_variants): the law's own mechanism in the law's place needs it
# even with no reason stated; the same action where no bundled law applies, with no reason, cannot be judged.
_LABEL_OF = {POSITIVE: Label.NEEDS, BUSINESS_TWIN: Label.NOT_NEEDED, NO_REASON_TWIN: Label.NEEDS,
             ELSEWHERE_TWIN: Label.NEI, UNIVERSAL_TWIN: Label.NOT_NEEDED}


def recipes(obligations: Iterable[Obligation], seed: int = 0, per_obligation: int = 2,
            jargon: dict[str, str] | None = None) -> list[Recipe]:
    """Per obligation and round: one legal positive (explicit or implicit law), one business twin, one no-reason
    twin (in the law's place in even rounds: Needs; in a place no bundled law covers in odd rounds: NEI); plus one
    universal twin per obligation. With the default 2 rounds that is 3 Needs / 3 Not Needed / 1 NEI per
    obligation (build rebalances NEI to its --nei-share). Seeded: same inputs, same recipes."""
    glossary = jargon if jargon is not None else DEFAULT_JARGON
    terms = sorted(glossary)
    # A term defined in legal words ('CDS: compliance detection system', 'Redline: flag for legal review') would
    # put a legal driver into a business / no-reason / universal spec: those recipes never get one.
    plain_terms = [t for t in terms if not LEGAL_WORDS.search(glossary[t])]
    out = []
    for ob in obligations:
        rng = _rng(seed, "teacher", ob.id)
        variants = REGION_VARIANTS.get(ob.jurisdiction, [region_name(ob.jurisdiction)])
        first = rng.choice((LEGAL_EXPLICIT, LEGAL_IMPLICIT))  # then explicit and implicit alternate by round
        other = LEGAL_IMPLICIT if first == LEGAL_EXPLICIT else LEGAL_EXPLICIT
        plan: list[tuple[int, str]] = []
        for i in range(per_obligation):
            plan += [(i, first if i % 2 == 0 else other), (i, BUSINESS), (i, NONE if i % 2 == 0 else ELSEWHERE)]
        plan.append((0, UNIVERSAL))
        for i, reason in plan:
            kind = _KIND_OF[reason]
            legal = reason in (LEGAL_EXPLICIT, LEGAL_IMPLICIT)
            place = rng.choice(elsewhere(ob.jurisdiction)) if reason == ELSEWHERE else ob.jurisdiction
            pool = terms if legal else plain_terms
            use_jargon = bool(pool) and rng.random() < 0.5
            out.append(Recipe(
                id=f"{kind}-{i}-{ob.id}", obligation_id=ob.id, kind=kind, label=_LABEL_OF[kind],
                jurisdiction=None if reason == UNIVERSAL else place,
                where=rng.choice(["all markets", "every region", "all countries"]) if reason == UNIVERSAL
                else region_name(place) if reason == ELSEWHERE else rng.choice(variants),
                topic=ob.topic, topic_phrase=TOPIC_PHRASES.get(ob.topic, ob.topic), reason=reason, duty=ob.text,
                style=rng.choice(sorted(STYLES)), law=ob.title if legal or reason == NONE else None,
                law_name=rng.choice([ob.title, _law_short(ob.title)]) if reason == LEGAL_EXPLICIT else None,
                jargon=tuple(rng.sample(pool, min(len(pool), rng.randint(3, 5)))) if use_jargon else (),
            ))
    return out


# ------------------------------------------------------------------------------------------------- prompt

SYSTEM = ("You write product feature specs the way a product team at a large social media company writes them in "
          "their tracker: a short feature name and a description of what the feature does, for whom and where. "
          "You answer with ONE JSON object and nothing else: {\"name\": \"...\", \"description\": \"...\"}.")

_REASON_TEXT = {
    LEGAL_EXPLICIT: "State that the feature exists because of {law_name}, naming it exactly so (e.g. \"Required "
                    "to comply with {law_name}.\"). Do not name any other law.",
    LEGAL_IMPLICIT: "State that the feature is a legal requirement for {where} (e.g. \"Legal says this is "
                    "mandatory for {where}\"), but do NOT name the law, a bill number, an article or a section.",
    BUSINESS: "State a business reason for limiting it to {where} (a market test, a staged rollout, capacity, a "
              "partner deal or a marketing campaign). Do NOT mention any law, regulation, legal team, compliance "
              "or requirement, not even to say none applies.",
    NONE: "Say only that it is limited to {where}; give NO reason at all for the regional scope (no 'because', "
          "no law, no business reason, no experiment, nothing that says why). Do not mention any law, "
          "regulation, legal team or compliance.",
    UNIVERSAL: "It ships the same way to all users in {where} as a product improvement, with no region-specific "
               "behaviour. Do NOT mention any law, regulation, legal team, compliance or requirement.",
}
_REASON_TEXT[ELSEWHERE] = _REASON_TEXT[NONE]  # the same no-reason spec, in a place no bundled law covers


def prompt(recipe: Recipe, jargon: dict[str, str] | None = None) -> str:
    """The user message for ``recipe`` (the system message is :data:`SYSTEM`)."""
    glossary = jargon if jargon is not None else DEFAULT_JARGON
    what = ("What the feature does (write it as product behaviour; do not quote this sentence or call it a duty): "
            f"\"{recipe.duty}\"")
    lines = [
        "Write one feature spec.",
        f"Topic: {recipe.topic_phrase}.",
        what,
        f"Where: {recipe.where} (use exactly this region name).",
        "Reason: " + _REASON_TEXT[recipe.reason].format(law_name=recipe.law_name, where=recipe.where),
        f"Style: {STYLES[recipe.style]}.",
    ]
    if recipe.jargon:
        terms = "; ".join(f"{t} ({glossary.get(t, 'internal term')})" for t in recipe.jargon)
        lines.append(f"Use these internal terms, unexplained, as the team would: {terms}.")
    else:
        lines.append("Use plain language, no internal codenames.")
    lines.append(f"The name has at most {MAX_NAME} characters; the description {MIN_DESC}-{MAX_DESC} characters.")
    lines.append('Answer with ONE JSON object: {"name": "...", "description": "..."}')
    return "\n".join(lines)


def prompt_hash(system: str, user: str) -> str:
    return hashlib.sha256(f"{system}\n\x00\n{user}".encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ validation


class InvalidAnswer(ValueError):
    """The teacher's answer does not fit the contract or the recipe; the message goes back to the teacher."""


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_answer(text: str, recipe: Recipe) -> tuple[str, str]:
    """(name, description) from the teacher's text, or :class:`InvalidAnswer` saying what is wrong."""
    raw = _FENCE.sub("", text.strip())
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end < start:
        raise InvalidAnswer("the answer is not a JSON object")
    try:
        obj = json.loads(raw[start:end + 1])
    except json.JSONDecodeError as e:
        raise InvalidAnswer(f"the answer is not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    name, desc = obj.get("name"), obj.get("description")
    if not isinstance(name, str) or not name.strip():
        raise InvalidAnswer("field 'name': missing or empty")
    if not isinstance(desc, str) or not desc.strip():
        raise InvalidAnswer("field 'description': missing or empty")
    name, desc = name.strip(), desc.strip()
    if len(name) > MAX_NAME:
        raise InvalidAnswer(f"field 'name': {len(name)} characters, at most {MAX_NAME} allowed")
    if not MIN_DESC <= len(desc) <= MAX_DESC:
        raise InvalidAnswer(f"field 'description': {len(desc)} characters, {MIN_DESC}-{MAX_DESC} required")
    check_reason(f"{name}\n{desc}", recipe)
    return name, desc


def check_reason(text: str, recipe: Recipe) -> None:
    """The spec states its reason the way the recipe says, or :class:`InvalidAnswer`."""
    law = LAW_MENTION.search(text)
    legal = LEGAL_WORDS.search(text)
    if recipe.reason == LEGAL_EXPLICIT:
        names = [n for n in (recipe.law_name, recipe.law, _law_short(recipe.law or "")) if n]
        if not any(n.lower().removeprefix("the ") in text.lower() for n in names):
            raise InvalidAnswer(f"the spec must name the law as {recipe.law_name!r}")
    elif recipe.reason == LEGAL_IMPLICIT:
        if law:
            raise InvalidAnswer(f"the spec must not name a law, but says {law.group(0).strip()!r}")
        if not legal:
            raise InvalidAnswer("the spec must say the feature is a legal requirement (without naming the law)")
    else:
        if law:
            raise InvalidAnswer(f"the spec must not mention a law, but says {law.group(0).strip()!r}")
        if legal:
            raise InvalidAnswer(f"the spec must not mention a legal driver, but says {legal.group(0)!r}")
    if recipe.reason in (NONE, ELSEWHERE) and (m := REASON_WORDS.search(text)):
        raise InvalidAnswer(f"the spec must give no reason for its regional scope, but says {m.group(0)!r}")
    # Whole words; 'UT' / 'CA' case-sensitively (else 'output' or 'ca.' would pass).
    flags = 0 if recipe.where.isupper() else re.IGNORECASE
    if recipe.reason != UNIVERSAL and not re.search(rf"(?<!\w){re.escape(recipe.where)}(?!\w)", text, flags):
        raise InvalidAnswer(f"the spec must name the region as {recipe.where!r}")


def to_spec(recipe: Recipe, name: str, description: str) -> FeatureSpec:
    """The FeatureSpec ``geoprep build`` reads: label, law, kind and jurisdiction from the recipe."""
    feature = Feature(id=f"teacher-{recipe.id}", name=name, description=description, label=recipe.label,
                      law=recipe.law)
    return FeatureSpec(feature=feature, kind=recipe.kind, group=recipe.obligation_id,
                       jurisdiction=recipe.jurisdiction, obligation_id=recipe.obligation_id, topic=recipe.topic)


# ------------------------------------------------------------------------------------------------- backends


class TeacherError(UserError):
    """The teacher backend failed in a way retrying does not fix (or retries ran out)."""


class Generator(Protocol):
    backend: str
    model: str

    def complete(self, system: str, turns: Sequence[tuple[str, str]]) -> str:
        """The teacher's reply to ``turns`` ((role, text), role user/assistant, starting with user)."""
        ...


@dataclass
class Backoff:
    """Exponential backoff with full jitter: attempt n waits up to ``base * 2**n`` seconds, at most ``cap``.
    Six attempts at base 1 s wait about 31 s in the worst case, enough for a per-minute quota to refill."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def wait(self, attempt: int, retry_after: float | None = None) -> None:
        delay = retry_after if retry_after is not None else self.rng.uniform(0, min(self.cap, self.base * 2 ** attempt))
        self.sleep(min(delay, self.cap))


class BedrockGenerator:
    """Amazon Bedrock Runtime ``Converse`` (any model Converse supports). botocore's adaptive retry mode paces
    requests client-side under throttling; a throttle that outlasts it is retried here with :class:`Backoff`."""

    backend = "bedrock"
    RETRYABLE = {"ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException",
                 "InternalServerException", "ServiceQuotaExceededException"}

    def __init__(self, model: str, *, region: str | None = None, client: Any = None, max_tokens: int = 700,
                 temperature: float = 0.8, backoff: Backoff | None = None):
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("bedrock-runtime", region_name=region,
                                  config=Config(retries={"mode": "adaptive", "max_attempts": 5}, read_timeout=120))
        self.client, self.model = client, model
        self.max_tokens, self.temperature = max_tokens, temperature
        self.backoff = backoff or Backoff()

    def complete(self, system: str, turns: Sequence[tuple[str, str]]) -> str:
        from botocore.exceptions import ClientError

        request = {
            "modelId": self.model,
            "system": [{"text": system}],
            "messages": [{"role": role, "content": [{"text": text}]} for role, text in turns],
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": self.temperature},
        }
        for attempt in range(self.backoff.attempts):
            try:
                response = self.client.converse(**request)
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code in self.RETRYABLE and attempt + 1 < self.backoff.attempts:
                    log.info("bedrock %s: %s, retrying", self.model, code)
                    self.backoff.wait(attempt)
                    continue
                raise TeacherError(f"bedrock {self.model}: {code}: {e.response.get('Error', {}).get('Message', e)}"
                                   ) from None
            content = response.get("output", {}).get("message", {}).get("content", [])
            return "".join(part.get("text", "") for part in content)
        raise AssertionError("unreachable")


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint (vLLM, Ollama, LM Studio, a hosted API): POST
    ``{base_url}/v1/chat/completions`` with the standard library. The key is read from the environment variable
    the user names and sent only in the ``Authorization`` header; it is never logged, stored or put in errors."""

    backend = "openai"

    def __init__(self, model: str, base_url: str, *, api_key_env: str | None = None, timeout: float = 120.0,
                 max_tokens: int = 700, temperature: float = 0.8, json_mode: bool = True,
                 backoff: Backoff | None = None):
        self.model, self.timeout = model, timeout
        self.url = base_url.rstrip("/").removesuffix("/v1") + "/v1/chat/completions"
        self.max_tokens, self.temperature, self.json_mode = max_tokens, temperature, json_mode
        self.backoff = backoff or Backoff()
        self._key = None
        if api_key_env:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise UserError(f"--api-key-env {api_key_env}: environment variable is not set or empty")

    def __repr__(self) -> str:
        return f"OpenAIGenerator(model={self.model!r}, url={self.url!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _post(self, body: dict) -> tuple[int, str, float | None]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace"), None
        except urllib.error.HTTPError as e:
            retry_after = e.headers.get("Retry-After") if e.headers else None
            try:
                after = float(retry_after) if retry_after else None
            except ValueError:
                after = None
            return e.code, e.read().decode("utf-8", "replace"), after

    def complete(self, system: str, turns: Sequence[tuple[str, str]]) -> str:
        body: dict[str, Any] = {
            "model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens,
            "messages": [{"role": "system", "content": system}] + [{"role": r, "content": t} for r, t in turns],
        }
        last = ""
        for attempt in range(self.backoff.attempts):
            if self.json_mode:
                body["response_format"] = {"type": "json_object"}
            else:
                body.pop("response_format", None)
            try:
                status, text, retry_after = self._post(body)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                status, text, retry_after = 0, str(getattr(e, "reason", e)), None
            if status == 200:
                try:
                    return json.loads(text)["choices"][0]["message"]["content"] or ""
                except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                    raise TeacherError(f"{self.url}: response is not a chat completion: "
                                       f"{self._redact(text[:200])!r}") from None
            last = f"HTTP {status}: {self._redact(text[:200])}" if status else self._redact(text[:200])
            if status == 400 and self.json_mode and "response_format" in text:
                # Older servers (and some Ollama/vLLM builds) reject JSON mode: ask without it; the prompt and
                # the validator still require JSON.
                log.info("%s does not support response_format; retrying without it", self.url)
                self.json_mode = False
                continue
            if (status == 0 or status == 429 or status >= 500) and attempt + 1 < self.backoff.attempts:
                log.info("%s: %s, retrying", self.url, last)
                self.backoff.wait(attempt, retry_after)
                continue
            break
        raise TeacherError(f"{self.url}: {last}")


def open_generator(generator: str, *, model: str | None, base_url: str | None = None, api_key_env: str | None = None,
                   region: str | None = None) -> Generator:
    """The backend named by ``--generator`` (not ``templates``), with its options checked."""
    if generator not in ("bedrock", "openai"):
        raise UserError(f"--generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
    if not model:
        raise UserError(f"--generator {generator} needs --teacher-model")
    if generator == "bedrock":
        return BedrockGenerator(model, region=region)
    if not base_url:
        raise UserError("--generator openai needs --base-url (e.g. http://localhost:8000 for vLLM, "
                        "http://localhost:11434 for Ollama)")
    return OpenAIGenerator(model, base_url, api_key_env=api_key_env)


# ----------------------------------------------------------------------------------------------- cache + run


class AnswerCache:
    """sqlite: one row per (backend, model, recipe id, prompt hash), committed as soon as it is known."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (backend TEXT, model TEXT, recipe_id TEXT, prompt_hash TEXT, "
            "status TEXT, name TEXT, description TEXT, error TEXT, calls INTEGER, "
            "PRIMARY KEY (backend, model, recipe_id, prompt_hash))")
        self.db.commit()

    def get(self, key: tuple[str, str, str, str]) -> tuple[str, str | None, str | None, str | None] | None:
        row = self.db.execute("SELECT status, name, description, error FROM answers WHERE backend=? AND model=? "
                              "AND recipe_id=? AND prompt_hash=?", key).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def put(self, key: tuple[str, str, str, str], status: str, name: str | None, description: str | None,
            error: str | None, calls: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?,?)",
                        (*key, status, name, description, error, calls))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


@dataclass
class TeacherRun:
    specs: list[FeatureSpec]
    stats: Counter  # written, cached, rejected, calls, retried, left (not reached: --max-calls)

    @property
    def complete(self) -> bool:
        return not self.stats["left"]


def write_with_teacher(
    recipes_: Sequence[Recipe], generator: Generator, cache_path: str | Path, *, retries: int = 2,
    max_calls: int | None = None, jargon: dict[str, str] | None = None, progress: bool = True,
) -> TeacherRun:
    """One spec per recipe from ``generator``: cached answers first, then calls (at most ``max_calls`` in this
    run). An invalid answer is sent back with the error up to ``retries`` times, then skipped and counted."""
    cache = AnswerCache(cache_path)
    stats: Counter = Counter()
    specs: list[FeatureSpec] = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(f"teacher {generator.model}", total=len(recipes_))
    try:
        for recipe in recipes_:
            user = prompt(recipe, jargon)
            key = (generator.backend, generator.model, recipe.id, prompt_hash(SYSTEM, user))
            hit = cache.get(key)
            if hit is None:
                if max_calls is not None and stats["calls"] >= max_calls:
                    stats["left"] += 1
                    continue
                hit = _ask(generator, recipe, user, retries, max_calls, stats)
                if hit is None:  # --max-calls reached mid-recipe: nothing cached, asked again next run
                    stats["left"] += 1
                    continue
                cache.put(key, *hit)
            else:
                stats["cached"] += 1
            status, name, desc, error = hit[:4]
            if status == "ok":
                assert name is not None and desc is not None
                specs.append(to_spec(recipe, name, desc))
                stats["written"] += 1
            else:
                stats["rejected"] += 1
                log.warning("teacher: recipe %s skipped: %s", recipe.id, error)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
        cache.close()
    return TeacherRun(specs, stats)


def _ask(generator: Generator, recipe: Recipe, user: str, retries: int, max_calls: int | None,
         stats: Counter) -> tuple[str, str | None, str | None, str | None, int] | None:
    turns: list[tuple[str, str]] = [("user", user)]
    error = ""
    for attempt in range(retries + 1):
        if max_calls is not None and stats["calls"] >= max_calls:
            return None
        stats["calls"] += 1
        stats["retried"] += attempt > 0
        reply = generator.complete(SYSTEM, turns)
        try:
            name, desc = parse_answer(reply, recipe)
            return "ok", name, desc, None, attempt + 1
        except InvalidAnswer as e:
            error = str(e)
            log.info("teacher: recipe %s, answer %d rejected: %s", recipe.id, attempt + 1, error)
            turns += [("assistant", reply or "(empty)"),
                      ("user", f"That answer was rejected: {error}. Write the spec again following every "
                               f"instruction. Answer with ONE JSON object: {{\"name\": \"...\", \"description\": \"...\"}}")]
    return "rejected", None, None, error, retries + 1


def teacher_features(
    obligations: list[Obligation], generator: Generator, cache_path: str | Path, *, seed: int = 0,
    per_law: int | None = 30, per_obligation: int = 2, max_calls: int | None = None,
    jargon: dict[str, str] | None = None, progress: bool = True,
) -> TeacherRun:
    """``geoprep features --generator bedrock|openai``: the same obligations the templates would use
    (:func:`data_prep.features.select_obligations`), one teacher-written spec per recipe."""
    chosen = select_obligations(obligations, per_law, seed)
    return write_with_teacher(recipes(chosen, seed, per_obligation, jargon), generator, cache_path,
                              max_calls=max_calls, jargon=jargon, progress=progress)


def summary(run: TeacherRun) -> str:
    s = run.stats
    line = (f"teacher: {s['written']} specs ({s['cached']} from cache), {s['rejected']} recipes rejected after "
            f"retries, {s['calls']} calls ({s['retried']} retries)")
    if s["left"]:
        line += f"; {s['left']} recipes not reached (--max-calls): re-run to continue"
    return line
