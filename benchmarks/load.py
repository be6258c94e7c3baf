"""Open-loop HTTP load on POST /v1/triage of `triage serve`, on loopback only.

What intake desks feel is the latency at the rate petitions arrive, not what a few
clients that never pause can squeeze out. So requests are sent on a fixed schedule
(--rates, default 50, 100 and 200 petitions/s, --seconds each, default 60) whatever
the server does, and each one's latency runs from the moment it was SCHEDULED, not
from when a connection was free to send it: a server that falls behind is charged
for the queue it builds (no coordinated omission). Per rate: p50/p90/p99/max,
completed per second, errors, and requests sent but never answered; after the run,
the rows in the database are counted against the suggestions answered `stored: true`.

Then a saturated run (--saturate-seconds, default 30; 0 skips it): --connections
clients send back to back, which gives the most the service completes per second.
It is compared with what the model alone does: TriageModel.suggest on the same
petitions in this process, on one core (as benchmarks/speed.py times `suggest`),
times the cores the server may use.

The benchmark starts the server itself, on a throwaway TRIAGE_HOME (SQLite) in a
temporary folder, removed afterwards: `triage serve --workers N` (default 2, the
production count on the project's 2-core machines; `triage serve` defaults to one
worker per core), with an intake key made by `triage keys create`. The model is
--model (copied and signed with the throwaway key), else one trained there on the
real train.csv and the bundled corpus (about a minute), else the bundled default.
With --database-url the service stores in that database (an empty PostgreSQL one)
instead of the throwaway SQLite file.

Petitions are the real ones, read at run time from ../shared/data/real (train, dev
and cities: title and body), shuffled with --seed and cycled; without them the
bundled data/corpus/petitions.csv is used, and the output says so. Each request carries
a case number of its own (external_id), as a petition system sends them, so the service
pays for its look-up of a stored copy (a retry) on every petition; --no-case-numbers
sends none. Everything is sent to 127.0.0.1 and the run stops by itself.

The client is asyncio on raw HTTP/1.1 keep-alive connections (a pool that grows
when every connection is busy): its own CPU time is reported beside the server's,
as both share the machine.

    python benchmarks/load.py [--rates 50,100,200] [--seconds 60] [--workers 2]
        [--saturate-seconds 30] [--connections 8] [--model DIR] [--json OUT.json] [--no-case-numbers]
        [--profile-rate 100 --profile-out DIR]   # py-spy each worker during that rate
        [--database-url postgresql+psycopg://USER:PASSWORD@127.0.0.1:PORT/DB]

Exit 1 when a request failed or went unanswered, 2 on bad options or a server that
does not start."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import csv
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real"
REAL_FILES = ("train.csv", "dev.csv", "cities.csv")
BUNDLED = ROOT / "data" / "corpus" / "petitions.csv"
HOST = "127.0.0.1"
# The service refuses longer bodies (TRIAGE_MAX_BODY_CHARS) and titles; a petition is cut to fit, not dropped.
MAX_BODY_CHARS, MAX_TITLE_CHARS = 20_000, 500
# uvicorn closes a keep-alive connection idle this long (its default is 5 s); a connection
# idle longer is not reused, as the server may be closing it just as a request goes out.
IDLE_REUSE_S = 4.0
# Requests in flight at once, beyond which arrivals wait for a connection (and that wait counts).
MAX_CONNECTIONS = 512
# Connections opened before a phase, one by one with this pause, so that both workers get some.
SPREAD_CONNECTIONS, SPREAD_PAUSE_S = 16, 0.02


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ petitions
def read_petitions(real: Path, seed: int, names: tuple[str, ...] = REAL_FILES) -> tuple[list[dict[str, str]], str]:
    """The petitions to send, shuffled, and where they came from."""
    files = [real / name for name in names if (real / name).exists()]
    source = ", ".join(str(f) for f in files)
    if not files:
        log(f"no real petitions under {real}: sending the bundled generated corpus {BUNDLED} instead "
            "(shorter than real petitions, so the figures are NOT comparable with real-length ones)")
        files, source = [BUNDLED], f"{BUNDLED} (bundled, generated: real petitions absent)"
    petitions = []
    for path in files:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                body = (row.get("body") or "").strip()
                if body:
                    petitions.append({"title": (row.get("title") or "").strip()[:MAX_TITLE_CHARS],
                                      "body": body[:MAX_BODY_CHARS]})
    random.Random(seed).shuffle(petitions)
    return petitions, source


def request_bytes(petition: dict[str, str], key: str, port: int) -> bytes:
    body = json.dumps(petition, ensure_ascii=False).encode("utf-8")
    head = (f"POST /v1/triage HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


@dataclass(frozen=True)
class Requests:
    """The n-th request of the run: the petitions cycled, each send with a case number
    (external_id) of its own when `case_numbers`, as a petition system sends them. A case
    number makes the service look for a stored copy of the petition (a client's retry)
    before triaging it; one of its own keeps each send a new petition, not a retry."""

    petitions: list[dict[str, str]]
    key: str
    port: int
    case_numbers: bool

    def at(self, n: int) -> bytes:
        petition = self.petitions[n % len(self.petitions)]
        if self.case_numbers:
            petition = petition | {"external_id": f"LOAD-{n:09d}"}
        return request_bytes(petition, self.key, self.port)


# ------------------------------------------------------------------ the client
class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Sends one request and reads its response: (status, body, server keeps the connection)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            raise ValueError("response without Content-Length")
        end = lower.index(b"\r\n", start + 2)
        body = await self.reader.readexactly(int(lower[start + 17:end]))
        self.last_used = time.monotonic()
        return status, body, b"\r\nconnection: close" not in lower


class Pool:
    """Idle keep-alive connections, taken in turn (the one idle longest first); a new one
    is opened when none is idle, up to MAX_CONNECTIONS.

    Each connection stays with the worker process that accepted it, and a worker accepts
    every connection waiting at once: connections opened together may all go to one
    worker, and reusing the most recent one would keep one worker busy and the other idle.
    So `open_spread` opens the first ones one by one, and they are used in turn."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[Connection] = deque()
        self.open = 0
        self.most_open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def get(self) -> Connection:
        while True:
            while self.idle:
                connection = self.idle.popleft()
                if time.monotonic() - connection.last_used < IDLE_REUSE_S:
                    return connection
                self._drop(connection)
            if self.open < MAX_CONNECTIONS:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
                try:
                    return Connection(*await asyncio.open_connection(HOST, self.port))
                except BaseException:
                    self.open -= 1
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter

    async def open_spread(self, count: int) -> None:
        for _ in range(count):
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self.idle.append(Connection(*await asyncio.open_connection(HOST, self.port)))
            await asyncio.sleep(SPREAD_PAUSE_S)

    def put(self, connection: Connection) -> None:
        self.idle.append(connection)
        self._wake()

    def discard(self, connection: Connection) -> None:
        self._drop(connection)
        self._wake()

    def _drop(self, connection: Connection) -> None:
        connection.close()
        self.open -= 1

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        while self.idle:
            self._drop(self.idle.pop())


@dataclass
class Tally:
    """What one phase sent and got back."""

    scheduled: int = 0  # requests due (open loop) or begun (closed loop)
    sent: int = 0  # written to a connection
    most_connections: int = 0
    last_answer: float = 0.0  # time.monotonic of the last answer read
    latencies_ms: list[float] = field(default_factory=list)  # answered 200, from the scheduled (or sending) moment
    errors: dict[str, int] = field(default_factory=dict)
    not_stored: int = 0  # answered 200 with stored: false
    similar: int = 0  # answered with at least one similar case
    review: int = 0  # answered needs_review: true

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def send_one(pool: Pool, request: bytes, tally: Tally, since: float, deadline: float) -> None:
    """One request; its latency runs from `since` (time.monotonic) until the whole answer is read."""
    tally.scheduled += 1
    try:
        connection = await asyncio.wait_for(pool.get(), max(0.001, deadline - time.monotonic()))
    except TimeoutError:
        return  # no connection free before its deadline: counted as not answered
    except OSError as exc:
        tally.error(f"connect: {type(exc).__name__}")
        return
    tally.sent += 1
    try:
        status, body, keep = await asyncio.wait_for(connection.exchange(request), max(0.001, deadline - time.monotonic()))
    except TimeoutError:
        pool.discard(connection)
        return  # counted as not answered
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        pool.discard(connection)
        tally.error(type(exc).__name__)
        return
    except asyncio.CancelledError:
        pool.discard(connection)
        raise
    tally.last_answer = time.monotonic()
    elapsed = (tally.last_answer - since) * 1000
    (pool.put if keep else pool.discard)(connection)
    if status != 200:
        tally.error(f"HTTP {status}: {body[:100].decode('utf-8', 'replace')}")
        return
    tally.latencies_ms.append(elapsed)
    # Substring checks, not a JSON parse: the client's CPU is the server's loss on a shared machine.
    tally.not_stored += b'"stored":false' in body
    tally.review += b'"needs_review":true' in body
    tally.similar += b'"similar_cases":[]' not in body


async def open_loop(port: int, requests: Requests, offset: int, rate: float, seconds: float, timeout: float) -> Tally:
    """Arrivals every 1/rate s for `seconds`, each sent on a free (or new) connection."""
    pool, tally = Pool(port), Tally()
    await pool.open_spread(SPREAD_CONNECTIONS)
    count = int(rate * seconds)
    started = time.monotonic() + 0.1
    tasks = []
    for i in range(count):
        scheduled = started + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        request = requests.at(offset + i)
        tasks.append(asyncio.create_task(send_one(pool, request, tally, scheduled, scheduled + timeout)))
    if tasks:
        # Every request has its own deadline: this wait ends by itself.
        await asyncio.wait(tasks, timeout=timeout + 5)
    unfinished = [t for t in tasks if not t.done()]
    for task in unfinished:
        task.cancel()
    if unfinished:
        await asyncio.wait(unfinished)
    tally.most_connections = pool.most_open
    pool.close()
    return tally


async def closed_loop(port: int, requests: Requests, offset: int, connections: int, seconds: float,
                      timeout: float) -> Tally:
    """`connections` clients, each sending its next request as soon as the last is answered."""
    pool, tally = Pool(port), Tally()
    await pool.open_spread(connections)
    stop = time.monotonic() + seconds
    counter = iter(range(offset, offset + 10_000_000))

    async def client() -> None:
        while time.monotonic() < stop:
            now = time.monotonic()
            await send_one(pool, requests.at(next(counter)), tally, now, now + timeout)

    await asyncio.gather(*(client() for _ in range(connections)))
    tally.most_connections = pool.most_open
    pool.close()
    return tally


# ------------------------------------------------------------------ the server
def triage_command(*args: str) -> list[str]:
    # This checkout's code, whatever is installed.
    return [sys.executable, "-m", "triage.cli", *args]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def process_tree(pid: int) -> dict[str, Any]:
    """CPU seconds and resident memory (KiB) of the server and its worker processes, summed."""
    status = {"cpu_seconds": 0.0, "VmRSS": 0, "VmHWM": 0, "processes": 0, "workers": []}
    for process in descendants(pid):
        try:
            lines = Path(f"/proc/{process}/status").read_text().splitlines()
            fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
            command = Path(f"/proc/{process}/cmdline").read_bytes()
        except OSError:
            continue  # exited between listing and reading
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                status[key] += int(value.split()[0])
        status["cpu_seconds"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        status["processes"] += 1
        # uvicorn's workers are multiprocessing children (spawned: their command line says so; the
        # resource tracker, another such child, says otherwise).
        if process != pid and b"spawn_main" in command:
            status["workers"].append(process)
    return status


class Server:
    """`triage serve` on a throwaway TRIAGE_HOME, with an intake key."""

    def __init__(self, home: Path, workers: int, env_extra: dict[str, str], database_url: str | None = None) -> None:
        self.home, self.workers, self.database_url = home, workers, database_url
        self.port = free_port()
        self.env = {**os.environ, "TRIAGE_HOME": str(home), "PYTHONPATH": str(ROOT), "TRIAGE_HOST": HOST,
                    "TRIAGE_PORT": str(self.port), **env_extra}
        for name in ("TRIAGE_DATABASE_URL", "TRIAGE_MODEL_DIR", "TRIAGE_REGISTRY_DIR", "TRIAGE_SIGNING_KEY",
                     "TRIAGE_SIGNING_KEY_FILE", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(name, None)  # everything under the throwaway home
        if database_url:
            self.env["TRIAGE_DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    def run(self, *args: str) -> str:
        done = subprocess.run(triage_command(*args), env=self.env, capture_output=True, text=True, cwd=self.home)
        if done.returncode != 0:
            raise RuntimeError(f"triage {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done.stdout

    def prepare_model(self, model: str | None, real: Path) -> str:
        target = self.home / "models" / "default"
        if model:
            shutil.copytree(model, target)
            self.run("sign", "--model", str(target))  # with this home's key, made here
            return f"{model} (copied, signed with a throwaway key)"
        if (real / "train.csv").exists():
            log("training a model on the real train.csv and the bundled corpus (about a minute) …")
            self.run("train", "--data", str(real / "train.csv"), "--with-corpus", "--out", str(target))
            return f"trained here on {real / 'train.csv'} + the bundled corpus"
        return "the bundled default model (trained by `triage serve` from the bundled corpus)"

    def start(self, timeout: float = 600) -> None:
        self.key = self.run("keys", "create", "--role", "intake", "--label", "load benchmark").strip()
        log_file = (self.home / "serve.log").open("wb")
        self.process = subprocess.Popen(triage_command("serve", "--workers", str(self.workers)), env=self.env,
                                        cwd=self.home, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"triage serve exited with {self.process.returncode}: "
                                   f"{(self.home / 'serve.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/readyz", timeout=2) as answer:
                    if answer.status == 200 and self._started() >= self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"triage serve not ready within {timeout:.0f} s")

    def _started(self) -> int:
        # Each worker says so once its app (model, database, same-matter index) is up; until
        # then another worker answers /readyz. Unless the log level hides it: then the workers running.
        text = (self.home / "serve.log").read_text(errors="replace")
        if self.env.get("TRIAGE_LOG_LEVEL", "info").lower() in ("info", "debug"):
            return text.count("Application startup complete")
        assert self.process is not None
        return len(process_tree(self.process.pid)["workers"])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # uvicorn's supervisor stops its workers on SIGTERM, after the requests in flight.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            for pid in reversed(descendants(self.process.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(10)

    def stored_rows(self) -> dict[str, int]:
        if self.database_url:
            from sqlalchemy import create_engine, text

            engine = create_engine(self.database_url)
            try:
                with engine.connect() as db:
                    return {table: db.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                            for table in ("triages", "review_items")}
            finally:
                engine.dispose()
        with sqlite3.connect(f"file:{self.home / 'triage.db'}?mode=ro", uri=True) as db:
            return {"triages": db.execute("SELECT count(*) FROM triages").fetchone()[0],
                    "review_items": db.execute("SELECT count(*) FROM review_items").fetchone()[0]}


# ------------------------------------------------------------------ figures
def nearest_rank(ordered: list[float], q: float) -> float | None:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def summary(tally: Tally, seconds: float, cpu: dict[str, float]) -> dict[str, Any]:
    ordered = sorted(tally.latencies_ms)
    answered = len(ordered)
    errors = sum(tally.errors.values())
    return {
        "scheduled": tally.scheduled, "sent": tally.sent, "answered_ok": answered, "errors": errors,
        "error_kinds": tally.errors, "not_answered": tally.scheduled - answered - errors,
        "not_stored": tally.not_stored, "with_similar_cases": tally.similar, "needs_review": tally.review,
        "seconds": round(seconds, 3), "completed_per_second": round(answered / seconds, 1) if seconds else 0.0,
        "p50_ms": nearest_rank(ordered, 0.5), "p90_ms": nearest_rank(ordered, 0.9),
        "p99_ms": nearest_rank(ordered, 0.99), "max_ms": ordered[-1] if ordered else None,
        "mean_ms": statistics.fmean(ordered) if ordered else None,
        "most_connections": tally.most_connections,
        **cpu,
    }


def cpu_delta(before: tuple[float, dict[str, Any]], after: tuple[float, dict[str, Any]], answered: int,
              seconds: float) -> dict[str, float]:
    client = after[0] - before[0]
    server = after[1]["cpu_seconds"] - before[1]["cpu_seconds"]
    return {"client_cpu_seconds": round(client, 2), "client_cpu_share": round(client / seconds, 3) if seconds else 0.0,
            "server_cpu_seconds": round(server, 2),
            "server_cpu_ms_per_request": round(1000 * server / answered, 2) if answered else None}


def machine_cpu() -> tuple[int, int]:
    """Jiffies since boot of all cores: (busy, total), from /proc/stat. Busy includes the
    database server's processes, which are not the service's, and any other job's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields) - idle, sum(fields)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_process_rate(model_dir: Path, home: Path, petitions: list[dict[str, str]], calls: int) -> dict[str, Any]:
    """TriageModel.suggest on one core, in this process: what the service's model step costs alone."""
    sys.path.insert(0, str(ROOT))
    from model.artifact import load_model, signing_key
    from model.text import join_fields

    loaded = load_model(model_dir, signing_key(create=False, key_file=home / "signing.key"))
    texts = [join_fields(p["title"], p["body"]) for p in petitions[:calls]]
    for text in texts[:20]:
        loaded.model.suggest(text)
    timings = []
    wall, cpu = time.perf_counter(), time.process_time()
    for text in texts:
        started = time.perf_counter()
        loaded.model.suggest(text)
        timings.append((time.perf_counter() - started) * 1000)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    timings.sort()
    rate = {"calls": len(texts), "per_second": round(len(texts) / wall, 1), "per_cpu_second": round(len(texts) / cpu, 1),
            "median_ms": round(statistics.median(timings), 2), "p99_ms": round(nearest_rank(timings, 0.99) or 0, 2)}
    model = loaded.model
    if model.encoder_heads_:  # the optional encoder heads: how often these petitions ask the encoder
        plain = copy.copy(model)
        plain.encoder_heads_ = {}
        rate["encoder_asked_share"] = round(float(model.asks_encoder(plain.predict_proba(texts)).mean()), 4)
    return rate


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("load", "sent", "ok", "errors", "unanswered", "done/s", "p50 ms", "p99 ms", "max ms", "conns",
              "client CPU", "server CPU ms/req", "all cores busy")
    table = [header] + [(
        r["load"], str(r["sent"]), str(r["answered_ok"]), str(r["errors"]), str(r["not_answered"]),
        fmt(r["completed_per_second"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["max_ms"]),
        str(r["most_connections"]), f"{100 * r['client_cpu_share']:.0f} %", fmt(r["server_cpu_ms_per_request"]),
        f"{100 * r['machine_cpu_busy']:.0f} %",
    ) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for j, line in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for kind, count in r["error_kinds"].items():
            print(f"  {r['load']}: {count} x {kind}")


def settle(pid: int, limit: float = 180.0) -> float:
    """Waits until the server is idle (under a fifth of a core over a second), at most
    `limit` s, and returns how long that took: a server that fell behind goes on with the
    requests the client gave up on, and the next phase must not pay for them."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = process_tree(pid)["cpu_seconds"]
        time.sleep(1.0)
        if process_tree(pid)["cpu_seconds"] - before < 0.2:
            break
    return round(time.monotonic() - started, 1)


def profile_workers(server: Server, seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on each worker for `seconds` (idle time left out), written as folded stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    assert server.process is not None
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                              "--format", "raw", "--output", str(out / f"worker-{pid}.folded"), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in process_tree(server.process.pid)["workers"]]


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    real = Path(args.real)
    petitions, source = read_petitions(real, args.seed, tuple(f"{name.strip()}.csv" for name in args.sources.split(",")))
    lengths = [len(p["title"]) + len(p["body"]) for p in petitions]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "workers": args.workers, "petitions": {"source": source, "distinct": len(petitions),
                                               "mean_chars": round(statistics.fmean(lengths)),
                                               "median_chars": round(statistics.median(lengths))},
        "repeats": "petitions are cycled: a run longer than the distinct petitions sends each again, and the "
                   "same-matter lookup links the copies (see with_similar_cases and needs_review per phase)",
        "seconds_per_rate": args.seconds, "timeout_seconds": args.timeout, "phases": [],
        "database_kind": args.database_url.split(":", 1)[0].split("+", 1)[0] if args.database_url else "sqlite",
    }
    env = {"TRIAGE_LOG_LEVEL": args.log_level} if args.log_level else {}
    server = Server(home, args.workers, env, args.database_url)
    results["model"] = server.prepare_model(args.model, real)
    log(f"starting triage serve --workers {args.workers} on {HOST}:{server.port} (TRIAGE_HOME {home}) …")
    server.start()
    assert server.process is not None
    if args.inprocess_calls:
        # With the server started (it may have trained the default model) and idle.
        log(f"timing TriageModel.suggest in this process, one core, {args.inprocess_calls} calls …")
        results["in_process"] = in_process_rate(home / "models" / "default", home, petitions, args.inprocess_calls)
    requests = Requests(petitions, server.key, server.port, not args.no_case_numbers)
    results["case_numbers"] = requests.case_numbers
    offset = 0
    try:
        # Warm-up: first requests load lazy parts (the matter index, imports); not counted.
        warm = asyncio.run(closed_loop(server.port, requests, offset, 2, args.warmup_seconds, args.timeout))
        # Past every petition a phase took, sent or not: each request has a case number of its own,
        # and one scheduled but not sent in an overloaded phase (no connection free in time) left
        # its place to the next phase, which sent again the ones after it that had been stored,
        # answered as copies with no row of their own.
        offset += warm.scheduled
        results["warmup_requests"] = len(warm.latencies_ms)
        phases: list[tuple[str, float]] = [(f"{rate:g}/s", rate) for rate in args.rates]
        if args.saturate_seconds > 0:
            phases.append((f"saturated, {args.connections} conns", 0.0))
        for name, rate in phases:
            waited = settle(server.process.pid)
            log(f"{name} for {args.seconds if rate else args.saturate_seconds:g} s (server idle after {waited:g} s) …")
            spies = []
            if args.profile_rate is not None and rate == args.profile_rate:
                spies = profile_workers(server, args.seconds, Path(args.profile_out))
            before = (own_cpu(), process_tree(server.process.pid))
            machine_before = machine_cpu()
            load_before = os.getloadavg()[0]
            started = time.monotonic()
            if rate:
                tally = asyncio.run(open_loop(server.port, requests, offset, rate, args.seconds, args.timeout))
            else:
                tally = asyncio.run(closed_loop(server.port, requests, offset, args.connections, args.saturate_seconds,
                                                args.timeout))
            # Until the last answer: a server that falls behind keeps answering after the schedule ends.
            seconds = max(tally.last_answer - started, args.seconds if rate else 0.0)
            after = (own_cpu(), process_tree(server.process.pid))
            machine_after = machine_cpu()
            offset += tally.scheduled
            row = summary(tally, seconds, cpu_delta(before, after, len(tally.latencies_ms), time.monotonic() - started))
            busy, total = (a - b for a, b in zip(machine_after, machine_before, strict=True))
            row["machine_cpu_busy"] = round(busy / total, 3) if total else None
            row.update(load=name, rate=rate or None, connections=None if rate else args.connections, settled_seconds=waited,
                       wall_seconds=round(time.monotonic() - started, 2),
                       load_avg=[round(load_before, 2), round(os.getloadavg()[0], 2)])
            results["phases"].append(row)
            for spy in spies:
                spy.wait(args.seconds + 30)
            log(f"  p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms, {row['completed_per_second']}/s, "
                f"{row['errors']} errors, {row['not_answered']} unanswered")
        results["settled_after_last_seconds"] = settle(server.process.pid)
        tree = process_tree(server.process.pid)
        results["server_memory_mib"] = {"rss": round(tree["VmRSS"] / 1024), "peak_hwm": round(tree["VmHWM"] / 1024)}
    finally:
        server.stop()
    stored = server.stored_rows()
    answered_stored = results["warmup_requests"] + sum(p["answered_ok"] - p["not_stored"] for p in results["phases"])
    results["database"] = {**stored, "answered_stored": answered_stored,
                           # More rows than acknowledged: a request stored, then its answer lost (timeout).
                           "rows_minus_answered_stored": stored["triages"] - answered_stored}
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    saturated = next((p for p in results["phases"] if p["rate"] is None), None)
    if saturated and "in_process" in results:
        ceiling = results["in_process"]["per_second"] * args.workers
        results["saturated_vs_in_process"] = {
            "in_process_per_second_x_cores": round(ceiling, 1),
            "cores": args.workers,
            "share": round(saturated["completed_per_second"] / ceiling, 3),
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,100,200", help="arrivals per second, one phase each (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each rate's phase (default: %(default)s)")
    parser.add_argument("--saturate-seconds", type=float, default=30.0, help="closed-loop phase; 0 skips it (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=8, help="clients of the saturated phase (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="`triage serve --workers` (default: %(default)s)")
    parser.add_argument("--model", help="a trained model directory to serve (default: train one on the real train.csv)")
    parser.add_argument("--real", default=str(REAL), help="folder with the real petitions (default: %(default)s)")
    parser.add_argument("--sources", default="train,dev,cities",
                        help="its files to send, cycled when a run needs more (default: %(default)s); adding "
                             "unlabeled gives more distinct petitions, shorter on average, and fewer repeats")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds after its scheduled time a request counts as unanswered")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--inprocess-calls", type=int, default=1000, help="TriageModel.suggest calls timed in-process; 0 skips")
    parser.add_argument("--log-level", help="TRIAGE_LOG_LEVEL of the server (default: the service's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-case-numbers", action="store_true",
                        help="send petitions without an external_id (no lookup of a stored copy)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to store in, as TRIAGE_DATABASE_URL "
                                               "(default: SQLite in the throwaway TRIAGE_HOME)")
    parser.add_argument("--profile-rate", type=float, help="py-spy every worker during this rate's phase")
    parser.add_argument("--profile-out", default="load-profile", help="folder for py-spy's folded stacks")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "load.json"),
                        help="write the figures here (default: %(default)s); '' writes nothing")
    args = parser.parse_args()
    try:
        args.rates = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        print(f"load: --rates {args.rates!r}: numbers separated by commas", file=sys.stderr)
        return 2
    if any(r <= 0 or r > 2000 for r in args.rates) or not 0 < args.seconds <= 600 or not 0 <= args.saturate_seconds <= 600:
        print("load: each rate in (0, 2000], --seconds in (0, 600], --saturate-seconds in [0, 600]", file=sys.stderr)
        return 2
    if not 1 <= args.connections <= 256 or not 1 <= args.workers <= 16:
        print("load: --connections in [1, 256], --workers in [1, 16]", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="triage-load-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        try:
            results = run(args, home)
        except RuntimeError as exc:
            print(f"load: {exc}", file=sys.stderr)
            return 2

    print(f"\nPOST /v1/triage, triage serve --workers {args.workers} ({results['database_kind']}) on {HOST}; {results['petitions']['distinct']} "
          f"distinct petitions (mean {results['petitions']['mean_chars']} characters) from {results['petitions']['source']}; "
          f"model: {results['model']}")
    print(f"open loop: latency from each request's scheduled time; {args.seconds:g} s per rate\n")
    print_table(results["phases"])
    database = results["database"]
    print(f"\ndatabase: {database['triages']} triage rows, {database['answered_stored']} answered stored: true "
          f"(difference {database['rows_minus_answered_stored']}); {database['review_items']} review items")
    if "in_process" in results:
        ip = results["in_process"]
        print(f"in-process TriageModel.suggest, one core: {ip['per_second']}/s (median {ip['median_ms']} ms, "
              f"p99 {ip['p99_ms']} ms over {ip['calls']} calls)")
    if "saturated_vs_in_process" in results:
        s = results["saturated_vs_in_process"]
        print(f"saturated throughput is {100 * s['share']:.0f} % of in-process rate x {s['cores']} cores "
              f"({s['in_process_per_second_x_cores']}/s)")
    print(f"load average {results['machine']['load_avg_at_start'][0]:.2f} at start, "
          f"{results['machine']['load_avg_at_end'][0]:.2f} at end ({os.cpu_count()} CPUs, shared by client and server)")
    if args.json:
        target = Path(args.json)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".tmp")
        partial.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
        partial.replace(target)
    failed = any(p["errors"] or p["not_answered"] for p in results["phases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
