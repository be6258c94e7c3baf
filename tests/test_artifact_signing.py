"""Signed model artifacts: what is refused before anything is unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from model.artifact import METADATA_FILE, MODEL_FILE, SIGNATURE, ArtifactError, SigningKey, load_model, sign_artifact, signing_key


def _metadata(path):
    return json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))


def _write_metadata(path, meta):
    (path / METADATA_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def test_a_modified_pickle_with_a_recomputed_sha256_is_never_unpickled(copy_of, tmp_path):
    marker = tmp_path / "pwned"
    (copy_of / MODEL_FILE).write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    meta = _metadata(copy_of)
    meta["model_sha256"] = hashlib.sha256((copy_of / MODEL_FILE).read_bytes()).hexdigest()
    _write_metadata(copy_of, meta)
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_model(copy_of)
    assert not marker.exists()


@pytest.mark.parametrize("edit", ["taxonomy_sha256", "thresholds", "version"])
def test_edited_metadata_is_refused(copy_of, edit):
    meta = _metadata(copy_of)
    meta[edit] = "0" * 64 if edit != "thresholds" else {}
    _write_metadata(copy_of, meta)
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_model(copy_of)


def test_an_artifact_signed_with_another_key_is_refused(copy_of):
    sign_artifact(copy_of, SigningKey(b"another key of thirty-two bytes!", "test"))
    with pytest.raises(ArtifactError, match="signed with another key"):
        load_model(copy_of)
    # and with that key it loads: the refusal was the key, nothing else
    assert load_model(copy_of, SigningKey(b"another key of thirty-two bytes!", "test")).version


def test_an_unsigned_artifact_is_refused_with_how_to_resign(copy_of):
    meta = _metadata(copy_of)
    del meta[SIGNATURE]
    _write_metadata(copy_of, meta)
    with pytest.raises(ArtifactError, match=r"not signed.*triage sign --model"):
        load_model(copy_of)
    sign_artifact(copy_of)
    assert load_model(copy_of).version == meta["version"]


def test_a_taxonomy_that_differs_from_the_models_own_is_refused(copy_of):
    meta = _metadata(copy_of)
    meta["taxonomy"]["divisions"][0]["name"] = "改过的处室"
    _write_metadata(copy_of, meta)
    sign_artifact(copy_of)  # even signed: the pickle's labels and the metadata's must agree
    with pytest.raises(ArtifactError, match="taxonomy differs"):
        load_model(copy_of)


def test_the_key_file_is_created_owner_only_on_first_use(tmp_path, monkeypatch):
    key_file = tmp_path / "keys" / "signing.key"
    monkeypatch.delenv("TRIAGE_SIGNING_KEY", raising=False)
    monkeypatch.setenv("TRIAGE_SIGNING_KEY_FILE", str(key_file))
    with pytest.raises(ArtifactError, match="does not exist"):
        signing_key(create=False)
    first = signing_key()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert signing_key().key_id == first.key_id  # created once, then read
    os.chmod(key_file, 0o644)
    with pytest.raises(ArtifactError, match="chmod 600"):
        signing_key()


def test_the_key_setting_overrides_the_file(monkeypatch):
    monkeypatch.setenv("TRIAGE_SIGNING_KEY", "a key given by the operator, long enough")
    assert signing_key().source == "TRIAGE_SIGNING_KEY"
    monkeypatch.setenv("TRIAGE_SIGNING_KEY", "short")
    with pytest.raises(ArtifactError, match="at least 16"):
        signing_key()
