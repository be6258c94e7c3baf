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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from postgres_db import POSTGRES_PARAM, throwaway_database
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from serving import ServeProcess, children, free_port, make_key, serve_command, serve_env
from sqlalchemy import create_engine, text

from model.artifact import MODEL_FILE
from service.database import head_revision

PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资了，春节前必须解决。", "channel": "网上"}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def serve(tmp_path: Path, small_model_dir: Path) -> Iterator[tuple[ServeProcess, Path, dict[str, str]]]:
    db_path = tmp_path / "db" / "triage.db"  # not there yet: the workers create and migrate it together
    env = serve_env(f"sqlite:///{db_path}", small_model_dir, tmp_path)
    server = ServeProcess(tmp_path, env)
    try:
        yield server, db_path, env
    finally:
        server.kill()


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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(workers, tmp_path: Path, small_model_dir: Path):
    db_path = tmp_path / "db" / "triage.db"
    env = serve_env(f"sqlite:///{db_path}", small_model_dir, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*serve_command(port), "--workers", workers], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"triage serve: error: cannot listen on 127.0.0.1:{port}: address already in use (another `triage serve` or "
        "another program listens there); stop it, or choose another port with --port or TRIAGE_PORT"]
    # Refused before a worker loaded the model, started its threads or made the database.
    assert not db_path.parent.exists()


def test_workers_that_cannot_start_end_serve_with_uvicorns_status(tmp_path: Path, small_model_dir: Path):
    # The serve process itself checks the model; only its workers are given a missing one
    # (Python runs sitecustomize in every process, and only the workers are spawned children).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if any('spawn_main' in a for a in sys.orig_argv):\n"
        f"    os.environ['TRIAGE_MODEL_DIR'] = {str(tmp_path / 'no-model')!r}\n", encoding="utf-8")
    env = serve_env(f"sqlite:///{tmp_path / 'triage.db'}", small_model_dir, tmp_path)
    env["PYTHONPATH"] = f"{hook}{os.pathsep}{env['PYTHONPATH']}"
    done = subprocess.run([*serve_command(free_port()), "--workers", "2"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "cannot start the service" in done.stderr
    assert done.returncode == 3, done.stderr[-2000:]


@pytest.mark.parametrize("url, says", [("mysql://triage@127.0.0.1/triage", "its driver is not installed"),
                                        ("mongodb://127.0.0.1/triage", "Can't load plugin"),
                                        ("127.0.0.1:5432/triage", "Could not parse")])
def test_a_database_url_no_worker_could_use_is_refused_at_once(url, says, tmp_path: Path, small_model_dir: Path):
    # Each worker failed alike, and the supervisor stopped only after its health-check wait.
    env = serve_env(url, small_model_dir, tmp_path)
    started = time.monotonic()
    done = subprocess.run([*serve_command(free_port()), "--workers", "2"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("triage serve: error: TRIAGE_DATABASE_URL: ") and says in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


def test_a_port_out_of_range_is_refused_by_name_not_a_traceback(tmp_path: Path, monkeypatch, capsys):
    from service.settings import get_settings
    from triage.cli import main

    with pytest.raises(SystemExit) as refused:
        main(["serve", "--port", "99999"])
    assert refused.value.code == 2 and "--port: '99999': expected a port number" in capsys.readouterr().err
    monkeypatch.setenv("TRIAGE_PORT", "99999")
    monkeypatch.setenv("TRIAGE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        assert main(["serve"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "TRIAGE_PORT: Input should be less than or equal to 65535" in err and "Traceback" not in err
    assert not (tmp_path / "home").exists()


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
            while not stop.is_set() and (n := next(sent, None)) is not None:
                try:
                    # A case number of its own: the same one again would be a retry, answered from storage.
                    response = client.post("/v1/triage", json=PETITION | {"external_id": f"c{k}-{n}"})
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
    server.kill()  # the supervisor and both workers at once, mid-burst
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


@pytest.mark.parametrize("database", ["sqlite", POSTGRES_PARAM])
def test_copies_of_a_petition_sent_to_two_workers_at_once_are_stored_once(database, tmp_path: Path, small_model_dir: Path):
    # A client retrying after a timeout while its first request is still being answered: the
    # copies reach both workers, each looking for a stored copy before either has stored one.
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'triage.db'}"
        else:
            url = stack.enter_context(throwaway_database("workers")).render_as_string(hide_password=False)
        env = serve_env(url, small_model_dir, tmp_path) | {"TRIAGE_WORKERS": "2"}
        server = ServeProcess(tmp_path, env)
        stack.callback(server.kill)
        server.start()
        server.wait_for_workers(2)
        key = make_key(env, tmp_path)
        petition = PETITION | {"external_id": "XF-2026-0042"}

        def send(_: int) -> dict:
            with httpx.Client(base_url=server.base, headers={"X-API-Key": key}, timeout=30, trust_env=False) as client:
                return client.post("/v1/triage", json=petition).json()

        for _round in range(3):
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(send, range(8)))
            assert all(a["stored"] for a in answers), answers
            assert len({a["triage_id"] for a in answers}) == 1
            petition = petition | {"external_id": f"{petition['external_id']}-1"}
        server.stop()
        engine = create_engine(url)
        stack.callback(engine.dispose)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM triages")).scalar() == 3


def _requests_of(metrics_text: str, route: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(metrics_text) for sample in family.samples
               if sample.name == "triage_http_requests_total" and sample.labels.get("route") == route
               and sample.labels.get("status") == "200")


def _metrics_dir_of(worker: int) -> Path:
    environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{worker}/environ").read_bytes().split(b"\0") if b"=" in item)
    assert b"PROMETHEUS_MULTIPROC_DIR" in environ, "triage serve did not give the workers a metrics directory"
    return Path(environ[b"PROMETHEUS_MULTIPROC_DIR"].decode())


def _share_of(worker: int, metrics_dir: Path, scratch: Path) -> float:
    # One worker's own count: its file alone, read as /metrics reads them all.
    alone = scratch / str(worker)
    alone.mkdir(parents=True, exist_ok=True)
    counts = metrics_dir / f"counter_{worker}.db"
    if not counts.exists():
        return 0.0
    shutil.copy(counts, alone / counts.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return _requests_of(generate_latest(registry).decode(), "/v1/triage")


def test_metrics_add_up_the_requests_of_every_worker(serve, tmp_path: Path):
    server, db_path, env = serve
    server.command = lambda port: [*serve_command(port), "--workers", "2"]
    server.start()
    workers = server.wait_for_workers(2)
    metrics_dir = _metrics_dir_of(workers[0])
    assert _metrics_dir_of(workers[1]) == metrics_dir and metrics_dir.is_dir()
    key = make_key(env, tmp_path)

    def triage(_: int) -> int:
        # A new connection each time: a kept-alive one would stay with one worker.
        return httpx.post(f"{server.base}/v1/triage", json=PETITION, headers={"X-API-Key": key}, timeout=30,
                          trust_env=False).status_code

    # Until both workers have answered some (the kernel hands each connection to either), so that
    # one worker's share is less than the total.
    sent = 0
    with ThreadPoolExecutor(4) as pool:
        while sent < 200:
            assert list(pool.map(triage, range(20))) == [200] * 20
            sent += 20
            shares = [_share_of(w, metrics_dir, tmp_path / "shares") for w in workers]
            if all(shares):
                break
    assert all(shares) and sum(shares) == sent, f"{sent} requests, per worker {shares}"

    for _ in range(6):  # whichever worker answers
        answer = httpx.get(f"{server.base}/metrics", timeout=30, trust_env=False)
        assert answer.status_code == 200
        assert _requests_of(answer.text, "/v1/triage") == sent, f"per worker {shares}"
        with sqlite3.connect(db_path) as db:
            queued = db.execute("SELECT count(*) FROM review_items WHERE status = 'open'").fetchone()[0]
        gauges = [s for f in text_string_to_metric_families(answer.text) for s in f.samples if s.name == "triage_review_queue_open"]
        assert [s.value for s in gauges] == [queued]

    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0, server.tail()
    assert not metrics_dir.exists(), "the metrics directory outlived triage serve"


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_stopped_while_training_the_default_model_serve_leaves_no_process_behind(tmp_path: Path):
    # Python's default for SIGTERM ended the serve process at once and its training workers
    # ran on, orphaned, under a service manager that signals only the main process.
    env = serve_env(f"sqlite:///{tmp_path / 'triage.db'}", tmp_path / "models" / "default", tmp_path)
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(serve_command(free_port()), env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline, helpers = time.monotonic() + 120, set()
        while time.monotonic() < deadline and not helpers:
            time.sleep(0.5)
            helpers = _descendants(server.pid)
        assert helpers, "training started no process of its own: " + (tmp_path / "serve.log").read_text()[-2000:]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if server.poll() is None:
            os.killpg(os.getpgid(server.pid), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in helpers):
        time.sleep(0.5)
    left = [pid for pid in helpers if Path(f"/proc/{pid}").exists()]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "still running after serve ended"
    assert "terminated" in (tmp_path / "serve.log").read_text()
    assert not (tmp_path / "models" / "default" / MODEL_FILE).exists()
