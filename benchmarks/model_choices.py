"""The evidence behind the model's settings: each variant is cross-validated on
the real training petitions (5 folds; the bundled corpus joins every training
fold, as in real use) and also trained on all of train.csv + corpus and scored
on dev.csv. The pooled figure weighs both by their number of petitions.

    python benchmarks/model_choices.py [--variants shipped,no_ask_view,...] [--folds 5] [--seed 0]

Each model is trained as `triage train` trains it, thresholds chosen on its own
out-of-fold scores. Reports the model's scores before thresholds: division
accuracy and macro-F1 of the top suggestion, risk macro-F1 of the three-way
head's top class, and average precision of the high-risk head (how well it
ranks real high-risk petitions first); and the decisions after them: risk
macro-F1, the recall of high risk with the share of petitions marked high, and
key-group (any vs none) F1.
Needs ../shared/data/real (exit 3 without it)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, average_precision_score, f1_score
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.taxonomy import load_taxonomy  # noqa: E402
from model.triage import HIGH_HEAD, TriageModel  # noqa: E402
from training.corpus import DEFAULT_CORPUS  # noqa: E402
from training.evaluate import evaluate_decisions  # noqa: E402
from training.ledger import read_ledgers  # noqa: E402
from training.train import SYNTHETIC_WEIGHT, fit_with_thresholds, label_arrays, taxonomy_codes, texts_of  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
# name: (TriageModel parameters, weight of a generated petition beside real ones)
VARIANTS: dict[str, tuple[dict[str, Any], float]] = {
    "shipped": ({}, SYNTHETIC_WEIGHT),
    "no_ask_view": ({"ask_weight": 0.0}, SYNTHETIC_WEIGHT),
    "ask_view_full_weight": ({"ask_weight": 1.0}, SYNTHETIC_WEIGHT),
    "synthetic_weight_1": ({}, 1.0),
    "synthetic_weight_0.3": ({}, 0.3),
    "division_keywords_full_weight": ({"keyword_weights": {"division": 1.0}}, SYNTHETIC_WEIGHT),
    "high_head_svm": ({"head_losses": {"risk_high": "squared_hinge"}}, SYNTHETIC_WEIGHT),
    "high_head_balanced": ({"head_class_weights": {"risk_high": "balanced"}}, SYNTHETIC_WEIGHT),
    "risk_head_logistic": ({"head_losses": {"risk": "log_loss"}}, SYNTHETIC_WEIGHT),
    "key_group_head_logistic": ({"head_losses": {"key_group": "log_loss"}}, SYNTHETIC_WEIGHT),
    "key_group_rules_alone": ({"key_group_rules_alone": True}, SYNTHETIC_WEIGHT),
    "calibration_folds_5": ({"calibration_folds": 5}, SYNTHETIC_WEIGHT),
    # not a TriageModel parameter: fit_with_thresholds takes it
    "high_budget_not_filled": ({"fill_high_budget": False}, SYNTHETIC_WEIGHT),
}
FIGURES = {  # column heading: key
    "div acc": "division_accuracy", "div mF1": "division_macro_f1", "risk mF1": "risk_macro_f1",
    "high AP": "high_ap", "decided risk mF1": "decided_risk_macro_f1", "high recall": "high_recall",
    "high share": "high_share", "kg any-F1": "key_group_any_f1",
}


def scores(model: TriageModel, frame: pd.DataFrame) -> dict[str, float]:
    texts = texts_of(frame)
    proba = model.predict_proba(texts)
    division = np.asarray(model.classes_["division"], dtype=object)[proba["division"].argmax(1)]
    risk = np.asarray(model.classes_["risk"], dtype=object)[proba["risk"].argmax(1)]
    high = proba[HIGH_HEAD][:, model.classes_[HIGH_HEAD].index("high")]
    # The decisions from the probabilities already computed, not a second pass of the features.
    decisions = model.decide_many(proba, [model.rule_hits(text) for text in texts])
    decided = evaluate_decisions(decisions, label_arrays(frame), taxonomy_codes(model.taxonomy))
    return {
        "division_accuracy": accuracy_score(frame["division"], division),
        "division_macro_f1": f1_score(frame["division"], division, average="macro"),
        "risk_macro_f1": f1_score(frame["risk"], risk, average="macro"),
        "high_ap": average_precision_score(frame["risk"] == "high", high),
        "decided_risk_macro_f1": decided["risk"]["macro_f1"],
        "high_recall": decided["risk"]["high_recall"],
        "high_share": decided["risk"]["high_share"],
        "key_group_any_f1": decided["key_group"]["any_f1"],
    }


def fit(frame: pd.DataFrame, params: dict[str, Any], synthetic_weight: float) -> TriageModel:
    return fit_with_thresholds(frame, load_taxonomy(), synthetic_weight=synthetic_weight, **params)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="draws the folds: another seed shows how far a difference is noise")
    args = parser.parse_args()
    if not (REAL / "train.csv").exists() or not (REAL / "dev.csv").exists():
        print(f"needs the real petitions at {REAL}/train.csv and dev.csv (the ../shared folder beside the "
              "checkout); they are not there, so nothing was measured.")
        return 3
    taxonomy = load_taxonomy()
    real = read_ledgers([REAL / "train.csv"], taxonomy).frame
    corpus = read_ledgers([DEFAULT_CORPUS], taxonomy).frame
    dev = read_ledgers([REAL / "dev.csv"], taxonomy).frame
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(real, real["division"]))
    print(f"{len(real)} real training petitions in {args.folds} folds, {len(corpus)} generated, {len(dev)} dev")
    print(f"{'variant':<30} {'':>6} " + " ".join(f"{heading:>{max(len(heading), 8)}}" for heading in FIGURES))
    for name in args.variants.split(","):
        params, synthetic_weight = VARIANTS[name]
        started = time.perf_counter()
        cv_rows = []
        for train_rows, test_rows in folds:
            model = fit(pd.concat([real.iloc[train_rows], corpus], ignore_index=True), params, synthetic_weight)
            cv_rows.append((len(test_rows), scores(model, real.iloc[test_rows])))
        cv = {k: sum(n * s[k] for n, s in cv_rows) / len(real) for k in cv_rows[0][1]}
        on_dev = scores(fit(pd.concat([real, corpus], ignore_index=True), params, synthetic_weight), dev)
        pooled = {k: (cv[k] * len(real) + on_dev[k] * len(dev)) / (len(real) + len(dev)) for k in cv}
        for label, figures in (("cv", cv), ("dev", on_dev), ("pooled", pooled)):
            print(f"{name if label == 'cv' else '':<30} {label:>6} " + " ".join(
                f"{figures[key]:{max(len(heading), 8)}.3f}" for heading, key in FIGURES.items()), flush=True)
        print(f"{'':<30} ({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
