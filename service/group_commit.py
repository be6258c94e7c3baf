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

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


@dataclass
class _Write:
    first: Sequence[DeclarativeBase]
    then: Sequence[DeclarativeBase]
    done: bool = False
    error: SQLAlchemyError | None = field(default=None)


class GroupCommit:
    """Commits rows handed in by several threads together.

    Parameters
    ----------
    sessions : sessionmaker
        Where the rows are written (the database's session factory, with its write lock).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._pending: list[_Write] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def store(self, first: Sequence[DeclarativeBase], then: Sequence[DeclarativeBase] = ()) -> None:
        """Returns once these rows are committed (`first` flushed before `then`, whose rows
        reference them); raises the SQLAlchemyError that stopped their transaction."""
        write = _Write(first, then)
        with self._pending_lock:
            self._pending.append(write)
        # Whoever gets the lock commits every write waiting; the others find theirs done.
        with self._commit_lock:
            if not write.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit(batch)
        if write.error is not None:
            raise write.error

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with self._sessions() as session:
                session.add_all([row for write in batch for row in write.first])
                if any(write.then for write in batch):
                    session.flush()  # no ORM relationship orders the referencing rows after the others
                    session.add_all([row for write in batch for row in write.then])
                session.commit()
        except SQLAlchemyError as exc:
            if len(batch) > 1 and not isinstance(exc, OperationalError):
                # A row the database refuses must not cost the others their storing: each alone.
                # (An unavailable database fails them all alike, and is not asked again.)
                for write in batch:
                    self._commit([write])
                return
            for write in batch:
                write.error = exc
        finally:
            for write in batch:
                write.done = True
