"""Writers to the SQLite file queue on one lock, across threads and processes, and
every way a transaction ends gives the lock back."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.database import ApiKey, AuditEntry, Database

# Exit 0 when this process could take the lock file at once, 1 when another holds it.
TRY_LOCK = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n" \
           "try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError: sys.exit(1)"


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    database.ensure_migrated()
    return database


def lock_file_free(database: Database) -> bool:
    assert database.write_lock is not None
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(database.write_lock.path)], check=False).returncode == 0


def test_a_writing_session_holds_the_lock_until_its_commit(database):
    with database.sessions() as session:
        session.add(AuditEntry(actor="test", action="a", target="1"))
        session.flush()
        assert not lock_file_free(database)
        session.commit()
        assert lock_file_free(database)
    with database.sessions() as session:
        session.scalars(select(AuditEntry)).all()  # reading never takes it
        assert lock_file_free(database)


def test_a_failed_write_and_an_abandoned_session_give_the_lock_back(database):
    with database.sessions() as session:
        session.add(ApiKey(prefix="p1", key_hash="h", role="intake"))
        session.commit()
    with database.sessions() as session:
        session.add(ApiKey(prefix="p1", key_hash="h", role="intake"))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        assert lock_file_free(database)
    with database.sessions() as session:  # flushed, never committed: closing rolls back
        session.add(AuditEntry(actor="test", action="b", target="2"))
        session.flush()
    assert lock_file_free(database)


def test_concurrent_writers_all_get_stored(database):
    def write(n: int) -> None:
        for i in range(20):
            with database.sessions() as session:
                session.add(AuditEntry(actor=f"thread{n}", action="write", target=str(i)))
                session.commit()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with database.sessions() as session:
        assert len(session.scalars(select(AuditEntry).where(AuditEntry.action == "write")).all()) == 160
    assert lock_file_free(database)
