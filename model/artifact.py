"""Model artifacts: one directory per trained model.

    model.joblib    the fitted TriageModel
    metadata.json   version, data fingerprint, taxonomy, thresholds, metrics,
                    library versions, the sha256 of model.joblib and a signature

A joblib file is a pickle, and unpickling runs code. A sha256 alone proves
nothing (whoever can replace the pickle can recompute it), so the artifact is
signed: an HMAC-SHA256, with a key the model directory does not hold, over the
pickle's bytes and the rest of the metadata. The signature is checked *before*
the pickle is opened; an artifact made with another key, edited afterwards, or
never signed is refused. A model built with another scikit-learn version is
refused too, instead of silently mis-predicting.

The key: TRIAGE_SIGNING_KEY (the key itself), else the file TRIAGE_SIGNING_KEY_FILE,
else TRIAGE_HOME/signing.key (./var unless set), which is created (owner-only, 0600) the first time a model is
signed. Whoever trains and whoever serves must use the same key."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import platform
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib

from model.encoder import EncoderUnavailable
from model.registry_layout import MODELS_DIR, REGISTRY_FILE
from model.triage import TriageModel

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "rjieba")
# Bumped whenever TriageModel's fitted attributes change shape: a pickle of an
# older layout would load and then fail on the first prediction.
MODEL_FORMAT = 4
SIGNATURE = "signature"
def default_key_file() -> Path:
    """TRIAGE_HOME/signing.key (TRIAGE_HOME: ./var unless set, as service/settings.py reads it)."""
    return Path(os.environ.get("TRIAGE_HOME") or "var").expanduser().absolute() / "signing.key"


# Shorter keys are refused: an HMAC is only as strong as its key.
MIN_KEY_BYTES = 16
RESIGN_HINT = "if you trust this directory, sign it with `triage sign --model DIR`; otherwise retrain (triage train)"


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


class SigningKey:
    """The secret that signs artifacts, and a short public id of it for messages."""

    def __init__(self, secret: bytes, source: str) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ArtifactError(f"the signing key from {source} is {len(secret)} bytes; at least {MIN_KEY_BYTES} are needed")
        self.secret, self.source = secret, source
        self.key_id = hashlib.sha256(b"petition-triage key id:" + secret).hexdigest()[:12]


def make_private_dir(path: Path) -> None:
    """`path` and the parents it lacks, created owner-only (0700): the models, the key
    and the database under var/ are nobody else's to read."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)


def _key_from_file(path: Path, create: bool) -> SigningKey:
    if not path.exists() and create:
        make_private_dir(path.parent)
        # Written beside, then linked into place: two processes signing their first
        # model together both end up with the one key that won.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp makes it 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    try:
        secret = path.read_text(encoding="ascii").strip().encode("ascii")
    except FileNotFoundError:
        raise ArtifactError(f"signing key file {path} does not exist; set TRIAGE_SIGNING_KEY_FILE to the key "
                            "the models were signed with") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"signing key file {path} cannot be read: {exc}") from None
    if path.stat().st_mode & 0o006:
        raise ArtifactError(f"signing key file {path} is open to every user of this machine; chmod 600 it")
    return SigningKey(secret, str(path))


def signing_key(create: bool = True, secret: str | None = None, key_file: str | Path | None = None) -> SigningKey:
    """The key given (`secret`, else `key_file`), else the one the environment names (see
    the module docstring); `create` makes the key file when there is none, as the first
    training run does."""
    secret = secret or os.environ.get("TRIAGE_SIGNING_KEY")
    if secret:
        return SigningKey(secret.encode("utf-8"), "TRIAGE_SIGNING_KEY")
    key_file = key_file or os.environ.get("TRIAGE_SIGNING_KEY_FILE") or default_key_file()
    return _key_from_file(Path(key_file), create=create)


def _signature(key: SigningKey, model_path: Path, metadata: dict[str, Any]) -> str:
    mac = hmac.new(key.secret, b"petition-triage artifact v1\n", hashlib.sha256)
    unsigned = {k: v for k, v in metadata.items() if k != SIGNATURE}
    # Canonical JSON: key order and spacing of metadata.json do not matter, its content does.
    mac.update(json.dumps(unsigned, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    mac.update(b"\n")
    with model_path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            mac.update(block)
    return mac.hexdigest()


def sign_artifact(path: str | Path, key: SigningKey | None = None) -> dict[str, Any]:
    """Signs an artifact directory in place (metadata.json is replaced atomically) and
    returns its metadata. Only for artifacts one trusts: whatever is there gets signed."""
    path = Path(path)
    key = key or signing_key()
    metadata = read_metadata(path)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{model_path} is missing")
    metadata["model_sha256"] = sha256_file(model_path)
    metadata[SIGNATURE] = {"algorithm": "hmac-sha256", "key_id": key.key_id, "value": _signature(key, model_path, metadata)}
    _write_metadata(path / METADATA_FILE, metadata)
    return metadata


def _write_metadata(meta_path: Path, metadata: dict[str, Any]) -> None:
    tmp = meta_path.with_name(f".{meta_path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(metadata, ensure_ascii=False, indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(meta_path)


def verify_signature(path: Path, metadata: dict[str, Any], key: SigningKey) -> None:
    """Raises ArtifactError unless `metadata` and the pickle are what `key` signed."""
    signature = metadata.get(SIGNATURE)
    model_path = path / MODEL_FILE
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise ArtifactError(f"{path} is not signed (made before artifacts were signed, or its signature was "
                            f"removed); it will not be unpickled. {RESIGN_HINT}")
    if signature.get("key_id") != key.key_id:
        raise ArtifactError(f"{path} was signed with another key (key id {signature.get('key_id')}, this one has "
                            f"{key.key_id} from {key.source}); it will not be unpickled")
    if not hmac.compare_digest(signature["value"], _signature(key, model_path, metadata)):
        raise ArtifactError(f"{path}: the signature does not match model.joblib and metadata.json; one of them was "
                            "changed after signing, and will not be unpickled")


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


def check_replaceable(out: str | Path) -> None:
    """Raise ArtifactError when `out` exists and is not a model directory.

    Saving replaces `out` as a whole: a `--out` naming a ledger file, or a folder that
    holds anything but an earlier model's files (`--out .`, the desktop), would
    otherwise be deleted with everything in it. An empty folder is taken."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ArtifactError(f"{out} exists and is not a model directory; saving the model there would replace it. "
                            "Choose a new folder for the model (e.g. models/2026Q4)")
    others = sorted(child.name for child in out.iterdir() if child.name not in (MODEL_FILE, METADATA_FILE))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ArtifactError(f"{out} is a folder with other files in it ({shown}), not a model directory; saving the "
                            "model there would delete them. Choose a new or empty folder for the model "
                            "(e.g. models/2026Q4)")


def check_can_save(out: str | Path) -> None:
    """Raise OSError now when `save_model` could not write `out`: its folder is made
    (owner-only) and a staging directory tried in it; ArtifactError when `out` is
    something other than a model directory, which saving would delete. Training checks
    this first, so that a wrong --out is found before the fit, not after."""
    out = Path(out)
    check_replaceable(out)
    _staging_dir(out).rmdir()


def _staging_dir(out: Path) -> Path:
    """A new directory beside `out` (its folder made owner-only); an OSError names `out`, as
    the person typed it, not the temporary directory they never heard of."""
    try:
        make_private_dir(out.parent)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from exc


def save_model(model: TriageModel, out: str | Path, metadata: dict[str, Any], key: SigningKey | None = None) -> Path:
    """Write the signed artifact into a temporary sibling directory and rename it into
    place, so `out` is either the old model or the complete new one."""
    out = Path(out)
    key = key or signing_key()
    check_replaceable(out)
    staging = _staging_dir(out)
    try:
        joblib.dump(model, staging / MODEL_FILE, compress=3)
        # As it will be read back: the signature covers the JSON, not Python's view of it.
        metadata = json.loads(json.dumps(metadata, ensure_ascii=False))
        metadata["model_sha256"] = sha256_file(staging / MODEL_FILE)
        metadata["libraries"] = library_versions()
        if model.encoder is not None:  # its embeddings change with the package's version
            metadata["libraries"][model.encoder.package] = model.encoder.package_version()
            metadata["encoder"] = {"name": model.encoder.name, "heads": sorted(model.encoder_heads_),
                                   "weight": model.encoder_weight, "division_asked_below": model.encoder_below,
                                   "key_group_asked_above": model.encoder_key_group_above}
        metadata["model_format"] = MODEL_FORMAT
        metadata.pop(SIGNATURE, None)
        metadata[SIGNATURE] = {"algorithm": "hmac-sha256", "key_id": key.key_id,
                               "value": _signature(key, staging / MODEL_FILE, metadata)}
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


def _champion_of(registry_file: Path) -> str | None:
    try:
        champion = json.loads(registry_file.read_text(encoding="utf-8")).get("champion")
    except (OSError, ValueError, AttributeError):
        return None
    return champion if isinstance(champion, str) else None


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / METADATA_FILE
    if not path.is_dir():
        raise ArtifactError(f"model directory not found: {path}")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = ""
        if (path / REGISTRY_FILE).is_file():
            # `--model` given the registry itself: which of its directories is meant?
            champion = _champion_of(path / REGISTRY_FILE)
            hint = (f"; {path} is a model registry: give one of its versions, "
                    f"{path / MODELS_DIR / (champion or 'VERSION')}"
                    + (" (its champion)" if champion else "") + ", or see `triage models list --registry " + f"{path}`")
        raise ArtifactError(f"{meta_path} is missing; not a model directory{hint}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON ({exc.msg}); the artifact is damaged") from None
    for key in ("version", "model_sha256", "libraries"):
        if key not in metadata:
            raise ArtifactError(f"{meta_path} lacks '{key}'; the artifact is damaged or from another tool")
    return metadata


def load_model(path: str | Path, key: SigningKey | None = None) -> LoadedModel:
    """Loads a signed artifact; `key` defaults to `signing_key()`."""
    path = Path(path)
    metadata = read_metadata(path)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{model_path} is missing")
    # A missing key file is not created here: a new key could only refuse every model there is.
    verify_signature(path, metadata, key or signing_key(create=False))
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
    if model.encoder is not None:
        try:
            installed_encoder = model.encoder.package_version()
        except EncoderUnavailable as exc:
            raise ArtifactError(f"{path}: {exc}") from None
        trained_encoder = metadata["libraries"].get(model.encoder.package)
        if trained_encoder != installed_encoder:
            raise ArtifactError(
                f"{path} was trained with {model.encoder.package} {trained_encoder}, this environment has "
                f"{installed_encoder}; its embeddings differ: retrain the model or install the matching version")
        model.encoder.load()  # now, not on the first petition that needs it
    # The labels the service names and validates decisions against are the model's own.
    if "taxonomy" in metadata and model.taxonomy.to_dict() != metadata["taxonomy"]:
        raise ArtifactError(f"{model_path}: the model's taxonomy differs from the one in {METADATA_FILE}")
    return LoadedModel(model=model, metadata=metadata, path=path)
