"""Model artifacts: one directory per trained model.

    model.joblib    the fitted TriageModel
    metadata.json   version, data fingerprint, taxonomy, thresholds, metrics,
                    library versions and the sha256 of model.joblib

A joblib file is a pickle, and unpickling runs code: the hash recorded at
training time is checked *before* the file is opened, and a model built
with another scikit-learn version is refused instead of silently mis-predicting."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib

from model.triage import TriageModel

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "rjieba")
# Bumped whenever TriageModel's fitted attributes change shape: a pickle of an
# older layout would load and then fail on the first prediction.
MODEL_FORMAT = 4


class ArtifactError(RuntimeError):
    """A model directory that must not be loaded; the message says why."""


@dataclass
class LoadedModel:
    model: TriageModel
    metadata: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.metadata["version"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    return {name: version(name) for name in LIBRARIES} | {"python": platform.python_version()}


def created_at_now() -> str:
    """When a model was made, to the microsecond: the registry lists versions in this
    order, and two trained within one second must not fall back on their ids' hashes."""
    return datetime.now(UTC).isoformat()


def new_version_id(fingerprint: str) -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + fingerprint[:8]


def save_model(model: TriageModel, out: str | Path, metadata: dict[str, Any]) -> Path:
    """Write the artifact into a temporary sibling directory and rename it into
    place, so `out` is either the old model or the complete new one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        joblib.dump(model, staging / MODEL_FILE, compress=3)
        metadata = dict(metadata)
        metadata["model_sha256"] = sha256_file(staging / MODEL_FILE)
        metadata["libraries"] = library_versions()
        metadata["model_format"] = MODEL_FORMAT
        (staging / METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False, indent=2), encoding="utf-8")
        for child in staging.iterdir():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
        if out.exists():
            retired = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / METADATA_FILE
    if not path.is_dir():
        raise ArtifactError(f"model directory not found: {path}")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{meta_path} is missing; not a model directory") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON ({exc.msg}); the artifact is damaged") from None
    for key in ("version", "model_sha256", "libraries"):
        if key not in metadata:
            raise ArtifactError(f"{meta_path} lacks '{key}'; the artifact is damaged or from another tool")
    return metadata


def load_model(path: str | Path) -> LoadedModel:
    path = Path(path)
    metadata = read_metadata(path)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{model_path} is missing")
    actual = sha256_file(model_path)
    if actual != metadata["model_sha256"]:
        raise ArtifactError(
            f"{model_path} does not match the sha256 recorded at training time "
            f"(recorded {metadata['model_sha256'][:12]}…, file {actual[:12]}…); "
            "it is truncated or was replaced, and will not be unpickled"
        )
    if metadata.get("model_format") != MODEL_FORMAT:
        raise ArtifactError(
            f"{path} has model format {metadata.get('model_format')}, this version of petition-triage reads "
            f"format {MODEL_FORMAT}; retrain the model (triage train)"
        )
    trained_with = metadata["libraries"].get("scikit-learn")
    installed = version("scikit-learn")
    if trained_with != installed:
        raise ArtifactError(
            f"{path} was trained with scikit-learn {trained_with}, this environment has {installed}; "
            "retrain the model (triage train) or install the matching version"
        )
    try:
        model = joblib.load(model_path)
    except Exception as exc:
        raise ArtifactError(f"{model_path} could not be loaded ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, TriageModel):
        raise ArtifactError(f"{model_path} holds a {type(model).__name__}, not a TriageModel")
    return LoadedModel(model=model, metadata=metadata, path=path)
