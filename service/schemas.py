"""The API contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

Channel = Literal["来信", "来访", "网上", "电话"]
# PostgreSQL cannot store a NUL character (the request would fail as a database error), and no
# petition, name or path holds one: refused as bad input instead.
NO_NUL = r"^[^\x00]*$"


_UNENCODED_PLUS = re.compile(r"^(.*[0-9]) ([0-9]{2}:?[0-9]{2})$")


def _plus_restored(value: Any) -> Any:
    # `?since=2026-12-06T09:00:00+08:00` typed into a URL unencoded arrives with a space for the "+".
    if isinstance(value, str) and (match := _UNENCODED_PLUS.match(value.strip())):
        return f"{match[1]}+{match[2]}"
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before the first moment there is in UTC
        raise ValueError("outside the range of moments that can be stored") from None


# A moment: any ISO 8601 offset ("Z", "+08:00"); without one, UTC. Held in UTC from here on.
UTCMoment = Annotated[datetime, AfterValidator(_in_utc)]
# The same as a query parameter, where an unencoded "+" of the offset arrives as a space.
Moment = Annotated[datetime, BeforeValidator(_plus_restored), AfterValidator(_in_utc)]


class PetitionIn(BaseModel):
    title: str = Field("", max_length=500, pattern=NO_NUL)
    body: str = Field(..., min_length=1, pattern=NO_NUL)
    external_id: str | None = Field(None, max_length=200, pattern=NO_NUL)
    received_at: UTCMoment | None = None
    channel: Channel | None = None


class Span(BaseModel):
    start: int
    end: int
    text: str


class Term(BaseModel):
    term: str
    kind: str
    weight: float
    spans: list[Span]


class RuleHit(BaseModel):
    rule: str
    label: str
    explain: str
    spans: list[Span]


class HeadExplanation(BaseModel):
    label: str
    terms: list[Term]
    rules: list[RuleHit]


class DivisionOption(BaseModel):
    code: str
    name: str
    probability: float


class Suggestion(BaseModel):
    triage_id: str
    model_version: str
    division: DivisionOption
    division_top3: list[DivisionOption]
    risk: str
    risk_confidence: float
    key_group: str
    key_group_name: str
    key_group_confidence: float
    needs_review: bool
    explanation: dict[str, HeadExplanation] = Field(
        description="Per head: the words and rules that drove it; offsets index title + '\\n' + body.")
    stored: bool = Field(description="False when the suggestion could not be written to the database.")


class BatchIn(BaseModel):
    petitions: list[dict] = Field(..., min_length=1)


class BatchItem(BaseModel):
    index: int
    result: Suggestion | None = None
    error: str | None = None


class DecisionIn(BaseModel):
    triage_id: str = Field(..., max_length=200, pattern=NO_NUL)
    division: str = Field(..., max_length=200, pattern=NO_NUL)
    risk: str | None = Field(None, max_length=200, pattern=NO_NUL)
    key_group: str | None = Field(None, max_length=200, pattern=NO_NUL)
    decided_by: str = Field(..., min_length=1, max_length=200, pattern=NO_NUL)
    reason: str | None = Field(None, max_length=2000, pattern=NO_NUL)


class DecisionOut(BaseModel):
    triage_id: str
    revision: int
    division: str
    risk: str
    key_group: str
    accepted: bool
    decided_by: str
    created_at: datetime


class ReviewItemOut(BaseModel):
    triage_id: str
    reason: str
    status: str
    created_at: datetime
    division: str
    risk: str
    title: str
    resolved_by: str | None = None
    note: str | None = None


class ResolveIn(BaseModel):
    note: str = Field(..., min_length=1, max_length=2000, pattern=NO_NUL)


class ReloadIn(BaseModel):
    # At most what the audit log's target column holds.
    model_dir: str = Field(..., min_length=1, max_length=200, pattern=NO_NUL)
