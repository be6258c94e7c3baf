"""群体苗头 (emerging groups): many petitions about one matter arriving together, the first
sign of a collective case. Lists the groups through the API's own GET /v1/emerging function."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from model.office_time import CHINA_TIME, office_midnight
from model.taxonomy import Taxonomy
from service.cases import TaxonomyDep, as_utc
from service.deps import SessionDep, SettingsDep
from service.routers.emerging import FEWEST_MEMBERS, MOST_DAYS, MOST_MEMBERS, READERS, emerging
from service.schemas import EmergingGroup
from service.settings import Settings
from service.similar import MattersDep, SharedMatterIndex
from service.web.render import page
from service.web.sessions import WebUser, page_user
from training.ledger import spreadsheet_safe

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


@dataclass
class TypedFilters:
    """The filters as typed on the page (天数, 最少件数, 截至), the page and its download alike."""

    days: str = ""
    min_size: str = ""
    until: str = ""


Typed = Annotated[TypedFilters, Depends()]


def _listed(user: WebUser, session: Session, settings: Settings, matters: SharedMatterIndex,
            typed: TypedFilters) -> tuple[dict[str, str], float | None, list[str], list[EmergingGroup]]:
    """The filters as shown, the look-back, why the filters cannot apply, and the groups: one
    reading of the filters for the page and its download, so the file holds what the page lists."""
    days, min_size, until = typed.days.strip(), typed.min_size.strip(), typed.until.strip()
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


def _refused(request: Request, user: WebUser, filters: dict[str, str], taxonomy: Taxonomy,
             errors: list[str]) -> HTMLResponse:
    """The page with the filters as typed and why they cannot apply."""
    return page(request, "emerging.html", user, status=422, groups=[], error="；".join(errors),
                **_context(user, filters, taxonomy))


@router.get("/emerging", response_class=HTMLResponse)
def emerging_page(
    request: Request,
    user: GroupReader,
    session: SessionDep,
    settings: SettingsDep,
    matters: MattersDep,
    taxonomy: TaxonomyDep,
    typed: Typed,
) -> HTMLResponse:
    filters, look_back, errors, groups = _listed(user, session, settings, matters, typed)
    if errors:
        return _refused(request, user, filters, taxonomy, errors)
    return page(request, "emerging.html", user, groups=groups, shown=GROUPS_SHOWN, look_back=look_back,
                csv_link="/emerging.csv?" + urlencode({k: v for k, v in filters.items() if v}),
                **_context(user, filters, taxonomy))


def _beijing(moment: datetime) -> str:
    return as_utc(moment).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


def _rows(groups: list[EmergingGroup], look_back: float, until: str, taxonomy: Taxonomy) -> list[list[object]]:
    """One row per group, with what the page shows of it; the members' numbers joined in one cell."""
    recent = f"其中截至日前 {look_back / 4:g} 天件数" if until else f"其中近 {look_back / 4:g} 天件数"
    rows: list[list[object]] = [["组", "件数", recent, "首件收到（北京时间）", "最近一件收到（北京时间）", "涉及处室",
                                 "最高风险", "共同词语", "信访件编号", "研判编号"]]
    for number, group in enumerate(groups, 1):
        divisions = sorted(group.divisions.items(), key=lambda kv: kv[1], reverse=True)
        rows.append([number, group.size, group.growth, _beijing(group.first_seen), _beijing(group.last_seen),
                     "、".join(f"{taxonomy.display_name('division', code)} {n} 件" for code, n in divisions),
                     taxonomy.display_name("risk", group.highest_risk),
                     # Words and numbers come from petitions and clients: none is run as a formula.
                     spreadsheet_safe("、".join(group.shared_words)),
                     spreadsheet_safe("、".join(m.external_id or "（无编号）" for m in group.members)),
                     "、".join(m.triage_id for m in group.members)])
    return rows


@router.get("/emerging.csv", response_model=None)
def emerging_csv(
    request: Request,
    user: GroupReader,
    session: SessionDep,
    settings: SettingsDep,
    matters: MattersDep,
    taxonomy: TaxonomyDep,
    typed: Typed,
) -> Response:
    """The groups the page lists with the same filters, one row per group."""
    filters, look_back, errors, groups = _listed(user, session, settings, matters, typed)
    if errors:
        # The page with its error, not a file of nothing that reads as no groups.
        return _refused(request, user, filters, taxonomy, errors)
    out = io.StringIO()
    csv.writer(out).writerows(_rows(groups, look_back, filters["until"], taxonomy))
    # A BOM so that Excel opens the Chinese as UTF-8, as 统计's download does.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="emerging.csv"'})
