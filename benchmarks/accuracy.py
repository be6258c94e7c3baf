"""Accuracy on real petitions, measured the way a new province would meet the model.

Over all labelled shared data (train.csv + dev.csv + cities.csv), on the same folds
for every pipeline:

- repeated grouped 5-fold cross-validation (3 repeats; petitions about one matter,
  found as near-duplicate texts, stay in one fold);
- leave-one-board-out: train on the other boards, test on one (the four `tipdm_*`
  sheets are one board);

the project's model (trained as `triage train` trains it: the bundled corpus joins
every training fold, thresholds are chosen inside the fold) beside the reference
pipeline (character 1-3 TF-IDF + LinearSVC, classes balanced, one per head, same
data), with 95 % bootstrap intervals; and the default model (bundled corpus only)
scored on every labelled real petition. Figures go to benchmarks/results/accuracy.json
(`--json`), the README table is made from that file (benchmarks/readme_tables.py).

    python benchmarks/accuracy.py [--protocol cv,lobo,default] [--repeats 3] [--variants shipped,...]
                                  [--no-reference] [--json benchmarks/results/accuracy.json] [--check-floors]

With --check-floors, exit 1 when a figure of the shipped model falls below the floors
in FLOORS (set from these measurements, README "Accuracy"). Exit 3 without the data.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.encoder import TextEncoder  # noqa: E402
from model.taxonomy import HEADS, load_taxonomy  # noqa: E402
from model.triage import TriageModel  # noqa: E402
from training.corpus import DEFAULT_CORPUS  # noqa: E402
from training.crossval import (  # noqa: E402
    Fold,
    Predictions,
    board_folds,
    board_of,
    bootstrap_interval,
    metrics,
    near_duplicate_groups,
    repeated_grouped_folds,
)
from training.ledger import read_ledgers  # noqa: E402
from training.selftrain import fit_self_trained  # noqa: E402
from training.train import SYNTHETIC_WEIGHT, fit_with_thresholds, texts_of  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
LABELLED = ("train.csv", "dev.csv", "cities.csv")
ENCODER = TextEncoder(threads=os.cpu_count() or 1, cache_path=ROOT / "var" / "encoder_cache.npz")
# name: (TriageModel / fit_with_thresholds parameters, weight of a generated petition beside real ones)
VARIANTS: dict[str, tuple[dict[str, Any], float]] = {
    "shipped": ({}, SYNTHETIC_WEIGHT),
    "synthetic_weight_0.3": ({}, 0.3),
    "synthetic_weight_1": ({}, 1.0),
    "synthetic_weight_0.15": ({}, 0.15),
    "C_0.1": ({"C": 0.1}, SYNTHETIC_WEIGHT),
    "C_1": ({"C": 1.0}, SYNTHETIC_WEIGHT),
    "no_ask_view": ({"ask_weight": 0.0}, SYNTHETIC_WEIGHT),
    "division_keywords_full_weight": ({"keyword_weights": {"division": 1.0}}, SYNTHETIC_WEIGHT),
    "division_log_loss": ({"head_losses": {"division": "log_loss"}}, SYNTHETIC_WEIGHT),
    "division_unbalanced": ({"head_class_weights": {"division": None}}, SYNTHETIC_WEIGHT),
    "char_features_300k": ({"max_char_features": 300_000}, SYNTHETIC_WEIGHT),
    "ask_view_full_weight": ({"ask_weight": 1.0}, SYNTHETIC_WEIGHT),
    "high_head_balanced": ({"head_class_weights": {"risk_high": "balanced"}}, SYNTHETIC_WEIGHT),
    "key_group_rules_alone": ({"key_group_rules_alone": True}, SYNTHETIC_WEIGHT),
    "high_budget_not_filled": ({"fill_high_budget": False}, SYNTHETIC_WEIGHT),
    "numbers_as_written": ({"numbers": "digits"}, SYNTHETIC_WEIGHT),
    "numbers_placeholders": ({"numbers": "placeholders"}, SYNTHETIC_WEIGHT),
    "calibrated_within_boards": ({"calibrate_across_boards": False}, SYNTHETIC_WEIGHT),
    # The model before: temperatures fitted on every scored row, generated petitions included.
    "temperature_on_all_rows": ({"temperature_on_threshold_rows": False}, SYNTHETIC_WEIGHT),
    # Not a model parameter: the benchmark self-trains on unlabeled.csv (training/selftrain.py).
    "self_trained": ({"self_train": True}, SYNTHETIC_WEIGHT),
    # The same, learning only from the messages routed to this department's divisions: most
    # unlabelled messages are `external`, and learning those taught routing to say it more often.
    "self_trained_without_external": ({"self_train": True, "leave_out": ("external",)}, SYNTHETIC_WEIGHT),
    # The optional encoder heads (`triage train --encoder`), asked where the division or key-group
    # head is unsure, or routing for every petition; embeddings kept in var/ (derived from real petitions).
    "encoder": ({"encoder": ENCODER}, SYNTHETIC_WEIGHT),
    "encoder_every_petition": ({"encoder": ENCODER, "encoder_below": None}, SYNTHETIC_WEIGHT),
    "encoder_below_0.9": ({"encoder": ENCODER, "encoder_below": 0.9}, SYNTHETIC_WEIGHT),
    "encoder_below_0.95": ({"encoder": ENCODER, "encoder_below": 0.95}, SYNTHETIC_WEIGHT),
    "encoder_below_0.99": ({"encoder": ENCODER, "encoder_below": 0.99}, SYNTHETIC_WEIGHT),
}
# Floors of the shipped model that CI holds (--check-floors): the lower ends of the
# 95 % intervals measured when they were set, rounded down (README, "Accuracy").
FLOORS: dict[tuple[str, str], float] = {
    ("lobo", "division_accuracy"): 0.82, ("lobo", "division_accuracy_ours"): 0.71, ("lobo", "routed_share_ours"): 0.27,
    ("lobo", "high_recall"): 0.78, ("lobo", "high_share"): 0.16, ("lobo", "key_group_f1"): 0.52,
    ("lobo", "auto_routed_precision"): 0.89,
    ("cv", "division_accuracy"): 0.84, ("cv", "division_accuracy_ours"): 0.74, ("cv", "risk_macro_f1"): 0.63,
    ("cv", "high_recall"): 0.75, ("cv", "high_share"): 0.12, ("cv", "key_group_f1"): 0.54,
}  # high_share is a ceiling
FIGURES = ("division_accuracy", "division_accuracy_ours", "division_top3", "division_macro_f1", "routed_share_ours",
           "risk_macro_f1", "high_recall", "high_share", "key_group_f1", "auto_routed_precision", "auto_routed_share",
           "division_calibration_error")


def load_real() -> tuple[pd.DataFrame, pd.DataFrame]:
    taxonomy = load_taxonomy()
    frames = []
    for name in LABELLED:
        frame = read_ledgers([REAL / name], taxonomy).frame
        frame["board"] = frame["board"].map(board_of)
        frames.append(frame)
    real = pd.concat(frames, ignore_index=True)
    corpus = read_ledgers([DEFAULT_CORPUS], taxonomy).frame
    return real, corpus


def decisions_to_predictions(decisions: list[dict[str, Any]]) -> Predictions:
    return Predictions(
        division=np.asarray([d["division"] for d in decisions], dtype=object),
        division_confidence=np.asarray([d["division_confidence"] for d in decisions]),
        division_top3=np.asarray([[c for c, _ in d["division_top3"]] for d in decisions], dtype=object),
        risk=np.asarray([d["risk"] for d in decisions], dtype=object),
        key_group=np.asarray([d["key_group"] for d in decisions], dtype=object),
        needs_review=np.asarray([d["needs_review"] for d in decisions]))


@functools.cache
def unlabelled() -> pd.DataFrame:
    return read_ledgers([REAL / "unlabeled.csv"], load_taxonomy(), require_labels=False).frame


def fit_project(frame: pd.DataFrame, variant: str, seed: int) -> TriageModel:
    params, synthetic_weight = dict(VARIANTS[variant][0]), VARIANTS[variant][1]
    if params.pop("self_train", False):
        return fit_self_trained(frame, unlabelled(), load_taxonomy(), seed=seed, synthetic_weight=synthetic_weight,
                                **params)[0]
    return fit_with_thresholds(frame, load_taxonomy(), seed=seed, synthetic_weight=synthetic_weight, **params)[0]


def project(train: pd.DataFrame, test: pd.DataFrame, variant: str, seed: int) -> Predictions:
    return decisions_to_predictions(fit_project(train, variant, seed).predict(texts_of(test)))


def reference(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> Predictions:
    """Character 1-3 TF-IDF + LinearSVC(class_weight="balanced"), one per head."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x_train, x_test = vectorizer.fit_transform(texts_of(train)), vectorizer.transform(texts_of(test))
    out: dict[str, Any] = {}
    for head in HEADS:
        svm = LinearSVC(class_weight="balanced", random_state=seed).fit(x_train, train[head])
        scores = svm.decision_function(x_test)
        if scores.ndim == 1:  # two classes
            scores = np.column_stack([-scores, scores])
        order = np.argsort(-scores, axis=1)
        out[head] = svm.classes_[order[:, 0]]
        if head == "division":
            out["top3"] = svm.classes_[order[:, :3]]
            out["confidence"] = scores.max(axis=1)
    return Predictions(out["division"], out["confidence"], out["top3"], out["risk"], out["key_group"],
                       confidence_is_probability=False)


def run_folds(folds: list[Fold], real: pd.DataFrame, corpus: pd.DataFrame, pipeline: str, seed: int,
              log: Any) -> dict[str, Predictions]:
    """Per fold, the predictions of `pipeline` on its test rows."""
    out = {}
    for fold in folds:
        started = time.perf_counter()
        train = pd.concat([real.iloc[fold.train], corpus], ignore_index=True)
        test = real.iloc[fold.test]
        out[fold.name] = (reference(train, test, seed) if pipeline == "reference"
                          else project(train, test, pipeline, seed))
        log(f"  {pipeline:<28} {fold.name:<16} n={len(fold.test):<5} {time.perf_counter() - started:5.1f} s")
    return out


def scatter(folds: list[Fold], predictions: dict[str, Predictions], n: int) -> Predictions:
    """The fold predictions put back in row order (each row tested once in `folds`)."""
    order = np.concatenate([f.test for f in folds])
    pooled = Predictions.concat([predictions[f.name] for f in folds])
    inverse = np.empty(n, dtype=int)
    inverse[order] = np.arange(n)
    return Predictions(*(None if v is None else v[inverse] for v in (
        pooled.division, pooled.division_confidence, pooled.division_top3, pooled.risk, pooled.key_group,
        pooled.needs_review)), confidence_is_probability=pooled.confidence_is_probability)


def summarise(per_repeat: list[Predictions], truth: dict[str, np.ndarray], boards: np.ndarray,
              n_boot: int, seed: int) -> dict[str, Any]:
    """Mean of the figures over repeats, with bootstrap intervals, and the figures per board."""
    def statistic(rows: np.ndarray) -> dict[str, float]:
        each = [metrics(truth, p, rows) for p in per_repeat]
        return {k: float(np.nanmean([e[k] for e in each])) for k in each[0]}

    everything = statistic(np.arange(len(boards)))
    interval = bootstrap_interval(statistic, boards, n_boot=n_boot, random_state=seed)
    by_board = {b: statistic(np.flatnonzero(boards == b)) | {"n": int((boards == b).sum())} for b in sorted(set(boards))}
    return {"figures": everything, "interval95": interval, "by_board": by_board, "n": len(boards)}


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'':<30}" + "".join(f"{k[:14]:>16}" for k in FIGURES))
    for name, summary in rows.items():
        figures, interval = summary["figures"], summary.get("interval95", {})
        print(f"{name:<30}" + "".join(f"{figures[k]:>16.3f}" for k in FIGURES))
        if interval:
            print(f"{'':<30}" + "".join(f"{f'{interval[k][0]:.3f}-{interval[k][1]:.3f}':>16}" for k in FIGURES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="cv,lobo,default", help="any of cv, lobo, default")
    parser.add_argument("--repeats", type=int, default=3, help="draws of the 5 cross-validation folds")
    parser.add_argument("--variants", default="shipped", help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--no-reference", action="store_true", help="skip the reference pipeline")
    parser.add_argument("--boot", type=int, default=300, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here (benchmarks/results/accuracy.json)")
    parser.add_argument("--check-floors", action="store_true", help="exit 1 when the shipped model misses a floor")
    args = parser.parse_args()
    if not all((REAL / name).exists() for name in LABELLED):
        print(f"needs the labelled real petitions {', '.join(LABELLED)} in {REAL} (the ../shared folder beside "
              "the checkout); they are not there, so nothing was measured.")
        return 3
    started = time.perf_counter()
    real, corpus = load_real()
    boards = real["board"].to_numpy()
    truth = {h: real[h].to_numpy() for h in HEADS}
    protocols = set(args.protocol.split(","))
    pipelines = [v for v in args.variants.split(",") if v] + ([] if args.no_reference else ["reference"])
    unknown = [p for p in pipelines if p not in VARIANTS and p != "reference"]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    groups = near_duplicate_groups(texts_of(real))
    # Training keeps them together too: its calibration folds read `matter`.
    real["matter"] = [f"near-duplicate {g}" for g in groups]
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{len(real)} labelled real petitions on {len(set(boards))} boards, {len(set(groups))} matters; "
        f"{len(corpus)} generated")
    results: dict[str, Any] = {"n": len(real), "boards": {b: int((boards == b).sum()) for b in sorted(set(boards))},
                               "matters": len(set(groups)), "repeats": args.repeats, "seed": args.seed}
    if "cv" in protocols:
        folds = repeated_grouped_folds(real["division"].to_numpy(), groups, repeats=args.repeats, random_state=args.seed)
        results["cv"] = {}
        for pipeline in pipelines:
            by_fold = run_folds(folds, real, corpus, pipeline, args.seed, log)
            per_repeat = [scatter([f for f in folds if f.name.startswith(f"cv r{r} ")], by_fold, len(real))
                          for r in range(args.repeats)]
            results["cv"][pipeline] = summarise(per_repeat, truth, boards, args.boot, args.seed)
        print_table(f"repeated grouped 5-fold cross-validation ({args.repeats} repeats), mean and 95 % interval",
                    results["cv"])
    if "lobo" in protocols:
        folds = board_folds(boards)
        results["lobo"] = {}
        for pipeline in pipelines:
            pooled = scatter(folds, run_folds(folds, real, corpus, pipeline, args.seed, log), len(real))
            results["lobo"][pipeline] = summarise([pooled], truth, boards, args.boot, args.seed)
        print_table("leave-one-board-out, pooled over the boards, and 95 % interval", results["lobo"])
        for pipeline, summary in results["lobo"].items():
            for board, figures in summary["by_board"].items():
                print(f"  {pipeline:<26} {board:<10} n={figures['n']:<5}" + "".join(
                    f"{figures[k]:>16.3f}" for k in FIGURES))
    if "default" in protocols:
        log("  default model: the bundled corpus alone, scored on every labelled real petition")
        model = fit_project(corpus, "shipped", args.seed)
        predictions = decisions_to_predictions(model.predict(texts_of(real)))
        results["default"] = summarise([predictions], truth, boards, args.boot, args.seed)
        print_table("default model (bundled corpus only) on all labelled real petitions", {"default": results["default"]})
        # The other variants' settings on the corpus alone, beside it (the encoder's, say).
        others = [p for p in pipelines if p not in ("shipped", "reference")]
        if others:
            results["default_variants"] = {}
            for variant in others:
                predictions = decisions_to_predictions(fit_project(corpus, variant, args.seed).predict(texts_of(real)))
                results["default_variants"][variant] = summarise([predictions], truth, boards, args.boot, args.seed)
            print_table("the same, with each variant's settings", results["default_variants"])
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\n{results['seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if args.check_floors:
        missed = []
        for (protocol, figure), floor in FLOORS.items():
            if protocol in results and "shipped" in results[protocol]:
                value = results[protocol]["shipped"]["figures"][figure]
                ok = value >= floor if figure != "high_share" else value <= floor
                print(f"  {'ok ' if ok else 'LOW'} {protocol} {figure} = {value:.3f} (floor {floor})")
                if not ok:
                    missed.append(f"{protocol} {figure}")
        if missed:
            print("floors missed:", ", ".join(missed))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
