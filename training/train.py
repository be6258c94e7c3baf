"""Training a model from ledgers: split, fit, choose thresholds on held-out
petitions, measure, refit on everything, write the artifact atomically."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.artifact import check_can_save, created_at_now, new_version_id, save_model
from model.encoder import TextEncoder
from model.matter import link_matters
from model.taxonomy import DEFAULT_TAXONOMY, HEADS, Taxonomy, load_taxonomy
from model.text import join_fields
from model.triage import ENCODER_BELOW, ModelInputError, TriageModel
from training.evaluate import evaluate_decisions, summary_line
from training.ledger import read_ledgers
from training.memory import check_training_memory

Progress = Callable[[str], None]


def texts_of(frame: pd.DataFrame) -> list[str]:
    return [join_fields(t, b) for t, b in zip(frame["title"], frame["body"], strict=True)]


def fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for row in frame.sort_values("id")[["id", "title", "body", *HEADS]].itertuples(index=False):
        digest.update("\x1f".join(map(str, row)).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def taxonomy_codes(taxonomy: Taxonomy) -> dict[str, list[str]]:
    return {head: taxonomy.codes(head) for head in HEADS}


# Thresholds must reflect real intake: when a ledger mixes generated petitions
# (the bundled corpus, `synthetic` = true) with real ones, they are chosen on the
# real ones, if there are at least this many.
MIN_REAL_FOR_THRESHOLDS = 200
# Beside real petitions, a generated one counts this much: the corpus teaches the
# vocabulary of every label, the real ledger how intake is really written
# (benchmarks/accuracy.py compares the weights).
SYNTHETIC_WEIGHT = 0.5
# What a petition labelled by the model itself (self-training, training/selftrain.py)
# counts for routing.
PSEUDO_WEIGHT = 0.3


@dataclass(frozen=True)
class TrainingProfile:
    """TriageModel settings that depend on what the ledger holds."""

    name: str
    head_losses: dict[str, str] | None = None
    head_class_weights: dict[str, str | None] | None = None
    key_group_rules_alone: bool = False
    min_high_cut: float = 0.0

    def params(self) -> dict[str, Any]:
        return {"head_losses": self.head_losses, "head_class_weights": self.head_class_weights,
                "key_group_rules_alone": self.key_group_rules_alone, "min_high_cut": self.min_high_cut}


REAL_LEDGER = TrainingProfile("real ledger")
# Generated petitions alone (the default model), or with too few real ones beside them
# to learn how real intake is written. Their labels are clean and they state their
# risk plainly, so what pays off on real petitions does not transfer (docs/model.md):
# - the high-risk head stays an SVM, weighted to balance: as a logistic regression, or
#   unweighted, it flagged more of the real petitions high, or found fewer;
# - the key-group rules decide alone: the head knows only how the corpus speaks as a
#   member, and the rules find cases on real text that it misses;
# - high needs the model to find it more likely than not (or a rule): a cut learned on
#   generated petitions alone sits so low that it flags a third of real ones.
GENERATED_ONLY = TrainingProfile(
    f"the settings for generated petitions: fewer than {MIN_REAL_FOR_THRESHOLDS} real ones", head_losses={"risk_high": "squared_hinge"},
    head_class_weights={"risk_high": "balanced"}, key_group_rules_alone=True, min_high_cut=0.5)
GENERATED_MIN_HIGH_CUT = GENERATED_ONLY.min_high_cut


def profile_for(frame: pd.DataFrame) -> TrainingProfile:
    return REAL_LEDGER if enough_real(~synthetic_rows(frame)) else GENERATED_ONLY


def synthetic_rows(frame: pd.DataFrame) -> np.ndarray:
    # NaN: a row of a frame concatenated with one that had no such column.
    return frame["synthetic"].fillna(False).to_numpy(bool) if "synthetic" in frame.columns else np.zeros(len(frame), bool)


def enough_real(real: np.ndarray) -> bool:
    """Whether the rows marked in `real` are enough to measure real intake on."""
    return int(real.sum()) >= MIN_REAL_FOR_THRESHOLDS


def thresholds_on_real(synthetic: np.ndarray) -> bool:
    return bool(synthetic.any()) and enough_real(~synthetic)


def pseudo_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows labelled by a model (self-training), not by a person."""
    return frame["pseudo"].fillna(False).to_numpy(bool) if "pseudo" in frame.columns else np.zeros(len(frame), bool)


def sample_weights(frame: pd.DataFrame, synthetic_weight: float = SYNTHETIC_WEIGHT,
                   pseudo_weight: float = PSEUDO_WEIGHT) -> np.ndarray | dict[str, np.ndarray] | None:
    """Per row, or per head and row: generated petitions weigh `synthetic_weight` beside
    real ones; petitions a model labelled weigh `pseudo_weight` for routing and are
    left out of the risk and key-group heads (they carry only a division)."""
    synthetic, pseudo = synthetic_rows(frame), pseudo_rows(frame)
    generated = synthetic & ~pseudo
    base = None if generated.all() or not generated.any() else np.where(generated, synthetic_weight, 1.0)
    if not pseudo.any():
        return base
    base = np.ones(len(frame)) if base is None else base
    return {"division": np.where(pseudo, pseudo_weight, base), "risk": np.where(pseudo, 0.0, base),
            "key_group": np.where(pseudo, 0.0, base)}


def matter_groups(frame: pd.DataFrame, among: np.ndarray, across_boards: bool = True) -> np.ndarray | None:
    """Calibration groups: the rows of `among` (a mask) from one board are one group
    when they come from several boards (`across_boards`); else those that share a
    `matter` (named, or linked by their text) are one group; every other row is its
    own. None when no two rows of `among` share one.

    Out-of-fold scores choose the temperature and the thresholds, so they must come
    from models that never saw a sibling of the row they score: petitions generated
    from one corpus scenario share their facts and much of their wording
    (docs/model.md, "Thresholds"). When the thresholds are chosen
    on real petitions, the generated ones are not grouped: no real petition has a
    sibling among them, and whole scenarios left out would only make the fold
    models that score the real petitions weaker than the model that is kept."""
    if across_boards and "board" in frame.columns:
        # Petitions from several boards: each board is one group, so the thresholds are
        # chosen on scores from models that never saw the board they score, as a new
        # board will meet the model.
        board = frame["board"].fillna("").astype(str).str.strip()
        if board[among & board.ne("").to_numpy()].nunique() >= 2:
            named = among & board.ne("").to_numpy()
            return np.where(named, "board:" + board, "id:" + frame["id"].astype(str)).astype(object)
    matter = (frame["matter"].fillna("").astype(str).str.strip() if "matter" in frame.columns  # NaN: a ledger without the column
              else pd.Series("", index=frame.index))
    # Rows without one are linked by the text (model/matter.py), so re-sent letters stay in one fold.
    # The texts are prepared for linking in processes (the links are the same on one core).
    unnamed = among & matter.eq("").to_numpy()
    if unnamed.sum() > 1:
        matter[unnamed] = ["linked:" + m for m in link_matters(texts_of(frame[unnamed]), n_jobs=-1)]
    shared = among & matter.ne("").to_numpy()
    if not matter[shared].duplicated().any():
        return None
    return np.where(shared, "matter:" + matter, "id:" + frame["id"].astype(str)).astype(object)


def fit_with_thresholds(frame: pd.DataFrame, taxonomy: Taxonomy, seed: int = 0,
                        progress: Progress = lambda _: None, synthetic_weight: float = SYNTHETIC_WEIGHT,
                        calibrate_across_boards: bool = True, **params: Any) -> tuple[TriageModel, dict[str, Any]]:
    """A finished model fitted on `frame` (less the held-out rows of a large ledger) with
    the settings of its training profile, and the metrics of its held-out decisions:
    out-of-fold for every row, or, for a large ledger, for the rows held out."""
    texts = texts_of(frame)
    check_training_memory(texts)  # refused now, not killed by the kernel minutes in
    synthetic = synthetic_rows(frame)
    on_real = thresholds_on_real(synthetic)
    groups = matter_groups(frame, ~synthetic if on_real else np.ones(len(frame), bool),
                           across_boards=calibrate_across_boards)
    profile = profile_for(frame)
    # Whether folds or a held-out sample score the rows is TriageModel's choice; the
    # "held out" line after the fit says which.
    progress(f"fitting on {len(frame)} petitions ({profile.name}; calibration and thresholds from out-of-sample "
             "scores) …")
    try:
        settings = {"n_jobs": -1, "min_threshold_rows": MIN_REAL_FOR_THRESHOLDS, **profile.params(), **params}
        model = TriageModel(taxonomy, random_state=seed, **settings).fit(
            texts, frame[list(HEADS)], sample_weight=sample_weights(frame, synthetic_weight), groups=groups,
            threshold_rows=~synthetic if on_real else None)
    except ModelInputError:
        raise
    except ValueError as exc:
        # scikit-learn's refusals of data it cannot fit are problems of the ledger, not of
        # the program (TriageModel itself refuses a ledger in which no word appears twice).
        raise ModelInputError(f"cannot learn from these {len(frame)} petitions: too few, or too little text shared "
                              f"between them (scikit-learn: {exc})") from None
    rows = model.heldout_rows_
    truth = {h: frame[h].to_numpy()[rows] for h in HEADS}
    heldout = evaluate_decisions(model.heldout_decisions_, truth, taxonomy_codes(taxonomy))
    heldout["scope"] = model.heldout_scope_ + (", real petitions only" if not synthetic[rows].any() else ", all petitions")
    progress(f"held out ({heldout['scope']}, n={len(rows)}): {summary_line(heldout)}")
    return model, {"heldout_metrics": heldout, "heldout_ids": frame["id"].to_numpy()[rows].tolist(),
                   "thresholds": model.thresholds_, "rule_precision": model.rule_precision_}


def period_of(frame: pd.DataFrame) -> list[str] | None:
    """The first and last `received_at` date of a ledger, if it has any."""
    if "received_at" not in frame.columns:
        return None
    dates = pd.to_datetime(frame["received_at"], errors="coerce").dropna()
    return [str(dates.min().date()), str(dates.max().date())] if len(dates) else None


def artifact_metadata(*, version: str, frame: pd.DataFrame, data_fingerprint: str, sources: list[str],
                      duplicates_dropped: int, seed: int, taxonomy: Taxonomy, taxonomy_path: str | Path,
                      fitted: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What an artifact records about how it was made (`train` and `retrain` alike);
    `extra` adds fields of its own (retraining: who, the evaluation, the decisions)."""
    training_data = {"fingerprint": data_fingerprint, "sources": sources, "rows": len(frame),
                     "duplicates_dropped": duplicates_dropped, "period": period_of(frame),
                     **extra.pop("training_data", {})}
    return {
        "version": version, "created_at": created_at_now(), **extra.pop("header", {}),
        "training_data": training_data, "seed": seed, "taxonomy": taxonomy.to_dict(),
        "taxonomy_sha256": hashlib.sha256(Path(taxonomy_path).read_bytes()).hexdigest(),
        "label_counts": {h: dict(Counter(frame[h])) for h in HEADS},
        "thresholds": fitted["thresholds"], "rule_precision": fitted["rule_precision"],
        # Measured on the out-of-sample scores the thresholds were chosen on.
        "heldout_metrics": fitted["heldout_metrics"], "heldout_ids": fitted["heldout_ids"],
        **extra,
    }


def train(data: list[str | Path], out: str | Path, taxonomy_path: str | Path = DEFAULT_TAXONOMY,
          seed: int = 0, progress: Progress = lambda _: None, sheet: str | None = None,
          encoder: TextEncoder | None = None, encoder_below: float | None = ENCODER_BELOW) -> dict[str, Any]:
    """Train on the ledger files `data` and save the signed model to `out`; with an
    `encoder`, with the optional encoder heads, routing asking it below `encoder_below`
    (docs/model.md)."""
    check_can_save(out)
    taxonomy = load_taxonomy(taxonomy_path)
    progress(f"reading {len(data)} ledger file(s) …")
    ledger = read_ledgers(list(data), taxonomy, sheet=sheet)
    frame = ledger.frame
    progress(f"{len(frame)} petitions ({ledger.duplicates_dropped} exact duplicates dropped)")
    model, fitted = fit_with_thresholds(frame, taxonomy, seed=seed, progress=progress, encoder=encoder,
                                        encoder_below=encoder_below)
    digest = fingerprint(frame)
    metadata = artifact_metadata(
        version=new_version_id(digest), frame=frame, data_fingerprint=digest, sources=ledger.sources,
        duplicates_dropped=ledger.duplicates_dropped, seed=seed, taxonomy=taxonomy, taxonomy_path=taxonomy_path,
        fitted=fitted)
    progress(f"writing {out} …")
    save_model(model, out, metadata)
    return metadata


def predict_frame(model: TriageModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    return model.predict(texts_of(frame))


def label_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {h: frame[h].to_numpy() for h in HEADS}
