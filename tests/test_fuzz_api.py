"""Every operation of the service's own OpenAPI schema, fuzzed with Schemathesis: data that
fits the schema and data that does not, sent with an admin key (so that it gets past the
key check), must never get a server error; without a key, every operation but health,
readiness and metrics must answer 401. Runs on SQLite, and on PostgreSQL when
TRIAGE_TEST_POSTGRES_URL is set (.ci/run sets it), which refuses what SQLite lets through
(a NUL character, a string longer than its column)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from postgres_db import POSTGRES_PARAM, throwaway_database
from schemathesis import GenerationMode
from schemathesis.python import asgi

from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings

PUBLIC = {"/healthz", "/readyz", "/metrics"}
URGENT = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
EXAMPLES = 30  # per operation and generation mode: the whole file runs in well under a minute


@dataclass
class Target:
    schema: Any
    client: TestClient
    admin: str
    triage_id: str  # a stored triage in the review queue, so that decisions and resolve get past their 404
    seen: dict[str, Counter] = field(default_factory=dict)


@pytest.fixture(scope="module", params=["sqlite", POSTGRES_PARAM])
def target(request: pytest.FixtureRequest, small_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'triage.db'}"
        else:
            url = stack.enter_context(throwaway_database("triage_fuzz")).render_as_string(hide_password=False)
        app = create_app(Settings(database_url=url, model_dir=small_model_dir, max_batch=5, max_body_chars=2000,
                                  database_retry_seconds=0, _env_file=None))
        keys = Database(url)
        try:
            with keys.sessions() as session:
                admin = create_key(session, "admin")
        finally:
            keys.engine.dispose()
        seeded = TestClient(app).post("/v1/triage", json=URGENT, headers={"X-API-Key": admin}).json()
        assert seeded["needs_review"] and seeded["stored"], seeded
        try:
            yield Target(schemathesis.openapi.from_asgi("/openapi.json", app), TestClient(app, raise_server_exceptions=False),
                         admin, seeded["triage_id"])
        finally:
            asgi.shutdown_lifespans()
            app.state.database.engine.dispose()


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= PUBLIC | {"/v1/triage", "/v1/decisions", "/v1/model/reload"}
    return operations


def _with_real_triage(op: Any, strategy: st.SearchStrategy, triage_id: str) -> st.SearchStrategy:
    """Half of the cases name the stored triage instead of a random id."""
    if op.path == "/v1/decisions":
        def point(case: Any) -> Any:
            if isinstance(case.body, dict):
                case.body["triage_id"] = triage_id
            return case
        return st.one_of(strategy, strategy.map(point))
    return strategy


def _fuzz(op: Any, strategy: st.SearchStrategy, send: Callable[[Any], Any], examples: int = EXAMPLES) -> None:
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        send(case)

    with contextlib.suppress(Unsatisfiable):  # an operation without parameters or body has no invalid data
        run()


def test_no_operation_answers_a_server_error(target: Target) -> None:
    failures: list[str] = []

    def send(case: Any) -> None:
        statuses = target.seen.setdefault(f"{case.operation.label} {mode}", Counter())
        try:
            response = case.call(headers={"X-API-Key": target.admin})
        except Exception as exc:  # the application raised instead of answering
            statuses["exception"] += 1
            failures.append(f"{case.operation.label} [{mode}] raised {type(exc).__name__}: {exc}\n  {case.as_curl_command()}")
            return
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{case.operation.label} [{mode}] -> {response.status_code} {response.text[:300]}\n"
                            f"  {case.as_curl_command()}")

    for op in _operations(target.schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = op.as_strategy(generation_mode=mode)
            if op.path == "/v1/review-queue/{triage_id}/resolve":
                strategy = st.one_of(strategy, op.as_strategy(generation_mode=mode,
                                                              path_parameters={"triage_id": target.triage_id}))
            _fuzz(op, _with_real_triage(op, strategy, target.triage_id), send)
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:15])
    # The key got every fuzzed request past authentication, and valid data was served.
    for label, statuses in target.seen.items():
        if label.endswith(str(GenerationMode.POSITIVE)):
            assert not statuses.keys() & {401, 403}, (label, statuses)
    assert target.seen[f"POST /v1/triage {GenerationMode.POSITIVE}"][200] > 0
    assert target.seen[f"GET /v1/stats {GenerationMode.POSITIVE}"][200] > 0


def test_without_a_key_every_protected_operation_answers_401(target: Target) -> None:
    wrong: list[str] = []
    for op in _operations(target.schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            def send(case: Any, mode: GenerationMode = mode) -> None:
                # Negative cases may carry a generated (wrong) key: this run sends none.
                for name in [n for n in case.headers or {} if n.lower() == "x-api-key"]:
                    del case.headers[name]
                response = case.call()
                expected = 200 if case.operation.path in PUBLIC else 401
                # A generated path parameter holding "/" leads to no route at all: the router's own 404.
                unrouted = response.status_code == 404 and response.json() == {"detail": "Not Found"}
                if response.status_code != expected and not unrouted:
                    wrong.append(f"{case.operation.label} [{mode}] -> {response.status_code} {response.text[:200]}\n"
                                 f"  {case.as_curl_command()}")

            _fuzz(op, op.as_strategy(generation_mode=mode), send, examples=15)
    assert not wrong, f"{len(wrong)} answers without a key that are not 401:\n" + "\n".join(wrong[:15])


# JSON that the generator does not produce: lone surrogates, NUL characters, numbers beyond
# a float, nesting deeper than the parser's recursion, strings longer than their column.
NUL, SURROGATE = "\\u0000", "\\ud800"
HOSTILE = [
    *[("post", "/v1/triage", f'{{"title": "{c}", "body": "工资"}}') for c in (NUL, SURROGATE)],
    *[("post", "/v1/triage", f'{{"body": "拖欠{c}工资"}}') for c in (NUL, SURROGATE)],
    *[("post", "/v1/triage", f'{{"body": "工资", "external_id": "{c}"}}') for c in (NUL, SURROGATE)],
    *[("post", "/v1/triage", f'{{"body": {n}}}') for n in ("1e999999", "NaN", "-Infinity", "1" * 5000)],
    ("post", "/v1/triage", "[" * 100_000 + "]" * 100_000),
    ("post", "/v1/triage", '{"body": "工资", "received_at": "0001-01-01T00:00:00+14:00"}'),
    ("post", "/v1/triage", '{"body": "工资", "received_at": "9999-12-31T23:59:59-14:00"}'),
    *[("post", "/v1/triage/batch", f'{{"petitions": [{{"body": "工资{c}"}}, {{"body": "工资"}}]}}') for c in (NUL, SURROGATE)],
    ("post", "/v1/triage/batch", '{"petitions": [{"body": 1e999999}]}'),
    *[("post", "/v1/decisions", f'{{"triage_id": "{{tid}}", "division": "pension", "decided_by": "张三{c}"}}')
      for c in (NUL, SURROGATE)],
    *[("post", "/v1/decisions", f'{{"triage_id": "{{tid}}", "division": "pension", "decided_by": "张三", "reason": "{c}"}}')
      for c in (NUL, SURROGATE)],
    *[("post", "/v1/decisions", f'{{"triage_id": "{c}", "division": "pension", "decided_by": "张三"}}') for c in (NUL, SURROGATE)],
    ("post", "/v1/decisions", '{"triage_id": "{tid}", "division": "' + "x" * 5000 + '", "decided_by": "张三"}'),
    ("post", "/v1/decisions", '{"triage_id": "' + "x" * 5000 + '", "division": "pension", "decided_by": "张三"}'),
    *[("post", "/v1/review-queue/{tid}/resolve", f'{{"note": "已联系{c}"}}') for c in (NUL, SURROGATE)],
    ("post", "/v1/review-queue/%00/resolve", '{"note": "已联系"}'),
    ("post", "/v1/review-queue/" + "x" * 5000 + "/resolve", '{"note": "已联系"}'),
    ("get", "/v1/review-queue?division=%00", None),
    ("get", "/v1/review-queue?division=" + "x" * 5000, None),
    ("get", "/v1/review-queue?since=0001-01-01T00:00:00%2B14:00", None),
    ("get", "/v1/stats?since=9999-12-31T23:59:59-14:00&until=0001-01-01", None),
    *[("post", "/v1/model/reload", f'{{"model_dir": "{c}"}}') for c in (NUL, SURROGATE, "x" * 5000, "")],
]


@pytest.mark.parametrize(("method", "path", "body"), [
    pytest.param(*case, id=f"{i}-{case[0]}-{case[1].split('?')[0][:30]}") for i, case in enumerate(HOSTILE)])
def test_hostile_json_gets_a_4xx_or_an_answer_never_a_server_error(target: Target, method: str, path: str, body: str | None) -> None:
    headers = {"X-API-Key": target.admin, "content-type": "application/json"}
    content = None if body is None else body.replace("{tid}", target.triage_id).encode()
    response = target.client.request(method, path.replace("{tid}", target.triage_id), content=content, headers=headers)
    assert response.status_code < 500, response.text[:300]
    response.json()  # an answer a client can read, whatever came in
