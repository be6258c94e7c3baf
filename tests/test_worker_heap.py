"""A serving worker keeps its long-lived objects out of the garbage collector's full
passes (service/heap.py), and a model replaced by a reload is still freed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from service.model_holder import ModelHolder
from tests.conftest import _session_key


def test_the_model_in_service_is_frozen_and_the_one_it_replaced_is_freed(small_model_dir: Path) -> None:
    with _session_key():
        holder = ModelHolder()
        first = holder.reload(small_model_dir)
        # Frozen: full collections no longer visit the model's objects.
        assert gc.get_freeze_count() > 0
        assert not any(o is first.model.heads_ for o in gc.get_objects())
        gone = weakref.ref(first.model)
        del first
        holder.reload(small_model_dir)
    # The replaced model is collected even though it had been frozen.
    assert gone() is None
    gc.unfreeze()
