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
        raise SettingsError(f"invalid TRIAGE_ setting: {exc}") from None


def default_model_dir() -> Path:
    return settings().model_dir


def default_registry_dir() -> Path:
    return settings().registry_dir


def default_corpus() -> Path:
    return DEFAULT_CORPUS
