"""Scoring ledgers in batches: the one loop every batch caller uses (predict,
evaluate, retrain), and a streaming scorer that writes a ledger of any size
with constant memory, its batches scored by worker processes on every core."""

from __future__ import annotations

import csv
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.triage import TriageModel
from training.ledger import check_output, iter_ledger, replaced_when_complete, spreadsheet_safe
from training.train import texts_of

Progress = Callable[[str], None]
BATCH = 1000
# Rows read, checked and scored at a time by `write_predictions`; with at most two
# batches per worker in flight, memory stays the same whatever the ledger's size.
STREAM_BATCH = 2000
# The progress line is written at most this often.
PROGRESS_SECONDS = 2.0
OUTPUT_FIELDS = ["id", "division", "division_confidence", "division_top3", "risk", "risk_confidence",
                 "key_group", "key_group_confidence", "needs_review", "rules", "model_version"]


def predict_in_batches(model: TriageModel, texts: Sequence[str], progress: Progress | None = None,
                       name: str = "petitions", batch: int = BATCH) -> list[dict[str, Any]]:
    """model.predict over `texts`, `batch` at a time (the features of a batch are one
    sparse matrix), saying how far it got after each batch."""
    decisions: list[dict[str, Any]] = []
    for start in range(0, len(texts), batch):
        decisions += model.predict(texts[start:start + batch])
        if progress is not None:
            progress(f"scoring {name}: {len(decisions)}/{len(texts)}")
    return decisions



def decision_cells(decision: dict[str, Any]) -> list[str]:
    """The columns of OUTPUT_FIELDS between the id and the model version."""
    d = decision
    return [d["division"], f"{d['division_confidence']:.4f}", ";".join(f"{c}:{p:.3f}" for c, p in d["division_top3"]),
            d["risk"], f"{d['risk_confidence']:.4f}", d["key_group"], f"{d['key_group_confidence']:.4f}",
            str(d["needs_review"]).lower(), ";".join(d["rules"])]


# ------------------------------------------------------------------ worker processes
_WORKER_MODEL: TriageModel | None = None


def _load_worker_model(model_dir: str) -> None:
    """Each worker loads the model once, when it starts (not once per batch)."""
    from model.artifact import load_model

    global _WORKER_MODEL
    _WORKER_MODEL = load_model(model_dir).model


def _score_in_worker(texts: list[str]) -> list[list[str]]:
    assert _WORKER_MODEL is not None
    return [decision_cells(d) for d in _WORKER_MODEL.predict(texts)]


@dataclass
class Written:
    rows: int
    seconds: float
    workers: int


def _batches(paths: Iterable[str | Path], taxonomy: Any, sheet: str | None, rows: int) -> Iterator[pd.DataFrame]:
    for path in paths:
        yield from iter_ledger(path, taxonomy, require_labels=False, sheet=sheet, chunk_rows=rows)


def write_predictions(model: TriageModel, model_dir: str | Path, version: str, paths: Sequence[str | Path],
                      out: str | Path, sheet: str | None = None, workers: int | None = None,
                      progress: Progress = lambda _: None, batch: int | None = None) -> Written:
    """Score the ledgers in `paths` into the CSV `out` (OUTPUT_FIELDS), replaced only when
    every row is written: a ledger error half-way leaves nothing behind.

    CSV and JSONL ledgers are read as they are scored, `batch` rows at a time (default
    STREAM_BATCH), so memory does not grow with the file. Unless there is only one
    batch, the batches are scored by `workers` processes (default: one per core), each with its own copy of the model
    loaded from `model_dir`, while this process reads, checks and writes."""
    started = time.perf_counter()
    out = Path(out)
    check_output(out, paths)
    batches = _batches(paths, model.taxonomy, sheet, batch or STREAM_BATCH)
    first = next(batches, None)
    second = next(batches, None) if first is not None else None
    workers = max(1, workers or os.cpu_count() or 1) if second is not None else 1
    written, last_report = 0, time.perf_counter()
    # As `train --out`, `backup --out` and `export-decisions --out` do: a folder named for the
    # results is made, not refused with a traceback after the model has loaded.
    with replaced_when_complete(out) as tmp, tmp.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(OUTPUT_FIELDS)

        def write(ids: list[str], cells: list[list[str]]) -> None:
            nonlocal written, last_report
            writer.writerows([spreadsheet_safe(str(pid)), *row, version] for pid, row in zip(ids, cells, strict=True))
            written += len(ids)
            if time.perf_counter() - last_report >= PROGRESS_SECONDS:
                last_report = time.perf_counter()
                progress(f"scored {written:,} petitions ({written / (last_report - started):,.0f}/s)")

        pending = [b for b in (first, second) if b is not None]
        if workers == 1:
            for frame in [*pending, *batches]:
                write(frame["id"].tolist(), [decision_cells(d) for d in model.predict(texts_of(frame))])
        else:
            # forkserver: workers start from a clean process, not a copy of this one's threads;
            # the server imports the model's modules once, so that each worker only loads the model.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["training.batch"])
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_load_worker_model,
                                     initargs=(str(model_dir),)) as pool:
                queue: deque[tuple[list[str], Future[list[list[str]]]]] = deque()
                try:
                    for frame in [*pending, *batches]:
                        queue.append((frame["id"].tolist(), pool.submit(_score_in_worker, texts_of(frame))))
                        if len(queue) >= 2 * workers:
                            ids, future = queue.popleft()
                            write(ids, future.result())
                    while queue:
                        ids, future = queue.popleft()
                        write(ids, future.result())
                except BaseException:
                    for _, future in queue:
                        future.cancel()
                    raise
    return Written(rows=written, seconds=time.perf_counter() - started, workers=workers)
