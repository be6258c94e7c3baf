"""HTTP load on POST /v1/triage of a running `triage serve`, on loopback only.

For each concurrency level (default 1, 8 and 32 clients), that many threads each
keep one HTTP/1.1 connection open and send petitions back to back until
--seconds have passed or --max-requests have been sent at that level, whichever
comes first. Prints p50/p90/p99 latency, requests per second and errors per level,
the CPU the load generator itself used (it shares the machine with the server),
and, with --pid, the server's CPU time and resident memory (VmRSS, peak VmHWM).

Every request is stored by the service (and high-risk ones enter the review
queue): point it at a throwaway database.

    TRIAGE_DATABASE_URL=sqlite:////tmp/loadtest/t.db triage serve &
    K=$(TRIAGE_DATABASE_URL=sqlite:////tmp/loadtest/t.db triage keys create --role intake)
    python benchmarks/load.py --key "$K" --pid $! [--url http://127.0.0.1:8000] [--seconds 20] [--max-requests 5000]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import ipaddress
import json
import math
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# Short and long, with and without rule triggers, so the explanation and rule paths are exercised.
PETITIONS = [
    {"title": "老板拖欠工资", "body": "我在电子厂上班，老板已经三个月没发工资了，请劳动监察部门帮帮我们。", "channel": "网上"},
    {"title": "咨询视同缴费年限", "body": "我1985年参加工作，在国营厂干了十年，后来企业改制，请问这十年能不能算视同缴费年限？"},
    {"title": "小区物业乱收停车费", "body": "我们小区物业公司今年起每月多收三百元停车费，业主多次反映都没人管。"},
    {"title": "工地欠薪，年关将至", "body": "我们二十多个农民工在某工地干了大半年，包工头一直拖着不给钱，春节快到了，"
     "连回家的路费都没有，多次向有关部门反映至今没有结果，再不解决我们只能集体去省里上访。", "channel": "来访"},
    {"title": "原民办教师待遇问题", "body": "本人是原民办教师，在村小教了二十三年书，后来被清退，现在年迈多病，"
     "没有任何生活来源，请求落实民办教师教龄补贴和养老待遇。" * 3},
    {"title": "", "body": "工伤认定申请交上去已经四个月了，社保局一直说在审核，单位也不配合提供材料，"
     "我现在腿伤还没好，医药费都是借的，请问工伤认定的时限是多久？" * 6},
]


def loopback_only(url: str) -> tuple[str, str, int]:
    parsed = urlparse(url)
    if parsed.scheme != "http":
        raise ValueError(f"--url {url!r}: only plain http:// on loopback is supported")
    host = parsed.hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise ValueError(f"--url {url!r}: refusing a non-loopback host; this benchmark only sends traffic "
                             "to 127.0.0.0/8, ::1 or localhost") from None
    return host, parsed.path.rstrip("/"), parsed.port or 80


def load_petitions(path: str | None) -> list[dict[str, str]]:
    if not path:
        return PETITIONS
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "body" not in reader.fieldnames:
            raise ValueError(f"{path}: needs a 'body' column (and optionally 'title'), found {reader.fieldnames}")
        rows = [{"title": (r.get("title") or "")[:500], "body": r["body"]} for r in reader if (r.get("body") or "").strip()]
    if not rows:
        raise ValueError(f"{path}: no row with a non-empty body")
    return rows


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(child) for child in task.read_text().split()]
    return found


def proc_status(pid: int) -> dict[str, Any]:
    """Resident memory (KiB) and CPU seconds of the server: the process and, with
    --workers N, its worker processes (summed)."""
    status = {"VmRSS": 0, "VmHWM": 0, "Threads": 0, "cpu_seconds": 0.0, "processes": 0}
    for process in _descendants(pid):
        try:
            lines = Path(f"/proc/{process}/status").read_text().splitlines()
            # /proc/PID/stat: the command may contain spaces, so count fields after the closing parenthesis
            fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue  # exited between listing and reading
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                status[key] += int(value.split()[0])
        status["cpu_seconds"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        status["processes"] += 1
    return status


def quantile(ordered: list[float], q: float) -> float | None:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


class Level:
    def __init__(self, clients: int, seconds: float, max_requests: int) -> None:
        self.clients, self.seconds, self.max_requests = clients, seconds, max_requests
        self.lock = threading.Lock()
        self.issued = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def claim(self, deadline: float) -> bool:
        with self.lock:
            if self.issued >= self.max_requests or time.perf_counter() >= deadline:
                return False
            self.issued += 1
            return True

    def record(self, ms: float | None, error: str | None) -> None:
        with self.lock:
            if error is None and ms is not None:
                self.latencies.append(ms)
            else:
                self.errors[error or "?"] = self.errors.get(error or "?", 0) + 1


def client_loop(level: Level, host: str, port: int, path: str, headers: dict[str, str], bodies: list[bytes],
                deadline: float, offset: int, timeout: float) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    i = offset
    try:
        while level.claim(deadline):
            body = bodies[i % len(bodies)]
            i += 1
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                ms = (time.perf_counter() - started) * 1000
                if response.status == 200:
                    level.record(ms, None)
                else:
                    level.record(None, f"HTTP {response.status}: {payload[:120].decode('utf-8', 'replace')}")
            except (OSError, http.client.HTTPException) as exc:
                level.record(None, type(exc).__name__)
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
    finally:
        connection.close()


def run_level(clients: int, args: argparse.Namespace, target: tuple[str, str, int], bodies: list[bytes]) -> dict[str, Any]:
    host, base, port = target
    headers = {"X-API-Key": args.key, "Content-Type": "application/json", "Connection": "keep-alive"}
    level = Level(clients, args.seconds, args.max_requests)
    server_before = proc_status(args.pid) if args.pid else None
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + args.seconds
    threads = [threading.Thread(target=client_loop, daemon=True,
                                args=(level, host, port, f"{base}/v1/triage", headers, bodies, deadline, k * 7, args.timeout))
               for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # a request in flight at the deadline may take up to --timeout more
        thread.join(args.seconds + args.timeout + 5)
    elapsed = time.perf_counter() - started
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    ordered = sorted(level.latencies)
    result: dict[str, Any] = {
        "clients": clients, "seconds": elapsed, "ok": len(ordered), "errors": sum(level.errors.values()),
        "error_kinds": level.errors, "requests_per_second": len(ordered) / elapsed if elapsed else 0.0,
        "p50_ms": quantile(ordered, 0.50), "p90_ms": quantile(ordered, 0.90), "p99_ms": quantile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else None, "mean_ms": statistics.fmean(ordered) if ordered else None,
        "stopped_by": "max-requests" if level.issued >= args.max_requests else "seconds",
        "client_cpu_seconds": (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime),
    }
    if server_before:
        server_after = proc_status(args.pid)
        result["server_cpu_seconds"] = server_after["cpu_seconds"] - server_before["cpu_seconds"]
        result["server_cpu_ms_per_request"] = 1000 * result["server_cpu_seconds"] / len(ordered) if ordered else None
        result["server_rss_kib"] = server_after["VmRSS"]
        result["server_processes"] = server_after["processes"]
    return result


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service, on loopback (default: %(default)s)")
    parser.add_argument("--key", required=True, help="an intake (or admin) API key")
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients per level (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per level (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=5000, help="request bound per level (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before one request counts as failed")
    parser.add_argument("--pid", type=int, help="the server's process id, for its CPU time and memory")
    parser.add_argument("--petitions", help="CSV with body (and title) columns to send instead of the built-in petitions")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    try:
        target = loopback_only(args.url)
        petitions = load_petitions(args.petitions)
        levels = [int(x) for x in args.levels.split(",") if x.strip()]
    except ValueError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    if not levels or min(levels) < 1 or max(levels) > 256:
        print("load: --levels must be between 1 and 256 clients", file=sys.stderr)
        return 2
    if args.seconds <= 0 or args.seconds > 600 or args.max_requests < 1 or args.max_requests > 100_000:
        print("load: --seconds must be in (0, 600] and --max-requests in [1, 100000]", file=sys.stderr)
        return 2
    if args.pid and not Path(f"/proc/{args.pid}/status").exists():
        print(f"load: --pid {args.pid}: no such process", file=sys.stderr)
        return 2
    host, base, port = target
    bodies = [json.dumps(p, ensure_ascii=False).encode("utf-8") for p in petitions]

    # One checked request first: a wrong key or a dead server should fail loudly, not as N errors.
    try:
        connection = http.client.HTTPConnection(host, port, timeout=args.timeout)
        connection.request("POST", f"{base}/v1/triage", body=bodies[0],
                           headers={"X-API-Key": args.key, "Content-Type": "application/json"})
        response = connection.getresponse()
        detail = response.read()[:300].decode("utf-8", "replace")
        connection.close()
    except OSError as exc:
        print(f"load: cannot reach {args.url} ({exc}); start `triage serve` first", file=sys.stderr)
        return 2
    if response.status != 200:
        print(f"load: POST {args.url}/v1/triage answered {response.status}: {detail}", file=sys.stderr)
        return 2

    results: dict[str, Any] = {"url": args.url, "petitions": len(bodies), "cpus": os.cpu_count(), "levels": []}
    if args.pid:
        results["server_before"] = proc_status(args.pid)
    for clients in levels:
        print(f"[{time.strftime('%H:%M:%S')}] {clients} client(s), up to {args.seconds:g} s / {args.max_requests} requests …",
              file=sys.stderr, flush=True)
        results["levels"].append(run_level(clients, args, target, bodies))
    if args.pid:
        results["server_after"] = proc_status(args.pid)

    header = ("clients", "ok", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "stopped by",
              "client CPU s", "server CPU ms/req")
    table = [header] + [(
        str(r["clients"]), str(r["ok"]), str(r["errors"]), fmt(r["requests_per_second"]), fmt(r["p50_ms"]),
        fmt(r["p90_ms"]), fmt(r["p99_ms"]), fmt(r["max_ms"]), r["stopped_by"], fmt(r["client_cpu_seconds"]),
        fmt(r.get("server_cpu_ms_per_request")),
    ) for r in results["levels"]]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print(f"\nPOST /v1/triage on {args.url}, {len(bodies)} distinct petitions, {os.cpu_count()} CPUs shared by client and server")
    for j, line in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in results["levels"]:
        for kind, count in r["error_kinds"].items():
            print(f"  {r['clients']} clients: {count} x {kind}")
    if args.pid:
        before, after = results["server_before"], results["server_after"]
        served = sum(r["ok"] for r in results["levels"])
        print(f"server pid {args.pid} and its {after['processes'] - 1} worker process(es), summed: VmRSS "
              f"{before['VmRSS'] / 1024:.0f} MiB before, {after['VmRSS'] / 1024:.0f} MiB after {served} requests, "
              f"peak VmHWM {after['VmHWM'] / 1024:.0f} MiB, {after['Threads']} threads")
    if args.json:
        target_path = Path(args.json)
        partial = target_path.with_name(target_path.name + ".tmp")
        partial.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
        partial.replace(target_path)
    return 1 if any(r["errors"] for r in results["levels"]) else 0


if __name__ == "__main__":
    sys.exit(main())
