"""The rows of concurrent requests stored in one transaction.

A suggestion is answered `stored: true` only once its rows are committed, and on SQLite
(synchronous=FULL) every commit is a flush to disk made while holding the database's one
write lock: with a commit per petition, the whole service stores at most one petition
per disk flush, whatever the cores. Here the rows that requests hand in while a commit is
under way wait for it to end, and are then committed together by one of them: the same
guarantee for each request, one disk flush for several."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session


@dataclass
class _Write:
    first: Sequence[DeclarativeBase]
    then: Sequence[DeclarativeBase]
    done: bool = False
    error: SQLAlchemyError | None = field(default=None)


class GroupCommit:
    """Commits rows handed in by several threads together.

    The rows are written in the session of the request that commits them, so they go
    through the database's write lock as any session's writes do.
    """

    def __init__(self) -> None:
        self._pending: list[_Write] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def store(self, session: Session, first: Sequence[DeclarativeBase], then: Sequence[DeclarativeBase] = ()) -> None:
        """Returns once these rows are committed (`first` flushed before `then`, whose rows
        reference them); raises the SQLAlchemyError that stopped their transaction.

        `session` is the caller's, with nothing pending: when this call commits the rows
        waiting, it commits them in it. (Not in a session of its own: its connection could
        be the one that waiting requests hold, as a request takes its connection before its
        turn on a thread to run in, and waits for that turn with it.)"""
        write = _Write(first, then)
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

    def _commit(self, session: Session, batch: list[_Write]) -> None:
        rows = [row for write in batch for row in write.first]
        try:
            session.add_all(rows)
            if any(write.then for write in batch):
                session.flush()  # no ORM relationship orders the referencing rows after the others
                later = [row for write in batch for row in write.then]
                session.add_all(later)
                rows += later
            session.commit()
            for row in rows:
                session.expunge(row)  # other requests' rows: not this session's to keep
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
