"""Accuracy on real petitions: train on ../shared/data/real/train.csv plus the
bundled corpus (and, separately, the corpus alone), evaluate on dev.csv, and
check the floors of the model issue. Exit 1 when a floor is missed, 3 when the
real data is not there.

    python benchmarks/accuracy.py [--json OUT.json] [--corpus-only] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.artifact import load_model  # noqa: E402
from training.corpus import DEFAULT_CORPUS  # noqa: E402
from training.evaluate import evaluate_decisions, summary_line  # noqa: E402
from training.ledger import read_ledgers  # noqa: E402
from training.train import label_arrays, predict_frame, taxonomy_codes, train  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
FLOORS = {
    ("division", "accuracy"): 0.88,
    ("division", "macro_f1"): 0.65,
    ("risk", "high_recall"): 0.85,
    ("risk", "macro_f1"): 0.70,
    ("key_group", "any_f1"): 0.70,
}
MAX_HIGH_SHARE = 0.15


def run(train_files: list[Path], dev: Path, workdir: Path, seed: int) -> dict:
    started = time.perf_counter()
    train(train_files, workdir / "model", seed=seed, progress=lambda m: print("  " + m, file=sys.stderr))
    seconds = time.perf_counter() - started
    loaded = load_model(workdir / "model")
    frame = read_ledgers([dev], loaded.model.taxonomy).frame
    metrics = evaluate_decisions(predict_frame(loaded.model, frame), label_arrays(frame),
                                 taxonomy_codes(loaded.model.taxonomy))
    metrics["train_seconds"] = round(seconds, 1)
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the full metrics here")
    parser.add_argument("--corpus-only", action="store_true", help="also report a model trained on the corpus alone")
    parser.add_argument("--seed", type=int, default=0, help="training seed (it draws the calibration folds)")
    args = parser.parse_args()
    train_csv, dev_csv = REAL / "train.csv", REAL / "dev.csv"
    if not (train_csv.exists() and dev_csv.exists()):
        print(f"accuracy benchmark needs the real petitions at {train_csv} and {dev_csv} "
              "(the ../shared folder beside the checkout); they are not there, so nothing was measured.")
        return 3
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus_only:
            results["corpus_only"] = run([DEFAULT_CORPUS], dev_csv, Path(tmp) / "corpus", args.seed)
            print("corpus only      →", summary_line(results["corpus_only"]))
        results["train_plus_corpus"] = run([train_csv, DEFAULT_CORPUS], dev_csv, Path(tmp) / "both", args.seed)
    metrics = results["train_plus_corpus"]
    print("train + corpus   →", summary_line(metrics), f"(trained in {metrics['train_seconds']}s)")
    failed = []
    for (head, name), floor in FLOORS.items():
        value = metrics[head][name] or 0.0
        mark = "ok " if value >= floor else "LOW"
        print(f"  {mark} {head} {name} = {value:.3f} (floor {floor})")
        if value < floor:
            failed.append(f"{head} {name}")
    share = metrics["risk"]["high_share"]
    print(f"  {'ok ' if share <= MAX_HIGH_SHARE else 'LOW'} risk high_share = {share:.3f} (ceiling {MAX_HIGH_SHARE})")
    if share > MAX_HIGH_SHARE:
        failed.append("risk high_share")
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    if failed:
        print("floors missed:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
