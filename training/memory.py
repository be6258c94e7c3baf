"""Whether a training run fits in memory, decided before it starts: a run that
outgrows the machine is killed by the kernel minutes in, with nothing said;
refused up front, it names what it would need and what there is."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from model.triage import HOLDOUT_ABOVE

# Peak memory of training grows with the characters of the petitions (character
# n-grams, word n-grams and their sparse matrices, and what the heads' solvers copy of
# them); these figures are lines through benchmarks/train_scale.py's peaks on
# real-length text (the whole process tree), raised so that the estimate errs on the
# high side. A large ledger (one fitted with a held-out sample, model.triage.HOLDOUT_ABOVE)
# needs less per character: its heads are fitted in the training process on one
# single-precision matrix built without a second copy of it, one head at a time, by
# solvers that read it in place or copy a bounded draw of its rows, where the folds
# of a smaller one each copy their rows.
BASE_BYTES = 2**30
BYTES_PER_CHARACTER = 330
BYTES_PER_CHARACTER_LARGE = 90
SKIP_VARIABLE = "TRIAGE_SKIP_MEMORY_CHECK"


class NotEnoughMemory(RuntimeError):
    """The estimated peak of a training run is more than the memory available."""


def estimate_training_bytes(texts: Sequence[str]) -> int:
    per_character = BYTES_PER_CHARACTER_LARGE if len(texts) > HOLDOUT_ABOVE else BYTES_PER_CHARACTER
    return BASE_BYTES + per_character * sum(map(len, texts))


def available_bytes() -> int | None:
    """Memory this process may still use: the kernel's MemAvailable, or the room left
    under the cgroup's limit (a container's) when that is smaller; None if unknown."""
    figures = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                figures.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            figures.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(figures) if figures else None


def check_training_memory(texts: Sequence[str], available: int | None = None) -> int:
    """The estimated peak in bytes; NotEnoughMemory when it is over what is available.
    Setting TRIAGE_SKIP_MEMORY_CHECK=1 lets a run try anyway."""
    estimate = estimate_training_bytes(texts)
    available = available_bytes() if available is None else available
    if available is not None and estimate > available and os.environ.get(SKIP_VARIABLE) != "1":
        characters = sum(map(len, texts))
        raise NotEnoughMemory(
            f"training on {len(texts):,} petitions ({characters:,} characters) needs an estimated "
            f"{estimate / 2**30:.1f} GiB of memory at its peak, and {available / 2**30:.1f} GiB is available; "
            f"train on fewer petitions or on a machine with more memory (or set {SKIP_VARIABLE}=1 to try anyway)")
    return estimate
