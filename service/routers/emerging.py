"""GET /v1/emerging: many petitions about one matter arriving together (群体性苗头)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from model.matter import shared_words
from model.taxonomy import RISK_ORDER
from service.database import ApiKey, utcnow
from service.deps import SessionDep, SettingsDep, require_role
from service.routers import KEYED_ERRORS, KeyedRoute, errors
from service.schemas import MOMENT_READ, EmergingGroup, EmergingMember, Moment
from service.similar import CaseInfo, MattersDep, aware, emerging_groups

router = APIRouter(prefix="/v1/emerging", tags=["emerging"], route_class=KeyedRoute,
                   responses=errors(*KEYED_ERRORS))
READERS = ("reviewer", "analyst")
Reader = Annotated[ApiKey, Depends(require_role(*READERS))]
# The bounds of the filters, which the 群体苗头 page checks too (service/web/emerging.py).
MOST_DAYS = 366
FEWEST_MEMBERS, MOST_MEMBERS = 2, 1000


@router.get("", response_model=list[EmergingGroup])
def emerging(
    session: SessionDep, settings: SettingsDep, matters: MattersDep, _: Reader,
    days: Annotated[float | None, Query(gt=0, le=MOST_DAYS, description=(
        "The look-back before `until`, and the span a group's petitions arrive within: a group is "
        "listed when some span of `days` holds `min_size` of them, one at least received in the look-back "
        "(the span may begin before it). Default: the settings' emerging_days."))] = None,
    min_size: Annotated[int | None, Query(ge=FEWEST_MEMBERS, le=MOST_MEMBERS)] = None,
    until: Annotated[Moment | None, Query(description=(
        "The end of the look-back (default now); petitions received after it are not seen. " + MOMENT_READ))] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[EmergingGroup]:
    """Groups of at least `min_size` petitions about one matter received within a span of `days`,
    the latest of them in the `days` before `until` (default: the settings' emerging_min_size and
    emerging_days, and now), largest and fastest-growing first. Members are cases; nothing here
    counts or names a petitioner."""
    days, min_size = days or settings.emerging_days, min_size or settings.emerging_min_size
    end = (aware(until) if until else utcnow()).timestamp()
    matters.refresh(session)
    found = emerging_groups(session, matters, end - days * 86400, end, days * 86400, min_size)
    recent = end - days * 86400 / 4

    def growth(infos: list[CaseInfo]) -> int:
        return sum(i.received_at.timestamp() >= recent for i in infos)

    # The first member's id last: groups alike in all else come in one order from every worker,
    # whatever order its index took them in, so a `limit` cuts the same ones. Ordered before
    # they are described: reading the shared words of every group of a year's look-back cost
    # seconds, for groups the `limit` then cut.
    found.sort(key=lambda infos: (-len(infos), -growth(infos), infos[0].received_at, infos[0].triage_id))
    groups = []
    for infos in found[:limit]:
        divisions: dict[str, int] = {}
        for info in infos:
            division = info.decided_division or info.division
            divisions[division] = divisions.get(division, 0) + 1
        groups.append(EmergingGroup(
            size=len(infos), growth=growth(infos),
            first_seen=infos[0].received_at, last_seen=infos[-1].received_at, divisions=divisions,
            highest_risk=max((i.risk for i in infos), key=RISK_ORDER.index),
            shared_words=shared_words([i.text for i in infos]),
            members=[EmergingMember(triage_id=i.triage_id, external_id=i.external_id, received_at=i.received_at,
                                    division=i.decided_division or i.division, risk=i.risk, review_status=i.review_status)
                     for i in infos]))
    return groups
