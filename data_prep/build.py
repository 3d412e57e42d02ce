"""``geoprep build``: feature specs + retrieved law context -> QC'd ``train.jsonl`` / ``validation.jsonl``.

Per spec, the law context is what inference retrieves for the same text (:func:`sft.core.prompt.law_context`:
the same query, jurisdiction rule, one law, top k), so a deployed model sees prompts shaped like its training
prompts. The label follows the reason the spec states and whether that context supports it:

* positive (a legal driver) -> Needs Geo-Compliance, citing the obligation's provision (or another provision of
  its law, or of a law that applies in the same place and grounds the topic) when the context holds one; when
  it does not, ``uncovered`` -> Needs Geo-Compliance without a citation (the flag follows the stated reason;
  nothing in the prompt grounds a citation), which is what inference answers for a law outside the corpus;
* business reason, business twin (a positive's action with a business reason), universal twin (shipped
  everywhere) -> No Geo-Compliance Needed;
* ambiguous, no-reason twin (a positive's action geofenced without a reason) -> NEI;
* imported -> the user's label (unlabelled ones go to to_label.jsonl).

Then QC: citation validation (drop if the cited text is not in the context), near-duplicate removal, the
optional token budget (sft.core.budget), class balance (NEI share), a deterministic split grouped by source
obligation, and a report. Every stage is deterministic for a seed, so re-running yields the same files.
"""

from __future__ import annotations

import hashlib
import logging
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from data_prep.features import (
    AMBIGUOUS,
    BARE_TWIN,
    BUSINESS,
    BUSINESS_TWIN,
    ELSEWHERE_TWIN,
    IMPORTED,
    LAW_DRIVEN,
    UNCOVERED,
    UNIVERSAL,
    UNIVERSAL_TWIN,
    FeatureSpec,
)
from data_prep.mine import Obligation
from sft.core.context import SEARCH_K, SNIPPET_CHARS, TOP_K, cut_snippet
from sft.core.contract import Answer, Example, Label, LawContext, PromptInput, spec_text
from sft.core.errors import UserError
from sft.core.files import write_json_atomic, write_jsonl_atomic, write_text_atomic
from sft.core.glossary import Glossary
from sft.core.gold import citation_matches
from sft.core.prompt import applies, law_context
from sft.core.reasons import NEEDS_UNCITED, answer_reason

log = logging.getLogger(__name__)

class Retriever(Protocol):
    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]: ...


@dataclass
class BuildConfig:
    top_k: int = field(default=TOP_K, metadata={"help": "Law snippets per example (most relevant first)."})
    search_k: int = field(default=SEARCH_K, metadata={"help": "Hits fetched before the jurisdiction/law filters."})
    nei_share: float = field(default=0.30, metadata={"help": "Target share of 'Not Enough Information'."})
    # 0.15, not 0.25, since a legal driver the context does not cover is Needs (2026-12-04): the generated data's
    # NEI share fell to ~18 % (the realistic set's is 18 %), and keeping 25 % would have dropped ~400 of ~980
    # examples of the other labels. The label head weights each label by its inverse frequency anyway.
    nei_min: float = field(default=0.15, metadata={"help": "Lowest acceptable NEI share."})
    nei_max: float = field(default=0.35, metadata={"help": "Highest acceptable NEI share."})
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of groups in validation."})
    near_dup_threshold: float = field(default=0.9, metadata={"help": "Jaccard of word 3-grams that counts as duplicate."})
    snippet_chars: int = field(default=SNIPPET_CHARS, metadata={"help": "Snippets are cut to this many characters."})
    max_length: int | None = field(default=None, metadata={"help": "Token budget (needs a tokenizer); None: off."})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.search_k < self.top_k:
            raise UserError(f"top_k must be >= 1 and search_k >= top_k (got {self.top_k}, {self.search_k})")
        if not 0 < self.nei_min <= self.nei_share <= self.nei_max < 1:
            raise UserError(
                f"need 0 < nei_min <= nei_share <= nei_max < 1 (got {self.nei_min}, {self.nei_share}, {self.nei_max})"
            )
        if not 0 < self.validation_fraction < 1:
            raise UserError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.max_length is not None and self.max_length < 64:
            raise UserError(f"max_length must be >= 64, got {self.max_length}")


@dataclass
class Candidate:
    spec: FeatureSpec
    example: Example
    context: list[LawContext]
    kind: str


@dataclass
class BuildResult:
    train: list[Example]
    validation: list[Example]
    report: dict[str, Any]
    to_label: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------- context rules


class ContextBuilder:
    """Law context for training examples: the inference rule (:func:`sft.core.prompt.law_context`), nothing else,
    so a validation prompt rebuilt by ``geosft predict`` holds the same law items."""

    def __init__(self, retriever: Retriever, config: BuildConfig, drops: Counter):
        self.retriever, self.config, self.drops = retriever, config, drops
        self.uncovered = 0  # legally driven specs whose retrieved law does not cover them (-> Needs, no citation)
        self.other_provision = 0  # positives citing another provision of their law than the mined one
        # Retrieval quality for free: a positive's context holds its source chunk or not (Hit@top_k of the
        # retriever used, the same measure as geoprep eval-retrieval's generated set).
        self.positives = self.source_chunk_hits = 0
        self.to_label: list[dict[str, Any]] = []

    def retrieve(self, spec: FeatureSpec, notes: dict[str, str]) -> list[LawContext]:
        context = law_context(self.retriever, spec.feature, notes, k=self.config.top_k, search_k=self.config.search_k)
        return [cut_snippet(h, self.config.snippet_chars) for h in context]


# ------------------------------------------------------------------------------------ assembling


def _example_id(kind: str, feature_id: str) -> str:
    return f"{kind}-" + hashlib.sha1(f"{kind}|{feature_id}".encode()).hexdigest()[:12]


def _notes(spec: FeatureSpec, glossary: Glossary | None) -> dict[str, str]:
    return glossary.notes_for(spec_text(spec.feature)) if glossary else {}


def _make(spec: FeatureSpec, kind: str, context: list[LawContext], notes: dict[str, str], flag: Label,
          cite: LawContext | None = None) -> Candidate:
    """The example answering ``flag`` (citing ``cite``) with the reason inference gives for that answer to that
    prompt (:func:`sft.core.reasons.answer_reason`): the LM is trained on exactly the text it will be shown."""
    text = spec_text(spec.feature)
    prompt = PromptInput.build(spec.feature, context, notes)
    law, citation = (cite.title, cite.citation) if cite is not None else (None, None)
    answer = Answer(compliance_flag=flag, law=law, citation=citation,
                    reason=answer_reason(flag, prompt, law, citation))
    example = Example.build(prompt, answer, id=_example_id(kind, spec.feature.id or text), group=spec.group)
    return Candidate(spec, example, context, kind)


def _supporting(context: list[LawContext], ob: Obligation, topics_by_law: dict[str, tuple[str, set[str]]]
                ) -> LawContext | None:
    """The context item a legally driven feature implementing ``ob`` can cite: the obligation's own provision,
    else another provision of its law, else a provision of a law that applies in the feature's place and grounds
    the same topic (Utah's SB 152 and HB 311 both enact 13-63). None: the context cannot decide it."""
    own = [c for c in context if c.law_id == ob.law_id]
    for c in own:
        if c.citation == ob.citation:
            return c
    if own:
        return own[0]
    for c in context:
        jur, topics = topics_by_law.get(c.law_id, (c.jurisdiction, set()))
        if ob.topic in topics and applies(jur, ob.jurisdiction):
            return c
    return None


def assemble(
    specs: list[FeatureSpec],
    obligations: dict[str, Obligation],
    ctx: ContextBuilder,
    glossary: Glossary | None,
    drops: Counter,
    progress: Callable[[], None] = lambda: None,
) -> list[Candidate]:
    topics_by_law: dict[str, tuple[str, set[str]]] = {}
    for ob in obligations.values():
        topics_by_law.setdefault(ob.law_id, (ob.jurisdiction, set()))[1].add(ob.topic)
    out: list[Candidate] = []
    for spec in specs:
        progress()
        out.extend(_candidates_for(spec, obligations, topics_by_law, ctx, glossary, drops))
    return out


def _candidates_for(spec, obligations, topics_by_law, ctx, glossary, drops) -> list[Candidate]:
    """One training example per spec. Its law context is exactly what inference retrieves for the same text
    (:func:`sft.core.prompt.law_context`); its label follows the spec's stated reason and whether that context
    can support it."""
    notes = _notes(spec, glossary)
    context = ctx.retrieve(spec, notes)
    if not context:
        drops["no law context retrieved"] += 1
        if spec.kind in LAW_DRIVEN:
            ctx.positives += 1  # a miss all the same
        return []
    if spec.kind in LAW_DRIVEN:
        ob = obligations.get(spec.obligation_id or "")
        if ob is None:
            drops["source obligation not found"] += 1
            return []
        ctx.positives += 1
        ctx.source_chunk_hits += any(c.id == ob.chunk_id for c in context)
        cite = _supporting(context, ob, topics_by_law)
        if cite is not None:
            if cite.law_id == ob.law_id and cite.citation != ob.citation:
                ctx.other_provision += 1
            return [_make(spec, spec.kind, context, notes, Label.NEEDS, cite)]
        # The spec has a legal driver, but the law retrieved for it does not cover it: the flag still follows the
        # stated reason, with no citation (nothing in the prompt grounds one), as for a law outside the corpus.
        ctx.uncovered += 1
        return [_make(spec, UNCOVERED, context, notes, Label.NEEDS)]
    if spec.kind in (AMBIGUOUS, ELSEWHERE_TWIN, BARE_TWIN):
        return [_make(spec, spec.kind, context, notes, Label.NEI)]
    if spec.kind in (BUSINESS, BUSINESS_TWIN, UNIVERSAL_TWIN, UNIVERSAL):
        return [_make(spec, spec.kind, context, notes, Label.NOT_NEEDED)]
    if spec.kind == IMPORTED:
        return _imported(spec, context, notes, ctx, drops)
    drops[f"unknown feature kind {spec.kind!r}"] += 1
    return []




def _imported(spec: FeatureSpec, context: list[LawContext], notes: dict[str, str], ctx: ContextBuilder,
              drops) -> list[Candidate]:
    f = spec.feature
    if f.label is None:
        # Not a training example, but still useful: the feature with its retrieved context, for a reviewer
        # to label (then re-import with the label).
        drops["imported feature has no label (see to_label.jsonl)"] += 1
        ctx.to_label.append({"id": f.id, "name": f.name, "description": f.description,
                             "input": PromptInput.build(f, context, notes).render()})
        return []
    if f.label == Label.NEEDS:
        laws = [x.strip().lower() for x in (f.law or "").split("|") if x.strip()]
        named = [c for c in context if c.title.lower() in laws or c.law_id.lower() in laws] if laws else context
        if not named:
            # The law the user named is not in what inference retrieves for this text (a law outside the corpus,
            # or a retrieval miss): citing another law would teach a wrong citation, and adding the named one would
            # teach a prompt inference never builds. The rule the generated data follows applies: a legal driver the
            # law context does not cover is Needs Geo-Compliance without a citation.
            drops["imported 'Needs' whose law is not in the retrieved context: trained without a citation"] += 1
            return [_make(spec, IMPORTED, context, notes, Label.NEEDS)]
        cited = [c for c in named if citation_matches(c.citation, spec.citations)]
        if spec.citations and not cited:
            drops["imported 'Needs' whose cited provision is not retrieved: its law's best hit cited"] += 1
        return [_make(spec, IMPORTED, context, notes, Label.NEEDS, (cited or named)[0])]
    return [_make(spec, IMPORTED, context, notes, f.label)]


# ---------------------------------------------------------------------------------------- QC steps


def citation_valid(example: Example) -> str | None:
    """None if the answer's citation (if any) is in the example's own law context, else the drop reason. A
    "Needs" answer cites, unless it is the uncited one (:data:`sft.core.reasons.NEEDS_UNCITED`)."""
    answer = example.answer
    if answer.citation is None:
        # A legal driver no law in the prompt covers is the one uncited "Needs" (its fixed reason, no law).
        uncited = answer.law is None and answer.reason == NEEDS_UNCITED
        return "answer needs a citation but has none" if answer.compliance_flag == Label.NEEDS and not uncited else None
    parsed = PromptInput.parse(example.input)
    if parsed is None or answer.citation not in parsed.context_citations():
        return "citation not in law context"
    if answer.law is not None and answer.law not in parsed.context_laws():
        return "law not in law context"
    return None


def _shingles(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower())
    return {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def dedupe(cands: list[Candidate], threshold: float, drops: Counter) -> list[Candidate]:
    """Drop near-duplicates: same answer (label, law, citation), same top context item, and feature text
    3-gram Jaccard >= threshold. Such pairs teach nothing new and would leak across splits."""
    kept: list[Candidate] = []
    seen: dict[tuple, list[set[str]]] = {}
    for c in cands:
        a = c.example.answer
        key = (a.compliance_flag, a.law, a.citation, c.context[0].id if c.context else None)
        sh = _shingles(f"{c.spec.feature.name} {c.spec.feature.description}")
        if any(len(sh & o) / max(1, len(sh | o)) >= threshold for o in seen.get(key, [])):
            drops["near-duplicate"] += 1
            continue
        seen.setdefault(key, []).append(sh)
        kept.append(c)
    return kept


def _stable_order(items: list[Candidate], seed: int, salt: str) -> list[Candidate]:
    """Stable for a seed; the user's own (imported) examples first, so down-sampling drops generated ones first."""
    return sorted(items, key=lambda c: (c.kind != IMPORTED,
                                        hashlib.sha1(f"{seed}|{salt}|{c.example.id}".encode()).hexdigest()))


def balance(cands: list[Candidate], config: BuildConfig, drops: Counter) -> list[Candidate]:
    """Bring the NEI share to ``nei_share`` by down-sampling (NEI if too many; else NN, then positives)."""
    nei = [c for c in cands if c.example.answer.compliance_flag == Label.NEI]
    rest = [c for c in cands if c.example.answer.compliance_flag != Label.NEI]
    s = config.nei_share
    if not nei or not rest:
        return cands
    share = len(nei) / len(cands)
    if share > s:
        target = max(1, round(s * len(rest) / (1 - s)))
        ordered = _stable_order(nei, config.seed, "nei")  # stable for a seed
        drops["class balance (NEI down-sampled)"] += max(0, len(nei) - target)
        nei = ordered[:target]
    elif share < config.nei_min:
        target_rest = round(len(nei) * (1 - s) / s)
        nn = _stable_order([c for c in rest if c.example.answer.compliance_flag == Label.NOT_NEEDED], config.seed, "nn")
        pos = _stable_order([c for c in rest if c.example.answer.compliance_flag == Label.NEEDS], config.seed, "pos")
        cut = len(rest) - target_rest
        cut_nn = min(cut, max(0, len(nn) - len(pos) // 3))
        nn, pos = nn[: len(nn) - cut_nn], pos[: len(pos) - (cut - cut_nn)]
        drops["class balance (majority down-sampled)"] += cut
        rest = nn + pos
    keep = {c.example.id for c in nei + rest}
    return [c for c in cands if c.example.id in keep]


def split_of(group: str, seed: int, fraction: float) -> str:
    h = int(hashlib.sha256(f"{seed}|{group}".encode()).hexdigest()[:12], 16) / 16**12
    return "validation" if h < fraction else "train"


def apply_budget(cands: list[Candidate], tokenizer: Any, max_length: int, drops: Counter) -> tuple[list[Candidate], dict]:
    from sft.core.budget import BudgetReport, fit_to_budget

    report = BudgetReport(max_length)
    kept: list[Candidate] = []
    for c in cands:
        res = fit_to_budget(c.example, tokenizer, max_length)
        report.add(res)
        if res.example is None:
            drops[f"token budget: {res.reason}"] += 1
            continue
        c.example = res.example
        kept.append(c)
    return kept, report.as_dict()


# ----------------------------------------------------------------------------------------- report


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    return {"min": values[0], "median": statistics.median(values), "p95": values[int(0.95 * (len(values) - 1))],
            "max": values[-1], "mean": round(statistics.fmean(values), 1)}


def _example_law(example: Example) -> tuple[str, str]:
    parsed = PromptInput.parse(example.input)
    ctx = parsed.law_context if parsed else []
    law = example.answer.law or (ctx[0]["law"] if ctx else "-")
    jur = ctx[0]["jurisdiction"] if ctx else "-"
    return law, jur


def make_report(splits: dict[str, list[Example]], drops: Counter, extra: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {"counts": {}, "dropped": dict(drops.most_common()), **extra}
    allx = [e for xs in splits.values() for e in xs]
    for name, xs in {**splits, "total": allx}.items():
        labels = Counter(e.answer.compliance_flag.value for e in xs)
        laws, jurs = Counter(), Counter()
        for e in xs:
            law, jur = _example_law(e)
            laws[law] += 1
            jurs[jur] += 1
        report["counts"][name] = {
            "examples": len(xs),
            "groups": len({e.group for e in xs}),
            "by_label": dict(labels.most_common()),
            "nei_share": round(labels[Label.NEI.value] / len(xs), 4) if xs else 0.0,
            "by_law": dict(laws.most_common()),
            "by_jurisdiction": dict(jurs.most_common()),
        }
    ctx_items = [len((PromptInput.parse(e.input) or PromptInput(feature={})).law_context) for e in allx]
    report["context"] = {"items_per_example": _stats(ctx_items), "input_chars": _stats([len(e.input) for e in allx])}
    return report


def report_table(report: dict[str, Any]) -> str:
    """The report as a readable Markdown table (what ``geoprep build`` prints)."""
    c = report["counts"]
    lines = ["| | train | validation | total |", "|---|---:|---:|---:|"]
    lines.append(f"| examples | {c['train']['examples']} | {c['validation']['examples']} | {c['total']['examples']} |")
    for label in Label:
        row = [str(c[s]["by_label"].get(label.value, 0)) for s in ("train", "validation", "total")]
        lines.append(f"| {label.value} | " + " | ".join(row) + " |")
    lines.append(f"| NEI share | {c['train']['nei_share']:.1%} | {c['validation']['nei_share']:.1%} | "
                 f"{c['total']['nei_share']:.1%} |")
    for key, title in (("by_law", "law (cited; else in context)"), ("by_jurisdiction", "jurisdiction of context")):
        lines += ["", f"| {title} | train | validation | total |", "|---|---:|---:|---:|"]
        for name in c["total"][key]:
            lines.append(f"| {name} | " + " | ".join(str(c[s][key].get(name, 0)) for s in ("train", "validation", "total")) + " |")
    lines += ["", "| dropped: reason | count |", "|---|---:|"]
    lines += [f"| {r} | {n} |" for r, n in report["dropped"].items()] or ["| (none) | 0 |"]
    ctx = report["context"]
    lines += ["", "| context | min | median | p95 | max |", "|---|---:|---:|---:|---:|"]
    for key in ("items_per_example", "input_chars"):
        s = ctx.get(key) or {}
        if s:
            lines.append(f"| {key} | {s['min']} | {s['median']} | {s['p95']} | {s['max']} |")
    r = report.get("retrieval")
    if r and r.get("hit_at_k") is not None:
        lines += ["", f"Retrieval ({r['retriever']}): Hit@{r['k']} {r['hit_at_k']:.3f} (source chunk in the context of "
                  f"{r['positives']} positive specs; geoprep eval-retrieval for more)."]
    if report.get("budget"):
        b = report["budget"]
        lines += ["", f"Token budget {b['max_length']}: fit {b['fit']}, trimmed {b['trimmed']}, dropped {b['dropped']}, "
                  f"longest kept {b['longest_kept_tokens']} tokens."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ driver


def build(
    specs: list[FeatureSpec],
    obligations: list[Obligation],
    chunks: Iterable[LawContext],
    retriever: Retriever,
    config: BuildConfig,
    *,
    glossary: Glossary | None = None,
    tokenizer: Any = None,
    progress: Callable[[], None] = lambda: None,
) -> BuildResult:
    if config.max_length is not None and tokenizer is None:
        raise UserError("a token budget (max_length) needs a tokenizer: pass --tokenizer SPEC, e.g. demo")
    drops: Counter[str] = Counter()
    ctx = ContextBuilder(retriever, config, drops)
    cands = assemble(specs, {o.id: o for o in obligations}, ctx, glossary, drops, progress)
    valid = []
    for c in cands:
        reason = citation_valid(c.example)
        if reason:
            drops[reason] += 1
        else:
            valid.append(c)
    cands = dedupe(valid, config.near_dup_threshold, drops)
    budget = None
    if tokenizer is not None and config.max_length is not None:
        cands, budget = apply_budget(cands, tokenizer, config.max_length, drops)
    cands = balance(cands, config, drops)
    splits: dict[str, list[Example]] = {"train": [], "validation": []}
    for c in cands:
        splits[split_of(c.example.group or c.example.id or "", config.seed, config.validation_fraction)].append(c.example)
    extra = {"config": asdict(config), "legal_driver_not_covered_by_context": ctx.uncovered,
             "cited_another_provision_of_the_law": ctx.other_provision, "budget": budget,
             "candidates_by_kind": dict(Counter(c.kind for c in cands)),
             "retrieval": {"retriever": getattr(retriever, "name", type(retriever).__name__), "k": config.top_k,
                           "positives": ctx.positives,
                           "hit_at_k": round(ctx.source_chunk_hits / ctx.positives, 4) if ctx.positives else None}}
    return BuildResult(splits["train"], splits["validation"], make_report(splits, drops, extra), ctx.to_label)


def write_outputs(result: BuildResult, out_dir: str | Path) -> dict[str, Path]:
    """Write the splits and the report atomically; a crash leaves the previous complete set."""
    out = Path(out_dir)
    paths = {"train": out / "train.jsonl", "validation": out / "validation.jsonl",
             "report": out / "qc_report.json", "table": out / "qc_report.md"}
    write_jsonl_atomic(paths["train"], (e.to_json() for e in result.train))
    write_jsonl_atomic(paths["validation"], (e.to_json() for e in result.validation))
    write_json_atomic(paths["report"], result.report)
    write_text_atomic(paths["table"], report_table(result.report))
    to_label = out / "to_label.jsonl"
    if result.to_label:
        write_jsonl_atomic(to_label, result.to_label)
    else:
        to_label.unlink(missing_ok=True)  # stale from an earlier build with other imports
    return paths
