"""The initial schema: triages, decisions (revisions), the review queue, API keys, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Written out column by column, not imported from service.database: a revision
must keep creating the schema as it was then, whatever the models become.
Identical to what `Base.metadata.create_all` made before migrations existed
(tests/test_service_storage.py compares them), so such a database is stamped
at 0001 rather than rebuilt."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_INDEXES = {
    "api_keys": [("prefix", True)],
    "audit": [("at", False)],
    "triages": [("created_at", False), ("division", False), ("external_id", False), ("risk", False)],
    "decisions": [("created_at", False), ("triage_id", False)],
    "review_items": [("created_at", False), ("status", False)],
}


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _when("at"),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "triages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=True),
        _when("received_at", nullable=True),
        _when("created_at"),
        sa.Column("title_masked", sa.Text(), nullable=False),
        sa.Column("body_masked", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(length=80), nullable=False),
        sa.Column("division", sa.String(length=40), nullable=False),
        sa.Column("division_confidence", sa.Float(), nullable=False),
        sa.Column("risk", sa.String(length=10), nullable=False),
        sa.Column("key_group", sa.String(length=40), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("suggestion", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("triage_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("division", sa.String(length=40), nullable=False),
        sa.Column("risk", sa.String(length=10), nullable=False),
        sa.Column("key_group", sa.String(length=40), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(["triage_id"], ["triages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "review_items",
        sa.Column("triage_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        _when("created_at"),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        _when("resolved_at", nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["triage_id"], ["triages.id"]),
        sa.PrimaryKeyConstraint("triage_id"),
    )
    for table, columns in _INDEXES.items():
        for column, unique in columns:
            op.create_index(f"ix_{table}_{column}", table, [column], unique=unique)


def downgrade() -> None:
    for table in ("review_items", "decisions", "triages", "audit", "api_keys"):
        for column, _unique in _INDEXES[table]:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.drop_table(table)
