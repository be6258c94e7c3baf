"""统计 (overview): petitions per division per week, acceptance and override per division,
the share flagged high over time, the model in service; charts drawn server-side as SVG."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.office_time import office_date, office_midnight
from model.taxonomy import Taxonomy
from service.cases import TaxonomyDep, as_utc
from service.database import TriageRecord
from service.deps import SessionDep
from service.routers.stats import stats
from service.web.render import page
from service.web.sessions import WebUser, page_user

router = APIRouter(include_in_schema=False)
AnalystUser = Annotated[WebUser, Depends(page_user("analyst"))]
WEEKS = 12


@dataclass
class Weekly:
    weeks: list[date]
    divisions: list[tuple[str, str]]  # (code, Chinese name), most petitions first
    counts: dict[tuple[str, date], int]
    high: dict[date, int]
    total: dict[date, int]

    @property
    def peak(self) -> int:
        return max(self.counts.values(), default=0)

    def high_share(self, week: date) -> float | None:
        return self.high[week] / self.total[week] if self.total[week] else None


def weekly(session: Session, taxonomy: Taxonomy, weeks: int = WEEKS, today: date | None = None) -> Weekly:
    """Counts per division and ISO week (weeks start on Monday, Beijing time) over the last `weeks` weeks."""
    today = today or office_date(datetime.now(UTC))
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    starts = [first + timedelta(days=7 * i) for i in range(weeks)]
    since = office_midnight(first)
    rows = session.execute(select(TriageRecord.created_at, TriageRecord.division, TriageRecord.risk)
                           .where(TriageRecord.created_at >= since))
    counts: dict[tuple[str, date], int] = {}
    high = dict.fromkeys(starts, 0)
    total = dict.fromkeys(starts, 0)
    per_division: dict[str, int] = {}
    for created_at, division, risk in rows:
        day = office_date(as_utc(created_at))
        week = day - timedelta(days=day.weekday())
        if week not in total:
            continue
        counts[division, week] = counts.get((division, week), 0) + 1
        per_division[division] = per_division.get(division, 0) + 1
        total[week] += 1
        high[week] += risk == "high"
    divisions = [(code, taxonomy.display_name("division", code)) for code, _ in sorted(per_division.items(), key=lambda kv: -kv[1])]
    return Weekly(starts, divisions, counts, high, total)


@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request, user: AnalystUser, session: SessionDep, taxonomy: TaxonomyDep) -> HTMLResponse:
    totals = stats(session=session, _=user.key, taxonomy=taxonomy, since=None, until=None)
    loaded = request.app.state.models.current
    rates = sorted(((code, entry) for code, entry in totals["per_division"].items() if entry["accepted"] + entry["overridden"]),
                   key=lambda kv: -(kv[1]["accepted"] + kv[1]["overridden"]))
    return page(request, "overview.html", user, totals=totals, rates=rates, weekly=weekly(session, taxonomy),
                model=loaded.version if loaded else None, model_created=(loaded.metadata.get("created_at") if loaded else None))


@router.get("/overview.csv")
def overview_csv(user: AnalystUser, session: SessionDep, taxonomy: TaxonomyDep) -> Response:
    """The weekly counts and the per-division decision figures, one row per division and week."""
    totals = stats(session=session, _=user.key, taxonomy=taxonomy, since=None, until=None)
    table = weekly(session, taxonomy)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["week", "division", "division_name", "petitions", "high_risk_share_of_week"])
    for week in table.weeks:
        share = table.high_share(week)
        for code, name in table.divisions:
            writer.writerow([week.isoformat(), code, name, table.counts.get((code, week), 0), "" if share is None else f"{share:.4f}"])
    writer.writerow([])
    writer.writerow(["division", "division_name", "suggestions", "accepted", "overridden", "override_rate"])
    for code, entry in totals["per_division"].items():
        writer.writerow([code, entry.get("name", code), entry["suggestions"], entry["accepted"], entry["overridden"],
                         "" if entry["override_rate"] is None else entry["override_rate"]])
    # A BOM so that Excel opens the Chinese names as UTF-8.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="overview.csv"'})
