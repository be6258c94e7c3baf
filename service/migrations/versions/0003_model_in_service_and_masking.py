"""The model in service as shared state; free text already stored is masked.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Each worker process held its own model, so a reload reached one worker of several and a
restart went back to TRIAGE_MODEL_DIR. The model in service is now one row that every
worker follows. Staff free text (reasons, notes, decided_by, external ids, audit details)
was stored as sent; it is masked from now on, and here what was stored before."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from service.pii import mask_pii, mask_pii_in

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, primary key, free-text columns, JSON columns)
_FREE_TEXT = [
    ("triages", "id", ("external_id", "title_masked", "body_masked"), ()),
    ("decisions", "id", ("decided_by", "reason"), ()),
    ("review_items", "triage_id", ("resolved_by", "note"), ()),
    ("api_keys", "id", ("label",), ()),
    ("audit", "id", (), ("detail",)),
]
BATCH = 1000


def _mask_stored_text() -> None:
    connection = op.get_bind()
    postgres = connection.dialect.name == "postgresql"
    for table, key, texts, documents in _FREE_TEXT:
        columns = [key, *texts, *documents]
        last = None
        while True:
            query = f"SELECT {', '.join(columns)} FROM {table}"  # names from the list above, never input
            if last is not None:
                query += f" WHERE {key} > :last"
            rows = connection.execute(sa.text(query + f" ORDER BY {key} LIMIT {BATCH}"),
                                      {} if last is None else {"last": last}).fetchall()
            for row in rows:
                changed = {}
                for name, value in zip(columns[1:], row[1:], strict=True):
                    if value is None:
                        continue
                    if name in documents:
                        loaded = json.loads(value) if isinstance(value, str) else value
                        masked = mask_pii_in(loaded)
                        if masked != loaded:
                            changed[name] = json.dumps(masked, ensure_ascii=False)
                    elif mask_pii(value) != value:
                        changed[name] = mask_pii(value)
                if changed:
                    assignments = ", ".join(f"{name} = CAST(:{name} AS JSON)" if name in documents and postgres
                                            else f"{name} = :{name}" for name in changed)
                    connection.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE {key} = :key"), {**changed, "key": row[0]})
            if len(rows) < BATCH:
                break
            last = rows[-1][0]


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
    _mask_stored_text()


def downgrade() -> None:
    op.drop_table("model_in_service")
