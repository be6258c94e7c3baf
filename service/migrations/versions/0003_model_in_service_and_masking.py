"""The model in service as shared state; free text already stored is masked.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Each worker process held its own model, so a reload reached one worker of several and a
restart went back to TRIAGE_MODEL_DIR. The model in service is now one row that every
worker follows. Staff free text (reasons, notes, decided_by, external ids, audit details)
was stored as sent; it is masked from now on, and here what was stored before."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.migrations.stored_text import mask_stored_text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_in_service",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=80), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    mask_stored_text(op.get_bind())


def downgrade() -> None:
    op.drop_table("model_in_service")
