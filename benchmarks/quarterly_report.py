"""The quarterly retraining run on real petitions, end to end: a champion trained
on the bundled corpus is registered and promoted, then a challenger trained on
../shared/data/real/train.csv plus the corpus is scored against it on the real
petitions of dev.csv (held out explicitly), and the report is written.

    python benchmarks/quarterly_report.py [--registry DIR]

Takes 2-3 minutes on 2 cores. The registry (default: a new folder under the
system temp dir) is kept so the report can be opened; nothing is written into
the repository. Exit 3 when the real petitions are not there."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.corpus import DEFAULT_CORPUS  # noqa: E402
from training.registry import Registry  # noqa: E402
from training.report import TABLE_ROWS  # noqa: E402
from training.retrain import retrain  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(evaluation: dict) -> str:
    champion = evaluation["champion"]["metrics"]
    challenger = evaluation["challenger"]["metrics"]
    key = set(evaluation["key_metrics"])
    lines = ["| head | metric | champion (corpus only) | challenger (train.csv + corpus) | Δ |", "|---|---|---|---|---|"]
    for head, rows in TABLE_ROWS.items():
        for name, shown, _ in rows:
            a, b = champion[head].get(name), challenger[head].get(name)
            if a is None or b is None:
                continue
            star = " ★" if f"{head}.{name}" in key else ""
            lines.append(f"| {head} | {shown}{star} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", help="registry directory to create (must not hold a registry yet)")
    args = parser.parse_args()
    train_csv, dev_csv = REAL / "train.csv", REAL / "dev.csv"
    if not (train_csv.exists() and dev_csv.exists()):
        print(f"quarterly report benchmark needs the real petitions at {train_csv} and {dev_csv} "
              "(the ../shared folder beside the checkout, with data/real/train.csv and data/real/dev.csv); "
              "they are not there, so nothing was trained.")
        return 3
    root = Path(args.registry) if args.registry else Path(tempfile.mkdtemp(prefix="triage-quarterly-"))
    registry = Registry(root)
    if registry.state_path.exists():
        print(f"{root} already holds a registry; give a new --registry directory")
        return 2
    started = time.perf_counter()
    progress(f"champion: the bundled corpus {DEFAULT_CORPUS.name} into {root} …")
    # A registry of its own: signing with a key made here, when there is none yet, is meant.
    champion = retrain([DEFAULT_CORPUS], root, by="benchmark", progress=progress, new_signing_key=True)
    registry.promote(champion.version, by="benchmark", reason="quarterly_report benchmark: corpus-only champion")
    progress(f"champion {champion.version} promoted after {time.perf_counter() - started:.0f}s")
    progress(f"challenger: {train_csv.name} + corpus, held out {dev_csv.name} …")
    challenger = retrain([train_csv, DEFAULT_CORPUS], root, holdout=[dev_csv], by="benchmark", progress=progress)
    evaluation = challenger.metadata["evaluation"]
    print(f"\nheld out: {evaluation['holdout']['description']}")
    print(f"champion {champion.version} vs challenger {challenger.version} on the same "
          f"{evaluation['holdout']['n']} petitions:\n")
    print(table(evaluation))
    worse = [c for c in challenger.checks if c.worse]
    print("\npromotion check:", "refused (" + ", ".join(c.metric for c in worse) + ")" if worse else "passes")
    print(f"report: {challenger.report}")
    print(f"champion's report: {champion.report}")
    print(f"registry: {root} (kept; delete it when done) — total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
