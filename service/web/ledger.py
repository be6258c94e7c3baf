"""登记 (intake), batch: a ledger (XLSX/XLS/CSV/JSONL, as `triage predict` reads) in, a table of
suggestions out, downloadable as XLSX. Each ledger goes through POST /v1/triage/batch's own
function, with its limit (TRIAGE_MAX_BATCH rows) and its per-row errors."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from openpyxl import Workbook
from pydantic import ValidationError

from model.office_time import CHINA_TIME, office_date
from service.cases import TaxonomyDep, case_out
from service.database import TriageRecord
from service.deps import GroupCommitDep, ModelDep, SessionDep, SettingsDep
from service.pii import mask_pii
from service.routers import error_text
from service.routers.triage import triage_batch
from service.schemas import BatchIn, PetitionIn
from service.settings import Settings
from service.similar import MattersDep
from service.web.intake import form_errors, text_error
from service.web.render import page
from service.web.sessions import Csrf, WebUser, page_user
from training.ledger import (
    HEADER_ALIASES,
    LEDGER_SUFFIXES,
    LedgerError,
    LedgerWarning,
    LedgerWarningKind,
    SameMeaningError,
    ShortenedNumberError,
    read_ledger,
)

router = APIRouter(include_in_schema=False)
IntakeUser = Annotated[WebUser, Depends(page_user("intake"))]
# Every format `triage predict` reads: Excel 97-2003 .xls is still what many office PCs save,
# and Excel's tab-separated text (.txt) is a "save as" choice clerks make; the page refused
# both .txt and .xlsm, which `predict` scored.
SUFFIXES = LEDGER_SUFFIXES


def _ids_token(request: Request) -> URLSafeTimedSerializer:
    # The download link carries the batch's triage ids, signed: nobody can ask for other triages through it.
    return URLSafeTimedSerializer(request.app.state.session_secret, salt="triage.web.ledger")


def _received(value: object) -> str | None:
    # A ledger's 登记时间 is the office's wall-clock time (model/office_time.py), a date alone
    # that day's midnight there, as the intake form takes it. Sent on with the offset written:
    # the API once took 09:30 without one for UTC, and the petition was received eight hours
    # late, its time limits running from then.
    if value is None or pd.isna(value):
        return None
    moment = pd.Timestamp(value)
    if moment.tzinfo is None:
        moment = moment.tz_localize(CHINA_TIME)
    return moment.isoformat()


def _petitions(frame: pd.DataFrame) -> list[dict]:
    return [{"external_id": record["id"][:200], "title": record["title"], "body": record["body"],
             "received_at": _received(record.get("received_at"))} for record in frame.to_dict("records")]


# What a clerk meets most when a ledger is refused, in the page's words, and whether the
# command line's English detail follows (which columns are missing). Other reasons keep the
# English, after where it is said in Chinese. (A date that cannot be read is set aside with a
# notice, not refused.)
LEDGER_PROBLEMS = (("empty petition text", "标题和内容都是空的", False), ("empty id", "编号是空的", False),
                   ("no data rows", "表头下面没有数据行", False),
                   ("the file is empty", "文件是空的", False), ("the sheet is empty", "工作表是空的", False),
                   ("missing column(s)", "缺少必需的列", True))
LEDGER_COLUMNS = {"id": "编号", "title": "标题", "body": "内容", "received_at": "收件日期", "channel": "来源渠道",
                  "division": "承办处室", "risk": "风险等级", "key_group": "重点群体"}


def ledger_error_in_chinese(exc: LedgerError, name: str) -> str:
    """A refused ledger's reason, naming the uploaded file (not the temporary copy), the sheet,
    row and column in Chinese. Clerks were shown `row 5, column 'body': empty petition text`."""
    where = name + (f"，工作表「{exc.sheet}」" if exc.sheet else "") + (f"，第 {exc.row} 行" if exc.row else "")
    if exc.column:
        where += f"，「{LEDGER_COLUMNS.get(exc.column, exc.column)}」列"
    if isinstance(exc, ShortenedNumberError):
        # The value and the ledger's own header, as the clerk sees them in Excel, and how to keep the number whole.
        where = name + (f"，工作表「{exc.sheet}」" if exc.sheet else "") + f"，第 {exc.row} 行，「{exc.header}」列"
        return (f"{where}：编号「{exc.value}」是 Excel 把长数字缩写成的科学计数法，另存为 CSV 时后几位已丢失，"
                '无法对应到案件。请在 Excel 中把该列设为"文本"格式后重新导出（或另存为 .xlsx）。')
    if isinstance(exc, SameMeaningError):
        # Which two columns, by letter when their headers are alike (two 内容), and what to do.
        first, second = _columns_in_chinese(exc.headers, exc.letters)
        where = name + (f"，工作表「{exc.sheet}」" if exc.sheet else "")
        meaning = LEDGER_COLUMNS.get(exc.meaning, exc.meaning)
        return (f"{where}：{first}和{second}两列都是{meaning}，无法确定读取哪一列。请删除其中一列，"
                f"或把不读取的一列改为其他列名（如「{exc.headers[1]}（备用）」）后再上传。")
    message = exc.message.replace(exc.path, name)
    for english, chinese, with_detail in LEDGER_PROBLEMS:
        if message.startswith(english):
            return f"{where}：{chinese}" + (f"（{message}）" if with_detail else "")
    return f"{where}：台账无法读取（{message}）"


def _columns_in_chinese(headers: tuple[str, ...], letters: tuple[str, ...]) -> list[str]:
    """Headers as the clerk finds them in Excel: by letter as well when there are letters."""
    return [f"{letters[i]} 列「{header}」" if i < len(letters) else f"「{header}」" for i, header in enumerate(headers)]


def _rows_in_chinese(rows: tuple[int, ...], shown: int = 10) -> str:
    """Row numbers as the clerk finds them in Excel: the first `shown` of them, and how many in all."""
    listed = "、".join(map(str, rows[:shown]))
    return f"第 {listed} 等 {len(rows)} 行" if len(rows) > shown else f"第 {listed} 行"


def ledger_warning_in_chinese(warning: LedgerWarning, name: str) -> str:
    """What the reading left out or set aside, in Chinese, from the warning's parts, naming the
    uploaded file (not the temporary copy), the sheet and the rows. Clerks were shown the command
    line's English (`upload.xlsx: 3 hidden row(s) left out: 2, 3, 5 …`). A warning without its
    parts (none the reader gives) keeps the English after a Chinese lead."""
    detail = warning.detail
    if detail is None:
        return f"{name}：读取台账时的提示（{warning}）"
    where = name + (f"，工作表「{detail.sheet}」" if detail.sheet else "")
    rows = _rows_in_chinese(detail.rows)
    kind = detail.kind
    if kind is LedgerWarningKind.DATES_NOT_READ:
        named = "".join(f"「{header}」" for header in detail.headers)
        return (f"{where}：没有读到收件日期：{named}不是收件日期的列名（{'/'.join(HEADER_ALIASES['received_at'][1:])}），"
                "这些日期未读取，各件的办理时限从本次上传时起算。如果其中一列是收件日期，请把列名改为「登记日期」后再上传。")
    if kind is LedgerWarningKind.SAME_MEANING:
        first, second = _columns_in_chinese(detail.headers, detail.letters)
        meaning = f"都是{LEDGER_COLUMNS[detail.column]}" if detail.column in LEDGER_COLUMNS else "含义相同"
        if detail.letters:  # headers alike (two 群体): the letters tell them apart
            return f"{where}：{first}和{second}两列{meaning}，只读取了{first}，{second}未读取。"
        return f"{where}：{first}和{second}两列{meaning}，只读取了{first}，{second}列未读取。"
    if kind is LedgerWarningKind.OTHER_SHEETS:
        others = "".join(f"「{sheet}」" for sheet in detail.sheets)
        return (f"{name}：读取了工作表「{detail.sheet}」；工作表{others}也有台账，未读取。"
                "请把每个工作表另存为单独的文件，分别上传。")
    if kind is LedgerWarningKind.HIDDEN_ROWS:
        return f"{where}：{rows}在 Excel 中被筛选掉或隐藏，未读取。如需登记，请清除筛选或取消隐藏，保存后再上传。"
    if kind in (LedgerWarningKind.HIDDEN_COLUMNS, LedgerWarningKind.HIDDEN_COLUMN_READ):
        # By letter as well as by name: a hidden column often has the shown one's very header.
        named = _columns_in_chinese(detail.headers, detail.letters)
        meaning = LEDGER_COLUMNS.get(detail.column or "")
        if kind is LedgerWarningKind.HIDDEN_COLUMNS:
            return (f"{where}：{named[0]}在 Excel 中被隐藏，未读取；读取的是{named[1]}"
                    f"（两列{'都是' + meaning if meaning else '含义相同'}）。")
        return (f"{where}：{named[0]}在 Excel 中被隐藏，但没有未隐藏的{meaning or '同类'}列，已读取该列。"
                "如不应读取，请删除该列后再上传。")
    if kind is LedgerWarningKind.FOOTER_ROWS:
        return f"{where}：{rows}是合计或表尾（合计、制表人、填表说明等），不是信访件，未读取。"
    if kind is LedgerWarningKind.HEADER_AGAIN:
        return f"{where}：{rows}是重复的表头，不是信访件，未读取。"
    if kind is LedgerWarningKind.COUNTER_ONLY:
        return f"{where}：{rows}只有序号，没有其他内容，未读取。"
    if kind is LedgerWarningKind.HEADING_ROWS:
        return f"{where}：{rows}是信访件之间的分类标题或月份标题（如“一、欠薪类”“2026年8月”），不是信访件，未读取。"
    if kind is LedgerWarningKind.DATES_LEFT_EMPTY:
        return (f"{where}，「{detail.headers[0]}」列：{rows}不是能识别的日期（如「{detail.value}」），已留空，"
                "这些件的办理时限从本次上传时起算。")
    return f"{where}：读取台账时的提示（{str(warning).replace(detail.path, name)}）"


def _row_error(petition: dict, settings: Settings) -> str | None:
    """Why a row was refused, in the page's words: the batch route answers in the API's English,
    and gave a date typed with the wrong year in UTC, the day before the ledger's."""
    try:
        checked = PetitionIn.model_validate(petition)
    except ValidationError as exc:
        return "；".join(form_errors(exc))
    return text_error(checked.title, checked.body, settings)


@router.post("/intake/ledger", response_class=HTMLResponse)
async def upload(request: Request, user: IntakeUser, _: Csrf, loaded: ModelDep, session: SessionDep,
                 writes: GroupCommitDep, settings: SettingsDep, matters: MattersDep, ledger: Annotated[UploadFile, File()]) -> HTMLResponse:
    name = Path(ledger.filename or "ledger").name
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        return page(request, "ledger.html", user, status=422, error=f"{name}：只接受 {'、'.join(SUFFIXES)} 文件", items=[], name=name)
    raw = await ledger.read()
    with tempfile.TemporaryDirectory(prefix="triage-ledger-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(raw)
        try:
            # What the reading set aside (a total row, a date it could not read and left empty)
            # is shown with the results: the clerk must know a row's time limits do not run
            # from its date.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", LedgerWarning)
                frame = read_ledger(path, loaded.model.taxonomy, require_labels=False)
            notices = [ledger_warning_in_chinese(w.message, name) for w in caught if issubclass(w.category, LedgerWarning)]
        except LedgerError as exc:
            return page(request, "ledger.html", user, status=422, error=ledger_error_in_chinese(exc, name), items=[],
                        name=name)
    if len(frame) > settings.max_batch:
        # Said in the page's language, with what to do; the batch route's own refusal is the API's English.
        return page(request, "ledger.html", user, status=422, items=[], name=name,
                    error=f"{name}：有 {len(frame)} 行，超过每次 {settings.max_batch} 行的上限（TRIAGE_MAX_BATCH），"
                          "未作处理。请把台账分成几个文件分别上传。")
    petitions = _petitions(frame)
    try:
        items = triage_batch(batch=BatchIn(petitions=petitions), loaded=loaded, session=session, writes=writes,
                             settings=settings, matters=matters, _=user.key)
    except HTTPException as exc:
        return page(request, "ledger.html", user, status=exc.status_code, error=f"{name}：{error_text(exc)}", items=[], name=name)
    items = [item if item.result is not None else item.model_copy(update={"error": _row_error(petitions[item.index], settings)
                                                                                    or item.error}) for item in items]
    stored = [item.result.triage_id for item in items if item.result is not None and item.result.stored]
    token = _ids_token(request).dumps(stored) if stored else ""
    # The ledger's own numbers, masked as they are stored: the clerk finds a row by its 编号.
    ids = [mask_pii(str(i)[:200]) for i in frame["id"]]
    # The answer to a POST: uncached, the back button from a row's case page could only offer to
    # upload the ledger again. It shows labels and numbers, never a petition's text.
    return page(request, "ledger.html", user, headers={"Cache-Control": "private"}, items=items, rows=frame["row"].tolist(),
                ids=ids, name=name, token=token, error="", notices=notices)


@router.get("/intake/ledger.xlsx")
def download(request: Request, user: IntakeUser, session: SessionDep, settings: SettingsDep, taxonomy: TaxonomyDep, t: str = "") -> Response:
    try:
        ids = _ids_token(request).loads(t, max_age=settings.session_seconds)
    except BadSignature:
        return page(request, "error.html", user, status=403, message="下载链接无效或已过期，请重新上传台账。")
    book = Workbook()
    sheet = book.active
    sheet.title = "分办建议"
    sheet.append(["信访件编号", "标题（已遮蔽）", "建议承办处室", "置信度", "第二建议", "第三建议", "风险等级", "重点群体",
                  "需人工研判", "受理告知时限", "办结时限", "研判编号"])
    for triage_id in ids:
        row = session.get(TriageRecord, triage_id)
        if row is None:
            continue
        case = case_out(session, row, taxonomy, settings)
        others = [o.name for o in case.division_top3[1:3]] + ["", ""]
        sheet.append([case.external_id or "", case.title, case.division.name, case.division.probability, others[0], others[1],
                      case.risk_name, case.key_group_name, "是" if case.needs_review else "否",
                      # The office's dates, as the case page and the days left count them, not UTC's.
                      *((office_date(case.time_limits.accept_by).isoformat(), office_date(case.time_limits.conclude_by).isoformat())
                        if case.time_limits else ("", "")), case.triage_id])
        for cell in sheet[sheet.max_row]:
            # openpyxl stores any text starting with "=" as a formula, which Excel runs: a petition
            # titled "=HYPERLINK(…)" must stay the text it is, as in predict's CSV.
            if isinstance(cell.value, str):
                cell.data_type = "s"
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": 'attachment; filename="suggestions.xlsx"'})
