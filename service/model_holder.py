"""The model in service: swapped atomically on reload, and the same in every worker.

Each worker process holds its own copy of the model in memory, but which model is
in service is one shared fact: the registry's champion when TRIAGE_REGISTRY_DIR is
set (service/registry_watch.py), otherwise one row of the database (ServedModel),
which POST /v1/model/reload writes and every worker follows within
model_poll_seconds, and which a restart starts from."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.artifact import ArtifactError, LoadedModel, SigningKey, load_model
from service import heap
from service.database import SERVED_MODEL_ROW, Database, ServedModel, utcnow

log = logging.getLogger(__name__)


WARM_UP_PETITION = "公司拖欠工资三个月未发，请求劳动监察部门责令支付。"


class ModelHolder:
    """Requests take a reference to the current model once; a reload replaces the
    reference, so a request in flight finishes on the model it started with."""

    def __init__(self, key: SigningKey | None = None, loaded: LoadedModel | None = None) -> None:
        self.key = key
        self._loaded = loaded
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._loaded

    def reload(self, path: str | Path) -> LoadedModel:
        loaded = load_model(path, self.key)  # raises ArtifactError; the old model keeps serving
        self.serve(loaded)
        return loaded

    def serve(self, loaded: LoadedModel) -> None:
        # One suggestion before the model takes requests: what the model computes once, on
        # its first use, is then done here rather than by the first requests, together.
        loaded.model.suggest(WARM_UP_PETITION)
        with self._lock:
            self._loaded = loaded
        heap.settle()


def confined(path: str | Path, root: Path) -> Path:
    """`path` (relative ones taken from `root`) if it lies under `root` once symbolic
    links are resolved; ArtifactError otherwise."""
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ArtifactError(f"{path} is outside the model root {root} (TRIAGE_MODEL_ROOT); only models under it are loaded")
    return resolved


def served_model(session: Session) -> ServedModel | None:
    return session.get(ServedModel, SERVED_MODEL_ROW)


def put_in_service(session: Session, loaded: LoadedModel, actor: str) -> None:
    """Records `loaded` as the model every worker serves (committed by the caller)."""
    row = served_model(session)
    if row is None:
        row = ServedModel(id=SERVED_MODEL_ROW)
        session.add(row)
    row.path, row.version, row.changed_at, row.changed_by = str(loaded.path), loaded.version, utcnow(), actor


class Poller:
    """Runs `check()` every `poll_seconds` in a daemon thread between `start()` and `stop()`.
    A check that raises is logged and the thread goes on: one bad check must not leave
    a worker deaf to later changes."""

    thread_name = "poller"
    poll_seconds: float

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str | None:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception:
                log.exception("%s: check failed", self.thread_name)


class ServedModelFollower(Poller):
    """Keeps this worker's model the one the database names. A check is one primary-key
    read; a model that does not load is logged once and not retried until the row changes,
    and meanwhile the model this worker has keeps serving."""

    thread_name = "model-follower"

    def __init__(self, database: Database, models: ModelHolder, root: Path, poll_seconds: float) -> None:
        super().__init__(poll_seconds)
        self.database, self.models, self.root = database, models, root
        self._failed: tuple[str, str] | None = None
        # Held by a check, and by a reload in this worker from recording the model in the
        # database until it serves it: otherwise this worker's own check could find the row
        # changed in between and load the same model a second time.
        self.lock = threading.Lock()

    def check(self) -> str | None:
        """Loads the model in service when this worker serves another; returns its version
        when this call loaded it."""
        with self.lock:
            try:
                with self.database.sessions() as session:
                    row = session.scalar(select(ServedModel).where(ServedModel.id == SERVED_MODEL_ROW))
            except SQLAlchemyError:
                return None  # the database being down is logged by those who need it
            current = self.models.current
            if row is None or (current is not None and current.version == row.version and str(current.path) == row.path):
                return None
            wanted = (row.path, row.version)
            if wanted == self._failed:
                return None
            try:
                loaded = load_model(confined(row.path, self.root), self.models.key)
                if loaded.version != row.version:
                    raise ArtifactError(f"{row.path} now holds model {loaded.version}, not {row.version}")
            except ArtifactError as exc:
                self._failed = wanted
                log.error("model in service %s not loaded (%s); model %s keeps serving in this worker",
                          row.version, exc, current.version if current else "(none)")
                return None
            self.models.serve(loaded)
            self._failed = None
        log.info("now serving model %s from %s, as the database says", loaded.version, row.path)
        return loaded.version

