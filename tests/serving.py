"""The service as it runs in production, for tests: `triage serve` (or another command that
serves the app) in its own process group on 127.0.0.1, its output captured in a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest

from model.artifact import default_key_file

CLI = [sys.executable, "-m", "triage.cli"]
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_env(database_url: str, model_dir: Path, workdir: Path, **settings: str) -> dict[str, str]:
    """Only the test's settings: nothing from the developer's TRIAGE_ environment or a .env file
    (the server runs in `workdir`, where there is none). Temporary files go to `workdir` too,
    so that a process group killed with SIGKILL leaves nothing behind in /tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    # The key the test session's models were signed with (tests/conftest.py's TRIAGE_HOME).
    key = {"TRIAGE_SIGNING_KEY_FILE": str(default_key_file())}
    return env | key | {"TRIAGE_DATABASE_URL": database_url, "TRIAGE_MODEL_DIR": str(model_dir), "TMPDIR": str(workdir),
                        "PYTHONPATH": str(ROOT)} | {f"TRIAGE_{k.upper()}": v for k, v in settings.items()}


def make_key(env: dict[str, str], cwd: Path, role: str = "intake", label: str = "") -> str:
    made = subprocess.run([*CLI, "keys", "create", "--role", role, *(["--label", label] if label else [])], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("pt_"), key
    return key


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


def serve_command(port: int) -> list[str]:
    return [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)]


class ServeProcess:
    """One server process at a time; `start` again (after `kill`) serves the same database on a
    new port, appending to the same log."""

    def __init__(self, workdir: Path, env: dict[str, str], command: Callable[[int], Sequence[str]] = serve_command) -> None:
        self.workdir, self.env, self.command = workdir, env, command
        self.log = workdir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as log:
            # Its own session and process group: teardown can kill the supervisor and every worker.
            self.process = subprocess.Popen(list(self.command(port)), env=self.env, cwd=self.workdir,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, as a service manager stops it; the process group is killed if that takes too long."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to the whole process group: with several workers, the workers answer, not the
        supervisor, and a worker may outlive a supervisor that already exited."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=30)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def app_with_key(settings, role: str, label: str = ""):
    """The service's app in a TestClient, on `settings`' database (migrated here), with a key
    of `role`; yields the client, the key and the database."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.database import Database
    from service.keys import create_key

    database = Database(settings.database_url)
    database.migrate()
    with database.sessions() as session:
        key = create_key(session, role, label=label)
    try:
        with TestClient(create_app(settings)) as client:
            yield client, key, database
    finally:
        database.engine.dispose()
