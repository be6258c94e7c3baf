"""Self-training: routing learned from unlabelled petitions that the model routes with
confidence.

A province has far more petitions than it has labelled, and they are written the way
its own boards write. A first model labels them; those it would route without review
(its per-division thresholds hold 90 % precision out-of-fold) join the ledger with that
division, weighing less than a person's label, and a second model is fitted. They
teach routing only: the risk and key-group heads never see them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from model.taxonomy import Taxonomy
from model.triage import TriageModel
from training.train import fit_with_thresholds, texts_of

# Enough to carry a new board's wording; more only lengthens training.
MAX_PSEUDO_ROWS = 6000


def pseudo_labelled(model: TriageModel, unlabelled: pd.DataFrame, max_rows: int = MAX_PSEUDO_ROWS,
                    random_state: int = 0, leave_out: tuple[str, ...] = ()) -> pd.DataFrame:
    """The petitions of `unlabelled` (columns id, title, body) that `model` routes without
    review to a division not in `leave_out`, at most `max_rows` of them drawn at random,
    labelled with its division. Their risk and key group are placeholders, as the weights
    leave them out of those heads."""
    decisions = model.predict(texts_of(unlabelled))
    confident = np.flatnonzero([not d["needs_review"] and d["division"] not in leave_out for d in decisions])
    if len(confident) > max_rows:
        confident = np.sort(np.random.default_rng(random_state).choice(confident, max_rows, replace=False))
    rows = unlabelled.iloc[confident][["id", "title", "body"]].copy()
    rows["id"] = "pseudo:" + rows["id"].astype(str)
    rows["division"] = [decisions[i]["division"] for i in confident]
    rows["risk"], rows["key_group"] = "low", "none"
    rows["synthetic"], rows["pseudo"] = True, True
    return rows.reset_index(drop=True)


def fit_self_trained(frame: pd.DataFrame, unlabelled: pd.DataFrame, taxonomy: Taxonomy, seed: int = 0,
                     progress: Callable[[str], None] = lambda _: None, leave_out: tuple[str, ...] = (),
                     **params: Any) -> tuple[TriageModel, dict[str, Any]]:
    """`fit_with_thresholds` on `frame`, then again with the petitions of `unlabelled`
    that the first model routes with confidence to a division not in `leave_out`."""
    first, _ = fit_with_thresholds(frame, taxonomy, seed=seed, progress=progress, **params)
    pseudo = pseudo_labelled(first, unlabelled, random_state=seed, leave_out=leave_out)
    progress(f"self-training: {len(pseudo)} of {len(unlabelled)} unlabelled petitions routed with confidence")
    return fit_with_thresholds(pd.concat([frame, pseudo], ignore_index=True), taxonomy, seed=seed,
                               progress=progress, **params)
