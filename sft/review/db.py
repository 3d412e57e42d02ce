"""The review database: SQLAlchemy tables, the engine, and Alembic migrations run on open.

SQLite (a file in the run directory) for one reviewer or a demo; PostgreSQL by URL for a team. The schema
is owned by the Alembic scripts in ``migrations/`` (``open_db`` upgrades to head), never by ``create_all``,
so a team database moves forward with the code.

Audit events are append-only: ``(item_id, seq)`` is unique, a decision inserts ``seq = last + 1`` and a
concurrent decision on the same item loses the insert race, re-reads and retries, so none is lost.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from sft.core.errors import UserError

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored naive UTC: SQLite keeps no zone


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Import(Base):
    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    reviewer: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    added: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)


class Item(Base):
    """One model prediction to review. Never updated after import: decisions live in :class:`Event`."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("feature_id", "model_id", name="uq_items_feature_model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feature_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    flag: Mapped[str | None] = mapped_column(String(40), nullable=True)  # None: the model's output was invalid
    law: Mapped[str | None] = mapped_column(Text, nullable=True)
    citation: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=True)
    context_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_id: Mapped[str] = mapped_column(String(300), default="")
    predicted_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id"))

    def model_answer(self) -> dict[str, Any]:
        return {"flag": self.flag, "law": self.law, "citation": self.citation, "reason": self.reason}


class Event(Base):
    """One reviewer decision: who, when, the answer before and after, and what the model saw."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("item_id", "seq", name="uq_events_item_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(16))  # confirm | correct
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    model_id: Mapped[str] = mapped_column(String(300))
    context_ids: Mapped[list[str]] = mapped_column(JSON)


class Chunk(Base):
    """A law chunk (``LawContext`` JSON) so an item can show the snippets its prediction rested on."""

    __tablename__ = "chunks"
    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def default_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'review.sqlite').resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never wait for the one writer; busy_timeout: a writer waits (up to 30 s) instead of
    # failing with "database is locked" while another reviewer's decision commits (a few ms).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # psycopg 3, not the psycopg2 default
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, json_serializer=lambda o: json.dumps(o, ensure_ascii=False))
    except Exception as e:  # noqa: BLE001 - a bad URL is the user's to fix
        raise UserError(f"--db: cannot use {url!r}: {e}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest Alembic revision (a no-op when it is there already)."""
    import logging

    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl ..." on every open is noise
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_db(url: str) -> sessionmaker:
    """Engine + migrations + a session factory. An unreachable server is a one-line user error."""
    from sqlalchemy.exc import OperationalError

    engine = make_engine(url)
    try:
        migrate(engine)
    except OperationalError as e:
        raise UserError(f"--db: cannot open the review database: {str(e.orig).strip().splitlines()[0]}") from None
    return sessionmaker(engine, expire_on_commit=False)
