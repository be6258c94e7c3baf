"""The API contract."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Channel = Literal["来信", "来访", "网上", "电话"]
# PostgreSQL cannot store a NUL character (the request would fail as a database error), and no
# petition, name or path holds one: refused as bad input instead.
NO_NUL = r"^[^\x00]*$"


class PetitionIn(BaseModel):
    title: str = Field("", max_length=500, pattern=NO_NUL)
    body: str = Field(..., min_length=1, pattern=NO_NUL)
    external_id: str | None = Field(None, max_length=200, pattern=NO_NUL)
    received_at: datetime | None = None
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


class SimilarCase(BaseModel):
    triage_id: str
    external_id: str | None
    received_at: datetime
    similarity: float
    decided_division: str | None
    review_status: str | None


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
    similar_cases: list[SimilarCase] = Field(default_factory=list,
                                             description="Stored petitions about the same matter within the window, most similar first.")
    repeat_of: str | None = Field(None, description="The triage_id of the closest earlier petition about the same matter.")


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


class EmergingMember(BaseModel):
    triage_id: str
    external_id: str | None
    received_at: datetime
    division: str
    risk: str
    review_status: str | None


class EmergingGroup(BaseModel):
    size: int
    growth: int = Field(description="Members received in the last quarter of the window.")
    first_seen: datetime
    last_seen: datetime
    divisions: dict[str, int]
    highest_risk: str
    shared_words: list[str] = Field(description="Organisation, project and place names most members mention (never persons).")
    members: list[EmergingMember]
