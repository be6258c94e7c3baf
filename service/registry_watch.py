"""Serving the model registry's champion, and picking up a promotion without a restart.

The contract with the training side is model/registry_layout.py. A check costs one or two stat() calls; registry.json is read only when it changed.
A champion that does not load is logged and the model in service keeps serving; it
is tried again only when registry.json or the champion's metadata.json changes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from model.artifact import METADATA_FILE, ArtifactError, LoadedModel
from model.registry_layout import MODELS_DIR, REGISTRY_FILE, VERSION_NAME
from service.model_holder import ModelHolder, Poller, confined

log = logging.getLogger(__name__)

Signature = tuple[int, int, int] | None


class RegistryError(RuntimeError):
    """registry.json cannot be used; the message names the file and the problem."""


def _signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError:
        return None
    # The inode changes on every atomic replace, even within one mtime tick.
    return stat.st_mtime_ns, stat.st_ino, stat.st_size


def read_champion(registry_dir: Path) -> str | None:
    path = registry_dir / REGISTRY_FILE
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(content, dict) or "champion" not in content:
        raise RegistryError(f"{path}: expected an object with a 'champion' field")
    champion = content["champion"]
    if champion is None:
        return None
    # The version becomes a path: only names the training side can register (nothing like "../x").
    if not isinstance(champion, str) or not VERSION_NAME.match(champion):
        raise RegistryError(f"{path}: champion must be a version name or null, got {champion!r}")
    return champion


def champion_dir(registry_dir: Path, version: str) -> Path:
    return registry_dir / MODELS_DIR / version


class RegistryWatch(Poller):
    thread_name = "registry-watch"

    def __init__(self, registry_dir: Path, models: ModelHolder, poll_seconds: float = 5.0,
                 on_promote: Callable[[str, LoadedModel], None] | None = None) -> None:
        super().__init__(poll_seconds)
        self.registry_dir = Path(registry_dir)
        self.models = models
        self.on_promote = on_promote
        self.served: str | None = None  # the registry version last put into service
        self._registry_seen: Signature | tuple[str] = ("never",)
        self._champion: str | None = None
        self._failed: tuple[str, Signature] | None = None
        self._lock = threading.Lock()

    def check(self) -> str | None:
        """Puts the registry's champion into service when it is not already; returns
        the version loaded by this call, or None when nothing changed."""
        with self._lock:
            registry_file = self.registry_dir / REGISTRY_FILE
            seen = _signature(registry_file)
            if seen != self._registry_seen:
                self._registry_seen = seen
                if seen is None and not registry_file.exists():
                    # Nothing registered yet: the first `triage retrain` writes registry.json.
                    log.info("model registry %s is empty: nothing registered yet", self.registry_dir)
                    self._champion = None
                    return None
                try:
                    self._champion = read_champion(self.registry_dir)
                except RegistryError as exc:
                    log.error("model registry: %s; model %s keeps serving", exc, self._current())
                    self._champion = None
                    return None
                if self._champion is None:
                    log.warning("model registry %s names no champion; model %s keeps serving",
                                registry_file, self._current())
            champion = self._champion
            if champion is None or champion == self.served:
                return None
            path = champion_dir(self.registry_dir, champion)
            attempt = (champion, _signature(path / METADATA_FILE))
            if attempt == self._failed:
                return None
            try:
                # models/<version> may be a symbolic link: it must still lead into the registry.
                loaded = self.models.reload(confined(path, self.registry_dir))
            except ArtifactError as exc:
                self._failed = attempt
                log.error("model registry: champion %s not loaded (%s); model %s keeps serving",
                          champion, exc, self._current())
                return None
            self.served, self._failed = champion, None
        log.info("model registry: now serving champion %s (model version %s) from %s", champion, loaded.version, path)
        if self.on_promote is not None:
            self.on_promote(champion, loaded)
        return loaded.version

    def _current(self) -> str:
        current = self.models.current
        return current.version if current else "(none)"


