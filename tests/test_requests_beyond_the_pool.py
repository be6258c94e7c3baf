"""More simultaneous triage requests than the worker has threads and database connections:
every one is answered and stored, none waits for a connection that a request waiting for a
thread holds. Real app, real SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings

# Beyond anyio's default thread limit plus SQLAlchemy's default pool (size and overflow).
SIMULTANEOUS = 120


def test_requests_beyond_threads_and_connections_are_all_answered_and_stored(small_model_dir: Path, tmp_path: Path):
    db_path = tmp_path / "triage.db"
    settings = Settings(database_url=f"sqlite:///{db_path}", model_dir=small_model_dir)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        intake = {"X-API-Key": create_key(session, "intake")}
    start = threading.Barrier(SIMULTANEOUS)
    with TestClient(app) as client:
        def triage(i: int) -> tuple[int, bool]:
            start.wait()
            answer = client.post("/v1/triage", headers=intake, timeout=120,
                                 json={"title": f"欠薪{i}", "body": f"第{i}号工地拖欠工资三个月，请劳动监察部门处理。"})
            return answer.status_code, answer.status_code == 200 and answer.json()["stored"]

        with ThreadPoolExecutor(SIMULTANEOUS) as pool:
            answers = list(pool.map(triage, range(SIMULTANEOUS)))
    app.state.database.engine.dispose()
    assert [status for status, _ in answers] == [200] * SIMULTANEOUS
    assert all(stored for _, stored in answers), f"{sum(not s for _, s in answers)} answered stored: false"
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM triages").fetchone()[0] == SIMULTANEOUS
