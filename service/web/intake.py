"""登记 (intake): a petition in, its suggestion with the evidence highlighted, the decision out.
The suggestion and the decision go through the API's own functions, not copies of them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from model.office_time import office_date, office_midnight
from model.taxonomy import Taxonomy
from model.text import has_text, join_fields
from service.cases import TaxonomyDep, case_out, masked_text
from service.database import TriageRecord
from service.deps import GroupCommitDep, ModelDep, SessionDep, SettingsDep
from service.maintenance import row_purged
from service.routers import error_text
from service.routers.decisions import record
from service.routers.triage import suggest_one
from service.schemas import AHEAD, BLANK, OUT_OF_RANGE, DecisionIn, PetitionIn
from service.settings import Settings
from service.similar import CaseInfo, MattersDep, case_infos, later_cases
from service.web.render import StaffNames, highlight, marks_of, page, shown_heads
from service.web.sessions import Csrf, WebUser, page_user

router = APIRouter(include_in_schema=False)
IntakeUser = Annotated[WebUser, Depends(page_user("intake"))]
CaseReader = Annotated[WebUser, Depends(page_user("intake", "reviewer"))]
CHANNELS = ("来信", "来访", "网上", "电话")
# The later petitions about a case's matter its page lists, first received first.
LATER_SHOWN = 10
FIELD_NAMES = {"title": "标题", "body": "正文", "external_id": "信访件编号", "received_at": "收件日期", "channel": "来源渠道",
               "reason": "理由", "decided_by": "决定人", "note": "研判意见"}


def _form(request: Request, user: WebUser, values: dict[str, str], errors: list[str], status: int = 200) -> HTMLResponse:
    return page(request, "intake.html", user, status=status, values=values, errors=errors, channels=CHANNELS)


@router.get("/intake", response_class=HTMLResponse)
def intake_form(request: Request, user: IntakeUser) -> HTMLResponse:
    return _form(request, user, {"received_at": office_date(datetime.now(UTC)).isoformat()}, [])


def _in_chinese(error: Any) -> str:
    """A field's validation error in the page's language, for the errors a clerk can make."""
    context = error.get("ctx") or {}
    if error["type"] == "string_too_long":
        return f"最多 {context['max_length']} 字，现有 {len(error['input'])} 字"
    if error["type"] in ("string_too_short", "missing") or str(context.get("error", "")).startswith(BLANK):
        return "请填写"
    if error["type"] == "string_pattern_mismatch":
        return "含有无法保存的控制字符（\\0），请删去后再提交"
    # A year typed wrong is the commonest slip with a date; the API's English gave it in UTC, the day before.
    if str(context.get("error", "")).endswith(AHEAD):
        return "晚于今天：收件在登记之前，请检查年份"
    if str(context.get("error", "")) == OUT_OF_RANGE:
        return "超出可以保存的日期范围，请检查年份"
    return error["msg"]


def form_errors(exc: ValidationError) -> list[str]:
    """Each error of a form's fields, named as the page names the field."""
    return [f"{FIELD_NAMES.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else '表单'}：{_in_chinese(e)}" for e in exc.errors()]


def text_error(title: str, body: str, settings: Settings) -> str | None:
    """What keeps a petition's text from being triaged, in the page's words; None when nothing does."""
    if not has_text(title, body):
        return "标题和正文都是空的：请至少填写其中一项"
    if len(body) > settings.max_body_chars:
        return f"正文：{len(body)} 字，超过上限 {settings.max_body_chars} 字"
    return None


@router.post("/intake", response_class=HTMLResponse)
def intake(request: Request, user: IntakeUser, _: Csrf, loaded: ModelDep, session: SessionDep, writes: GroupCommitDep,
           settings: SettingsDep, matters: MattersDep, title: Annotated[str, Form()] = "", body: Annotated[str, Form()] = "",
           external_id: Annotated[str, Form()] = "",
           received_at: Annotated[str, Form()] = "", channel: Annotated[str, Form()] = "") -> Response:
    values = {"title": title, "body": body, "external_id": external_id, "received_at": received_at, "channel": channel}
    try:
        received = office_midnight(date.fromisoformat(received_at)) if received_at else None
    except ValueError:
        return _form(request, user, values, [f"收件日期：无法识别的日期 {received_at!r}（格式 YYYY-MM-DD）"], status=422)
    if (refused := text_error(title, body, settings)) is not None:
        return _form(request, user, values, [refused], status=422)
    try:
        petition = PetitionIn(title=title, body=body, external_id=external_id or None, received_at=received, channel=channel or None)
        suggestion = suggest_one(petition, loaded, session, writes, settings, matters)
    except ValidationError as exc:
        return _form(request, user, values, form_errors(exc), status=422)
    except HTTPException as exc:
        return _form(request, user, values, [error_text(exc)], status=exc.status_code)
    if not suggestion.stored:
        # Nothing to decide on later: show the suggestion on the text as typed, and say it was not kept.
        text = join_fields(title, body)
        return page(request, "unstored.html", user, suggestion=suggestion, text=highlight(text, marks_of(suggestion.explanation)))
    # Sent again (a second click, or a petition another clerk registered already): the case
    # stored then, perhaps decided since, and the page says so rather than let it pass as new.
    again = "?again=1" if suggestion.replayed else ""
    return RedirectResponse(f"/cases/{suggestion.triage_id}{again}", status_code=303)


def case_view(request: Request, user: WebUser, triage_id: str, session: SessionDep, settings: SettingsDep,
          taxonomy: TaxonomyDep, error: str = "", status: int = 200, sent: dict[str, str] | None = None) -> HTMLResponse:
    """The case page; `sent` is what a refused form sent (division, risk, key_group, reason, note),
    shown again in it: the page came back with the model's suggestion selected and the text
    gone, and a clerk who gave only the reason asked for recorded the suggested risk level."""
    row = session.get(TriageRecord, triage_id)
    if row is None:
        return page(request, "error.html", user, status=404, message=f"没有编号为 {triage_id} 的研判记录")
    case = case_out(session, row, taxonomy, settings)
    # The server refuses 当日人工研判 on a purged petition (it would queue one with nothing left to
    # review); offered on the page, a clerk learnt so only after sending it. Already queued as
    # high risk, it is recorded as any other decision.
    high_refused = row_purged(row) and not (case.review is not None and case.review.reason == "high_risk")
    return page(request, "case.html", user, status=status, case=case, error=error, taxonomy=taxonomy,
                high_refused=_purged_not_queued(taxonomy) if high_refused else "",
                text=highlight(masked_text(row), marks_of(case.explanation)),
                heads=shown_heads(case.explanation), similar=same_matter(session, row), who=StaffNames(session),
                later=later_cases(session, request.app.state.matters, row.id, LATER_SHOWN), sent=sent or {})


def _purged_not_queued(taxonomy: Taxonomy) -> str:
    return (f"此件正文已按保留期限删除，无法再进入研判队列，不能标为“{taxonomy.name_of('risk', 'high')}”。"
            "如确需研判，请凭原件另行报送。")


def same_matter(session: Session, row: TriageRecord) -> list[tuple[CaseInfo, float | None]]:
    """The earlier petitions about the same matter found when this one was triaged, with what
    has become of them since; a triage stored before they were kept has only its closest one."""
    stored = row.suggestion or {}
    found = stored.get("similar") or ([[stored["repeat_of"], None]] if stored.get("repeat_of") else [])
    infos = case_infos(session, [triage_id for triage_id, _ in found])
    # A purged petition has no text left to compare with: it is not shown, as in the lookup.
    return [(infos[triage_id], similarity) for triage_id, similarity in found
            if triage_id in infos and not infos[triage_id].purged]


@router.get("/cases/{triage_id}", response_class=HTMLResponse)
def case_page(request: Request, triage_id: str, user: CaseReader, session: SessionDep, settings: SettingsDep,
              taxonomy: TaxonomyDep) -> HTMLResponse:
    return case_view(request, user, triage_id, session, settings, taxonomy)


@router.post("/cases/{triage_id}/decision", response_class=HTMLResponse)
def decide(request: Request, triage_id: str, user: IntakeUser, _: Csrf, loaded: ModelDep, session: SessionDep,
           writes: GroupCommitDep, settings: SettingsDep, taxonomy: TaxonomyDep, division: Annotated[str, Form()] = "",
           risk: Annotated[str, Form()] = "", key_group: Annotated[str, Form()] = "",
           reason: Annotated[str, Form()] = "") -> Response:
    row = session.get(TriageRecord, triage_id)
    if row is None:
        return page(request, "error.html", user, status=404, message=f"没有编号为 {triage_id} 的研判记录")
    sent = {"division": division, "risk": risk, "key_group": key_group, "reason": reason}
    overrides = (taxonomy.resolve("division", division) or division) != row.division or (risk and taxonomy.resolve("risk", risk) != row.risk) \
        or (key_group and taxonomy.resolve("key_group", key_group) != row.key_group)
    if overrides and not reason.strip():
        return case_view(request, user, triage_id, session, settings, taxonomy, error="改派或调整时请填写理由。", status=422,
                         sent=sent)
    try:
        decision = DecisionIn(triage_id=triage_id, division=division, risk=risk or None, key_group=key_group or None,
                              decided_by=(user.key.label or "").strip() or user.actor,
                              reason=reason.replace("\r\n", "\n").strip() or None)
        record(decision, session, loaded.model.taxonomy, user.key, writes)
    except ValidationError as exc:
        return case_view(request, user, triage_id, session, settings, taxonomy, error="；".join(form_errors(exc)), status=422,
                         sent=sent)
    except HTTPException as exc:
        # The one refusal a clerk meets in the course of work, said in the page's words.
        error = (f"此件正文已按保留期限删除，无法再进入研判队列：标为“{taxonomy.name_of('risk', 'high')}”的决定未记录。"
                 "如确需研判，请凭原件另行报送。") if exc.status_code == 409 else error_text(exc)
        return case_view(request, user, triage_id, session, settings, taxonomy, error=error, status=exc.status_code, sent=sent)
    return RedirectResponse(f"/cases/{triage_id}?decided=1", status_code=303)
