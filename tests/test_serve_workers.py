"""`triage serve` with several uvicorn worker processes (TRIAGE_WORKERS), as in production:
real processes on 127.0.0.1, one SQLite file, the small model. Every worker migrates the
database, watches the model registry and stores; SIGTERM stops them all, and what was
acknowledged before a SIGKILL of every process is in the database."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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

CLI = [sys.executable, "-m", "triage.cli"]
PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资了，春节前必须解决。", "channel": "网上"}
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # uvicorn's workers are multiprocessing "spawn" children (its resource tracker is not one)
            if int(stat.rpartition(")")[2].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class Serve:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.env, self.log = env, tmp_path / "serve.log"
        self.cwd = tmp_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as log:
            # Its own session and process group: teardown can kill the supervisor and every worker.
            self.process = subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=self.env,
                                            cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"triage serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"triage serve was not ready within {START_TIMEOUT_S}s:\n{self.tail()}")

    def wait_for_workers(self, count: int) -> list[int]:
        # /readyz answers once the first worker serves; the others may still be loading the model.
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            workers = children(self.process.pid)
            log = self.log.read_text(encoding="utf-8", errors="replace")
            if (len(workers) == count and log.count("Application startup complete") >= count
                    and all(f"Started server process [{w}]" in log for w in workers)):
                return workers
            time.sleep(0.2)
        pytest.fail(f"expected {count} started workers, have {children(self.process.pid)}:\n{self.tail()}")

    def kill_all(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=30)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture
def serve(tmp_path: Path, small_model_dir: Path) -> Iterator[tuple[Serve, Path, dict[str, str]]]:
    db_path = tmp_path / "db" / "triage.db"  # not there yet: the workers create and migrate it together
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env |= {"TRIAGE_DATABASE_URL": f"sqlite:///{db_path}", "TRIAGE_MODEL_DIR": str(small_model_dir)}
    server = Serve(tmp_path, env)
    try:
        yield server, db_path, env
    finally:
        server.kill_all()


def make_key(env: dict[str, str], cwd: Path, role: str = "intake") -> str:
    made = subprocess.run([*CLI, "keys", "create", "--role", role], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def write_registry(registry: Path, champion: str) -> None:
    partial = registry / "registry.json.tmp"
    partial.write_text(json.dumps({"champion": champion, "history": []}), encoding="utf-8")
    partial.replace(registry / "registry.json")


def promotions(db_path: Path) -> set[tuple[str, int]]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT target, detail FROM audit WHERE action = 'model.promote'").fetchall()
    return {(target, json.loads(detail)["pid"]) for target, detail in rows}


def test_two_workers_serve_each_watch_the_registry_and_stop_on_sigterm(serve, tmp_path: Path, small_model_dir: Path):
    server, db_path, env = serve
    registry = tmp_path / "registry"
    shutil.copytree(small_model_dir, registry / "models" / "v1")
    write_registry(registry, "v1")
    server.env = env | {"TRIAGE_WORKERS": "2", "TRIAGE_REGISTRY_DIR": str(registry), "TRIAGE_REGISTRY_POLL_SECONDS": "0.2"}
    server.start()
    workers = server.wait_for_workers(2)
    assert server.process is not None and server.process.pid not in workers

    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
    # Each worker loaded the champion itself at start-up and recorded it.
    assert promotions(db_path) == {("v1", w) for w in workers}

    key = make_key(env, tmp_path)
    with httpx.Client(base_url=server.base, headers={"X-API-Key": key}, timeout=30, trust_env=False) as client:
        for _ in range(6):
            response = client.post("/v1/triage", json=PETITION)
            assert response.status_code == 200, response.text
            assert response.json()["stored"] is True
            assert response.json()["model_version"] == json.loads((small_model_dir / "metadata.json").read_text())["version"]
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM triages").fetchone() == (6,)

    # A promotion reaches every worker, not just the one that happens to answer.
    shutil.copytree(small_model_dir, registry / "models" / "v2")
    write_registry(registry, "v2")
    deadline = time.monotonic() + 30
    while promotions(db_path) != {(v, w) for v in ("v1", "v2") for w in workers}:
        assert time.monotonic() < deadline, f"promotion of v2 seen by {promotions(db_path)}, workers {workers}:\n{server.tail()}"
        time.sleep(0.2)

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0, server.tail()
    assert not any(alive(w) for w in workers)
    log = server.tail(400)
    for w in workers:
        assert f"Finished server process [{w}]" in log


def test_one_worker_serves_in_the_serve_process(serve, tmp_path: Path):
    server, _, env = serve
    server.env = env | {"TRIAGE_WORKERS": "1"}
    server.start()
    assert server.process is not None and children(server.process.pid) == []
    key = make_key(env, tmp_path)
    response = httpx.post(f"{server.base}/v1/triage", json=PETITION, headers={"X-API-Key": key}, timeout=30, trust_env=False)
    assert response.status_code == 200 and response.json()["stored"] is True
    server.process.send_signal(signal.SIGTERM)
    # uvicorn finishes its shutdown, then exits by the signal it was sent.
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM), server.tail()
    assert f"Finished server process [{server.process.pid}]" in server.tail()


def test_processes_starting_together_migrate_one_new_database(tmp_path: Path):
    db_path = tmp_path / "new" / "triage.db"
    start_at = time.time() + 3  # after every interpreter has imported SQLAlchemy and Alembic
    code = ("import sys, time; from service.database import Database; from service.keys import create_key\n"
            "database = Database(sys.argv[1])\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "print(database.migrate())\n"
            "with database.sessions() as session:\n"
            "    create_key(session, 'intake')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    processes = [subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{db_path}", str(start_at)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == head_revision()
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (4,)


def test_what_two_workers_acknowledged_survives_a_sigkill_of_every_process(serve, tmp_path: Path):
    server, db_path, env = serve
    server.env = env | {"TRIAGE_WORKERS": "2"}
    server.start()
    server.wait_for_workers(2)
    key = make_key(env, tmp_path)
    stored: list[str] = []
    decided: list[tuple[str, int]] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    sent = iter(range(400))  # bounded: the kill comes long before

    def send(k: int) -> None:
        with httpx.Client(base_url=server.base, headers={"X-API-Key": key}, timeout=10, trust_env=False) as client:
            while not stop.is_set() and next(sent, None) is not None:
                try:
                    response = client.post("/v1/triage", json=PETITION | {"external_id": f"c{k}"})
                    if response.status_code != 200:
                        raise RuntimeError(f"HTTP {response.status_code}")
                    triage = response.json()
                    decision = client.post("/v1/decisions", json={"triage_id": triage["triage_id"],
                                                                  "division": "labor_inspection", "decided_by": f"c{k}"})
                except (httpx.TransportError, RuntimeError) as exc:
                    with lock:
                        failures.append(type(exc).__name__)
                    continue
                with lock:
                    if triage["stored"]:
                        stored.append(triage["triage_id"])
                    if decision.status_code == 201:
                        decided.append((decision.json()["triage_id"], decision.json()["revision"]))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(decided) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill_all()  # the supervisor and both workers at once, mid-burst
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(decided) >= 20, f"only {len(decided)} decisions before the deadline:\n{server.tail()}"
    assert failures, "no request was in flight: the kill did not come in the middle of the burst"

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        triages = {tid for (tid,) in db.execute("SELECT id FROM triages")}
        decisions = set(db.execute("SELECT triage_id, revision FROM decisions"))
    assert not [t for t in stored if t not in triages], "answered stored: true but not in the database"
    assert not [d for d in decided if d not in decisions], "acknowledged with 201 but not in the database"

