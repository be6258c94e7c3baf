"""A linear SVM whose scores are turned into probabilities by temperature scaling.

Per-class sigmoid calibration (CalibratedClassifierCV) can reorder classes and
cost accuracy; one temperature, fitted on out-of-fold scores, keeps the SVM's
ranking and only sharpens or softens the probabilities (Guo et al., 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import LinearSVC


def _scores(decision: np.ndarray) -> np.ndarray:
    # A binary LinearSVC returns one column scoring classes_[1].
    return np.column_stack([-decision / 2, decision / 2]) if decision.ndim == 1 else decision


class TemperatureScaledSVC(ClassifierMixin, BaseEstimator):
    def __init__(self, C: float = 0.3, folds: int = 3, class_weight: str | None = "balanced",
                 random_state: int = 0) -> None:
        self.C = C
        self.folds = folds
        self.class_weight = class_weight
        self.random_state = random_state

    def _svm(self) -> LinearSVC:
        return LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TemperatureScaledSVC:
        y = np.asarray(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        cv = StratifiedKFold(self.folds, shuffle=True, random_state=self.random_state)
        params = {"sample_weight": sample_weight} if sample_weight is not None else None
        oof = _scores(cross_val_predict(self._svm(), X, y, cv=cv, method="decision_function", params=params))

        def nll(log_t: float) -> float:
            return -float(log_softmax(oof / np.exp(log_t), axis=1)[np.arange(len(encoded)), encoded].mean())

        self.temperature_ = float(np.exp(minimize_scalar(nll, bounds=(-5, 3), method="bounded").x))
        # Out-of-fold probabilities: what the model says of each training row without
        # having seen it. Training uses them to choose thresholds, then drops them.
        self.oof_proba_ = softmax(oof / self.temperature_, axis=1)
        self.estimator_ = self._svm().fit(X, y, sample_weight=sample_weight)
        return self

    @property
    def coef_(self) -> np.ndarray:
        return self.estimator_.coef_

    def decision_function(self, X: Any) -> np.ndarray:
        return self.estimator_.decision_function(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(_scores(self.decision_function(X)) / self.temperature_, axis=1)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
