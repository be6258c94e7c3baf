"""How the cost of training grows with the number of petitions.

For each N in --sizes, a fresh child process generates N petitions with the
project's corpus generator (training.corpus.generate(n=N, seed)), trains with
training.train.fit_with_thresholds (features, then every head's 3
out-of-fold fits and final fit, all cores; then thresholds from the out-of-fold
scores), saves the artifact with
model.artifact.save_model into a temporary folder and loads it back. The child
reports its wall time, its peak resident memory (getrusage ru_maxrss,
so one size's peak is not hidden by another's) and the artifact's size on disk.

    python benchmarks/train_scale.py [--sizes 10000,50000,100000] [--seed 20261128] [--json OUT.json]

Generated petitions only, trained as a ledger of real ones would be; no real
data is read."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULT_MARK = "TRAIN_SCALE_RESULT "


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(n: int, seed: int, workdir: Path) -> dict[str, Any]:
    import pandas as pd

    from model.artifact import load_model, save_model
    from model.taxonomy import HEADS, load_taxonomy
    from training.corpus import generate
    from training.train import fit_with_thresholds

    taxonomy = load_taxonomy()
    started = time.perf_counter()
    # Standing in for a large ledger of real petitions, so not marked generated:
    # every head is trained as on real intake (the high-risk head a logistic regression).
    frame = pd.DataFrame(generate(n=n, seed=seed)).drop(columns="synthetic")
    generate_seconds = time.perf_counter() - started
    rss_before_fit = peak_rss_mb()
    chars = int(frame["title"].str.len().sum() + frame["body"].str.len().sum())

    started = time.perf_counter()
    model, fitted = fit_with_thresholds(frame, taxonomy, seed=0)
    fit_seconds = time.perf_counter() - started
    rss_after_fit = peak_rss_mb()

    out = workdir / "model"
    started = time.perf_counter()
    save_model(model, out, {"version": f"train-scale-{n}", "thresholds": fitted["thresholds"],
                            "label_counts": {h: frame[h].value_counts().to_dict() for h in HEADS}})
    save_seconds = time.perf_counter() - started
    artifact_bytes = sum(p.stat().st_size for p in out.iterdir())
    started = time.perf_counter()
    load_model(out)
    load_seconds = time.perf_counter() - started
    return {
        "n": n, "chars": chars, "features": len(model.feature_names_),
        "generate_seconds": generate_seconds, "fit_seconds": fit_seconds,
        "save_seconds": save_seconds, "load_seconds": load_seconds, "artifact_bytes": artifact_bytes,
        "peak_rss_mb_before_fit": rss_before_fit, "peak_rss_mb_after_fit": rss_after_fit, "peak_rss_mb": peak_rss_mb(),
    }


def run_size(n: int, seed: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"train-scale-{n}-") as tmp:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--seed", str(seed), "--workdir", tmp]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"n": n, "error": f"did not finish within {timeout:.0f} s"}
        wall = time.perf_counter() - started
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return {**json.loads(line[len(RESULT_MARK):]), "child_wall_seconds": wall}
    tail = "\n".join(done.stderr.strip().splitlines()[-5:])
    return {"n": n, "error": f"child exited {done.returncode}: {tail}"}


def growth(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Exponent b of cost ~ N^b between neighbouring sizes, and the factor per doubling (2^b)."""
    notes = []
    for a, b in itertools.pairwise(rows):
        if a.get(key) and b.get(key) and b["n"] != a["n"]:
            exponent = math.log(b[key] / a[key]) / math.log(b["n"] / a["n"])
            notes.append(f"{a['n']:,}->{b['n']:,}: x{b[key] / a[key]:.2f} (N^{exponent:.2f}, x{2 ** exponent:.2f} per doubling)")
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,100000", help="comma-separated numbers of petitions")
    parser.add_argument("--seed", type=int, default=20261128, help="corpus generator seed")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per size")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print(RESULT_MARK + json.dumps(child(args.child, args.seed, Path(args.workdir))), flush=True)
        return 0
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 200:
        parser.error("--sizes: each size must be at least 200 petitions (every division needs examples to split)")

    rows = []
    for n in sizes:
        print(f"[{time.strftime('%H:%M:%S')}] training on {n:,} generated petitions …", file=sys.stderr, flush=True)
        row = run_size(n, args.seed, args.timeout)
        rows.append(row)
        if "error" in row:
            print(f"  {n:,}: {row['error']}", file=sys.stderr)

    ok = [r for r in rows if "error" not in r]
    print(f"\ntraining cost on generated petitions ({os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.2f})")
    header = ("N", "chars", "features", "fit s", "save s", "load s", "artifact MB",
              "peak RSS MB", "RSS before fit")
    table = [header] + [(
        f"{r['n']:,}", f"{r['chars']:,}", f"{r['features']:,}", f"{r['fit_seconds']:.1f}",
        f"{r['save_seconds']:.1f}",
        f"{r['load_seconds']:.2f}", f"{r['artifact_bytes'] / 2**20:.1f}", f"{r['peak_rss_mb']:.0f}",
        f"{r['peak_rss_mb_before_fit']:.0f}",
    ) for r in ok]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for j, line in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for key, label in (("fit_seconds", "fit time"), ("peak_rss_mb", "peak RSS"), ("artifact_bytes", "artifact size")):
        for note in growth(ok, key):
            print(f"{label:13} {note}")
    if args.json:
        target = Path(args.json)
        partial = target.with_name(target.name + ".tmp")
        partial.write_text(json.dumps({"seed": args.seed, "cpus": os.cpu_count(), "rows": rows}, indent=2), encoding="utf-8")
        partial.replace(target)
    return 1 if len(ok) < len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
