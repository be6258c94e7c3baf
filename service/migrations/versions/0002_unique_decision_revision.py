"""One decision per (triage, revision).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Two decisions on the same triage sent at the same moment could both read the same
latest revision and both be stored as its successor (seen with concurrent requests
against one uvicorn process). The revisions already stored are renumbered in the order
they were stored (their id), which leaves correctly numbered ones as they are; then a
unique index forbids the duplicate, and the service counts again when it meets it."""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE decisions SET revision = (SELECT count(*) FROM decisions AS earlier "
        "WHERE earlier.triage_id = decisions.triage_id AND earlier.id <= decisions.id)"
    )
    op.create_index("uq_decisions_triage_revision", "decisions", ["triage_id", "revision"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_decisions_triage_revision", table_name="decisions")
