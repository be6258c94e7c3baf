from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings

PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资。我的电话13812345678，身份证110101199003071234。",
            "channel": "网上"}
URGENT = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}


@pytest.fixture
def service(small_model_dir, tmp_path):
    db_path = tmp_path / "triage.db"
    settings = Settings(database_url=f"sqlite:///{db_path}", model_dir=small_model_dir, max_body_chars=2000, max_batch=5,
                        model_root=small_model_dir.parent.parent)
    app = create_app(settings)
    database = Database(settings.database_url)
    with database.sessions() as session:
        keys = {role: create_key(session, role) for role in ("intake", "reviewer", "analyst", "admin")}
    with TestClient(app) as client:
        yield client, keys, db_path


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_health_needs_no_key_and_everything_else_does(service):
    client, _, _ = service
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["ready"] is True
    assert client.post("/v1/triage", json=PETITION).status_code == 401
    assert client.post("/v1/triage", json=PETITION, headers=h("pt_bad_key")).status_code == 401


def test_the_probes_answer_head_as_monitors_send_it(service):
    # A monitor probing with HEAD was answered 405 and reported the service down.
    client, _, _ = service
    assert [client.head(path).status_code for path in ("/healthz", "/readyz")] == [200, 200]
    # Not in the schema a second time: two operations with one id, which generated clients refuse.
    operations = [op["operationId"] for item in client.get("/openapi.json").json()["paths"].values() for op in item.values()]
    assert len(operations) == len(set(operations))


@pytest.mark.parametrize(("method", "path", "role", "needed"), [
    ("post", "/v1/triage", "reviewer", "intake"),
    ("get", "/v1/review-queue", "intake", "reviewer"),
    ("get", "/v1/stats", "intake", "analyst"),
    ("post", "/v1/model/reload", "analyst", "admin"),
])
def test_a_wrong_role_gets_403_naming_the_role_needed(service, method, path, role, needed):
    client, keys, _ = service
    if method == "get":
        response = client.get(path, headers=h(keys[role]))
    else:
        response = client.post(path, headers=h(keys[role]), json={"model_dir": "x", **PETITION})
    assert response.status_code == 403
    assert needed in response.json()["detail"]


def test_triage_returns_a_suggestion_and_stores_it_masked(service):
    client, keys, db_path = service
    body = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
    assert len(body["division_top3"]) == 3 and body["division"]["name"]
    assert body["stored"] is True
    row = sqlite3.connect(db_path).execute("SELECT body_masked FROM triages WHERE id=?", (body["triage_id"],)).fetchone()
    assert "13812345678" not in row[0] and "110101199003071234" not in row[0]
    assert "[手机号]" in row[0] and "[身份证号]" in row[0]


def test_pii_never_reaches_the_logs(service, caplog):
    client, keys, _ = service
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/triage", json=PETITION, headers=h(keys["intake"]))
        client.post("/v1/triage/batch", json={"petitions": [PETITION, {"body": ""}]}, headers=h(keys["intake"]))
    assert "13812345678" not in caplog.text and "110101199003071234" not in caplog.text


@pytest.mark.parametrize(("payload", "field"), [
    ({"title": "", "body": ""}, "body"),
    ({"title": " ", "body": "\n"}, "title"),
    ({"title": "x", "body": "字" * 2001}, "body"),
    ({"title": "x", "body": 5}, "body"),
    ({"title": "x", "body": "内容", "channel": "传真"}, "channel"),
    ({"title": ["x"], "body": "内容"}, "title"),
])
def test_bad_input_is_a_4xx_naming_the_field(service, payload, field):
    client, keys, _ = service
    response = client.post("/v1/triage", json=payload, headers=h(keys["intake"]))
    assert 400 <= response.status_code < 500
    assert field in str(response.json()["detail"])


def test_a_body_over_the_limit_is_located_at_the_body_field_as_a_long_title_is_at_the_title(service):
    # The over-long body was located at ["body"], the request as a whole, while an over-long title
    # was at ["body", "title"]: a desk form could not put the message beside its 正文 field.
    client, keys, _ = service
    located = {}
    for field, payload in (("title", {"title": "欠" * 501, "body": "内容"}), ("body", {"title": "x", "body": "字" * 2001})):
        (error,) = client.post("/v1/triage", json=payload, headers=h(keys["intake"])).json()["detail"]
        located[field] = error["loc"]
    assert located == {"title": ["body", "title"], "body": ["body", "body"]}
    (error,) = client.post("/v1/triage", json={"title": " ", "body": ""}, headers=h(keys["intake"])).json()["detail"]
    assert error["loc"] == ["body"] and "title" in error["msg"]


def test_a_title_only_petition_is_triaged_as_triage_predict_scores_it(service, small_model_dir, tmp_path):
    """One rule for the API and the ledger commands: a petition needs text in its title or its body."""
    from triage.cli import main

    client, keys, _ = service
    title_only = {"title": "老板拖欠工资三个月不发"}
    for payload in (title_only, title_only | {"body": ""}):
        response = client.post("/v1/triage", json=payload, headers=h(keys["intake"]))
        assert response.status_code == 200, response.text
        assert response.json()["stored"] is True
    batch = client.post("/v1/triage/batch", json={"petitions": [title_only]}, headers=h(keys["intake"])).json()
    assert batch[0]["result"] and batch[0]["error"] is None
    ledger, out = tmp_path / "ledger.csv", tmp_path / "out.csv"
    ledger.write_text("id,title,body\nXF-1,老板拖欠工资三个月不发,\n", encoding="utf-8")
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8-sig").splitlines()[1].startswith("XF-1,")


def test_batch_gives_per_item_errors_in_order(service):
    client, keys, _ = service
    response = client.post("/v1/triage/batch", json={"petitions": [PETITION, {"title": " "}, URGENT]},
                           headers=h(keys["intake"]))
    items = response.json()
    assert [i["index"] for i in items] == [0, 1, 2]
    assert items[0]["result"] and items[2]["result"]
    assert items[1]["error"].startswith("body")
    too_many = client.post("/v1/triage/batch", json={"petitions": [PETITION] * 6}, headers=h(keys["intake"]))
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "petitions"]


def test_decisions_are_revisions_and_feed_stats(service):
    client, keys, _ = service
    suggestion = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
    tid, predicted = suggestion["triage_id"], suggestion["division"]["code"]
    first = client.post("/v1/decisions", json={"triage_id": tid, "division": predicted, "decided_by": "张三"},
                        headers=h(keys["intake"]))
    assert first.status_code == 201 and first.json()["accepted"] is True and first.json()["revision"] == 1
    other = "external" if predicted != "external" else "pension"
    second = client.post("/v1/decisions", json={"triage_id": tid, "division": other, "decided_by": "李四",
                                                "reason": "属医保"}, headers=h(keys["intake"]))
    assert second.json()["accepted"] is False and second.json()["revision"] == 2
    stats = client.get("/v1/stats", headers=h(keys["analyst"])).json()
    assert stats["per_division"][predicted]["overridden"] == 1
    assert stats["per_division"][predicted]["override_rate"] == 1.0


def test_a_decision_sent_twice_is_recorded_once(service):
    # A second click on 采纳, or a client sending its decision again after a timeout, made a
    # second revision identical to the first.
    client, keys, _ = service
    tid = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()["triage_id"]
    decision = {"triage_id": tid, "division": "pension", "decided_by": "张三", "reason": "电话13812345678核实"}
    answers = [client.post("/v1/decisions", json=decision, headers=h(keys["intake"])) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == answers[1].json() and answers[1].json()["revision"] == 1
    # Another reason, or going back to an earlier decision, is a new revision.
    changed = client.post("/v1/decisions", json=decision | {"reason": "复核"}, headers=h(keys["intake"]))
    back = client.post("/v1/decisions", json=decision, headers=h(keys["intake"]))
    assert changed.json()["revision"] == 2 and back.json()["revision"] == 3
    listed = client.get(f"/v1/triage/{tid}/decisions", headers=h(keys["intake"])).json()
    assert [d["revision"] for d in listed] == [1, 2, 3]


@pytest.mark.parametrize(("payload", "status", "field"), [
    ({"triage_id": "nope", "division": "pension", "decided_by": "x"}, 404, "triage_id"),
    ({"division": "pension", "decided_by": "x"}, 422, "triage_id"),
])
def test_bad_decisions_are_refused(service, payload, status, field):
    client, keys, _ = service
    response = client.post("/v1/decisions", json=payload, headers=h(keys["intake"]))
    assert response.status_code == status and field in str(response.json()["detail"])


def test_unknown_division_code_in_a_decision_is_refused(service):
    client, keys, _ = service
    tid = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()["triage_id"]
    response = client.post("/v1/decisions", json={"triage_id": tid, "division": "housing", "decided_by": "x"},
                           headers=h(keys["intake"]))
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "division"]


def test_high_risk_enters_the_queue_and_leaves_only_when_resolved(service):
    client, keys, _ = service
    tid = client.post("/v1/triage", json=URGENT, headers=h(keys["intake"])).json()["triage_id"]
    queue = client.get("/v1/review-queue", headers=h(keys["reviewer"])).json()
    assert tid in [i["triage_id"] for i in queue]
    resolved = client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已电话联系"}, headers=h(keys["reviewer"]))
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    queue = client.get("/v1/review-queue", headers=h(keys["reviewer"])).json()
    assert tid not in [i["triage_id"] for i in queue]
    assert client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "again"}, headers=h(keys["reviewer"])).status_code == 409



@pytest.mark.parametrize("blank", ["   ", "\u3000\u3000", "\t\n", "\u200b", "\ufeff\u200b"])
def test_a_decision_by_nobody_or_a_resolution_without_a_note_is_refused(service, blank):
    # Spaces alone passed min_length=1: the audit trail then showed a decision "by" nobody
    # and a high-risk petition resolved with nothing written.
    client, keys, _ = service
    tid = client.post("/v1/triage", json=URGENT, headers=h(keys["intake"])).json()["triage_id"]
    decision = client.post("/v1/decisions", json={"triage_id": tid, "division": "pension", "decided_by": blank},
                           headers=h(keys["intake"]))
    assert decision.status_code == 422 and "decided_by" in str(decision.json()["detail"]), decision.text
    assert client.get(f"/v1/triage/{tid}/decisions", headers=h(keys["intake"])).json() == []
    resolved = client.post(f"/v1/review-queue/{tid}/resolve", json={"note": blank}, headers=h(keys["reviewer"]))
    assert resolved.status_code == 422 and "note" in str(resolved.json()["detail"]), resolved.text
    assert tid in [i["triage_id"] for i in client.get("/v1/review-queue", headers=h(keys["reviewer"])).json()]



def test_a_received_at_in_the_future_is_refused_naming_it(service):
    # A year typed wrong (2062 for 2026) put the statutory deadlines decades away: the
    # petition never showed as overdue.
    from datetime import UTC, datetime, timedelta

    client, keys, _ = service
    answer = client.post("/v1/triage", json={**PETITION, "received_at": "2062-07-01T09:00:00+08:00"},
                         headers=h(keys["intake"]))
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"] == ["body", "received_at"] and "in the future" in error["msg"], error
    batch = client.post("/v1/triage/batch", json={"petitions": [{**PETITION, "received_at": "2062-07-01"}, PETITION]},
                        headers=h(keys["intake"])).json()
    assert "received_at" in batch[0]["error"] and "in the future" in batch[0]["error"] and batch[1]["result"]
    # Today in Beijing, which may still be yesterday in UTC, is taken.
    soon = (datetime.now(UTC) + timedelta(hours=8)).isoformat()
    assert client.post("/v1/triage", json={**PETITION, "received_at": soon}, headers=h(keys["intake"])).status_code == 200



def test_a_decision_takes_labels_as_ledgers_write_them(service, taxonomy):
    # A ledger's 高/紧急/无 were taken by train and retrain, but a decision sent to the API
    # with them was refused as an unknown code.
    client, keys, _ = service
    tid = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()["triage_id"]
    name = taxonomy.name_of("division", "pension")
    for risk, key_group, expected in (("高", "无", ("high", "none")), ("紧急", "-", ("high", "none")),
                                      ("High", "none", ("high", "none"))):
        made = client.post("/v1/decisions", json={"triage_id": tid, "division": name, "risk": risk, "key_group": key_group,
                                                  "decided_by": "王五", "reason": "改派"}, headers=h(keys["intake"]))
        assert made.status_code == 201, made.text
        assert (made.json()["risk"], made.json()["key_group"]) == expected
    # Codes in another case, as a ledger may write them, are taken here as well.
    made = client.post("/v1/decisions", json={"triage_id": tid, "division": "Pension", "risk": "HIGH", "key_group": "Laid_Off_Workers",
                                              "decided_by": "王五", "reason": "改派"}, headers=h(keys["intake"]))
    assert made.status_code == 201, made.text
    assert (made.json()["division"], made.json()["key_group"]) == ("pension", "laid_off_workers")
    refused = client.post("/v1/decisions", json={"triage_id": tid, "division": "pension", "risk": "很高", "decided_by": "王五"},
                          headers=h(keys["intake"]))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "risk"]


def test_reload_refuses_a_broken_model_and_keeps_serving(service, tmp_path, small_model_dir):
    client, keys, _ = service
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json", encoding="utf-8")
    before = client.get("/v1/model", headers=h(keys["analyst"])).json()["version"]
    response = client.post("/v1/model/reload", json={"model_dir": str(broken)}, headers=h(keys["admin"]))
    assert response.status_code == 422 and "previous model keeps serving" in response.json()["detail"][0]["msg"]
    assert client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).status_code == 200
    ok = client.post("/v1/model/reload", json={"model_dir": str(small_model_dir)}, headers=h(keys["admin"]))
    assert ok.status_code == 200 and ok.json()["version"] == before


def test_metrics_are_prometheus_text(service):
    client, keys, _ = service
    client.post("/v1/triage", json=PETITION, headers=h(keys["intake"]))
    text = client.get("/metrics").text
    assert "triage_predictions_total" in text and "triage_review_queue_open" in text


def test_a_worker_computes_one_triage_at_a_time_and_the_next_one_while_rows_are_committed(service, monkeypatch):
    # Threads computing side by side only take turns on the GIL (service/routers/triage.py):
    # requests arriving together compute one at a time, and one whose rows wait for their
    # commit (a disk flush, here a slow one) lets the next compute meanwhile, whose rows
    # are then committed together. Each is still answered and stored.
    import service.routers.triage as triage
    from service.group_commit import GroupCommit

    client, keys, _ = service
    running, most, lock = 0, 0, threading.Lock()
    computed, commit = triage._computed, GroupCommit._commit
    batches: list[int] = []

    def counted(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)  # long enough for the others to arrive meanwhile
            return computed(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    def slow_flush(self, session, batch):
        batches.append(len(batch))
        time.sleep(0.3)
        return commit(self, session, batch)

    monkeypatch.setattr(triage, "_computed", counted)
    monkeypatch.setattr(GroupCommit, "_commit", slow_flush)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])), range(4)))
    assert [a.status_code for a in answers] == [200] * 4 and all(a.json()["stored"] for a in answers)
    assert most == triage.TRIAGE_AT_ONCE == 1
    assert sum(batches) == 4 and max(batches) > 1, batches
