"""Training a model from ledgers: split, fit, choose thresholds on held-out
petitions, measure, refit on everything, write the artifact atomically."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.artifact import created_at_now, new_version_id, save_model
from model.taxonomy import DEFAULT_TAXONOMY, HEADS, Taxonomy, load_taxonomy
from model.text import join_fields
from model.triage import ModelInputError, TriageModel
from training.evaluate import evaluate_decisions, summary_line
from training.ledger import read_ledgers
from training.memory import check_training_memory
from training.thresholds import choose_thresholds

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
# Generated petitions state their risk plainly, and a p(high) cut learned on them
# alone sits so low that it flagged a third of the real dev petitions (the corpus-
# only default model: 34 % flagged; with this floor 19 %, recall 1.00; see
# benchmarks/accuracy.py --corpus-only). Without enough real petitions to measure
# it on, high needs the model to find it more likely than not, or a rule.
GENERATED_MIN_HIGH_CUT = 0.5
# Beside real petitions, a generated one counts this much: the corpus teaches the
# vocabulary of every label, the real ledger how intake is really written
# (benchmarks/model_choices.py compares the weights).
SYNTHETIC_WEIGHT = 0.5
# The high-risk head is a logistic regression (model/triage.py, DEFAULT_HEAD_LOSSES),
# which pays off where real labellers disagree. Trained on generated petitions,
# whose labels are clean, with fewer than MIN_REAL_FOR_THRESHOLDS real ones, it
# transferred worse to real text than the SVM: the corpus-only default model
# flagged 24 % of the real dev petitions high, 19 % as an SVM
# (benchmarks/accuracy.py --corpus-only).
GENERATED_HEAD_LOSSES = {"risk_high": "squared_hinge"}
# Unweighted, the high-risk head ranks better only where real medium-risk petitions
# are there to weigh against the generated high-risk ones (model/triage.py,
# DEFAULT_HEAD_CLASS_WEIGHTS). Without them it found fewer on real text: the
# corpus-only default model found 12 of the 16 real high-risk dev petitions, 16 of
# 16 balanced (benchmarks/accuracy.py --corpus-only, the first with the dict below
# emptied).
GENERATED_HEAD_CLASS_WEIGHTS = {"risk_high": "balanced"}


def synthetic_rows(frame: pd.DataFrame) -> np.ndarray:
    return frame["synthetic"].to_numpy(bool) if "synthetic" in frame.columns else np.zeros(len(frame), bool)


def enough_real(real: np.ndarray) -> bool:
    """Whether the rows marked in `real` are enough to measure real intake on."""
    return int(real.sum()) >= MIN_REAL_FOR_THRESHOLDS


def thresholds_on_real(synthetic: np.ndarray) -> bool:
    return bool(synthetic.any()) and enough_real(~synthetic)


def sample_weights(frame: pd.DataFrame, synthetic_weight: float = SYNTHETIC_WEIGHT) -> np.ndarray | None:
    synthetic = synthetic_rows(frame)
    if synthetic.all() or not synthetic.any():
        return None
    return np.where(synthetic, synthetic_weight, 1.0)


def matter_groups(frame: pd.DataFrame, among: np.ndarray) -> np.ndarray | None:
    """Calibration groups: the rows of `among` (a mask) that share a `matter` are one
    group, every other row is its own; None when no two rows of `among` share one.

    Out-of-fold scores choose the temperature and the thresholds, so they must come
    from models that never saw a sibling of the row they score: petitions generated
    from one corpus scenario share their facts and much of their wording (README,
    "Heads"; benchmarks/accuracy.py --corpus-only). When the thresholds are chosen
    on real petitions, the generated ones are not grouped: no real petition has a
    sibling among them, and whole scenarios left out would only make the fold
    models that score the real petitions weaker than the model that is kept."""
    if "matter" not in frame.columns:
        return None
    matter = frame["matter"].fillna("").astype(str).str.strip()  # NaN: a ledger without the column
    shared = among & matter.ne("").to_numpy()
    if not matter[shared].duplicated().any():
        return None
    return np.where(shared, "matter:" + matter, "id:" + frame["id"].astype(str)).astype(object)


def fit_with_thresholds(frame: pd.DataFrame, taxonomy: Taxonomy, seed: int = 0,
                        progress: Progress = lambda _: None, synthetic_weight: float = SYNTHETIC_WEIGHT,
                        fill_high_budget: bool = True, **params: Any) -> tuple[TriageModel, dict[str, Any]]:
    """A model fitted on `frame` (less the held-out rows of a large ledger), with
    thresholds and metrics from its out-of-sample predictions: out-of-fold for every
    row, or, for a large ledger, for the rows held out (TriageModel's `holdout_above`)."""
    texts = texts_of(frame)
    check_training_memory(texts)  # refused now, not killed by the kernel minutes in
    synthetic = synthetic_rows(frame)
    groups = matter_groups(frame, ~synthetic if thresholds_on_real(synthetic) else np.ones(len(frame), bool))
    real_enough = enough_real(~synthetic)
    # Beside real petitions the key-group head decides whether a petition is a key-group
    # case and a rule only names the group (model/triage.py). Trained on generated ones
    # alone, the head knows only how the corpus speaks as a member, and the rules find
    # cases on real text that it misses: the default model's key-group F1 on the real dev
    # petitions is 0.720 with the rules deciding alone, 0.636 without
    # (benchmarks/accuracy.py --corpus-only, the second with `not real_enough` below
    # replaced by False).
    defaults = {"n_jobs": -1, "head_losses": None if real_enough else GENERATED_HEAD_LOSSES,
                "head_class_weights": None if real_enough else GENERATED_HEAD_CLASS_WEIGHTS,
                "key_group_rules_alone": not real_enough}
    # Whether folds or a held-out sample score the rows is TriageModel's choice; the
    # "held out" line after the fit says which.
    progress(f"fitting on {len(frame)} petitions (calibration and thresholds from out-of-sample scores) …")
    try:
        model = TriageModel(taxonomy, random_state=seed, **{**defaults, **params}).fit(
            texts, frame[list(HEADS)], sample_weight=sample_weights(frame, synthetic_weight), groups=groups)
    except ModelInputError:
        raise
    except ValueError as exc:
        # scikit-learn's refusals of data it cannot fit are problems of the ledger, not of
        # the program (TriageModel itself refuses a ledger in which no word appears twice).
        raise ModelInputError(f"cannot learn from these {len(frame)} petitions: too few, or too little text shared "
                              f"between them (scikit-learn: {exc})") from None
    oof, training_hits, scored = model.oof_proba_, model.training_hits_, model.oof_rows_
    del model.oof_proba_, model.training_hits_, model.oof_rows_
    has_oof = np.zeros(len(frame), bool)
    has_oof[scored] = True
    real = ~synthetic & has_oof
    real_only = thresholds_on_real(synthetic[has_oof])
    rows = np.flatnonzero(real if real_only else has_oof)
    proba = {h: p[rows] for h, p in oof.items()}
    hits = [training_hits[i] for i in rows]
    truth = {h: frame[h].to_numpy()[rows] for h in HEADS}
    thresholds, rule_precision = choose_thresholds(
        model, proba, hits, truth, min_high_cut=0.0 if enough_real(real) else GENERATED_MIN_HIGH_CUT,
        fill_high_budget=fill_high_budget)
    model.thresholds_, model.rule_precision_ = thresholds, rule_precision
    heldout = evaluate_decisions(model.decide_many(proba, hits), truth, taxonomy_codes(taxonomy))
    heldout["scope"] = ("out-of-fold" if len(scored) == len(frame) else f"held-out sample of {len(scored)}") + (
        ", real petitions only" if real_only else ", all petitions")
    progress(f"held out ({heldout['scope']}, n={len(rows)}): {summary_line(heldout)}")
    return model, {"heldout_metrics": heldout, "heldout_ids": frame["id"].to_numpy()[rows].tolist(),
                   "thresholds": thresholds, "rule_precision": rule_precision}


def train(data: list[str | Path], out: str | Path, taxonomy_path: str | Path = DEFAULT_TAXONOMY,
          seed: int = 0, progress: Progress = lambda _: None, sheet: str | None = None) -> dict[str, Any]:
    taxonomy = load_taxonomy(taxonomy_path)
    progress(f"reading {len(data)} ledger file(s) …")
    ledger = read_ledgers(list(data), taxonomy, sheet=sheet)
    frame = ledger.frame
    progress(f"{len(frame)} petitions ({ledger.duplicates_dropped} exact duplicates dropped)")
    model, fitted = fit_with_thresholds(frame, taxonomy, seed=seed, progress=progress)
    digest = fingerprint(frame)
    dates = frame["received_at"].dropna() if "received_at" in frame.columns else pd.Series(dtype="datetime64[ns]")
    metadata = {
        "version": new_version_id(digest),
        "created_at": created_at_now(),
        "training_data": {
            "fingerprint": digest, "sources": ledger.sources, "rows": len(frame),
            "duplicates_dropped": ledger.duplicates_dropped,
            "period": [str(dates.min().date()), str(dates.max().date())] if len(dates) else None,
        },
        "seed": seed,
        "taxonomy": taxonomy.to_dict(),
        "taxonomy_sha256": hashlib.sha256(Path(taxonomy_path).read_bytes()).hexdigest(),
        "label_counts": {h: dict(Counter(frame[h])) for h in HEADS},
        "thresholds": fitted["thresholds"],
        "rule_precision": fitted["rule_precision"],
        "heldout_metrics": fitted["heldout_metrics"],
        "heldout_ids": fitted["heldout_ids"],
    }
    progress(f"writing {out} …")
    save_model(model, out, metadata)
    return metadata


def predict_frame(model: TriageModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    return model.predict(texts_of(frame))


def label_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {h: frame[h].to_numpy() for h in HEADS}
