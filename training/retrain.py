"""Quarterly retraining: a challenger trained on the ledgers plus the intake
desk's recorded decisions, scored together with the champion (the model in
service) on the same held-out petitions, registered with its report.

The held-out petitions are the most recent quarter by `received_at` (what the
model will face next is closer to last quarter than to a random sample), a
ledger named with `holdout=`, or — when dates are missing — a random stratified
fifth. The challenger is fitted on the rest only, so its held-out numbers are
honest; promotion is a separate, explicit step (training.registry)."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from model.artifact import (
    SIGNATURE,
    ArtifactError,
    SigningKey,
    default_key_file,
    load_model,
    new_version_id,
    read_metadata,
    signing_key,
)
from model.encoder import TextEncoder
from model.taxonomy import DEFAULT_TAXONOMY, HEADS, Taxonomy, load_taxonomy
from model.text import join_fields, normalize, segment
from model.triage import ENCODER_BELOW, TriageModel
from training.batch import predict_in_batches
from training.decisions import read_decisions, source_name
from training.evaluate import evaluate_decisions
from training.ledger import LedgerError, read_ledger
from training.registry import DEFAULT_KEY_METRICS, DEFAULT_TOLERANCE, MetricCheck, Registry, RegistryError, compare, current_user
from training.report import render_report
from training.train import Progress, artifact_metadata, fingerprint, fit_with_thresholds, label_arrays, period_of, taxonomy_codes, texts_of

# A class needs 2 examples to be fitted at all (model.triage skips it otherwise) and
# 3 for 3-fold calibration; below about 30 its threshold is chosen on a handful of
# held-out petitions (20 % of them) and its F1 swings from quarter to quarter.
MIN_EXAMPLES = 30
# Fewer held-out petitions than this cannot tell two models apart.
MIN_HOLDOUT = 20
# The period split is used when at least this share of petitions is dated.
DATED_SHARE_FOR_PERIOD = 0.8
RANDOM_HOLDOUT = 0.2
WEAK_F1 = 0.5
LIST_LIMIT = 200
_DIGIT = re.compile(r"\d")
# `synthetic` marks generated petitions (the bundled corpus); training may treat them apart.
# `matter` and `board` group the petitions whose out-of-sample scores choose the thresholds
# (training.train.matter_groups), as `triage train` does; '' when a ledger has neither.
COLUMNS = ["id", "title", "body", *HEADS, "received_at", "synthetic", "matter", "board", "source", "row", "origin"]
GROUP_COLUMNS = ("matter", "board")


class RetrainError(LedgerError):
    """Input that cannot give an honest comparison; the message says what to change."""


@dataclass
class Holdout:
    method: str  # "period", "random" or "ledger"
    description: str
    period: str | None
    train: pd.DataFrame
    held: pd.DataFrame


@dataclass
class RetrainResult:
    version: str
    model_dir: Path
    report: Path
    metadata: dict[str, Any]
    checks: list[MetricCheck]


def quarter_of(value: pd.Timestamp) -> str:
    return f"{value.year}Q{value.quarter}"


def _standard(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    frame = frame.copy()
    if "received_at" not in frame.columns:
        frame["received_at"] = pd.NaT
    frame["received_at"] = pd.to_datetime(frame["received_at"], errors="coerce")
    frame["synthetic"] = frame["synthetic"].astype(bool) if "synthetic" in frame.columns else False
    for column in GROUP_COLUMNS:
        # Kept: without them a retrained model chose its thresholds on scores from fold models
        # that had seen the same matter or board, unlike `triage train` on the same ledger.
        frame[column] = frame[column].fillna("").astype(str) if column in frame.columns else ""
    frame["origin"] = origin
    return frame[COLUMNS]


def read_frames(paths: Sequence[str | Path], taxonomy: Taxonomy, sheet: str | None = None) -> pd.DataFrame:
    # read_ledger per file, not read_ledgers: a petition listed twice with different
    # labels is something to report and resolve here, not a reason to stop.
    frames = [_standard(read_ledger(p, taxonomy, sheet=sheet), "ledger") for p in paths]
    return pd.concat(frames, ignore_index=True)


def _labels(row: pd.Series) -> dict[str, str]:
    return {h: str(row[h]) for h in HEADS}


def _place(row: pd.Series) -> dict[str, Any]:
    return {"source": Path(str(row["source"])).name, "row": None if pd.isna(row["row"]) else int(row["row"]),
            **_labels(row)}


def find_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(rows to train on, first row of each id listed with different labels, what was found).

    The same id with the same labels is kept once; with different labels every copy is
    set aside (a decision may settle it). The same text under different ids is kept
    (they are separate petitions) but listed, with a flag when their labels differ."""
    frame = frame.reset_index(drop=True)
    repeated = frame["id"].duplicated(keep=False)
    drop: set[int] = set()
    same_id, conflicts = [], []
    conflicted_first: list[int] = []
    for pid, group in frame[repeated].groupby("id", sort=False):
        labels = {tuple(r[h] for h in HEADS) for _, r in group.iterrows()}
        places = [_place(r) for _, r in group.iterrows()]
        if len(labels) == 1:
            drop.update(group.index[1:])
            same_id.append({"id": pid, "copies": len(group), "places": places})
        else:
            drop.update(group.index)
            conflicted_first.append(int(group.index[0]))
            conflicts.append({"id": pid, "places": places})
    kept = frame.drop(index=sorted(drop)).reset_index(drop=True)
    keys = pd.Series([re.sub(r"\s+", "", join_fields(t, b)) for t, b in zip(kept["title"], kept["body"], strict=True)],
                     index=kept.index)
    repeated_text = keys.duplicated(keep=False)
    same_text, text_conflicts = [], []
    for _, group in kept[repeated_text].groupby(keys[repeated_text], sort=False):
        entry = {"ids": group["id"].tolist(), "places": [_place(r) | {"id": r["id"]} for _, r in group.iterrows()]}
        labels = {tuple(r[h] for h in HEADS) for _, r in group.iterrows()}
        (same_text if len(labels) == 1 else text_conflicts).append(entry)
    quality = {
        "rows_read": len(frame),
        "same_id_duplicates": {"dropped": len(drop) - sum(len(c["places"]) for c in conflicts),
                               "ids": len(same_id), "examples": same_id[:LIST_LIMIT]},
        "conflicting_ids": {"count": len(conflicts), "items": conflicts[:LIST_LIMIT]},
        "same_text_other_ids": {"groups": len(same_text), "examples": same_text[:LIST_LIMIT]},
        "same_text_conflicting_labels": {"groups": len(text_conflicts), "items": text_conflicts[:LIST_LIMIT]},
    }
    return kept, frame.loc[conflicted_first].reset_index(drop=True), quality


def apply_decisions(frames: list[pd.DataFrame], conflicted: pd.DataFrame, decisions: pd.DataFrame,
                    source: str) -> tuple[list[pd.DataFrame], pd.DataFrame, dict[str, Any]]:
    """Each frame with the human labels in place of the ledger's, the decisions that match
    no ledger row as extra petitions (masked text), and the list of every label changed."""
    by_id = decisions.drop_duplicates("id", keep="last").set_index("id")
    known: set[str] = set()
    out, overrides = [], []
    resolved = []
    for i, frame in enumerate(frames):
        frame = frame.copy()
        if i == 0 and len(conflicted):
            # A petition the ledgers label two ways is trained on when a person settled it.
            settle = conflicted[conflicted["id"].isin(by_id.index)]
            resolved = settle["id"].tolist()
            frame = pd.concat([frame, settle], ignore_index=True)
        known.update(frame["id"])
        for j in np.flatnonzero(frame["id"].isin(by_id.index).to_numpy()):
            pid = frame.at[j, "id"]
            decision = by_id.loc[pid]
            for head in HEADS:
                if frame.at[j, head] != decision[head]:
                    overrides.append({
                        "id": pid, "head": head, "ledger": frame.at[j, head], "decision": decision[head],
                        "decided_by": decision["decided_by"], "reason": decision["reason"],
                        "source": Path(str(frame.at[j, "source"])).name,
                        "row": None if pd.isna(frame.at[j, "row"]) else int(frame.at[j, "row"]),
                    })
                    frame.at[j, head] = decision[head]
        out.append(frame)
    extra = decisions[~decisions["id"].isin(known)].copy()
    extra["source"] = source
    extra["row"] = None
    extra = _standard(extra, "decision")
    per_head = Counter(o["head"] for o in overrides)
    info = {
        "source": source, "decisions": len(decisions),
        "matched": int(decisions["id"].isin(known).sum()), "extra_rows": len(extra),
        "overridden_petitions": len({o["id"] for o in overrides}),
        "overrides_per_head": {h: per_head.get(h, 0) for h in HEADS},
        "overrides": overrides[:LIST_LIMIT], "conflicts_resolved": resolved,
    }
    return out, extra, info


def _random_split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = frame["division"].value_counts()
    stratify = frame["division"] if counts.min() >= 2 else None
    try:
        fit, held = train_test_split(frame, test_size=RANDOM_HOLDOUT, random_state=seed, stratify=stratify)
    except ValueError:  # too few petitions for every class to appear on both sides
        fit, held = train_test_split(frame, test_size=RANDOM_HOLDOUT, random_state=seed)
    return fit, held


def choose_holdout(frame: pd.DataFrame, seed: int = 0, quarter: str | None = None) -> Holdout:
    """The latest quarter (or `quarter`) as held-out petitions; a random stratified fifth
    when too few petitions are dated or the data covers a single quarter."""
    frame = frame.reset_index(drop=True)
    dates = pd.to_datetime(frame["received_at"], errors="coerce")
    dated = dates.notna()
    quarters = pd.Series([quarter_of(d) if pd.notna(d) else None for d in dates], index=frame.index)
    undated_note = f"; {int((~dated).sum())} undated petitions stay in training" if (~dated).any() else ""
    if quarter is not None:
        mask = quarters == quarter
        if not mask.any():
            seen = ", ".join(sorted(set(quarters.dropna()))) or "none (no received_at)"
            raise RetrainError("--holdout-quarter", f"no petition received in {quarter} (quarters in the data: {seen})")
        return Holdout("period", f"petitions received in {quarter} (chosen), {int(mask.sum())} of them{undated_note}",
                       quarter, frame[~mask], frame[mask])
    reason = None
    if dated.mean() < DATED_SHARE_FOR_PERIOD:
        reason = (f"only {int(dated.sum())} of {len(frame)} petitions have a received_at date, so the held-out "
                  "set could not be the latest quarter")
    else:
        latest = max(quarters.dropna())
        mask = quarters == latest
        if (~mask).sum() < MIN_HOLDOUT:
            reason = f"all dated petitions fall in {latest}, so there is no earlier period to train on"
        elif mask.sum() < MIN_HOLDOUT:
            reason = f"the latest quarter {latest} has only {int(mask.sum())} petitions (fewer than {MIN_HOLDOUT})"
        else:
            return Holdout("period", f"the latest quarter, {latest}: {int(mask.sum())} petitions received "
                           f"{dates[mask].min().date()} to {dates[mask].max().date()}{undated_note}",
                           latest, frame[~mask], frame[mask])
    fit, held = _random_split(frame, seed)
    return Holdout("random", f"a random stratified {RANDOM_HOLDOUT:.0%} ({len(held)} petitions), because {reason}",
                   None, fit, held)


def score(model: TriageModel, frame: pd.DataFrame, name: str, progress: Progress) -> tuple[list[str], list[dict]]:
    return frame["id"].tolist(), predict_in_batches(model, texts_of(frame), progress, name, batch=500)


def word_vocabulary(model: TriageModel) -> set[str]:
    words = dict(model.features_.transformer_list).get("word", model.features_.transformer_list[0][1])
    return {w for w in words.vocabulary_ if " " not in w}  # bigrams are "w1 w2"


def unseen_words(vocabulary: set[str], texts: list[str]) -> dict[str, Any]:
    """Share of word tokens (as the model segments them) outside the training vocabulary,
    and the new words most petitions use."""
    total = unseen = 0
    per_petition, new_words = [], Counter()
    for text in texts:
        tokens = [t for t in segment(normalize(text)) if t.strip()]
        missing = [t for t in tokens if t not in vocabulary]
        total, unseen = total + len(tokens), unseen + len(missing)
        per_petition.append(len(missing) / len(tokens) if tokens else 0.0)
        # Tokens with digits are amounts, dates and numbers of people; not vocabulary, maybe personal.
        new_words.update({t for t in missing if len(t) > 1 and not _DIGIT.search(t)})
    return {"token_share": unseen / total if total else 0.0, "tokens": total,
            "mean_petition_share": float(np.mean(per_petition)) if per_petition else 0.0,
            "top_new_words": [(w, c) for w, c in new_words.most_common(30) if c >= 3]}


def shares(values: Sequence[str] | dict[str, int], codes: list[str]) -> dict[str, float]:
    counts = Counter(values)
    total = sum(counts.values())
    return {c: (counts.get(c, 0) / total if total else 0.0) for c in codes}


def override_rates(decisions: pd.DataFrame | None) -> dict[str, Any] | None:
    """How often intake changed the model's suggestion, per suggested division."""
    if decisions is None or decisions.empty:
        return None
    known = decisions[decisions["suggested_division"].astype(str) != ""]
    if known.empty:
        return {"available": False, "n": len(decisions)}
    per_division = {}
    for code, group in known.groupby("suggested_division"):
        changed = int((group["division"] != group["suggested_division"]).sum())
        per_division[code] = {"n": len(group), "changed": changed, "rate": changed / len(group)}
    per_head = {h: float((known[h] != known[f"suggested_{h}"]).mean()) for h in HEADS}
    return {"available": True, "n": len(known), "per_division": per_division, "per_head": per_head}


def small_classes(counts: dict[str, dict[str, int]], taxonomy: Taxonomy) -> list[dict[str, Any]]:
    rows = []
    for head in HEADS:
        for code in taxonomy.codes(head):
            n = int(counts[head].get(code, 0))
            if n < MIN_EXAMPLES:
                rows.append({"head": head, "code": code, "name": taxonomy.name_of(head, code), "count": n,
                             "needed": MIN_EXAMPLES - n, "learned": n >= 2})
    return rows


def weak_classes(metrics: dict[str, Any], counts: dict[str, dict[str, int]], taxonomy: Taxonomy) -> list[dict[str, Any]]:
    rows = []
    for head in HEADS:
        for code, m in metrics[head]["per_class"].items():
            if m["support"] and m["f1"] < WEAK_F1:
                rows.append({"head": head, "code": code, "name": taxonomy.display_name(head, code),
                             "f1": m["f1"], "support": m["support"], "why": f"held-out F1 below {WEAK_F1}"})
        for code in taxonomy.codes(head):
            n = counts[head].get(code, 0)
            if n < 2:
                rows.append({"head": head, "code": code, "name": taxonomy.display_name(head, code), "f1": None,
                             "support": None, "why": f"{n} training examples: never predicted"})
    return rows



def _key_file() -> Path:
    """The file this run's key is read from, or made in when there is none."""
    return Path(os.environ.get("TRIAGE_SIGNING_KEY_FILE") or default_key_file()).absolute()


def _signing_key_if_any() -> SigningKey | None:
    """The key this run signs with, None when there is none yet (saving would make one)."""
    if not os.environ.get("TRIAGE_SIGNING_KEY") and not _key_file().exists():
        return None
    return signing_key(create=False)


def check_key_is_not_made_unasked(key: SigningKey | None, new_signing_key: bool) -> None:
    """Raise RegistryError when this run would make a signing key and sign with it although
    `new_signing_key` does not ask for one.

    Run from another folder than the service's, a first retrain (no champion, so no key to
    compare with) found no key under that folder's TRIAGE_HOME, made one there and signed
    the challenger with it: the service, which has its own key, refused the model once
    promoted. Refused before training, naming where it looked and how to point at the
    service's key."""
    if key is not None or new_signing_key:
        return
    home = Path(os.environ.get("TRIAGE_HOME") or "var").expanduser().absolute()
    raise RegistryError(f"no signing key: {_key_file()} does not exist (TRIAGE_HOME is {home}), so this run would "
                        "make a new key there and sign the model with it, and a service using its own key refuses "
                        "that model. Run it with the service's TRIAGE_HOME, or TRIAGE_SIGNING_KEY_FILE naming the "
                        "service's key file (e.g. in a .env file of the folder you run it in); to sign with a new key "
                        "on purpose (the service must then be given that key), add --new-signing-key")


def check_key_is_the_services(key: SigningKey | None, registry: Registry, in_service: str | Path | None) -> None:
    """Raise RegistryError when, on a first run (no champion), the model in service was signed
    with another key than this run's.

    The champion's key is checked by Registry.check_signing_key; before there is one, a run
    with its own key (a workstation's var/signing.key) only found that it could not load the
    model in service, went on without comparing, and signed the challenger with a key the
    service refuses."""
    if key is None or registry.champion() is not None or in_service is None:
        return
    try:
        signed = read_metadata(in_service).get(SIGNATURE)
    except ArtifactError:
        return  # not a model: _load_champion says so
    found = signed.get("key_id") if isinstance(signed, dict) else None
    if found is not None and found != key.key_id:
        raise RegistryError(f"the model in service ({in_service}) was signed with key id {found}, and this run has key "
                            f"id {key.key_id} from {key.source}: the service could not load what it registers. Run it "
                            "with the service's TRIAGE_HOME, or TRIAGE_SIGNING_KEY_FILE naming the service's key")


def _load_champion(registry: Registry, progress: Progress,
                   in_service: str | Path | None = None) -> tuple[str | None, Any, str | None, str | None]:
    """The model the challenger is compared with: its version, the loaded model (None when
    it cannot be loaded), why not, and the directory of the model in service when that
    stands in for a champion the registry does not have yet."""
    version = registry.champion()
    if version is not None:
        try:
            return version, load_model(registry.model_dir(version)), None, None
        except ArtifactError as exc:
            progress(f"champion {version} cannot be loaded ({exc}); only the challenger is evaluated")
            return version, None, str(exc), None
    # The first run: nothing is the champion yet, but a service is serving a model (the
    # default one, trained from the bundled corpus) and the first promotion replaces it.
    # Compared with it, a first challenger worse than what intake staff have now is refused
    # like any other, instead of going into service unchecked.
    if in_service is None:
        progress("the registry has no champion yet: nothing to compare with, only the challenger is evaluated")
        return None, None, None, None
    try:
        loaded = load_model(in_service)
    except ArtifactError as exc:
        progress(f"the registry has no champion yet, and the model served without one ({in_service}) cannot be "
                 f"loaded ({exc}): nothing to compare with, only the challenger is evaluated")
        return None, None, None, None
    progress(f"the registry has no champion yet: comparing with the model served without one, {loaded.version} "
             f"({in_service})")
    return loaded.version, loaded, None, str(in_service)


class HoldoutInfo(TypedDict):
    method: str
    description: str
    period: str | None
    dates: list[str] | None
    n: int
    ids: list[str]
    texts_also_in_training: int


class ModelScores(TypedDict):
    version: str | None
    ids: list[str] | None
    metrics: dict[str, Any] | None  # training.evaluate.evaluate_decisions


class Evaluation(TypedDict):
    holdout: HoldoutInfo
    challenger: ModelScores
    # With an "error" when the champion did not load, and "in_service" (its directory) when the
    # registry had no champion and the model served without one was scored in its place.
    champion: ModelScores | None
    key_metrics: list[str]
    tolerance: float
    checks: list[dict[str, Any]]  # Check.to_dict()


class RunData(TypedDict):
    sources: list[str]
    holdout_sources: list[str]
    rows_training: int
    rows_heldout: int
    training_period: list[str] | None
    heldout_period: list[str] | None
    undated_training: int
    label_counts: dict[str, Any]  # training, heldout, champion: per head, per label
    champion_period: list[str] | None
    small_classes: list[dict[str, Any]]
    min_examples: int
    quality: dict[str, Any]  # find_duplicates
    decisions: dict[str, Any] | None  # apply_decisions


class ModelCard(TypedDict):
    weak_classes: list[dict[str, Any]]
    weak_f1: float


class RetrainRun(TypedDict):
    """Everything the HTML report of a retraining run shows (training/report.py)."""

    version: str
    created_at: str
    by: str
    registry: str
    evaluation: Evaluation
    data: RunData
    drift: dict[str, Any]  # measure_drift
    card: ModelCard


@dataclass
class RetrainInputs:
    """The petitions a retraining run trains and compares on, and what reading them found."""

    train: pd.DataFrame
    held: pd.DataFrame
    split: Holdout
    quality: dict[str, Any]
    decision_frame: pd.DataFrame | None
    decision_info: dict[str, Any] | None
    texts_also_in_training: int


def read_inputs(data: Sequence[str | Path], taxonomy: Taxonomy, decisions: str | Path | None,
                holdout: Sequence[str | Path] | None, holdout_quarter: str | None, seed: int, sheet: str | None,
                progress: Progress) -> RetrainInputs:
    """The ledgers with duplicates and conflicts set aside, the recorded decisions applied,
    and the held-out petitions split off (a given ledger, a quarter, or a random 20 %)."""
    progress(f"reading {len(data)} ledger file(s) …")
    raw = read_frames(data, taxonomy, sheet)
    frame, conflicted, quality = find_duplicates(raw)
    progress(f"{len(raw)} rows: {quality['same_id_duplicates']['dropped']} repeated rows dropped, "
             f"{quality['conflicting_ids']['count']} ids with conflicting labels set aside, "
             f"{quality['same_text_conflicting_labels']['groups']} texts labelled differently under other ids")
    held_frame = None
    if holdout:
        progress(f"reading the held-out ledger(s) {', '.join(map(str, holdout))} …")
        held_frame, _, held_quality = find_duplicates(read_frames(holdout, taxonomy, sheet))
        quality["heldout_ledger"] = {k: v for k, v in held_quality.items() if k != "same_text_other_ids"}

    decision_frame, decision_info = None, None
    if decisions is not None:
        progress(f"reading decisions from {source_name(decisions)} …")
        decision_frame = read_decisions(decisions, taxonomy)
        frames = [frame] + ([held_frame] if held_frame is not None else [])
        frames, extra, decision_info = apply_decisions(frames, conflicted, decision_frame, Path(str(decisions)).name)
        frame = pd.concat([frames[0], extra], ignore_index=True)
        if held_frame is not None:
            held_frame = frames[1]
        progress(f"{len(decision_frame)} decisions: {decision_info['overridden_petitions']} petitions relabelled, "
                 f"{len(extra)} added as new petitions")

    if held_frame is not None:
        overlap = frame["id"].isin(set(held_frame["id"]))
        frame = frame[~overlap].reset_index(drop=True)
        split = Holdout("ledger", f"the petitions of {', '.join(Path(str(p)).name for p in holdout or [])} "
                        f"({len(held_frame)}); {int(overlap.sum())} of them also in the training ledgers "
                        "were taken out of training", None, frame, held_frame)
    else:
        split = choose_holdout(frame, seed=seed, quarter=holdout_quarter)
    train_frame = split.train.reset_index(drop=True)
    held = split.held.reset_index(drop=True)
    if len(held) < MIN_HOLDOUT or len(train_frame) < MIN_HOLDOUT:
        raise RetrainError("--data", f"{len(train_frame)} training and {len(held)} held-out petitions; "
                           f"both need at least {MIN_HOLDOUT} for a comparison")
    progress(f"held out {split.description}")
    train_keys = {re.sub(r"\s+", "", t) for t in texts_of(train_frame)}
    leaked = sum(re.sub(r"\s+", "", t) in train_keys for t in texts_of(held))
    return RetrainInputs(train_frame, held, split, quality, decision_frame, decision_info, int(leaked))



def measure_drift(train_frame: pd.DataFrame, held: pd.DataFrame, train_counts: dict[str, dict[str, int]],
                  codes: dict[str, list[str]], challenger: TriageModel, champion: Any, champion_version: str | None,
                  drift_decisions: list[dict], drift_meta: dict[str, Any] | None,
                  decision_frame: pd.DataFrame | None) -> dict[str, Any]:
    """How the held-out petitions differ from what the model in service learned from."""
    reference_counts = (drift_meta or {}).get("label_counts") or train_counts
    vocab_model = champion.model if champion is not None else challenger
    vocabulary = word_vocabulary(vocab_model)
    return {
        "predicted_by": champion_version if champion is not None else "challenger",
        "reference": f"champion {champion_version} training data" if drift_meta else "challenger training data",
        "predicted": {h: shares([d[h] for d in drift_decisions], codes[h]) for h in ("division", "risk")},
        "heldout_true": {h: shares(list(held[h]), codes[h]) for h in ("division", "risk")},
        "reference_labels": {h: shares(reference_counts.get(h, {}), codes[h]) for h in ("division", "risk")},
        "vocabulary_of": f"champion {champion_version}" if champion is not None else "the challenger",
        "unseen_heldout": unseen_words(vocabulary, texts_of(held)),
        "unseen_training": unseen_words(vocabulary, texts_of(train_frame)),
        "overrides": override_rates(decision_frame),
    }


def retrain(data: Sequence[str | Path], registry_dir: str | Path, decisions: str | Path | None = None,
            holdout: Sequence[str | Path] | None = None, holdout_quarter: str | None = None,
            taxonomy_path: str | Path = DEFAULT_TAXONOMY, seed: int = 0, by: str | None = None,
            key_metrics: Sequence[str] = DEFAULT_KEY_METRICS, tolerance: float = DEFAULT_TOLERANCE,
            progress: Progress = lambda _: None, sheet: str | None = None,
            in_service: str | Path | None = None, encoder: TextEncoder | None = None,
            encoder_below: float | None = ENCODER_BELOW, new_signing_key: bool = False) -> RetrainResult:
    """Trains, scores and registers a challenger (see the module's docstring).

    `in_service` is the model a service serves while the registry has no champion
    (TRIAGE_MODEL_DIR): on the first run it is scored in the champion's place, so that the
    first promotion is checked against what it replaces. Not used once there is a champion.
    With an `encoder`, the challenger has the optional encoder heads, routing asking it
    below `encoder_below` (docs/model.md). Without a signing key the run is refused unless
    `new_signing_key` asks for one to be made (check_key_is_not_made_unasked)."""
    registry = Registry(registry_dir)
    registry.read_state()  # a damaged registry stops the run before minutes of training
    # So does one that cannot be written: it was found only when registering, the training lost.
    registry.check_writable()
    key = _signing_key_if_any()
    registry.check_signing_key(key)
    check_key_is_not_made_unasked(key, new_signing_key)
    check_key_is_the_services(key, registry, in_service)
    taxonomy = load_taxonomy(taxonomy_path)
    codes = taxonomy_codes(taxonomy)
    by = by or current_user()

    inputs = read_inputs(data, taxonomy, decisions, holdout, holdout_quarter, seed, sheet, progress)
    train_frame, held, split, quality = inputs.train, inputs.held, inputs.split, inputs.quality
    decision_frame, decision_info = inputs.decision_frame, inputs.decision_info

    challenger, fitted = fit_with_thresholds(train_frame, taxonomy, seed=seed, progress=progress, encoder=encoder,
                                             encoder_below=encoder_below)
    challenger_ids, challenger_decisions = score(challenger, held, "challenger", progress)
    truth = label_arrays(held)
    challenger_metrics = evaluate_decisions(challenger_decisions, truth, codes)

    champion_version, champion, champion_error, stand_in = _load_champion(registry, progress, in_service)
    champion_block: dict[str, Any] | None = None
    drift_decisions, drift_meta = challenger_decisions, None
    if champion_version is not None:
        champion_block = {"version": champion_version, "ids": None, "metrics": None, "error": champion_error,
                          "in_service": stand_in}
    if champion is not None:
        who = f"model in service {champion_version}" if stand_in else f"champion {champion_version}"
        champion_ids, champion_decisions = score(champion.model, held, who, progress)
        champion_block = {"version": champion_version, "ids": champion_ids, "error": None,
                          "metrics": evaluate_decisions(champion_decisions, truth, codes), "in_service": stand_in}
        drift_decisions, drift_meta = champion_decisions, champion.metadata
    checks = compare(champion_block["metrics"] if champion_block else None, challenger_metrics,
                     tuple(key_metrics), tolerance)

    progress("measuring drift and data quality …")
    train_counts = {h: dict(Counter(train_frame[h])) for h in HEADS}
    drift = measure_drift(train_frame, held, train_counts, codes, challenger, champion, champion_version,
                          drift_decisions, drift_meta, decision_frame)
    digest = fingerprint(train_frame)
    version = registry.fresh_version(new_version_id(digest))
    label_counts = {
        "training": train_counts,
        "heldout": {h: dict(Counter(held[h])) for h in HEADS},
        "champion": (champion.metadata.get("label_counts") if champion is not None else None),
    }
    evaluation: Evaluation = {
        "holdout": {"method": split.method, "description": split.description, "period": split.period,
                    "dates": period_of(held), "n": len(held), "ids": held["id"].tolist(),
                    "texts_also_in_training": inputs.texts_also_in_training},
        "challenger": {"version": version, "ids": challenger_ids, "metrics": challenger_metrics},
        "champion": champion_block,
        "key_metrics": list(key_metrics), "tolerance": tolerance,
        "checks": [c.to_dict() for c in checks],
    }
    metadata = artifact_metadata(
        version=version, frame=train_frame, data_fingerprint=digest, sources=[str(p) for p in data],
        duplicates_dropped=quality["same_id_duplicates"]["dropped"], seed=seed, taxonomy=taxonomy,
        taxonomy_path=taxonomy_path, fitted=fitted, header={"created_by": by, "kind": "retrain"},
        training_data={"decisions": {k: v for k, v in (decision_info or {}).items() if k != "overrides"} or None},
        evaluation=evaluation)
    run: RetrainRun = {
        "version": version, "created_at": metadata["created_at"], "by": by, "registry": str(registry.root),
        "evaluation": evaluation,
        "data": {"sources": [str(p) for p in data], "holdout_sources": [str(p) for p in holdout or []],
                 "rows_training": len(train_frame), "rows_heldout": len(held),
                 "training_period": period_of(train_frame), "heldout_period": period_of(held),
                 "undated_training": int(train_frame["received_at"].isna().sum()),
                 "label_counts": label_counts, "champion_period": ((champion.metadata.get("training_data") or {})
                                                                   .get("period") if champion is not None else None),
                 "small_classes": small_classes(train_counts, taxonomy), "min_examples": MIN_EXAMPLES,
                 "quality": quality, "decisions": decision_info},
        "drift": drift,
        "card": {"weak_classes": weak_classes(challenger_metrics, train_counts, taxonomy), "weak_f1": WEAK_F1},
    }
    metadata["report_summary"] = {"drift": {k: v for k, v in drift.items() if k not in ("unseen_training",)},
                                  "small_classes": run["data"]["small_classes"],
                                  "weak_classes": run["card"]["weak_classes"]}
    progress("writing the report …")
    html = render_report(run, taxonomy)
    progress(f"registering {version} in {registry.root} …")
    model_dir = registry.register(challenger, metadata, html, by=by)
    return RetrainResult(version, model_dir, registry.report_path(version), metadata, checks)
