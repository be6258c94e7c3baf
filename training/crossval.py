"""The measuring protocol for model choices: repeated grouped k-fold cross-validation
and leave-one-board-out, on the same folds for every pipeline, with bootstrap intervals.

A model that must serve a province it has never seen is judged on boards it was not
trained on; petitions about one matter (a re-posted letter, a campaign) stay in one
fold, so that none is scored by a model that saw its sibling."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold

EXTERNAL = "external"
ROUTED_PRECISION = 0.95


def board_of(source: str) -> str:
    """The message board a `source` value belongs to: the four sheets of the TipDM cup
    (`tipdm_s2v`, `tipdm_s3`, ...) are one city's board."""
    return "tipdm" if source.startswith("tipdm") else source


def near_duplicate_groups(texts: Sequence[str], threshold: float = 0.5, n: int = 5) -> np.ndarray:
    """One integer per text; texts whose character `n`-gram sets overlap by at least
    `threshold` (Jaccard) share it, transitively: re-posts of one letter and petitions
    written from one template. Coarser on purpose than the service's same-matter
    linking (model/matter.py), which keeps template letters about different employers
    apart: for folds, grouping too much only makes the estimate more cautious."""
    vectorizer = HashingVectorizer(analyzer="char", ngram_range=(n, n), n_features=2**22, alternate_sign=False,
                                   norm=None, binary=True, lowercase=False)
    shingles = vectorizer.transform(texts).tocsr()
    sizes = np.asarray(shingles.sum(axis=1)).ravel()
    overlap = (shingles @ shingles.T).tocoo()
    union = sizes[overlap.row] + sizes[overlap.col] - overlap.data
    linked = (overlap.row < overlap.col) & (overlap.data >= threshold * np.maximum(union, 1))
    graph = sp.coo_matrix((np.ones(linked.sum()), (overlap.row[linked], overlap.col[linked])), shape=(len(texts),) * 2)
    return sp.csgraph.connected_components(graph, directed=False)[1]


@dataclass(frozen=True)
class Fold:
    """One split: `name` is "cv r<repeat> f<fold>" or "board <board>"."""

    name: str
    train: np.ndarray
    test: np.ndarray


def repeated_grouped_folds(y: np.ndarray, groups: np.ndarray, n_splits: int = 5, repeats: int = 3,
                           random_state: int = 0) -> list[Fold]:
    """`repeats` draws of `n_splits` folds, stratified by `y`, a group never split."""
    folds = []
    for r in range(repeats):
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state + r)
        for f, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            folds.append(Fold(f"cv r{r} f{f}", train, test))
    return folds


def board_folds(boards: np.ndarray) -> list[Fold]:
    """Leave one board out: train on all the others, test on it."""
    return [Fold(f"board {b}", np.flatnonzero(boards != b), np.flatnonzero(boards == b)) for b in sorted(set(boards))]


@dataclass
class Predictions:
    """What a pipeline decided for each test row, in the order of the rows."""

    division: np.ndarray
    division_confidence: np.ndarray
    division_top3: np.ndarray  # (n, 3) codes
    risk: np.ndarray
    key_group: np.ndarray
    needs_review: np.ndarray | None = None
    # False when division_confidence is a score, not a probability (the reference's SVM).
    confidence_is_probability: bool = True

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        fields = ("division", "division_confidence", "division_top3", "risk", "key_group")
        values = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
        review = None if any(p.needs_review is None for p in parts) else np.concatenate([p.needs_review for p in parts])
        return cls(**values, needs_review=review, confidence_is_probability=all(p.confidence_is_probability for p in parts))


def routed_share(confidence: np.ndarray, correct: np.ndarray, precision: float = ROUTED_PRECISION) -> float:
    """The largest share of petitions that can be routed without a person, taking the
    most confident first, while the routed ones stay at least `precision` right."""
    if not len(confidence):
        return 0.0
    order = np.argsort(-confidence, kind="stable")
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(running >= precision)
    return float((ok.max() + 1) / len(order)) if len(ok) else 0.0


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """How far the stated probability of the top division is from the share routed right:
    the gap in each of `bins` equal-width bins of probability, averaged with the bins'
    petitions as weights (the expected calibration error). 0 when an intake clerk can
    read "p = 0.8" as "right four times in five"."""
    if not len(confidence):
        return float("nan")
    which = np.minimum((np.asarray(confidence) * bins).astype(int), bins - 1)
    gaps = [abs(confidence[which == b].mean() - correct[which == b].mean()) * (which == b).mean()
            for b in range(bins) if (which == b).any()]
    return float(sum(gaps))


def metrics(truth: dict[str, np.ndarray], pred: Predictions, rows: np.ndarray | None = None) -> dict[str, float]:
    """The figures every pipeline is compared on, over `rows` (default: all)."""
    if rows is None:
        rows = np.arange(len(pred.division))
    div_true, div_pred = truth["division"][rows], pred.division[rows]
    correct = div_true == div_pred
    ours = div_true != EXTERNAL
    risk_true, risk_pred = truth["risk"][rows], pred.risk[rows]
    high_true, high_pred = risk_true == "high", risk_pred == "high"
    kg_true, kg_pred = truth["key_group"][rows] != "none", pred.key_group[rows] != "none"
    labels = sorted(set(div_true))
    review = None if pred.needs_review is None else pred.needs_review[rows].astype(bool)
    routed = ~review if review is not None else None
    return {
        "division_accuracy": float(correct.mean()),
        "division_accuracy_ours": float(correct[ours].mean()) if ours.any() else float("nan"),
        "division_top3": float((pred.division_top3[rows] == div_true[:, None]).any(axis=1).mean()),
        "division_macro_f1": float(f1_score(div_true, div_pred, labels=labels, average="macro", zero_division=0)),
        "routed_share_ours": routed_share(pred.division_confidence[rows][ours], correct[ours]),
        "risk_macro_f1": float(f1_score(risk_true, risk_pred, labels=["low", "medium", "high"], average="macro",
                                        zero_division=0)),
        "high_recall": float((high_true & high_pred).sum() / high_true.sum()) if high_true.any() else float("nan"),
        "high_share": float(high_pred.mean()),
        "key_group_f1": float(f1_score(kg_true, kg_pred, zero_division=0)),
        # The thresholds' own promise: of the petitions the model routes without review,
        # how many are routed right, and how many it routes so.
        "auto_routed_precision": float(correct[routed].mean()) if routed is not None and routed.any() else float("nan"),
        "auto_routed_share": float(routed.mean()) if routed is not None else float("nan"),
        "division_calibration_error": (calibration_error(pred.division_confidence[rows], correct)
                                       if pred.confidence_is_probability else float("nan")),
    }


def bootstrap_interval(statistic: Callable[[np.ndarray], dict[str, float]], strata: np.ndarray, n_boot: int = 300,
                       random_state: int = 0) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of `statistic(rows)` over resamples of the rows, drawn
    within each stratum (board) so that every resample keeps the boards' sizes."""
    rng = np.random.default_rng(random_state)
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        rows = np.concatenate([rng.choice(m, size=len(m)) for m in members])
        for key, value in statistic(rows).items():
            draws.setdefault(key, []).append(value)
    return {k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) for k, v in draws.items()}
