"""TriageModel: one estimator, three calibrated heads, auditable rules on top."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, parallel_config
from sklearn.base import BaseEstimator

from model.calibration import TemperatureScaledLinear
from model.explain import explain_head
from model.features import build_features, rule_feature_names, rule_matrix
from model.taxonomy import HEADS, RISK_ORDER, Rule, Taxonomy
from model.text import normalize

DEFAULT_THRESHOLDS: dict[str, Any] = {
    "division": {},  # per class; a class not listed uses "division_default"
    "division_default": 0.5,
    "risk_high": 0.5,
    "key_group_any": 0.5,
    "risk_medium_bias": 0.0,  # added to p(medium) before comparing it with p(low)
}
# How much each head leans on the taxonomy's keyword and rule columns relative to
# the TF-IDF text features. Division routing is better with the lists as a light
# hint, risk needs the rule indicators at full strength (benchmarks/model_choices.py).
DEFAULT_KEYWORD_WEIGHTS = {"division": 0.15, "risk": 1.0, "key_group": 1.0, "risk_high": 1.0}
# The high-risk head is a logistic regression, the others are SVMs: cross-validated
# on the real training petitions, thresholds chosen inside each fold, it finds as
# many high-risk petitions with fewer flagged (12.6 % against 14.1 %; risk macro-F1
# 0.637 against 0.628). The three-way risk and the key-group heads did worse as
# logistic regressions (benchmarks/model_choices.py).
DEFAULT_HEAD_LOSSES = {"division": "squared_hinge", "risk": "squared_hinge", "key_group": "squared_hinge",
                       "risk_high": "log_loss"}
# Classes weighted to balance, except in the high-risk head. Balanced, its few real
# high-risk petitions and the many generated ones, which state their risk plainly,
# outweigh the real medium-risk petitions that share their words; unweighted, it ranks
# real high-risk petitions better with every draw of the folds (cross-validated average
# precision 0.450/0.440/0.438 against 0.432/0.416/0.413; benchmarks/model_choices.py).
DEFAULT_HEAD_CLASS_WEIGHTS: dict[str, str | None] = {
    "division": "balanced", "risk": "balanced", "key_group": "balanced", "risk_high": None}
# Only routing reads the closing request a second time: it sharpens the division
# but blurs the three-way risk head (benchmarks/model_choices.py).
ASK_HEADS = frozenset({"division"})
# Besides the three heads the API returns, a binary high-vs-rest head ranks
# petitions for the same-day review queue: it orders real high-risk petitions
# better than the high column of the three-way risk head (cross-validated
# average precision on the real training petitions).
HIGH_HEAD = "risk_high"
# Above this many petitions, calibration and thresholds use one held-out sample of
# HOLDOUT_ROWS instead of folds, and each head is fitted once: a quarter of the
# fits (benchmarks/train_scale.py).
HOLDOUT_ABOVE = 20_000
HOLDOUT_ROWS = 5_000
MIN_ROWS_PER_LABEL_FOR_HOLDOUT = 10
# What a rule's firing is worth when the held-out data never saw it fire.
DEFAULT_RULE_PRECISION = 0.5


class ModelInputError(ValueError):
    """Training input the model cannot learn from; the message says which head and label."""


def _as_labels(y: Any) -> dict[str, np.ndarray]:
    if hasattr(y, "columns"):
        return {h: np.asarray(y[h], dtype=object) for h in HEADS}
    arr = np.asarray(y, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != len(HEADS):
        raise ModelInputError(f"y must have one column per head {HEADS}, got shape {arr.shape}")
    return {h: arr[:, i] for i, h in enumerate(HEADS)}


def _fit_head(head: str, matrix: Any, scaling: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
              groups: np.ndarray | None, *, C: float, loss: str, class_weight: str | None, folds: int,
              holdout: np.ndarray | None, n_jobs: int | None, random_state: int,
              ) -> tuple[TemperatureScaledLinear, np.ndarray, list[str]]:
    """One head fitted on the columns scaled for it, its out-of-sample probabilities
    (NaN for rows without any: those outside the holdout), and the labels left out."""
    values, counts = np.unique(y, return_counts=True)
    # A label seen once cannot be both learned and calibrated; it is left out
    # of this head (and reported) rather than failing the whole training run.
    single = sorted(str(v) for v, c in zip(values, counts, strict=True) if c < 2)
    kept = np.flatnonzero(~np.isin(y, single))
    if len(values) - len(single) < 2:
        raise ModelInputError(
            f"{head}: need at least two labels with 2+ examples each, got {({str(v): int(c) for v, c in zip(values, counts, strict=True)})}")
    split = None
    if holdout is not None:  # held-out rows never carry a left-out label (TriageModel._holdout_rows)
        position = np.full(len(y), -1)
        position[kept] = np.arange(len(kept))
        split = position[holdout]
    scaled = matrix @ sp.diags(scaling, format="csr")
    if single:  # a row copy of the whole matrix, only when some rows are left out
        scaled, y_kept, weight = scaled[kept], y[kept], None if weight is None else weight[kept]
        groups = None if groups is None else groups[kept]
    else:
        y_kept = y
    head_model = TemperatureScaledLinear(
        C=C, loss=loss, class_weight=class_weight, folds=int(min(folds, counts[counts >= 2].min())), holdout=split,
        n_jobs=n_jobs, random_state=random_state).fit(scaled, y_kept, sample_weight=weight, groups=groups)
    # Learned on the scaled columns, the weights are folded back: w·(x∘s) = (w∘s)·x,
    # so every head then reads the one shared matrix, unscaled.
    head_model.estimator_.coef_ = head_model.estimator_.coef_ * scaling
    oof = np.full((len(y), head_model.oof_proba_.shape[1]), np.nan)
    oof[kept[head_model.oof_rows_]] = head_model.oof_proba_
    del head_model.oof_proba_, head_model.oof_rows_
    if single and holdout is None:  # rows of a left-out label only have the in-sample view
        left = np.setdiff1d(np.arange(len(y)), kept)
        oof[left] = head_model.predict_proba(matrix[left])
    return head_model, oof, single


class TriageModel(BaseEstimator):
    """Predicts division, risk and key group for petition texts.

    X is a sequence of texts made by `model.text.join_fields(title, body)`;
    y has the columns division, risk, key_group (codes of `taxonomy`); `groups`
    in `fit` (optional) keeps petitions that share a value in one calibration
    fold (see `TemperatureScaledLinear`)."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        C: float = 0.3,
        max_char_features: int = 150_000,
        calibration_folds: int = 3,
        holdout_above: int | None = HOLDOUT_ABOVE,
        holdout_rows: int = HOLDOUT_ROWS,
        keyword_weights: dict[str, float] | None = None,
        head_losses: dict[str, str] | None = None,
        head_class_weights: dict[str, str | None] | None = None,
        ask_weight: float = 0.5,
        key_group_rules_alone: bool = False,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.taxonomy = taxonomy
        self.n_jobs = n_jobs
        self.keyword_weights = keyword_weights
        self.head_losses = head_losses
        self.head_class_weights = head_class_weights
        self.ask_weight = ask_weight
        self.key_group_rules_alone = key_group_rules_alone
        self.C = C
        self.max_char_features = max_char_features
        self.calibration_folds = calibration_folds
        self.holdout_above = holdout_above
        self.holdout_rows = holdout_rows
        self.random_state = random_state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # An artifact pickled before `key_group_rules_alone` existed let the rules decide
        # alone and chose its key-group cut that way; it keeps deciding as it was trained.
        state.setdefault("key_group_rules_alone", True)
        # Before `head_class_weights`, every head weighted its classes to balance.
        state.setdefault("head_class_weights", dict.fromkeys(DEFAULT_HEAD_CLASS_WEIGHTS, "balanced"))
        super().__setstate__(state)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Sequence[str], y: Any, sample_weight: Any = None, groups: Any = None) -> TriageModel:
        texts = self._check_texts(X)
        labels = _as_labels(y)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weight is not None and (weight.shape != (len(texts),) or not (np.isfinite(weight) & (weight > 0)).all()):
            smallest = f", smallest {weight.min()}" if weight.size else ""
            raise ModelInputError(f"sample_weight must hold one positive number per text ({len(texts)}), "
                                  f"got shape {weight.shape}{smallest}")
        if groups is not None:
            groups = np.asarray(groups, dtype=object)
            if groups.shape != (len(texts),):
                raise ModelInputError(f"groups must hold one value per text ({len(texts)}), got shape {groups.shape}")
            # Integer codes, once: every head's folds and the held-out draw compare groups,
            # and np.isin on object arrays is quadratic.
            groups = np.unique(groups, return_inverse=True)[1]
        for name, setting in (("head_losses", self.head_losses), ("head_class_weights", self.head_class_weights)):
            unknown_heads = sorted(set(setting or {}) - set(DEFAULT_HEAD_LOSSES))
            if unknown_heads:
                raise ModelInputError(f"{name} names heads {unknown_heads}; the heads are {sorted(DEFAULT_HEAD_LOSSES)}")
        class_weights = {**DEFAULT_HEAD_CLASS_WEIGHTS, **(self.head_class_weights or {})}
        wrong = {head: cw for head, cw in class_weights.items() if cw not in ("balanced", None)}
        if wrong:
            raise ModelInputError(f"head_class_weights must be 'balanced' or None per head, got {wrong}")
        for head in HEADS:
            if len(labels[head]) != len(texts):
                raise ModelInputError(f"{head}: {len(labels[head])} labels for {len(texts)} texts")
            unknown = sorted(set(labels[head]) - set(self.taxonomy.codes(head)))
            if unknown:
                raise ModelInputError(f"{head}: labels {unknown} are not defined in the taxonomy")
        texts = [normalize(t) for t in texts]
        hits = [self._hits(t) for t in texts]
        # Training reuses them to choose thresholds, then drops them (as oof_proba_).
        self.training_hits_ = hits
        # Word and character vectorizers fit side by side in threads: the character one
        # spends its time in numpy, which lets go of the GIL, and a process would send its
        # whole matrix back pickled (benchmarks/train_scale.py, 100,000 petitions: 129 s in
        # processes, 120 s in threads). Afterwards the union transforms in one thread, as
        # one petition is not worth dispatching.
        self.features_ = build_features(self.taxonomy, self.max_char_features, self.ask_weight).set_params(n_jobs=self.n_jobs)
        with parallel_config(backend="threading"):
            features = self.features_.fit_transform(texts)
        self.features_.set_params(n_jobs=None)
        matrix = sp.hstack([features, rule_matrix(hits, self.taxonomy.rules)], format="csr")
        self.feature_names_ = np.concatenate([
            self.features_.get_feature_names_out(), rule_feature_names(self.taxonomy.rules)]).astype(object)
        weights = {**DEFAULT_KEYWORD_WEIGHTS, **(self.keyword_weights or {})}
        block = np.asarray([name.partition("__")[0] for name in self.feature_names_], dtype=object)
        if not (block == "word").any():
            raise ModelInputError(f"cannot learn from these {len(texts)} petitions: too few, or too little text "
                                  "shared between them (no word appears in two of them)")
        labels[HIGH_HEAD] = np.where(labels["risk"] == "high", "high", "other")
        heads = HEADS + ((HIGH_HEAD,) if (labels["risk"] == "high").sum() >= 2 else ())
        holdout = self._holdout_rows(labels, groups)
        self.oof_rows_ = np.arange(len(texts)) if holdout is None else holdout
        scalings = {}
        for head in heads:
            scalings[head] = np.ones(matrix.shape[1])
            scalings[head][block == "keywords"] = weights[head]
            scalings[head][block == "ask"] = 1.0 if head in ASK_HEADS else 0.0
        losses = {**DEFAULT_HEAD_LOSSES, **(self.head_losses or {})}
        params = {"C": self.C, "folds": self.calibration_folds, "holdout": holdout, "random_state": self.random_state}
        if holdout is None:  # each head's folds side by side
            fitted = [_fit_head(head, matrix, scalings[head], labels[head], weight, groups, loss=losses[head],
                                class_weight=class_weights[head], n_jobs=self.n_jobs, **params)
                      for head in heads]
        else:  # one fit per head: the heads side by side
            fitted = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_head)(head, matrix, scalings[head], labels[head], weight, None, loss=losses[head],
                                   class_weight=class_weights[head], n_jobs=None, **params)
                for head in heads)
        self.heads_ = {head: model for head, (model, _, _) in zip(heads, fitted, strict=True)}
        self.oof_proba_ = {head: oof for head, (_, oof, _) in zip(heads, fitted, strict=True)}
        self.skipped_labels_ = {head: skipped for head, (_, _, skipped) in zip(heads, fitted, strict=True)}
        self.classes_ = {head: list(self.heads_[head].classes_) for head in self.heads_}
        self.thresholds_ = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_THRESHOLDS.items()}
        self.rule_precision_: dict[str, float] = {}
        return self

    def _holdout_rows(self, labels: dict[str, np.ndarray], groups: np.ndarray | None) -> np.ndarray | None:
        """Rows held out for calibration and thresholds when the ledger is large, else None (folds).

        Only rows whose labels are all common enough are candidates, so every label
        keeps most of its rows for training. With `groups`, whole groups are held out,
        so that no held-out petition has a sibling in training."""
        n = len(labels["division"])
        if self.holdout_above is None or n <= self.holdout_above:
            return None
        candidate = np.ones(n, bool)
        for y in labels.values():
            _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
            candidate &= counts[inverse] >= MIN_ROWS_PER_LABEL_FOR_HOLDOUT
        if groups is not None:
            candidate &= ~np.isin(groups, groups[~candidate])
        rows = np.flatnonzero(candidate)
        size = min(self.holdout_rows, len(rows) // 4)
        held = np.zeros(n, bool)
        rng = np.random.default_rng(self.random_state)
        if groups is None:
            held[rng.choice(rows, size=size, replace=False)] = True
        elif size:  # groups in a random order, up to and including the one that fills the sample
            _, inverse = np.unique(groups[rows], return_inverse=True)
            rank = rng.permutation(inverse.max() + 1)[inverse]
            held[rows[rank <= np.sort(rank)[size - 1]]] = True
        for y in labels.values():  # a label the draw took almost wholly stays in training
            for label in np.unique(y[held]):
                of_label = y == label
                if (of_label & ~held).sum() < MIN_ROWS_PER_LABEL_FOR_HOLDOUT // 2:
                    held &= ~of_label
        if groups is not None:  # and with it the rest of its groups
            held &= ~np.isin(groups, groups[candidate & ~held])
        return np.flatnonzero(held) if held.any() else None

    # -------------------------------------------------------------- predict
    def _check_texts(self, X: Sequence[str]) -> list[str]:
        if isinstance(X, str):
            raise ModelInputError("X must be a sequence of texts, not a single string")
        texts = list(X)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ModelInputError(f"X[{i}] must be str, got {type(text).__name__}")
        return texts

    def _hits(self, normalized: str) -> list[tuple[Rule, list[tuple[int, int]]]]:
        hits = []
        for rule in self.taxonomy.rules:
            spans = rule.matches(normalized)
            if spans:
                hits.append((rule, spans))
        return hits

    def _matrix(self, normalized: list[str], hits: list[list[tuple[Rule, Any]]]) -> Any:
        # FeatureUnion.transform's own result, without its joblib dispatch, which cost
        # about 3 ms per call: most of the time of one petition.
        weights = self.features_.transformer_weights or {}
        blocks = []
        for name, transformer in self.features_.transformer_list:
            if transformer != "drop":
                block = transformer.transform(normalized)
                blocks.append(block * weights[name] if name in weights else block)
        return sp.hstack([*blocks, rule_matrix(hits, self.taxonomy.rules)], format="csr")

    def _score(self, X: Sequence[str]) -> tuple[dict[str, np.ndarray], list[list[tuple[Rule, Any]]], Any]:
        normalized = [normalize(t) for t in self._check_texts(X)]
        hits = [self._hits(t) for t in normalized]
        matrix = self._matrix(normalized, hits)
        proba = {head: model.predict_proba(matrix) for head, model in self.heads_.items()}
        return proba, hits, matrix

    def predict_proba(self, X: Sequence[str]) -> dict[str, np.ndarray]:
        """Calibrated probabilities per head; columns follow `classes_[head]`."""
        return self._score(X)[0]

    def decides_key_group_alone(self, rule: Rule) -> bool:
        """Whether `rule` puts a petition in its key group even where the head finds no
        key-group case: when told to, or when the head has not learned the group (one
        a province has just added to the taxonomy)."""
        return self.key_group_rules_alone or rule.label not in self.classes_["key_group"]

    def rule_hits(self, text: str) -> list[tuple[Rule, list[tuple[int, int]]]]:
        return self._hits(normalize(text))

    def decide(self, proba: dict[str, np.ndarray], hits: list[tuple[Rule, list]]) -> dict[str, Any]:
        """Labels and confidences for one petition from its probabilities (1-D per head) and rule hits."""
        t = self.thresholds_
        div_classes = self.classes_["division"]
        order = np.argsort(-proba["division"])
        top3 = [(div_classes[i], float(proba["division"][i])) for i in order[:3]]
        division, division_p = top3[0]
        division_threshold = float(t["division"].get(division, t["division_default"]))

        kg_classes = self.classes_["key_group"]
        kg_p = proba["key_group"]
        p_none = float(kg_p[kg_classes.index("none")]) if "none" in kg_classes else 0.0
        # A key-group rule names the group; whether the petition is a key-group case at
        # all is the head's call once it has learned the group: deciding alone, the rules
        # lowered key-group F1 on real petitions (benchmarks/model_choices.py).
        is_case = 1.0 - p_none >= t["key_group_any"]
        kg_rules = [r for r, _ in hits if r.head == "key_group" and (is_case or self.decides_key_group_alone(r))]
        key_group, key_group_p, key_group_rule = "none", p_none, None
        if kg_rules:
            rule = kg_rules[0]
            model_p = float(kg_p[kg_classes.index(rule.label)]) if rule.label in kg_classes else 0.0
            key_group, key_group_rule = rule.label, rule.id
            key_group_p = max(model_p, self.rule_precision_.get(rule.id, DEFAULT_RULE_PRECISION))
        elif is_case:
            candidates = [(float(kg_p[i]), c) for i, c in enumerate(kg_classes) if c != "none"]
            key_group_p, key_group = max(candidates)

        risk_classes = self.classes_["risk"]
        risk_p = {c: float(proba["risk"][i]) for i, c in enumerate(risk_classes)}
        risk_rules = [r for r, _ in hits if r.head == "risk"]
        rule_level = max((RISK_ORDER.index(r.label) for r in risk_rules), default=0)
        risk_rule = next((r.id for r in risk_rules if RISK_ORDER.index(r.label) == rule_level), None)
        p_high = float(proba[HIGH_HEAD][self.classes_[HIGH_HEAD].index("high")]) if HIGH_HEAD in proba else risk_p.get("high", 0.0)
        if rule_level == 2 or p_high >= t["risk_high"]:
            risk = "high"
            risk_conf = p_high
            if p_high < t["risk_high"] and risk_rule:
                risk_conf = max(p_high, self.rule_precision_.get(risk_rule, DEFAULT_RULE_PRECISION))
        else:
            bias = t.get("risk_medium_bias", 0.0)
            risk = "medium" if risk_p.get("medium", 0.0) + bias >= risk_p.get("low", 0.0) else "low"
            risk_conf = risk_p.get(risk, 0.0)
            # The taxonomy makes every key-group case at least medium.
            if risk == "low" and key_group != "none":
                risk, risk_conf = "medium", max(risk_p.get("medium", 0.0), key_group_p)
        needs_review = risk == "high" or division_p < division_threshold
        return {
            "division": division, "division_confidence": division_p, "division_top3": top3,
            "division_threshold": division_threshold,
            "risk": risk, "risk_confidence": float(risk_conf),
            "key_group": key_group, "key_group_confidence": float(key_group_p),
            "needs_review": bool(needs_review),
            "rules": [r.id for r, _ in hits],
            "key_group_rule": key_group_rule,
        }

    def predict(self, X: Sequence[str]) -> list[dict[str, Any]]:
        """One decision per text (labels, confidences, top-3, rules fired), no explanation."""
        proba, hits, _ = self._score(X)
        return self.decide_many(proba, hits)

    def decide_many(self, proba: dict[str, np.ndarray], hits: list[list[tuple[Rule, list]]]) -> list[dict[str, Any]]:
        return [self.decide({h: p[i] for h, p in proba.items()}, row_hits) for i, row_hits in enumerate(hits)]

    def suggest(self, text: str, top_terms: int = 5) -> dict[str, Any]:
        """The full suggestion for one petition: decision plus, per head, the words
        and rules that drove it with their character offsets in `text`."""
        proba_rows, hit_rows, matrix = self._score([text])
        proba = {head: p[0] for head, p in proba_rows.items()}
        hits = hit_rows[0]
        decision = self.decide(proba, hits)
        decision["explanation"] = {
            head: explain_head(
                self, head, decision[head], matrix, text,
                [(r, s) for r, s in hits if r.head == head], top_terms,
            )
            for head in HEADS
        }
        return decision
