"""The service as it runs in production: `triage serve` (uvicorn) in its own process on
127.0.0.1, a SQLite file, keys made by `triage keys create`. The server is killed with
SIGKILL in the middle of a burst of decisions: every decision it acknowledged with a
201 must be in the database after the restart."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.database import head_revision

PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资了，春节前必须解决。", "channel": "网上"}
CLI = [sys.executable, "-m", "triage.cli"]
BURST, KILL_AFTER, WORKERS = 50, 15, 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "server.log"
        self.base = ""

    def start(self, timeout: float = 90) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1"], env={**self.env, "TRIAGE_PORT": str(port)},
                                            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the server was not ready within {timeout:.0f}s:\n{self.tail()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # The whole process group: with TRIAGE_WORKERS > 1 the workers answer, not this process.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])


@pytest.fixture
def server(tmp_path: Path, small_model_dir: Path) -> Iterator[tuple[Server, Path, str]]:
    db_path = tmp_path / "triage.db"
    # Only this test's settings: nothing from the developer's environment or a .env file.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env |= {"TRIAGE_DATABASE_URL": f"sqlite:///{db_path}", "TRIAGE_MODEL_DIR": str(small_model_dir)}
    made = subprocess.run([*CLI, "keys", "create", "--role", "intake"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("pt_")
    server = Server(env, tmp_path)
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

    def decide() -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=30, trust_env=False) as client:
            for _ in range(8):
                response = client.post("/v1/decisions", json={"triage_id": tid, "division": "pension", "decided_by": "x"})
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 201:
                        revisions.append(response.json()["revision"])

    threads = [threading.Thread(target=decide) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [201] * 48
    assert sorted(revisions) == list(range(1, 49))
    with sqlite3.connect(db_path) as db:
        stored = [r for (r,) in db.execute("SELECT revision FROM decisions WHERE triage_id = ? ORDER BY revision", (tid,))]
    assert stored == list(range(1, 49))
