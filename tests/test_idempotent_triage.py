"""A petition sent again (a client retrying after a timeout) is answered from storage, not stored twice."""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from postgres_db import POSTGRES_PARAM, throwaway_database
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from service.app import create_app
from service.database import Database, TriageRecord
from service.keys import create_key
from service.settings import Settings

# High risk, so that it is queued for review; with a phone number, so that what is stored
# (masked) differs from what the client sends.
PETITION = {
    "title": "讨薪无门",
    "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。我的电话13812345678。",
    "external_id": "XF-2026-0042",
    "channel": "网上",
    "received_at": "2026-12-01T09:00:00+08:00",
}


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def service(request, small_model_dir, tmp_path):
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'triage.db'}"
        else:
            url = stack.enter_context(throwaway_database("idem")).render_as_string(hide_password=False)
        settings = Settings(database_url=url, model_dir=small_model_dir, max_batch=5, model_root=small_model_dir.parent.parent)
        database = Database(url)
        stack.callback(database.engine.dispose)
        database.migrate()
        with database.sessions() as session:
            keys = {role: {"X-API-Key": create_key(session, role)} for role in ("intake", "reviewer", "analyst")}
        with TestClient(create_app(settings)) as client:
            yield client, keys, database


def rows(database: Database) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(TriageRecord))


def test_a_petition_sent_again_with_its_case_number_is_answered_from_storage(service):
    client, keys, database = service
    first = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    again = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    assert first["stored"] is True and first["replayed"] is False
    assert again["stored"] is True and again["replayed"] is True
    assert again["triage_id"] == first["triage_id"]
    # The suggestion as it was made, not made again.
    for field in (
        "model_version",
        "division",
        "division_top3",
        "risk",
        "risk_name",
        "risk_confidence",
        "key_group",
        "key_group_confidence",
        "needs_review",
        "time_limits",
        "similar_cases",
        "repeat_of",
    ):
        assert again[field] == first[field], field
    assert first["risk"] == "high" and first["needs_review"] is True
    # Offsets into the text as the client sent it, as in the first answer (the stored text is masked).
    text = PETITION["title"] + "\n" + PETITION["body"]
    spans = [s for head in again["explanation"].values() for part in (*head["terms"], *head["rules"]) for s in part["spans"]]
    assert spans and all(text[s["start"] : s["end"]] == s["text"] for s in spans)
    assert again["explanation"] == first["explanation"]
    assert rows(database) == 1
    queue = client.get("/v1/review-queue", headers=keys["reviewer"]).json()
    assert [item["triage_id"] for item in queue] == [first["triage_id"]]
    assert client.get("/v1/stats", headers=keys["analyst"]).json()["suggestions"] == 1


def test_a_petition_sent_again_in_a_batch_is_answered_from_storage(service):
    client, keys, database = service
    first = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    other = {**PETITION, "external_id": "XF-2026-0043", "title": "拖欠工资", "body": "老板三个月没发工资，工友们都找不到人。"}
    items = client.post("/v1/triage/batch", json={"petitions": [PETITION, other, other]}, headers=keys["intake"]).json()
    results = [item["result"] for item in items]
    assert [r["replayed"] for r in results] == [True, False, True]
    assert results[0]["triage_id"] == first["triage_id"] and results[2]["triage_id"] == results[1]["triage_id"]
    assert rows(database) == 2
    assert client.get("/v1/stats", headers=keys["analyst"]).json()["suggestions"] == 2


@pytest.mark.parametrize(
    ("why", "second"),
    [
        ("amended: the same case number with other text", {**PETITION, "body": PETITION["body"] + "补充：已经拖欠半年。"}),
        ("a case number that masking changed tells petitions apart no more", {**PETITION, "external_id": "0531-2026-0001"}),
        ("no case number", {**PETITION, "external_id": None}),
    ],
)
def test_a_petition_sent_again_without_a_usable_case_number_or_with_other_text_is_stored_again(service, why, second):
    client, keys, database = service
    first = client.post("/v1/triage", json={**PETITION, "external_id": second["external_id"]}, headers=keys["intake"]).json()
    again = client.post("/v1/triage", json=second, headers=keys["intake"]).json()
    assert again["stored"] is True and again["replayed"] is False, why
    assert again["triage_id"] != first["triage_id"], why
    assert rows(database) == 2, why
    assert client.get("/v1/stats", headers=keys["analyst"]).json()["suggestions"] == 2, why


def test_the_replay_marker_is_in_the_openapi_schema(service):
    client, _, _ = service
    suggestion = client.get("/openapi.json").json()["components"]["schemas"]["Suggestion"]
    assert suggestion["properties"]["replayed"]["type"] == "boolean"
    assert "replayed" not in suggestion.get("required", [])
    # The integrator reading the request's fields learns what makes a retry recognised.
    external_id = client.get("/openapi.json").json()["components"]["schemas"]["PetitionIn"]["properties"]["external_id"]
    assert "replayed" in external_id["description"] and "masking" in external_id["description"]


def test_copies_of_a_petition_sent_at_once_are_stored_once(service):
    # A client that timed out may send the petition again while the first request is still
    # being answered: each looked for a stored copy before either was stored.
    client, keys, database = service
    with ThreadPoolExecutor(4) as pool:
        answers = [f.result().json() for f in [pool.submit(client.post, "/v1/triage", json=PETITION, headers=keys["intake"]) for _ in range(4)]]
    assert all(a["stored"] for a in answers)
    assert len({a["triage_id"] for a in answers}) == 1
    assert sorted(a["replayed"] for a in answers) == [False, True, True, True]
    assert rows(database) == 1
    assert len(client.get("/v1/review-queue", headers=keys["reviewer"]).json()) == 1


def test_a_replayed_explanation_points_where_the_first_answer_did_when_a_masked_number_precedes_a_repeated_word(service):
    # Masking shortens an ID number; the words after it moved, and looking for each word
    # again near its old place found the other occurrence of a word said twice.
    client, keys, _ = service
    petition = {
        **PETITION,
        "title": "拖欠工资",
        "body": "我的身份证110101199001011234拖欠工资，拖欠工资，电话13812345678，再拖欠工资就跳楼",
    }
    first = client.post("/v1/triage", json=petition, headers=keys["intake"]).json()
    again = client.post("/v1/triage", json=petition, headers=keys["intake"]).json()
    assert again["replayed"] is True
    assert again["explanation"] == first["explanation"]
    # The case as stored: each span on the masked text where the first answer's span is on the text sent.
    case = client.get(f"/v1/triage/{first['triage_id']}", headers=keys["reviewer"]).json()
    masked = case["title"] + "\n" + case["body"]
    stored = {(s["text"], s["start"]) for head in case["explanation"].values() for part in head["terms"] for s in part["spans"]}
    shift = len("110101199001011234") - len("[身份证号]")
    sent = {
        (s["text"], s["start"] - shift)
        for head in first["explanation"].values()
        for part in head["terms"]
        for s in part["spans"]
        if s["start"] > len("拖欠工资\n我的身份证") and s["end"] <= len("拖欠工资\n我的身份证110101199001011234拖欠工资，拖欠工资，")
    }
    assert sent and sent <= stored
    assert all(masked[start : start + len(text)] == text for text, start in stored)


def _counts(client: TestClient) -> tuple[float, float]:
    """The worker's triage_predictions_total (all labels) and triage_replayed_total."""
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    predictions = sum(s.value for s in families["triage_predictions"].samples if s.name == "triage_predictions_total")
    replayed = families.get("triage_replayed")
    return predictions, sum(s.value for s in replayed.samples if s.name == "triage_replayed_total") if replayed else 0.0


def test_a_petition_sent_again_is_counted_as_replayed_not_as_a_prediction_in_the_metrics(service, monkeypatch):
    import service.routers.triage as triage

    client, keys, _ = service
    before = _counts(client)
    client.post("/v1/triage", json=PETITION, headers=keys["intake"])
    assert client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()["replayed"] is True
    # The copy that lost the race: it looked before the first was stored, was triaged, and
    # found the first stored only where its rows were to be committed.
    racer = {**PETITION, "external_id": "XF-2026-0044"}
    client.post("/v1/triage", json=racer, headers=keys["intake"])
    looked, calls = triage._stored_copy, []

    def late(*args):
        calls.append(args)
        return None if len(calls) == 1 else looked(*args)

    monkeypatch.setattr(triage, "_stored_copy", late)
    assert client.post("/v1/triage", json=racer, headers=keys["intake"]).json()["replayed"] is True
    after = _counts(client)
    # Two petitions made suggestions; each sent again was answered from storage.
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)


def test_petitions_that_join_into_one_text_are_not_taken_for_copies_of_each_other_when_sent_at_once():
    # A title with a newline in it and a body that begins where another's title ends: joined
    # by a newline, their keys were equal, and the second in one commit was taken for a copy.
    from service.routers.triage import _once
    from service.schemas import PetitionIn

    one = PetitionIn(title="讨薪\n无门", body="工资拖欠。", external_id="XF-2026-0045")
    other = PetitionIn(title="讨薪", body="无门\n工资拖欠。", external_id="XF-2026-0045")
    keys = [_once(p, TriageRecord(title_masked=p.title, body_masked=p.body)).key for p in (one, other)]
    assert keys[0] != keys[1]


def test_a_petition_sent_again_without_received_at_is_answered_with_the_time_limits_of_its_first_answer(service):
    # Without received_at the limits run from when it was triaged: the first answer counted
    # from the moment it was computed, the stored triage (and so the retry and the case
    # page) from the moment its row was inserted, a few milliseconds later.
    client, keys, _ = service
    petition = {**PETITION, "received_at": None}
    first = client.post("/v1/triage", json=petition, headers=keys["intake"]).json()
    again = client.post("/v1/triage", json=petition, headers=keys["intake"]).json()
    case = client.get(f"/v1/triage/{first['triage_id']}", headers=keys["reviewer"]).json()
    assert again["replayed"] is True and first["time_limits"]["from_received_at"] is False
    assert again["time_limits"] == first["time_limits"]
    assert case["time_limits"]["accept_by"] == first["time_limits"]["accept_by"]


def test_a_purged_triage_is_never_answered_as_a_replay(service):
    # `triage purge` leaves a purged triage an empty title and the placeholder as its body. A
    # petition sent with just that text under the purged triage's case number matched it and
    # was answered as that triage, whose text it never had: a purged triage has nothing left
    # to compare, and whatever is sent under its number is triaged anew.
    from datetime import UTC, datetime

    from model.text import PURGED_TEXT
    from service.maintenance import purge_petitions

    client, keys, database = service
    first = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    # Reviewed first: a petition still open in the review queue keeps its text.
    resolved = client.post(f"/v1/review-queue/{first['triage_id']}/resolve", json={"note": "已回电"}, headers=keys["reviewer"])
    assert resolved.status_code == 200, resolved.text
    assert purge_petitions(database, datetime.now(UTC), actor="test").petitions == 1
    placeholder = {**PETITION, "title": "", "body": PURGED_TEXT}
    posing = client.post("/v1/triage", json=placeholder, headers=keys["intake"]).json()
    assert posing["stored"] is True and posing["replayed"] is False
    assert posing["triage_id"] != first["triage_id"]
    # Nor is the petition itself, sent again after the purge: its text can no longer be
    # compared (docs/operations.md, Retention), so it is a triage of its own, and its own
    # retries are answered with it.
    again = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    assert again["replayed"] is False and again["triage_id"] not in (first["triage_id"], posing["triage_id"])
    retried = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    assert retried["replayed"] is True and retried["triage_id"] == again["triage_id"]
    assert rows(database) == 3


@pytest.mark.parametrize(
    ("title", "body"),
    [
        # A rule's span runs from 中专毕业 to 没有分配, across the phone number between them.
        ("毕业分配", "我是中专毕业，电话13812345678，至今没有分配工作。"),
        # Numbers grouped by dots are read as short numbers: words of digits are found inside them.
        ("服务", "打12333打不通，我的卡号6222.1233.3456.7890，电话138.1234.5678"),
        # Typed with several separators between the groups: masked whole, the span across it kept.
        ("毕业分配", "我是中专毕业，电话138  1234 - 5678，没有分配工作。"),
        ("服务", "打12333打不通，我的卡号6222. 1233. 3456. 7890，电话138 - 1234 - 5678"),
    ],
)
def test_a_replayed_explanation_shows_the_evidence_of_the_first_answer_around_masked_numbers(service, title, body):
    # The stored explanation dropped every span with a masked number in it, and the first
    # answer kept them all: a retry lost the rule's evidence that the first answer showed
    # across a phone number, and the first answer lit digits inside a card number that no
    # retry and no case page could show.
    client, keys, _ = service
    petition = {**PETITION, "title": title, "body": body}
    first = client.post("/v1/triage", json=petition, headers=keys["intake"]).json()
    again = client.post("/v1/triage", json=petition, headers=keys["intake"]).json()
    assert again["replayed"] is True
    assert again["explanation"] == first["explanation"]
    text = title + "\n" + body
    numbers = [m.span() for m in re.finditer(r"[0-9][0-9. -]{9,}[0-9]", text)]
    spans = [s for head in first["explanation"].values() for part in (*head["terms"], *head["rules"]) for s in part["spans"]]
    assert spans and all(text[s["start"] : s["end"]] == s["text"] for s in spans)
    # No span begins or ends inside a number; one with a number between its ends covers it whole.
    assert not [s for s in spans for a, b in numbers if a <= s["start"] < b or a < s["end"] <= b]
    case = client.get(f"/v1/triage/{first['triage_id']}", headers=keys["reviewer"]).json()
    masked = case["title"] + "\n" + case["body"]
    stored = [s for head in case["explanation"].values() for part in (*head["terms"], *head["rules"]) for s in part["spans"]]
    assert len(stored) == len(spans) and all(masked[s["start"] : s["end"]] == s["text"] for s in stored)
    if "中专毕业" in body:
        rule = first["explanation"]["key_group"]["rules"][0]
        quoted = body[body.index("中专毕业") : body.index("没有分配") + 4]
        assert rule["spans"] and rule["spans"][0]["text"] == quoted
        stored_rule = case["explanation"]["key_group"]["rules"][0]
        assert stored_rule["spans"][0]["text"] == re.sub(r"[0-9][0-9 -]*[0-9]", "[手机号]", quoted)
