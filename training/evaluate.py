"""Metrics for a trained model on labelled petitions: the numbers data staff
compare between models, computed the same way everywhere."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from model.taxonomy import HEADS


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total, error = len(confidence), 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            error += mask.sum() / total * abs(correct[mask].mean() - confidence[mask].mean())
    return float(error)


def reliability_curve(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    curve = []
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            curve.append({"bin_low": float(lo), "bin_high": float(hi), "count": int(mask.sum()),
                          "confidence": float(confidence[mask].mean()), "accuracy": float(correct[mask].mean())})
    return curve


def confusion_counts(y_true: list[str], y_pred: list[str], labels: list[str]) -> list[list[int]]:
    """How many petitions of each true label (rows) got each predicted label (columns),
    counted here: scikit-learn's confusion_matrix warns "A single label was found" on a
    small ledger where every petition has one label, though `labels` is given."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix.tolist()


def any_group_f1(kg_true: np.ndarray, kg_pred: np.ndarray) -> float | None:
    """F1 of "some key group" against "none"; None when no petition is in a key group
    and none is predicted to be, where there is nothing to score (shown as n/a, as the
    high-risk recall is), not a score of 0."""
    hits = int((kg_true & kg_pred).sum())
    missed, extra = int((kg_true & ~kg_pred).sum()), int((~kg_true & kg_pred).sum())
    if hits + missed + extra == 0:
        return None
    return 2 * hits / (2 * hits + missed + extra)


def head_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, Any]:
    present = [c for c in labels if c in set(y_true) | set(y_pred)]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(present)},
        "confusion": {"labels": present, "matrix": confusion_counts(y_true, y_pred, present)},
    }


def evaluate_decisions(decisions: list[dict[str, Any]], truth: dict[str, list[str]],
                       codes: dict[str, list[str]]) -> dict[str, Any]:
    """Metrics from already-made decisions (see TriageModel.predict) against true labels."""
    result: dict[str, Any] = {"n": len(decisions)}
    for head in HEADS:
        result[head] = head_metrics(list(truth[head]), [d[head] for d in decisions], codes[head])
    risk_true = np.asarray(truth["risk"])
    risk_pred = np.asarray([d["risk"] for d in decisions])
    flagged = risk_pred == "high"
    actual = risk_true == "high"
    result["risk"]["high_recall"] = float((flagged & actual).sum() / actual.sum()) if actual.any() else None
    result["risk"]["high_precision"] = float((flagged & actual).sum() / flagged.sum()) if flagged.any() else None
    result["risk"]["high_share"] = float(flagged.mean()) if len(flagged) else 0.0
    kg_true = np.asarray(truth["key_group"]) != "none"
    kg_pred = np.asarray([d["key_group"] for d in decisions]) != "none"
    result["key_group"]["any_f1"] = any_group_f1(kg_true, kg_pred)
    div_true = list(truth["division"])
    result["division"]["top3_accuracy"] = float(np.mean(
        [t in [c for c, _ in d["division_top3"]] for t, d in zip(div_true, decisions, strict=True)]))
    confidence = np.asarray([d["division_confidence"] for d in decisions])
    correct = np.asarray([d["division"] == t for d, t in zip(decisions, div_true, strict=True)], dtype=float)
    result["division"]["ece"] = expected_calibration_error(confidence, correct)
    result["division"]["reliability"] = reliability_curve(confidence, correct)
    result["needs_review_share"] = float(np.mean([d["needs_review"] for d in decisions]))
    return result


def summary_line(metrics: dict[str, Any]) -> str:
    r = metrics["risk"]
    recall = "n/a" if r["high_recall"] is None else f"{r['high_recall']:.3f}"
    any_f1 = metrics["key_group"]["any_f1"]
    return (f"division acc {metrics['division']['accuracy']:.3f} macro-F1 {metrics['division']['macro_f1']:.3f} | "
            f"risk macro-F1 {r['macro_f1']:.3f} high recall {recall} high share {r['high_share']:.3f} | "
            f"key group any-F1 {'n/a' if any_f1 is None else f'{any_f1:.3f}'}")
