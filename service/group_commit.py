"""The rows of concurrent requests stored in one transaction.

A suggestion is answered `stored: true` only once its rows are committed, and on SQLite
(synchronous=FULL) every commit is a flush to disk made while holding the database's one
write lock: with a commit per petition, the whole service stores at most one petition
per disk flush, whatever the cores. Here the rows that requests hand in while a commit is
under way wait for it to end, and are then committed together by one of them: the same
guarantee for each request, one disk flush for several.

Rows handed in `Once` are stored unless the same rows are stored already: looked for in
the commit's own transaction, after the database's write lock is taken (SQLite) or an
advisory lock on their key (PostgreSQL), so that two requests sending them at once, in
one worker or two, store them once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Table, insert, inspect, text
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session

# The first key of this project's PostgreSQL advisory locks on the rows stored `Once`; any
# fixed 32-bit number (the migration lock is a 64-bit key, a space of its own).
ONCE_LOCK_SPACE = 0x74726961
_LOCK_ONCE = text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))")


@dataclass(frozen=True)
class Once:
    """What makes a write's rows the same as others: the rows are stored unless `stored` finds
    them stored already or a write with the same `key` is committed with them.

    Parameters
    ----------
    key : str
        Equal for writes of the same rows (e.g. a petition's case number and text).
    stored : callable
        True when the rows are in the database already; called in the commit's transaction.
    """

    key: str
    stored: Callable[[Session], bool]


@dataclass
class _Write:
    first: Sequence[DeclarativeBase]
    then: Sequence[DeclarativeBase]
    once: Once | None = None
    done: bool = False
    skipped: bool = False
    error: SQLAlchemyError | None = field(default=None)


def _by_statement(rows: Sequence[DeclarativeBase]) -> dict[tuple[Table, tuple[str, ...]], list[dict[str, object]]]:
    """The column values each row was given, grouped by table and columns set; a column
    left unset is not named, so that its default applies as it would through the ORM."""
    grouped: dict[tuple[Table, tuple[str, ...]], list[dict[str, object]]] = {}
    for row in rows:
        state = inspect(row)
        values = {column.key: state.dict[column.key] for column in state.mapper.column_attrs if column.key in state.dict}
        grouped.setdefault((state.mapper.local_table, tuple(values)), []).append(values)
    return grouped


class GroupCommit:
    """Commits rows handed in by several threads together.

    Parameters
    ----------
    before_write : callable, optional
        Called with the session before its first insert: the database's write lock
        (service/database.py, SQLiteWriteLock), which the ORM would take on flush.
    """

    def __init__(self, before_write: Callable[[Session], None] | None = None) -> None:
        self.before_write = before_write
        self._pending: list[_Write] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def join_writers(self, session: Session) -> None:
        """Takes `before_write` in `session`, for a statement outside a group commit: the
        queue of writers the ORM's flush would join, which a statement of its own does not."""
        if self.before_write is not None:
            self.before_write(session)

    def store(self, session: Session, first: Sequence[DeclarativeBase], then: Sequence[DeclarativeBase] = (), once: Once | None = None) -> bool:
        """Returns once these rows are committed (`first` flushed before `then`, whose rows
        reference them), True; False, having stored nothing, when `once` found them stored
        already. Raises the SQLAlchemyError that stopped their transaction.

        `session` is the caller's, with nothing pending: when this call commits the rows
        waiting, it commits them in it. (Not in a session of its own: its connection could
        be the one that waiting requests hold, as a request takes its connection before its
        turn on a thread to run in, and waits for that turn with it.)"""
        write = _Write(first, then, once)
        with self._pending_lock:
            self._pending.append(write)
        # Whoever gets the lock commits every write waiting; the others find theirs done.
        with self._commit_lock:
            if not write.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit(session, batch)
        if write.error is not None:
            raise write.error
        return not write.skipped

    def _commit(self, session: Session, batch: list[_Write]) -> None:
        try:
            self.join_writers(session)
            kept = self._not_stored(session, batch)
            # Inserted as statements, one per table and set of columns, not through the ORM's
            # unit of work: its bookkeeping for rows nobody reads back cost more than the
            # inserts. `first` rows go before `then` rows, which reference them.
            for rows in ([row for write in kept for row in write.first], [row for write in kept for row in write.then]):
                for (table, _), values in _by_statement(rows).items():
                    session.execute(insert(table), values)
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            if len(batch) > 1 and isinstance(exc, IntegrityError | DataError):
                # A row the database refuses must not cost the others their storing: each alone.
                # (An unavailable or busy database fails them all alike, and is not asked again.)
                for write in batch:
                    self._commit(session, [write])
                return
            for write in batch:
                write.error = exc
        finally:
            for write in batch:
                write.done = True

    @staticmethod
    def _not_stored(session: Session, batch: list[_Write]) -> list[_Write]:
        """The writes of `batch` to insert: all but those `Once` whose rows are stored already
        or come earlier in the batch (those are marked skipped)."""
        once = [write for write in batch if write.once is not None]
        if not once:
            return batch
        if session.get_bind().dialect.name == "postgresql":
            # PostgreSQL has no one write lock: a second transaction with the same key waits
            # here for the first to end, then sees its rows. In one order, so that two
            # batches never wait for each other.
            for key in sorted({write.once.key for write in once if write.once is not None}):
                session.execute(_LOCK_ONCE, {"space": ONCE_LOCK_SPACE, "key": key})
        keys: set[str] = set()
        for write in once:
            assert write.once is not None
            write.skipped = write.once.key in keys or write.once.stored(session)
            keys.add(write.once.key)
        return [write for write in batch if not write.skipped]
