"""Where things live when nobody says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from training.corpus import DEFAULT_CORPUS

ROOT = Path(__file__).resolve().parent.parent


def default_model_dir() -> Path:
    return Path(os.environ.get("TRIAGE_MODEL_DIR", ROOT / "var" / "models" / "default"))


def default_corpus() -> Path:
    return DEFAULT_CORPUS
