"""Same-matter linking (model/matter.py, similar_cases, repeat_of, /v1/emerging, `triage link`):
petitions are linked by the matter they describe, never by who wrote them. Real SQLite
files and, when TRIAGE_TEST_POSTGRES_URL is set, PostgreSQL; real uvicorn processes for
the index shared between workers."""

from __future__ import annotations

import csv
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from postgres_db import POSTGRES_PARAM, POSTGRES_URL, throwaway_database
from serving import CLI, ROOT, ServeProcess, make_key, serve_env
from sqlalchemy import Engine, event

from model.matter import (
    _A,
    _B,
    MatterIndex,
    _band_keys,
    _similar_pairs,
    anchors_of,
    components,
    link_matters,
    normalize_for_linking,
    shingles,
    signature,
)
from model.text import PURGED_TEXT, join_fields
from service import similar
from service.app import create_app
from service.database import Database, ReviewItem, TriageRecord, utcnow
from service.keys import create_key
from service.maintenance import purge_petitions
from service.pii import mask_pii
from service.settings import Settings
from service.similar import SharedMatterIndex, link
from training.corpus import generate

TEMPLATE = ("{company}拖欠工资", "我叫{name}，身份证{id_number}，电话{phone}。我从{date}起在B2区{company}承建的{project}工地做木工，"
            "公司拖欠我们二十多名工人的工资共{amount}元，多次找项目经理都说没钱，请劳动监察部门督促{company}支付。")
FIRST = {"company": "恒远建筑公司", "project": "江畔花园", "name": "王建国", "id_number": "110101199003071234",
         "phone": "13812345678", "date": "2026年3月", "amount": "186000"}
# The same matter retold: another name, ID, phone, date and amount.
RETOLD = FIRST | {"name": "李秀英", "id_number": "320102198512120027", "phone": "13998765432", "date": "2026年4月", "amount": "192500"}
# Another matter in the same words: another employer and project.
OTHER = FIRST | {"company": "鑫达劳务公司", "project": "北湖家园"}
PENSION = {"title": "咨询养老金", "body": "请问我今年退休，缴费十五年，每月养老金大概能领多少？计算办法在哪里可以查到？"}


def petition(facts: dict[str, str], **extra: str) -> dict[str, str]:
    title, body = TEMPLATE
    return {"title": title.format(**facts), "body": body.format(**facts), **extra}


def joined(p: dict[str, str]) -> str:
    return f"{p['title']}\n{p['body']}"


def test_changing_only_masked_numbers_and_names_does_not_change_the_links():
    assert normalize_for_linking(joined(petition(FIRST))) == normalize_for_linking(joined(petition(RETOLD)))
    texts = [joined(petition(FIRST)), joined(petition(OTHER)), PENSION["body"]]
    retold = [joined(petition(RETOLD)), joined(petition(OTHER | {"name": "赵六", "phone": "13700001111"})), PENSION["body"]]
    assert link_matters(texts) == link_matters(retold)
    assert link_matters([texts[0], retold[0]]) == ["M1", "M1"]


# Numbers as petitions write them: grouped by dots, dashes of any kind, spaces a word
# processor pastes or runs of separators, landlines with an area code, the old 15-digit ID.
WRITTEN_NUMBERS = ["138.1234.5678", "138\u20131234\u20135678", "138\u200b1234\u200b5678", "(010)1234 5678", "010-1234-5678",
                   "6222\u00b70212\u00b73456\u00b77890\u00b7123", "110101\u00a019900307\u00a01234", "110101900307123",
                   # Typed with several separators between the groups.
                   "138  1234  5678", "138 - 1234 - 5678", "6222. 0212. 3456. 7890", "(010)  6234 - 5678"]


@pytest.mark.parametrize("number", WRITTEN_NUMBERS)
def test_a_letter_in_clear_and_the_same_letter_as_stored_are_read_alike(number):
    # Linking drops the numbers masking masks: a ledger in clear (triage link, training's folds)
    # and the same letter stored masked must lose the same characters. Linking found fewer
    # numbers than masking, and read what masking stores as a placeholder as digits instead.
    letter = joined(petition(FIRST | {"phone": number}))
    assert mask_pii(letter) != letter
    assert normalize_for_linking(letter) == normalize_for_linking(mask_pii(letter))
    assert anchors_of(letter) == anchors_of(mask_pii(letter))
    assert link_matters([letter, mask_pii(letter), joined(petition(RETOLD))]) == ["M1", "M1", "M1"]


def form_letter(name: str, address: str, matter: str) -> str:
    return f"尊敬的领导：信访人：{name}，住址：{address}，联系电话：13873112345。{matter}恳请领导帮助解决。反映人：{name}"


def test_a_letters_form_links_neither_by_the_writers_name_nor_by_the_address():
    # A letter's form names the writer (信访人, 反映人) and where they live (住址). The address's
    # place names were anchors: two writers' letters about one pension matter conflicted and were
    # not linked, and one writer's letters about two matters were linked by name and address.
    pension = "我的养老金核定少了三百元，请求复核。"
    index = MatterIndex()
    index.add("first", form_letter("赵德福", "青山市临河区幸福街道枫林小区七栋二单元", pension))
    assert [m.key for m in index.query(form_letter("钱小梅", "白沙市东城区和平街道桂园小区三栋", pension))] == ["first"]
    assert index.query(form_letter("赵德福", "青山市临河区幸福街道枫林小区七栋二单元", "我的住院费用医保报销少了，请求重新结算。")) == []


def test_two_matters_written_from_one_template_are_not_linked():
    index = MatterIndex()
    index.add("first", joined(petition(FIRST)))
    assert [m.key for m in index.query(joined(petition(RETOLD)))] == ["first"]
    assert index.query(joined(petition(OTHER))) == []
    assert link_matters([joined(petition(FIRST)), joined(petition(OTHER))]) == ["M1", "M2"]


# One consumer's complaint form, sent about one shop after another: each is a matter of its
# own (another shop, another purchase), and linking them would link by who wrote them.
SHOP_TEMPLATE = ("{shop}", "本人于2026年5月{day}日在{shop}购买了一袋饼干，价格8元，回家后发现已过保质期，{shop}的行为"
                 "违反了食品安全法的相关规定。请贵局依法查处，并责令其按规定给予十倍赔偿，同时要求超市规范经营。")


@pytest.mark.parametrize("other", ["华联商店", "康宁大药房", "万家百货", "新天地购物广场", "好邻居便利店", "东门分店"])
def test_one_complaint_form_about_two_shops_is_two_matters(other):
    def complaint(shop, day):
        title, body = SHOP_TEMPLATE
        return f"{title.format(shop=shop)}\n{body.format(shop=shop, day=day)}"

    index = MatterIndex()
    index.add("first", complaint("福满多超市", 3))
    # The same shop complained of again, another day: the same matter.
    assert [m.key for m in index.query(complaint("福满多超市", 9))] == ["first"]
    assert index.query(complaint(other, 9)) == []
    assert link_matters([complaint("福满多超市", 3), complaint(other, 9)]) == ["M1", "M2"]

def test_an_unrelated_petition_is_not_linked():
    index = MatterIndex()
    index.add("wages", joined(petition(FIRST)))
    assert index.query(joined(PENSION)) == []


def test_the_index_finds_rows_added_after_it_was_sorted():
    index = MatterIndex()
    index.add_many((f"filler{i}", f"第{i}件：{'关于社保转移的咨询' if i % 2 else '关于职称评审的问题'}，编号{i}，请予答复", 0.0)
                   for i in range(300))
    index.add("late", joined(petition(FIRST)), when=5.0)
    assert [m.key for m in index.query(joined(petition(RETOLD)))] == ["late"]
    assert index.query(joined(petition(RETOLD)), since=6.0) == []


def test_a_signature_is_the_minhash_of_the_texts_3_grams():
    # Every worker and every training run must get the same signature for a text, however
    # it is computed: here, the definition in plain integers.
    for text in ["", "一", "拖欠工资", normalize_for_linking(joined(petition(FIRST)))]:
        hashed = [int(h) for h in shingles(text)]
        expected = ([min((h * int(a) + int(b)) % 2**64 >> 32 for h in hashed) for a, b in zip(_A, _B, strict=True)]
                    if hashed else [2**32 - 1] * len(_A))
        assert signature(text).tolist() == expected


def test_a_query_finds_every_stored_copy_of_a_letter():
    # Copies share every band hash, so they make runs of equal hashes in the sorted bands
    # (added together with enough others, they are all sorted in at once).
    index = MatterIndex()
    index.add_many([(f"copy{i}", joined(petition(FIRST)), 1.0) for i in range(4)]
                   + [(f"filler{i}", f"第{i}件：关于职称评审的问题，编号{i}", 0.0) for i in range(300)])
    assert index._sorted_upto == len(index)
    assert sorted(m.key for m in index.query(joined(petition(RETOLD)), limit=10)) == [f"copy{i}" for i in range(4)]


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'triage.db'}"
    else:
        with throwaway_database("matter") as url:
            yield url.render_as_string(hide_password=False)


@contextmanager
def running(database_url: str, model_dir: Path, **settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    config = Settings(database_url=database_url, model_dir=model_dir, **settings)
    app = create_app(config)
    with Database(database_url).sessions() as session:
        keys = {role: create_key(session, role) for role in ("intake", "reviewer", "analyst", "admin")}
    with TestClient(app) as client:
        yield client, keys
    app.state.database.engine.dispose()


def triage(client: TestClient, keys: dict[str, str], payload: dict) -> dict:
    response = client.post("/v1/triage", json=payload, headers={"X-API-Key": keys["intake"]})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_same_letter_sent_twice_is_marked_a_repeat_with_the_evidence(database_url, small_model_dir):
    with running(database_url, small_model_dir) as (client, keys):
        first = triage(client, keys, petition(FIRST, external_id="XF-1", received_at="2026-05-01T09:00:00+00:00"))
        assert first["similar_cases"] == [] and first["repeat_of"] is None
        second = triage(client, keys, petition(RETOLD, received_at="2026-05-20T09:00:00+00:00"))
        assert second["repeat_of"] == first["triage_id"]
        case = second["similar_cases"][0]
        assert case["triage_id"] == first["triage_id"] and case["external_id"] == "XF-1"
        assert case["received_at"].startswith("2026-05-01") and case["similarity"] >= 0.9
        assert case["decided_division"] is None
        cue = [r for r in second["explanation"]["risk"]["rules"] if first["triage_id"] in r["explain"]]
        assert [r["rule"] for r in cue] == ["risk.repeated"]
        other = triage(client, keys, petition(OTHER, received_at="2026-05-21T09:00:00+00:00"))
        assert other["repeat_of"] is None and other["similar_cases"] == []
        # A decision on the first shows in later lookups.
        decided = client.post("/v1/decisions", json={"triage_id": first["triage_id"], "division": "labor_relations",
                                                      "decided_by": "处理人"}, headers={"X-API-Key": keys["intake"]})
        assert decided.status_code == 201, decided.text
        third = triage(client, keys, petition(FIRST, received_at="2026-05-22T09:00:00+00:00"))
        assert {c["triage_id"]: c["decided_division"] for c in third["similar_cases"]}[first["triage_id"]] == "labor_relations"


def test_a_predecessor_outside_the_window_is_not_looked_up(database_url, small_model_dir):
    with running(database_url, small_model_dir, similar_window_days=30) as (client, keys):
        triage(client, keys, petition(FIRST, received_at="2026-01-01T09:00:00+00:00"))
        late = triage(client, keys, petition(RETOLD, received_at="2026-03-01T09:00:00+00:00"))
        assert late["repeat_of"] is None


def test_lookup_after_a_restart_finds_what_was_stored_before(database_url, small_model_dir):
    with running(database_url, small_model_dir) as (client, keys):
        first = triage(client, keys, petition(FIRST))
    with running(database_url, small_model_dir) as (client, keys):
        assert triage(client, keys, petition(RETOLD))["repeat_of"] == first["triage_id"]


def test_a_repeat_is_detected_across_a_model_reload(tmp_path, small_model_dir):
    with running(f"sqlite:///{tmp_path / 'triage.db'}", small_model_dir, model_root=small_model_dir.parent) as (client, keys):
        first = triage(client, keys, petition(FIRST))
        reloaded = client.post("/v1/model/reload", json={"model_dir": str(small_model_dir)}, headers={"X-API-Key": keys["admin"]})
        assert reloaded.status_code == 200, reloaded.text
        assert triage(client, keys, petition(RETOLD))["repeat_of"] == first["triage_id"]


def test_five_petitions_about_one_employer_make_one_emerging_group_in_the_review_queue(database_url, small_model_dir):
    names = ["王建国", "李秀英", "张伟", "刘洋", "陈静"]
    start = datetime.now(UTC) - timedelta(days=6)
    with running(database_url, small_model_dir) as (client, keys):
        triage(client, keys, PENSION)
        ids = [triage(client, keys, petition(FIRST | {"name": name}, received_at=(start + timedelta(days=i)).isoformat()))["triage_id"]
               for i, name in enumerate(names)]
        triage(client, keys, petition(OTHER))
        reviewer = {"X-API-Key": keys["reviewer"]}
        groups = client.get("/v1/emerging", headers=reviewer).json()
        assert len(groups) == 1, groups
        group = groups[0]
        assert group["size"] == 5 and [m["triage_id"] for m in group["members"]] == ids
        assert "恒远" in " ".join(group["shared_words"]) and not any(n in " ".join(group["shared_words"]) for n in names)
        assert group["first_seen"] < group["last_seen"] and group["highest_risk"] in ("low", "medium", "high")
        queue = {i["triage_id"]: i["reason"] for i in client.get("/v1/review-queue", headers=reviewer).json()}
        # The third makes a group of three and is queued with the two before it, which were
        # not queued when they came; a higher reason (high risk) would come first.
        assert all(queue.get(t) in ("emerging_group", "high_risk") for t in ids)
        assert "emerging_group" in queue.values()
        # The case says so too, for the two queued after they came.
        assert all(client.get(f"/v1/triage/{t}", headers=reviewer).json()["needs_review"] for t in ids)
        assert client.get("/v1/emerging", headers={"X-API-Key": keys["analyst"]}).status_code == 200
        assert client.get("/v1/emerging", headers={"X-API-Key": keys["intake"]}).status_code == 403
        assert client.get("/v1/emerging", params={"min_size": 6}, headers=reviewer).json() == []
        # An offset's "+" sent unencoded arrives as a space, as the other endpoints' dates take it.
        later = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=8)))
        raw = later.strftime("%Y-%m-%dT%H:%M:%S") + " 08:00"
        answer = client.get(f"/v1/emerging?until={raw}", headers=reviewer)
        assert answer.status_code == 200 and len(answer.json()) == 1, answer.text


def test_one_petition_sent_again_after_a_timeout_is_neither_a_repeat_nor_a_group(tmp_path, small_model_dir):
    # A client retrying with the same case number stored the petition three times: the second
    # said 同一事项已于…登记 of the first, the third made an emerging group of one petition.
    received = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    with running(f"sqlite:///{tmp_path / 'triage.db'}", small_model_dir) as (client, keys):
        sent = [triage(client, keys, petition(FIRST, external_id="XF-2026-0042", received_at=received)) for _ in range(3)]
        assert [(s["repeat_of"], s["similar_cases"]) for s in sent] == [(None, [])] * 3
        reviewer = {"X-API-Key": keys["reviewer"]}
        assert client.get("/v1/emerging", headers=reviewer).json() == []
        queue = client.get("/v1/review-queue", headers=reviewer).json()
        assert "emerging_group" not in {i["reason"] for i in queue}
        # Another petition about the matter is a repeat of it, and makes with its copies no group.
        later = triage(client, keys, petition(RETOLD, external_id="XF-2026-0050"))
        assert later["repeat_of"] in {s["triage_id"] for s in sent}
        assert client.get("/v1/emerging", headers=reviewer).json() == []
        # A case number stored masked (it looks like a landline) tells nothing: such petitions
        # are linked as any others are.
        masked = [triage(client, keys, petition(OTHER, external_id="0531-2026-0001", received_at=received)) for _ in range(2)]
        assert masked[1]["repeat_of"] == masked[0]["triage_id"]


def test_a_ledger_listed_newest_first_flags_its_emerging_group_in_the_review_queue(tmp_path, small_model_dir):
    # Office ledgers are often sorted newest first. Each petition looked for its group only among
    # those received before it, which the batch had not stored yet: /v1/emerging showed the group
    # and the review queue held none of it.
    start = datetime.now(UTC) - timedelta(days=10)
    items = [petition(FIRST | {"name": name}, received_at=(start + timedelta(days=3 * i)).isoformat())
             for i, name in enumerate(["王建国", "李秀英", "张伟"])][::-1]
    with running(f"sqlite:///{tmp_path / 'triage.db'}", small_model_dir) as (client, keys):
        answer = client.post("/v1/triage/batch", json={"petitions": items}, headers={"X-API-Key": keys["intake"]})
        assert answer.status_code == 200, answer.text
        ids = {item["result"]["triage_id"] for item in answer.json()}
        reviewer = {"X-API-Key": keys["reviewer"]}
        assert [g["size"] for g in client.get("/v1/emerging", headers=reviewer).json()] == [3]
        queue = client.get("/v1/review-queue", headers=reviewer).json()
        assert {i["triage_id"] for i in queue if i["reason"] in ("emerging_group", "high_risk")} == ids


def test_emerging_group_found_when_new_petition_falls_between_members(tmp_path, small_model_dir):
    # Petitions about one matter received eight and two days ago, then one received five days ago
    # (a county's backlog entered late): the window before the new one and the window after it
    # each held two of the three, so the group was never flagged, though all three fall within
    # six days. Petitions further apart than the window make no group around one between them.
    now = datetime.now(UTC)

    def received(days_ago: float) -> str:
        return (now - timedelta(days=days_ago)).isoformat()

    with running(f"sqlite:///{tmp_path / 'triage.db'}", small_model_dir) as (client, keys):
        outer = [triage(client, keys, petition(FIRST | {"name": name}, received_at=received(days)))["triage_id"]
                 for days, name in ((8, "王建国"), (2, "李秀英"))]
        far = [triage(client, keys, petition(OTHER | {"name": name}, received_at=received(days)))["triage_id"]
               for days, name in ((20, "张伟"), (0, "刘洋"))]
        reviewer = {"X-API-Key": keys["reviewer"]}
        assert client.get("/v1/emerging", headers=reviewer).json() == []
        between = triage(client, keys, petition(RETOLD, received_at=received(5)))
        apart = triage(client, keys, petition(OTHER | {"name": "陈静"}, received_at=received(10)))
        queue = {i["triage_id"]: i["reason"] for i in client.get("/v1/review-queue", headers=reviewer).json()}
        flagged = {t for t, reason in queue.items() if reason in ("emerging_group", "high_risk")}
        assert {between["triage_id"], *outer} <= flagged
        assert all(client.get(f"/v1/triage/{t}", headers=reviewer).json()["needs_review"] for t in outer)
        assert queue.get(apart["triage_id"]) != "emerging_group" and not set(far) & flagged
        groups = client.get("/v1/emerging", headers=reviewer).json()
        assert [sorted(m["triage_id"] for m in g["members"]) for g in groups] == [sorted([*outer, between["triage_id"]])]


def test_emerging_lists_a_group_of_the_look_back_whose_span_began_before_it(tmp_path, small_model_dir):
    # Petitions about one matter received eight, five and two days ago arrived within six days,
    # and with days=7 /v1/emerging listed them a day and a half ago but not now: the window ending
    # now held two of them. A group is listed when some span of `days` holds enough of it, one of
    # them received within the look-back; a burst that ended before it is not, nor a petition of the
    # matter that is in no such span with the others.
    now = datetime.now(UTC)

    def received(days_ago: float) -> str:
        return (now - timedelta(days=days_ago)).isoformat()

    with running(f"sqlite:///{tmp_path / 'triage.db'}", small_model_dir) as (client, keys):
        ids = [triage(client, keys, petition(FIRST | {"name": name}, received_at=received(days)))["triage_id"]
               for days, name in ((8, "王建国"), (5, "李秀英"), (2, "张伟"))]
        early = triage(client, keys, petition(RETOLD | {"name": "孙丽"}, received_at=received(13)))["triage_id"]
        stale = [triage(client, keys, petition(OTHER | {"name": name}, received_at=received(days)))["triage_id"]
                 for days, name in ((13, "刘洋"), (11, "陈静"), (9, "周强"))]
        reviewer = {"X-API-Key": keys["reviewer"]}
        for until in ({"until": (now - timedelta(days=1.5)).isoformat()}, {}):
            groups = client.get("/v1/emerging", params={"days": 7, **until}, headers=reviewer).json()
            assert [[m["triage_id"] for m in g["members"]] for g in groups] == [ids], (until, groups)
            assert groups[0]["size"] == 3 and groups[0]["first_seen"][:10] == received(8)[:10]
        assert early not in ids and not set(stale) & {m["triage_id"] for g in groups for m in g["members"]}
        # Seen from the day the stale burst's last petition came, it is a group of the look-back.
        then = client.get("/v1/emerging", params={"days": 7, "until": received(8.5)}, headers=reviewer).json()
        assert [sorted(m["triage_id"] for m in g["members"]) for g in then] == [sorted(stale)]


def stored_on(database: Database, triage_id: str, facts: dict[str, str], received: datetime, external_id: str | None = None,
              created: datetime | None = None) -> None:
    """A petition about `facts` received at `received` (and stored at `created`, by default
    now), put in the database directly."""
    p = petition(facts)
    with database.sessions() as session:
        session.add(TriageRecord(id=triage_id, external_id=external_id, received_at=received, created_at=created or utcnow(),
                                 title_masked=p["title"],
                                 body_masked=p["body"], model_version="test", division="labor_relations",
                                 division_confidence=0.9, risk="low", key_group="none", needs_review=False, suggestion={}))
        session.commit()


def test_emerging_members_received_at_one_moment_are_listed_as_registered_and_groups_alike_in_one_order(tmp_path, small_model_dir):
    # The intake form gives the day received, so a day's petitions share one moment: their
    # members were listed by random id, not as the clerk registered them, and two groups alike in
    # size, growth and first day came in the order a worker's index took them, so `limit` could
    # cut a different one on each worker.
    url = f"sqlite:///{tmp_path / 'triage.db'}"
    database = Database(url)
    database.ensure_migrated()
    day = datetime.now(UTC) - timedelta(days=1)
    for triage_id in ("z-1", "z-2", "z-3"):
        stored_on(database, triage_id, FIRST, day)
    for triage_id in ("a-3", "a-2", "a-1"):
        stored_on(database, triage_id, OTHER, day)
    database.engine.dispose()
    with running(url, small_model_dir) as (client, keys):
        groups = client.get("/v1/emerging", params={"days": 7}, headers={"X-API-Key": keys["reviewer"]}).json()
        # Only the groups listed are described (their shared words), and `limit` cuts them once ordered.
        first = client.get("/v1/emerging", params={"days": 7, "limit": 1}, headers={"X-API-Key": keys["reviewer"]}).json()
    assert [[m["triage_id"] for m in g["members"]] for g in groups] == [["a-3", "a-2", "a-1"], ["z-1", "z-2", "z-3"]]
    assert first == groups[:1]


def test_emerging_group_found_around_a_new_petition_when_the_earlier_members_are_copies_of_one_case(tmp_path):
    # One case sent twice three days before a new petition, and another three days after it: the
    # copies made the window before look full, and once they counted as one member the petition
    # after it was never looked at.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    when = datetime.now(UTC) - timedelta(days=6)
    for copy in ("copy-a", "copy-b"):
        stored_on(database, copy, FIRST, when - timedelta(days=3), external_id="XF-2026-0007")
    stored_on(database, "after", FIRST | {"name": "张伟"}, when + timedelta(days=3))
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    with database.sessions() as session:
        linked = link(session, shared, joined(petition(RETOLD)), when, min_size=3, days=14, external_id="XF-2026-0009")
    assert linked.group == ["after", "copy-a"]
    database.engine.dispose()


def test_emerging_group_found_before_a_new_petition_when_copies_of_one_case_come_first(tmp_path):
    # Nothing received after the new petition, so its group is sought before it only, a search
    # that stopped at as many petitions as a group needs. Copies of one case filled them, and
    # the third petition, linked to the new one only through them, was never reached.
    opening, middle, later, closing = ("社保卡挂失以后新卡迟迟没有寄到手上", "窗口说系统升级让我们回家等通知再说",
                                       "这一等就是两个多月看病买药都没法刷", "希望尽快给个准信把补办流程讲清楚")
    middle_on = {"new": f"{opening}，{middle}，{later}，请领导重视。",
                 "copy": f"{opening}，{middle}，{later}，{closing}。",
                 "chained": f"{middle}，{later}，{closing}，街坊邻居也遇到了。"}
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    now = datetime.now(UTC)
    stored = [("copy-a", "copy", 3, "XF-2026-0007"), ("copy-b", "copy", 3, "XF-2026-0007"),
              ("copy-c", "copy", 2, "XF-2026-0007"), ("chained", "chained", 1, None)]
    with database.sessions() as session:
        for triage_id, text, days_before, external_id in stored:
            session.add(TriageRecord(id=triage_id, external_id=external_id, received_at=now - timedelta(days=days_before),
                                     title_masked="社保卡补办", body_masked=middle_on[text], model_version="test",
                                     division="social_security_card", division_confidence=0.9, risk="low",
                                     key_group="none", needs_review=False, suggestion={}))
        session.commit()
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    with database.sessions() as session:
        new = joined({"title": "社保卡补办", "body": middle_on["new"]})
        assert {m.triage_id for m in link(session, shared, new, now, min_size=3, days=14).similar} == {"copy-a", "copy-b", "copy-c"}
        linked = link(session, shared, new, now, min_size=3, days=14, external_id="XF-2026-0009")
    assert linked.group == ["chained", "copy-a"]
    database.engine.dispose()


def test_a_petition_triaged_as_it_arrives_searches_for_its_group_only_before_it(tmp_path, monkeypatch):
    # With nothing received after it in the index, the group is looked for among the petitions
    # before it alone: one search of the index, as before the groups around a petition were sought.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    now = datetime.now(UTC)
    stored_on(database, "early", FIRST, now - timedelta(days=8))
    stored_on(database, "late", FIRST | {"name": "张伟"}, now - timedelta(days=2))
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    searches: list[str] = []
    query = shared.index.query
    monkeypatch.setattr(shared.index, "query", lambda *args, **kwargs: searches.append("query") or query(*args, **kwargs))
    with database.sessions() as session:
        assert link(session, shared, joined(petition(RETOLD)), now, min_size=3, days=14).group == ["early", "late"]
        assert searches == ["query"]
        # Received between them, it finds its group with a second search, for those after it.
        assert link(session, shared, joined(petition(RETOLD)), now - timedelta(days=5), min_size=3, days=14).group == ["early", "late"]
        assert searches == ["query"] * 3
    database.engine.dispose()


def test_two_workers_see_the_same_index(tmp_path, small_model_dir):
    """Two `triage serve` processes on one database: what one stores, the other finds."""
    database_url = f"sqlite:///{tmp_path / 'triage.db'}"
    servers = []
    try:
        for name in ("a", "b"):
            workdir = tmp_path / name
            workdir.mkdir()
            env = serve_env(database_url, small_model_dir, workdir, workers="1")
            servers.append(ServeProcess(workdir, env))
            servers[-1].start()
        key = make_key(servers[0].env, tmp_path / "a")
        a, b = (httpx.Client(base_url=s.base, headers={"X-API-Key": key}, timeout=30, trust_env=False) for s in servers)
        with a, b:
            on_a = a.post("/v1/triage", json=petition(FIRST)).json()
            on_b = b.post("/v1/triage", json=petition(RETOLD)).json()
            assert on_b["repeat_of"] == on_a["triage_id"]
            again_on_a = a.post("/v1/triage", json=petition(FIRST)).json()
            assert {c["triage_id"] for c in again_on_a["similar_cases"]} == {on_a["triage_id"], on_b["triage_id"]}
    finally:
        for server in servers:
            server.stop()


def test_the_index_takes_in_rows_stored_elsewhere_even_after_the_table_was_replaced(tmp_path):
    """Rows stored by another worker are found by rowid on SQLite; when the rows seen last
    are gone (the content replaced, as `triage restore` does), new rows are still found."""
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    shared = SharedMatterIndex(window_days=365, threshold=0.5)

    def stored_elsewhere(facts: dict[str, str]) -> str:
        p = petition(facts)
        row = TriageRecord(id=f"t{len(shared.index)}-{facts['name']}", title_masked=p["title"], body_masked=p["body"],
                           model_version="test", division="labor_relations", division_confidence=0.9, risk="low",
                           key_group="none", needs_review=False, suggestion={})
        with database.sessions() as session:
            session.add(row)
            session.commit()
        with database.sessions() as session:
            shared.refresh(session)
        return row.id

    with database.sessions() as session:
        shared.refresh(session)
    first, second = stored_elsewhere(FIRST), stored_elsewhere(OTHER)
    assert first in shared.index and second in shared.index
    with database.engine.begin() as connection:
        connection.execute(TriageRecord.__table__.delete())
    third = stored_elsewhere(RETOLD)
    assert third in shared.index
    fourth = stored_elsewhere(OTHER | {"name": "赵四"})
    assert fourth in shared.index and len(shared.index) == 4
    database.engine.dispose()


def test_triage_link_writes_a_matter_per_ledger_row(tmp_path):
    ledger = tmp_path / "ledger.csv"
    rows = [("1", petition(FIRST)), ("2", petition(OTHER)), ("3", PENSION), ("4", petition(RETOLD))]
    with ledger.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "标题", "内容"])
        writer.writerows([pid, p["title"], p["body"]] for pid, p in rows)
    out = tmp_path / "linked.csv"
    done = subprocess.run([*CLI, "link", "--input", str(ledger), "--output", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with out.open(encoding="utf-8-sig") as handle:
        matter = {row["id"]: row["matter"] for row in csv.DictReader(handle)}
    assert matter["1"] == matter["4"] and len({matter["1"], matter["2"], matter["3"]}) == 3


def test_training_keeps_a_resent_letter_in_one_fold_when_the_ledger_names_no_matter():
    from training.train import matter_groups

    texts = [petition(FIRST), petition(RETOLD), petition(OTHER), PENSION]
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "title": [t["title"] for t in texts], "body": [t["body"] for t in texts]})
    groups = matter_groups(frame, np.ones(len(frame), bool))
    assert groups[0] == groups[1] and len({groups[0], groups[2], groups[3]}) == 3


def refreshed_index(database: Database) -> SharedMatterIndex:
    """A worker's index of a migrated database, refreshed once: what a worker holds once it has started."""
    database.ensure_migrated()
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    with database.sessions() as session:
        shared.refresh(session)
    return shared


def stored_by_another_worker(database: Database, triage_id: str) -> None:
    """A row of FIRST put in the database directly, as another worker would have stored it."""
    p = petition(FIRST)
    with database.sessions() as session:
        session.add(TriageRecord(id=triage_id, title_masked=p["title"], body_masked=p["body"], model_version="test",
                                 division="labor_relations", division_confidence=0.9, risk="low", key_group="none",
                                 needs_review=False, suggestion={}))
        session.commit()


def test_requests_waiting_behind_a_refresh_that_began_after_them_do_not_query_again(tmp_path):
    """Under load many requests queue on the index's lock; the first to get it reads the new
    rows for all of them, and a row committed before they asked is in the index for each."""
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    shared = refreshed_index(database)
    stored_by_another_worker(database, "committed-before")
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def refresh() -> None:
        with database.sessions() as session:
            shared.refresh(session)

    shared._lock.acquire()  # a refresh under way: the requests below ask meanwhile
    waiting = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)
    shared._lock.release()
    for thread in waiting:
        thread.join()
    assert "committed-before" in shared.index
    assert len([s for s in statements if "triages" in s]) == 1, statements
    refresh()  # a request asking after that refresh began reads again
    assert len([s for s in statements if "triages" in s]) == 2
    database.engine.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="TRIAGE_TEST_POSTGRES_URL is not set (.ci/run sets it when it can start PostgreSQL)")
def test_on_postgresql_other_workers_rows_are_read_at_most_every_few_tenths_of_a_second(monkeypatch):
    """Off SQLite, reading other workers' rows re-reads the last COMMIT_LAG of them; done
    on every lookup, it made the service fall behind at 200 petitions a second."""
    with throwaway_database("peers") as url:
        database = Database(url.render_as_string(hide_password=False))
        shared = refreshed_index(database)
        stored_by_another_worker(database, "stored-elsewhere")
        statements: list[str] = []
        event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        monkeypatch.setattr(similar, "PEER_ROWS_SECONDS", 3600.0)
        for _ in range(3):
            with database.sessions() as session:
                shared.refresh(session)
        assert not [s for s in statements if "triages" in s] and "stored-elsewhere" not in shared.index
        monkeypatch.setattr(similar, "PEER_ROWS_SECONDS", 0.0)
        with database.sessions() as session:
            shared.refresh(session)
        assert "stored-elsewhere" in shared.index
        database.engine.dispose()


def test_a_petition_purged_while_the_service_runs_is_no_longer_shown_as_similar(tmp_path):
    # `triage purge` empties stored texts; the index of a running worker still held their
    # signatures, and a repeat was linked to a case whose text was gone.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    stored_by_another_worker(database, "to-be-purged")
    retold = joined(petition(RETOLD))
    with database.sessions() as session:
        assert [c.triage_id for c in link(session, shared, retold, datetime.now(UTC), 3, 7).similar] == ["to-be-purged"]
    with database.engine.begin() as connection:
        connection.execute(TriageRecord.__table__.update().values(title_masked="", body_masked=PURGED_TEXT))
    with database.sessions() as session:
        assert link(session, shared, retold, datetime.now(UTC), 3, 7).similar == []
    database.engine.dispose()


UNRELATED = [("养老金待遇核定有误", "我去年办理退休，核定的基本养老金比同工龄同事少了三百多元，视同缴费年限没有算进去。"),
             ("招聘考试成绩异议", "我参加了今年市直事业单位公开招聘笔试，综合应用能力科目只有零分，我确认答题卡填涂无误。"),
             ("工伤认定超期未办", "我在工地摔伤腰椎，单位去年就提交了工伤认定申请，到现在还没有结论，医药费都是自己垫付的。"),
             ("失业保险金申领", "单位裁员后我去申领失业保险金，窗口说系统里没有我的参保记录，可工资条上每月都扣了失业保险。")]


def test_purged_petitions_make_no_emerging_group_before_or_after_a_restart(tmp_path, small_model_dir):
    # After `triage purge` a restarted worker took every purged petition into its index with the
    # same placeholder text, and /v1/emerging showed four unrelated petitions as one group; a
    # running worker still counted purged petitions, with their old text, as a group's members.
    database_url = f"sqlite:///{tmp_path / 'triage.db'}"
    start = datetime.now(UTC) - timedelta(days=6)
    with running(database_url, small_model_dir) as (client, keys):
        for i, (title, body) in enumerate(UNRELATED):
            triage(client, keys, {"title": title, "body": body, "received_at": (start + timedelta(hours=i)).isoformat()})
        first, second = (triage(client, keys, petition(FIRST | {"name": name}, received_at=(start + timedelta(days=1 + i)).isoformat()))
                         for i, name in enumerate(["王建国", "李秀英"]))
        purge_petitions(Database(database_url), datetime.now(UTC), actor="test")
        third = triage(client, keys, petition(RETOLD, received_at=(start + timedelta(days=4)).isoformat()))
        reviewer = {"X-API-Key": keys["reviewer"]}
        assert client.get("/v1/emerging", headers=reviewer).json() == []
        stored_after = triage(client, keys, petition(FIRST | {"name": "张伟"}, received_at=(start + timedelta(days=5)).isoformat()))
        assert stored_after["repeat_of"] == third["triage_id"]
        queue = client.get("/v1/review-queue", params={"reason": "emerging_group"}, headers=reviewer).json()
        assert {i["triage_id"] for i in queue} & {first["triage_id"], second["triage_id"]} == set()
        assert stored_after["triage_id"] not in {i["triage_id"] for i in queue}
    with running(database_url, small_model_dir) as (client, keys):
        assert client.get("/v1/emerging", params={"min_size": 2}, headers={"X-API-Key": keys["reviewer"]}).json() != []
        assert client.get("/v1/emerging", headers={"X-API-Key": keys["reviewer"]}).json() == []


def _linked_by_lookup(texts: list[str]) -> list[str]:
    index = MatterIndex()
    keys = [str(i) for i in range(len(texts))]
    index.add_many((key, text, 0.0) for key, text in zip(keys, texts, strict=True))
    matter = [""] * len(texts)
    for number, group in enumerate(sorted(components(index, keys), key=lambda g: int(g[0])), start=1):
        for key in group:
            matter[int(key)] = f"M{number}"
    return matter


def test_linking_a_ledger_at_once_finds_the_links_of_one_lookup_per_petition():
    # link_matters finds every petition's links in one pass (and prepares the texts in
    # processes when there are many); they must be the links `components` finds by a
    # lookup per stored petition.
    texts = [join_fields(p["title"], p["body"]) for p in generate(n=2600, seed=5)]
    texts += texts[:40]  # exact repeats: runs of equal band hashes
    expected = _linked_by_lookup(texts)
    assert len(set(expected)) < len(texts) - 40  # the corpus's scenarios do link
    assert link_matters(texts, n_jobs=2) == expected
    assert link_matters(texts[:600]) == _linked_by_lookup(texts[:600])


@pytest.mark.parametrize("limit", [50, 2])
def test_the_links_of_a_look_back_are_those_of_one_lookup_per_petition_in_it(limit):
    # GET /v1/emerging made one lookup per petition of its look-back, each comparing it with every
    # stored petition that shares a band with it, whenever received: seconds per request on a
    # year of petitions. links_between finds them all at once; they must be the same links.
    texts = [join_fields(p["title"], p["body"]) for p in generate(n=1500, seed=7)]
    texts += texts[:30]  # exact repeats: more matches than a small limit keeps
    index = MatterIndex()
    # Received in the corpus's order, the repeats with their originals: a look-back holds some
    # petitions of each of its matters, and other petitions of them are received after it.
    index.add_many((str(i), text, (i % 1500) * 0.04) for i, text in enumerate(texts))
    since, until = 0.0, 30.0
    keys, links = index.links_between(since, until, limit=limit)
    assert keys == index.keys_between(since, until)
    expected: dict[str, set[str]] = {key: set() for key in keys}
    for key in keys:
        for match in index.query_key(key, limit=limit, since=since, until=until):
            expected[key].add(match.key)
            expected[match.key].add(key)
    assert links == expected
    # Each repeat with its original, both ways, and petitions the corpus tells of one matter.
    assert sum(map(len, links.values())) > 2 * 30
    assert index.links_between(1000.0, 2000.0) == ([], {})


def test_similar_pairs_weighed_first_on_low_bytes_are_every_similar_pair_sharing_a_band():
    # Candidates are weighed on the low byte of each signature value before the whole values are
    # compared (a year of candidates sharing a stock phrase took seconds read whole). The pairs must
    # be the definition's: every two rows sharing a band hash, similar at the threshold or above.
    rng = np.random.default_rng(3)
    sigs = rng.integers(0, 2**32, (60, 128), dtype=np.uint64).astype(np.uint32)
    sigs[:, :4] = sigs[0, :4]  # one band shared by all: every pair a candidate
    # Exactly at the threshold: 64 values equal, the others unequal in their low byte.
    sigs[1, :64] = sigs[0, :64]
    sigs[1, 64:] = sigs[0, 64:] ^ 1
    # Just under it, though every low byte is equal: only the whole values tell.
    sigs[3, :63] = sigs[2, :63]
    sigs[3, 63:] = sigs[2, 63:] ^ (1 << 20)
    # Similar, sharing a band other than the first.
    sigs[5], sigs[5, :4] = sigs[4], sigs[4, :4] ^ 1
    # Similar, sharing no band: never a candidate.
    sigs[7], sigs[7, 3::4] = sigs[6], sigs[6, 3::4] ^ 1
    bands = _band_keys(sigs)
    expected = [(i, j) for i in range(60) for j in range(i + 1, 60)
                if (bands[i] == bands[j]).any() and (sigs[i] == sigs[j]).mean() >= 0.5]
    assert {(0, 1), (4, 5)} <= set(expected) and (2, 3) not in expected and (6, 7) not in expected
    for given in (None, bands):
        pairs, similarity = _similar_pairs(sigs, 0.5, given)
        assert [tuple(pair) for pair in pairs.tolist()] == expected
        assert similarity.tolist() == [(sigs[i] == sigs[j]).mean() for i, j in expected]


def _emerging_by_definition(shared: SharedMatterIndex, session, start: float, end: float, span: float,
                            min_size: int) -> list[list[str]]:
    """The groups of a look-back as docs/linking.md defines them, computed the plain way: links by one
    lookup per petition, every span beginning at a petition's time tried over the matter's petitions."""
    keys = shared.index.keys_between(start - span, end)
    links = {key: {m.key for m in shared.index.query_key(key, limit=50, since=start - span, until=end)} for key in keys}
    for key in keys:
        for other in links[key]:
            links[other].add(key)
    whens = shared.index.whens(keys)
    infos = similar.case_infos(session, keys)
    groups = []
    for matter in similar._connected(keys, links, set(keys)):
        if len(matter) < min_size or max(whens[k] for k in matter) < start:
            continue
        listed: set[str] = set()
        for begin in {whens[k] for k in matter if whens[k] + span >= start}:
            inside = {k for k in matter if begin <= whens[k] <= begin + span}
            for linked in similar._connected(sorted(inside), links, inside):
                found = {k for k in linked if not infos[k].purged}
                cases = {similar.case_number(infos[k].external_id) or k for k in found}
                if len(cases) >= min_size and any(whens[k] >= start for k in found):
                    listed |= found
        kept = similar.distinct_cases(sorted((infos[k] for k in listed), key=lambda i: i.order))
        if len(kept) >= min_size:
            groups.append([i.triage_id for i in kept])
    return groups


def test_emerging_groups_of_a_matter_petitioned_about_far_longer_than_one_span_are_those_of_its_spans(tmp_path, monkeypatch):
    # The spans of a matter petitioned about all year were each found by looking at every petition
    # of the matter, seconds for a year's look-back; they are found by bisection now. The groups
    # must be the definition's, spans ending exactly at a petition included.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    base = datetime.now(UTC) - timedelta(days=90)
    names = iter(["王建国", "李秀英", "张伟", "刘洋", "陈静", "周强", "孙丽", "赵六", "钱七", "吴九", "郑十", "冯一", "何二"])
    # Days after `base`: bursts of three within five days, the first spanning exactly five; a copy
    # of one case (day 41); a petition alone in its spans (30); one before the links' reach (12).
    for day, external_id in ((12, None), (16, None), (18, None), (21, None), (30, None), (40, "XF-7"), (41, "XF-7"),
                             (43, None), (45, None), (55, None), (56, None), (58, None)):
        stored_on(database, f"first-{day}", FIRST | {"name": next(names)}, base + timedelta(days=day), external_id=external_id)
    for day in (50, 51, 52):
        stored_on(database, f"other-{day}", OTHER | {"name": f"{next(names, '林')}{day}"}, base + timedelta(days=day))
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    day = 86400.0
    start, end, span = base.timestamp() + 20 * day, base.timestamp() + 60 * day, 5 * day
    with database.sessions() as session:
        shared.refresh(session)
        expected = _emerging_by_definition(shared, session, start, end, span, 3)
        assert sorted(expected) == [[f"first-{d}" for d in (16, 18, 21, 40, 43, 45, 55, 56, 58)], ["other-50", "other-51", "other-52"]]
        # The members' rows are read a few at a time: here, in several reads.
        monkeypatch.setattr(similar, "CASES_READ", 4)
        found = similar.emerging_groups(session, shared, start, end, span, 3)
        assert [[info.triage_id for info in group] for group in found] == expected
    database.engine.dispose()


def test_a_purge_between_reading_a_group_and_queueing_it_leaves_no_purged_member_queued(database_url, small_model_dir,
                                                                                         monkeypatch):
    # The petition that makes a group read which earlier members were neither queued nor purged,
    # then queued them: a `triage purge` committed in between emptied their text, and they stood
    # in the review queue with nothing to review.
    monkeypatch.setattr("service.database.SQLITE_BUSY_TIMEOUT_S", 0.5)
    start = datetime.now(UTC) - timedelta(days=6)
    purged: list[int] = []
    with running(database_url, small_model_dir) as (client, keys):
        members = [triage(client, keys, petition(FIRST | {"name": name}, received_at=(start + timedelta(days=i)).isoformat()))
                   ["triage_id"] for i, name in enumerate(["王建国", "李秀英"])]

        def purge_before_queueing(_conn, _cursor, statement, parameters, *_: object) -> None:  # type: ignore[no-untyped-def]
            if purged or not statement.startswith("INSERT INTO review_items") or not any(m in repr(parameters) for m in members):
                return
            purged.append(0)
            # Another process, as `triage purge` is: a thread with its own engine, waited for here.
            purging = Database(database_url)
            purge = threading.Thread(target=lambda: purged.append(
                purge_petitions(purging, datetime.now(UTC), actor="test").petitions))
            purge.start()
            purge.join(30)
            purging.engine.dispose()

        event.listen(Engine, "before_cursor_execute", purge_before_queueing)
        try:
            third = triage(client, keys, petition(RETOLD, received_at=(start + timedelta(days=4)).isoformat()))
        finally:
            event.remove(Engine, "before_cursor_execute", purge_before_queueing)
        assert third["needs_review"] and purged == [0, 2], purged
        with Database(database_url).sessions() as session:
            for member in members:
                assert session.get(TriageRecord, member).body_masked == PURGED_TEXT
                assert session.get(ReviewItem, member) is None, member
            assert session.get(ReviewItem, third["triage_id"]) is not None


def test_dropping_rows_leaves_the_index_an_index_of_the_rows_kept_would_be():
    # A worker's index only grew: rows older than any window a lookup asks for stayed for the
    # worker's life. Dropped, the rows kept must be found, linked and ordered as in an index
    # built from them alone, before and after more rows are added.
    texts = [join_fields(p["title"], p["body"]) for p in generate(n=900, seed=11)]
    texts += texts[450:480]  # exact repeats, received with their originals: ties, which go to the earlier row
    rows = [(str(i), text, float(i if i < 900 else i - 450)) for i, text in enumerate(texts)]
    index = MatterIndex()
    index.add_many(rows)
    bytes_before = index.nbytes()
    dropped = {key for key, _text, when in rows if when < 400.0} | {str(i) for i in [*range(600, 900, 7), *range(900, 930, 4)]}
    assert index.drop([*dropped, "never-stored"]) == len(dropped)
    kept = [row for row in rows if row[0] not in dropped]
    alone = MatterIndex()
    alone.add_many(kept)
    later = [(f"later{i}", text, 900.0 + i) for i, text in enumerate(texts[400:460])]
    for stage in ("dropped", "added to"):
        assert len(index) == len(alone) and index.latest == alone.latest
        assert index.keys_between(0.0, 2000.0) == alone.keys_between(0.0, 2000.0)
        links = index.links_between(300.0, 1000.0)
        assert links == alone.links_between(300.0, 1000.0) and sum(map(len, links[1].values())) > 30
        for key, text, when in kept[::5]:
            assert index.query_key(key, since=when - 200, until=when + 200) == alone.query_key(key, since=when - 200, until=when + 200)
            assert index.query(text, limit=10) == alone.query(text, limit=10)
        if stage == "dropped":
            index.add_many(later)
            alone.add_many(later)
            kept += later
    assert index.nbytes() < bytes_before
    # A dropped key is no longer stored: it has no time and finds nothing.
    assert "0" not in index and index.whens(["0", "500"]) == {"500": 500.0} and index.query_key("0") == []
    assert index.drop(key for key, _text, _when in kept) == len(kept)
    assert len(index) == 0 and index.latest == float("-inf") and index.query(texts[500]) == []


def test_a_worker_drops_the_rows_stored_before_its_window_as_a_restart_would(tmp_path, monkeypatch):
    # A worker's index took in every new row and dropped none: one running for months held every
    # petition since it started, a few KB each, where a restarted one holds the window's. Once a
    # day it now drops the rows stored before the window, by when they were stored: a petition
    # entered today with an old date received is read by a restart, and stays.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    start = datetime.now(UTC)
    clock = {"now": start, "monotonic": 1000.0}

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return clock["now"]

    monkeypatch.setattr(similar, "datetime", Clock)
    monkeypatch.setattr(similar, "time", type("Monotonic", (), {"monotonic": staticmethod(lambda: clock["monotonic"])}))
    shared = SharedMatterIndex(window_days=30, threshold=0.5)
    stored_on(database, "stored-at-start", FIRST, start - timedelta(days=1), created=start - timedelta(days=1))
    with database.sessions() as session:
        shared.refresh(session)
    stored_on(database, "stored-by-another-worker", RETOLD, start, created=start)
    stored_on(database, "stored-here", OTHER, start, created=start)
    shared.add("stored-here", joined(petition(OTHER)), start)

    def refreshed() -> set[str]:
        with database.sessions() as session:
            shared.refresh(session)
        return set(shared.index.keys_between(float("-inf"), float("inf")))

    assert refreshed() == {"stored-at-start", "stored-by-another-worker", "stored-here"}
    shared._rows_frozen = len(shared.index)  # as a worker freezes its rows (service/heap.py)
    clock["now"] = start + timedelta(days=35)
    later = clock["now"]
    stored_on(database, "backfilled", FIRST | {"name": "张伟"}, later - timedelta(days=300), created=later)
    stored_on(database, "stored-lately", RETOLD | {"name": "赵六"}, later - timedelta(days=3), created=later - timedelta(days=3))
    # Not due yet: lookups meanwhile pay for no pass over the index.
    clock["monotonic"] += 12 * 3600
    assert refreshed() == {"stored-at-start", "stored-by-another-worker", "stored-here", "backfilled", "stored-lately"}
    clock["monotonic"] += 24 * 3600
    assert refreshed() == {"backfilled", "stored-lately"}
    restarted = SharedMatterIndex(window_days=30, threshold=0.5)
    with database.sessions() as session:
        restarted.refresh(session)
    assert set(restarted.index.keys_between(float("-inf"), float("inf"))) == refreshed()
    assert shared.index.latest == later.timestamp() - 3 * 86400
    # The rows not yet frozen are the ones added since the last freeze, not fewer than none.
    assert 0 <= shared._rows_frozen <= len(shared.index)
    with database.sessions() as session:
        assert [m.key for m in shared.lookup(session, joined(petition(FIRST)), later)] == ["stored-lately"]
    database.engine.dispose()


def test_a_row_dropped_between_a_lookup_and_the_search_for_its_group_is_outside_the_window(tmp_path, monkeypatch):
    # The group of a petition is searched from the keys a lookup found, asking the index for
    # their times; /v1/emerging asks for the times of the keys links_between found. A row
    # dropped in between (a worker drops the rows stored before its window) raised KeyError.
    database = Database(f"sqlite:///{tmp_path / 'triage.db'}")
    database.ensure_migrated()
    now = datetime.now(UTC)
    for day, name in enumerate(["王建国", "李秀英", "张伟", "赵六"]):
        stored_on(database, f"member{day}", FIRST | {"name": name}, now - timedelta(days=6 - day))
    shared = SharedMatterIndex(window_days=365, threshold=0.5)
    when = now.timestamp()
    with database.sessions() as session:
        matches = shared.lookup(session, joined(petition(RETOLD)), now)
        assert {m.key for m in matches} == {"member0", "member1", "member2", "member3"}
        shared.index.drop(["member0", "member1"])
        assert shared.group_of(matches, when - 14 * 86400, when, cap=10) == {"member2", "member3"}
        links_between = shared.index.links_between

        def dropped_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
            found = links_between(*args, **kwargs)
            shared.index.drop(["member2"])
            return found

        monkeypatch.setattr(shared.index, "links_between", dropped_meanwhile)
        groups = similar.emerging_groups(session, shared, when - 7 * 86400, when, 14 * 86400, min_size=1)
        assert [[info.triage_id for info in group] for group in groups] == [["member3"]]
    database.engine.dispose()
