"""The bundled data: the province's taxonomy (taxonomy.toml), the generated training
corpus (corpus/petitions.csv) and the fragments it is generated from (corpus/fragments/).

A package so that the wheel carries these files and the code finds them through
importlib.resources wherever the project is installed, not by walking up from a source
file to a checkout that an installed wheel does not have."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled(*parts: str) -> Path:
    """The path of a bundled file or folder, e.g. ``bundled("corpus", "petitions.csv")``.

    A real path (readers open, glob and stat it): pip installs a wheel as files, and a
    checkout is files. Only a zipped installation has none, and that is refused by name."""
    root = files(__name__)
    if not isinstance(root, Path):
        raise RuntimeError(f"the bundled data of petition-triage must be installed as files, found {root!r}")
    return root.joinpath(*parts)
