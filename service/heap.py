"""A serving worker's long-lived objects kept out of the garbage collector's full passes.

A worker holds hundreds of thousands of objects that live as long as it does: the
libraries, the model, the same-matter index. CPython's full collection visits every one
of them, and under load it ran every few seconds, stopping the whole worker each time
for longer than many requests take: the slowest answers of benchmarks/load.py were
those pauses. Once those objects are built they are moved to the permanent generation
(gc.freeze), which collections skip; objects made afterwards are collected as before."""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()


def settle() -> None:
    """Collects what is garbage now, then freezes every object still alive.

    Called when a worker's long-lived objects change: after the model is put into service
    and after the same-matter index is built. Unfreezing first lets a model replaced by a
    reload be collected; the collection is one pause, where otherwise there would be one
    every few seconds under load."""
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def freeze_new() -> None:
    """Freezes the objects made since the last freeze, without collecting first: for a
    structure that mostly grows, such as the same-matter index, whose new rows would
    otherwise make each full collection longer (the rows it drops, once a day, hold no
    reference cycle: they are freed when dropped, frozen or not). Garbage in a reference cycle made just
    before is kept for the worker's life, which is why this is not done per request."""
    with _lock:
        gc.freeze()
