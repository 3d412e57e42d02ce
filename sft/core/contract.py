"""The one data contract shared by prep, training, eval, predict and serve.

Everything that crosses a stage boundary is defined here and nowhere else:

* :class:`Label` and :func:`normalize_label`: the three canonical answers and the real-world spellings
  that map onto them;
* :class:`LawContext`: one retrieved piece of law, with the metadata needed to audit an answer;
* :class:`Feature`: a product feature spec (what users feed to ``predict`` and the endpoint);
* :class:`PromptInput`: the structured ``input`` of a prompt (feature, glossary notes, law context);
* :class:`Answer`: the model's output schema; :class:`Example`: one training line;
* :func:`render_prompt`: the only way any entry point turns an example into model text;
* :func:`parse_output`: model text -> :class:`Prediction` (valid answer, or invalid with the reason).

Only pydantic and the standard library are imported, so the CLIs stay fast and data prep does not need
torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sft.core.errors import UserError

_M = TypeVar("_M", bound=BaseModel)


class ContractError(UserError, ValueError):
    """Input that breaks the contract. The message starts with where: ``file:line: field: problem``."""


# --------------------------------------------------------------------------------------------- labels


class Label(StrEnum):
    NEEDS = "Needs Geo-Compliance"
    NOT_NEEDED = "No Geo-Compliance Needed"
    NEI = "Not Enough Information"


LABELS: tuple[Label, ...] = tuple(Label)

# Keys are compared after _label_key(): lower case, '-', '_' and whitespace runs folded to one space.
_LABEL_VARIANTS: dict[str, Label] = {
    **dict.fromkeys(
        [
            "needs geo compliance",
            "needs geocompliance",
            "needs geo compliance logic",
            "requires geo compliance",
            "geo compliance required",
            "geo compliance needed",
            "needs compliance",
            "yes",
            "y",
            "true",
            "1",
        ],
        Label.NEEDS,
    ),
    **dict.fromkeys(
        [
            "no geo compliance needed",
            "no geo compliance required",
            "no geo compliance impact",
            "no geocompliance needed",
            "no geocompliance required",
            "geo compliance not needed",
            "geo compliance not required",
            "not needed",
            "not required",
            "no",
            "n",
            "false",
            "0",
        ],
        Label.NOT_NEEDED,
    ),
    **dict.fromkeys(
        [
            "not enough information",
            "not enough info",
            "insufficient information",
            "needs human review",
            "human review",
            "nei",
            "unknown",
            "unclear",
        ],
        Label.NEI,
    ),
}


def _label_key(value: str) -> str:
    return re.sub(r"[\s_\-]+", " ", value.strip().strip(".").lower()).strip()


def normalize_label(value: Any, *, where: str | None = None) -> Label:
    """Map a label as found in the wild onto a canonical :class:`Label`.

    Accepts the canonical names, the variants seen in public datasets ("No Geo-Compliance Required",
    "No Geo-Compliance Impact", "Needs Human Review" -> abstain), case/whitespace/hyphen variations and
    yes/no/true/false (also real booleans). Anything else raises :class:`ContractError` naming ``where``.
    """
    if isinstance(value, Label):
        return value
    if isinstance(value, bool):
        return Label.NEEDS if value else Label.NOT_NEEDED
    if isinstance(value, str):
        label = _LABEL_VARIANTS.get(_label_key(value))
        if label is not None:
            return label
    prefix = f"{where}: " if where else ""
    raise ContractError(
        f"{prefix}unknown label {value!r}; expected one of: " + ", ".join(repr(x.value) for x in LABELS)
    )


# ------------------------------------------------------------------------------------ data records


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class LawContext(_Record):
    """One retrieved piece of law text and where it comes from."""

    id: str = Field(description="Stable chunk id, e.g. 'eu_dsa#art28-1'; used in audit trails.")
    law_id: str = Field(description="Registry id of the law, e.g. 'eu_dsa'.")
    title: str = Field(description="Short law name, e.g. 'EU Digital Services Act'.")
    citation: str = Field(description="Pinpoint citation, e.g. 'DSA Art. 28(1)'.")
    article: str | None = None
    section: str | None = None
    jurisdiction: str = Field(description="ISO-like code: 'EU', 'US', 'US-CA', 'US-FL', 'US-UT', ...")
    date: str | None = Field(default=None, description="Date of the act (ISO 8601).")
    uri: str | None = None
    page: int | None = None
    source: str | None = Field(default=None, description="File or backend the text came from.")
    snippet: str
    score: float | None = None
    doc_kind: str = Field(default="law", description="'law' (statute, regulation, bill, court rule) or "
                          "'secondary' (opinion, complaint, report, article, book: background, never an answer's law).")
    found_by: str | None = Field(default=None, description="How the metadata was found: 'registry' (file name), "
                                 "'content' (registry signatures in the text) or 'inferred' (no registry entry).")

    def prompt_view(self) -> dict[str, Any]:
        """The fields the model sees. Kept small: every token here costs training time (the chunk id, ~10
        tokens an item, is not shown: the answer names law and citation, never the id)."""
        return {
            "law": self.title,
            "citation": self.citation,
            "jurisdiction": self.jurisdiction,
            "text": self.snippet,
        }


class Feature(_Record):
    """A product feature spec, written the way a product team writes it."""

    id: str | None = None
    name: str
    description: str
    label: Label | None = None
    law: str | None = None

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, v: Any) -> Label | None:
        return None if v in (None, "") else normalize_label(v)


def spec_text(feature: Feature | dict[str, Any]) -> str:
    """A spec's text as every rule reads it (places, named law, glossary terms, retrieval, reasons): its name, then
    its description. A :class:`Feature` or a prompt's ``feature`` dict."""
    if isinstance(feature, Feature):
        return f"{feature.name}. {feature.description}"
    return f"{feature.get('name', '')}. {feature.get('description', '')}"


class PromptInput(_Record):
    """The structured ``input`` of a prompt. Rendered as JSON so context can be trimmed and re-rendered."""

    feature: dict[str, str]
    glossary: dict[str, str] = Field(default_factory=dict)
    law_context: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def build(
        cls, feature: Feature, context: list[LawContext], glossary: dict[str, str] | None = None
    ) -> PromptInput:
        return cls(
            feature={"name": feature.name, "description": feature.description},
            glossary=dict(glossary or {}),
            law_context=[c.prompt_view() for c in context],
        )

    def render(self) -> str:
        data: dict[str, Any] = {"feature": self.feature}
        if self.glossary:
            data["glossary"] = self.glossary
        data["law_context"] = self.law_context
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def parse(cls, text: str) -> PromptInput | None:
        """The structured form of an ``input`` string, or None for free-text inputs (seed files)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            return None
        if not isinstance(data, dict) or "feature" not in data:
            return None
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None

    def context_citations(self) -> list[str]:
        return [str(c.get("citation")) for c in self.law_context if c.get("citation")]

    def context_laws(self) -> list[str]:
        return [str(c.get("law")) for c in self.law_context if c.get("law")]


class Answer(_Record):
    """What the model must produce. Field order is the generation order: the flag comes first."""

    compliance_flag: Label
    law: str | None = None
    citation: str | None = None
    reason: str = ""

    @field_validator("compliance_flag", mode="before")
    @classmethod
    def _flag(cls, v: Any) -> Label:
        return normalize_label(v, where="compliance_flag")

    @field_validator("law", "citation", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("", "none", "null", "n/a") else v

    def to_json(self) -> str:
        """Canonical serialisation: the training target and what the endpoint returns."""
        return json.dumps(
            {
                "compliance_flag": self.compliance_flag.value,
                "law": self.law,
                "citation": self.citation,
                "reason": self.reason,
            },
            ensure_ascii=False,
        )


# Short on purpose: it is in every training sequence and every request. The answer's shape (its four keys, the
# three labels) is taught by the training targets and enforced by constrained decoding, so spelling it out here
# only cost tokens (87 -> 23 tokens, a quarter of an average training sequence's length in CPU time).
DEFAULT_INSTRUCTION = (
    "Does this feature need geo-specific compliance logic? Answer in JSON; law and citation only from the law "
    "context."
)

PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n{input}\n\n### Response:\n"


class Example(_Record):
    """One training line: ``instruction``, ``input`` and ``output`` (the answer as a JSON string)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    instruction: str
    input: str
    output: str
    id: str | None = None
    group: str | None = Field(default=None, description="Source obligation; splits never cut a group.")

    @property
    def answer(self) -> Answer:
        return Answer.model_validate_json(self.output)

    @classmethod
    def build(
        cls,
        prompt_input: PromptInput,
        answer: Answer,
        *,
        instruction: str = DEFAULT_INSTRUCTION,
        id: str | None = None,
        group: str | None = None,
    ) -> Example:
        return cls(instruction=instruction, input=prompt_input.render(), output=answer.to_json(), id=id, group=group)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def render_prompt(instruction: str, input: str, template: str = PROMPT_TEMPLATE) -> str:
    """The model's prompt. Training, eval, predict and serve all call this and nothing else."""
    return template.format(instruction=instruction, input=input)


def render_completion(answer: Answer | str) -> str:
    """The training target after the prompt (the tokenizer's EOS is appended by the trainer)."""
    return answer.to_json() if isinstance(answer, Answer) else Answer.model_validate_json(answer).to_json()


# -------------------------------------------------------------------------------------- reading


def _answer_from_output(raw: Any, where: str) -> Answer:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ContractError(f"{where}: field 'output': not a JSON object ({e.msg})") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: field 'output': expected a JSON object, got {type(raw).__name__}")
    if "compliance_flag" not in raw:
        raise ContractError(f"{where}: field 'output.compliance_flag': missing")
    flag = normalize_label(raw["compliance_flag"], where=f"{where}: field 'output.compliance_flag'")
    try:
        return Answer.model_validate({**raw, "compliance_flag": flag})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ContractError(f"{where}: field 'output.{loc}': {err['msg']}") from None


def parse_example(obj: Any, where: str) -> Example:
    """Validate one decoded JSONL object as an :class:`Example`; the output is canonicalised."""
    if not isinstance(obj, dict):
        raise ContractError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("instruction", "input", "output"):
        if key not in obj:
            raise ContractError(f"{where}: field '{key}': missing")
    for key in ("instruction", "input"):
        if not isinstance(obj[key], str):
            raise ContractError(f"{where}: field '{key}': expected a string")
    answer = _answer_from_output(obj["output"], where)
    return Example.model_validate({**obj, "output": answer.to_json()})


def iter_jsonl(
    path: str | Path, on_error: Callable[[ContractError], None] | None = None
) -> Iterator[tuple[str, Any]]:
    """Yield ``("file:line", object)`` for each non-blank line.

    A line that is not JSON raises :class:`ContractError`, or with ``on_error`` is reported and skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: no such file")
    with path.open("rb") as fh:  # decoded line by line: a non-UTF-8 line is reported with its number
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                if not line.strip():
                    continue
                obj = json.loads(line)
            except UnicodeDecodeError as e:
                err = ContractError(f"{where}: not UTF-8 text (byte {raw[e.start:e.start + 1]!r} at column "
                                    f"{e.start + 1}); save the file as UTF-8")
                if on_error is None:
                    raise err from None
                on_error(err)
                continue
            except (json.JSONDecodeError, RecursionError) as e:
                msg = f"{e.msg}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                err = ContractError(f"{where}: invalid JSON ({msg})")
                if on_error is None:
                    raise err from None
                on_error(err)
                continue
            yield where, obj


def read_records(path: str | Path, model: type[_M]) -> Iterator[_M]:
    """Yield ``model`` records from a JSONL file; a bad line raises :class:`ContractError` naming
    ``file:line`` and the field (chunks, obligations, feature specs: every stage file reads this way)."""
    for where, obj in iter_jsonl(path):
        try:
            yield model.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "record"
            raise ContractError(f"{where}: field '{field}': {err['msg']}") from None


def read_examples(
    path: str | Path, on_error: Callable[[ContractError], None] | None = None
) -> Iterator[Example]:
    """Read a training JSONL file (ours or seed-shaped). Errors name ``file:line`` and the field.

    With ``on_error`` a bad line is reported to it and skipped; without, the first one raises.
    """
    for where, obj in iter_jsonl(path, on_error):
        try:
            yield parse_example(obj, where)
        except ContractError as e:
            if on_error is None:
                raise
            on_error(e)


# ------------------------------------------------------------------------------------- predictions


class Prediction(_Record):
    """A parsed model answer. ``valid`` is False when the text does not satisfy the schema."""

    valid: bool
    answer: Answer | None = None
    error: str | None = None
    raw: str = ""
    grounded: bool | None = Field(
        default=None, description="Citation present in the prompt's law context (None: no citation)."
    )
    label_scores: dict[str, float] | None = Field(
        default=None, description="Log-likelihood of each label continuation (constrained decoding only); the "
        "label head's log-probabilities when the model has one (it chose the flag)."
    )
    lm_label_scores: dict[str, float] | None = Field(
        default=None, description="With a label head: the LM's own label log-likelihoods, for comparison."
    )
    confidence: float | None = Field(
        default=None, description="Calibrated probability of the chosen label (None: no calibration data)."
    )
    needs_review: bool | None = Field(
        default=None, description="Confidence under the model's review threshold (or an invalid answer)."
    )


def _first_json_object(text: str) -> str | None:
    start = text.find("{")
    if start < 0:
        return None
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def parse_output(text: str, prompt_input: PromptInput | None = None) -> Prediction:
    """Model text -> :class:`Prediction`. Never guesses: malformed text is ``valid=False`` with the reason.

    With ``prompt_input`` the citation is checked against the prompt's law context (``grounded``).
    """
    blob = _first_json_object(text)
    if blob is None:
        return Prediction(valid=False, error="no JSON object in the output", raw=text)
    try:
        data = json.loads(blob)
    except json.JSONDecodeError as e:
        return Prediction(valid=False, error=f"invalid JSON: {e.msg}", raw=text)
    if not isinstance(data, dict) or "compliance_flag" not in data:
        return Prediction(valid=False, error="missing field 'compliance_flag'", raw=text)
    try:
        answer = Answer.model_validate(data)
    except (ValidationError, ContractError) as e:
        msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
        return Prediction(valid=False, error=msg, raw=text)
    grounded = None
    if prompt_input is not None and answer.citation is not None:
        grounded = answer.citation in prompt_input.context_citations()
    return Prediction(valid=True, answer=answer, raw=text, grounded=grounded)
