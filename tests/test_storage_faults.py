"""The database filling up: SQLite's own SQLITE_FULL, made by PRAGMA max_page_count on
the service's connections. Triage still answers (stored: false), a decision is either
acknowledged and stored or refused with 503, and storing resumes without a restart."""

from __future__ import annotations

import sqlite3

from fastapi.testclient import TestClient
from sqlalchemy import event

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
