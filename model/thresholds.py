"""Choosing the decision thresholds on held-out petitions, as part of fitting the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import f1_score

from model.taxonomy import HIGH_HEAD, Rule

if TYPE_CHECKING:
    from model.triage import TriageModel

DEFAULT_THRESHOLDS: dict[str, Any] = {
    "division": {},  # per class; a class not listed uses "division_default"
    "division_default": 0.5,
    "risk_high": 0.5,
    "key_group_any": 0.5,
    "risk_medium_bias": 0.0,  # added to p(medium) before comparing it with p(low)
}

DIVISION_TARGET_PRECISION = 0.90
HIGH_TARGET_RECALL = 0.90
# The review queue must stay workable: flag at most this share of petitions
# beyond those that really are high risk.
HIGH_MAX_EXTRA_SHARE = 0.10
MIN_SUPPORT = 3


def division_thresholds(top: np.ndarray, p_top: np.ndarray, truth: np.ndarray,
                        classes: list[str], target: float = DIVISION_TARGET_PRECISION) -> dict[str, float]:
    """Per class, the lowest confidence above which the top suggestion keeps `target` precision.

    Below it a person must look (`needs_review`). A class that never reaches
    the target on held-out data gets the highest confidence seen, so it is
    reviewed almost always."""
    thresholds = {}
    for label in classes:
        mask = top == label
        if mask.sum() < MIN_SUPPORT:
            continue
        order = np.argsort(-p_top[mask])
        conf, hit = p_top[mask][order], (truth[mask][order] == label).astype(float)
        precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
        ok = [i for i in range(len(hit)) if i + 1 >= MIN_SUPPORT and precision[i:].max() >= target
              and precision[i] >= target]
        thresholds[label] = float(conf[max(ok)]) if ok else float(min(conf[0], 0.99))
    return thresholds


def high_risk_threshold(p_high: np.ndarray, rule_high: np.ndarray, truth_high: np.ndarray,
                        target_recall: float = HIGH_TARGET_RECALL,
                        max_extra_share: float = HIGH_MAX_EXTRA_SHARE, fill_budget: bool = True) -> float:
    """The highest p(high) cut that, with the rules, finds `target_recall` of high-risk
    petitions; if that needs too many flags, the lowest cut inside the flag budget
    (`fill_budget`), or else the highest cut that finds as many as any cut inside it.

    Filling it is a choice for recall. Cross-validated on the real training petitions,
    the flags past the last high-risk petition the training folds found caught no more
    in the held-out fold, but on the dev petitions they caught 5 of 16
    (benchmarks/model_choices.py, variant `high_budget_not_filled`)."""
    if not truth_high.any():
        return float(DEFAULT_THRESHOLDS["risk_high"])
    budget = truth_high.mean() + max_extra_share
    best_within_budget, most_found = 1.0, -1
    for cut in np.unique(np.concatenate([p_high, [1.0]]))[::-1]:
        flagged = rule_high | (p_high >= cut)
        if flagged.mean() > budget:
            break
        found = int((flagged & truth_high).sum())
        if fill_budget or found > most_found:
            best_within_budget, most_found = float(cut), found
        if found / truth_high.sum() >= target_recall:
            return float(cut)
    return best_within_budget


def key_group_threshold(p_any: np.ndarray, rule_any: np.ndarray, truth_any: np.ndarray) -> float:
    """The p(any group) cut that maximises any-vs-none F1 together with the rules."""
    if not truth_any.any():
        return float(DEFAULT_THRESHOLDS["key_group_any"])
    best, best_f1 = float(DEFAULT_THRESHOLDS["key_group_any"]), -1.0
    for cut in np.linspace(0.05, 0.95, 19):
        score = f1_score(truth_any, rule_any | (p_any >= cut), zero_division=0)
        if score > best_f1 + 1e-9:
            best, best_f1 = float(cut), score
    return best


def medium_bias(model: TriageModel, thresholds: dict[str, Any], proba: dict[str, np.ndarray],
                hits: list[list[tuple[Rule, Any]]], truth_risk: np.ndarray) -> float:
    """The shift toward `medium` that maximises risk macro-F1, the high decisions fixed.

    Class weighting makes the low/medium boundary of the three-way head land
    where the training mix puts it, not where real intake needs it."""
    saved = model.thresholds_
    best, best_f1 = 0.0, -1.0
    try:
        for bias in np.round(np.arange(-0.5, 0.51, 0.05), 2):
            model.thresholds_ = {**thresholds, "risk_medium_bias": float(bias)}
            predicted = [d["risk"] for d in model.decide_many(proba, hits)]
            score = f1_score(truth_risk, predicted, average="macro", zero_division=0)
            if score > best_f1 + 1e-9 or (abs(score - best_f1) <= 1e-9 and abs(bias) < abs(best)):
                best, best_f1 = float(bias), score
    finally:
        model.thresholds_ = saved
    return best


def choose_thresholds(model: TriageModel, proba: dict[str, np.ndarray], hits: list[list[tuple[Rule, Any]]],
                      truth: dict[str, np.ndarray], min_high_cut: float = 0.0,
                      fill_high_budget: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
    """Thresholds and per-rule precision from probabilities of petitions the model
    did not see (out-of-fold), their rule hits and their true labels. The p(high)
    cut is never below `min_high_cut`; `fill_high_budget`: see `high_risk_threshold`."""
    n = len(hits)
    div_classes = model.classes_["division"]
    top_idx = proba["division"].argmax(axis=1)
    top = np.asarray([div_classes[i] for i in top_idx], dtype=object)
    p_top = proba["division"].max(axis=1)
    if HIGH_HEAD in proba:
        p_high = proba[HIGH_HEAD][:, model.classes_[HIGH_HEAD].index("high")]
    elif "high" in model.classes_["risk"]:
        p_high = proba["risk"][:, model.classes_["risk"].index("high")]
    else:
        p_high = np.zeros(n)
    rule_high = np.asarray([any(r.head == "risk" and r.label == "high" for r, _ in h) for h in hits])
    kg_classes = model.classes_["key_group"]
    p_any = 1.0 - proba["key_group"][:, kg_classes.index("none")] if "none" in kg_classes else np.ones(n)
    rule_any = np.asarray([any(r.head == "key_group" and model.decides_key_group_alone(r) for r, _ in h) for h in hits])
    thresholds = {
        "division": division_thresholds(top, p_top, np.asarray(truth["division"]), div_classes),
        "division_default": DEFAULT_THRESHOLDS["division_default"],
        "risk_high": max(min_high_cut, high_risk_threshold(
            p_high, rule_high, np.asarray(truth["risk"]) == "high", fill_budget=fill_high_budget)),
        "key_group_any": key_group_threshold(p_any, rule_any, np.asarray(truth["key_group"]) != "none"),
    }
    thresholds["risk_medium_bias"] = medium_bias(model, thresholds, proba, hits, np.asarray(truth["risk"]))
    precision = {}
    for rule in model.taxonomy.rules:
        fired = np.asarray([any(r.id == rule.id for r, _ in h) for h in hits])
        if rule.head == "risk":
            order = ("low", "medium", "high")
            right = np.asarray([order.index(v) >= order.index(rule.label) for v in truth["risk"]])
        else:
            right = np.asarray(truth["key_group"]) == rule.label
        # Laplace smoothing keeps a rule that fired twice from claiming certainty.
        precision[rule.id] = float(((fired & right).sum() + 1) / (fired.sum() + 2))
    return thresholds, precision
