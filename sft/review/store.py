"""What the review app does, without the web: import predictions, the queue, decisions, history,
agreement and export. The web pages and the CLI both call these.

Prediction rows are what ``geosft predict`` writes (predictions.jsonl / .csv) and the endpoint returns
(JSON Lines): id, name, flag, law, citation, reason, context_ids, model_id, timestamp, and optionally
confidence (0..1) and needs_review (missing: None and True). A whole file is validated before anything
is written, so a bad upload changes nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sft.core.chunks import read_chunks
from sft.core.contract import (
    LABELS,
    Answer,
    ContractError,
    Example,
    Feature,
    LawContext,
    Prediction,
    PromptInput,
    iter_jsonl,
    normalize_label,
)
from sft.core.errors import UserError
from sft.core.files import write_jsonl_atomic
from sft.review.db import Chunk, Event, Import, Item, User

MAX_TEXT = 4000  # longest law / citation / reason / note a reviewer may submit (characters)
_TRUE, _FALSE = {"true", "1", "yes", "y"}, {"false", "0", "no", "n"}


# ---------------------------------------------------------------------------------------------- import


@dataclass
class ParsedRow:
    where: str
    feature_id: str
    name: str | None  # the endpoint's rows carry none: taken from the features file
    description: str | None
    flag: str | None
    law: str | None
    citation: str | None
    reason: str
    confidence: float | None
    needs_review: bool
    context_ids: list[str]
    model_id: str
    predicted_at: str | None


def _opt_str(v: Any) -> str | None:
    return None if v is None or (isinstance(v, str) and not v.strip()) else str(v).strip()


def _bool(v: Any, where: str) -> bool:
    if v is None or v == "":
        return True  # missing needs_review: a human looks at it
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise ContractError(f"{where}: field 'needs_review': expected true or false, got {v!r}")


def _confidence(v: Any, where: str) -> float | None:
    if v is None or v == "":
        return None
    try:
        c = float(v)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: field 'confidence': expected a number in 0..1, got {v!r}") from None
    if not 0.0 <= c <= 1.0:
        raise ContractError(f"{where}: field 'confidence': {c} is outside 0..1")
    return c


def parse_row(obj: Any, where: str) -> ParsedRow:
    if not isinstance(obj, dict):
        raise ContractError(f"{where}: expected a JSON object (a prediction row), got {type(obj).__name__}")
    if not _opt_str(obj.get("id")):
        raise ContractError(f"{where}: field 'id': missing or empty")
    key = "flag" if "flag" in obj else "compliance_flag"  # geosft predict's rows / the endpoint's
    flag = _opt_str(obj.get(key))
    if flag is not None:
        flag = normalize_label(flag, where=f"{where}: field '{key}'").value
    ctx = obj.get("context_ids") or []
    if isinstance(ctx, str):  # predictions.csv joins them with ';'
        ctx = [c for c in ctx.split(";") if c.strip()]
    if not isinstance(ctx, list) or not all(isinstance(c, str) for c in ctx):
        raise ContractError(f"{where}: field 'context_ids': expected a list of chunk ids")
    return ParsedRow(
        where=where,
        feature_id=str(obj["id"]).strip()[:200],
        name=_opt_str(obj.get("name")),
        description=_opt_str(obj.get("description")),
        flag=flag,
        law=_opt_str(obj.get("law")),
        citation=_opt_str(obj.get("citation")),
        reason=_opt_str(obj.get("reason")) or "",
        confidence=_confidence(obj.get("confidence"), where),
        needs_review=_bool(obj.get("needs_review"), where),
        context_ids=[c.strip() for c in ctx],
        model_id=_opt_str(obj.get("model_id")) or "",
        predicted_at=_opt_str(obj.get("timestamp")),
    )


def _rows(path: Path) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".jsonlines"):
        yield from iter_jsonl(path)
    elif suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"id", "name"} <= set(reader.fieldnames or []):
                raise ContractError(f"{path}:1: header needs columns 'id' and 'name' (geosft predict's CSV), "
                                    f"got {reader.fieldnames}")
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    else:
        raise ContractError(f"{path}: unsupported predictions file type {suffix!r} (use .jsonl or .csv)")


def read_predictions(path: Path) -> list[ParsedRow]:
    """Every row of a predictions file, or :class:`ContractError` at the first bad one (file:line: field)."""
    if not path.is_file():
        raise ContractError(f"{path}: no such file")
    rows = [parse_row(obj, where) for where, obj in _rows(path)]
    if not rows:
        raise ContractError(f"{path}: no prediction rows")
    return rows


def read_feature_file(path: Path) -> dict[str, Feature]:
    """id -> feature (name, description) from the features file the predictions were made for."""
    from sft.inference.predict import read_features

    errors: list[ContractError] = []
    found = {f.id: f for f in read_features(path, errors.append) if f.id}
    if errors:
        raise errors[0]
    return found


def read_law_chunks(path: Path) -> list[LawContext]:
    """Chunks JSONL (geoprep extract) or an index directory (geoprep index: DIR/chunks.jsonl)."""
    if path.is_dir():
        path = path / "chunks.jsonl"
    return list(read_chunks(path))


@dataclass
class ImportResult:
    added: int
    skipped: int
    chunks: int


def import_predictions(
    db: sessionmaker, predictions: Path, reviewer: str, *, features: Path | None = None,
    chunks: Path | None = None, filename: str | None = None,
) -> ImportResult:
    """Validate every input file first, then add all rows in one transaction (nothing on any error).

    A row whose (id, model_id) is already in the database is skipped, so importing a file twice is harmless.
    """
    rows = read_predictions(predictions)
    known = read_feature_file(features) if features else {}
    for r in rows:
        f = known.get(r.feature_id)
        r.name = r.name or (f.name if f else None)
        r.description = r.description or (f.description if f else None)
        if not r.name:
            raise ContractError(f"{r.where}: field 'name': missing (the endpoint's rows have none: add the "
                                "features file the predictions were made for)")
    law_chunks = read_law_chunks(chunks) if chunks else []
    with db() as s, s.begin():
        existing = {(fid, mid) for fid, mid in s.execute(select(Item.feature_id, Item.model_id))}
        known_chunks = set(s.scalars(select(Chunk.id)))
        imp = Import(filename=(filename or predictions.name)[:255], reviewer=reviewer, added=0, skipped=0)
        s.add(imp)
        s.flush()
        for r in rows:
            if (r.feature_id, r.model_id) in existing:
                imp.skipped += 1
                continue
            existing.add((r.feature_id, r.model_id))
            s.add(Item(
                feature_id=r.feature_id, name=r.name, description=r.description,
                flag=r.flag, law=r.law, citation=r.citation, reason=r.reason, confidence=r.confidence,
                needs_review=r.needs_review, context_ids=r.context_ids, model_id=r.model_id,
                predicted_at=r.predicted_at, import_id=imp.id,
            ))
            imp.added += 1
        n_chunks = 0
        for c in law_chunks:
            if c.id not in known_chunks:
                known_chunks.add(c.id)
                s.add(Chunk(id=c.id, data=c.model_dump(mode="json")))
                n_chunks += 1
        return ImportResult(imp.added, imp.skipped, n_chunks)


# ------------------------------------------------------------------------------------------ reading


def _last_events(s: Session) -> dict[int, Event]:
    """The newest event of every decided item (the item's current answer)."""
    newest = select(Event.item_id, func.max(Event.seq).label("seq")).group_by(Event.item_id).subquery()
    q = select(Event).join(newest, (Event.item_id == newest.c.item_id) & (Event.seq == newest.c.seq))
    return {e.item_id: e for e in s.scalars(q)}


def queue(s: Session, *, include_decided: bool = False) -> list[tuple[Item, Event | None]]:
    """Items to review: needs_review first, then the least confident (unknown confidence first)."""
    last = _last_events(s)
    q = select(Item).order_by(
        Item.needs_review.desc(), Item.confidence.is_(None).desc(), Item.confidence.asc(), Item.id.asc()
    )
    return [(it, last.get(it.id)) for it in s.scalars(q) if include_decided or it.id not in last]


def history(s: Session, item_id: int) -> list[Event]:
    return list(s.scalars(select(Event).where(Event.item_id == item_id).order_by(Event.seq.asc())))


def contexts(s: Session, ids: list[str]) -> list[LawContext | str]:
    """The item's law chunks in prompt order; an id with no imported chunk stays a bare id."""
    found = {c.id: LawContext.model_validate(c.data) for c in s.scalars(select(Chunk).where(Chunk.id.in_(ids)))}
    return [found.get(i, i) for i in ids]


# ------------------------------------------------------------------------------------------ deciding


class StaleDecision(Exception):
    pass


def _clean(v: str | None, field_name: str) -> str | None:
    v = (v or "").strip()
    if len(v) > MAX_TEXT:
        raise UserError(f"field '{field_name}': longer than {MAX_TEXT} characters")
    return v or None


def decide(
    db: sessionmaker, item_id: int, reviewer: str, *, flag: str, law: str | None, citation: str | None,
    reason: str | None, note: str | None = None, seen_seq: int | None = None, attempts: int = 20,
) -> tuple[Event, Event | None]:
    """Append a decision. Returns (the new event, the event it superseded when that one was not the one
    the reviewer saw: another reviewer decided in between). Never updates or deletes an event."""
    flag = normalize_label(flag, where="field 'flag'").value
    after = {"flag": flag, "law": _clean(law, "law"), "citation": _clean(citation, "citation"),
             "reason": _clean(reason, "reason") or ""}
    note = _clean(note, "note") or ""
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            with db() as s, s.begin():
                item = s.get(Item, item_id)
                if item is None:
                    raise UserError(f"item {item_id}: no such item")
                last = s.scalars(
                    select(Event).where(Event.item_id == item_id).order_by(Event.seq.desc()).limit(1)
                ).first()
                model = item.model_answer()
                same = all(after[k] == model[k] for k in ("flag", "law", "citation"))
                ev = Event(
                    item_id=item_id, seq=(last.seq if last else 0) + 1, reviewer=reviewer,
                    action="confirm" if same else "correct", before=last.after if last else model, after=after,
                    note=note, model_id=item.model_id, context_ids=list(item.context_ids),
                )
                s.add(ev)
            raced = last if last is not None and (seen_seq or 0) != last.seq else None
            return ev, raced
        except IntegrityError as e:  # another decision took this seq: re-read and append after it
            last_error = e
        except OperationalError as e:  # SQLite busy beyond busy_timeout
            if "locked" not in str(e):
                raise
            last_error = e
    raise UserError(f"item {item_id}: could not record the decision after {attempts} tries: {last_error}")


# ------------------------------------------------------------------------------------ agreement, export


def agreement(s: Session) -> dict[str, Any] | None:
    """Model vs reviewers over decided items: accuracy, macro-F1, confusion (rows: reviewer, cols: model)."""
    from sft.inference.evaluate import compute_metrics

    golds, preds = [], []
    for item, ev in queue(s, include_decided=True):
        if ev is None:
            continue
        golds.append(Answer(compliance_flag=ev.after["flag"], law=ev.after["law"], citation=ev.after["citation"]))
        if item.flag is None:
            preds.append(Prediction(valid=False, error="invalid model output"))
        else:
            preds.append(Prediction(valid=True, answer=Answer(compliance_flag=item.flag, law=item.law,
                                                              citation=item.citation)))
    if not golds:
        return None
    m = compute_metrics(golds, preds)
    m["labels"] = [x.value for x in LABELS]
    return m


@dataclass
class Export:
    features: list[dict[str, Any]] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    no_description: list[str] = field(default_factory=list)  # feature ids: not exportable at all
    missing_chunks: list[str] = field(default_factory=list)  # feature ids: features only, no training line


def build_export(s: Session) -> Export:
    """Reviewed items as labelled features (``geoprep import``) and training examples (``geosft check``).

    A training line needs the law context the model saw: items whose chunks were not imported are left out
    of it (listed), as are items with no description (import the features file with the predictions).
    """
    out = Export()
    for item, ev in queue(s, include_decided=True):
        if ev is None:
            continue
        if not item.description:
            out.no_description.append(item.feature_id)
            continue
        a = ev.after
        out.features.append({"id": item.feature_id, "name": item.name, "description": item.description,
                             "label": a["flag"], **({"law": a["law"]} if a["law"] else {})})
        ctx = contexts(s, list(item.context_ids))
        if any(isinstance(c, str) for c in ctx):
            out.missing_chunks.append(item.feature_id)
            continue
        feature = Feature(id=item.feature_id, name=item.name, description=item.description)
        answer = Answer(compliance_flag=a["flag"], law=a["law"], citation=a["citation"], reason=a["reason"])
        out.examples.append(Example.build(PromptInput.build(feature, ctx), answer, id=f"review:{item.feature_id}",
                                          group=f"review:{item.feature_id}"))
    return out


def features_jsonl(export: Export) -> str:
    return "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in export.features)


def train_jsonl(export: Export) -> str:
    return "".join(ex.to_json() + "\n" for ex in export.examples)


def write_export(s: Session, out_dir: Path) -> Export:
    exp = build_export(s)
    write_jsonl_atomic(out_dir / "reviewed_features.jsonl", exp.features)
    write_jsonl_atomic(out_dir / "reviewed_train.jsonl", (ex.to_json() for ex in exp.examples))
    return exp


# ------------------------------------------------------------------------------------------- users


def add_user(db: sessionmaker, name: str, password: str) -> None:
    from werkzeug.security import generate_password_hash

    name = name.strip()
    if not name or len(name) > 64 or any(ch.isspace() for ch in name):
        raise UserError(f"user name {name!r}: 1-64 characters, no spaces")
    if len(password) < 8:
        raise UserError("password: at least 8 characters")
    with db() as s, s.begin():
        user = s.scalars(select(User).where(User.name == name)).first()
        pw_hash = generate_password_hash(password)  # scrypt, salted
        if user is None:
            s.add(User(name=name, password_hash=pw_hash))
        else:
            user.password_hash = pw_hash  # the admin resets a password


def check_password(db: sessionmaker, name: str, password: str) -> bool:
    from werkzeug.security import check_password_hash

    with db() as s:
        user = s.scalars(select(User).where(User.name == name.strip())).first()
        return user is not None and check_password_hash(user.password_hash, password)
