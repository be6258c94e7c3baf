"""The 模型 page: the registry's versions and reports, promote and rollback with a recorded
reason; and the sign-in form's own CSRF token. In-process (Starlette's client), a real registry."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from serving import app_with_key

from model.artifact import MODEL_FILE
from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings
from training.registry import Registry


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def signed_in(client: TestClient, key: str, landing: str = "/models") -> str:
    form = client.get("/signin")
    response = client.post("/signin", data={"key": key, "csrf_token": csrf_of(form.text), "next": landing})
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


@pytest.fixture
def admin(small_model, tmp_path):
    registry = Registry(tmp_path / "registry")
    for version in ("v1", "v2"):
        registry.register(small_model.model, {**small_model.metadata, "version": version}, f"<html><body>report {version}</body></html>")
    registry.promote("v1", by="test", force=True, reason="first champion")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=tmp_path / "none", registry_dir=registry.root)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        keys = {role: create_key(session, role, label=f"{role}-desk") for role in ("admin", "analyst")}
    with TestClient(app) as client:
        yield client, keys, registry, tmp_path / "triage.db"


def test_admin_sees_versions_and_reports_and_promotes_and_rolls_back_with_a_reason(admin):
    client, keys, registry, _ = admin
    csrf = signed_in(client, keys["admin"])
    page = client.get("/models").text
    assert "v1" in page and "v2" in page and "/models/v1/report" in page
    assert "report v2" in client.get("/models/v2/report").text
    refused = client.post("/models/promote", data={"version": "v2", "reason": " ", "csrf_token": csrf})
    assert refused.status_code == 422 and registry.champion() == "v1"
    promoted = client.post("/models/promote", data={"version": "v2", "reason": "季度重训", "force": "true", "csrf_token": csrf})
    assert promoted.status_code == 200 and registry.champion() == "v2"
    assert registry.read_state()["history"][-1]["reason"] == "季度重训"
    rolled = client.post("/models/rollback", data={"reason": "改派率上升", "csrf_token": csrf})
    assert rolled.status_code == 200 and registry.champion() == "v1"
    assert client.post("/models/rollback", data={"reason": "no token"}).status_code == 403 and registry.champion() == "v1"


def test_the_models_page_is_for_admins_only(admin):
    client, keys, _, _ = admin
    signed_in(client, keys["analyst"], landing="/overview")
    assert client.get("/models").status_code == 403
    assert client.get("/models/v1/report").status_code == 403


def test_sign_in_needs_the_forms_own_token(admin):
    client, keys, _, _ = admin
    client.get("/signin")
    response = client.post("/signin", data={"key": keys["admin"], "csrf_token": "forged"}, follow_redirects=False)
    assert response.status_code == 403 and "triage_session" not in response.cookies


def test_the_models_and_overview_pages_give_times_on_the_offices_clock(admin):
    # They showed the metadata's and the registry's UTC text, e.g. 2026-12-07T08:16:29.107530+00:00.
    client, keys, registry, _ = admin
    signed_in(client, keys["admin"])
    page = client.get("/models").text
    versions = re.search(r'<table id="versions">.*?</table>', page, re.S).group(0)
    assert "北京时间" in versions and "+00:00" not in page
    history = registry.read_state()["history"][-1]["at"]
    assert history.endswith("+00:00") and history not in page
    overview = client.get("/overview").text
    assert re.search(r"训练于 \d{4}-\d\d-\d\d \d\d:\d\d 北京时间", overview) and "+00:00" not in overview


def test_before_any_registry_the_models_page_says_how_one_is_made(small_model_dir, tmp_path):
    # A fresh install: an empty table under promote and rollback forms, and 回滚 answered
    # "no registry at … (registry.json is missing)".
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir,
                        registry_dir=tmp_path / "registry")
    with app_with_key(settings, "admin") as (client, key, _):
        csrf = signed_in(client, key)
        page = client.get("/models").text
        assert 'id="no-registry"' in page and "triage retrain" in page and 'action="/models/rollback"' not in page
        rolled = client.post("/models/rollback", data={"reason": "试一下", "csrf_token": csrf})
        assert rolled.status_code == 409 and "还没有模型仓库" in rolled.text and "no registry" not in rolled.text


def test_the_models_history_names_who_promoted_by_their_keys_label(admin):
    # The history's 操作人 column showed key:3f9a0c1e(admin), not the label the key was made with.
    client, keys, _, _ = admin
    csrf = signed_in(client, keys["admin"])
    client.post("/models/promote", data={"version": "v2", "reason": "季度重训", "force": "true", "csrf_token": csrf})
    history = re.search(r"<h2>历史</h2>.*?</table>", client.get("/models").text, re.S).group(0)
    assert "admin-desk" in history and "key:" not in history


def _error_of(response) -> str:
    return re.search(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S).group(1)


def test_a_refused_promotion_or_rollback_is_said_in_chinese_naming_the_version(admin):
    # The admin read the registry's English under a Chinese page, e.g. "v1 is the first
    # champion of /srv/…/registry; there is no previous one to restore".
    client, keys, registry, _ = admin
    csrf = signed_in(client, keys["admin"])

    def refusal(action: str, **form: str) -> str:
        response = client.post(f"/models/{action}", data={"reason": "测试", "csrf_token": csrf, **form})
        assert response.status_code == 409
        message = _error_of(response)
        assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,} [A-Za-z]{3,}", message), message  # no English sentence
        return message

    assert "v1 是模型仓库的第一个在用版本，没有可以回滚到的上一个版本" in refusal("rollback")
    assert refusal("promote", version="v9") == "仓库中没有版本 v9（已登记的版本：v1, v2）。"
    assert refusal("promote", version="v1") == "v1 已是在用版本。"
    # v2 was not scored against the champion v1 (the fixture registers it without an evaluation).
    assert "版本 v2 训练时比较的是 （没有在用版本），而现在的在用版本是 v1" in refusal("promote", version="v2")

    metadata_file = registry.model_dir("v2") / "metadata.json"
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    metadata["signature"] = {**metadata["signature"], "key_id": "0ther"}
    metadata_file.write_text(json.dumps(metadata), encoding="utf-8")
    assert "版本 v2 的签名密钥（0ther）与在用版本 v1 的" in refusal("promote", version="v2")

    model_file = registry.model_dir("v2") / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[:100])
    damaged = refusal("promote", version="v2")
    assert damaged.startswith(f"版本 v2 的模型文件 {model_file} 与其元数据记录的不符"), damaged
    assert registry.champion() == "v1"
    # A version whose metadata cannot be read is listed as damaged, in Chinese too.
    metadata_file.write_text("{", encoding="utf-8")
    versions = re.search(r'<table id="versions">.*?</table>', client.get("/models").text, re.S).group(0)
    assert f"损坏：{metadata_file} 不是有效的 JSON" in versions and "damaged" not in versions


def test_a_promotion_refused_for_worse_metrics_gives_them_in_chinese(admin, small_model):
    client, keys, registry, _ = admin
    evaluation = {"champion": {"version": "v1", "metrics": {"division": {"macro_f1": 0.9}, "risk": {"high_recall": 0.8}}},
                  "challenger": {"metrics": {"division": {"macro_f1": 0.7}, "risk": {"high_recall": 0.8}}}}
    registry.register(small_model.model, {**small_model.metadata, "version": "v3", "evaluation": evaluation})
    csrf = signed_in(client, keys["admin"])
    response = client.post("/models/promote", data={"version": "v3", "reason": "测试", "csrf_token": csrf})
    assert response.status_code == 409 and registry.champion() == "v1"
    assert _error_of(response) == ("版本 v3 的指标不如在用版本 v1：承办处室 macro_f1 为 0.700，在用版本为 0.900（相差 -0.200，容差 0.02）。"
                                   "如仍要上线，请勾选「指标未比较或变差时仍上线」并填写理由。")
