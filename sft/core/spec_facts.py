"""What a spec states, as a few yes/no facts the label head reads beside the hidden states.

Why (#13, 2026-12-04, main job on the demo model): the head on hidden-state means got 91 % of the realistic set
right, but the errors left were ones a reader settles from a few words: "Roll out the new beauty filter in select
regions. Scope and region list still TBD" answered "No" (the labelling rule: a region limit without a reason is
Not Enough Information); "Cut retention of T5 logs ... in all regions ... Global policy change driven by infra
cost" answered NEI (a business reason, everywhere: No). A mean over ~300 tokens of a 135M model dilutes "TBD" or
"infra cost" into the rest; refits of the head (L2, ensembles, train+validation) did not move them
(docs/model-quality.md, session 10). The labelling rules turn on exactly these facts (where; which reason: legal,
business, none; decided or not; is there law that applies), so they go in as features, and the validation split
decides whether the head uses them (:func:`sft.core.label_head.fit_label_head`): they are a hint the fit weighs,
not a rule that overrides the model.

Read from the spec's name and description only (and whether the prompt holds law that may be cited), with the
same functions as the rest of the contract: :func:`sft.core.prompt.region_scope`,
:func:`sft.core.named_law.named_provisions`, :func:`sft.core.prompt.citable_items`.
"""

from __future__ import annotations

import json
import re

from sft.core.contract import PromptInput, spec_text
from sft.core.lawnames import LAW_MENTION
from sft.core.named_law import named_provisions
from sft.core.prompt import SCOPES, citable_items, region_scope

# A stated legal driver: a law's name (:data:`sft.core.lawnames.LAW_MENTION`), the law, regulators, counsel, a
# duty. ("requires" alone is product language: "requires a parent's approval".)
_LEGAL = re.compile(
    r"\b(?:laws?|legal(?:ly)?|statut\w+|regulat(?:ion|ions|or|ors|ory)|comply|complian(?:ce|t)|mandat\w+"
    r"|obligat\w+|required by|we are required|must by law|counsel|attorney general|enforcement action|fines?"
    r"|state rule|curfew rule|reporting duty)\b", re.I)
# A stated business or product reason (the realistic README's list: experiment, pricing, capacity, latency,
# localisation, staged rollout, partnership, licensing, marketing) and its everyday words.
_BUSINESS = re.compile(
    r"\b(?:market test|A/B|experiment\w*|pilot\w*|beta|staged|phased|canary|capacity|latency|cache|CDN"
    r"|costs?|spend|budget|revenue|pric(?:e|es|ing)|engagement|conversion|partners?(?:hip)?|vendors?|licens\w+"
    r"|marketing|campaign|locali[sz]\w+|translation|time zones?|infra\w*|servers?|brand(?:ing)?|seasonal|holiday"
    r"|hygiene|business|growth|metrics?|KPI|performance|commercial|sales|launch(?:es|ing)? first)\b", re.I)
# Undecided scope or reason.
_PENDING = re.compile(
    r"\b(?:TBD|TBC|to be (?:decided|confirmed|determined|scoped)|pending(?! state| approval| accounts?| status)|not final|still being|open question"
    r"|undecided|unclear|not yet (?:decided|known)|to follow|details? (?:later|in review))\b", re.I)

NAMES = [f"scope:{s}" for s in SCOPES] + ["names_law", "legal_reason", "business_reason", "pending", "citable_law"]


def spec_input(prompt: str) -> PromptInput | None:
    """The structured input inside a rendered prompt (:func:`sft.core.contract.render_prompt`), or None for a
    free-text one."""
    start = prompt.find('{"feature": ')
    end = prompt.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        data = json.loads(prompt[start:end + 1])
    except json.JSONDecodeError:
        return None
    try:
        return PromptInput.model_validate(data)
    except ValueError:
        return None


def facts(prompt: str) -> list[float]:
    """:data:`NAMES`, 1.0 or 0.0, of the spec in ``prompt`` (for a free-text prompt, of its whole text)."""
    pi = spec_input(prompt)
    text = spec_text(pi.feature) if pi is not None else prompt
    scope = region_scope(text)
    out = [float(scope == s) for s in SCOPES]
    out.append(float(bool(named_provisions(text) or LAW_MENTION.search(text))))
    out += [float(bool(rx.search(text))) for rx in (_LEGAL, _BUSINESS, _PENDING)]
    out.append(float(bool(pi is not None and citable_items(pi))))
    return out
