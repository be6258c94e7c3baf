"""The API the pages read: a stored triage with its evidence, decisions by Chinese name,
review-queue items carrying the case, and the statutory time limits."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from model.text import join_fields
from service.app import create_app
from service.cases import rebase_explanation, time_limits
from service.database import Database, ReviewItem
from service.keys import create_key
from service.maintenance import purge_petitions
from service.settings import Settings

PHONE = "13812345678"
PETITION = {"title": "老板拖欠工资", "body": f"我的电话{PHONE}。我在电子厂上班，老板三个月没发工资，讨薪无门。", "channel": "网上"}
URGENT = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}


@pytest.fixture
def api(small_model_dir, tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        keys = {role: {"X-API-Key": create_key(session, role)} for role in ("intake", "reviewer", "analyst")}
    with TestClient(app) as client:
        yield client, keys


def test_a_stored_triage_shows_its_evidence_on_the_masked_text(api):
    client, keys = api
    suggestion = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()
    case = client.get(f"/v1/triage/{suggestion['triage_id']}", headers=keys["reviewer"])
    assert case.status_code == 200
    case = case.json()
    assert PHONE not in case["body"] and "[手机号]" in case["body"]
    text = join_fields(case["title"], case["body"])
    spans = [s for head in case["explanation"].values() for part in (*head["terms"], *head["rules"]) for s in part["spans"]]
    assert spans, "the stored explanation has no spans"
    # The phone number shortened the text: spans after it moved, and every one still points at its words.
    assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
    assert case["risk_name"] in ("一般", "加急", "当日人工研判") and case["division"]["name"]


def test_rebased_spans_inside_masked_digits_are_dropped():
    explanation = {"risk": {"label": "low", "terms": [{"term": "5678", "kind": "word", "weight": 1.0,
                                                       "spans": [{"start": 11, "end": 15, "text": "5678"}]}], "rules": []}}
    assert rebase_explanation(explanation, "t\n电话[手机号]")["risk"]["terms"][0]["spans"] == []


def test_decisions_take_chinese_names_and_are_listed_with_them(api, taxonomy):
    client, keys = api
    tid = client.post("/v1/triage", json=PETITION, headers=keys["intake"]).json()["triage_id"]
    name = taxonomy.name_of("division", "external")
    made = client.post("/v1/decisions", json={"triage_id": tid, "division": name, "risk": "加急", "decided_by": "王五",
                                              "reason": "属医保"}, headers=keys["intake"])
    assert made.status_code == 201, made.text
    assert made.json()["division"] == "external" and made.json()["division_name"] == name and made.json()["risk"] == "medium"
    listed = client.get(f"/v1/triage/{tid}/decisions", headers=keys["intake"]).json()
    assert [(d["revision"], d["division"], d["reason"]) for d in listed] == [(1, "external", "属医保")]
    assert client.get("/v1/triage/nope/decisions", headers=keys["intake"]).status_code == 404
    assert client.get(f"/v1/triage/{tid}", headers=keys["analyst"]).status_code == 403


def test_a_case_judged_high_risk_at_intake_reaches_the_review_queue(api):
    # The model missed the threat; the clerk who read it marks 当日人工研判, and the petition
    # office must see the case as it sees the ones the model flags.
    client, keys = api
    routine = {"title": "咨询职称评审", "body": "请问今年中级职称评审什么时候开始报名，需要准备哪些材料？"}
    suggestion = client.post("/v1/triage", json=routine, headers=keys["intake"]).json()
    tid = suggestion["triage_id"]
    assert suggestion["risk"] != "high" and not suggestion["needs_review"], suggestion

    def queued() -> dict[str, tuple[str, str]]:
        items = client.get("/v1/review-queue", params={"status": "all"}, headers=keys["reviewer"]).json()
        return {i["triage_id"]: (i["reason"], i["status"]) for i in items}

    assert tid not in queued()
    made = client.post("/v1/decisions", json={"triage_id": tid, "division": suggestion["division"]["code"],
                                              "risk": "当日人工研判", "decided_by": "李四", "reason": "来电称要轻生"},
                       headers=keys["intake"])
    assert made.status_code == 201, made.text
    assert queued()[tid] == ("high_risk", "open")
    assert client.get(f"/v1/triage/{tid}", headers=keys["reviewer"]).json()["needs_review"] is True
    # Resolved, then judged high again by a later revision: it stays resolved, no second item.
    assert client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已联系"}, headers=keys["reviewer"]).status_code == 200
    again = client.post("/v1/decisions", json={"triage_id": tid, "division": suggestion["division"]["code"], "risk": "high",
                                               "decided_by": "李四"}, headers=keys["intake"])
    assert again.status_code == 201 and queued()[tid] == ("high_risk", "resolved")
    # One queued for another reason moves up to high risk, and is open again.
    unsure = client.post("/v1/triage", json={"title": "问题", "body": "有个事情想问一下。"}, headers=keys["intake"]).json()
    assert queued()[unsure["triage_id"]] == ("low_confidence", "open"), unsure
    client.post(f"/v1/review-queue/{unsure['triage_id']}/resolve", json={"note": "已转"}, headers=keys["reviewer"])
    client.post("/v1/decisions", json={"triage_id": unsure["triage_id"], "division": "external", "risk": "high",
                                       "decided_by": "李四"}, headers=keys["intake"])
    assert queued()[unsure["triage_id"]] == ("high_risk", "open")


def test_a_decision_does_not_queue_a_petition_whose_text_was_purged(api):
    # After `triage purge`, a decision of 当日人工研判 queued the petition (or opened its resolved
    # item again) with no title and no text: nobody could review it. Refused, saying why; a
    # label correction that queues nothing is still recorded (the statistics count it).
    client, keys = api
    routine = client.post("/v1/triage", json={"title": "咨询职称评审", "body": "请问今年中级职称评审什么时候开始报名？"},
                          headers=keys["intake"]).json()
    unsure = client.post("/v1/triage", json={"title": "问题", "body": "有个事情想问一下。"}, headers=keys["intake"]).json()
    assert client.post(f"/v1/review-queue/{unsure['triage_id']}/resolve", json={"note": "已转"},
                       headers=keys["reviewer"]).status_code == 200
    assert purge_petitions(client.app.state.database, datetime.now(UTC), actor="test").petitions == 2

    def queued() -> dict[str, tuple[str, str]]:
        items = client.get("/v1/review-queue", params={"status": "all"}, headers=keys["reviewer"]).json()
        return {i["triage_id"]: (i["reason"], i["status"]) for i in items}

    for suggestion in (routine, unsure):
        tid = suggestion["triage_id"]
        refused = client.post("/v1/decisions", json={"triage_id": tid, "division": "external", "risk": "当日人工研判",
                                                     "decided_by": "李四", "reason": "来电称要轻生"}, headers=keys["intake"])
        assert refused.status_code == 409, refused.text
        said = refused.json()["detail"]
        assert tid in said and "deleted under retention" in said and "NOT recorded" in said
        assert client.get(f"/v1/triage/{tid}/decisions", headers=keys["intake"]).json() == []
    assert routine["triage_id"] not in queued() and queued()[unsure["triage_id"]] == ("low_confidence", "resolved")
    corrected = client.post("/v1/decisions", json={"triage_id": routine["triage_id"], "division": "external",
                                                   "decided_by": "李四", "reason": "属医保"}, headers=keys["intake"])
    assert corrected.status_code == 201, corrected.text
    assert routine["triage_id"] not in queued()


def test_an_item_moved_up_to_high_risk_gets_its_same_day_target_from_then(small_model_dir, tmp_path):
    # Queued days ago as low confidence (and resolved), then judged 当日人工研判 by a clerk: the
    # item was opened again with its old queue time, shown 超时 by days at once, and listed as
    # if the office had let a high-risk case wait since it was first queued.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        intake, reviewer = ({"X-API-Key": create_key(session, role)} for role in ("intake", "reviewer"))
    with TestClient(app) as client:
        unsure = client.post("/v1/triage", json={"title": "问题", "body": "有个事情想问一下。"}, headers=intake).json()
        tid = unsure["triage_id"]
        with app.state.database.sessions() as session:
            item = session.get(ReviewItem, tid)
            assert item is not None and item.reason == "low_confidence"
            item.created_at = datetime.now(UTC) - timedelta(days=3)
            session.commit()
        assert client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已转"}, headers=reviewer).status_code == 200
        judged = datetime.now(UTC)
        made = client.post("/v1/decisions", json={"triage_id": tid, "division": "external", "risk": "high", "decided_by": "李四"},
                           headers=intake)
        assert made.status_code == 201, made.text
        review = client.get(f"/v1/triage/{tid}", headers=reviewer).json()["review"]
        assert (review["reason"], review["status"]) == ("high_risk", "open")
        assert datetime.fromisoformat(review["created_at"]) >= judged - timedelta(seconds=1)
        assert datetime.fromisoformat(review["due_at"]) > datetime.now(UTC)
    app.state.database.engine.dispose()


def test_the_review_queue_filters_by_the_division_a_clerk_reassigned_an_item_to(api):
    # The queue shows a reassigned item under the division decided; filtering for that
    # division did not find it, and filtering for the model's did.
    client, keys = api
    suggestion = client.post("/v1/triage", json=URGENT, headers=keys["intake"]).json()
    tid, suggested = suggestion["triage_id"], suggestion["division"]["code"]
    decided = "pension" if suggested != "pension" else "external"

    def listed(division: str) -> list[str]:
        items = client.get("/v1/review-queue", params={"division": division}, headers=keys["reviewer"]).json()
        return [i["triage_id"] for i in items]

    assert tid in listed(suggested) and tid not in listed(decided)
    made = client.post("/v1/decisions", json={"triage_id": tid, "division": decided, "risk": "high", "decided_by": "李四",
                                              "reason": "属养老"}, headers=keys["intake"])
    assert made.status_code == 201, made.text
    assert tid in listed(decided) and tid not in listed(suggested)


def test_resolved_review_items_are_listed_most_recently_resolved_first(api):
    # Resolved items were listed as open ones are, oldest queued first: once the office had
    # resolved more than a page of them, what was resolved today could not be listed at all.
    # Listed together, open items come first, in the order they are worked.
    client, keys = api
    ids = [client.post("/v1/triage", json=URGENT | {"external_id": f"R-{n}"}, headers=keys["intake"]).json()["triage_id"]
           for n in range(4)]
    for tid in (ids[1], ids[2], ids[0]):
        assert client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已处理"}, headers=keys["reviewer"]).status_code == 200
    listed = client.get("/v1/review-queue", params={"status": "resolved", "limit": 2}, headers=keys["reviewer"]).json()
    assert [i["triage_id"] for i in listed] == [ids[0], ids[2]]
    every = client.get("/v1/review-queue", params={"status": "all"}, headers=keys["reviewer"]).json()
    assert [i["triage_id"] for i in every] == [ids[3], ids[0], ids[2], ids[1]]


def _pages(client, reviewer: dict[str, str], url: str, **params: object) -> list[list[str]]:
    """The queue's pages from `url` on, each followed by the Link header of the one before."""
    pages, first = [], params or None  # httpx drops a link's own query for any params, empty ones too
    while True:
        answer = client.get(url, params=first, headers=reviewer)
        assert answer.status_code == 200, answer.text
        first = None
        pages.append([i["triage_id"] for i in answer.json()])
        if "next" not in answer.links:
            return pages
        url = answer.links["next"]["url"]


def test_the_review_queue_pages_through_every_item_once_while_it_changes(api, tmp_path):
    # GET /v1/review-queue took `limit` (at most 500) and nothing else: the 501st item and the
    # ones after it could not be listed at all.
    client, keys = api
    reviewer = keys["reviewer"]
    ids = [client.post("/v1/triage", json=URGENT | {"external_id": f"P-{n}", "body": f"{URGENT['body']}第{n}次来信。"},
                       headers=keys["intake"]).json()["triage_id"] for n in range(7)]
    ids += [client.post("/v1/triage", json={"title": "问题", "body": f"有个事情想问一下，编号{n}。", "external_id": f"Q-{n}"},
                        headers=keys["intake"]).json()["triage_id"] for n in range(3)]
    for tid in ids[:3]:
        assert client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已处理"}, headers=reviewer).status_code == 200
    # Items queued at one moment (an emerging group's) and resolved at one moment: the page
    # boundary falls between equals, told apart by their ids.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    with database.sessions() as session:
        moment = datetime.now(UTC) - timedelta(hours=1)
        for tid in ids[3:6]:
            session.get(ReviewItem, tid).created_at = moment
        for tid in ids[:2]:
            session.get(ReviewItem, tid).resolved_at = moment
        session.commit()
    database.engine.dispose()
    for status in ("open", "resolved", "all"):
        whole = client.get("/v1/review-queue", params={"status": status, "limit": 500}, headers=reviewer)
        assert "link" not in whole.headers
        every = [i["triage_id"] for i in whole.json()]
        assert len(every) == {"open": 7, "resolved": 3, "all": 10}[status]
        for limit in (1, 2, 3):
            pages = _pages(client, reviewer, "/v1/review-queue", status=status, limit=limit)
            assert [tid for page in pages for tid in page] == every, (status, limit)
            assert all(len(page) == limit for page in pages[:-1]) and 0 < len(pages[-1]) <= limit

    # Resolved from the first page, and a new item queued, while the reviewer reads it: the
    # next pages hold every other item once, none pushed back onto the page already read.
    first = client.get("/v1/review-queue", params={"limit": 2}, headers=reviewer)
    read = [i["triage_id"] for i in first.json()]
    assert client.post(f"/v1/review-queue/{read[0]}/resolve", json={"note": "已处理"}, headers=reviewer).status_code == 200
    new = client.post("/v1/triage", json=URGENT | {"external_id": "P-new", "body": f"{URGENT['body']}又来信。"},
                      headers=keys["intake"]).json()["triage_id"]
    rest = [tid for page in _pages(client, reviewer, first.links["next"]["url"]) for tid in page]
    now = [i["triage_id"] for i in client.get("/v1/review-queue", params={"limit": 500}, headers=reviewer).json()]
    assert rest == [tid for tid in now if tid not in read] and new in rest


@pytest.mark.parametrize("cursor", [
    "not-a-cursor", "", "x" * 2000,
    base64.urlsafe_b64encode(json.dumps(["open", True, "2026-01-01T00:00:00+00:00", "a\x00b"]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps(["open", True, "0001-01-01T00:00:00+14:00", "a"]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps(["resolved", "yesterday", "a"]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps({"open": True}).encode()).decode()],
    ids=["garbage", "empty", "too-long", "nul-in-its-id", "beyond-year-one", "not-a-time", "not-a-place"])
def test_a_review_queue_cursor_it_did_not_give_is_refused_naming_the_field(api, cursor):
    client, keys = api
    answer = client.get("/v1/review-queue", params={"cursor": cursor}, headers=keys["reviewer"])
    if cursor == "":
        assert answer.status_code == 200  # left empty: the first page
        return
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_two_reviewers_resolving_one_item_at_once_record_one_resolution(small_model_dir, tmp_path, monkeypatch):
    # Both read the item open, then both wrote: the second's name and note replaced the first's,
    # and each was told it had resolved the item. The second is now refused, as when it comes later.
    from service.routers import review

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        intake, reviewer = ({"X-API-Key": create_key(session, role)} for role in ("intake", "reviewer"))
    with TestClient(app) as client:
        tid = client.post("/v1/triage", json=URGENT, headers=intake).json()["triage_id"]
        now = review.utcnow

        def meanwhile() -> datetime:
            # The other reviewer's resolution is committed while this request is under way.
            monkeypatch.setattr(review, "utcnow", now)
            with app.state.database.sessions() as other:
                item = other.get(review.ReviewItem, tid)
                item.status, item.resolved_by, item.resolved_at, item.note = "resolved", "key:other(reviewer)", now(), "先到"
                other.commit()
            return now()

        monkeypatch.setattr(review, "utcnow", meanwhile)
        second = client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "后到"}, headers=reviewer)
        assert second.status_code == 409, second.text
        assert "key:other(reviewer)" in second.json()["detail"]
        item = client.get(f"/v1/triage/{tid}", headers=reviewer).json()["review"]
        assert (item["resolved_by"], item["note"]) == ("key:other(reviewer)", "先到")
    app.state.database.engine.dispose()


def test_review_queue_items_carry_the_case(api):
    client, keys = api
    tid = client.post("/v1/triage", json={**URGENT, "external_id": "XF-2026-0001"}, headers=keys["intake"]).json()["triage_id"]
    items = client.get("/v1/review-queue", params={"reason": "high_risk"}, headers=keys["reviewer"]).json()
    item = next(i for i in items if i["triage_id"] == tid)
    assert item["risk_name"] == "当日人工研判" and item["division_name"]
    assert item["case"]["external_id"] == "XF-2026-0001" and "跳楼" in item["case"]["body"]
    assert item["case"]["explanation"]["risk"]["rules"], "the rule that set the risk is not in the queued case"
    assert item["case"]["review"]["status"] == "open"
    assert client.get("/v1/review-queue", params={"reason": "low_confidence"}, headers=keys["reviewer"]).json() == [
        i for i in client.get("/v1/review-queue", headers=keys["reviewer"]).json() if i["reason"] == "low_confidence"]


def test_time_limits_run_from_received_at(api):
    client, keys = api
    received = datetime.now(UTC) - timedelta(days=10)
    limits = client.post("/v1/triage", json={**PETITION, "received_at": received.isoformat()}, headers=keys["intake"]).json()["time_limits"]
    assert limits["from_received_at"] is True
    assert limits["days_left_to_accept"] == 5 and limits["days_left_to_conclude"] == 50
    assert datetime.fromisoformat(limits["conclude_by_extended"]) - datetime.fromisoformat(limits["conclude_by"]) == timedelta(days=30)


def test_time_limits_are_settings():
    settings = Settings(accept_days=3, conclude_days=7, extension_days=0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    limits = time_limits(start, start, settings, now=datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert limits.days_left_to_accept == -1 and limits.days_left_to_conclude == 3
    assert limits.conclude_by_extended == limits.conclude_by


def test_days_left_are_counted_on_the_offices_calendar():
    # Received at 04:00 Beijing time on 2 January (20:00 UTC on the 1st): fifteen days on,
    # the deadline falls on 17 January in Beijing. At 23:00 Beijing time on the 16th
    # (15:00 UTC) a day is left, though both moments are on the 16th in UTC.
    received = datetime(2026, 1, 1, 20, tzinfo=UTC)
    limits = time_limits(received, received, Settings(accept_days=15), now=datetime(2026, 1, 16, 15, tzinfo=UTC))
    assert limits.days_left_to_accept == 1


def test_openapi_describes_every_field_and_the_offsets(api):
    client, _ = api
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("Suggestion", "CaseOut", "ReviewItemOut", "DecisionIn", "DecisionOut", "TimeLimits", "Span", "PetitionIn"):
        undescribed = [f for f, spec in schemas[name]["properties"].items() if not spec.get("description")]
        assert not undescribed, f"{name}: no description for {undescribed}"
    assert "title + '\\n' + body" in schemas["Span"]["properties"]["start"]["description"]
