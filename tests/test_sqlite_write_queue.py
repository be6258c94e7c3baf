"""Writers to the SQLite file queue on one lock, across threads and processes, and
every way a transaction ends gives the lock back."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, select
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


def test_clerks_deciding_one_triage_at_once_each_get_the_next_revision_without_a_conflict(database):
    # Each decision read the latest revision before it queued to write: clerks deciding at once
    # took the same number, all but one failed the insert and tried again, and on a busy machine
    # one lost every try and was answered 503. Queued before the read, none conflicts.
    from model.taxonomy import load_taxonomy
    from service.database import DecisionRecord, TriageRecord
    from service.routers.decisions import record
    from service.schemas import DecisionIn

    with database.sessions() as session:
        session.add(TriageRecord(id="t1", title_masked="欠薪", body_masked="工资三个月没发", model_version="test",
                                 division="labor_relations", division_confidence=0.9, risk="low", key_group="none",
                                 needs_review=False, suggestion={}))
        session.commit()
    conflicts: list[int] = []
    event.listen(database.engine, "handle_error", lambda context: conflicts.append(1)
                 if isinstance(context.sqlalchemy_exception, IntegrityError) else None)
    taxonomy, clerks = load_taxonomy(), 8
    start = threading.Barrier(clerks)

    def decide(clerk: int) -> None:
        start.wait()
        with database.sessions() as session:
            record(DecisionIn(triage_id="t1", division="pension", decided_by=f"clerk {clerk}"), session, taxonomy,
                   ApiKey(prefix="k", role="intake"), database.group_commit)

    threads = [threading.Thread(target=decide, args=(clerk,)) for clerk in range(clerks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with database.sessions() as session:
        revisions = sorted(session.scalars(select(DecisionRecord.revision).where(DecisionRecord.triage_id == "t1")))
    assert revisions == list(range(1, clerks + 1))
    assert conflicts == []
