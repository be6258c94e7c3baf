"""The model in service, swapped atomically on reload."""

from __future__ import annotations

import threading
from pathlib import Path

from model.artifact import LoadedModel, load_model


class ModelHolder:
    """Requests take a reference to the current model once; a reload replaces the
    reference, so a request in flight finishes on the model it started with."""

    def __init__(self, loaded: LoadedModel | None = None) -> None:
        self._loaded = loaded
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._loaded

    def reload(self, path: str | Path) -> LoadedModel:
        loaded = load_model(path)  # raises ArtifactError; the old model keeps serving
        with self._lock:
            self._loaded = loaded
        return loaded
