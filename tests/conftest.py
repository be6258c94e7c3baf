from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.artifact import LoadedModel, load_model
from model.taxonomy import Taxonomy, load_taxonomy
from training.corpus import generate, write_corpus
from training.train import train


@pytest.fixture(scope="session", autouse=True)
def triage_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tests' own TRIAGE_HOME: an app built in a test must not serve a registry
    champion or use a database the developer left in ./var."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("triage-home")
        patch.setenv("TRIAGE_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real corpus file from the project's generator, small enough to train in seconds."""
    path = tmp_path_factory.mktemp("corpus") / "small.csv"
    write_corpus(generate(n=900, seed=7), path)
    return path


@pytest.fixture(scope="session")
def small_model_dir(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "small"
    with _session_key():
        train([small_corpus], out, seed=0)
    return out


@pytest.fixture(scope="session")
def small_model(small_model_dir: Path) -> LoadedModel:
    with _session_key():
        return load_model(small_model_dir)


@pytest.fixture
def copy_of(small_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the small model's artifact that a test may damage."""
    target = tmp_path / "model"
    shutil.copytree(small_model_dir, target)
    return target


@contextlib.contextmanager
def _session_key() -> Iterator[None]:
    """The session's signing key (TRIAGE_HOME/signing.key), whatever key the test that first
    asks for a session fixture has set up for itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRIAGE_SIGNING_KEY", raising=False)
        patch.delenv("TRIAGE_SIGNING_KEY_FILE", raising=False)
        yield
