from __future__ import annotations

import json

import pytest

from model.artifact import METADATA_FILE, MODEL_FILE, ArtifactError, load_model, sign_artifact


def test_metadata_records_what_data_staff_need(small_model):
    meta = small_model.metadata
    for key in ("version", "created_at", "training_data", "taxonomy", "label_counts", "thresholds",
                "heldout_metrics", "libraries", "model_sha256"):
        assert key in meta
    assert meta["training_data"]["fingerprint"]
    assert meta["libraries"]["scikit-learn"]


def test_truncated_model_file_is_refused(copy_of):
    data = (copy_of / MODEL_FILE).read_bytes()
    (copy_of / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_model(copy_of)


def test_replaced_model_file_is_never_unpickled(copy_of, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (copy_of / MODEL_FILE).write_bytes(payload)
    with pytest.raises(ArtifactError, match="will not be unpickled"):
        load_model(copy_of)
    assert not marker.exists()


def test_other_scikit_learn_version_is_refused(copy_of):
    meta = json.loads((copy_of / METADATA_FILE).read_text(encoding="utf-8"))
    meta["libraries"]["scikit-learn"] = "0.24.2"
    (copy_of / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    sign_artifact(copy_of)  # as if signed where that version was installed
    with pytest.raises(ArtifactError, match=r"scikit-learn 0\.24\.2"):
        load_model(copy_of)


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        load_model(tmp_path / "nowhere")


def test_an_artifact_of_another_model_format_is_refused(copy_of):
    meta = json.loads((copy_of / METADATA_FILE).read_text(encoding="utf-8"))
    meta["model_format"] = 1
    (copy_of / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    sign_artifact(copy_of)
    with pytest.raises(ArtifactError, match="model format 1"):
        load_model(copy_of)
