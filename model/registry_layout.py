"""The files of a model registry, which training writes and the service reads (neither
imports the other, so the layout lives here):

    REGISTRY/registry.json          {"champion": version | null, "history": [entry, ...]},
                                    replaced atomically (temporary file, then rename)
    REGISTRY/models/<version>/      an artifact as model.artifact.save_model writes it,
                                    complete before registry.json names it; never overwritten
    REGISTRY/reports/<version>.html the training report of that version
"""

from __future__ import annotations

import re

REGISTRY_FILE = "registry.json"
MODELS_DIR = "models"
REPORTS_DIR = "reports"
LOCK_FILE = ".lock"
# A version is a directory name: no separators, no leading dot.
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
