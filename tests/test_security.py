"""Security properties of the service: which endpoints answer without a key, how keys are
compared and stored, where the request body limit applies, and that no personal number
reaches a log, at any level, nor an error answer. That a model file whose sha256 differs is
never unpickled is tested in tests/test_model_artifact.py."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serving import ServeProcess, serve_env

from service import keys as service_keys
from service.app import create_app
from service.database import Database
from service.keys import create_key, revoke_key, verify_key
from service.settings import Settings

# The only paths anybody may call without a key: probes, metrics and the API's documentation.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
# The pages (service/web/) need a signed-in session, not a key: see test_pages_need_a_session.
SIGN_IN = {"/signin"}
PII = {"resident ID": "110101199003071234", "mobile": "13812345678", "landline": "010-62345678",
       "bank card": "6222021234567890123"}
WITH_PII = {"title": f"欠薪，电话{PII['mobile']}",
            "body": f"我叫张三，身份证{PII['resident ID']}，座机{PII['landline']}，工资卡{PII['bank card']}，老板三个月没发工资。",
            "channel": "网上"}
LIMIT = 20_000


@dataclass
class Service:
    app: FastAPI
    client: TestClient
    keys: dict[str, str]
    db_path: Path


@pytest.fixture
def service(small_model_dir: Path, tmp_path: Path) -> Iterator[Service]:
    db_path = tmp_path / "triage.db"
    settings = Settings(database_url=f"sqlite:///{db_path}", model_dir=small_model_dir, max_request_bytes=LIMIT,
                        max_body_chars=2000, _env_file=None)
    app = create_app(settings)
    database = Database(settings.database_url)
    with database.sessions() as session:
        keys = {role: create_key(session, role) for role in ("intake", "reviewer", "analyst", "admin")}
        revoked = create_key(session, "admin")
        revoke_key(session, revoked.split("_")[1])
    database.engine.dispose()
    with TestClient(app) as client:
        yield Service(app, client, keys | {"revoked": revoked}, db_path)
    app.state.database.engine.dispose()


def routes_of(app: FastAPI) -> list[Any]:
    # FastAPI 0.16x keeps included routers as one entry each in app.routes; this walks into them.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(flatten(app.routes)) if flatten else list(app.routes)


def each_endpoint(app: FastAPI) -> Iterator[tuple[str, str]]:
    for route in routes_of(app):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, re.sub(r"\{[^}]+\}", "x", route.path)


def test_only_probes_metrics_and_docs_answer_without_a_key(service: Service) -> None:
    endpoints = [(m, p) for m, p in each_endpoint(service.app) if p.startswith("/v1/") or p in PUBLIC]
    protected = [(m, p) for m, p in endpoints if p not in PUBLIC]
    assert len(protected) >= 8 and {p for _, p in endpoints} >= PUBLIC
    for method, path in endpoints:
        answer = service.client.request(method, path, json={})
        if path in PUBLIC:
            assert answer.status_code == 200, (method, path, answer.status_code)
            continue
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
        for key in ("pt_deadbeef_not-a-key", service.keys["revoked"], "not even the format", service.keys["admin"] + "x"):
            assert service.client.request(method, path, json={}, headers={"X-API-Key": key}).status_code == 401, (method, path, key)
    # And every route that needs a key does get past the check with one (admin may do everything).
    for method, path in protected:
        answer = service.client.request(method, path, json={}, headers={"X-API-Key": service.keys["admin"]})
        assert answer.status_code not in (401, 403), (method, path, answer.text)


def test_pages_need_a_session_and_an_api_key_is_not_one(service: Service) -> None:
    pages = [(m, p) for m, p in each_endpoint(service.app) if not p.startswith("/v1/") and p not in PUBLIC | SIGN_IN]
    assert len(pages) >= 10
    for method, path in pages:
        for headers in ({}, {"X-API-Key": service.keys["admin"]}):
            answer = service.client.request(method, path, data={}, headers=headers, follow_redirects=False)
            # A page sends to the sign-in form; a form post without a session is refused or sent there too.
            assert answer.status_code in (303, 403), (method, path, answer.status_code)
            if answer.status_code == 303:
                assert answer.headers["location"].startswith("/signin"), (method, path, answer.headers["location"])


def test_without_a_key_nothing_of_the_request_is_read(service: Service) -> None:
    # Malformed, deeply nested or wrongly typed: the answer is the same 401, the body is not parsed.
    for content in (b"{not json", b"[" * 15_000, b'{"body": 1e999999}', "\udc00".encode("utf-8", "surrogatepass")):
        answer = service.client.post("/v1/triage", content=content, headers={"content-type": "application/json"})
        assert answer.status_code == 401, answer.text


def test_keys_are_compared_in_constant_time(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    source = inspect.getsource(verify_key)
    assert "hmac.compare_digest(" in source
    assert not re.search(r"key_hash\s*[!=]=|[!=]=\s*row\.key_hash", source), "a hash compared with == leaks timing"
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service_keys.hmac, "compare_digest", spy)
    key = service.keys["intake"]
    prefix = key.split("_")[1]
    forged = f"pt_{prefix}_{'A' * 32}"
    database = Database(f"sqlite:///{service.db_path}")
    with database.sessions() as session:
        assert verify_key(session, key) is not None
        assert verify_key(session, forged) is None
    database.engine.dispose()
    stored = hashlib.sha256(key.encode()).hexdigest()
    assert compared == [(stored, stored), (stored, hashlib.sha256(forged.encode()).hexdigest())]


def test_a_revoked_key_is_refused_once_its_last_check_is_older_than_key_check_seconds(
        small_model_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "triage.db"
    settings = Settings(database_url=f"sqlite:///{db_path}", model_dir=small_model_dir, key_check_seconds=1.0,
                        _env_file=None)
    app = create_app(settings)
    with TestClient(app) as client:
        database = Database(settings.database_url)
        with database.sessions() as session:
            key = create_key(session, "reviewer")
        headers = {"X-API-Key": key}
        assert client.get("/v1/review-queue", headers=headers).status_code == 200
        with database.sessions() as session:
            assert revoke_key(session, key)
        database.engine.dispose()
        # Verified a moment ago: taken without asking the database, as the setting says.
        assert client.get("/v1/review-queue", headers=headers).status_code == 200
        time.sleep(1.1)
        assert client.get("/v1/review-queue", headers=headers).status_code == 401
    app.state.database.engine.dispose()


def test_keys_are_stored_only_as_hashes(service: Service) -> None:
    # Use every key, so that whatever the service records about a request (audit, decisions) is on disk.
    triage = service.client.post("/v1/triage", json=WITH_PII, headers={"X-API-Key": service.keys["intake"]}).json()
    service.client.post("/v1/decisions", json={"triage_id": triage["triage_id"], "division": "labor_inspection",
                                               "decided_by": "张三"}, headers={"X-API-Key": service.keys["intake"]})
    service.client.post("/v1/model/reload", json={"model_dir": "nowhere"}, headers={"X-API-Key": service.keys["admin"]})
    service.client.get("/v1/review-queue", headers={"X-API-Key": service.keys["reviewer"]})
    on_disk = b"".join(p.read_bytes() for p in service.db_path.parent.glob(service.db_path.name + "*"))
    rows = sqlite3.connect(service.db_path).execute("SELECT key_hash FROM api_keys").fetchall()
    for key in service.keys.values():
        secret = key.split("_", 2)[2]
        assert key.encode() not in on_disk and secret.encode() not in on_disk
        assert (hashlib.sha256(key.encode()).hexdigest(),) in rows


def test_an_oversized_body_is_refused_before_it_is_parsed(service: Service) -> None:
    headers = {"X-API-Key": service.keys["intake"], "content-type": "application/json"}
    not_json = b"{" + b"x" * LIMIT
    assert service.client.post("/v1/triage", content=not_json, headers=headers).status_code == 413  # not 422: never parsed
    assert service.client.post("/v1/triage", content=not_json, headers={"content-type": "application/json"}).status_code == 413
    petition = {"title": "欠薪", "body": "工资" * LIMIT}
    answer = service.client.post("/v1/triage", json=petition, headers=headers)
    assert answer.status_code == 413 and str(LIMIT) in answer.json()["detail"]
    assert sqlite3.connect(service.db_path).execute("SELECT count(*) FROM triages").fetchone() == (0,)


def test_error_answers_do_not_echo_what_was_sent(service: Service) -> None:
    headers = {"X-API-Key": service.keys["intake"]}
    for payload in ({**WITH_PII, "title": [WITH_PII["title"]]}, {**WITH_PII, "channel": PII["mobile"]},
                    {**WITH_PII, "received_at": PII["resident ID"]}, {**WITH_PII, "external_id": WITH_PII["body"] * 5}):
        answer = service.client.post("/v1/triage", json=payload, headers=headers)
        assert answer.status_code == 422, answer.text
        assert not [kind for kind, number in PII.items() if number in answer.text], answer.text
        assert answer.json()["detail"][0]["loc"][0] == "body"  # still names the field


# --- the service as it runs: uvicorn on 127.0.0.1, every logger at its most verbose ------------------

SERVE = """
import logging, sys
import uvicorn
from service.app import create_app
from service.settings import Settings
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
uvicorn.run(create_app(Settings(_env_file=None)), host="127.0.0.1", port=int(sys.argv[1]), log_level="trace")
"""


@dataclass
class Server:
    base: str
    log: Path
    keys: dict[str, str]


@pytest.fixture(scope="module")
def server(small_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("uvicorn")
    url = f"sqlite:///{workdir / 'triage.db'}"
    database = Database(url)
    database.migrate()
    with database.sessions() as session:
        keys = {role: create_key(session, role) for role in ("intake", "reviewer")}
    database.engine.dispose()
    env = serve_env(url, small_model_dir, workdir, max_request_bytes=str(LIMIT), max_body_chars="2000")
    process = ServeProcess(workdir, env, command=lambda port: [sys.executable, "-c", SERVE, str(port)])
    try:
        process.start()
        yield Server(process.base, process.log, keys)
    finally:
        process.stop()


def _raw_request(server: Server, head: str, body: bytes) -> bytes:
    """One HTTP/1.1 request written by hand, so that nothing fixes its headers up."""
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with part of the refused body unread: the answer came before
    return answer


def test_an_oversized_body_with_its_length_is_refused_over_http(server: Server) -> None:
    # Only the headers are sent: the answer must come without the server waiting for a byte of the body.
    head = (f"POST /v1/triage HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {server.keys['intake']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {LIMIT * 3}\r\nConnection: close\r\n")
    assert _raw_request(server, head, b"").startswith(b"HTTP/1.1 413 ")


def _chunked(body: bytes, size: int) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)) + b"0\r\n\r\n"


def _post_chunked(server: Server, body: bytes, size: int = 4096) -> bytes:
    head = (f"POST /v1/triage HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {server.keys['intake']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n")
    return _raw_request(server, head, _chunked(body, size))


def test_an_oversized_chunked_body_is_refused_over_http(server: Server) -> None:
    answer = _post_chunked(server, b'{"body": "' + "工资".encode() * LIMIT + b'"}')
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert f'{{"detail":"request body over {LIMIT} bytes"}}'.encode() in answer  # as when the length is announced
    # One byte over is refused, and not parsed: this body is not even JSON.
    assert _post_chunked(server, b"{" + b"x" * LIMIT).startswith(b"HTTP/1.1 413 ")


def test_a_chunked_body_within_the_limit_is_served_over_http(server: Server) -> None:
    petition = json.dumps({"title": "欠薪", "body": "我在电子厂上班，老板三个月没发工资了。" * 20, "channel": "网上"}, ensure_ascii=False)
    # Chunks of 7 bytes split the three-byte characters: the app must see the body whole.
    answer = _post_chunked(server, petition.encode(), size=7)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["division"]["code"]
    # Exactly the limit is accepted and parsed: 422 (over max_body_chars), not 413.
    exactly = b'{"body": "' + b"x" * (LIMIT - 12) + b'"}'
    assert len(exactly) == LIMIT
    answer = _post_chunked(server, exactly)
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:300]


def test_no_personal_number_reaches_the_logs_at_any_level(server: Server) -> None:
    intake, reviewer = ({"X-API-Key": server.keys[r]} for r in ("intake", "reviewer"))
    with httpx.Client(base_url=server.base, timeout=60, trust_env=False) as client:
        triage = client.post("/v1/triage", json=WITH_PII, headers=intake).json()
        urgent = client.post("/v1/triage", json={**WITH_PII, "body": WITH_PII["body"] + "再不解决我就跳楼。"}, headers=intake).json()
        assert triage["stored"] and urgent["needs_review"]
        client.post("/v1/triage/batch", json={"petitions": [WITH_PII, {"title": WITH_PII["body"]}, {**WITH_PII, "channel": 7}]},
                    headers=intake).raise_for_status()
        # Refused requests: the 422 answers name the field; neither they nor the logs carry the text.
        refused = [client.post("/v1/triage", json=p, headers=intake) for p in (
            {**WITH_PII, "title": [WITH_PII["title"]]}, {**WITH_PII, "channel": PII["mobile"]},
            {**WITH_PII, "body": WITH_PII["body"] * 30}, {"title": WITH_PII["body"] * 30})]
        assert [r.status_code for r in refused] == [422] * 4
        client.post("/v1/decisions", json={"triage_id": triage["triage_id"], "division": "labor_inspection",
                                           "decided_by": "张三", "reason": f"已电话{PII['mobile']}核实"},
                    headers=intake).raise_for_status()
        client.post(f"/v1/review-queue/{urgent['triage_id']}/resolve", json={"note": f"已回电{PII['landline']}"},
                    headers=reviewer).raise_for_status()
        client.post("/v1/triage", content=b'{"body": "' + PII["mobile"].encode() + b'"', headers=intake)  # broken JSON
    time.sleep(0.5)  # the access log line is written after the answer
    text = server.log.read_text(encoding="utf-8", errors="replace")
    # The logs were captured at their most verbose: uvicorn's per-message trace and its access log.
    assert "ASGI [" in text and '"POST /v1/triage HTTP/1.1" 422' in text and '"POST /v1/decisions HTTP/1.1" 201' in text
    leaked = {kind for kind, number in PII.items() if number in text or number.replace("-", "") in text}
    assert not leaked, f"{leaked} in the server log"
    assert not [k for k in server.keys.values() if k.split("_", 2)[2] in text], "an API key in the server log"
