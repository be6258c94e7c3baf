"""Numbers with tabs between their groups masked.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A tab was no separator between digit groups, so a number pasted from a spreadsheet, one
group to a cell (138<tab>1234<tab>5678), was stored in clear: what is stored is masked
again with the patterns that take a tab as a space, and the explanations stored with the
petitions are moved onto the masked text, as 0005 moved them, so that they quote no
number either."""

from __future__ import annotations

from alembic import op

from service.migrations.stored_text import mask_stored_explanations, mask_stored_text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    # The explanations first: their spans move with the text as it was before it is masked.
    mask_stored_explanations(connection)
    mask_stored_text(connection)


def downgrade() -> None:
    # Nothing to undo: what was masked is not kept anywhere to put back.
    pass
