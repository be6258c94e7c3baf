"""A linear classifier (an SVM, or logistic regression) whose scores are turned
into probabilities by temperature scaling.

Per-class sigmoid calibration (CalibratedClassifierCV) can reorder classes and
cost accuracy; one temperature, fitted on out-of-fold scores, keeps the model's
ranking and only sharpens or softens the probabilities (Guo et al., 2017)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

# liblinear's stopping tolerance. Ten times scikit-learn's default stops the solver
# earlier with the same dev-set metrics to three decimals and about a fifth less
# training time (benchmarks/accuracy.py, benchmarks/train_scale.py).
SVM_TOL = 1e-3
LOSSES = ("squared_hinge", "log_loss")
# Passes of stochastic gradient descent over the rows (`sgd`), each a fixed cost: no
# stopping test, so that the time a large ledger takes is known before it starts.
SGD_EPOCHS = 10
# The hinge loss stands in for liblinear's squared hinge under SGD: with the squared
# one, a petition far on the wrong side takes a step that grows with its distance,
# and routing and risk held out did worse (benchmarks/train_scale.py).
SGD_LOSSES = {"squared_hinge": "hinge", "log_loss": "log_loss"}


def _scores(decision: np.ndarray) -> np.ndarray:
    # A binary linear model's decision_function is one column, scoring classes_[1].
    return np.column_stack([-decision / 2, decision / 2]) if decision.ndim == 1 else decision


Linear = LinearSVC | LogisticRegression | SGDClassifier


def _rows(X: Any, rows: np.ndarray) -> Any:
    """X[rows]; for a CSR matrix and a run of consecutive rows, a view of X's arrays
    rather than a copy. The training rows of a large ledger are all but its held-out
    tail (TriageModel puts them last), and copying them in every worker was much
    of training's peak memory."""
    if (sp.issparse(X) and X.format == "csr" and len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1
            and bool(np.all(np.diff(rows) == 1))):
        start, stop = int(rows[0]), int(rows[-1]) + 1
        first, last = X.indptr[start], X.indptr[stop]
        indptr = X.indptr[start:stop + 1]
        return sp.csr_matrix((X.data[first:last], X.indices[first:last], indptr - first if first else indptr),
                             shape=(stop - start, X.shape[1]), copy=False)
    return X[rows]


def _fit(linear: Linear, X: Any, y: np.ndarray, sample_weight: np.ndarray | None, capped: bool = False) -> Linear:
    # One BLAS thread, as in joblib's worker processes: lbfgs's sums then add up in
    # the same order whether the fit runs in a worker or here, so the weights are
    # the same to the last bit on one core or all.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        if capped:
            # A capped fit stops before liblinear's own criterion on purpose.
            warnings.simplefilter("ignore", ConvergenceWarning)
        return linear.fit(X, y, sample_weight=sample_weight)


def temperature_factor(proba: np.ndarray, encoded: np.ndarray) -> float:
    """How much to multiply a head's temperature by for its probabilities `proba` (rows
    of softmax outputs) to fit the labels `encoded` best in log loss.

    The log of a softmax output is the scaled score less a constant per row, so dividing
    it by the factor and taking the softmax again gives the probabilities that the
    temperature times the factor would have given: no scores are needed."""
    logits = np.log(np.clip(proba, 1e-300, None))

    def nll(log_k: float) -> float:
        return -float(log_softmax(logits / np.exp(log_k), axis=1)[np.arange(len(encoded)), encoded].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))


def retempered(proba: np.ndarray, factor: float) -> np.ndarray:
    """`proba` as the temperature times `factor` gives it (see temperature_factor)."""
    return softmax(np.log(np.clip(proba, 1e-300, None)) / factor, axis=1)


class TemperatureScaledLinear(ClassifierMixin, BaseEstimator):
    """`loss` chooses the linear model: "squared_hinge", liblinear's SVM (LinearSVC),
    or "log_loss", logistic regression (lbfgs). The log loss gives a mislabelled
    row a penalty that grows linearly, the squared hinge one that grows with the
    square; the high-risk head, whose labellers disagree most, ranks better with
    the log loss (docs/model.md, "Heads").

    `sample_weight` weighs rows in the linear model and in the temperature's fit alike.
    `n_jobs` fits the folds and the final model side by side in processes, so training
    uses every core. Not threads: liblinear draws from one random generator per
    process, and threads sharing it would make the fitted weights differ run to run.

    `groups` (one value per row, optional) keeps rows that share a value in one fold,
    so that no row is scored by a model that saw its sibling: petitions written from
    one scenario of the bundled corpus, or about one matter. Out-of-fold scores are
    then a fair estimate of text the model has not seen, and so are the temperature
    and the thresholds chosen from them. If the grouped folds would leave a label
    out of some fold's training rows, the folds are drawn ungrouped.

    `holdout` (row indices) replaces the folds for large training sets: one model is
    fitted on the other rows and kept, and the temperature is fitted on the held-out
    rows, the only ones with out-of-sample probabilities then (`oof_rows_`). With a
    few thousand held-out rows the temperature is as well determined as with folds,
    at a quarter of the fits.

    `sgd` (with `holdout` only) fits the same objective by stochastic gradient descent
    (SGDClassifier, `alpha` = 1 / (C x training rows)) in this process, on `X` itself:
    liblinear copies every row it trains on into its own format, which for a large
    ledger was most of training's peak memory, and the held-out rows are left out by a
    weight of zero rather than by a copy of the others. Its one-vs-rest binary fits run
    in `n_jobs` threads, which SGD's loop lets run side by side.

    Parameters
    ----------
    C : float, default=0.3
        Inverse regularisation strength.
    loss : {"squared_hinge", "log_loss"}, default="squared_hinge"
    folds : int, default=3
        Calibration folds (ignored with `holdout`).
    class_weight : {"balanced", None}, default="balanced"
    holdout : ndarray of int, optional
        Rows held out for the temperature instead of folds.
    tol : float
        Stopping tolerance of the solver.
    max_iter : int, optional
        Cap on the SVM solver's passes over the rows (liblinear's dual coordinate
        descent); None keeps scikit-learn's. Large training sets are fitted with a
        cap (`TriageModel`'s `large_max_iter`). The logistic regression keeps its own.
    sgd : bool, default=False
        Stochastic gradient descent instead (requires `holdout`; `max_iter` is then
        ignored: SGD_EPOCHS passes).
    n_jobs : int, optional
    random_state : int, default=0

    Attributes
    ----------
    estimator_ : LinearSVC or LogisticRegression
        The linear model fitted on all rows (all but the held-out ones).
    classes_ : ndarray
    temperature_ : float
        Divides the scores before the softmax.
    oof_proba_, oof_rows_ : ndarray
        Out-of-sample probabilities and the rows they belong to; `TriageModel.fit`
        reads them to choose thresholds and then deletes them.
    """

    def __init__(self, C: float = 0.3, loss: str = "squared_hinge", folds: int = 3,
                 class_weight: str | None = "balanced", holdout: np.ndarray | None = None, tol: float = SVM_TOL,
                 max_iter: int | None = None, sgd: bool = False, n_jobs: int | None = None,
                 random_state: int = 0) -> None:
        self.C = C
        self.loss = loss
        self.tol = tol
        self.max_iter = max_iter
        self.sgd = sgd
        self.folds = folds
        self.class_weight = class_weight
        self.holdout = holdout
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Heads pickled before the cap existed were fitted without one.
        state.setdefault("max_iter", None)
        state.setdefault("sgd", False)
        super().__setstate__(state)

    def _linear(self) -> Linear:
        if self.loss == "log_loss":
            # lbfgs is deterministic. It took 30 iterations on train.csv + corpus; the
            # cap, ten times scikit-learn's, is room for larger ledgers, not a setting.
            return LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=1000)
        capped = {} if self.max_iter is None else {"max_iter": self.max_iter}
        return LinearSVC(C=self.C, class_weight=self.class_weight, tol=self.tol, random_state=self.random_state, **capped)

    def _folds(self, X: Any, y: np.ndarray, groups: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        if groups is not None:
            splits = list(StratifiedGroupKFold(self.folds, shuffle=True, random_state=self.random_state)
                          .split(X, y, groups))
            if all(len(np.unique(y[train])) == len(self.classes_) for train, _ in splits):
                return splits
        return list(StratifiedKFold(self.folds, shuffle=True, random_state=self.random_state).split(X, y))

    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> TemperatureScaledLinear:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        y = np.asarray(y)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if self.sgd:
            if self.holdout is None:
                raise ValueError("sgd=True needs a holdout: it replaces the folds' fits for large training sets")
            return self._fit_sgd(X, y, encoded, weight)
        if self.holdout is None:
            splits = self._folds(X, y, None if groups is None else np.asarray(groups))
            refit = [(X, y, weight)]
            self.oof_rows_ = np.arange(len(y))
        else:
            test = np.asarray(self.holdout)
            splits = [(np.setdiff1d(np.arange(len(y)), test), test)]
            refit = []
            self.oof_rows_ = test
        subsets = [(_rows(X, train), y[train], None if weight is None else weight[train]) for train, _ in splits]
        capped = self.max_iter is not None
        fitted = Parallel(n_jobs=self.n_jobs)(delayed(_fit)(self._linear(), *subset, capped=capped)
                                              for subset in [*subsets, *refit])
        self.estimator_ = fitted[-1]
        if not np.array_equal(self.estimator_.classes_, self.classes_):
            missing = sorted(set(self.classes_) - set(self.estimator_.classes_))
            raise ValueError(f"labels {missing} occur only in the held-out rows; every label needs training rows")
        oof = np.zeros((len(y), len(self.classes_) if len(self.classes_) > 2 else 2))
        for linear, (_, test) in zip(fitted[: len(splits)], splits, strict=True):
            oof[test] = _scores(linear.decision_function(_rows(X, test)))
        self._fit_temperature(oof[self.oof_rows_], encoded[self.oof_rows_],
                              np.ones(len(self.oof_rows_)) if weight is None else weight[self.oof_rows_])
        return self

    def _fit_sgd(self, X: Any, y: np.ndarray, encoded: np.ndarray, weight: np.ndarray | None) -> TemperatureScaledLinear:
        test = np.asarray(self.holdout)
        train = np.ones(len(y), bool)
        train[test] = False
        # The held-out rows stay in X with a weight of zero (no copy of the rows); the
        # class weights are counted on the training rows alone, as a fit on them would.
        row_weight = np.ones(len(y)) if weight is None else weight.copy()
        row_weight[test] = 0.0
        class_weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(encoded[train], minlength=len(self.classes_))
            if (counts == 0).any():
                missing = sorted(str(c) for c in self.classes_[counts == 0])
                raise ValueError(f"labels {missing} occur only in the held-out rows; every label needs training rows")
            class_weight = dict(zip(self.classes_.tolist(), (train.sum() / (len(counts) * counts)).tolist(), strict=True))
        linear = SGDClassifier(loss=SGD_LOSSES[self.loss], alpha=1.0 / (self.C * train.sum()), class_weight=class_weight,
                               max_iter=SGD_EPOCHS, tol=None, random_state=self.random_state, n_jobs=self.n_jobs)
        with threadpool_limits(limits=1), warnings.catch_warnings():
            # A fixed number of passes, on purpose.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.estimator_ = linear.fit(X, y, sample_weight=row_weight)
        self.oof_rows_ = test
        oof = _scores(self.decision_function(X[test]))
        self._fit_temperature(oof, encoded[test], np.ones(len(test)) if weight is None else weight[test])
        return self

    def _fit_temperature(self, oof: np.ndarray, encoded: np.ndarray, row_weight: np.ndarray) -> None:
        def nll(log_t: float) -> float:
            log_p = log_softmax(oof / np.exp(log_t), axis=1)[np.arange(len(encoded)), encoded]
            return -float(np.average(log_p, weights=row_weight))

        self.temperature_ = float(np.exp(minimize_scalar(nll, bounds=(-5, 3), method="bounded").x))
        # Out-of-fold probabilities: what the model says of each training row (each row of
        # `oof_rows_`) without having seen it. Training uses them to choose thresholds,
        # then drops them.
        self.oof_proba_ = softmax(oof / self.temperature_, axis=1)

    @property
    def coef_(self) -> np.ndarray:
        return self.estimator_.coef_

    def decision_function(self, X: Any) -> np.ndarray:
        # The linear model's decision_function, without its per-call input validation (TriageModel
        # validates at its boundary and builds X itself): that was a third of a petition's time.
        linear = self.estimator_
        scores = np.asarray(X @ linear.coef_.T) + linear.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(_scores(self.decision_function(X)) / self.temperature_, axis=1)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


# Artifacts pickled before the logistic option name the class by its old name;
# they predict as before, so they keep loading.
TemperatureScaledSVC = TemperatureScaledLinear
