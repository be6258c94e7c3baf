"""登记's ledger upload with the office files `triage predict` reads. In-process (Starlette's
client), a real SQLite database and the small model."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, time, timedelta, timezone

import openpyxl
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from office_ledgers import GROUPED_HEADER, OFFICE_ROWS, filtered_xlsx, office_xls, two_row_header_csv
from serving import app_with_key
from test_web_models import signed_in

from service.app import create_app
from service.database import Database, TriageRecord
from service.keys import create_key
from service.maintenance import purge_petitions
from service.settings import Settings
from training.ledger import LedgerWarningKind

BEIJING = timezone(timedelta(hours=8))


@pytest.fixture
def intake(small_model_dir, tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir,
                        registry_dir=tmp_path / "no-registry")
    with app_with_key(settings, "intake", label="登记窗口") as served:
        yield served


def test_an_excel_97_2003_ledger_is_taken_by_the_intake_page(intake, tmp_path):
    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = office_xls(tmp_path / "台账.xls")
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.xls", ledger.read_bytes(), "application/vnd.ms-excel")})
    assert answer.status_code == 200, answer.text
    assert 'id="ledger-table"' in answer.text
    with database.sessions() as session:
        stored = {row.external_id for row in session.query(TriageRecord)}
    assert stored == {row[1] for row in OFFICE_ROWS}


def test_the_suggestions_download_keeps_formula_like_text_as_text(intake, tmp_path):
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    title, external_id = '=HYPERLINK("http://example.invalid","点此查看")', "=1+1"
    ledger = tmp_path / "台账.csv"
    pd.DataFrame({"编号": [external_id], "标题": [title], "内容": ["老板拖欠工资三个月，请劳动监察部门帮忙。"]}).to_csv(
        ledger, index=False)
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 200, answer.text
    link = re.search(r'href="(/intake/ledger\.xlsx\?t=[^"]+)"', answer.text).group(1)
    download = client.get(html.unescape(link))
    assert download.status_code == 200
    row = openpyxl.load_workbook(io.BytesIO(download.content)).active[2]
    assert (row[0].value, row[0].data_type) == (external_id, "s")
    assert (row[1].value, row[1].data_type) == (title, "s")


def test_an_uploaded_ledgers_dates_are_the_offices_time_not_utc(intake, tmp_path):
    # 登记日期 is written in Beijing time, as `triage train` and `retrain` read it; sent on
    # without an offset the API took 09:30 for UTC, and the time limits ran eight hours late.
    # A date alone is that day's midnight in Beijing, as the intake form takes it, and the
    # pages show the office's clock.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = tmp_path / "台账.csv"
    pd.DataFrame({"编号": ["TZ-1", "TZ-2"], "标题": ["拖欠工资", "工地欠薪"],
                  "内容": ["老板三个月没发工资了。", "包工头跑了，工资没人给。"],
                  "登记日期": ["2026年7月1日 09:30", "2026-07-02"]}).to_csv(ledger, index=False)
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 200, answer.text
    received, shown = {}, {}
    for triage_id in set(re.findall(r'/cases/([0-9a-f-]{36})', answer.text)):
        case = client.get(f"/v1/triage/{triage_id}", headers={"X-API-Key": key}).json()
        received[case["external_id"]] = (case["received_at"], case["time_limits"]["accept_by"])
        shown[case["external_id"]] = client.get(f"/cases/{triage_id}").text
    assert received == {"TZ-1": ("2026-07-01T01:30:00Z", "2026-07-16T01:30:00Z"),
                        "TZ-2": ("2026-07-01T16:00:00Z", "2026-07-16T16:00:00Z")}, received
    assert "2026-07-01 09:30 北京时间" in shown["TZ-1"] and "2026-07-16 09:30 北京时间" in shown["TZ-1"]
    assert "2026-07-02 00:00 北京时间" in shown["TZ-2"] and "UTC" not in shown["TZ-2"]
    # The download gives the same office dates as the pages: TZ-2's deadline, 16:00 UTC, is
    # already the next day in Beijing.
    link = re.search(r'href="(/intake/ledger\.xlsx\?t=[^"]+)"', answer.text).group(1)
    sheet = openpyxl.load_workbook(io.BytesIO(client.get(html.unescape(link)).content)).active
    limits = {row[0]: row[9:11] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert limits == {"TZ-1": ("2026-07-16", "2026-08-30"), "TZ-2": ("2026-07-17", "2026-08-31")}, limits


def test_a_ledger_over_the_size_limit_gets_a_page_saying_so_and_the_api_keeps_json(intake, tmp_path):
    # The clerk saw the API's {"detail": "request body over 2000000 bytes"}, or a broken
    # connection when the answer came before the upload was sent.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    form = client.get("/intake").text
    assert "每次最多 100 行、2 MB" in form
    ledger = tmp_path / "台账.csv"
    pd.DataFrame({"编号": [f"XF-{i}" for i in range(90)], "标题": ["拖欠工资"] * 90,
                  "内容": ["老板三个月没发工资了。" * 1000] * 90}).to_csv(ledger, index=False)
    assert ledger.stat().st_size > 2_000_000
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "上传的文件超过 2 MB 的上限" in answer.text
    api = client.post("/v1/triage", content=b"x" * 2_100_000, headers={"X-API-Key": key, "content-type": "application/json"})
    assert api.status_code == 413 and api.json() == {"detail": "request body over 2000000 bytes"}
    assert client.get("/v1/triage/no-such-id", headers={"X-API-Key": key}).json() == {"detail": "triage_id: no triage 'no-such-id'"}


def test_a_ledger_over_the_row_limit_is_refused_in_the_pages_language(intake, tmp_path):
    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = tmp_path / "台账.csv"
    pd.DataFrame({"编号": [f"XF-{i}" for i in range(101)], "标题": ["拖欠工资"] * 101,
                  "内容": ["老板三个月没发工资了。"] * 101}).to_csv(ledger, index=False)
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 422
    assert "台账.csv：有 101 行，超过每次 100 行的上限（TRIAGE_MAX_BATCH）" in answer.text, answer.text
    with database.sessions() as session:
        assert session.query(TriageRecord).count() == 0


def test_the_intake_forms_errors_are_in_the_pages_language(intake):
    # The form showed the API's English ("body: 20001 characters, over the limit of 20000").
    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    cases = [({"title": " ", "body": "\u200b"}, "标题和正文都是空的：请至少填写其中一项"),
             ({"title": "欠薪", "body": "工资没发。" * 5000}, "正文：25000 字，超过上限 20000 字"),
             ({"title": "欠" * 501, "body": "工资没发。"}, "标题：最多 500 字，现有 501 字")]
    for form, message in cases:
        answer = client.post("/intake", data={"csrf_token": csrf, **form})
        assert answer.status_code == 422 and message in answer.text, answer.text[-800:]
        assert "characters" not in answer.text and "String should" not in answer.text
    with database.sessions() as session:
        assert session.query(TriageRecord).count() == 0


@pytest.fixture
def desks(small_model_dir, tmp_path):
    """The app with an intake key and a reviewer key, on a real SQLite file."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir,
                        registry_dir=tmp_path / "no-registry")
    database = Database(settings.database_url)
    database.migrate()
    with database.sessions() as session:
        intake_key, reviewer_key = create_key(session, "intake"), create_key(session, "reviewer")
    with TestClient(create_app(settings)) as client:
        yield client, intake_key, reviewer_key
    database.engine.dispose()


def test_the_review_page_names_and_filters_emerging_groups(desks):
    # The API queues emerging groups as reason=emerging_group; the reviewer's page showed the
    # code itself and could not filter on it.
    client, intake_key, reviewer_key = desks
    letter = {"title": "宏达建筑公司拖欠农民工工资",
              "body": "我们在宏达建筑公司承建的幸福家园三期项目干活，工程款结了，包工头一直拖欠我们的工资。"}
    for _ in range(3):
        assert client.post("/v1/triage", json=letter, headers={"X-API-Key": intake_key}).status_code == 200
    queued = client.get("/v1/review-queue", params={"reason": "emerging_group"},
                        headers={"X-API-Key": reviewer_key}).json()
    assert queued, "three letters about one matter make an emerging group"
    signed_in(client, reviewer_key, landing="/review")
    listed = client.get("/review", params={"reason": "emerging_group"}).text
    assert '<option value="emerging_group" selected>疑似群体性事项</option>' in listed
    assert listed.count(f'/cases/{queued[0]["triage_id"]}') >= 1 and ">emerging_group<" not in listed
    case = client.get(f"/cases/{queued[0]['triage_id']}").text
    assert "已进入信访办研判队列（疑似群体性事项）" in case


def a_group_and_another_matter(client, intake_key: str, prefix: str, opening: str) -> tuple[list[str], str]:
    """Three petitions about one matter received one, two and three days ago (an emerging group),
    the oldest first, and one about another matter; their triage ids."""
    letter = {"title": "宏达建筑公司拖欠农民工工资",
              "body": f"{opening}我们在宏达建筑公司承建的幸福家园三期项目干活，工程款结了，包工头一直拖欠我们的工资。"}
    now = datetime.now(UTC)
    ids = [client.post("/v1/triage", json=letter | {"external_id": f"{prefix}-{days}", "received_at": (now - timedelta(days=days)).isoformat()},
                       headers={"X-API-Key": intake_key}).json()["triage_id"] for days in (3, 2, 1)]
    other = client.post("/v1/triage", json={"title": "咨询养老金", "body": "请问我今年退休，缴费十五年，每月养老金大概能领多少？"},
                        headers={"X-API-Key": intake_key}).json()["triage_id"]
    return ids, other


def test_the_first_petition_of_an_emerging_group_shows_the_later_ones_on_its_case_page(desks):
    # The first two petitions of a group are queued (疑似群体性事项) when the third arrives, and the
    # queue lists them first: their case pages showed the flag and none of the petitions that made
    # the group, which came after them. Their pages now list the later petitions of the matter.
    client, intake_key, reviewer_key = desks
    ids, other = a_group_and_another_matter(client, intake_key, "QT", "")
    queued = client.get("/v1/review-queue", params={"reason": "emerging_group"}, headers={"X-API-Key": reviewer_key}).json()
    assert ids[0] in {i["triage_id"] for i in queued}
    signed_in(client, reviewer_key, landing="/review")
    first = client.get(f"/cases/{ids[0]}").text
    later = first[first.index('id="later"'):].split("</ul>")[0]
    assert "同一事项的后续来信" in first and re.findall(r'/cases/([0-9a-f-]{36})', later) == ids[1:]
    assert "QT-2" in later and other not in first
    assert 'id="later"' not in client.get(f"/cases/{ids[2]}").text


def test_the_review_page_says_which_filter_or_note_it_cannot_take(desks):
    # An unknown division (a bookmark from before a taxonomy change) showed the API's JSON; a
    # mistyped date was dropped and the whole queue shown under it; a note over the limit was
    # answered "请填写研判意见" as if empty. A browser counts a line break as one character of
    # the textarea's maxlength but sends two (CRLF): such a note is within the limit.
    client, intake_key, reviewer_key = desks
    urgent = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
    tid = client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["triage_id"]
    csrf = signed_in(client, reviewer_key, landing="/review")
    unknown = client.get("/review", params={"division": "no_such_division"})
    assert unknown.status_code == 422 and unknown.headers["content-type"].startswith("text/html")
    assert "处室：没有 'no_such_division' 这个处室" in html.unescape(unknown.text) and tid not in unknown.text
    mistyped = client.get("/review", params={"since": "2026/12/01"})
    assert mistyped.status_code == 422 and "自：无法识别的日期 '2026/12/01'" in html.unescape(mistyped.text)
    assert tid in client.get("/review").text
    too_long = client.post(f"/review/{tid}/resolve", data={"csrf_token": csrf, "note": "查" * 2001})
    assert too_long.status_code == 422 and "研判意见：最多 2000 字，现有 2001 字" in too_long.text
    empty = client.post(f"/review/{tid}/resolve", data={"csrf_token": csrf, "note": " "})
    assert empty.status_code == 422 and "研判意见：请填写" in empty.text
    lines = "\r\n".join(["已电话联系"] * 300)  # 1,799 characters as typed, 2,098 as sent
    resolved = client.post(f"/review/{tid}/resolve", data={"csrf_token": csrf, "note": lines}, follow_redirects=False)
    assert resolved.status_code == 303, resolved.text[-500:]
    item = client.get(f"/v1/triage/{tid}", headers={"X-API-Key": reviewer_key}).json()["review"]
    assert item["status"] == "resolved" and item["note"] == lines.replace("\r\n", "\n")


def test_the_review_page_says_when_it_cannot_take_a_reason_or_status(desks):
    # A reason or status the page does not know (a link with the code mistyped, or one sent
    # round by e-mail from another system) was dropped: the whole open queue was listed under
    # the "全部" the reviewer had not chosen, and read as the items of that reason.
    client, intake_key, reviewer_key = desks
    urgent = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
    tid = client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["triage_id"]
    signed_in(client, reviewer_key, landing="/review")
    reason = client.get("/review", params={"reason": "emerging"})
    assert reason.status_code == 422 and "原因：没有 'emerging' 这个原因" in html.unescape(reason.text) and tid not in reason.text
    status = client.get("/review", params={"status": "closed"})
    assert status.status_code == 422 and "状态：没有 'closed' 这个状态" in html.unescape(status.text) and tid not in status.text
    assert tid in client.get("/review", params={"reason": "high_risk", "status": "open"}).text


def test_rows_and_dates_a_ledger_upload_sets_aside_are_shown_with_the_results(intake, tmp_path):
    # The reading leaves a total row out and an unreadable date empty (the time limits then
    # run from the triage): said on the page, not only in the server's log.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = tmp_path / "台账.csv"
    pd.DataFrame({"编号": ["A-1", "A-2", "合计"], "标题": ["拖欠工资", "工地欠薪", ""],
                  "内容": ["老板三个月没发工资了。", "包工头跑了，工资没人给。", ""],
                  "登记日期": ["2026-07-01", "七月一日", ""]}).to_csv(ledger, index=False)
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 200, answer.text
    notices = [html.unescape(n) for n in re.findall(r'<p class="notice">([^<]*)</p>', answer.text)]
    assert "台账.csv：第 4 行是合计或表尾" in notices[0] and "upload.csv" not in answer.text
    assert notices[1].startswith("台账.csv，「登记日期」列：第 3 行不是能识别的日期（如「七月一日」），已留空"), notices


def test_a_received_date_with_a_wrong_year_is_refused_in_the_pages_language(intake):
    # The form answered "收件日期：Value error, 2027-12-06T16:00:00+00:00 is in the future; …":
    # English, and in UTC the day before the date the clerk typed.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    petition = {"csrf_token": csrf, "title": "失业保险金申领", "body": "我上个月被公司辞退，想申领失业保险金，请问去哪里办理？"}
    ahead = client.post("/intake", data={**petition, "received_at": "2062-12-07"})
    assert ahead.status_code == 422 and "收件日期：晚于今天" in ahead.text and "future" not in ahead.text
    assert "失业保险金申领" in ahead.text  # what was typed stays in the form
    early = client.post("/intake", data={**petition, "received_at": "0001-01-01"})
    assert early.status_code == 422 and "收件日期：超出可以保存的日期范围" in early.text and "outside" not in early.text


def test_a_queue_longer_than_the_page_says_so(desks, monkeypatch):
    # The page lists at most QUEUE_SHOWN items and said "500 件" for a queue of 800.
    from service.web import review

    monkeypatch.setattr(review, "QUEUE_SHOWN", 2, raising=False)
    client, intake_key, reviewer_key = desks
    for n in range(3):
        urgent = {"title": f"讨薪无门{n}", "body": f"工地拖欠工资{n + 3}个月，再不解决我就从公司楼顶跳楼。"}
        assert client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["needs_review"]
    signed_in(client, reviewer_key, landing="/review")
    full = client.get("/review").text
    assert "超过 2 件，本页列出最先要办的 2 件" in full and "2 件。" not in full
    one = client.get("/review", params={"status": "resolved"}).text
    assert "0 件。" in one and "本页列出" not in one and "下一页" not in one


def test_the_review_pages_next_page_link_lists_the_rest_of_the_queue_under_the_same_filters(desks, monkeypatch):
    # The page listed the first 500 items and had no further pages: the 501st was never seen.
    from service.web import review

    monkeypatch.setattr(review, "QUEUE_SHOWN", 2, raising=False)
    client, intake_key, reviewer_key = desks
    for n in range(5):
        urgent = {"title": f"讨薪无门{n}", "body": f"工地拖欠工资{n + 3}个月，再不解决我就从公司楼顶跳楼。"}
        assert client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["needs_review"]
    client.post("/v1/triage", json={"title": "问题", "body": "有个事情想问一下。"}, headers={"X-API-Key": intake_key})
    queue = client.get("/v1/review-queue", params={"reason": "high_risk"}, headers={"X-API-Key": reviewer_key}).json()
    assert len(queue) == 5
    signed_in(client, reviewer_key, landing="/review")
    listed, pages, url = [], [], "/review?status=open&reason=high_risk"
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        pages.append(answer.text)
        listed += re.findall(r'<tr data-triage="([^"]+)"', answer.text)
        following = re.search(r'<a href="([^"]+)" rel="next">下一页</a>', answer.text)
        url = html.unescape(following.group(1)) if following else None
        if url:
            assert "reason=high_risk" in url and "status=open" in url
    assert listed == [i["triage_id"] for i in queue]
    assert len(pages) == 3
    assert "超过 2 件，本页列出最先要办的 2 件" in pages[0] and "回到第一页" not in pages[0]
    assert "续前页，本页列出最先要办的 2 件" in pages[1]
    assert "续前页，本页 1 件，已是最后一页" in pages[2] and "下一页" not in pages[2]
    first = html.unescape(re.search(r'<a href="([^"]+)">回到第一页</a>', pages[2]).group(1))
    assert first == "/review?status=open&reason=high_risk"
    # A cut or edited link is said, in Chinese, not answered with the queue's first page.
    cut = client.get("/review?status=open&cursor=abc")
    assert cut.status_code == 422 and "翻页：链接中的页码无法识别" in cut.text and "<tr data-triage=" not in cut.text


def test_the_review_pages_resolved_list_shows_the_most_recently_resolved(desks, monkeypatch):
    # 已研判 listed the items queued first, and a full page said "处理后刷新": once the office had
    # resolved a page of them, what a colleague resolved today was on no page.
    from service.web import review

    monkeypatch.setattr(review, "QUEUE_SHOWN", 2, raising=False)
    client, intake_key, reviewer_key = desks
    ids = []
    for n in range(3):
        urgent = {"title": f"讨薪无门{n}", "body": f"工地拖欠工资{n + 3}个月，再不解决我就从公司楼顶跳楼。"}
        ids.append(client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["triage_id"])
    for tid in (ids[1], ids[2], ids[0]):
        resolved = client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已处理"}, headers={"X-API-Key": reviewer_key})
        assert resolved.status_code == 200, resolved.text
    signed_in(client, reviewer_key, landing="/review")
    page = client.get("/review", params={"status": "resolved"}).text
    assert re.findall(r'<tr data-triage="([^"]+)"', page) == [ids[0], ids[2]]
    assert "超过 2 件，本页列出最近研判的 2 件" in page and "最先要办" not in page and "最近研判的在前" in page


def test_a_ledgers_refused_rows_say_why_in_the_pages_language(intake):
    # Each refused row showed the API's English, a mistyped year as "2062-11-30T16:00:00+00:00
    # is in the future", the day before the ledger's date.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = ("编号,标题,内容,登记日期\nTZ-301,社保补缴,我想补缴社保，请问流程。,2062-12-01\n"
              f"TZ-302,长信,{'工资没发。' * 5000},2026-12-01\nTZ-303,咨询职称,请问职称评审什么时候报名？,2026-12-01\n")
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.encode(), "text/csv")})
    assert answer.status_code == 200, answer.text
    errors = re.findall(r'<td colspan="6" class="error">([^<]*)</td>', answer.text)
    assert errors == ["收件日期：晚于今天：收件在登记之前，请检查年份", "正文：25000 字，超过上限 20000 字"]


@pytest.mark.parametrize("ledger, said", [
    ("编号,标题,内容\nTZ-401,拖欠工资,老板没发工资。\nTZ-402,,\n", "台账.csv，第 3 行，「内容」列：标题和内容都是空的"),
    ("编号,标题,内容\n", "台账.csv：表头下面没有数据行"),
    ("编号,标题\nTZ-404,拖欠工资\n", "台账.csv：缺少必需的列（missing column(s) ['body']"),
])
def test_a_refused_ledger_says_where_and_why_in_the_pages_language(intake, ledger, said):
    # The clerk was shown the command line's "upload.csv, row 3, column 'body': empty petition text".
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.encode(), "text/csv")})
    assert answer.status_code == 422 and said in html.unescape(answer.text), answer.text[-1500:]


def test_a_case_number_excel_shortened_is_refused_in_the_pages_language_saying_how_to_keep_it(intake):
    # The page showed 台账无法读取（'2.02607E+11' under '信访件编号' is a long number as Excel shortened it …）.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = "信访件编号,标题,来信内容\n202607010001,欠薪,三个月没发工资\n2.02607E+11,养老,视同缴费年限\n"
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.encode("gbk"), "text/csv")})
    text = html.unescape(answer.text)
    assert answer.status_code == 422, text[-1500:]
    said = re.search(r"台账\.csv，第 3 行，「信访件编号」列：[^<]*", text)
    assert said, text[-1500:]
    assert "2.02607E+11" in said[0] and '在 Excel 中把该列设为"文本"格式后重新导出' in said[0]
    assert "Excel shortened" not in text and "台账无法读取" not in text


def test_a_key_revoked_while_signed_in_is_named_on_the_sign_in_form(intake):
    # The next click landed on 登录 without a word, and the clerk tried the revoked key again.
    from service.keys import revoke_key

    client, key, database = intake
    signed_in(client, key, landing="/intake")
    with database.sessions() as session:
        assert revoke_key(session, key)
    answer = client.get("/intake")
    assert answer.url.path == "/signin" and "此前使用的密钥已被吊销，请用新的密钥登录。" in answer.text
    assert client.get("/intake").url.path == "/signin"  # the session is ended, not just refused once


def test_a_page_address_that_cannot_be_opened_answers_a_page_not_json(intake):
    # The ledger's results reopened in a new tab answered {"detail":"Method Not Allowed"}.
    client, key, _ = intake
    signed_in(client, key, landing="/intake")
    reopened = client.get("/intake/ledger")
    assert reopened.status_code == 405 and reopened.headers["content-type"].startswith("text/html")
    assert "只接受表单提交" in reopened.text and "Method Not Allowed" not in reopened.text
    mistyped = client.get("/case/123")
    assert mistyped.status_code == 404 and "没有这个页面" in mistyped.text
    assert client.get("/v1/nothing").json() == {"detail": "Not Found"}


def test_a_petition_or_ledger_sent_again_from_the_intake_page_is_stored_once(intake, tmp_path):
    # The form sent twice (a second click, the browser sending it again) or the same ledger
    # uploaded again made a second case of every petition with its 编号.
    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    form = {"csrf_token": csrf, "title": "老板拖欠工资", "body": "我在城东电子厂上班，老板三个月没发工资了。", "external_id": "XF-2026-0007"}
    cases = [client.post("/intake", data=form, follow_redirects=False) for _ in range(2)]
    assert [c.status_code for c in cases] == [303, 303]
    assert cases[0].headers["location"].split("?")[0] == cases[1].headers["location"].split("?")[0]
    ledger = office_xls(tmp_path / "台账.xls").read_bytes()
    for _ in range(2):
        answer = client.post("/intake/ledger", data={"csrf_token": csrf}, files={"ledger": ("台账.xls", ledger, "application/vnd.ms-excel")})
        assert answer.status_code == 200, answer.text
    with database.sessions() as session:
        assert session.query(TriageRecord).count() == 1 + len(OFFICE_ROWS)


def test_the_review_page_says_when_its_dates_are_the_wrong_way_round(desks):
    # 自 after 至 matched nothing, and the page said "0 件" as of an empty queue.
    client, intake_key, reviewer_key = desks
    urgent = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
    assert client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).status_code == 200
    signed_in(client, reviewer_key, landing="/review")
    reversed_dates = client.get("/review", params={"since": "2026-12-08", "until": "2026-12-01"})
    assert reversed_dates.status_code == 422
    assert "自 2026-12-08 晚于 至 2026-12-01" in reversed_dates.text
    assert client.get("/review", params={"since": "2026-12-01", "until": "2026-12-01"}).status_code == 200


def test_the_case_page_says_a_purged_petition_cannot_be_queued_as_high_risk(desks):
    # A clerk marking 当日人工研判 on a petition whose text retention deleted put it back in the
    # 研判 queue with nothing to review. The page says why it was not recorded, in Chinese.
    client, intake_key, reviewer_key = desks
    routine = {"title": "咨询职称评审", "body": "请问今年中级职称评审什么时候开始报名？"}
    suggestion = client.post("/v1/triage", json=routine, headers={"X-API-Key": intake_key}).json()
    tid = suggestion["triage_id"]
    assert purge_petitions(client.app.state.database, datetime.now(UTC), actor="test").petitions == 1
    csrf = signed_in(client, intake_key, landing="/intake")
    refused = client.post(f"/cases/{tid}/decision", data={"csrf_token": csrf, "division": suggestion["division"]["code"],
                                                          "risk": "high", "reason": "来电称要轻生"}, follow_redirects=False)
    assert refused.status_code == 409
    assert "此件正文已按保留期限删除，无法再进入研判队列：标为“当日人工研判”的决定未记录" in html.unescape(refused.text)
    assert "来电称要轻生" in refused.text, "the reason typed is kept in the form"
    assert client.get("/v1/review-queue", params={"status": "all"}, headers={"X-API-Key": reviewer_key}).json() == []


def test_the_review_page_refuses_a_date_beyond_the_calendar_in_chinese(desks):
    # 至 9999-12-31 ends at the day after it, past the last date there is, and 自 0001-01-01
    # begins in Beijing before UTC's first moment: both were answered with a 500.
    client, intake_key, reviewer_key = desks
    urgent = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
    tid = client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["triage_id"]
    signed_in(client, reviewer_key, landing="/review")
    for field, label, typed in (("until", "至", "9999-12-31"), ("since", "自", "0001-01-01")):
        refused = client.get("/review", params={field: typed})
        assert refused.status_code == 422, field
        assert f"{label}：超出可以查询的日期范围，现为 {typed}" in html.unescape(refused.text) and tid not in refused.text
    assert tid in client.get("/review", params={"since": "0001-01-02", "until": "9999-12-30"}).text


def test_the_review_queue_shows_the_division_a_clerk_reassigned_it_to(desks):
    # Reassigned at intake, the queued item still showed the model's division only: the
    # reviewer followed it up with a division that no longer handled it.
    client, intake_key, reviewer_key = desks
    urgent = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
    triaged = client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()
    other = "external" if triaged["division"]["code"] != "external" else "pension"
    decided = client.post("/v1/decisions", headers={"X-API-Key": intake_key},
                          json={"triage_id": triaged["triage_id"], "division": other, "decided_by": "登记窗口", "reason": "属外单位职责"})
    assert decided.status_code == 201, decided.text
    signed_in(client, reviewer_key, landing="/review")
    queue = client.get("/review").text
    row = re.search(rf'<tr data-triage="{triaged["triage_id"]}">.*?</tr>', queue, re.S).group(0)
    other_name = {"external": "转外部门", "pension": "养老保险处"}[other]
    assert other_name in row and f"模型建议：{triaged['division']['name']}" in row


def test_a_note_too_late_for_a_resolved_item_is_quoted_back(desks):
    # Someone else resolved it first: the page has no form left to keep the note in, and
    # the reviewer's note was gone.
    client, intake_key, reviewer_key = desks
    urgent = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。"}
    tid = client.post("/v1/triage", json=urgent, headers={"X-API-Key": intake_key}).json()["triage_id"]
    assert client.post(f"/v1/review-queue/{tid}/resolve", json={"note": "已安排接待"},
                       headers={"X-API-Key": reviewer_key}).status_code == 200
    csrf = signed_in(client, reviewer_key, landing="/review")
    late = client.post(f"/review/{tid}/resolve", data={"csrf_token": csrf, "note": "已电话回访，当事人同意等待"})
    assert late.status_code == 409
    assert "您的研判意见未记录：「已电话回访，当事人同意等待」" in late.text


def test_a_petition_or_ledger_sent_again_from_the_intake_page_says_it_was_registered_before(intake, tmp_path):
    # Sent again, the clerk was taken to the case stored before (perhaps decided since by a
    # colleague) or shown the ledger's rows as if new, with nothing saying they were not.
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    form = {"csrf_token": csrf, "title": "老板拖欠工资", "body": "我在城东电子厂上班，老板三个月没发工资了。", "external_id": "XF-2026-0008"}
    first, again = (client.post("/intake", data=form) for _ in range(2))
    assert first.status_code == again.status_code == 200
    assert "此前已登记" not in first.text and "此前已登记" in again.text
    ledger = office_xls(tmp_path / "台账.xls").read_bytes()
    first, again = (client.post("/intake/ledger", data={"csrf_token": csrf}, files={"ledger": ("台账.xls", ledger, "application/vnd.ms-excel")})
                    for _ in range(2))
    assert "此前已登记" not in first.text and again.text.count("此前已登记") == len(OFFICE_ROWS)


@pytest.mark.parametrize(("name", "encoding"), [("台账.txt", "utf-16"), ("台账.tsv", "gbk"), ("台账.xlsm", None)])
def test_a_ledger_saved_as_excel_text_or_with_macros_is_read_by_the_page_as_predict_reads_it(intake, tmp_path, small_model_dir,
                                                                                           capsys, name, encoding):
    # Excel's 另存为 "Unicode 文本" or "文本文件(制表符分隔)" writes a tab-separated .txt, and a
    # workbook with macros is an .xlsm: `triage predict` scored them, the page refused them
    # ("只接受 .xlsx、.xls、.csv、.jsonl 文件").
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = tmp_path / name
    frame = pd.DataFrame({"编号": ["TX-1", "TX-2"], "标题": ["拖欠工资", "工地欠薪"],
                          "内容": ["老板三个月没发工资了。", "包工头跑了，工资没人给。"]})
    if encoding is None:
        with pd.ExcelWriter(ledger, engine="openpyxl") as writer:
            frame.to_excel(writer, index=False)
    else:
        frame.to_csv(ledger, sep="\t", index=False, encoding=encoding)
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    capsys.readouterr()
    predicted = pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"].tolist()
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": (name, ledger.read_bytes(), "application/octet-stream")})
    assert answer.status_code == 200, answer.text
    with database.sessions() as session:
        stored = sorted(row.external_id for row in session.query(TriageRecord))
    assert stored == predicted == ["TX-1", "TX-2"]


def test_rows_hidden_by_a_filter_are_left_out_by_the_page_as_by_predict_and_said_with_the_results(intake, tmp_path,
                                                                                                  small_model_dir, capsys):
    # A ledger filtered to this month in Excel and saved: the page registered last months'
    # hidden rows as new cases, and predict scored them, without a word.
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = filtered_xlsx(tmp_path / "台账.xlsx")
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    assert "3 hidden row(s) left out: 2, 3, 5" in capsys.readouterr().err
    predicted = pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"].tolist()
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.xlsx", ledger.read_bytes(), "application/octet-stream")})
    assert answer.status_code == 200, answer.text
    assert "台账.xlsx：第 2、3、5 行在 Excel 中被筛选掉或隐藏，未读取" in html.unescape(answer.text)
    with database.sessions() as session:
        stored = sorted(row.external_id for row in session.query(TriageRecord))
    assert stored == predicted == ["XF-2026-0901", "XF-2026-0902"]


def test_a_two_row_header_pasted_again_is_left_out_by_the_page_as_by_predict(intake, tmp_path, small_model_dir, capsys):
    # Two months pasted one under the other, each under 基本信息/办理情况 over the names: the
    # second header's rows stopped both, the group headings as a petition numbered 基本信息.
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = two_row_header_csv(tmp_path / "台账.csv", header=GROUPED_HEADER, months=2)
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    assert "row(s) 5, 6 left out: the header again" in capsys.readouterr().err
    predicted = pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"].tolist()
    answer = client.post("/intake/ledger", data={"csrf_token": csrf}, files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 200, answer.text
    assert "台账.csv：第 5、6 行是重复的表头，不是信访件，未读取" in html.unescape(answer.text)
    with database.sessions() as session:
        stored = sorted(row.external_id for row in session.query(TriageRecord))
    assert stored == predicted == ["XF-2026-0301", "XF-2026-0302", "XF-2026-0401"]


def test_a_month_title_in_a_ledger_without_a_row_counter_is_left_out_by_the_page_as_by_predict(intake, tmp_path,
                                                                                               small_model_dir, capsys):
    # A year's ledger split into months by 八月份 merged across the row, with no 序号: the
    # title sat under 编号 and stopped the upload and predict as a petition with no text.
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    book = openpyxl.Workbook()
    for row in (["编号", "标题", "内容"], ["A-7", "拖欠工资", "老板三个月没发工资了。"], ["八月份"],
                ["A-8", "工地欠薪", "包工头跑了，工资没人给。"]):
        book.active.append(row)
    book.active.merge_cells("A3:C3")
    ledger = tmp_path / "台账.xlsx"
    book.save(ledger)
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    assert "row(s) 3 left out: a heading between petitions" in capsys.readouterr().err
    predicted = pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"].tolist()
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.xlsx", ledger.read_bytes(), "application/octet-stream")})
    assert answer.status_code == 200, answer.text[-1500:]
    assert "台账.xlsx：第 3 行是信访件之间的分类标题或月份标题" in html.unescape(answer.text)
    with database.sessions() as session:
        stored = sorted(row.external_id for row in session.query(TriageRecord))
    assert stored == predicted == ["A-7", "A-8"]


def test_a_column_hidden_beside_a_shown_one_is_left_out_by_the_page_as_by_predict(intake, tmp_path, small_model_dir,
                                                                                 capsys):
    # Last year's 内容 kept hidden beside this year's, under the same header: predict and the
    # page read the hidden one, the text the clerk cannot see, in place of the shown one.
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = _hidden_columns_xlsx(tmp_path / "台账.xlsx")
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    assert "column C '内容' is hidden in Excel and left out; column D '内容' is read" in capsys.readouterr().err
    predicted = pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"].tolist()
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.xlsx", ledger.read_bytes(), "application/octet-stream")})
    assert answer.status_code == 200, answer.text[-1500:]
    assert "台账.xlsx：C 列「内容」在 Excel 中被隐藏，未读取" in html.unescape(answer.text)
    with database.sessions() as session:
        stored = {row.external_id: row.body_masked for row in session.query(TriageRecord)}
    assert sorted(stored) == predicted == ["A-7", "A-8"]
    assert "旧的内容" not in " ".join(stored.values())


def test_the_emerging_groups_page_lists_a_group_with_its_members_and_links(desks):
    # GET /v1/emerging listed the groups, but reviewers had no page for them: they saw a group
    # only through its members' queue items or on a case page. 群体苗头 lists each group with its
    # members linked to their case pages, by number and never by petitioner.
    client, intake_key, reviewer_key = desks
    ids, other = a_group_and_another_matter(client, intake_key, "QZ", "我叫王建国，")
    signed_in(client, reviewer_key, landing="/review")
    assert '<a href="/emerging">群体苗头</a>' in client.get("/review").text
    listed = client.get("/emerging")
    assert listed.status_code == 200, listed.text[-800:]
    text = html.unescape(listed.text)
    assert 'value="14"' in text and 'value="3"' in text, "the filters show the settings' defaults"
    group = text[text.index('id="group-1"'):]
    assert re.findall(r'<a href="/cases/([0-9a-f-]{36})">QZ-', group) == ids
    assert "3 件" in group and "首件收到" in group and "待研判" in group and "宏达建筑" in group
    assert other not in text and "王建国" not in text
    assert 'id="group-2"' not in text
    assert "没有群体苗头" in client.get("/emerging", params={"min_size": "4"}).text
    # An analyst sees the groups too, numbered without links: the case pages are not theirs to open.
    database = Database(client.app.state.settings.database_url)
    with database.sessions() as session:
        analyst_key = create_key(session, "analyst")
    database.engine.dispose()
    signed_in(client, analyst_key, landing="/overview")
    assert client.get("/", follow_redirects=False).headers["location"] == "/overview", "analysts still land on 统计"
    analysed = client.get("/emerging").text
    assert all(f'<tr data-triage="{tid}">' in analysed for tid in ids) and "/cases/" not in analysed and "QZ-1" in analysed


def test_the_emerging_groups_page_refuses_other_roles_and_unreadable_filters_in_chinese(desks):
    client, intake_key, reviewer_key = desks
    signed_in(client, intake_key, landing="/intake")
    assert "群体苗头" not in client.get("/intake").text
    refused = client.get("/emerging")
    assert refused.status_code == 403 and "当前密钥的角色是登记（intake）" in refused.text and "研判（reviewer）" in refused.text
    signed_in(client, reviewer_key, landing="/review")
    days = client.get("/emerging", params={"days": "两周"})
    assert days.status_code == 422 and "天数：无法识别 '两周'" in html.unescape(days.text)
    size = client.get("/emerging", params={"days": "400", "min_size": "1"})
    assert size.status_code == 422
    assert "天数：应大于 0 且不超过 366，现为 400；最少件数：应在 2 到 1000 件之间，现为 1" in html.unescape(size.text)
    assert 'id="group-count"' not in size.text



def a_group_up_to_an_evening(client, intake_key: str) -> tuple[date, list[str]]:
    """Three petitions about one matter, the last received at 23:30 in Beijing on a day, and a
    fourth at 00:30 the next day there (still that day in UTC); the day and the four ids."""
    letter = {"title": "宏达建筑公司拖欠农民工工资",
              "body": "我们在宏达建筑公司承建的幸福家园三期项目干活，工程款结了，包工头一直拖欠我们的工资。"}
    day = datetime.now(BEIJING).date() - timedelta(days=2)
    received = [datetime.combine(day - timedelta(days=2), time(10), BEIJING), datetime.combine(day - timedelta(days=1), time(10), BEIJING),
                datetime.combine(day, time(23, 30), BEIJING), datetime.combine(day + timedelta(days=1), time(0, 30), BEIJING)]
    ids = [client.post("/v1/triage", json=letter | {"external_id": f"JZ-{i}", "received_at": when.isoformat()},
                       headers={"X-API-Key": intake_key}).json()["triage_id"] for i, when in enumerate(received, 1)]
    return day, ids


def test_the_emerging_groups_page_lists_the_groups_until_the_end_of_a_beijing_day(desks):
    # The API took `until`, the page had no 截至: a reviewer could not see the groups as they
    # stood on a past day. The day is the office's and is included, to its last minute.
    client, intake_key, reviewer_key = desks
    day, ids = a_group_up_to_an_evening(client, intake_key)
    signed_in(client, reviewer_key, landing="/review")
    assert 'name="until"' in client.get("/emerging").text
    then = html.unescape(client.get("/emerging", params={"until": day.isoformat()}).text)
    assert f'value="{day.isoformat()}"' in then and "当天收到的也算在内" in then
    group = then[then.index('id="group-1"'):]
    assert re.findall(r'<tr data-triage="([0-9a-f-]{36})">', group) == ids[:3], "the evening's petition is in, the next day's is not"
    assert f"截至 {day.isoformat()} 的" in then and "截至日前" in group
    before = html.unescape(client.get("/emerging", params={"until": (day - timedelta(days=1)).isoformat()}).text)
    assert f"截至 {(day - timedelta(days=1)).isoformat()} 的 14 天内没有群体苗头" in before
    assert re.findall(r'<tr data-triage="([0-9a-f-]{36})">', html.unescape(client.get("/emerging").text)) == ids


def test_the_emerging_groups_page_refuses_an_unreadable_until_in_chinese(desks):
    client, _, reviewer_key = desks
    signed_in(client, reviewer_key, landing="/review")
    for typed, said in (("2026/07/01", "截至：无法识别的日期 '2026/07/01'（格式 YYYY-MM-DD）"),
                        ("9999-12-31", "截至：超出可以查询的日期范围，现为 9999-12-31")):
        for path in ("/emerging", "/emerging.csv"):
            refused = client.get(path, params={"until": typed})
            assert refused.status_code == 422 and said in html.unescape(refused.text), path
            assert 'id="group-count"' not in refused.text and 'id="csv"' not in refused.text


def test_the_emerging_groups_download_holds_the_listed_groups_with_the_pages_filters(desks):
    client, intake_key, reviewer_key = desks
    day, ids = a_group_up_to_an_evening(client, intake_key)
    signed_in(client, reviewer_key, landing="/review")
    listed = client.get("/emerging", params={"days": "14", "min_size": "3", "until": day.isoformat()}).text
    link = html.unescape(re.search(r'<a href="([^"]+)" id="csv">导出 CSV</a>', listed).group(1))
    assert link == f"/emerging.csv?days=14&min_size=3&until={day.isoformat()}"
    download = client.get(link)
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert 'filename="emerging.csv"' in download.headers["content-disposition"]
    assert download.content.startswith(b"\xef\xbb\xbf"), "Excel reads Chinese as UTF-8 only after a BOM"
    header, *rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert header[:2] == ["组", "件数"] and "首件收到（北京时间）" in header and "共同词语" in header
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert row["件数"] == "3" and row["信访件编号"] == "JZ-1、JZ-2、JZ-3" and row["研判编号"] == "、".join(ids[:3])
    assert row["首件收到（北京时间）"] == f"{day - timedelta(days=2)} 10:00"
    assert row["最近一件收到（北京时间）"] == f"{day} 23:30"
    assert "宏达建筑" in row["共同词语"] and row["最高风险"] and "1 件" not in row["涉及处室"]
    # The current filters, as on the page: without 截至, the next day's petition is in the group.
    assert list(csv.reader(io.StringIO(client.get("/emerging.csv").content.decode("utf-8-sig"))))[1][1] == "4"


def test_the_emerging_groups_download_keeps_formula_like_case_numbers_as_text(desks):
    # Case numbers come from clients' systems: one starting with "=" was a formula Excel ran.
    client, intake_key, reviewer_key = desks
    letter = {"title": "宏达建筑公司拖欠农民工工资",
              "body": "我们在宏达建筑公司承建的幸福家园三期项目干活，工程款结了，包工头一直拖欠我们的工资。"}
    for i in range(3):
        assert client.post("/v1/triage", json=letter | {"external_id": f"=1+{i}"}, headers={"X-API-Key": intake_key}).status_code == 200
    signed_in(client, reviewer_key, landing="/review")
    header, row = list(csv.reader(io.StringIO(client.get("/emerging.csv").content.decode("utf-8-sig"))))
    assert dict(zip(header, row, strict=True))["信访件编号"] == "'=1+0、=1+1、=1+2"

def test_the_emerging_groups_download_is_for_those_who_may_open_the_page(desks):
    client, intake_key, reviewer_key = desks
    a_group_up_to_an_evening(client, intake_key)
    database = Database(client.app.state.settings.database_url)
    with database.sessions() as session:
        analyst_key, admin_key = create_key(session, "analyst"), create_key(session, "admin")
    database.engine.dispose()
    for key, landing in ((reviewer_key, "/review"), (analyst_key, "/overview"), (admin_key, "/models")):
        signed_in(client, key, landing=landing)
        download = client.get("/emerging.csv")
        assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv"), landing
    signed_in(client, intake_key, landing="/intake")
    refused = client.get("/emerging.csv")
    assert refused.status_code == 403 and "当前密钥的角色是登记（intake）" in refused.text
    client.cookies.clear()
    assert client.get("/emerging.csv", follow_redirects=False).status_code in (302, 303)

def test_the_account_and_the_request_in_two_columns_are_read_by_the_page_as_predict_reads_them(intake, tmp_path,
                                                                                             small_model_dir, capsys):
    # A ledger with 主要诉求 beside 信访内容 was refused by both ("two columns map to 'body'");
    # joined, the page must score the same body `triage predict` scores.
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    ledger = tmp_path / "台账.csv"
    ledger.write_text("编号,标题,信访内容,主要诉求\nSQ-1,拖欠工资,老板三个月没发工资了。,要求结清工资\n"
                      "SQ-2,咨询养老,我想问视同缴费年限怎么算。,要求答复\n", encoding="gbk")
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    capsys.readouterr()
    predicted = pd.read_csv(out, encoding="utf-8-sig", dtype=str)
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.csv", ledger.read_bytes(), "text/csv")})
    assert answer.status_code == 200, answer.text
    with database.sessions() as session:
        stored = {row.external_id: (row.body_masked, row.division) for row in session.query(TriageRecord)}
    assert stored == {"SQ-1": ("老板三个月没发工资了。\n要求结清工资", predicted["division"][0]),
                      "SQ-2": ("我想问视同缴费年限怎么算。\n要求答复", predicted["division"][1])}


def _months_on_sheets(path):
    book = openpyxl.Workbook()
    book.active.title = "7月"
    book.active.append(["编号", "标题", "内容"])
    book.active.append(["A-7", "拖欠工资", "老板三个月没发工资了。"])
    other = book.create_sheet("8月")
    other.append(["编号", "标题", "内容"])
    other.append(["A-8", "工地欠薪", "包工头跑了，工资没人给。"])
    book.save(path)
    return path


def _hidden_columns_xlsx(path):
    # Last year's 内容 hidden beside this year's, and the only 群体 hidden too.
    book = openpyxl.Workbook()
    book.active.append(["编号", "标题", "内容", "内容", "群体"])
    book.active.append(["A-7", "拖欠工资", "旧的内容", "老板三个月没发工资了。", "无"])
    book.active.append(["A-8", "工地欠薪", "旧的内容", "包工头跑了，工资没人给。", "无"])
    book.active.column_dimensions["C"].hidden = True
    book.active.column_dimensions["E"].hidden = True
    book.save(path)
    return path


def _written(text):
    def write(path):
        path.write_text(text, encoding="utf-8")
        return path
    return write


PETITION = "拖欠工资,老板三个月没发工资了。"
# A ledger that makes the reader give each kind of warning, and what the page says of it.
LEDGERS_SETTING_ASIDE = {
    LedgerWarningKind.DATES_NOT_READ: ("台账.csv", _written(f"编号,标题,内容,来访日期\nA-1,{PETITION},2026-7-1\n"),
                                       "台账.csv：没有读到收件日期：「来访日期」不是收件日期的列名"),
    LedgerWarningKind.SAME_MEANING: ("台账.csv", _written(f"编号,标题,内容,群体,重点群体\nA-1,{PETITION},无,无\n"),
                                     "台账.csv：「群体」和「重点群体」两列都是重点群体，只读取了「群体」"),
    LedgerWarningKind.OTHER_SHEETS: ("台账.xlsx", _months_on_sheets, "台账.xlsx：读取了工作表「7月」；工作表「8月」也有台账，未读取"),
    LedgerWarningKind.HIDDEN_ROWS: ("台账.xlsx", filtered_xlsx, "台账.xlsx：第 2、3、5 行在 Excel 中被筛选掉或隐藏，未读取"),
    LedgerWarningKind.HIDDEN_COLUMNS: ("台账.xlsx", _hidden_columns_xlsx,
                                       "台账.xlsx：C 列「内容」在 Excel 中被隐藏，未读取；读取的是D 列「内容」（两列都是内容）"),
    LedgerWarningKind.HIDDEN_COLUMN_READ: ("台账.xlsx", _hidden_columns_xlsx,
                                           "台账.xlsx：E 列「群体」在 Excel 中被隐藏，但没有未隐藏的重点群体列，已读取该列"),
    LedgerWarningKind.FOOTER_ROWS: ("台账.csv", _written(f"编号,标题,内容\nA-1,{PETITION}\n合计：1件,,\n"),
                                    "台账.csv：第 3 行是合计或表尾"),
    LedgerWarningKind.HEADER_AGAIN: ("台账.csv", lambda path: two_row_header_csv(path, header=GROUPED_HEADER, months=2),
                                     "台账.csv：第 5、6 行是重复的表头"),
    LedgerWarningKind.COUNTER_ONLY: ("台账.csv", _written(f"序号,编号,标题,内容\n1,A-1,{PETITION}\n2,,,\n3,,,\n"),
                                     "台账.csv：第 3、4 行只有序号，没有其他内容，未读取"),
    LedgerWarningKind.HEADING_ROWS: ("台账.csv", _written(f"序号,编号,标题,内容\n一、欠薪类,,,\n1,A-1,{PETITION}\n"),
                                     "台账.csv：第 2 行是信访件之间的分类标题"),
    LedgerWarningKind.DATES_LEFT_EMPTY: ("台账.csv", _written(f"编号,标题,内容,来信日期\nA-1,{PETITION},七月一日\n"),
                                         "台账.csv，「来信日期」列：第 2 行不是能识别的日期（如「七月一日」），已留空"),
}
# Two English words in a row: a sentence of the command line's, where the page speaks Chinese.
ENGLISH = re.compile(r"[A-Za-z]{2,}[\s,;:'()]+[A-Za-z]{2,}")


@pytest.mark.parametrize("kind", list(LEDGERS_SETTING_ASIDE), ids=lambda kind: kind.name)
def test_what_a_ledger_upload_sets_aside_is_said_in_the_pages_language(intake, tmp_path, taxonomy, kind):
    # The page showed clerks the command line's English for every warning of the reader
    # (upload.xlsx: 3 hidden row(s) left out: 2, 3, 5 …): each kind is said in Chinese.
    from training.ledger import LedgerWarning, read_ledger

    name, build, said = LEDGERS_SETTING_ASIDE[kind]
    ledger = build(tmp_path / name)
    with pytest.warns(LedgerWarning) as caught:
        read_ledger(ledger, taxonomy, require_labels=False)
    assert kind in {w.message.detail.kind for w in caught}
    client, key, _ = intake
    csrf = signed_in(client, key, landing="/intake")
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": (name, ledger.read_bytes(), "application/octet-stream")})
    assert answer.status_code == 200, answer.text[-1500:]
    notices = [html.unescape(n) for n in re.findall(r'<p class="notice">([^<]*)</p>', answer.text)]
    assert any(notice.startswith(said) for notice in notices), notices
    assert not [notice for notice in notices if ENGLISH.search(notice) or "upload" in notice], notices


def test_every_kind_of_ledger_warning_is_said_in_the_pages_language():
    # A warning the reader learns to give must be said in Chinese too, and shown by a ledger above.
    from service.web.ledger import ledger_warning_in_chinese
    from training.ledger import LedgerWarning, LedgerWarningDetail

    assert set(LEDGERS_SETTING_ASIDE) == set(LedgerWarningKind)
    for kind in LedgerWarningKind:
        detail = LedgerWarningDetail(kind, "/tmp/upload.xlsx", "7月", rows=(2, 3), headers=("群体", "重点群体"),
                                     column="key_group", value="七月一日", sheets=("8月",))
        said = ledger_warning_in_chinese(LedgerWarning("/tmp/upload.xlsx: set aside in English words", detail), "台账.xlsx")
        assert said.startswith("台账.xlsx") and not ENGLISH.search(said) and "upload" not in said, (kind, said)


def _risk_options(page: str) -> dict[str, str]:
    """The case page's 风险等级 options: each name with its attributes as written."""
    select = re.search(r'<select id="risk" name="risk">(.*?)</select>', page, re.S)[1]
    return {name: attributes for attributes, name in re.findall(r'<option value="[^"]*"([^>]*)>([^<（]*)', select)}


def test_the_case_page_of_a_purged_petition_does_not_offer_high_risk(desks):
    # The page offered 当日人工研判 on a petition whose text retention deleted, and the clerk
    # learnt only after sending it that it could not be recorded. Still offered on a petition
    # whose text is there; the server's refusal stays for a page loaded before the purge.
    client, intake_key, _ = desks
    routine = {"title": "咨询职称评审", "body": "请问今年中级职称评审什么时候开始报名？"}
    purged = client.post("/v1/triage", json=routine, headers={"X-API-Key": intake_key}).json()["triage_id"]
    assert purge_petitions(client.app.state.database, datetime.now(UTC), actor="test").petitions == 1
    kept = client.post("/v1/triage", json={**routine, "body": "请问明年的职称评审有什么新规定？"},
                       headers={"X-API-Key": intake_key}).json()["triage_id"]
    signed_in(client, intake_key, landing="/intake")
    page = html.unescape(client.get(f"/cases/{purged}").text)
    options = _risk_options(page)
    assert "disabled" in options["当日人工研判"] and all("disabled" not in a for n, a in options.items() if n != "当日人工研判")
    assert "此件正文已按保留期限删除，无法再进入研判队列，不能标为“当日人工研判”" in page
    page = html.unescape(client.get(f"/cases/{kept}").text)
    assert "disabled" not in _risk_options(page)["当日人工研判"] and 'id="high-refused"' not in page


def test_two_columns_under_one_header_are_refused_by_the_page_as_by_predict(intake, tmp_path, small_model_dir, capsys):
    # Two columns both headed 内容: predict and the page read the first and left the second
    # out without a word. Both refuse it now, naming the two columns by letter; a column
    # they do not need (群体) is read from the first, said by letter too.
    from triage.cli import main

    client, key, database = intake
    csrf = signed_in(client, key, landing="/intake")
    book = openpyxl.Workbook()
    for row in (["编号", "标题", "内容", "群体", "内容"], ["A-7", "拖欠工资", "旧的内容", "无", "老板三个月没发工资了。"]):
        book.active.append(row)
    ledger = tmp_path / "台账.xlsx"
    book.save(ledger)
    out = tmp_path / "predicted.csv"
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 2
    assert "two columns map to 'body': columns C '内容' and E '内容'" in capsys.readouterr().err
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.xlsx", ledger.read_bytes(), "application/octet-stream")})
    text = html.unescape(answer.text)
    assert answer.status_code == 422, text[-1500:]
    assert "台账.xlsx：C 列「内容」和E 列「内容」两列都是内容，无法确定读取哪一列" in text, text[-1500:]
    assert "two columns" not in text
    with database.sessions() as session:
        assert session.query(TriageRecord).count() == 0
    book.active["E1"] = "群体"
    book.save(ledger)
    assert main(["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(out)]) == 0
    assert "columns D '群体' and E '群体' both mean 'key_group'" in capsys.readouterr().err
    answer = client.post("/intake/ledger", data={"csrf_token": csrf},
                         files={"ledger": ("台账.xlsx", ledger.read_bytes(), "application/octet-stream")})
    assert answer.status_code == 200, answer.text[-1500:]
    assert "台账.xlsx：D 列「群体」和E 列「群体」两列都是重点群体，只读取了D 列「群体」，E 列「群体」未读取" in \
        html.unescape(answer.text)
    with database.sessions() as session:
        assert [row.external_id for row in session.query(TriageRecord)] == pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"].tolist()
