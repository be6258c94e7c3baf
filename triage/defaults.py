"""Where things live when nobody says otherwise: the state under TRIAGE_HOME as the
service's settings define it (service/settings.py, the one place for settings), and the
bundled corpus."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from training.corpus import DEFAULT_CORPUS

if TYPE_CHECKING:
    from service.settings import Settings


class SettingsError(ValueError):
    """A TRIAGE_ setting (environment or .env) is invalid; the message names it."""


def settings() -> Settings:
    # Read when a command needs a default, not when the parser is built: `triage --help`
    # and commands given every path work whatever the environment holds.
    from pydantic import ValidationError

    from service.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        raise SettingsError(settings_problem(exc)) from None


def settings_problem(exc: Exception) -> str:
    """What is wrong with the TRIAGE_ settings, one line per variable as a person sets it
    (TRIAGE_WORKERS, not `workers`). Values are not repeated: one may be a key. The path
    settings whose defaults could not be made because another setting is wrong are not
    listed, as they are not wrong themselves."""
    errors = [e for e in exc.errors() if e["type"] != "default_factory_not_called"]  # type: ignore[attr-defined]
    lines = [f"TRIAGE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in errors]
    return "invalid TRIAGE_ setting: " + "; ".join(lines or [str(exc)])


@contextlib.contextmanager
def signing_settings_in_environment() -> Iterator[None]:
    """While a command runs, the signing key's settings that a `.env` file gives (TRIAGE_HOME,
    TRIAGE_SIGNING_KEY, TRIAGE_SIGNING_KEY_FILE) are in the process's environment too, where
    model/artifact.py, which knows nothing of the service's settings, and the processes the
    command starts read them. Otherwise training signed with ./var/signing.key while the
    service, reading the same .env, looked for the key under its TRIAGE_HOME and refused to
    start. Variables already set are left alone; those added are taken out afterwards."""
    added = []
    try:
        configured = settings()
    except SettingsError:
        configured = None  # a command that needs a setting says what is wrong with it
    if configured is not None:
        wanted = {"TRIAGE_HOME": str(configured.home.expanduser().absolute()),
                  "TRIAGE_SIGNING_KEY": configured.signing_key.get_secret_value() if configured.signing_key else None,
                  "TRIAGE_SIGNING_KEY_FILE": str(configured.signing_key_file.expanduser().absolute())}
        for name, value in wanted.items():
            if value is not None and name not in os.environ:
                os.environ[name] = value
                added.append(name)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def default_model_dir() -> Path:
    return settings().model_dir


def default_registry_dir() -> Path:
    return settings().registry_dir


def default_corpus() -> Path:
    return DEFAULT_CORPUS
