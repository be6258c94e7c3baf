from __future__ import annotations

import csv

import pytest

from model.taxonomy import HEADS
from training.corpus import DEFAULT_CORPUS, generate, load_fragments
from triage.cli import main


def test_generator_is_deterministic():
    assert generate(n=200, seed=5) == generate(n=200, seed=5)
    assert generate(n=200, seed=5) != generate(n=200, seed=6)


def test_bundled_corpus_is_what_the_generator_makes():
    # The committed file must be reproducible from the fragments (triage corpus).
    with DEFAULT_CORPUS.open(encoding="utf-8", newline="") as handle:
        committed = list(csv.DictReader(handle))
    assert committed == generate(n=len(committed))


def test_the_corpus_has_as_many_petitions_as_asked(tmp_path, capsys):
    fragments = load_fragments()
    # Sizes whose rounded division shares add up to fewer (50 gave 49) or more than asked.
    for n in (1, 2, 15, 33, 50, 99, 101, 777):
        assert len(generate(n=n, seed=3, fragments=fragments)) == n, n
    out = tmp_path / "c.csv"
    assert main(["corpus", "--n", "50", "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 50
    for n in ("0", "-5"):
        with pytest.raises(SystemExit):
            main(["corpus", "--n", n, "--out", str(tmp_path / "none.csv")])
        assert "--n" in capsys.readouterr().err
    assert not (tmp_path / "none.csv").exists()


def test_bundled_corpus_covers_every_label(taxonomy):
    with DEFAULT_CORPUS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 4000
    for head in HEADS:
        assert {r[head] for r in rows} == set(taxonomy.codes(head)), head
    assert len({r["register"] for r in rows}) == 4
    # Each petition names the scenario it was written from, so training can keep siblings together.
    assert all(r["matter"] for r in rows) and 100 < len({r["matter"] for r in rows}) < len(rows)
