"""The petition office's review queue: high-risk and low-confidence suggestions, and emerging groups."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session

from model.taxonomy import Taxonomy
from service.cases import TaxonomyDep, case_out
from service.database import ApiKey, AuditEntry, DecisionRecord, ReviewItem, TriageRecord, utcnow
from service.deps import SessionDep, SettingsDep, actor_of, require_role
from service.routers import BODY_ERRORS, KEYED_ERRORS, InvalidField, KeyedRoute, errors
from service.schemas import MOMENT_READ, NO_NUL, Moment, ResolveIn, ReviewItemOut, ReviewReason
from service.settings import Settings

router = APIRouter(prefix="/v1/review-queue", tags=["review-queue"], route_class=KeyedRoute,
                   responses=errors(*KEYED_ERRORS))
Reviewer = Annotated[ApiKey, Depends(require_role("reviewer"))]
# The division of a triage's latest decision, None when no one has decided it.
_decided_division = (select(DecisionRecord.division).where(DecisionRecord.triage_id == TriageRecord.id)
                     .order_by(DecisionRecord.revision.desc()).limit(1).correlate(TriageRecord).scalar_subquery())


# Open items first, high risk first, then oldest first: nothing waits behind newer routine cases.
# Resolved items after them, most recently resolved first: ordered as open ones, oldest queued
# first, those resolved today were beyond any page once the office had resolved a page of them.
# The triage id last, so that items queued at one moment (an emerging group's) keep their order.
_OPEN = ReviewItem.status == "open"
QUEUE_ORDER = (~_OPEN, case((_OPEN, ReviewItem.reason != "high_risk"), else_=False), case((_OPEN, ReviewItem.created_at)),
               ReviewItem.resolved_at.desc(), ReviewItem.triage_id)


def _out(item: ReviewItem, triage: TriageRecord, session: Session, taxonomy: Taxonomy, settings: Settings) -> ReviewItemOut:
    return ReviewItemOut(triage_id=item.triage_id, reason=item.reason, status=item.status,
                         created_at=item.created_at, division=triage.division, risk=triage.risk,
                         title=triage.title_masked, resolved_by=item.resolved_by, note=item.note,
                         division_name=taxonomy.display_name("division", triage.division), risk_name=taxonomy.display_name("risk", triage.risk),
                         case=case_out(session, triage, taxonomy, settings))


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue, and where the next one starts (None when this is the last)."""

    items: list[ReviewItemOut]
    next_cursor: str | None


def _cursor(item: ReviewItem) -> str:
    """The place of `item` in QUEUE_ORDER: the next page starts after it. A place, not a count:
    by an offset, each item resolved while the reviewer reads page one moved an open item
    from page two onto page one, skipped."""
    place = (["open", item.reason == "high_risk", item.created_at.isoformat(), item.triage_id] if item.status == "open"
             else ["resolved", item.resolved_at.isoformat(), item.triage_id])
    return base64.urlsafe_b64encode(json.dumps(place).encode()).decode().rstrip("=")


# The longest cursor taken: an item's place is far shorter.
CURSOR_CHARS = 1000


def _after(cursor: str) -> ColumnElement[bool]:
    """The items after the place `cursor` names, as QUEUE_ORDER orders them."""
    try:
        place = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))) if len(cursor) <= CURSOR_CHARS else None
        match place:
            case ["open", bool(high), str(when), str(tid)]:
                resolved = False
            case ["resolved", str(when), str(tid)]:
                resolved, high = True, False
            case _:
                raise ValueError(cursor)
        at = datetime.fromisoformat(when)
        at = (at.replace(tzinfo=UTC) if at.tzinfo is None else at).astimezone(UTC)
        # A NUL or a lone surrogate in an edited cursor: the databases refuse them with a 500.
        if "\x00" in tid:
            raise ValueError(cursor)
        tid.encode()
    except (ValueError, TypeError, OverflowError):
        raise InvalidField(("query", "cursor"), "cursor: not one this queue gave; take it from the Link header of "
                                                "the page before, or leave it out for the first page") from None
    # After it: later in its own rank, by queue or resolution time and then id, as in QUEUE_ORDER.
    if resolved:
        return ~_OPEN & ((ReviewItem.resolved_at < at) | ((ReviewItem.resolved_at == at) & (ReviewItem.triage_id > tid)))
    later = (ReviewItem.created_at > at) | ((ReviewItem.created_at == at) & (ReviewItem.triage_id > tid))
    high_risk = ReviewItem.reason == "high_risk"
    # After a high-risk item come the later high-risk ones and every other open one; resolved
    # ones come after all open ones.
    return ~_OPEN | (_OPEN & ((~high_risk | (high_risk & later)) if high else (~high_risk & later)))


def queue_page(session: Session, taxonomy: Taxonomy, settings: Settings, status: str = "open", division: str | None = None,
               reason: str | None = None, since: datetime | None = None, until: datetime | None = None, limit: int = 100,
               cursor: str | None = None) -> QueuePage:
    """The queue as GET /v1/review-queue and the 研判 page list it, `limit` items after `cursor`."""
    query = select(ReviewItem, TriageRecord).join(TriageRecord, TriageRecord.id == ReviewItem.triage_id)
    if status != "all":
        query = query.where(ReviewItem.status == status)
    if division:
        code = taxonomy.resolve("division", division)
        # A misspelt code would match nothing and look like an empty queue.
        if code is None:
            raise InvalidField(("query", "division"),
                               f"division: unknown code or name {division!r}; one of {taxonomy.codes('division')}")
        # The division that handles it now: a reviewer filtering for a division missed the items
        # clerks had reassigned to it, which the queue shows under that division.
        query = query.where(func.coalesce(_decided_division, TriageRecord.division) == code)
    if reason:
        query = query.where(ReviewItem.reason == reason)
    if since:
        query = query.where(ReviewItem.created_at >= since)
    if until:
        query = query.where(ReviewItem.created_at < until)
    if cursor:
        query = query.where(_after(cursor))
    # One more than the page: whether there is a next page is known, not guessed from a full one.
    rows = session.execute(query.order_by(*QUEUE_ORDER).limit(limit + 1)).all()
    next_cursor = _cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return QueuePage(items=[_out(item, triage, session, taxonomy, settings) for item, triage in rows[:limit]],
                     next_cursor=next_cursor)


NEXT_PAGE = {"Link": {"description": 'The next page, `<URL>; rel="next"`: this request with `cursor` set. '
                                     "Absent on the last page.", "schema": {"type": "string"}}}


@router.get("", response_model=list[ReviewItemOut], responses={200: {"headers": NEXT_PAGE}})
def list_queue(
    request: Request, response: Response, session: SessionDep, _: Reviewer, taxonomy: TaxonomyDep, settings: SettingsDep,
    status: Annotated[Literal["open", "resolved", "all"], Query(description=(
        "Open items come first, high risk first and then oldest queued first; resolved ones after them, "
        "most recently resolved first."))] = "open",
    division: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description=(
        "Division code or Chinese name: the one a clerk decided, else the one suggested."))] = None,
    reason: ReviewReason | None = None,
    since: Annotated[Moment | None, Query(description="Items queued at or after it. " + MOMENT_READ)] = None,
    until: Annotated[Moment | None, Query(description="Items queued before it. " + MOMENT_READ)] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="The most items one page lists.")] = 100,
    cursor: Annotated[str | None, Query(max_length=CURSOR_CHARS, pattern=NO_NUL, description=(
        "Where the page starts: the `cursor` of the `Link` header (rel=\"next\") of the page before, with the "
        "same filters; without it, the first page. The next page starts after the last item listed, so items "
        "resolved or queued meanwhile neither push one off the next page nor list one twice; an item queued "
        "meanwhile ahead of that place is on the first page, not on the next. Under status=all an open item "
        "resolved meanwhile is listed again among the resolved ones."))] = None,
) -> list[ReviewItemOut]:
    page = queue_page(session, taxonomy, settings, status=status, division=division, reason=reason, since=since,
                      until=until, limit=limit, cursor=cursor)
    if page.next_cursor:
        # Relative: the service behind a proxy does not know the address its clients use.
        url = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return page.items


@router.post("/{triage_id}/resolve", response_model=ReviewItemOut, responses=errors(*BODY_ERRORS, 404, 409))
def resolve(triage_id: Annotated[str, Path(max_length=200, pattern=NO_NUL)], body: ResolveIn, session: SessionDep, key: Reviewer,
            taxonomy: TaxonomyDep, settings: SettingsDep) -> ReviewItemOut:
    item = session.get(ReviewItem, triage_id)
    if item is None:
        raise HTTPException(404, f"triage_id: {triage_id!r} is not in the review queue")
    if item.status == "resolved":
        raise HTTPException(409, f"triage_id: {triage_id!r} was already resolved by {item.resolved_by}")
    now = utcnow()
    session.add(AuditEntry(actor=actor_of(key), action="review.resolve", target=triage_id, detail={"note": body.note}))
    session.flush()  # first: on SQLite the flush takes the write lock, held until the commit
    # Resolved only if still open: two reviewers (two tabs) on one item both found it open
    # above, and the second's name and note replaced the first's, both told they had resolved it.
    done = session.execute(update(ReviewItem).where(ReviewItem.triage_id == triage_id, ReviewItem.status == "open")
                           .values(status="resolved", resolved_by=actor_of(key), resolved_at=now, note=body.note)
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        session.rollback()
        item = session.get(ReviewItem, triage_id, populate_existing=True)
        if item is None:
            raise HTTPException(404, f"triage_id: {triage_id!r} is not in the review queue")
        raise HTTPException(409, f"triage_id: {triage_id!r} was already resolved by {item.resolved_by}")
    session.commit()
    item = session.get(ReviewItem, triage_id, populate_existing=True)
    return _out(item, session.get(TriageRecord, triage_id), session, taxonomy, settings)
