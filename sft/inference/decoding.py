"""Decoding: turn prompts into answers that always satisfy the contract.

Constrained decoding builds the answer field by field in the exact serialisation of
:meth:`sft.core.contract.Answer.to_json` (the training target), so a fine-tuned model sees the same text it learned:

1. the flag: the three canonical label continuations after ``{"compliance_flag": "`` are scored by
   log-likelihood and the best wins (the model cannot invent a fourth label); a model trained with a label
   head (:mod:`sft.core.label_head`) takes the flag from the head instead, and the steps below follow it;
2. law + citation (:func:`_law_options`): a "Needs" answer picks among the prompt's own law items that apply
   where the spec says the feature ships (those of the law the spec names, when it names one), by
   log-likelihood; ``null`` only when none is left; "No" and NEI cite nothing. The answer therefore cites only
   text present in the prompt, and never a law of another place;
3. the reason (:func:`sft.core.reasons.answer_reason`): one rule from the answer and its prompt, as training
   data writes it: a cited "Needs" names what the cited provision is about (its heading), where, the law and the
   citation; the others say what the spec gave (a business reason for its place, none, a place no law given
   covers). A free-text prompt (a seed file's) has no fields to fill: its reason is generated greedily after
   ``"reason": "`` and cut at the first unescaped quote, JSON-escaped by the serialiser (quotes or backslashes
   the model emits cannot break the JSON), and a sentence of it naming law that is not in the prompt is removed
   (:mod:`sft.inference.grounding`).

Why not a structured-generation library (outlines, lm-format-enforcer)? A grammar only guarantees syntax:
the law/citation must additionally come from *this* prompt's context, which is a per-request choice set, and
scoring whole continuations gives the exact likelihood of each option (a token-level grammar greedily commits
to the first token). The three scoring passes cost about as much as generating ~40 tokens; see
``bench/predict_throughput.py``. The unconstrained path (plain greedy generation + :func:`parse_output`) is
kept for comparison and for measuring how often a model is valid on its own.

The prompt is encoded once per batch and its KV cache is shared by all candidates (labels, citations);
the reason is generated with left padding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sft.core.contract import LABELS, Answer, Label, Prediction, PromptInput, parse_output, spec_text
from sft.core.label_head import LabelHead
from sft.core.named_law import citation_level, named_provisions
from sft.core.prompt import DEFAULT_REASON_TOKENS, citable_items
from sft.core.reasons import answer_reason
from sft.inference.grounding import ground_reason

FLAG_PREFIX = '{"compliance_flag": "'
# Segments are tokenized separately and concatenated, so each boundary must also be a pre-tokenizer boundary
# of the joint training text: byte-level BPE glues a space to what follows (' null', ' "EU'), so the space
# after "law": belongs to the law segment, not to this one.
LAW_PREFIX = '", "law":'
REASON_PREFIX = ', "reason": "'


@dataclass
class DecodeConfig:
    max_reason_tokens: int = DEFAULT_REASON_TOKENS
    """Tokens allowed for the free-text reason (constrained) or the whole answer budget is 4x this."""
    batch_size: int = 8
    """Sequences per forward pass. Label scoring runs 3 sequences per prompt."""

    def __post_init__(self) -> None:
        if self.max_reason_tokens < 1:
            raise ValueError("max_reason_tokens must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt as the trainer sees it: with the tokenizer's BOS when it adds one."""
    return list(tokenizer(prompt)["input_ids"])


@dataclass
class _Prefix:
    """A batch of left-padded prefixes run once; candidates are then scored against its KV cache."""

    cache: Any
    mask: Any  # (B, W) attention mask of the prefixes
    lengths: Any  # (B,) real prefix lengths
    last_logprobs: Any  # (B, V) next-token log-probs after each prefix


def _on_model(model: Any, data: Any) -> Any:
    """A tensor on the model's device (a served GPU model must get GPU inputs; torch's default is the CPU)."""
    import torch

    return torch.tensor(data, device=model.device)


def _prefill(model: Any, seqs: Sequence[list[int]], pad: int) -> _Prefix:
    import torch

    width = max(len(s) for s in seqs)
    ids = _on_model(model, [[pad] * (width - len(s)) + s for s in seqs])
    mask = _on_model(model, [[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return _Prefix(out.cache, mask, mask.sum(-1), torch.log_softmax(out.logits[:, -1].float(), dim=-1))


def score_from_prefix(model: Any, prefix: _Prefix, rows: Sequence[int], conts: Sequence[list[int]],
                      skip: Sequence[int], batch_size: int) -> list[float]:
    """Log-likelihood of ``conts[i]`` after prefix ``rows[i]``, counting tokens from ``skip[i]`` on.

    The prefix (the long prompt) is encoded once; each candidate only runs its own few tokens. This is what
    keeps constrained decoding close to plain generation in cost: scoring 3 labels and k+1 citations
    re-encodes no prompt.
    """
    import copy

    import torch

    scores: list[float] = []
    for start in range(0, len(conts), batch_size):
        sel = _on_model(model, rows[start : start + batch_size])
        chunk = conts[start : start + batch_size]
        width = max(len(c) for c in chunk)
        ids = _on_model(model, [c + [0] * (width - len(c)) for c in chunk])
        cont_mask = _on_model(model, [[1] * len(c) + [0] * (width - len(c)) for c in chunk])
        cache = copy.deepcopy(prefix.cache)
        cache.batch_select_indices(sel)
        with torch.inference_mode():
            out = model(
                input_ids=ids,
                attention_mask=torch.cat([prefix.mask[sel], cont_mask], dim=-1),
                position_ids=prefix.lengths[sel, None] + torch.arange(width, device=model.device),
                cache=cache,
                use_cache=True,
            )
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        for i, cont in enumerate(chunk):
            first = skip[start + i]
            total = 0.0
            for j in range(first, len(cont)):
                dist = prefix.last_logprobs[int(sel[i])] if j == 0 else logprobs[i, j - 1]
                total += float(dist[cont[j]])
            scores.append(total)
    return scores


class _QuoteStop:
    """Stop a row once its generated text closes the JSON string (an unescaped ``"``) or ends with EOS."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tokenizer, self.start = tokenizer, start

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        # Only rows whose newest token has a quote need the full (escape-aware) check.
        done = [
            '"' in self.tokenizer.decode(row[-1:]) and _close_quote(self.tokenizer.decode(row[self.start :])) >= 0
            for row in input_ids
        ]
        return torch.tensor(done, device=input_ids.device)


def _close_quote(text: str) -> int:
    """Index of the first unescaped double quote, or -1."""
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return i
    return -1


def _unescape(fragment: str) -> str:
    """The JSON string body the model wrote, decoded; raw text if its escapes are broken."""
    try:
        return json.loads(f'"{fragment}"')
    except json.JSONDecodeError:
        return fragment.replace("\\", "")


def generate(model: Any, tokenizer: Any, contexts: Sequence[list[int]], max_new_tokens: int, *, stop_at_quote: bool,
             batch_size: int) -> list[str]:
    """Greedy generation for each context (left-padded batches); returns the new text."""
    import torch
    from transformers import StoppingCriteriaList

    pad = tokenizer.pad_token_id
    out: list[str] = []
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start : start + batch_size]
        width = max(len(c) for c in chunk)
        ids = _on_model(model, [[pad] * (width - len(c)) + c for c in chunk])
        mask = _on_model(model, [[0] * (width - len(c)) + [1] * len(c) for c in chunk])
        stops = StoppingCriteriaList([_QuoteStop(tokenizer, width)]) if stop_at_quote else None
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=pad, stopping_criteria=stops, temperature=None, top_p=None, top_k=None,
            )
        out.extend(tokenizer.decode(row[width:], skip_special_tokens=True) for row in gen)
    return out


def _law_options(prompt_input: PromptInput | None, flag: Label) -> list[tuple[str | None, str | None]]:
    """The (law, citation) pairs an answer with ``flag`` may give, deduplicated, in context order.

    - "No" and NEI: only (None, None): training never pairs them with a citation (a "No" citing the DSA, as the
      demo model answered once when offered the context, contradicts its own flag).
    - "Needs": the prompt's items that apply where the spec ships (:func:`sft.core.prompt.citable_items`); of
      those, the ones of a law the spec names itself when it names one (:mod:`sft.core.named_law`). (None, None)
      only when no item is left: the spec's law is not in the prompt (it names one the prompt lacks, COPPA with
      SB 976 shown) or none applies where it ships. Why not offer null beside the items: training teaches a
      legal driver whose retrieved law does not cover it as an uncited "Needs" (``geoprep build``), and the
      demo model then preferred null for 11 of 51 realistic positives whose context held their law (session 10).
      Retrieval puts the right law first for 50 of those 51, so the prompt's law is the better answer; the
      exceptions a 135M model can tell are the explicit ones.
    """
    if flag != Label.NEEDS or prompt_input is None:
        return [(None, None)]
    items = citable_items(prompt_input)
    feature = prompt_input.feature
    named = named_provisions(spec_text(feature))
    if named:
        items = [item for item in items
                 if any(citation_level(n, str(item.get("law", "")), str(item.get("citation", ""))) for n in named)]
    options: list[tuple[str | None, str | None]] = []
    for item in items:
        pair = (item.get("law") or None, item.get("citation") or None)
        if pair != (None, None) and pair not in options:
            options.append(pair)
    return options or [(None, None)]


def _law_text(law: str | None, citation: str | None) -> str:
    return f' {json.dumps(law, ensure_ascii=False)}, "citation": {json.dumps(citation, ensure_ascii=False)}'


def _label_step(model: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int
                ) -> tuple[list[list[int]], _Prefix, list[list[int]], list[float]]:
    """The flag step: each prompt + ``{"compliance_flag": "`` prefilled once, and the log-likelihood of every label
    continuation (``scores[i * len(LABELS) + j]``: prompt i, label j). Returns the prefixes' ids and KV cache too,
    for the steps that continue after the chosen label."""
    base = [_prompt_ids(tokenizer, p) + _encode(tokenizer, FLAG_PREFIX) for p in prompts]
    prefix = _prefill(model, base, tokenizer.pad_token_id)
    label_ids = [_encode(tokenizer, label.value + LAW_PREFIX) for label in LABELS]
    rows = [i for i in range(len(base)) for _ in LABELS]
    scores = score_from_prefix(model, prefix, rows, label_ids * len(base), [0] * len(rows), batch_size)
    return base, prefix, label_ids, scores


def label_scores(model: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int = 8,
                 head: LabelHead | None = None) -> list[dict[str, float]]:
    """Only the flag step of :func:`decode_constrained`: each label's log-likelihood per prompt (the label head's
    log-probabilities when there is one), no reason generated (what ``bench/decision_curve.py`` scores)."""
    if head is not None:
        return head.log_probs(head.features(model, tokenizer, prompts))
    out: list[dict[str, float]] = []
    n = len(LABELS)
    for start in range(0, len(prompts), batch_size):
        _, _, _, scores = _label_step(model, tokenizer, prompts[start : start + batch_size], batch_size)
        out += [{label.value: scores[i * n + j] for j, label in enumerate(LABELS)} for i in range(len(scores) // n)]
    return out


def decode_constrained(model: Any, tokenizer: Any, prompts: Sequence[str], inputs: Sequence[PromptInput | None],
                       config: DecodeConfig | None = None, head: LabelHead | None = None) -> list[Prediction]:
    """Always-valid answers (see the module doc). ``inputs[i]`` is the parsed input of ``prompts[i]``. With a
    label ``head`` (saved by training beside the adapter) the flag is the head's; the rest is decoded after it."""
    cfg = config or DecodeConfig()
    # 1. the flag
    base, prefix, label_ids, scores = _label_step(model, tokenizer, prompts, cfg.batch_size)
    n = len(LABELS)
    lm_scores = None
    if head is not None:
        by_head = head.log_probs(head.features(model, tokenizer, prompts))
        lm_scores, scores = scores, [d[label.value] for d in by_head for label in LABELS]
    flags = [max(range(n), key=lambda j: scores[i * n + j]) for i in range(len(base))]

    # 2. law + citation among the prompt's own context, or null (scored after the chosen label; _law_options)
    options = [_law_options(pi, LABELS[f]) for pi, f in zip(inputs, flags, strict=True)]
    conts = [[_encode(tokenizer, _law_text(*o) + REASON_PREFIX) for o in opts] for opts in options]
    rows, seqs, skip = [], [], []
    for i, row in enumerate(conts):
        for cont in row:
            rows.append(i)
            seqs.append(label_ids[flags[i]] + cont)
            skip.append(len(label_ids[flags[i]]))
    flat = iter(score_from_prefix(model, prefix, rows, seqs, skip, cfg.batch_size))
    picks = []
    for row in conts:
        row_scores = [next(flat) for _ in row]
        picks.append(max(range(len(row)), key=row_scores.__getitem__))
    after_flag = [b + label_ids[f] for b, f in zip(base, flags, strict=True)]

    # 3. the reason: by sft.core.reasons.answer_reason from the answer and its prompt, as training data writes it;
    # generated (and cut at the closing quote) only for a free-text prompt (a seed file's), which has no fields
    del prefix
    todo = [i for i in range(len(base)) if inputs[i] is None]
    contexts = [after_flag[i] + conts[i][picks[i]] for i in todo]
    generated = dict(zip(todo, generate(model, tokenizer, contexts, cfg.max_reason_tokens, stop_at_quote=True,
                                        batch_size=cfg.batch_size) if todo else [], strict=True))

    preds = []
    for i in range(len(base)):
        law, citation = options[i][picks[i]]
        pi = inputs[i]
        if pi is not None:
            reason = answer_reason(LABELS[flags[i]], pi, law, citation)
        else:
            text = generated[i]
            cut = _close_quote(text)
            reason = _unescape(text[:cut] if cut >= 0 else text).strip()
        answer = Answer(compliance_flag=LABELS[flags[i]], law=law, citation=citation, reason=reason)
        # A reason names only law its prompt holds (sft.inference.grounding): enforced here, for any weights.
        answer.reason = ground_reason(answer.reason, answer, inputs[i])
        pred = parse_output(answer.to_json(), inputs[i])
        pred.label_scores = {label.value: scores[i * n + j] for j, label in enumerate(LABELS)}
        if lm_scores is not None:
            pred.lm_label_scores = {label.value: lm_scores[i * n + j] for j, label in enumerate(LABELS)}
        preds.append(pred)
    return preds


def decode_free(model: Any, tokenizer: Any, prompts: Sequence[str], inputs: Sequence[PromptInput | None],
                config: DecodeConfig | None = None) -> list[Prediction]:
    """Plain greedy generation, parsed; may be invalid (``valid=False``). Used for comparison."""
    cfg = config or DecodeConfig()
    contexts = [_prompt_ids(tokenizer, p) for p in prompts]
    budget = cfg.max_reason_tokens + 64  # the JSON frame, label, law and citation
    texts = generate(model, tokenizer, contexts, budget, stop_at_quote=False, batch_size=cfg.batch_size)
    return [parse_output(t, pi) for t, pi in zip(texts, inputs, strict=True)]
