"""The review schema: users, imports, items, append-only events, law chunks, settings.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("feature_id", sa.String(200), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("flag", sa.String(40)),
        sa.Column("law", sa.Text),
        sa.Column("citation", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("context_ids", sa.JSON, nullable=False),
        sa.Column("model_id", sa.String(300), nullable=False),
        sa.Column("predicted_at", sa.String(40)),
        sa.Column("import_id", sa.Integer, sa.ForeignKey("imports.id"), nullable=False),
        sa.UniqueConstraint("feature_id", "model_id", name="uq_items_feature_model"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("before", sa.JSON, nullable=False),
        sa.Column("after", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("model_id", sa.String(300), nullable=False),
        sa.Column("context_ids", sa.JSON, nullable=False),
        sa.UniqueConstraint("item_id", "seq", name="uq_events_item_seq"),
    )
    op.create_index("ix_events_item_id", "events", ["item_id"])
    op.create_table(
        "chunks",
        sa.Column("id", sa.String(300), primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "chunks", "events", "items", "imports", "users"):
        op.drop_table(table)
