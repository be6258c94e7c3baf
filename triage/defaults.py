"""Where things live when nobody says otherwise: the state under TRIAGE_HOME as the
service's settings define it (service/settings.py, the one place for settings), and the
bundled corpus."""

from __future__ import annotations

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


def default_model_dir() -> Path:
    return settings().model_dir


def default_registry_dir() -> Path:
    return settings().registry_dir


def default_corpus() -> Path:
    return DEFAULT_CORPUS
