"""What the HTTP layer alone completes per second, on loopback: the ceiling under the service.

Issue #21 asks the saturated service to complete 60 % of the model's own rate times the
cores. This measures the part of a request that no change to the model, the same-matter
lookup or storing can remove: uvicorn with the production worker count, FastAPI routing,
and the service's own `PetitionIn` validation, answering a fixed body the size of a
suggestion. Nothing is computed or stored. The load is `benchmarks/load.py`'s saturated
phase (clients that never pause, on raw keep-alive connections), with the same real
petitions, sent to 127.0.0.1; the run stops by itself.

    python benchmarks/http_ceiling.py [--seconds 20] [--connections 8] [--workers 2]
        [--json benchmarks/results/http_ceiling.json]"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from fastapi import FastAPI, Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import load  # noqa: E402

from service.schemas import PetitionIn  # noqa: E402

# About the length of a suggestion with its explanations, as the service writes it.
ANSWER = json.dumps({"triage_id": "0" * 36, "padding": "x" * 2500}).encode()
app = FastAPI()


@app.post("/v1/triage")
async def triage(petition: PetitionIn) -> Response:
    return Response(ANSWER, media_type="application/json")


def wait_for(port: int, server: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"uvicorn exited with status {server.returncode}")
        try:
            socket.create_connection((load.HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"uvicorn did not listen on {load.HOST}:{port} within {limit:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the saturated phase")
    parser.add_argument("--connections", type=int, default=8, help="clients that never pause")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--real", default=str(load.REAL), help="folder with the real petitions")
    parser.add_argument("--sources", default="train,dev,cities,unlabeled", help="files of --real to send")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "http_ceiling.json"))
    args = parser.parse_args()

    names = tuple(f"{name.strip()}.csv" for name in args.sources.split(",") if name.strip())
    petitions, source = load.read_petitions(Path(args.real), args.seed, names)
    port = load.free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "http_ceiling:app", "--host", load.HOST, "--port", str(port),
         "--workers", str(args.workers), "--log-level", "warning"],
        cwd=ROOT / "benchmarks", env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(port, server)
        requests = [load.request_bytes(p, "no key is checked", port) for p in petitions]
        load.log(f"warm-up, {args.warmup_seconds:.0f} s …")
        asyncio.run(load.closed_loop(port, requests, 0, args.connections, args.warmup_seconds, 30.0))
        load_before = os.getloadavg()[0]
        server_before, client_before = load.process_tree(server.pid)["cpu_seconds"], load.own_cpu()
        load.log(f"saturated, {args.connections} conns for {args.seconds:.0f} s …")
        tally = asyncio.run(load.closed_loop(port, requests, len(requests) // 2, args.connections, args.seconds, 30.0))
        server_cpu = load.process_tree(server.pid)["cpu_seconds"] - server_before
        client_cpu = load.own_cpu() - client_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    # The answer is fixed: what load.py counts in a suggestion (stored, similar cases, review) means nothing here.
    result = {k: v for k, v in load.summary(tally, args.seconds, {}).items()
              if k not in ("not_stored", "with_similar_cases", "needs_review")}
    answered = result["answered_ok"] or 1
    figures = {
        "what": "uvicorn + FastAPI + PetitionIn validation, a fixed answer; no model, lookup or storing",
        "workers": args.workers, "connections": args.connections, "petitions": len(petitions), "source": source,
        "cpus": os.cpu_count(), "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "server_cpu_ms_per_request": round(1000 * server_cpu / answered, 3),
        "client_cpu_ms_per_request": round(1000 * client_cpu / answered, 3),
        **result,
    }
    print(f"{result['completed_per_second']:.0f} requests/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
          f"{result['errors']} errors; server CPU {figures['server_cpu_ms_per_request']:.2f} ms/request, "
          f"client {figures['client_cpu_ms_per_request']:.2f}")
    Path(args.json).write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if result["errors"] or result["not_answered"] else 0


if __name__ == "__main__":
    sys.exit(main())
