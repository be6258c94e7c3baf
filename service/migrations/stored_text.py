"""Rewriting what is stored, for migrations: free text masked with service/pii.py as it is
now, the explanations stored with it moved onto the masked text, and the explanations of
purged petitions emptied of the words they quote."""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from model.text import PURGED_TEXT, join_fields
from service.cases import placed_explanations, rebase_explanation, with_spans
from service.maintenance import without_text
from service.pii import mask_pii, mask_pii_in

# (table, primary key, free-text columns, JSON columns)
_FREE_TEXT = [
    ("triages", "id", ("external_id", "title_masked", "body_masked"), ()),
    ("decisions", "id", ("decided_by", "reason"), ()),
    ("review_items", "triage_id", ("resolved_by", "note"), ()),
    ("api_keys", "id", ("label",), ()),
    ("audit", "id", (), ("detail",)),
]
BATCH = 1000
# How often a pass over a table says how far it has come: an upgrade runs them at the service's
# start, and on a department's database they take minutes, which the log would otherwise pass
# over in silence, as if the service hung.
PROGRESS_SECONDS = 10.0
log = logging.getLogger(__name__)


class _Progress:
    """Log lines for one pass over a table: its size when it begins, then how far it has come
    every PROGRESS_SECONDS, and when it is done."""

    def __init__(self, connection: Connection, table: str, doing: str, where: str = "", **params: object) -> None:
        self.table, self.doing, self.done = table, doing, 0
        self.total = connection.execute(sa.text(f"SELECT count(*) FROM {table} {where}"), params).scalar() or 0
        self.began = self.said = time.monotonic()
        log.info("%s: %d rows of %s", doing, self.total, table)

    def add(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self.said >= PROGRESS_SECONDS:
            self.said = now
            log.info("%s: %d of %d rows of %s", self.doing, self.done, self.total, self.table)

    def end(self) -> None:
        log.info("%s: %d rows of %s done in %.0f s", self.doing, self.done, self.table, time.monotonic() - self.began)


def mask_stored_text(connection: Connection) -> None:
    """Every free-text column masked again (a pattern that finds more finds it in old rows too)."""
    postgres = connection.dialect.name == "postgresql"
    for table, key, texts, documents in _FREE_TEXT:
        columns = [key, *texts, *documents]
        last = None
        progress = _Progress(connection, table, "masking stored text again")
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
                    elif (masked_text := mask_pii(value)) != value:
                        changed[name] = masked_text
                if changed:
                    assignments = ", ".join(f"{name} = CAST(:{name} AS JSON)" if name in documents and postgres
                                            else f"{name} = :{name}" for name in changed)
                    connection.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE {key} = :key"), {**changed, "key": row[0]})
            progress.add(len(rows))
            if len(rows) < BATCH:
                break
            last = rows[-1][0]
        progress.end()


def mask_stored_explanations(connection: Connection) -> None:
    """Every stored explanation on its petition's text as masking masks it now, quoting no
    number in clear.

    Run before `mask_stored_text`: a span is moved with the characters it covers, which
    needs the text as it was. A span whose ends fall inside a number masked now is dropped,
    as the service drops it when it stores a triage (service.cases.placed_explanations)."""
    cast = "CAST(:value AS JSON)" if connection.dialect.name == "postgresql" else ":value"
    last = ""
    progress = _Progress(connection, "triages", "moving stored explanations onto the masked text")
    while True:
        rows = connection.execute(sa.text(f"SELECT id, title_masked, body_masked, suggestion FROM triages WHERE id > :last "
                                          f"ORDER BY id LIMIT {BATCH}"), {"last": last}).fetchall()
        for key, title, body, stored in rows:
            suggestion = json.loads(stored) if isinstance(stored, str) else stored
            explanation = suggestion.get("explanation") if isinstance(suggestion, dict) else None
            if not isinstance(explanation, dict):
                continue
            masked = mask_pii_in(_on_masked_text(explanation, join_fields(title, body), join_fields(mask_pii(title), mask_pii(body))))
            if masked != explanation:
                connection.execute(sa.text(f"UPDATE triages SET suggestion = {cast} WHERE id = :key"),
                                   {"value": json.dumps({**suggestion, "explanation": masked}, ensure_ascii=False), "key": key})
        progress.add(len(rows))
        if len(rows) < BATCH:
            break
        last = rows[-1][0]
    progress.end()


def _on_masked_text(explanation: dict, text: str, masked: str) -> dict:
    """`explanation`, its spans on `text`, moved onto `masked` (`text` masked now)."""
    if not all(isinstance(part, dict) and all(isinstance(item, dict) and isinstance(item.get("spans"), list)
                                              for item in (*part.get("terms", []), *part.get("rules", [])))
               for part in explanation.values()):
        return explanation  # not as the service writes one: its strings are masked all the same
    placed = placed_explanations(explanation, text, masked)[1]
    # A span still quoting a number in clear was left where it was by an earlier masking
    # (0004 masked the text, not its explanation): its words masked, it is found again on the
    # masked text, or dropped. On a span that is where its words are, this changes nothing.
    return rebase_explanation(with_spans(placed, lambda spans: [{**span, "text": mask_pii(span["text"])} for span in spans]),
                              masked)


def empty_purged_explanations(connection: Connection) -> None:
    """The suggestions of petitions already purged, without the words their explanations quote."""
    cast = "CAST(:value AS JSON)" if connection.dialect.name == "postgresql" else ":value"
    last = ""
    while True:
        rows = connection.execute(sa.text(f"SELECT id, suggestion FROM triages WHERE body_masked = :purged AND id > :last "
                                          f"ORDER BY id LIMIT {BATCH}"), {"purged": PURGED_TEXT, "last": last}).fetchall()
        for key, stored in rows:
            suggestion = json.loads(stored) if isinstance(stored, str) else stored
            emptied = without_text(suggestion)
            if emptied != suggestion:
                connection.execute(sa.text(f"UPDATE triages SET suggestion = {cast} WHERE id = :key"),
                                   {"value": json.dumps(emptied, ensure_ascii=False), "key": key})
        if len(rows) < BATCH:
            break
        last = rows[-1][0]
