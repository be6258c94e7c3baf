"""TriageModel: one estimator, three calibrated heads, auditable rules on top."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, parallel_config
from sklearn.base import BaseEstimator

from model.calibration import TemperatureScaledLinear, retempered, temperature_factor
from model.encoder import EMBEDDING_SCALE, ENCODER_C, TextEncoder
from model.explain import explain_head
from model.features import KeywordFeatures, build_features, rule_feature_names, rule_matrix
from model.taxonomy import HEADS, HIGH_HEAD, RISK_ORDER, Rule, Taxonomy
from model.text import NUMBER_VIEWS, feature_view, normalize
from model.thresholds import DEFAULT_THRESHOLDS, choose_thresholds

# How much each head leans on the taxonomy's keyword and rule columns relative to
# the TF-IDF text features. Division routing is better with the lists as a light
# hint, risk needs the rule indicators at full strength (docs/model.md, "Heads").
DEFAULT_KEYWORD_WEIGHTS = {"division": 0.15, "risk": 1.0, "key_group": 1.0, "risk_high": 1.0}
# The high-risk head is a logistic regression, the others are SVMs: cross-validated,
# it finds as many high-risk petitions with fewer flagged, as its loss grows only
# linearly on the petitions labellers disagree about; the three-way risk and the
# key-group heads did worse as logistic regressions (docs/model.md, "Heads").
DEFAULT_HEAD_LOSSES = {"division": "squared_hinge", "risk": "squared_hinge", "key_group": "squared_hinge",
                       "risk_high": "log_loss"}
# Classes weighted to balance, except in the high-risk head. Balanced, its few real
# high-risk petitions and the many generated ones, which state their risk plainly,
# outweigh the real medium-risk petitions that share their words; unweighted, it ranks
# real high-risk petitions better with every draw of the folds (docs/model.md).
DEFAULT_HEAD_CLASS_WEIGHTS: dict[str, str | None] = {
    "division": "balanced", "risk": "balanced", "key_group": "balanced", "risk_high": None}
# Only routing reads the closing request a second time: it sharpens the division
# but blurs the three-way risk head (docs/model.md, "Features").
ASK_HEADS = frozenset({"division"})
# Above this many petitions, calibration and thresholds use one held-out sample of
# HOLDOUT_ROWS instead of folds, and each head is fitted once: a quarter of the
# fits (benchmarks/train_scale.py).
HOLDOUT_ABOVE = 20_000
HOLDOUT_ROWS = 5_000
# In that regime each SVM head also stops after this many passes of its solver: on
# real-length text the passes liblinear needs grow with the rows, and a capped fit
# predicted the same labels as the converged one for nearly every held-out
# petition, in a fraction of the time (benchmarks/train_scale.py).
LARGE_MAX_ITER = 30
# In that regime the heads are fitted in this process, on the one matrix, one at a
# time: liblinear's own copy of the rows in each head-fitting process was most of
# the peak memory, and two heads side by side held two heads' copies. The three-way
# risk and the high-risk heads are fitted by stochastic gradient descent, which
# reads the matrix in place (model.calibration, `sgd`); held out, they decided as
# the liblinear and lbfgs ones did. Routing and the key group are not: SGD lost
# most of their rare labels' F1, so they stay liblinear's,
# on every row of their other labels and a draw of their most common one, at most
# LARGE_SVM_ROWS rows, so that the copy liblinear makes stays small
# (benchmarks/train_scale.py).
LARGE_SGD_HEADS = frozenset({"risk", "risk_high"})
LARGE_SVM_ROWS = 40_000
MIN_ROWS_PER_LABEL_FOR_HOLDOUT = 10
# What a rule's firing is worth when the held-out data never saw it fire.
DEFAULT_RULE_PRECISION = 0.5
# A petition with fewer letters, digits and characters than this (long numbers not
# counted) needs review whatever its confidence. Each feature row is normalised, so two
# characters weigh as much as a page and can carry a near-certain probability, while the
# probabilities were calibrated on petitions longer than this: none of the labelled real
# ones is shorter, and about one unlabelled real message in a thousand.
MIN_CONTENT_CHARS = 20
# The optional encoder is asked for routing below this top division probability: where
# routing is unsure, so that a petition it is sure of keeps its milliseconds.
ENCODER_BELOW = 0.8
_CONTENT_CHAR = re.compile(r"[^\W_]")


def too_short(view: str) -> bool:
    """Whether a petition's feature view holds too little to route it without a person."""
    return len(_CONTENT_CHAR.findall(view)) < MIN_CONTENT_CHARS


class Decision(TypedDict):
    """What the model suggests for one petition: the contract between the model and the
    CLI, the service and the benchmarks."""

    division: str
    division_confidence: float
    division_top3: list[tuple[str, float]]  # (code, probability), most probable first
    division_threshold: float  # below it, needs_review
    risk: str
    risk_confidence: float
    key_group: str
    key_group_confidence: float
    needs_review: bool
    rules: list[str]  # ids of every rule that fired
    key_group_rule: str | None  # the rule that named the key group, if one did


class Suggestion(Decision):
    """A decision with, per head, the words and rules that drove it (offsets into the text)."""

    explanation: dict[str, dict[str, Any]]


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
              holdout: np.ndarray | None, n_jobs: int | None, random_state: int, max_iter: int | None = None,
              sgd: bool = False, max_rows: int | None = None) -> tuple[TemperatureScaledLinear, np.ndarray, list[str]]:
    """One head fitted on the columns scaled for it, its out-of-sample probabilities
    (NaN for rows without any: those outside the holdout, or of weight 0), and the
    labels left out. With `holdout` and `max_rows`, it trains on at most `max_rows`
    rows (`_training_rows`)."""
    counted = np.ones(len(y), bool) if weight is None else weight > 0
    values, counts = np.unique(y[counted], return_counts=True)
    # A label seen once cannot be both learned and calibrated; it is left out
    # of this head (and reported) rather than failing the whole training run.
    single = sorted(str(v) for v, c in zip(values, counts, strict=True) if c < 2)
    kept = np.flatnonzero(~np.isin(y, single) & counted)
    if len(values) - len(single) < 2:
        raise ModelInputError(
            f"{head}: need at least two labels with 2+ examples each, got {({str(v): int(c) for v, c in zip(values, counts, strict=True)})}")
    if holdout is not None and not sgd:
        kept, weight = _training_rows(kept, holdout, y, weight, max_rows, class_weight, random_state)
    in_order = len(kept) == len(y) and bool(np.all(kept == np.arange(len(y))))
    split = None
    if holdout is not None:  # held-out rows never carry a left-out label (TriageModel._holdout_rows)
        position = np.full(len(y), -1)
        position[kept] = np.arange(len(kept))
        split = position[holdout]
    if holdout is None:
        scaled = matrix @ sp.diags(scaling, format="csr")
        if not in_order:  # a row copy of the whole matrix, only when some rows are left out
            scaled = scaled[kept]
    else:
        # A large ledger: a scaled copy of the values alone, the column indices shared
        # with the matrix (its ask columns stay as stored zeros for the heads that do not
        # read them); its rows copied first when it trains on some of them only, or in
        # another order. liblinear reads double precision, SGD the matrix's own.
        rows = matrix if in_order else matrix[kept]
        values = scaling.astype(rows.dtype if sgd else np.float64).take(rows.indices)
        values *= rows.data
        scaled = sp.csr_matrix((values, rows.indices, rows.indptr), shape=rows.shape, copy=False)
        del values, rows
    if not in_order:
        y_kept, weight = y[kept], None if weight is None else weight[kept]
        groups = None if groups is None else groups[kept]
    else:
        y_kept = y
    head_model = TemperatureScaledLinear(
        C=C, loss=loss, class_weight=class_weight, folds=int(min(folds, counts[counts >= 2].min())), holdout=split,
        max_iter=max_iter, sgd=sgd, n_jobs=n_jobs, random_state=random_state).fit(scaled, y_kept, sample_weight=weight, groups=groups)
    # Learned on the scaled columns, the weights are folded back: w·(x∘s) = (w∘s)·x,
    # so every head then reads the one shared matrix, unscaled.
    head_model.estimator_.coef_ = head_model.estimator_.coef_ * scaling
    oof = np.full((len(y), head_model.oof_proba_.shape[1]), np.nan)
    oof[kept[head_model.oof_rows_]] = head_model.oof_proba_
    del head_model.oof_proba_, head_model.oof_rows_
    if single and holdout is None:  # rows of a left-out label only have the in-sample view
        left = np.flatnonzero(np.isin(y, single) & counted)
        oof[left] = head_model.predict_proba(matrix[left])
    return head_model, oof, single


def _training_rows(kept: np.ndarray, holdout: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
                   max_rows: int | None, class_weight: str | None, random_state: int,
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows a liblinear head of a large ledger reads, training rows first and the
    held-out ones last (so that it trains on a view of them), and their weights.

    With more than `max_rows` training rows, it trains on every row of its other labels
    and a draw of its most common label's, weighted so that the draw stands for all of
    them: the objective is the one of every row, in expectation, at the cost of liblinear's
    copy of the rows drawn."""
    held = np.zeros(len(y), bool)
    held[holdout] = True
    train = kept[~held[kept]]
    if max_rows is not None and len(train) > max_rows:
        labels, counts = np.unique(y[train], return_counts=True)
        common = train[y[train] == labels[counts.argmax()]]
        others = train[y[train] != labels[counts.argmax()]]
        size = max(max_rows - len(others), max_rows // 4)
        if size < len(common):
            drawn = np.sort(np.random.default_rng(random_state).choice(common, size=size, replace=False))
            weight = np.ones(len(y)) if weight is None else weight.astype(np.float64, copy=True)
            if class_weight == "balanced":
                # Balanced class weights already give the drawn label its share; every row
                # is then weighted as in the whole set, by the rows over those kept.
                weight *= len(train) / (len(others) + size)
            else:
                weight[drawn] *= len(common) / size
            train = np.sort(np.concatenate([others, drawn]))
    return np.concatenate([train, kept[held[kept]]]), weight


# Rows of the matrix copied at a time into the file the head-fitting processes map.
FILE_CHUNK_ROWS = 10_000


def _csr_in_file(matrix: sp.csr_matrix, order: np.ndarray, folder: Path) -> sp.csr_matrix:
    """matrix[order], its arrays memory-mapped from files in `folder`, written a block
    of rows at a time so that no second whole copy is ever in memory."""
    indptr = np.zeros(len(order) + 1, matrix.indptr.dtype)
    np.cumsum(np.diff(matrix.indptr)[order], out=indptr[1:])
    data = np.memmap(folder / "data", dtype=matrix.data.dtype, mode="w+", shape=(max(int(indptr[-1]), 1),))
    indices = np.memmap(folder / "indices", dtype=matrix.indices.dtype, mode="w+", shape=(max(int(indptr[-1]), 1),))
    for start in range(0, len(order), FILE_CHUNK_ROWS):
        part = matrix[order[start:start + FILE_CHUNK_ROWS]]
        first = indptr[start]
        data[first:first + part.nnz] = part.data
        indices[first:first + part.nnz] = part.indices
    data.flush()
    indices.flush()
    nnz = int(indptr[-1])
    return sp.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=matrix.shape, copy=False)


# Rows of a large ledger's feature blocks stacked side by side at a time.
STACK_CHUNK_ROWS = 5_000


def _stack_columns(columns: list[list[sp.csr_matrix]], factors: list[float | None]) -> sp.csr_matrix:
    """sp.hstack of the column blocks, each given as its consecutive blocks of rows and
    multiplied by its factor (None: 1), in single precision. The matrix's arrays are
    reserved at once and filled a few rows at a time, and the row blocks are let go
    as they are copied, so the blocks and the matrix are never in memory together
    in whole."""
    n_rows = sum(part.shape[0] for part in columns[0])
    widths = [parts[0].shape[1] for parts in columns]
    row_nnz = np.zeros(n_rows, np.int64)
    for parts in columns:
        row_nnz += np.concatenate([np.diff(part.indptr) for part in parts])
    indptr = np.concatenate([[0], np.cumsum(row_nnz)])
    index_type = np.int32 if max(indptr[-1], sum(widths)) <= np.iinfo(np.int32).max else np.int64
    data, indices = np.empty(indptr[-1], np.float32), np.empty(indptr[-1], index_type)
    # Every row block of every column block starts at one of these rows.
    starts = set(range(0, n_rows, STACK_CHUNK_ROWS))
    for parts in columns:
        starts.update(np.cumsum([0] + [part.shape[0] for part in parts[:-1]]).tolist())
    bounds = [*sorted(starts), n_rows]
    first = [0] * len(columns)  # the row each column block's first part starts at
    for start, stop in itertools.pairwise(bounds):
        pieces = []
        for g, parts in enumerate(columns):
            while first[g] + parts[0].shape[0] <= start:
                first[g] += parts.pop(0).shape[0]
            piece = _row_slice(parts[0], start - first[g], stop - first[g])
            if factors[g] is not None:
                piece = piece * factors[g]
            pieces.append(piece.astype(np.float32, copy=False))
        chunk = sp.hstack(pieces, format="csr")
        data[indptr[start]:indptr[stop]] = chunk.data
        indices[indptr[start]:indptr[stop]] = chunk.indices
    columns.clear()
    return sp.csr_matrix((data, indices, indptr.astype(index_type)), shape=(n_rows, sum(widths)), copy=False)


def _row_slice(matrix: sp.csr_matrix, start: int, stop: int) -> sp.csr_matrix:
    """matrix[start:stop] of a CSR matrix, as a view of its arrays."""
    first, last = matrix.indptr[start], matrix.indptr[stop]
    return sp.csr_matrix((matrix.data[first:last], matrix.indices[first:last], matrix.indptr[start:stop + 1] - first),
                         shape=(stop - start, matrix.shape[1]), copy=False)


# glibc's mallopt parameter: allocations from this size up get their own mapping.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_DEFAULT = 128 * 1024


def _map_large_arrays(large: bool) -> None:
    """With `large`, have glibc's malloc give every array of a megabyte or more its own
    mapping, handed back to the system when the array is freed (False: its default
    threshold again; elsewhere than glibc, nothing). By default the threshold rises to
    the size of the arrays freed, and a large ledger's blocks, freed, then stayed
    counted in the process's memory, scattered among arrays still in use."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 2**20 if large else _MMAP_THRESHOLD_DEFAULT)


def _give_back_freed_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc's malloc_trim; elsewhere
    nothing). The vectorizers' working arrays, freed, otherwise stay counted in the
    process's memory through the heads' fits, where they are not reused."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _in_order(rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows given in `order` put back in the order of the ledger."""
    back = np.empty_like(rows)
    back[order] = rows
    return back


class TriageModel(BaseEstimator):
    """Predicts division, risk and key group for petition texts, with thresholds.

    Like scikit-learn's `TunedThresholdClassifierCV`, `fit` returns a finished
    model: the heads are calibrated and the decision thresholds chosen on
    out-of-sample scores of the training petitions.

    Parameters
    ----------
    taxonomy : Taxonomy
        Codes, keyword lists and rules (`data/taxonomy.toml`).
    C : float, default=0.3
        Inverse regularisation strength of every linear head.
    max_char_features : int, default=150_000
        Cap on the character n-gram vocabulary.
    calibration_folds : int, default=3
        Folds whose out-of-fold scores fit the temperatures and the thresholds.
    holdout_above, holdout_rows : int
        Above `holdout_above` petitions, one held-out sample of `holdout_rows`
        replaces the folds.
    large_max_iter : int, optional
        Above `holdout_above` petitions, the cap on each SVM head's solver passes
        (None: no cap). Smaller ledgers are always fitted to convergence.
    large_in_process : bool, default=True
        Above `holdout_above` petitions, fit the heads in this process on single-precision
        values, the LARGE_SGD_HEADS by stochastic gradient descent and the others by
        liblinear on at most `large_svm_rows` rows; False: every head by liblinear (or
        lbfgs) on every row, in worker processes.
    large_svm_rows : int, optional
        See `large_in_process` (None: every row).
    keyword_weights, head_losses, head_class_weights : dict, optional
        Per head, overrides of DEFAULT_KEYWORD_WEIGHTS, DEFAULT_HEAD_LOSSES and
        DEFAULT_HEAD_CLASS_WEIGHTS.
    ask_weight : float, default=0.5
        Weight of the closing-request view (division head only).
    key_group_rules_alone : bool, default=False
        Whether a key-group rule decides without the head's agreement.
    numbers : {"digits", "long_blank", "placeholders"}, default="long_blank"
        How the word and character features read numbers (`model.text.feature_view`):
        by default phone, ID and card numbers and masks are blanks, so that a
        petitioner's contact details cannot route the petition.
    min_threshold_rows : int, default=200
        The fewest `threshold_rows` with out-of-sample scores for thresholds to be
        chosen on them alone.
    temperature_on_threshold_rows : bool, default=True
        Whether the heads' temperatures are fitted again on the out-of-sample scores of
        the rows the thresholds are chosen on (the real petitions, scored by models that
        never saw their board), so that the probabilities shown hold where the
        thresholds must; False: on every scored row, generated petitions included.
    min_high_cut : float, default=0.0
        The lowest p(high) cut allowed.
    fill_high_budget : bool, default=True
        See `model.thresholds.high_risk_threshold`.
    encoder : TextEncoder, optional
        A pretrained sentence encoder (the optional extra, `model.encoder`). With one,
        logistic regressions on its embeddings are fitted beside the division and the
        key-group heads, with out-of-fold scores like the other heads, and their
        probabilities are averaged into those heads' where the encoder is asked (it
        costs far more than the rest of a suggestion); the thresholds are chosen on the
        averaged probabilities. None: n-grams only.
    encoder_weight : float, default=0.5
        The encoder heads' share of that average.
    encoder_below : float or None, default=0.8
        Routing asks the encoder where the top division probability is below this
        (None: for every petition). Asking it more often also ranks the confident
        petitions better, for more cost in service (docs/model.md).
    encoder_key_group_above : float or None, default=0.05
        The key group asks it where the probability of some key group is at least this
        (0: for every petition; None: the key group does not ask it).
    n_jobs : int, optional
        Parallel fits (joblib).
    random_state : int, default=0
        Draws the calibration folds and the held-out sample.

    Attributes
    ----------
    features_ : FeatureUnion
        The fitted text features.
    feature_names_ : ndarray of str
        Names of the feature columns, rule columns last.
    heads_ : dict of str to TemperatureScaledLinear
        The calibrated heads, `risk_high` included when there were high-risk petitions.
    encoder_heads_ : dict of str to TemperatureScaledLinear
        The heads on the encoder's embeddings ("division", "key_group"), when there is an `encoder`.
    classes_ : dict of str to list of str
        Class order of each head's probabilities.
    skipped_labels_ : dict of str to list of str
        Labels seen once, left out of a head.
    thresholds_ : dict
        Per-division review cuts, the p(high) cut, the key-group cut and the
        low/medium shift.
    rule_precision_ : dict of str to float
        Each rule's precision on the held-out petitions.
    heldout_rows_ : ndarray of int
        The training rows the thresholds were chosen on.
    heldout_decisions_ : list of dict
        The decisions the finished model makes for those rows from their
        out-of-sample scores: what training reports as held-out metrics.
    heldout_scope_ : str
        "out-of-fold", or "held-out sample of N" for a large ledger.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        C: float = 0.3,
        max_char_features: int = 150_000,
        calibration_folds: int = 3,
        holdout_above: int | None = HOLDOUT_ABOVE,
        holdout_rows: int = HOLDOUT_ROWS,
        large_max_iter: int | None = LARGE_MAX_ITER,
        large_in_process: bool = True,
        large_svm_rows: int | None = LARGE_SVM_ROWS,
        keyword_weights: dict[str, float] | None = None,
        head_losses: dict[str, str] | None = None,
        head_class_weights: dict[str, str | None] | None = None,
        ask_weight: float = 0.5,
        key_group_rules_alone: bool = False,
        numbers: str = "long_blank",
        min_threshold_rows: int = 200,
        temperature_on_threshold_rows: bool = True,
        min_high_cut: float = 0.0,
        fill_high_budget: bool = True,
        encoder: TextEncoder | None = None,
        encoder_weight: float = 0.5,
        encoder_below: float | None = ENCODER_BELOW,
        encoder_key_group_above: float | None = 0.05,
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
        self.numbers = numbers
        self.min_threshold_rows = min_threshold_rows
        self.temperature_on_threshold_rows = temperature_on_threshold_rows
        self.min_high_cut = min_high_cut
        self.fill_high_budget = fill_high_budget
        self.encoder = encoder
        self.encoder_weight = encoder_weight
        self.encoder_below = encoder_below
        self.encoder_key_group_above = encoder_key_group_above
        self.C = C
        self.max_char_features = max_char_features
        self.calibration_folds = calibration_folds
        self.holdout_above = holdout_above
        self.holdout_rows = holdout_rows
        self.large_max_iter = large_max_iter
        self.large_in_process = large_in_process
        self.large_svm_rows = large_svm_rows
        self.random_state = random_state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # An artifact pickled before `key_group_rules_alone` existed let the rules decide
        # alone and chose its key-group cut that way; it keeps deciding as it was trained.
        state.setdefault("key_group_rules_alone", True)
        # Before `head_class_weights`, every head weighted its classes to balance.
        state.setdefault("head_class_weights", dict.fromkeys(DEFAULT_HEAD_CLASS_WEIGHTS, "balanced"))
        # Before `numbers`, the features read numbers as written.
        state.setdefault("numbers", "digits")
        # Thresholds were chosen by the training code before fit chose them.
        state.setdefault("min_threshold_rows", 200)
        # Fitted before this existed: temperatures from every scored row.
        state.setdefault("temperature_on_threshold_rows", False)
        state.setdefault("min_high_cut", 0.0)
        state.setdefault("fill_high_budget", True)
        state.setdefault("large_max_iter", None)
        state.setdefault("large_in_process", False)
        state.setdefault("large_svm_rows", None)
        state.setdefault("encoder", None)
        state.setdefault("encoder_weight", 0.5)
        state.setdefault("encoder_below", ENCODER_BELOW)
        state.setdefault("encoder_key_group_above", None)
        state.setdefault("encoder_heads_", {})
        super().__setstate__(state)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Sequence[str], y: Any, sample_weight: Any = None, groups: Any = None,
            threshold_rows: Any = None) -> TriageModel:
        """Fit the heads, calibrate them and choose the decision thresholds.

        Parameters
        ----------
        X : sequence of str
            Texts made by `model.text.join_fields(title, body)`.
        y : DataFrame or array of shape (n, 3)
            The columns division, risk and key_group, as codes of `taxonomy`.
        sample_weight : array of shape (n,), or dict of head to such arrays, optional
            Weight of each petition, for every head or per head (a head not named
            weighs every petition 1; `risk_high` follows `risk`). A petition of
            weight 0 is left out of that head: self-training labels petitions for
            routing only.
        groups : array of shape (n,), optional
            Petitions that share a value stay in one calibration fold (and are held
            out together from a large ledger), so none is scored by a model that saw
            its sibling or, when the values are boards, its board.
        threshold_rows : bool array of shape (n,), optional
            The petitions that stand for real intake: thresholds are chosen on their
            out-of-sample scores when at least `min_threshold_rows` of them have one,
            else on every scored petition.

        Returns
        -------
        self : TriageModel
            Fitted, with its thresholds: ready to `predict`.
        """
        texts = self._check_texts(X)
        labels = _as_labels(y)
        head_weights = self._head_weights(sample_weight, len(texts))
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
        if self.numbers not in NUMBER_VIEWS:
            raise ModelInputError(f"numbers must be one of {NUMBER_VIEWS}, got {self.numbers!r}")
        if self.encoder is not None:
            if not isinstance(self.encoder, TextEncoder):
                raise ModelInputError(f"encoder must be a model.encoder.TextEncoder, got {type(self.encoder).__name__}")
            if not 0 < self.encoder_weight <= 1:
                raise ModelInputError(f"encoder_weight must be in (0, 1], got {self.encoder_weight!r}")
            if self.encoder_below is not None and not 0 < self.encoder_below <= 1:
                raise ModelInputError(f"encoder_below must be in (0, 1] or None, got {self.encoder_below!r}")
            if self.encoder_key_group_above is not None and not 0 <= self.encoder_key_group_above < 1:
                raise ModelInputError(
                    f"encoder_key_group_above must be in [0, 1) or None, got {self.encoder_key_group_above!r}")
            self.encoder.package_version()  # refused now, before the features, if it is not installed
        raw_texts = texts
        texts = [normalize(t) for t in texts]
        hits = [self._hits(t) for t in texts]
        labels[HIGH_HEAD] = np.where(labels["risk"] == "high", "high", "other")
        risk_weight = head_weights["risk"]
        high = (labels["risk"] == "high") & (True if risk_weight is None else risk_weight > 0)
        heads = HEADS + ((HIGH_HEAD,) if high.sum() >= 2 else ())
        head_weights[HIGH_HEAD] = head_weights["risk"]
        holdout = self._holdout_rows(labels, groups, head_weights)
        in_process = holdout is not None and self.large_in_process
        if in_process:
            _map_large_arrays(True)
        # Word and character vectorizers fit side by side in threads: the character one
        # spends its time in numpy, which lets go of the GIL, and a process would send its
        # whole matrix back pickled, which took longer than the fit it saved
        # (benchmarks/train_scale.py). Afterwards the union transforms in one thread, as
        # one petition is not worth dispatching.
        self.features_ = build_features(self.taxonomy, self.max_char_features, self.ask_weight).set_params(n_jobs=self.n_jobs)
        if in_process:
            matrix = self._fit_features_compact([self.feature_view(t) for t in texts], hits)
        else:
            with parallel_config(backend="threading"):
                features = self.features_.fit_transform([self.feature_view(t) for t in texts])
            matrix = sp.hstack([features, rule_matrix(hits, self.taxonomy.rules)], format="csr")
            del features
        self.features_.set_params(n_jobs=None)
        self.feature_names_ = np.concatenate([
            self.features_.get_feature_names_out(), rule_feature_names(self.taxonomy.rules)]).astype(object)
        weights = {**DEFAULT_KEYWORD_WEIGHTS, **(self.keyword_weights or {})}
        block = np.asarray([name.partition("__")[0] for name in self.feature_names_], dtype=object)
        if not (block == "word").any():
            raise ModelInputError(f"cannot learn from these {len(texts)} petitions: too few, or too little text "
                                  "shared between them (no word appears in two of them)")
        scored = np.arange(len(texts)) if holdout is None else holdout
        scalings = {}
        for head in heads:
            scalings[head] = np.ones(matrix.shape[1])
            scalings[head][block == "keywords"] = weights[head]
            scalings[head][block == "ask"] = 1.0 if head in ASK_HEADS else 0.0
        losses = {**DEFAULT_HEAD_LOSSES, **(self.head_losses or {})}
        params = {"C": self.C, "folds": self.calibration_folds, "holdout": holdout, "random_state": self.random_state,
                  "max_iter": None if holdout is None else self.large_max_iter}
        if holdout is None:  # each head's folds side by side
            fitted = [_fit_head(head, matrix, scalings[head], labels[head], head_weights[head], groups, loss=losses[head],
                                class_weight=class_weights[head], n_jobs=self.n_jobs, **params)
                      for head in heads]
        elif in_process:
            threads = 1 if self.n_jobs in (None, 1) else 2

            def fit(head: str) -> tuple[TemperatureScaledLinear, np.ndarray, list[str]]:
                sgd = head in LARGE_SGD_HEADS
                return _fit_head(head, matrix, scalings[head], labels[head], head_weights[head], None,
                                 loss=losses[head], class_weight=class_weights[head], n_jobs=threads if sgd else None,
                                 sgd=sgd,
                                 max_rows=self.large_svm_rows, **{**params, "max_iter": None if sgd else params["max_iter"]})

            # One head at a time: fitted side by side, liblinear's copy of its rows and the
            # scaled values of a head fitted by SGD were in memory together, the peak of the
            # fit. SGD's one-vs-rest fits use the two threads instead (each seeds its own).
            fitted = [fit(head) for head in heads]
            del matrix
            _map_large_arrays(False)
        else:  # one fit per head: the heads side by side
            # The held-out rows moved to the end, so that each head trains on a view of
            # the rows before them, not a copy of nearly the whole matrix.
            order = np.concatenate([np.setdiff1d(np.arange(len(texts)), holdout), holdout])
            params["holdout"] = np.arange(len(texts) - len(holdout), len(texts))
            with tempfile.TemporaryDirectory(prefix="triage-fit-") as folder:
                # In a file the worker processes map, not in this process's memory: one copy
                # of the matrix for all of them, where joblib would add its own beside ours.
                matrix = _csr_in_file(matrix, order, Path(folder))
                fitted = Parallel(n_jobs=self.n_jobs)(
                    delayed(_fit_head)(head, matrix, scalings[head], labels[head][order],
                                       None if head_weights[head] is None else head_weights[head][order], None,
                                       loss=losses[head], class_weight=class_weights[head], n_jobs=None, **params)
                    for head in heads)
                del matrix
            fitted = [(model, _in_order(oof, order), skipped) for model, oof, skipped in fitted]
        self.heads_ = {head: model for head, (model, _, _) in zip(heads, fitted, strict=True)}
        self.skipped_labels_ = {head: skipped for head, (_, _, skipped) in zip(heads, fitted, strict=True)}
        self.classes_ = {head: list(self.heads_[head].classes_) for head in self.heads_}
        oof = {head: oof for head, (_, oof, _) in zip(heads, fitted, strict=True)}
        del fitted
        rows = self._threshold_rows(scored, oof, threshold_rows)
        if self.temperature_on_threshold_rows:
            self._temper_on(rows, oof, labels)
        self.encoder_heads_ = {}
        if self.encoder is not None:
            embedded = sp.csr_matrix(self.encoder.embed(raw_texts) * EMBEDDING_SCALE)
            encoded = ["division"]
            if self.encoder_key_group_above is not None and "none" in self.classes_["key_group"]:
                encoded.append("key_group")
            for head in encoded:
                model, encoded_oof, _ = _fit_head(
                    head, embedded, np.ones(embedded.shape[1]), labels[head], head_weights[head],
                    groups if holdout is None else None, C=ENCODER_C, loss="log_loss", class_weight=class_weights[head],
                    folds=self.calibration_folds, holdout=holdout, n_jobs=self.n_jobs, random_state=self.random_state)
                if list(model.classes_) != self.classes_[head]:  # the same labels left out
                    raise AssertionError(f"the encoder's {head} head has other labels than the {head} head")
                self.encoder_heads_[head] = model
                oof[head] = self._with_encoder(head, oof[head], encoded_oof, self._asks(head, oof[head]))
        self._choose_thresholds(scored, rows, oof, hits, labels)
        return self

    def _asks(self, head: str, proba: np.ndarray) -> np.ndarray:
        """Rows for which `head` asks the encoder, from that head's own probabilities."""
        if head == "division":
            if self.encoder_below is None:
                return np.ones(len(proba), bool)
            return ~(proba.max(axis=1) >= self.encoder_below)
        some_group = 1.0 - proba[:, self.classes_["key_group"].index("none")]
        return some_group >= self.encoder_key_group_above

    def asks_encoder(self, proba: dict[str, np.ndarray]) -> np.ndarray:
        """Rows for which the encoder is asked, given the heads' own probabilities
        (`predict_proba` without the encoder heads); all False without an encoder."""
        asked = np.zeros(len(proba["division"]), bool)
        for head in self.encoder_heads_:
            asked |= self._asks(head, proba[head])
        return asked

    def _with_encoder(self, head: str, proba: np.ndarray, encoded: np.ndarray, asked: np.ndarray) -> np.ndarray:
        """`head`'s probabilities averaged with its encoder head's on the `asked` rows."""
        out = proba.copy()
        out[asked] = (1 - self.encoder_weight) * proba[asked] + self.encoder_weight * encoded[asked]
        return out

    def _two_threads(self) -> ThreadPoolExecutor:
        """The pool a large ledger's fit runs two things side by side in: one thread when
        `n_jobs` asks for no parallelism."""
        return ThreadPoolExecutor(max_workers=1 if self.n_jobs in (None, 1) else 2)

    def _fit_features_compact(self, viewed: list[str], hits: list[list[tuple[Rule, Any]]]) -> sp.csr_matrix:
        """What FeatureUnion.fit_transform and the rule columns give, in single precision
        (the vectorizers compute in it; only the keyword and rule columns widened the
        union's matrix to double), stacked once, a block of rows at a time: for a large
        ledger, the union's double-precision copy beside the blocks, and then one with
        the rule columns, were most of the peak of its fit."""
        weights = self.features_.transformer_weights or {}

        def fit_block(transformer: Any) -> list[sp.csr_matrix]:
            if hasattr(transformer, "fit_transform_blocks"):
                return transformer.fit_transform_blocks(viewed)
            return [transformer.fit_transform(viewed)]

        named = [(name, t) for name, t in self.features_.transformer_list if t != "drop"]
        with self._two_threads() as pool:
            columns = list(pool.map(lambda item: fit_block(item[1]), named))
        columns.append([rule_matrix(hits, self.taxonomy.rules)])
        matrix = _stack_columns(columns, [weights.get(name) for name, _ in named] + [None])
        del columns
        _give_back_freed_memory()
        return matrix

    def _threshold_rows(self, scored: np.ndarray, oof: dict[str, np.ndarray], threshold_rows: Any) -> np.ndarray:
        """The rows thresholds are chosen on: the `threshold_rows` among the `scored` ones
        when there are enough of them, else every scored row; rows some head left out
        (weight 0) have no score from it, and are not among them."""
        n = len(next(iter(oof.values())))
        scored = scored[np.all([np.isfinite(p[scored]).all(axis=1) for p in oof.values()], axis=0)]
        if threshold_rows is not None:
            mask = np.asarray(threshold_rows, dtype=bool)
            if mask.shape != (n,):
                raise ModelInputError(f"threshold_rows must hold one bool per text ({n}), got shape {mask.shape}")
            if mask[scored].sum() >= self.min_threshold_rows:
                return scored[mask[scored]]
        return scored

    def _temper_on(self, rows: np.ndarray, oof: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> None:
        """Each head's temperature fitted again on the out-of-sample scores of `rows`, and
        its out-of-sample probabilities with it. The generated petitions are scored far
        more surely than real ones, and a temperature fitted with them made the
        probabilities of real petitions from an unseen board too high."""
        for head, model in self.heads_.items():
            classes = {label: i for i, label in enumerate(model.classes_)}
            known = np.array([labels[head][r] in classes for r in rows], dtype=bool)
            if known.sum() < self.min_threshold_rows:
                continue
            encoded = np.array([classes[labels[head][r]] for r in rows[known]])
            factor = temperature_factor(oof[head][rows[known]], encoded)
            model.temperature_ *= factor
            finite = np.isfinite(oof[head]).all(axis=1)
            oof[head][finite] = retempered(oof[head][finite], factor)

    def _choose_thresholds(self, scored: np.ndarray, rows: np.ndarray, oof: dict[str, np.ndarray],
                           hits: list[list[tuple[Rule, Any]]], labels: dict[str, np.ndarray]) -> None:
        """Thresholds and rule precisions from the out-of-sample scores of `rows` (of the
        `scored` ones: `_threshold_rows`), and the decisions they then give those rows
        (`heldout_rows_`, `heldout_decisions_`)."""
        scope = "out-of-fold" if len(scored) == len(hits) else f"held-out sample of {len(scored)}"
        proba = {head: p[rows] for head, p in oof.items()}
        row_hits = [hits[i] for i in rows]
        self.thresholds_ = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_THRESHOLDS.items()}
        self.rule_precision_: dict[str, float] = {}
        self.thresholds_, self.rule_precision_ = choose_thresholds(
            self, proba, row_hits, {head: labels[head][rows] for head in HEADS},
            min_high_cut=self.min_high_cut, fill_high_budget=self.fill_high_budget)
        self.heldout_rows_ = rows
        self.heldout_scope_ = scope
        self.heldout_decisions_ = self.decide_many(proba, row_hits)

    @staticmethod
    def _head_weights(sample_weight: Any, n: int) -> dict[str, np.ndarray | None]:
        by_head = sample_weight if isinstance(sample_weight, dict) else dict.fromkeys(HEADS, sample_weight)
        unknown = sorted(set(by_head) - set(HEADS))
        if unknown:
            raise ModelInputError(f"sample_weight names heads {unknown}; the heads are {list(HEADS)}")
        weights: dict[str, np.ndarray | None] = {}
        for head in HEADS:
            weight = by_head.get(head)
            weight = None if weight is None else np.asarray(weight, dtype=np.float64)
            if weight is not None and (weight.shape != (n,) or not (np.isfinite(weight) & (weight >= 0)).all()
                                       or not (weight > 0).any()):
                smallest = f", smallest {weight.min()}" if weight.size else ""
                raise ModelInputError(f"sample_weight must hold one positive number per text ({n}; 0 leaves a "
                                      f"text out of a head, but not all of them), got shape {weight.shape}{smallest}")
            weights[head] = weight
        return weights

    def _holdout_rows(self, labels: dict[str, np.ndarray], groups: np.ndarray | None,
                      head_weights: dict[str, np.ndarray | None]) -> np.ndarray | None:
        """Rows held out for calibration and thresholds when the ledger is large, else None (folds).

        Only rows whose labels are all common enough are candidates, so every label
        keeps most of its rows for training. With `groups`, whole groups are held out,
        so that no held-out petition has a sibling in training."""
        n = len(labels["division"])
        if self.holdout_above is None or n <= self.holdout_above:
            return None
        candidate = np.ones(n, bool)
        for weight in head_weights.values():  # a held-out row is scored by every head
            if weight is not None:
                candidate &= weight > 0
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

    def feature_view(self, normalized: str) -> str:
        """What the word and character features read of a normalised text (rules read it whole)."""
        return feature_view(normalized, self.numbers)

    def _matrix(self, normalized: list[str], hits: list[list[tuple[Rule, Any]]]) -> Any:
        return self._matrix_of_views([self.feature_view(t) for t in normalized], hits)

    def _matrix_of_views(self, viewed: list[str], hits: list[list[tuple[Rule, Any]]]) -> Any:
        # FeatureUnion.transform's own result, without its joblib dispatch, which cost
        # about 3 ms per call: most of the time of one petition.
        if len(viewed) == 1:
            return self._row(viewed[0], hits[0])
        weights = self.features_.transformer_weights or {}
        blocks = []
        for name, transformer in self.features_.transformer_list:
            if transformer != "drop":
                block = transformer.transform(viewed)
                blocks.append(block * weights[name] if name in weights else block)
        return sp.hstack([*blocks, rule_matrix(hits, self.taxonomy.rules)], format="csr")

    def _row(self, viewed: str, hits: list[tuple[Rule, Any]]) -> sp.csr_matrix:
        """`_matrix_of_views` of one petition, as the service asks for it: the entries of
        each block set side by side directly, the same values in the same order. For one
        row, sp.hstack's checks and conversions, and a sparse matrix made for the keyword
        and the rule columns each, cost more than computing them."""
        weights = self.features_.transformer_weights or {}
        indices, data, offset = [], [], 0
        for name, transformer in self.features_.transformer_list:
            if transformer == "drop":
                continue
            if isinstance(transformer, KeywordFeatures):
                values = transformer.values(viewed)
                columns = np.flatnonzero(values)
                values, width = values[columns], len(values)
            else:
                block = transformer.transform([viewed])
                columns, values, width = block.indices, block.data, block.shape[1]
            indices.append(columns + offset)
            data.append(values * weights[name] if name in weights else values)
            offset += width
        # rule_matrix's columns and values (a count, should two rules share an id).
        index = {rule.id: i for i, rule in enumerate(self.taxonomy.rules)}
        columns, counts = np.unique(np.fromiter((index[rule.id] for rule, _ in hits), np.int64, len(hits)), return_counts=True)
        indices.append(columns + offset)
        data.append(counts.astype(np.float64))
        width = offset + len(index)
        # hstack's own choices: double precision (the rule columns are), 32-bit indices when they fit.
        index_type = np.int32 if width <= np.iinfo(np.int32).max else np.int64
        row = np.concatenate(indices, dtype=index_type)
        return sp.csr_matrix((np.concatenate(data, dtype=np.float64), row, np.asarray([0, len(row)], index_type)),
                             shape=(1, width), copy=False)

    def _score(self, X: Sequence[str]) -> tuple[dict[str, np.ndarray], list[list[tuple[Rule, Any]]], Any, list[str]]:
        texts = self._check_texts(X)
        normalized = [normalize(t) for t in texts]
        hits = [self._hits(t) for t in normalized]
        viewed = [self.feature_view(t) for t in normalized]
        matrix = self._matrix_of_views(viewed, hits)
        proba = {head: model.predict_proba(matrix) for head, model in self.heads_.items()}
        if self.encoder_heads_:
            asked = {head: self._asks(head, proba[head]) for head in self.encoder_heads_}
            rows = np.flatnonzero(np.logical_or.reduce(list(asked.values())))
            if len(rows):  # embedded once for every head that asks
                embedded = self.encoder.embed([texts[i] for i in rows]) * EMBEDDING_SCALE
                for head, model in self.encoder_heads_.items():
                    encoded = np.zeros_like(proba[head])
                    encoded[rows] = model.predict_proba(embedded)
                    proba[head] = self._with_encoder(head, proba[head], encoded, asked[head])
        return proba, hits, matrix, viewed

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

    def decide(self, proba: dict[str, np.ndarray], hits: list[tuple[Rule, list]], *, short: bool = False) -> Decision:
        """Labels and confidences for one petition from its probabilities (1-D per head) and
        rule hits; `short` (see `too_short`) makes it need review."""
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
        # lowered key-group F1 on real petitions in every draw of the folds (docs/model.md).
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
        needs_review = risk == "high" or division_p < division_threshold or short
        return Decision(
            division=division, division_confidence=division_p, division_top3=top3,
            division_threshold=division_threshold, risk=risk, risk_confidence=float(risk_conf),
            key_group=key_group, key_group_confidence=float(key_group_p), needs_review=bool(needs_review),
            rules=[r.id for r, _ in hits], key_group_rule=key_group_rule)

    def predict(self, X: Sequence[str]) -> list[Decision]:
        """One decision per text (labels, confidences, top-3, rules fired), no explanation."""
        proba, hits, _, views = self._score(X)
        return self.decide_many(proba, hits, [too_short(v) for v in views])

    def decide_many(self, proba: dict[str, np.ndarray], hits: list[list[tuple[Rule, list]]],
                    short: Sequence[bool] | None = None) -> list[Decision]:
        short = short if short is not None else [False] * len(hits)
        return [self.decide({h: p[i] for h, p in proba.items()}, row_hits, short=short[i])
                for i, row_hits in enumerate(hits)]

    def suggest(self, text: str, top_terms: int = 5) -> Suggestion:
        """The full suggestion for one petition: decision plus, per head, the words
        and rules that drove it with their character offsets in `text`."""
        proba_rows, hit_rows, matrix, views = self._score([text])
        proba = {head: p[0] for head, p in proba_rows.items()}
        hits, view = hit_rows[0], views[0]
        decision = self.decide(proba, hits, short=too_short(view))
        explanation = {
            head: explain_head(self, head, decision[head], matrix, text, [(r, s) for r, s in hits if r.head == head],
                               top_terms, view)
            for head in HEADS
        }
        return Suggestion(**decision, explanation=explanation)
