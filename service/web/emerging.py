"""群体苗头 (emerging groups): many petitions about one matter arriving together, the first
sign of a collective case. Lists the groups through the API's own GET /v1/emerging function."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from service.cases import TaxonomyDep
from service.deps import SessionDep, SettingsDep
from service.routers.emerging import FEWEST_MEMBERS, MOST_DAYS, MOST_MEMBERS, READERS, emerging
from service.similar import MattersDep
from service.web.render import page
from service.web.sessions import WebUser, page_user

router = APIRouter(include_in_schema=False)
GroupReader = Annotated[WebUser, Depends(page_user(*READERS))]
# The most groups one page lists; a page this full says so, as the 研判 queue does.
GROUPS_SHOWN = 50
# What the review queue holds of a member, in the pages' words.
REVIEW_STATUSES = {"open": "待研判", "resolved": "已研判", None: "未进入研判队列"}


def _days(value: str) -> tuple[float | None, str | None]:
    """The look-back typed in 天数, or why it cannot be taken."""
    try:
        days = float(value)
    except ValueError:
        return None, f"天数：无法识别 {value!r}，请填写一个数"
    # Written so that NaN, which compares false to everything, is refused too.
    if not 0 < days <= MOST_DAYS:
        return None, f"天数：应大于 0 且不超过 {MOST_DAYS}，现为 {value}"
    return days, None


def _min_size(value: str) -> tuple[int | None, str | None]:
    """The fewest members typed in 最少件数, or why it cannot be taken."""
    try:
        size = int(value)
    except ValueError:
        return None, f"最少件数：无法识别 {value!r}，请填写一个整数"
    if not FEWEST_MEMBERS <= size <= MOST_MEMBERS:
        return None, f"最少件数：应在 {FEWEST_MEMBERS} 到 {MOST_MEMBERS} 件之间，现为 {size}"
    return size, None


@router.get("/emerging", response_class=HTMLResponse)
def emerging_page(
    request: Request,
    user: GroupReader,
    session: SessionDep,
    settings: SettingsDep,
    matters: MattersDep,
    taxonomy: TaxonomyDep,
    days: str = "",
    min_size: str = "",
) -> HTMLResponse:
    days, min_size = days.strip(), min_size.strip()
    # An empty field is the settings' value, shown filled in so the reviewer sees what applies.
    filters = {"days": days or f"{settings.emerging_days:g}", "min_size": min_size or str(settings.emerging_min_size)}
    look_back, days_error = _days(filters["days"])
    fewest, size_error = _min_size(filters["min_size"])
    # A filter that cannot apply is said, not replaced by the default: the groups of a span
    # the reviewer did not choose, read as those of the one typed, mislead.
    errors = [e for e in (days_error, size_error) if e]
    context = {
        "filters": filters,
        "taxonomy": taxonomy,
        "statuses": REVIEW_STATUSES,
        # An analyst may not open case pages: numbers without links, not links that refuse.
        "case_links": user.may("intake", "reviewer"),
    }
    if errors:
        return page(request, "emerging.html", user, status=422, groups=[], error="；".join(errors), **context)
    groups = emerging(
        session=session, settings=settings, matters=matters, _=user.key, days=look_back, min_size=fewest, until=None, limit=GROUPS_SHOWN
    )
    return page(request, "emerging.html", user, groups=groups, shown=GROUPS_SHOWN, look_back=look_back, **context)
