"""研判 (review queue): open items by risk and age with the time left, filters, and resolve.
Lists and resolves through the API's own review-queue functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from model.office_time import office_midnight
from service.cases import TaxonomyDep
from service.database import ReviewItem
from service.deps import SessionDep, SettingsDep
from service.routers import InvalidField, error_text
from service.routers.review import queue_page, resolve
from service.schemas import ResolveIn
from service.web.intake import case_view, form_errors
from service.web.render import REVIEW_REASONS, StaffNames, local_time, page
from service.web.sessions import Csrf, WebUser, page_user

router = APIRouter(include_in_schema=False)
ReviewUser = Annotated[WebUser, Depends(page_user("reviewer"))]
REASONS = REVIEW_REASONS
STATUSES = ("open", "resolved", "all")
# The most items one page lists (the API's own limit); 下一页 lists the ones after them.
QUEUE_SHOWN = 500


def _day(value: str, label: str, end: bool = False) -> tuple[datetime | None, str | None]:
    """The moment the day typed in 自 begins, or for 至 the day after it (the day is included),
    or why it cannot be taken."""
    if not value:
        return None, None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None, f"{label}：无法识别的日期 {value!r}（格式 YYYY-MM-DD）"
    try:
        return office_midnight(day + timedelta(days=1) if end else day).astimezone(UTC), None
    except OverflowError:  # the day after 9999-12-31, or Beijing's 0001-01-01, before UTC's first moment
        return None, f"{label}：超出可以查询的日期范围，现为 {value}"


@router.get("/review", response_class=HTMLResponse)
def review_queue(request: Request, user: ReviewUser, session: SessionDep, settings: SettingsDep, taxonomy: TaxonomyDep,
                 status: str = "open", division: str = "", reason: str = "", since: str = "", until: str = "",
                 cursor: str = "") -> HTMLResponse:
    status = status or "open"
    filters = {"status": status, "division": division, "reason": reason, "since": since, "until": until}
    # The pages' links keep the filters: a 下一页 without them listed the whole queue from there.
    chosen = {k: v for k, v in filters.items() if v}
    first_page = f"/review?{urlencode(chosen)}" if cursor else None
    # A filter that cannot apply is said, not dropped: an unfiltered queue under the filter the
    # reviewer believes applies (a bookmark from before a taxonomy change, a mistyped date or
    # reason) misleads.
    (start, since_error), (end, until_error) = _day(since, "自"), _day(until, "至", end=True)
    errors = [e for e in (since_error, until_error) if e]
    # Dates the wrong way round match nothing: "0 件" read as an empty queue.
    if not errors and since and until and date.fromisoformat(since) > date.fromisoformat(until):
        errors.append(f"自 {since} 晚于 至 {until}：没有信访件能同时满足，请对调两个日期")
    if division and taxonomy.resolve("division", division) is None:
        errors.append(f"处室：没有 {division!r} 这个处室")
    if reason and reason not in REASONS:
        errors.append(f"原因：没有 {reason!r} 这个原因")
    if status not in STATUSES:
        errors.append(f"状态：没有 {status!r} 这个状态")
    queue = None
    if not errors:
        try:
            queue = queue_page(session, taxonomy, settings, status=status, division=division or None, reason=reason or None,
                               since=start, until=end, limit=QUEUE_SHOWN, cursor=cursor or None)
        except InvalidField:
            # The filters were checked above: only the cursor is left, from an edited or cut link.
            errors.append("翻页：链接中的页码无法识别，请从第一页看起")
    if queue is None:
        return page(request, "review.html", user, status=422, items=[], taxonomy=taxonomy, reasons=REASONS, filters=filters,
                    error="；".join(errors), first_page=first_page)
    next_page = f"/review?{urlencode({**chosen, 'cursor': queue.next_cursor})}" if queue.next_cursor else None
    return page(request, "review.html", user, items=queue.items, taxonomy=taxonomy, reasons=REASONS, filters=filters,
                who=StaffNames(session), next_page=next_page, first_page=first_page)


@router.post("/review/{triage_id}/resolve", response_class=HTMLResponse)
def resolve_item(request: Request, triage_id: str, user: ReviewUser, _: Csrf, session: SessionDep, settings: SettingsDep,
                 taxonomy: TaxonomyDep, note: Annotated[str, Form()] = "") -> Response:
    try:
        # A browser sends a line break as CRLF and counts it as one character against maxlength.
        resolve(triage_id=triage_id, body=ResolveIn(note=note.replace("\r\n", "\n")), session=session, key=user.key,
                taxonomy=taxonomy, settings=settings)
    except ValidationError as exc:
        return case_view(request, user, triage_id, session, settings, taxonomy, error="；".join(form_errors(exc)), status=422,
                         sent={"note": note})
    except HTTPException as exc:
        return case_view(request, user, triage_id, session, settings, taxonomy, error=_refused(exc, triage_id, session, note),
                         status=exc.status_code, sent={"note": note})
    return RedirectResponse(f"/cases/{triage_id}?resolved=1", status_code=303)


def _refused(exc: HTTPException, triage_id: str, session: Session, note: str) -> str:
    """Why the API refused to resolve, in the page's words. Two reviewers (or two tabs) on one
    item is an everyday event, and the API's English read as a fault in what the second did.
    The page then has no form to keep the note in: it is quoted, to be added elsewhere."""
    item = session.get(ReviewItem, triage_id)
    if exc.status_code == 409 and item is not None:
        unrecorded = f"：「{note.strip()}」" if note.strip() else "。"
        return (f"此件已由 {StaffNames(session)(item.resolved_by)} 于 {local_time(item.resolved_at)} 完成研判，"
                f"您的研判意见未记录{unrecorded}")
    if exc.status_code == 404:
        return "此件不在研判队列中，无需研判。"
    return error_text(exc)
