"""The petition office's clock: Beijing time, in which ledgers are written, pages show
times, and the statutory time limits count their calendar days. Stored times stay UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

CHINA_TIME = timezone(timedelta(hours=8))


def office_date(moment: datetime) -> date:
    """The office's calendar date at `moment` (a naive datetime is taken as UTC, as stored)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(CHINA_TIME).date()


def office_midnight(day: date) -> datetime:
    """The moment `day` begins at the office: a date written without a time means that day there."""
    return datetime.combine(day, time(), tzinfo=CHINA_TIME)
