"""Triages of concurrent requests are committed together: every write is stored once its
call returns, several share a commit, and a row the database refuses fails only itself."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from service.database import Database, ReviewItem, TriageRecord

WRITERS, EACH = 8, 5


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    database.ensure_migrated()
    return database


def triage_row(body: str = "工资三个月没发") -> TriageRecord:
    return TriageRecord(id=str(uuid.uuid4()), title_masked="欠薪", body_masked=body, model_version="test",
                        division="labor_relations", division_confidence=0.9, risk="high", key_group="none",
                        needs_review=True, suggestion={})


def slow_commits(database: Database) -> list[int]:
    """Every commit takes a while (as a disk flush does), so that writes pile up behind it;
    returns the list the commits are counted in."""
    commits: list[int] = []

    @event.listens_for(database.engine, "commit")
    def _slow(_connection) -> None:  # type: ignore[no-untyped-def]
        commits.append(1)
        time.sleep(0.02)

    return commits


def run_together(*targets) -> None:
    start = threading.Barrier(len(targets))

    def run(target) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        target()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def test_concurrent_writes_are_all_stored_with_fewer_commits(database):
    commits = slow_commits(database)
    stored: list[str] = []

    def writer() -> None:
        for _ in range(EACH):
            row = triage_row()
            with database.sessions() as session:
                database.group_commit.store(session, [row], [ReviewItem(triage_id=row.id, reason="high_risk")])
            # Returned: the row is committed, as another connection sees.
            with database.sessions() as session:
                assert session.get(TriageRecord, row.id) is not None
            stored.append(row.id)

    run_together(*[writer] * WRITERS)
    assert len(stored) == WRITERS * EACH
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TriageRecord)) == WRITERS * EACH
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == WRITERS * EACH
    assert len(commits) < WRITERS * EACH, "no two writes shared a commit"


def test_a_refused_row_fails_only_its_own_write(database):
    commits = slow_commits(database)
    results: dict[str, str] = {}

    def good(name: str):  # type: ignore[no-untyped-def]
        def write() -> None:
            row = triage_row()
            with database.sessions() as session:
                database.group_commit.store(session, [row])
            results[name] = row.id
        return write

    def bad() -> None:
        # A queue item for a triage that does not exist: the foreign key refuses it.
        with database.sessions() as session:
            try:
                database.group_commit.store(session, [triage_row()], [ReviewItem(triage_id="no-such-triage", reason="high_risk")])
            except IntegrityError:
                results["bad"] = "refused"

    run_together(good("a"), good("b"), bad, good("c"), good("d"), good("e"))
    assert results.pop("bad") == "refused"
    assert len(results) == 5
    with database.sessions() as session:
        assert {r for r in results.values() if session.get(TriageRecord, r) is not None} == set(results.values())
        assert session.scalar(select(func.count()).select_from(TriageRecord)) == 5
    assert commits
