"""The pages, driven in the system Chromium against a real `triage serve` on 127.0.0.1:
sign-in and roles, triage with highlighted evidence, decisions, the review queue, the emerging groups, the
overview charts, keyboard-only intake, CSRF refusal and session expiry."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import CLI, ServeProcess, make_key, serve_env

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system Chromium at /usr/bin/chromium "
                                                                 "(Debian: apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
# Written for these tests: no real petition.
URGENT = ("讨薪无门", "我们在工地干了一年，包工头拖欠工资八个月不发。再不解决我就从公司楼顶跳楼。")
ROUTINE = ("咨询职称评审", "请问今年中级职称评审的报名时间和需要提交的材料有哪些？")
# Set to a directory to save the README's screenshots there while the tests run.
SCREENSHOTS = os.environ.get("TRIAGE_SCREENSHOTS")


class Site:
    def __init__(self, server: ServeProcess, keys: dict[str, str], db_path: Path) -> None:
        self.server, self.keys, self.db_path = server, keys, db_path

    @property
    def base(self) -> str:
        return self.server.base

    def rows(self, sql: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.db_path) as connection:
            return connection.execute(sql, args).fetchall()


def _serve(tmp: Path, model_dir: Path, db_path: Path, **settings: str) -> ServeProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    env = serve_env(f"sqlite:///{db_path}", model_dir, tmp, **settings)
    server = ServeProcess(tmp, env)
    server.start()
    return server


@pytest.fixture(scope="module")
def site(small_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    db_path = tmp / "triage.db"
    # Two workers: a session cookie made by one is checked by the other.
    server = _serve(tmp, small_model_dir, db_path, workers="2")
    try:
        keys = {role: make_key(server.env, tmp, role) for role in ("intake", "reviewer", "analyst", "admin")}
        yield Site(server, keys, db_path)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):  # a fresh profile (cookies) per test
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def sign_in(page, base: str, key: str, path: str = "/") -> None:
    page.goto(f"{base}{path}")
    page.fill("#key", key)
    page.press("#key", "Enter")
    page.wait_for_load_state()


def triage(page, base: str, title: str, body: str, external_id: str = "") -> str:
    page.goto(f"{base}/intake")
    page.fill("#external_id", external_id)
    page.fill("#title", title)
    page.fill("#body", body)
    page.click("#triage-submit")
    page.wait_for_url("**/cases/*")
    return page.url.rsplit("/", 1)[1].split("?")[0]


def test_sign_in_lands_on_the_roles_page_and_other_roles_pages_are_refused(site, page):
    sign_in(page, site.base, site.keys["reviewer"])
    assert page.url.endswith("/review")
    nav = page.inner_text("header nav")
    assert "研判" in nav and "登记" not in nav
    response = page.goto(f"{site.base}/intake")
    refusal = page.inner_text("main")
    assert response.status == 403 and "当前密钥的角色是研判（reviewer）" in refusal and "登记（intake）" in refusal
    assert "this page" not in refusal
    page.goto(f"{site.base}/review")
    page.click("text=退出登录")
    page.wait_for_url("**/signin")
    page.goto(f"{site.base}/review")
    assert "/signin?next=/review" in page.url


def test_a_wrong_key_is_refused_and_the_cookie_is_httponly_and_strict(site, page):
    sign_in(page, site.base, "pt_deadbeef_notakey")
    assert "/signin" in page.url and "密钥无效" in page.inner_text("main")
    sign_in(page, site.base, site.keys["intake"])
    cookie = next(c for c in page.context.cookies() if c["name"] == "triage_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()
    assert site.keys["intake"] not in cookie["value"]


def test_triage_shows_the_evidence_and_an_override_with_reason_is_recorded(site, page):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage_id = triage(page, site.base, *URGENT, external_id="WEB-0001")
    assert page.inner_text("#risk-name") == "当日人工研判"
    assert page.locator("#top3 li").count() == 3
    risk_marks = page.locator("#petition-text mark.ev-risk")
    assert risk_marks.count() >= 1 and "跳楼" in " ".join(risk_marks.all_inner_texts())
    assert page.locator("#petition-text mark.ev-division").count() >= 1
    assert "剩余 15 天" in page.inner_text("#accept-by")
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/intake.png", full_page=True)

    suggested = site.rows("SELECT division FROM triages WHERE id = ?", triage_id)[0][0]
    other = "转外部门" if suggested != "external" else "养老保险处"
    page.select_option("#division", label=other)
    page.click("#override")
    assert "请填写理由" in page.inner_text("main")
    assert site.rows("SELECT count(*) FROM decisions WHERE triage_id = ?", triage_id) == [(0,)]
    page.select_option("#division", label=other)
    page.fill("#reason", "诉求涉及医保报销，转医保部门")
    page.click("#override")
    page.wait_for_selector("#decided-note")
    assert other in page.inner_text("#decisions") and "改派" in page.inner_text("#decisions")
    stored = site.rows("SELECT division, accepted, reason, revision FROM decisions WHERE triage_id = ?", triage_id)
    assert len(stored) == 1 and stored[0][1:] == (0, "诉求涉及医保报销，转医保部门", 1)
    assert stored[0][0] != suggested and stored[0][0] in ("external", "pension")


def test_the_review_queue_resolves_an_item_and_keeps_it_findable(site, page, browser):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage_id = triage(page, site.base, *URGENT, external_id="WEB-0002")
    reviewer = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
    try:
        sign_in(reviewer, site.base, site.keys["reviewer"], "/review")
        row = reviewer.locator(f'#queue tr[data-triage="{triage_id}"]')
        assert "当日人工研判" in row.inner_text() and "WEB-0002" in row.inner_text() and "小时" in row.inner_text()
        if SCREENSHOTS:
            reviewer.screenshot(path=f"{SCREENSHOTS}/review-queue.png", full_page=True)
        row.locator("a").click()
        reviewer.wait_for_url(f"**/cases/{triage_id}")
        assert reviewer.locator("#petition-text mark.ev-risk").count() >= 1
        reviewer.fill("#note", "已电话联系，情绪稳定")
        reviewer.click("#resolve")
        reviewer.wait_for_selector("#review-resolved")
        assert site.rows("SELECT status, note FROM review_items WHERE triage_id = ?", triage_id) == [("resolved", "已电话联系，情绪稳定")]
        reviewer.goto(f"{site.base}/review")
        assert reviewer.locator(f'#queue tr[data-triage="{triage_id}"]').count() == 0
        reviewer.goto(f"{site.base}/review?status=resolved&reason=high_risk")
        assert "已电话联系" in reviewer.locator(f'#queue tr[data-triage="{triage_id}"]').inner_text()
    finally:
        reviewer.context.close()


def test_the_overview_charts_render(site, page):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage(page, site.base, *ROUTINE)
    page.click("#accept")
    page.wait_for_selector("#decided-note")
    page.click("text=退出登录")
    sign_in(page, site.base, site.keys["analyst"])
    assert page.url.endswith("/overview")
    assert page.locator("#chart-weekly rect.heat").count() >= 12
    assert page.locator("#chart-rates rect.accepted").count() >= 1
    assert page.locator("#chart-high rect.high").count() >= 1
    box = page.locator("#chart-weekly").bounding_box()
    assert box["width"] > 300 and box["height"] > 40
    with page.expect_download() as download:
        page.click("#csv")
    assert "division_name" in Path(download.value.path()).read_text(encoding="utf-8-sig")


def test_the_intake_form_works_with_the_keyboard_alone(site, page):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    # The title field has the focus on arrival; every other step is Tab, typing or Enter.
    assert page.evaluate("document.activeElement.id") == "title"
    page.keyboard.type(ROUTINE[0])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "body"
    page.keyboard.type(ROUTINE[1])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "triage-submit"
    page.keyboard.press("Enter")
    page.wait_for_url("**/cases/*")
    triage_id = page.url.rsplit("/", 1)[1]
    for _ in range(40):  # Tab through the page to the accept button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "accept":
            break
    else:
        pytest.fail("the accept button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#decided-note")
    assert site.rows("SELECT accepted FROM decisions WHERE triage_id = ?", triage_id) == [(1,)]


def test_a_post_without_the_csrf_token_is_refused(site, page):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    before = site.rows("SELECT count(*) FROM triages")[0][0]
    # The browser's own cookies, a form post without the token: as a forged cross-site form would send.
    response = page.request.post(f"{site.base}/intake", form={"title": "伪造", "body": "没有令牌的提交"})
    assert response.status == 403 and "CSRF" in response.text()
    wrong = page.request.post(f"{site.base}/intake", form={"title": "伪造", "body": "错误的令牌", "csrf_token": "x" * 32})
    assert wrong.status == 403
    assert site.rows("SELECT count(*) FROM triages")[0][0] == before
    signout = page.request.post(f"{site.base}/signout", form={}, max_redirects=0)
    assert signout.status == 403


def test_a_session_expires(small_model_dir, tmp_path, page):
    server = _serve(tmp_path, small_model_dir, tmp_path / "triage.db", workers="1", session_seconds="3")
    try:
        key = make_key(server.env, tmp_path, "intake")
        sign_in(page, server.base, key, "/intake")
        assert page.url.endswith("/intake") and page.locator("#title").count() == 1
        cookie = next(c for c in page.context.cookies() if c["name"] == "triage_session")
        time.sleep(4)
        page.goto(f"{server.base}/intake")
        assert "/signin" in page.url and page.locator("#key").count() == 1
        # The browser dropped the cookie at its Max-Age; the server refuses it too when it comes back.
        page.context.add_cookies([{**cookie, "expires": time.time() + 3600}])
        page.goto(f"{server.base}/intake")
        assert "/signin" in page.url and "会话已过期" in page.inner_text("main")
    finally:
        server.stop()


def test_the_api_docs_load_without_the_internet(site, page):
    hosts = set()
    page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    page.goto(f"{site.base}/docs")
    page.wait_for_selector(".opblock-summary")
    assert page.locator(".opblock-summary").count() >= 8
    assert hosts == {site.base.split("/")[2]}


def test_a_ledger_upload_gives_a_table_and_an_xlsx(site, page, tmp_path):
    from openpyxl import Workbook, load_workbook

    book = Workbook()
    book.active.append(["编号", "标题", "内容", "登记日期"])
    book.active.append(["TZ-001", *URGENT, "2026-11-02"])
    book.active.append(["TZ-002", *ROUTINE, "2026-11-03"])
    ledger = tmp_path / "台账.xlsx"
    book.save(ledger)
    sign_in(page, site.base, site.keys["intake"], "/intake")
    page.set_input_files("#ledger", str(ledger))
    page.click("#ledger-submit")
    page.wait_for_selector("#ledger-table")
    assert "已处理 2 行：2 条建议" in page.inner_text("#ledger-progress")
    assert page.locator("#ledger-table tbody tr").count() == 2 and "当日人工研判" in page.inner_text("#ledger-table")
    with page.expect_download() as download:
        page.click("#ledger-download")
    sheet = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "信访件编号" and [r[0] for r in rows[1:]] == ["TZ-001", "TZ-002"]
    assert rows[1][6] == "当日人工研判"
    assert site.rows("SELECT count(*) FROM triages WHERE external_id IN ('TZ-001', 'TZ-002')") == [(2,)]

    bad = tmp_path / "bad.csv"
    bad.write_text("编号,内容\nTZ-003,\n", encoding="utf-8")
    page.goto(f"{site.base}/intake")
    page.set_input_files("#ledger", str(bad))
    page.click("#ledger-submit")
    page.wait_for_selector("p.error")
    message = page.inner_text("p.error")
    assert message == "bad.csv，第 2 行，「内容」列：标题和内容都是空的"


def test_the_ledger_table_shows_each_rows_own_number(site, page, tmp_path):
    # The 编号 column showed the start of the internal triage id: the clerk could not find TZ-101 in it.
    ledger = tmp_path / "台账.csv"
    ledger.write_text(f"编号,标题,内容\nTZ-101,{URGENT[0]},{URGENT[1]}\nTZ-102,{ROUTINE[0]},{ROUTINE[1]}\n", encoding="utf-8")
    sign_in(page, site.base, site.keys["intake"], "/intake")
    page.set_input_files("#ledger", str(ledger))
    page.click("#ledger-submit")
    page.wait_for_selector("#ledger-table")
    numbers = page.locator("#ledger-table tbody tr td:nth-child(2)").all_inner_texts()
    assert numbers == ["TZ-101", "TZ-102"]


def test_signing_in_again_after_a_form_was_refused_leads_back_to_its_page(site, page, tmp_path):
    # The key is revoked while its clerk has a case open; "采纳" sends them to sign in, and
    # signing in sent the browser to the form's action with GET: a raw JSON "Method Not Allowed".
    key = make_key(site.server.env, tmp_path, "intake")
    sign_in(page, site.base, key, "/intake")
    triage_id = triage(page, site.base, *ROUTINE)
    revoked = subprocess.run([*CLI, "keys", "revoke", key], env=site.server.env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    page.click("#accept")
    page.wait_for_selector("#key")
    assert "密钥已被吊销" in page.content()
    assert site.rows("SELECT count(*) FROM decisions WHERE triage_id = ?", triage_id) == [(0,)]
    page.fill("#key", site.keys["intake"])
    page.press("#key", "Enter")
    page.wait_for_load_state()
    assert page.url == f"{site.base}/cases/{triage_id}" and page.locator("#accept").count() == 1


def test_a_refused_second_decision_is_not_announced_as_recorded(site, page, tmp_path):
    # The first decision leaves the case at ?decided=1; the second, refused for a revoked key,
    # led back there after signing in, under "决定已记录" for a decision never recorded.
    key = make_key(site.server.env, tmp_path, "intake")
    sign_in(page, site.base, key, "/intake")
    triage_id = triage(page, site.base, *ROUTINE)
    page.click("#accept")
    page.wait_for_selector("#decided-note")
    revoked = subprocess.run([*CLI, "keys", "revoke", key], env=site.server.env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    page.select_option("#risk", label="加急")
    page.fill("#reason", "当事人年事已高")
    page.click("#override")
    page.wait_for_selector("#key")
    page.fill("#key", site.keys["intake"])
    page.press("#key", "Enter")
    page.wait_for_load_state()
    assert page.url == f"{site.base}/cases/{triage_id}" and page.locator("#decided-note").count() == 0
    assert site.rows("SELECT count(*) FROM decisions WHERE triage_id = ?", triage_id) == [(1,)]


def test_resolving_an_item_another_reviewer_resolved_says_so_in_chinese(site, page, browser):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage_id = triage(page, site.base, *URGENT)
    page.context.clear_cookies()
    sign_in(page, site.base, site.keys["reviewer"], f"/cases/{triage_id}")
    other = browser.new_context(locale="zh-CN").new_page()
    try:
        sign_in(other, site.base, site.keys["admin"], f"/cases/{triage_id}")
        other.fill("#note", "已安排专人接待")
        other.click("#resolve")
        other.wait_for_selector("#review-resolved")
    finally:
        other.context.close()
    page.fill("#note", "已电话回访")
    page.click("#resolve")
    page.wait_for_selector("p.error")
    # It said: "triage_id: '…' was already resolved by key:…(admin)".
    message = page.inner_text("p.error")
    assert "已由" in message and "完成研判" in message and "already" not in message
    assert site.rows("SELECT note FROM review_items WHERE triage_id = ?", triage_id) == [("已安排专人接待",)]


def test_after_signing_out_the_back_button_shows_no_petition(site, page, tmp_path):
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage(page, site.base, *URGENT)
    assert "跳楼" in page.inner_text("#petition-text")
    page.click("text=退出登录")
    page.wait_for_url("**/signin")
    # A shared desk: the next person presses back. The page came from the browser's cache.
    page.go_back()
    page.wait_for_load_state()
    assert "/signin" in page.url and "跳楼" not in page.content()

    # A ledger's results, the answer to a POST, stay reachable with the back button from a row's case.
    ledger = tmp_path / "台账.csv"
    ledger.write_text(f"编号,标题,内容\nTZ-201,{ROUTINE[0]},{ROUTINE[1]}\n", encoding="utf-8")
    sign_in(page, site.base, site.keys["intake"], "/intake")
    page.set_input_files("#ledger", str(ledger))
    page.click("#ledger-submit")
    page.locator("#ledger-table a").first.click()
    page.wait_for_url("**/cases/*")
    page.go_back()
    assert page.locator("#ledger-table").count() == 1


def test_the_case_page_links_earlier_petitions_about_the_same_matter(site, page):
    # The API answered similar_cases, but the page the clerk lands on never showed them:
    # nobody at the desk saw that the same wage claim had come in the day before.
    matter = ("南湖物流园欠薪", "南湖物流园的仓库分拣员共二十人，公司从九月起拖欠工资，主管说等年底统一结算，至今一分钱没发。")
    sign_in(page, site.base, site.keys["intake"], "/intake")
    first = triage(page, site.base, *matter, external_id="WEB-SAME-1")
    assert page.locator("#similar").count() == 0
    second = triage(page, site.base, *matter, external_id="WEB-SAME-2")
    assert second != first
    link = page.locator(f'#similar a[href="/cases/{first}"]')
    assert link.inner_text() == "WEB-SAME-1" and "未决定" in page.inner_text("#similar")
    link.click()
    page.wait_for_url(f"**/cases/{first}")
    assert "WEB-SAME-1" in page.inner_text("h1")


def test_the_queue_shows_the_risk_a_clerk_judged_not_the_models(site, page, browser):
    # Queued as high risk by the clerk's decision, the item still wore the model's 一般 badge.
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage_id = triage(page, site.base, *ROUTINE, external_id="WEB-ESC-1")
    assert page.inner_text("#risk-name") == "一般"
    page.select_option("#risk", label="当日人工研判")
    page.fill("#reason", "电话中流露轻生念头")
    page.click("#override")
    page.wait_for_selector("#decided-note")
    reviewer = browser.new_context(locale="zh-CN").new_page()
    try:
        sign_in(reviewer, site.base, site.keys["reviewer"], "/review")
        badge = reviewer.locator(f'#queue tr[data-triage="{triage_id}"] td').first
        assert badge.locator("span.risk").inner_text() == "当日人工研判" and "模型：一般" in badge.inner_text()
    finally:
        reviewer.context.close()


def test_the_overview_charts_can_be_read_in_a_narrow_window(site, browser):
    # Shrunk to the window without a viewBox, the charts were cut off at the right: on a narrow
    # window the analyst saw the oldest weeks and never this week's counts.
    context = browser.new_context(locale="zh-CN", viewport={"width": 380, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, site.base, site.keys["intake"], "/intake")
        triage(page, site.base, *URGENT)
        page.context.clear_cookies()
        sign_in(page, site.base, site.keys["analyst"], "/overview")
        this_week = page.locator("#chart-high text.axis").last
        this_week.scroll_into_view_if_needed()
        box = this_week.bounding_box()
        seen = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.textContent ?? null",
                             [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
        assert seen == this_week.text_content()
        assert page.locator("#chart-high rect.high").last.bounding_box()["height"] > 0
    finally:
        context.close()


def test_who_resolved_or_decided_is_named_by_their_keys_label(site, page, browser, tmp_path):
    # A resolved item said "已由 key:3f9a0c1e(reviewer) 完成研判": nobody at the desk could
    # tell which colleague that was, though the key was made with a label naming the desk.
    labelled = make_key(site.server.env, tmp_path, "reviewer", label="信访办值班席")
    intake_prefix = site.keys["intake"].split("_")[1]
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage_id = triage(page, site.base, *URGENT, external_id="WEB-WHO-1")
    page.click("#accept")
    page.wait_for_selector("#decided-note")
    # The intake key has no label: its decision is named by the key's prefix, not key:…(intake).
    decided_by = page.locator("#decisions tbody td").nth(5).inner_text()
    assert decided_by == f"密钥 {intake_prefix}"
    page.context.clear_cookies()
    sign_in(page, site.base, site.keys["reviewer"], f"/cases/{triage_id}")
    other = browser.new_context(locale="zh-CN").new_page()
    try:
        sign_in(other, site.base, labelled, f"/cases/{triage_id}")
        other.fill("#note", "已联系用人单位")
        other.click("#resolve")
        other.wait_for_selector("#review-resolved")
        assert "已由 信访办值班席 于" in other.inner_text("#review-resolved")
        other.goto(f"{site.base}/review?status=resolved")
        assert "信访办值班席" in other.inner_text(f'#queue tr[data-triage="{triage_id}"]')
    finally:
        other.context.close()
    # The second reviewer, too late, is told who resolved it.
    page.fill("#note", "已电话回访")
    page.click("#resolve")
    page.wait_for_selector("p.error")
    assert "此件已由 信访办值班席 于" in page.inner_text("p.error")
    assert "key:" not in page.content()
    # What is stored, and what the API answers, stay the key's actor.
    assert site.rows("SELECT resolved_by FROM review_items WHERE triage_id = ?", triage_id)[0][0].startswith("key:")
    # A key no longer there is named by its prefix.
    labelled_prefix = labelled.split("_")[1]
    site.rows("DELETE FROM api_keys WHERE prefix = ?", labelled_prefix)
    page.goto(f"{site.base}/cases/{triage_id}")
    assert f"已由 密钥 {labelled_prefix} 于" in page.inner_text("#review-resolved")


def test_a_refused_decision_or_resolve_keeps_what_was_chosen_and_typed(site, page, browser):
    # A change of division and risk sent without a reason came back with the model's
    # suggestion selected: the clerk chose the division again, gave the reason, and the
    # suggested risk level was recorded instead of the one chosen.
    sign_in(page, site.base, site.keys["intake"], "/intake")
    triage_id = triage(page, site.base, *ROUTINE, external_id="WEB-KEEP-1")
    assert page.inner_text("#risk-name") == "一般"
    page.select_option("#division", label="转外部门")
    page.select_option("#risk", label="加急")
    page.click("#override")
    page.wait_for_selector("p.error")
    chosen = page.evaluate("['division', 'risk'].map(id => document.getElementById(id).selectedOptions[0].text)")
    assert chosen == ["转外部门", "加急"]
    page.fill("#reason", "诉求属外省事项")
    page.click("#override")
    page.wait_for_selector("#decided-note")
    assert site.rows("SELECT division, risk FROM decisions WHERE triage_id = ?", triage_id) == [("external", "medium")]

    # A note refused (here for a control character) was emptied: the reviewer typed it again.
    page.context.clear_cookies()
    sign_in(page, site.base, site.keys["intake"], "/intake")
    urgent_id = triage(page, site.base, *URGENT, external_id="WEB-KEEP-2")
    page.context.clear_cookies()
    sign_in(page, site.base, site.keys["reviewer"], f"/cases/{urgent_id}")
    page.fill("#note", "已联系属地街道，\x00明日上门")
    page.click("#resolve")
    page.wait_for_selector("p.error")
    assert "控制字符" in page.inner_text("p.error") and "已联系属地街道" in page.input_value("#note")


def test_the_emerging_groups_page_renders_a_group(site, page, browser):
    # Three petitions about one matter from the intake desk make a group the reviewer sees on
    # 群体苗头, reached from the navigation, its members linked to their case pages.
    matter = ("东湖花园小区物业停水", "东湖花园小区三号楼至八号楼从上周起反复停水，物业公司一直不给说法，请有关部门督促解决。")
    sign_in(page, site.base, site.keys["intake"], "/intake")
    ids = [triage(page, site.base, *matter, external_id=f"WEB-GROUP-{n}") for n in (1, 2, 3)]
    reviewer = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
    try:
        sign_in(reviewer, site.base, site.keys["reviewer"], "/review")
        reviewer.click("header nav >> text=群体苗头")
        reviewer.wait_for_url("**/emerging")
        assert reviewer.input_value("#days") == "14" and reviewer.input_value("#min_size") == "3"
        group = reviewer.locator("section.group", has=reviewer.locator(f'tr[data-triage="{ids[0]}"]'))
        assert group.count() == 1
        assert [group.locator(f'tr[data-triage="{tid}"] a').inner_text() for tid in ids] == [f"WEB-GROUP-{n}" for n in (1, 2, 3)]
        assert "3 件" in group.locator("h2").inner_text() and "待研判" in group.inner_text()
        if SCREENSHOTS:
            reviewer.screenshot(path=f"{SCREENSHOTS}/emerging.png", full_page=True)
        group.locator(f'tr[data-triage="{ids[1]}"] a').click()
        reviewer.wait_for_url(f"**/cases/{ids[1]}")
        assert "WEB-GROUP-2" in reviewer.inner_text("h1")
    finally:
        reviewer.context.close()
