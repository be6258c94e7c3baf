"""Triages of concurrent requests are committed together: every write is stored once its
call returns, several share a commit, and a row the database refuses fails only itself."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from pathlib import Path

import pytest
from postgres_db import POSTGRES_PARAM, throwaway_database
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.database import Database, ReviewItem, TriageRecord
from service.group_commit import GroupCommit, Once
from service.routers.triage import _queue_group

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


def test_rows_stored_once_are_stored_once_when_sent_together(database):
    # Two requests with the same petition, each having looked before the other stored it:
    # both handed in its rows, and both were stored.
    slow_commits(database)
    stored: list[bool] = []
    bodies: dict[str, str] = {}

    def already(body: str):  # type: ignore[no-untyped-def]
        return lambda session: session.scalar(select(func.count()).select_from(TriageRecord)
                                              .where(TriageRecord.body_masked == body)) > 0

    def writer(body: str):  # type: ignore[no-untyped-def]
        def write() -> None:
            row = triage_row(body)
            with database.sessions() as session:
                stored.append(database.group_commit.store(session, [row], [ReviewItem(triage_id=row.id, reason="high_risk")],
                                                          once=Once(key=body, stored=already(body))))
            bodies[row.id] = body
        return write

    run_together(*[writer("同一件信访")] * 6, writer("另一件信访"))
    assert sorted(stored) == [False] * 5 + [True] * 2
    with database.sessions() as session:
        assert sorted(session.scalars(select(TriageRecord.body_masked))) == ["另一件信访", "同一件信访"]
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == 2
    # Stored before, by another worker or an earlier request: not stored again.
    with database.sessions() as session:
        assert database.group_commit.store(session, [triage_row("同一件信访")], once=Once("同一件信访", already("同一件信访"))) is False
        assert session.scalar(select(func.count()).select_from(TriageRecord)) == 2


@pytest.mark.parametrize("dialect", ["sqlite", POSTGRES_PARAM])
def test_rows_stored_once_by_two_workers_at_once_are_stored_once(dialect, tmp_path: Path):
    # Each worker process has a GroupCommit of its own. The second looked for the rows while
    # the first had inserted but not yet committed them, found none, and stored them again.
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 't.db'}" if dialect == "sqlite" else str(
            stack.enter_context(throwaway_database("once")).render_as_string(hide_password=False))
        database = Database(url)
        stack.callback(database.engine.dispose)
        database.ensure_migrated()
        slow_commits(database)
        before_write = database.write_lock.hold if database.write_lock is not None else None
        workers = [GroupCommit(before_write), GroupCommit(before_write)]
        stored: list[bool] = []

        def already(session) -> bool:  # type: ignore[no-untyped-def]
            return session.scalar(select(func.count()).select_from(TriageRecord)) > 0

        def writer(worker: GroupCommit):  # type: ignore[no-untyped-def]
            def write() -> None:
                with database.sessions() as session:
                    stored.append(worker.store(session, [triage_row()], once=Once("XF-1", already)))
            return write

        run_together(writer(workers[0]), writer(workers[1]))
        assert sorted(stored) == [False, True]
        with database.sessions() as session:
            assert session.scalar(select(func.count()).select_from(TriageRecord)) == 1


def test_queueing_an_emerging_groups_members_waits_its_turn_to_write(database):
    # The members are queued by one INSERT … SELECT, which no ORM flush precedes: it must take
    # the writers' queue itself, as the group commit does, not meet the other writers as
    # SQLite's busy retries.
    members = [triage_row("同一件事"), triage_row("同一件事，再次反映")]
    with database.sessions() as session:
        session.add_all(members)
        session.commit()
    seen: list[str] = []

    def before_write(session: Session) -> None:
        seen.append("lock")
        database.write_lock.hold(session)

    @event.listens_for(database.engine, "before_cursor_execute")
    def _statements(_conn, _cursor, statement, *_: object) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO review_items"):
            seen.append("insert")

    with database.sessions() as session:
        _queue_group(session, GroupCommit(before_write), [m.id for m in members])
        assert seen == ["lock", "insert"]
        assert not session.info.get("write_lock")  # let go with the commit
        assert {item.triage_id for item in session.query(ReviewItem)} == {m.id for m in members}
