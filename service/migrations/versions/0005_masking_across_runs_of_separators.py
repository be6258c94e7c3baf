"""Numbers typed with several separators between their groups masked.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Phone, card and ID numbers whose digit groups were separated by more than one character
(138  1234  5678, 138 - 1234 - 5678, 6222. 0212. 3456. 7890, as typed petitions space
them) were stored in clear: what is stored is masked again with the wider patterns, and
the explanations stored with the petitions are moved onto the masked text, so that they
quote no number either (including those that 0004 masked in the text and left in them)."""

from __future__ import annotations

from alembic import op

from service.migrations.stored_text import mask_stored_explanations, mask_stored_text

revision = "0005"
down_revision = "0004"
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
