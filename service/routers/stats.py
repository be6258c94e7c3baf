"""GET /v1/stats: suggestions, decisions and the override rate per division."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from service.cases import TaxonomyDep
from service.database import ApiKey, DecisionRecord, TriageRecord
from service.deps import SessionDep, require_role
from service.routers import KEYED_ERRORS, KeyedRoute, errors
from service.schemas import MOMENT_READ, Moment

router = APIRouter(prefix="/v1/stats", tags=["stats"], route_class=KeyedRoute,
                   responses=errors(*KEYED_ERRORS))


@router.get("")
def stats(session: SessionDep, _: Annotated[ApiKey, Depends(require_role("analyst"))], taxonomy: TaxonomyDep,
          since: Annotated[Moment | None, Query(description="Petitions triaged at or after it. " + MOMENT_READ)] = None,
          until: Annotated[Moment | None, Query(description="Petitions triaged before it. " + MOMENT_READ)] = None) -> dict[str, Any]:
    triages = select(TriageRecord.division, func.count()).group_by(TriageRecord.division)
    # The latest revision of each decision is the one that counts.
    latest = (select(DecisionRecord.triage_id, func.max(DecisionRecord.revision).label("rev"))
              .group_by(DecisionRecord.triage_id).subquery())
    decisions = (select(TriageRecord.division, DecisionRecord.accepted, func.count())
                 .join(latest, (latest.c.triage_id == DecisionRecord.triage_id) & (latest.c.rev == DecisionRecord.revision))
                 .join(TriageRecord, TriageRecord.id == DecisionRecord.triage_id)
                 .group_by(TriageRecord.division, DecisionRecord.accepted))
    if since:
        triages = triages.where(TriageRecord.created_at >= since)
        decisions = decisions.where(TriageRecord.created_at >= since)
    if until:
        triages = triages.where(TriageRecord.created_at < until)
        decisions = decisions.where(TriageRecord.created_at < until)
    per_division: dict[str, dict[str, Any]] = {}
    for division, count in session.execute(triages):
        per_division.setdefault(division, {"suggestions": 0, "accepted": 0, "overridden": 0})["suggestions"] = count
    for division, accepted, count in session.execute(decisions):
        entry = per_division.setdefault(division, {"suggestions": 0, "accepted": 0, "overridden": 0})
        entry["accepted" if accepted else "overridden"] += count
    for division, entry in per_division.items():
        entry["name"] = taxonomy.display_name("division", division)
        decided = entry["accepted"] + entry["overridden"]
        entry["override_rate"] = round(entry["overridden"] / decided, 4) if decided else None
    return {
        "suggestions": sum(e["suggestions"] for e in per_division.values()),
        "decisions": sum(e["accepted"] + e["overridden"] for e in per_division.values()),
        "per_division": per_division,
    }
