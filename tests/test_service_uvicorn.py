"""The service as it runs in production: `triage serve` (uvicorn) in its own process on
127.0.0.1, a SQLite file, keys made by `triage keys create`. The server is killed with
SIGKILL in the middle of a burst of decisions: every decision it acknowledged with a
201 must be in the database after the restart."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving import ServeProcess, make_key, serve_env

from service.database import head_revision

PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资了，春节前必须解决。", "channel": "网上"}
BURST, KILL_AFTER, WORKERS = 50, 15, 4


@pytest.fixture
def server(tmp_path: Path, small_model_dir: Path) -> Iterator[tuple[ServeProcess, Path, str]]:
    db_path = tmp_path / "triage.db"
    env = serve_env(f"sqlite:///{db_path}", small_model_dir, tmp_path)
    key = make_key(env, tmp_path)
    server = ServeProcess(tmp_path, env)
    try:
        yield server, db_path, key
    finally:
        server.kill()


def test_every_acknowledged_decision_survives_a_sigkill(server):
    server, db_path, key = server
    headers = {"X-API-Key": key}
    server.start()
    with httpx.Client(base_url=server.base, headers=headers, timeout=30, trust_env=False) as client:
        triages = []
        for _ in range(5):
            response = client.post("/v1/triage", json=PETITION)
            assert response.status_code == 200 and response.json()["stored"] is True
            triages.append(response.json()["triage_id"])
        first = client.post("/v1/decisions", json={"triage_id": triages[0], "division": "labor_inspection",
                                                   "decided_by": "before-burst"})
        assert first.status_code == 201 and first.json()["revision"] == 1

    acknowledged: list[tuple[str, str, int]] = []
    failed: list[str] = []
    lock = threading.Lock()
    pending = iter(range(BURST))

    def send() -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=10, trust_env=False) as client:
            while True:
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                who = f"burst-{i:02d}"
                try:
                    response = client.post("/v1/decisions", json={"triage_id": triages[i % len(triages)],
                                                                  "division": "pension", "decided_by": who})
                except httpx.TransportError:
                    with lock:
                        failed.append(who)
                    continue
                with lock:
                    if response.status_code == 201:
                        acknowledged.append((who, response.json()["triage_id"], response.json()["revision"]))
                        if len(acknowledged) == KILL_AFTER:
                            server.kill()
                    else:
                        failed.append(who)

    threads = [threading.Thread(target=send) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len(acknowledged) >= KILL_AFTER and failed, "the server was not killed in the middle of the burst"

    server.start()  # the same database: start-up migrations are a no-op
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {who: (tid, rev) for who, tid, rev in
                  db.execute("SELECT decided_by, triage_id, revision FROM decisions WHERE decided_by LIKE 'burst-%'")}
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
    missing = [who for who, tid, rev in acknowledged if stored.get(who) != (tid, rev)]
    assert not missing, f"acknowledged with 201 but not in the database: {missing}"

    with httpx.Client(base_url=server.base, headers=headers, timeout=30, trust_env=False) as client:
        after = client.post("/v1/decisions", json={"triage_id": triages[0], "division": "pension", "decided_by": "after"})
        assert after.status_code == 201
        assert after.json()["revision"] == 1 + max([1] + [rev for tid, rev in stored.values() if tid == triages[0]])


def test_simultaneous_decisions_on_one_triage_get_consecutive_revisions(server):
    server, db_path, key = server
    headers = {"X-API-Key": key}
    server.start()
    with httpx.Client(base_url=server.base, headers=headers, timeout=30, trust_env=False) as client:
        tid = client.post("/v1/triage", json=PETITION).json()["triage_id"]
    statuses: list[int] = []
    revisions: list[int] = []
    lock = threading.Lock()

    def decide(thread: int) -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=30, trust_env=False) as client:
            for n in range(8):
                # Each by another name: a decision identical to the latest is not a new revision.
                response = client.post("/v1/decisions", json={"triage_id": tid, "division": "pension",
                                                              "decided_by": f"clerk {thread}-{n}"})
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 201:
                        revisions.append(response.json()["revision"])

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [201] * 48
    assert sorted(revisions) == list(range(1, 49))
    with sqlite3.connect(db_path) as db:
        stored = [r for (r,) in db.execute("SELECT revision FROM decisions WHERE triage_id = ? ORDER BY revision", (tid,))]
    assert stored == list(range(1, 49))
