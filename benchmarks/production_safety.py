"""What the production guarantees cost: the signature check when a model loads, masking
per petition, how long a reload takes to reach every worker, and how long the first
start takes (the README's first command, which trains the bundled model).

    python benchmarks/production_safety.py [--model var/models/default] [--workers 2]

Starts `triage serve` on a free loopback port with a throwaway database and model root
in a temporary directory, stops it at the end, and writes
benchmarks/results/production_safety.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.artifact import (  # noqa: E402
    METADATA_FILE,
    MODEL_FILE,
    _signature,
    default_key_file,
    load_model,
    sign_artifact,
    signing_key,
)
from service.pii import mask_pii  # noqa: E402

PETITION = ("我在电子厂上班，老板三个月没发工资了，电话138-1234-5678，身份证110101199003071234，"
            "工资卡6217 0012 3456 7890 123。") * 20


def _call(url: str, key: str | None = None, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    headers = {"content-type": "application/json"} | ({"X-API-Key": key} if key else {})
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(base: str, log: Path, workers: int, limit: float) -> bool:
    """Until /readyz says ready and every worker has logged its start, or `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if _call(f"{base}/readyz")["ready"] and log.read_text().count("startup complete") >= workers:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def first_start(work: Path) -> dict:
    """What the README's first command does: `triage serve` on an empty TRIAGE_HOME, with
    its default workers, training the bundled model before it serves; seconds until ready."""
    port, home = _free_port(), work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")} | {
        "TRIAGE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    workers = os.cpu_count() or 1
    load_before = os.getloadavg()
    started = time.monotonic()
    with (work / "first.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "triage.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}", work / "first.log", workers, limit=600)
        return {"workers": workers, "ready_s": round(time.monotonic() - started, 1) if ready else None,
                "load_avg_before": [round(v, 2) for v in load_before]}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def reload_propagation(model: Path, workers: int, work: Path) -> dict:
    root = work / "models"
    shutil.copytree(model, root / "first")
    shutil.copytree(model, root / "second")
    meta = json.loads((root / "second" / METADATA_FILE).read_text(encoding="utf-8"))
    meta["version"] = "second"
    (root / "second" / METADATA_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    sign_artifact(root / "second")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")} | {
        "TRIAGE_DATABASE_URL": f"sqlite:///{work / 'triage.db'}", "TRIAGE_MODEL_DIR": str(root / "first"),
        "TRIAGE_MODEL_ROOT": str(root), "TRIAGE_WORKERS": str(workers), "PYTHONPATH": str(ROOT),
        # The key the models were signed with here, not one the server would make in `work`.
        "TRIAGE_SIGNING_KEY_FILE": os.environ.get("TRIAGE_SIGNING_KEY_FILE") or str(default_key_file())}
    cli = [sys.executable, "-m", "triage.cli"]
    keys = {role: subprocess.run([*cli, "keys", "create", "--role", role], env=env, cwd=work, capture_output=True,
                                 text=True, check=True).stdout.strip() for role in ("intake", "admin")}
    with (work / "serve.log").open("wb") as log:
        server = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=work,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, work / "serve.log", workers, limit=180)
        started = time.monotonic()
        _call(f"{base}/v1/model/reload", keys["admin"], {"model_dir": "second"})
        answered = time.monotonic() - started
        # Until 40 calls in a row, each on a new connection, report the new model.
        streak, everywhere = 0, None
        while time.monotonic() - started < 60:
            version = _call(f"{base}/v1/triage", keys["intake"], {"body": "工资三个月没发"})["model_version"]
            streak = streak + 1 if version == "second" else 0
            if streak == 1:
                everywhere = time.monotonic() - started
            if streak >= 40:
                break
        return {"workers": workers, "poll_seconds": 2.0, "reload_answered_s": round(answered, 3),
                "all_workers_serving_new_model_s": round(everywhere, 3) if streak >= 40 else None}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "var" / "models" / "default"),
                        help="the model measured (default: %(default)s, else the one the first start trains)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as first:
        # First, on a machine as quiet as it will be: the first start trains the bundled model.
        started = first_start(Path(first))
        model = Path(args.model)
        if not (model / METADATA_FILE).exists():
            model = Path(first) / "home" / "models" / "default"
            os.environ["TRIAGE_SIGNING_KEY_FILE"] = str(Path(first) / "home" / "signing.key")
        key = signing_key(create=False)
        load_s = min(timeit.repeat(lambda: load_model(model), number=1, repeat=3))
        metadata = json.loads((model / METADATA_FILE).read_text(encoding="utf-8"))
        verify_s = min(timeit.repeat(lambda: _signature(key, model / MODEL_FILE, metadata), number=1, repeat=5))
        mask_us = min(timeit.repeat(lambda: mask_pii(PETITION), number=200, repeat=3)) / 200 * 1e6
        with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
            propagation = reload_propagation(model, args.workers, Path(tmp))
        model_mb = round((model / MODEL_FILE).stat().st_size / 1e6, 2)
    results = {
        "model_file_mb": model_mb,
        "load_model_s": round(load_s, 3), "signature_check_s": round(verify_s, 4),
        "mask_pii_us_per_petition": round(mask_us, 1), "petition_chars": len(PETITION),
        "reload": propagation, "first_start": started,
    }
    out = ROOT / "benchmarks" / "results" / "production_safety.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
