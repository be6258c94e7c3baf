"""Backup, restore and retention of the service's database, for `triage backup`,
`triage restore` and `triage purge` (docs/operations.md says when to use which)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from model.text import PURGED_TEXT as PURGED
from service.database import AuditEntry, Database, ReviewItem, TriageRecord, _sqlite_path


class MaintenanceError(RuntimeError):
    """An operation that cannot be done; the message names the file or setting."""


def sqlite_file(database_url: str) -> Path:
    path = _sqlite_path(database_url)
    if path is None:
        raise MaintenanceError("the database is not a SQLite file (TRIAGE_DATABASE_URL); back up PostgreSQL with "
                               "pg_dump -Fc and restore with pg_restore, see docs/operations.md")
    if not path.is_file():
        raise MaintenanceError(f"database file {path} does not exist")
    return path


def existing_database(database_url: str) -> str:
    """`database_url`, refused when it names a SQLite file that is not there. Commands that
    read or change the service's records (purge, keys list and revoke) would otherwise create
    an empty database in its place and report success on it: a TRIAGE_HOME or
    TRIAGE_DATABASE_URL that points elsewhere than the service's goes unnoticed."""
    path = _sqlite_path(database_url)
    if path is not None and not path.is_file():
        raise MaintenanceError(f"database file {path} does not exist; check TRIAGE_HOME or TRIAGE_DATABASE_URL "
                               "(`triage serve` creates it on first start)")
    return database_url


def _check_backup(path: Path) -> str:
    """The schema revision of a SQLite file that is a sound backup of this service."""
    if not path.is_file():
        # SQLite says only "unable to open database file", which read as a damaged backup.
        raise MaintenanceError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            if integrity != "ok":
                raise MaintenanceError(f"{path} fails SQLite's integrity check: {integrity}")
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise MaintenanceError(f"{path} is not a backup of this service's database ({exc})") from None
    if revision is None:
        raise MaintenanceError(f"{path} has no schema revision; not a backup of this service's database")
    return str(revision[0])


def _is_sqlite(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def backup(database_url: str, out: Path) -> str:
    """A consistent copy of the live SQLite database (SQLite's online backup: the service
    keeps serving), written to a temporary file beside `out`, checked, then renamed.
    Owner-only, like the database. Returns the copy's schema revision."""
    source = sqlite_file(database_url)
    if out.exists():
        # The copy is renamed over `out`: over the live database, the running service went on
        # writing into the file just unlinked, and everything after it was lost at its restart;
        # over a ledger or a document, that file was gone. An earlier backup is replaced.
        if out.samefile(source):
            raise MaintenanceError(f"{out} is the database itself; --out names the copy to write")
        if not _is_sqlite(out):
            raise MaintenanceError(f"{out} exists and is not a backup (not a SQLite file); backing up there would "
                                   "replace it: choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)  # 0600
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
            # One self-contained file: not in WAL mode, so no -wal beside it is needed.
            dst.execute("PRAGMA journal_mode=DELETE")
        revision = _check_backup(Path(tmp))
        os.replace(tmp, out)
    except sqlite3.Error as exc:
        # e.g. the backup disk is full: said in one line naming both files, not as a traceback.
        Path(tmp).unlink(missing_ok=True)
        raise MaintenanceError(f"backing up {source} to {out} failed: {exc}; nothing was written to {out}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return revision


def restore(backup_file: Path, database_url: str) -> str:
    """Replaces the database's content with the backup's, through SQLite's backup API (so
    the WAL and any open connection stay consistent). Returns the restored revision."""
    revision = _check_backup(backup_file)
    target = _sqlite_path(database_url)
    if target is None:
        raise MaintenanceError("the database is not a SQLite file; restore PostgreSQL with pg_restore, see docs/operations.md")
    if not target.exists():
        Database(database_url).migrate()  # a new, owner-only file of the current schema, then overwritten
    try:
        with contextlib.closing(sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)) as src, \
                contextlib.closing(sqlite3.connect(target, timeout=30)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        # A full disk, a read-only file or a writer holding the database past the timeout. SQLite
        # copies within one transaction of the target, so the target keeps its content.
        raise MaintenanceError(f"restoring {backup_file} into {target} failed: {exc}") from None
    return revision


def without_text(suggestion: dict[str, Any] | None) -> dict[str, Any]:
    """A stored suggestion with the petition's words taken out of its explanation: its terms
    and spans quote the text that retention deletes. The labels, probabilities and which
    rules fired stay."""
    suggestion = dict(suggestion or {})
    if "explanation" in suggestion:
        suggestion["explanation"] = {
            head: {**part, "terms": [], "rules": [{**rule, "spans": []} for rule in part.get("rules", [])]}
            for head, part in suggestion["explanation"].items()}
    return suggestion


# Purged already: the placeholder as its body and no title. The body alone is what a petition
# may have been sent with, and its title was then kept past retention.
PURGED_ROW = (TriageRecord.body_masked == PURGED) & (TriageRecord.title_masked == "")


def row_purged(row: TriageRecord) -> bool:
    """PURGED_ROW for a row already read, e.g. for a page to show what a decision on it may do.
    A decision itself checks with text_purged, which a concurrent purge cannot slip past."""
    return row.body_masked == PURGED and row.title_masked == ""


def text_purged(session: Session, triage_id: str) -> bool:
    """Whether retention has deleted the text of this triage, read so that a purge running at
    the same moment either has finished or waits for this session: call it after the session's
    first flush and before it opens a review item for the triage. On SQLite that flush holds the
    write lock; on PostgreSQL the row lock taken here waits for a purge that has locked the row,
    and makes one that has not wait until this session has committed (purge_petitions)."""
    return bool(session.scalar(select(PURGED_ROW).where(TriageRecord.id == triage_id).with_for_update(read=True)))


@dataclass(frozen=True)
class Purged:
    """What one `triage purge` did."""

    petitions: int  # whose text was emptied
    awaiting_review: int  # old enough, kept: their review item is still open


def purge_petitions(database: Database, before: datetime, actor: str) -> Purged:
    """Empties the title and body of petitions triaged before `before`, and the words their
    explanations quote; their suggestions, decisions and labels stay (stats, retraining on
    labels, the audit trail). A petition whose review item is still open keeps its text:
    purged, it stayed in the queue with nothing left to review, a high-risk case lost
    unread; a later purge takes it once it is resolved. Recorded in the audit log in the
    same transaction."""
    with database.sessions() as session:
        audit = AuditEntry(actor=actor, action="retention.purge", target=before.isoformat(), detail={})
        session.add(audit)
        # First: on SQLite the flush takes the write lock, so no item is queued for a petition
        # while the purge reads which ones are open and empties the others.
        session.flush()
        old = (TriageRecord.created_at < before) & ~PURGED_ROW
        # On PostgreSQL the flush serialises nothing. The rows are locked first, waiting for a
        # session that is opening a review item for one of them (it holds a lock on the row:
        # text_purged, or the review item's foreign key); the update below, a statement of its
        # own, then sees that item. Read in the update's own statement, an item committed while
        # the update waited for the row was not seen, and the petition was purged.
        session.execute(select(TriageRecord.id).where(old).order_by(TriageRecord.id).with_for_update()).all()
        awaiting = exists().where(ReviewItem.triage_id == TriageRecord.id, ReviewItem.status == "open")
        # One conditional update: which petitions have an open item is read as they are emptied.
        rows = session.execute(update(TriageRecord).where(old, ~awaiting).values(title_masked="", body_masked=PURGED)
                               .returning(TriageRecord.id, TriageRecord.suggestion)
                               .execution_options(synchronize_session=False)).all()
        kept = session.scalar(select(func.count()).select_from(TriageRecord).where(old, awaiting))
        for start in range(0, len(rows), 500):
            session.execute(update(TriageRecord), [{"id": tid, "suggestion": without_text(suggestion)}
                                                   for tid, suggestion in rows[start:start + 500]])
        audit.detail = {"petitions": len(rows), "kept_awaiting_review": kept}
        session.commit()
    return Purged(petitions=len(rows), awaiting_review=kept)
