from __future__ import annotations

import csv

from model.taxonomy import HEADS
from training.corpus import DEFAULT_CORPUS, generate


def test_generator_is_deterministic():
    assert generate(n=200, seed=5) == generate(n=200, seed=5)
    assert generate(n=200, seed=5) != generate(n=200, seed=6)


def test_bundled_corpus_is_what_the_generator_makes():
    # The committed file must be reproducible from the fragments (triage corpus).
    with DEFAULT_CORPUS.open(encoding="utf-8", newline="") as handle:
        committed = list(csv.DictReader(handle))
    assert committed == generate(n=len(committed))


def test_bundled_corpus_covers_every_label(taxonomy):
    with DEFAULT_CORPUS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 4000
    for head in HEADS:
        assert {r[head] for r in rows} == set(taxonomy.codes(head)), head
    assert len({r["register"] for r in rows}) == 4
    # Each petition names the scenario it was written from, so training can keep siblings together.
    assert all(r["matter"] for r in rows) and 100 < len({r["matter"] for r in rows}) < len(rows)
