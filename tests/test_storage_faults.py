"""Storage faults while serving: SQLite's own SQLITE_FULL (PRAGMA max_page_count on the
service's connections), and the database going away in the middle of a burst. Triage
still answers (stored: false), a decision is either acknowledged and stored or refused
with 503, and storing resumes without a restart."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import event, text
from test_service_storage import PETITION, h, make_keys, running, settings_for
from test_service_storage import backend as backend  # the fixture: SQLite, and PostgreSQL when available

from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings

UNLIMITED = 1_073_741_823


def test_a_full_database_loses_no_acknowledged_decision_and_recovers_by_itself(small_model_dir, tmp_path):
    db_path = tmp_path / "triage.db"
    settings = Settings(database_url=f"sqlite:///{db_path}", model_dir=small_model_dir, database_retry_seconds=0.1)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        intake = {"X-API-Key": create_key(session, "intake")}
    quota = {"pages": UNLIMITED}

    @event.listens_for(app.state.database.engine, "checkout")
    def _quota(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
        # Below the current size SQLite keeps the size: nothing more can be added.
        dbapi_connection.execute(f"PRAGMA max_page_count={quota['pages']}")

    acknowledged, refused, unstored = [], 0, 0
    with TestClient(app) as client:
        def triage(i: int) -> dict:
            return client.post("/v1/triage", headers=intake, json={"title": f"欠薪{i}", "body": "工资三个月没发。" * 200}).json()

        first = triage(0)
        assert first["stored"] is True
        quota["pages"] = 1
        for i in range(1, 30):
            suggestion = triage(i)
            assert suggestion["division"]["code"]  # the desk still gets its suggestion
            unstored += not suggestion["stored"]
            answer = client.post("/v1/decisions", headers=intake, json={
                "triage_id": first["triage_id"], "division": first["division"]["code"], "decided_by": f"受理员{i}",
                "reason": "备注" * 300})
            if answer.status_code == 201:
                acknowledged.append(answer.json()["revision"])
            else:
                assert answer.status_code == 503 and "NOT recorded" in answer.json()["detail"]
                refused += 1
        assert unstored > 0 and refused > 0, "the database never filled up"

        quota["pages"] = UNLIMITED  # space again: no restart
        assert triage(99)["stored"] is True
        assert client.post("/v1/decisions", headers=intake, json={
            "triage_id": first["triage_id"], "division": first["division"]["code"], "decided_by": "受理员"}).status_code == 201
    app.state.database.engine.dispose()

    with sqlite3.connect(db_path) as db:
        stored = {r[0] for r in db.execute("SELECT revision FROM decisions WHERE triage_id = ?", (first["triage_id"],))}
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert set(acknowledged) <= stored


def test_the_database_going_away_mid_burst_loses_no_acknowledged_decision(backend, small_model_dir):
    """PostgreSQL's connections cut (or the SQLite file taken away) while decisions keep
    arriving from several threads: every 201 is in the database afterwards, triage kept
    answering, and storing resumed without a restart."""
    acknowledged: list[tuple[str, int]] = []
    answers: list[int] = []
    unstored = 0
    lock = threading.Lock()
    with running(settings_for(backend.url, small_model_dir)) as client:
        keys = make_keys(backend.url, "intake")
        first = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
        assert first["stored"] is True
        stop = time.monotonic() + 6

        sent = itertools.count()

        def burst() -> None:
            nonlocal unstored
            while time.monotonic() < stop:
                suggestion = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"]))
                assert suggestion.status_code == 200
                # Each by another name: a decision identical to the latest is not a new revision.
                answer = client.post("/v1/decisions", headers=h(keys["intake"]), json={
                    "triage_id": first["triage_id"], "division": "pension", "decided_by": f"受理员{next(sent)}"})
                assert answer.status_code in (201, 503), answer.text
                with lock:
                    unstored += not suggestion.json()["stored"]
                    answers.append(answer.status_code)
                    if answer.status_code == 201:
                        acknowledged.append((first["triage_id"], answer.json()["revision"]))

        with ThreadPoolExecutor(4) as pool:
            running_bursts = [pool.submit(burst) for _ in range(4)]
            time.sleep(1.5)
            backend.down()
            time.sleep(2)
            backend.up()
            for done in running_bursts:
                done.result()
        assert 503 in answers and unstored > 0, "the outage did not happen during the burst"
        assert answers[-1] == 201, "storing did not resume after the database came back"
    with backend.connect() as connection:
        stored = set(connection.execute(text("SELECT revision FROM decisions WHERE triage_id = :t"),
                                        {"t": first["triage_id"]}).scalars())
    revisions = {revision for _, revision in acknowledged}
    assert len(revisions) == len(acknowledged)  # no revision acknowledged twice
    assert revisions <= stored, f"acknowledged but not stored: {sorted(revisions - stored)}"
