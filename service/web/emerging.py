"""群体苗头 (emerging groups): many petitions about one matter arriving together, the first
sign of a collective case. Lists the groups through the API's own GET /v1/emerging function."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from model.office_time import office_midnight
from model.taxonomy import Taxonomy
from service.cases import TaxonomyDep
from service.deps import SessionDep, SettingsDep
from service.routers.emerging import FEWEST_MEMBERS, MOST_DAYS, MOST_MEMBERS, READERS, emerging
from service.schemas import EmergingGroup
from service.settings import Settings
from service.similar import MattersDep, SharedMatterIndex
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


def _until(value: str) -> tuple[datetime | None, str | None]:
    """The end of the day typed in 截至, or why it cannot be taken. The day is the office's and
    is included: a reviewer asking for the groups as of 1 July means those of petitions received
    up to that evening in Beijing, not up to its first minute."""
    if not value:
        return None, None
    try:
        return office_midnight(date.fromisoformat(value) + timedelta(days=1)), None
    except ValueError:
        return None, f"截至：无法识别的日期 {value!r}（格式 YYYY-MM-DD）"
    except OverflowError:  # 9999-12-31: the day after it is beyond the calendar
        return None, f"截至：超出可以查询的日期范围，现为 {value}"


def _listed(user: WebUser, session: Session, settings: Settings, matters: SharedMatterIndex, days: str, min_size: str,
            until: str) -> tuple[dict[str, str], float | None, list[str], list[EmergingGroup]]:
    """The filters as shown, the look-back, why the filters cannot apply, and the groups: one
    reading of the filters for the page and its download, so the file holds what the page lists."""
    days, min_size, until = days.strip(), min_size.strip(), until.strip()
    # An empty field is the settings' value, shown filled in so the reviewer sees what applies.
    filters = {"days": days or f"{settings.emerging_days:g}", "min_size": min_size or str(settings.emerging_min_size),
               "until": until}
    look_back, days_error = _days(filters["days"])
    fewest, size_error = _min_size(filters["min_size"])
    end, until_error = _until(until)
    # A filter that cannot apply is said, not replaced by the default: the groups of a span
    # the reviewer did not choose, read as those of the one typed, mislead.
    errors = [e for e in (days_error, size_error, until_error) if e]
    if errors:
        return filters, look_back, errors, []
    groups = emerging(
        session=session, settings=settings, matters=matters, _=user.key, days=look_back, min_size=fewest, until=end, limit=GROUPS_SHOWN
    )
    return filters, look_back, errors, groups


def _context(user: WebUser, filters: dict[str, str], taxonomy: Taxonomy) -> dict[str, object]:
    return {
        "filters": filters,
        "taxonomy": taxonomy,
        "statuses": REVIEW_STATUSES,
        # An analyst may not open case pages: numbers without links, not links that refuse.
        "case_links": user.may("intake", "reviewer"),
    }


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
    until: str = "",
) -> HTMLResponse:
    filters, look_back, errors, groups = _listed(user, session, settings, matters, days, min_size, until)
    context = _context(user, filters, taxonomy)
    if errors:
        return page(request, "emerging.html", user, status=422, groups=[], error="；".join(errors), **context)
    return page(request, "emerging.html", user, groups=groups, shown=GROUPS_SHOWN, look_back=look_back, **context)

