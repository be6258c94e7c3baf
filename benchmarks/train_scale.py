"""How the cost of training grows with the number of petitions, on real-length text.

Petitions of real length are built from the real unlabelled petitions
(../shared/data/real/unlabeled.csv): each takes the title of one and the bodies
of real petitions drawn at random, joined until it reaches a length drawn
around --mean-chars (the first boards' labelled petitions average about 470
characters). Their labels are NOT a person's: they are the suggestions of a
trained model (the default model, trained on the bundled corpus, through
`triage predict`'s code) for the real petition each one starts with. The figures measure cost, not accuracy. The built file
lives in a temporary folder and is removed afterwards.

For each N in --sizes, a fresh child process reads the first N petitions,
trains with training.train.fit_with_thresholds (the memory check first, then
features, the heads, thresholds from out-of-sample scores; all cores), saves the
artifact with model.artifact.save_model into a temporary folder and loads it
back. The child reports its wall time, the peak memory of its whole process tree
(proportional set size of it and its worker processes, sampled every 0.2 s, so
pages they share count once) beside its own peak resident memory (getrusage),
and the artifact's size. A size the memory check refuses is reported as refused,
with the check's message. Other people's work on the same 2 cores makes timings
noisy: the load average is recorded beside them. Each size also records its
held-out figures (out-of-fold, or on the held-out sample of a large ledger). With
--reference, each size above model.triage.HOLDOUT_ABOVE is fitted a second time with
its heads fitted as large ledgers' were before (every head on every row, in worker
processes), and the share of held-out petitions the two fits decide alike is recorded.

    python benchmarks/train_scale.py [--sizes 10000,50000,100000] [--reference] [--json OUT.json]
    python benchmarks/train_scale.py --generated   # the project's generated petitions instead"""

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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULT_MARK = "TRAIN_SCALE_RESULT "
# How a large ledger's heads were fitted before they were fitted in-process (--reference).
REFERENCE_PARAMS = {"large_in_process": False, "large_svm_rows": None}


REAL = ROOT.parent / "shared" / "data" / "real"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def tree_pss_bytes(root: int) -> int:
    """Proportional set size of `root` and all its descendants (shared pages split among them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return total


class PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.stopped = interval, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak = max(self.peak, tree_pss_bytes(os.getpid()))

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak


def real_length_ledger(real: Path, rows: int, mean_chars: int, seed: int, out: Path) -> dict[str, Any]:
    """`rows` petitions of about `mean_chars` characters built from real ones, labelled by the
    default model; returns what was built.

    Each takes a real petition's title and body and continues it with the bodies of other
    real petitions drawn at random, up to a length drawn uniformly from 0.5 to 1.5 times
    `mean_chars` (the last body cut there). It carries the labels the model gives the
    real petition it starts with: labelling every built one would cost as much as
    the training measured, and the labels only need to be a plausible mix."""
    import numpy as np
    import pandas as pd

    from model.artifact import load_model
    from training.batch import write_predictions
    from triage.cli import ensure_default_model
    from triage.defaults import default_model_dir

    source = pd.read_csv(real / "unlabeled.csv", dtype=str, keep_default_na=False)
    source = source[source["body"].str.strip().ne("")].reset_index(drop=True)
    model_dir = ensure_default_model(default_model_dir())
    loaded = load_model(model_dir)
    log(f"labelling the {len(source):,} real petitions with the model {loaded.version} (triage predict) …")
    texts, labels = out.with_name("texts.csv"), out.with_name("labels.csv")
    source[["id", "title", "body"]].to_csv(texts, index=False)
    write_predictions(loaded.model, model_dir, loaded.version, [texts], labels, progress=lambda m: log("  " + m))
    predicted = pd.read_csv(labels, dtype=str, keep_default_na=False, encoding="utf-8-sig")

    rng = np.random.default_rng(seed)
    bodies, titles = source["body"].to_numpy(), source["title"].to_numpy()
    first = rng.integers(0, len(bodies), size=rows)
    targets = (rng.uniform(0.5, 1.5, rows) * mean_chars).astype(int)
    built = []
    for start, target in zip(first.tolist(), targets.tolist(), strict=True):
        parts, length = [bodies[start]], len(titles[start]) + len(bodies[start])
        while length < target:
            extra = bodies[int(rng.integers(len(bodies)))]
            parts.append(extra)
            length += len(extra)
        body = "\n".join(parts)
        built.append(body[: max(target - len(titles[start]), len(bodies[start]))] if len(parts) > 1 else body)
    frame = pd.DataFrame({"id": [f"RL-{i:06d}" for i in range(rows)], "title": titles[first], "body": built})
    for head in ("division", "risk", "key_group"):
        frame[head] = predicted[head].to_numpy()[first]
    frame.to_csv(out, index=False)
    chars = frame["title"].str.len() + frame["body"].str.len()
    return {"rows": rows, "mean_chars": float(chars.mean()), "median_chars": float(chars.median()),
            "labelled_by": f"model {loaded.version} ({model_dir}), each built petition labelled as the real one it starts with",
            "label_counts": {h: frame[h].value_counts().to_dict() for h in ("division", "risk", "key_group")}}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def heldout_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The held-out figures the quality of a large-ledger fit is judged by."""
    return {"scope": metrics["scope"], "n": metrics["n"],
            "division_accuracy": metrics["division"]["accuracy"], "division_macro_f1": metrics["division"]["macro_f1"],
            "risk_macro_f1": metrics["risk"]["macro_f1"], "high_recall": metrics["risk"]["high_recall"],
            "high_share": metrics["risk"]["high_share"], "key_group_any_f1": metrics["key_group"]["any_f1"],
            "needs_review_share": metrics["needs_review_share"]}


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """Share of the held-out petitions two fits decide alike, per head (None if they held out different ones)."""
    if a.get("heldout_ids") != b.get("heldout_ids"):
        return None
    return {key: sum(x == y for x, y in zip(a["heldout_labels"][key], b["heldout_labels"][key], strict=True))
            / len(a["heldout_ids"]) for key in a["heldout_labels"]}


def child(n: int, seed: int, workdir: Path, ledger: Path | None, params: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    from model.artifact import load_model, save_model
    from model.taxonomy import HEADS, load_taxonomy
    from training.corpus import generate
    from training.memory import NotEnoughMemory, available_bytes, estimate_training_bytes
    from training.train import fit_with_thresholds, texts_of

    taxonomy = load_taxonomy()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    if ledger is None:
        # Standing in for a large ledger of real petitions, so not marked generated:
        # every head is trained as on real intake (the high-risk head a logistic regression).
        frame = pd.DataFrame(generate(n=n, seed=seed)).drop(columns="synthetic")
    else:
        frame = pd.read_csv(ledger, dtype=str, keep_default_na=False, nrows=n)
    read_seconds = time.perf_counter() - started
    rss_before_fit = peak_rss_mb()
    chars = int(frame["title"].str.len().sum() + frame["body"].str.len().sum())
    estimate, available = estimate_training_bytes(texts_of(frame)), available_bytes()
    base = {"n": n, "chars": chars, "estimate_mb": estimate / 2**20,
            "available_mb": None if available is None else available / 2**20}

    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        model, fitted = fit_with_thresholds(frame, taxonomy, seed=0, **params)
    except NotEnoughMemory as exc:
        sampler.stop()
        return {**base, "refused": str(exc)}
    fit_seconds = time.perf_counter() - started
    tree_peak = sampler.stop()
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
        **base, "features": len(model.feature_names_),
        "read_seconds": read_seconds, "fit_seconds": fit_seconds,
        "save_seconds": save_seconds, "load_seconds": load_seconds, "artifact_bytes": artifact_bytes,
        "peak_tree_pss_mb": tree_peak / 2**20, "peak_rss_mb_before_fit": rss_before_fit,
        "peak_rss_mb_after_fit": rss_after_fit, "peak_rss_mb": peak_rss_mb(),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0],
        "heldout": heldout_summary(fitted["heldout_metrics"]),
        # For comparing two fits' decisions; not written to the results file.
        "heldout_ids": fitted["heldout_ids"],
        "heldout_labels": {key: [d[key] for d in model.heldout_decisions_]
                           for key in ("division", "risk", "key_group", "needs_review")},
    }


def run_size(n: int, seed: int, timeout: float, ledger: Path | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"train-scale-{n}-") as tmp:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--seed", str(seed), "--workdir", tmp]
        if ledger is not None:
            command += ["--ledger", str(ledger)]
        if params:
            command += ["--params", json.dumps(params)]
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


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    partial.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
    partial.replace(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,100000", help="comma-separated numbers of petitions")
    parser.add_argument("--seed", type=int, default=20261128, help="seed of the draws (and of the corpus generator)")
    parser.add_argument("--mean-chars", type=int, default=470, help="mean length of the built petitions")
    parser.add_argument("--generated", action="store_true", help="the project's generated petitions instead of real-length ones")
    parser.add_argument("--real", default=str(REAL), help="folder with unlabeled.csv (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per size")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "train_scale.json"),
                        help="write the figures here (default: %(default)s)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true",
                        help="also fit each size above model.triage.HOLDOUT_ABOVE with its heads fitted as before "
                             "(every head by liblinear or lbfgs on every row, in worker processes) and report "
                             "how alike the two decide the held-out petitions")
    args = parser.parse_args()

    if args.child is not None:
        result = child(args.child, args.seed, Path(args.workdir), Path(args.ledger) if args.ledger else None,
                       json.loads(args.params))
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 200:
        parser.error("--sizes: each size must be at least 200 petitions (every division needs examples to split)")
    real = Path(args.real)
    if not args.generated and not (real / "unlabeled.csv").exists():
        print(f"the real petitions are not at {real / 'unlabeled.csv'}; nothing was measured (--generated uses "
              "the project's generated petitions instead)")
        return 3

    from model.triage import HOLDOUT_ABOVE

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="train-scale-ledger-") as tmp:
        ledger, built = None, None
        if not args.generated:
            ledger = Path(tmp) / "ledger.csv"
            log(f"building {max(sizes):,} real-length petitions from {real / 'unlabeled.csv'} …")
            built = real_length_ledger(real, max(sizes), args.mean_chars, args.seed, ledger)
            log(f"mean {built['mean_chars']:.0f} characters; labels: {built['labelled_by']}")
        kind = "generated" if args.generated else "real-length"
        for n in sizes:
            log(f"training on {n:,} {kind} petitions (fresh process) …")
            row = run_size(n, args.seed, args.timeout, ledger)
            if args.reference and n > HOLDOUT_ABOVE and "error" not in row and "refused" not in row:
                log("  and with its heads fitted as before, for reference (fresh process) …")
                before = run_size(n, args.seed, args.timeout, ledger, REFERENCE_PARAMS)
                row["reference"] = {key: before.get(key) for key in ("fit_seconds", "peak_tree_pss_mb", "heldout", "error")
                                    if key in before}
                row["reference"]["params"] = REFERENCE_PARAMS
                row["reference"]["agreement"] = None if "error" in before else agreement(row, before)
            for key in ("heldout_ids", "heldout_labels"):
                row.pop(key, None)
            rows.append(row)
            log(f"  {n:,}: {json.dumps(row)}")
            # Written after every size, so that a run stopped half-way keeps what it measured.
            write_json(args.json, {"kind": kind, "seed": args.seed, "cpus": os.cpu_count(), "built": built,
                                   "complete": len(rows) == len(sizes), "rows": rows})

    ok = [r for r in rows if "error" not in r and "refused" not in r]
    if built:
        print(f"\nreal-length petitions built from real ones (mean {built['mean_chars']:.0f} characters); "
              f"LABELS ARE A MODEL'S SUGGESTIONS ({built['labelled_by']}), not a person's")
    print(f"training cost on {kind} petitions ({os.cpu_count()} CPUs shared with other people's work, "
          f"load average now {os.getloadavg()[0]:.2f}: timings are noisy)")
    header = ("N", "chars", "features", "fit s", "save s", "load s", "artifact MB",
              "peak tree MB", "peak RSS MB", "estimate MB")
    table = [header] + [(
        f"{r['n']:,}", f"{r['chars']:,}", f"{r['features']:,}", f"{r['fit_seconds']:.1f}",
        f"{r['save_seconds']:.1f}",
        f"{r['load_seconds']:.2f}", f"{r['artifact_bytes'] / 2**20:.1f}", f"{r['peak_tree_pss_mb']:.0f}",
        f"{r['peak_rss_mb']:.0f}", f"{r['estimate_mb']:.0f}",
    ) for r in ok]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for j, line in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if "refused" in r:
            print(f"{r['n']:,}: refused by the memory check: {r['refused']}")
        elif "error" in r:
            print(f"{r['n']:,}: {r['error']}")
    for key, label in (("fit_seconds", "fit time"), ("peak_tree_pss_mb", "peak memory"), ("artifact_bytes", "artifact size")):
        for note in growth(ok, key):
            print(f"{label:13} {note}")
    return 1 if len(ok) + sum("refused" in r for r in rows) < len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
