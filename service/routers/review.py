"""The petition office's review queue: high-risk and low-confidence suggestions, and emerging groups."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from model.taxonomy import Taxonomy
from service.cases import TaxonomyDep, case_out
from service.database import ApiKey, AuditEntry, DecisionRecord, ReviewItem, TriageRecord, utcnow
from service.deps import SessionDep, SettingsDep, actor_of, require_role
from service.routers import BODY_ERRORS, KEYED_ERRORS, InvalidField, KeyedRoute, errors
from service.schemas import NO_NUL, Moment, ResolveIn, ReviewItemOut, ReviewReason
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


@router.get("", response_model=list[ReviewItemOut])
def list_queue(
    session: SessionDep, _: Reviewer, taxonomy: TaxonomyDep, settings: SettingsDep,
    status: Annotated[Literal["open", "resolved", "all"], Query(description=(
        "Open items come first, high risk first and then oldest queued first; resolved ones after them, "
        "most recently resolved first."))] = "open",
    division: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description=(
        "Division code or Chinese name: the one a clerk decided, else the one suggested."))] = None,
    reason: ReviewReason | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReviewItemOut]:
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
    return [_out(item, triage, session, taxonomy, settings) for item, triage in session.execute(query.order_by(*QUEUE_ORDER).limit(limit))]


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
