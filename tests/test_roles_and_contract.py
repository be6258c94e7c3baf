"""Roles and the small print of the API contract: who may read the model, what a 403
says, 415 for a body that is not JSON, 422 for an unknown division filter, and the
README's role table being the one the code enforces."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.database import Database
from service.keys import ROLES, create_key
from service.roles import role_table
from service.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def service(small_model_dir, tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        keys = {role: create_key(session, role) for role in ROLES}
    with TestClient(app) as client:
        yield client, keys


@pytest.mark.parametrize(("role", "status"), [("intake", 403), ("reviewer", 403), ("analyst", 200), ("admin", 200)])
def test_the_model_is_shown_to_analysts_and_admins_only(service, role, status):
    client, keys = service
    assert client.get("/v1/model", headers={"X-API-Key": keys[role]}).status_code == status


def test_a_403_names_each_role_once(service):
    client, keys = service
    detail = client.post("/v1/model/reload", json={"model_dir": "x"}, headers={"X-API-Key": keys["intake"]}).json()["detail"]
    assert detail == "this endpoint needs the role admin; your key has 'intake'"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"])
def test_a_body_that_is_not_json_gets_415(service, content_type):
    client, keys = service
    response = client.post("/v1/triage", content=b'{"body": "x"}', headers={"X-API-Key": keys["intake"], "content-type": content_type})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    ok = client.post("/v1/triage", content='{"body": "工资"}'.encode(),
                     headers={"X-API-Key": keys["intake"], "content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200



@pytest.mark.parametrize(("path", "body"), [
    ("/v1/triage", '{"title": "欠薪", "body": "三个月没发工资"}'),
    ("/v1/triage/batch", '{"petitions": [{"title": "欠薪", "body": "三个月没发工资"}]}'),
])
def test_a_body_in_gbk_is_refused_saying_it_is_not_utf8(service, path, body):
    # Clients on Chinese office PCs often post GBK. The answer was "There was an error parsing
    # the body", which says nothing about what to change.
    client, keys = service
    response = client.post(path, content=body.encode("gbk"),
                           headers={"X-API-Key": keys["intake"], "content-type": "application/json; charset=gbk"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("the request body is not UTF-8 (byte 0x") and "GBK" in detail, detail
    # A body that is UTF-8 but not JSON is still a 422 naming the position.
    broken = client.post(path, content=body[:-1].encode(), headers={"X-API-Key": keys["intake"],
                                                                   "content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"


def test_an_unknown_division_filter_is_refused_not_answered_empty(service):
    client, keys = service
    response = client.get("/v1/review-queue?division=no_such_division", headers={"X-API-Key": keys["reviewer"]})
    assert response.status_code == 422
    # In the shape FastAPI gives its own validation errors, as the OpenAPI schema says of every 422.
    (error,) = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("value_error", ["query", "division"])
    assert error["msg"].startswith("division: unknown code or name 'no_such_division'; one of ")
    assert client.get("/v1/review-queue?division=pension", headers={"X-API-Key": keys["reviewer"]}).status_code == 200


def test_the_readme_role_table_is_the_one_the_code_enforces():
    readme = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- roles:begin.*?<!-- roles:end -->", readme, re.S)
    assert found, "README.md has no role table between the roles markers"
    assert found.group(0) == role_table(), "README.md's role table is stale: paste the output of `python -m service.roles`"


def test_every_error_status_the_api_answers_is_in_its_openapi_schema(service):
    # A client generated from /openapi.json knew only 200 and 422: a 404 for a mistyped id or a
    # 409 for an item already resolved reached the desk application as an unknown failure.
    client, keys = service
    spec = client.get("/openapi.json").json()
    triage_id = client.post("/v1/triage", json={"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"},
                            headers={"X-API-Key": keys["intake"]}).json()["triage_id"]
    client.post(f"/v1/review-queue/{triage_id}/resolve", json={"note": "已联系本人"}, headers={"X-API-Key": keys["reviewer"]})
    intake, reviewer, admin = ({"X-API-Key": keys[role]} for role in ("intake", "reviewer", "admin"))
    answered = [
        ("post", "/v1/triage", "/v1/triage", {}, {"body": "工资"}),
        ("post", "/v1/triage", "/v1/triage", {"X-API-Key": "pt_unknown"}, {"body": "工资"}),
        ("post", "/v1/triage", "/v1/triage", reviewer, {"body": "工资"}),
        ("post", "/v1/triage/batch", "/v1/triage/batch", {**intake, "content-type": "text/plain"}, None),
        ("post", "/v1/triage", "/v1/triage", {**intake, "content-type": "application/json"}, "工资".encode("gbk")),
        ("post", "/v1/decisions", "/v1/decisions", {**intake, "content-length": str(10**9)}, None),
        ("get", "/v1/triage/{triage_id}", "/v1/triage/no-such-id", intake, None),
        ("get", "/v1/triage/{triage_id}/decisions", "/v1/triage/no-such-id/decisions", intake, None),
        ("post", "/v1/decisions", "/v1/decisions", intake, {"triage_id": "no-such-id", "division": "pension", "decided_by": "张三"}),
        ("post", "/v1/review-queue/{triage_id}/resolve", f"/v1/review-queue/{triage_id}/resolve", reviewer, {"note": "再次处理"}),
        ("post", "/v1/model/reload", "/v1/model/reload", admin, {"model_dir": "no-such-model"}),
        ("get", "/v1/stats", "/v1/stats", intake, None),
    ]
    for method, route, url, headers, body in answered:
        content = body if isinstance(body, bytes) else None
        response = client.request(method, url, headers=headers, json=body if isinstance(body, dict) else None, content=content)
        listed = spec["paths"][route][method]["responses"]
        assert str(response.status_code) in listed, (method, url, response.status_code, sorted(listed))
        if response.status_code not in (200, 201, 422):
            assert list(response.json()) == ["detail"] and isinstance(response.json()["detail"], str), response.text
            assert listed[str(response.status_code)]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


@pytest.mark.parametrize("path", ["/v1/triage", "/v1/triage/batch"])
def test_a_gzip_body_is_refused_as_compressed_not_as_gbk(service, path):
    # The gzip bytes were decoded as text and the answer said the body was GBK, not UTF-8.
    client, keys = service
    body = {"body": "三个月没发工资"} if path == "/v1/triage" else {"petitions": [{"body": "三个月没发工资"}]}
    response = client.post(path, content=gzip.compress(json.dumps(body).encode()),
                           headers={"X-API-Key": keys["intake"], "content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 415, response.text
    assert "Content-Encoding: gzip" in response.json()["detail"] and "GBK" not in response.json()["detail"]
    assert response.headers["accept-encoding"] == "identity"
