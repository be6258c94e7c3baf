"""Numbers split by other separators masked; purged petitions' explanations emptied.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Phone, card and ID numbers whose digit groups were split by non-breaking or zero-width
spaces, dots or Unicode dashes (text pasted from a word processor) were stored in clear:
what is stored is masked again with the wider patterns. `triage purge` emptied a
petition's title and body but left the words and spans its explanation quotes; it now
empties them too, and here for the petitions purged before."""

from __future__ import annotations

from alembic import op

from service.migrations.stored_text import empty_purged_explanations, mask_stored_text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    mask_stored_text(connection)
    empty_purged_explanations(connection)


def downgrade() -> None:
    # Nothing to undo: what was masked or emptied is not kept anywhere to put back.
    pass
