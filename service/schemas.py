"""The API contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from model.office_time import CHINA_TIME
from model.text import has_text

Channel = Literal["来信", "来访", "网上", "电话"]
# Why a case is in the petition office's review queue.
QUEUED_BECAUSE = ("Why it is queued: high_risk (suggested, or judged so in a decision), low_confidence "
                  "or emerging_group (several petitions about one matter).")
ReviewReason = Literal["high_risk", "low_confidence", "emerging_group"]
# PostgreSQL cannot store a NUL character (the request would fail as a database error), and no
# petition, name or path holds one: refused as bad input instead.
NO_NUL = r"^[^\x00]*$"
OFFSETS = ("Character offsets (Python str indices, 0-based, end exclusive) into the petition's text as the model read it: "
           "the title, a newline, then the body (title + '\\n' + body).")


# The space must follow a time: in "2026-12-06 09:00" it only separates the date from the time.
_UNENCODED_PLUS = re.compile(r"^(.*[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) ([0-9]{2}:?[0-9]{2})$")


def _plus_restored(value: Any) -> Any:
    # `?since=2026-12-06T09:00:00+08:00` typed into a URL unencoded arrives with a space for the "+".
    if isinstance(value, str) and (match := _UNENCODED_PLUS.match(value.strip())):
        return f"{match[1]}+{match[2]}"
    return value


def _in_utc(value: datetime) -> datetime:
    # A time without an offset is the office's, as the pages and ledgers read it: taken as UTC, a
    # clerk's system sending 09:00 had the petition received eight hours late, and one received
    # just after midnight counted its deadlines from the day before.
    try:
        return (value.replace(tzinfo=CHINA_TIME) if value.tzinfo is None else value).astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before the first moment there is in UTC
        raise ValueError(OUT_OF_RANGE) from None


BLANK = "blank (only spaces or invisible characters)"
OUT_OF_RANGE = "outside the range of moments that can be stored"
AHEAD = "is in the future; a petition is received before it is registered (check the year)"


def _not_blank(value: str) -> str:
    # Spaces alone pass min_length: a decision "by" nobody, or a review resolved with an empty
    # note, was recorded and then stood in the audit trail as if someone had written it. A
    # zero-width space, which a name field pasted from Word or a web page brings, is no name either.
    if not has_text(value):
        raise ValueError(f"{BLANK}; write it out")
    return value


# Text a person must write: not empty, and not spaces alone.
Written = Annotated[str, AfterValidator(_not_blank)]


# How far ahead of the server's clock a received_at may be: a client's clock running fast,
# a date typed in another time zone.
RECEIVED_AHEAD = timedelta(days=1)


def _not_ahead(value: datetime) -> datetime:
    # A year typed wrong (2062 for 2026) put the statutory deadlines decades away: the
    # petition never showed as overdue. A petition is received before it is registered.
    if value > datetime.now(UTC) + RECEIVED_AHEAD:
        raise ValueError(f"{value.isoformat()} {AHEAD}")
    return value


# A moment: any ISO 8601 offset ("Z", "+08:00"); without one, Beijing time (a date alone is that
# day's midnight there). Held in UTC from here on.
UTCMoment = Annotated[datetime, AfterValidator(_in_utc)]
# The same as a query parameter, where an unencoded "+" of the offset arrives as a space.
Moment = Annotated[datetime, BeforeValidator(_plus_restored), AfterValidator(_in_utc)]
# How every moment the API takes is read, for its descriptions.
MOMENT_READ = ("ISO 8601 with any offset (`Z` for UTC, `+08:00`); without one, Beijing time, the office's clock, "
               "and a date alone is that day's midnight there.")


class PetitionIn(BaseModel):
    # One rule with `triage predict` and the ledger upload (training/ledger.py): a petition needs text in
    # its title or its body. A title-only one is a real case (a phone note, a board post with no text),
    # so neither field is required alone; both empty is refused, naming both (service/routers/triage.py).
    title: str = Field("", max_length=500, pattern=NO_NUL,
                       description="The petition's title (标题); may be empty when the body has text.")
    body: str = Field("", pattern=NO_NUL,
                      description="The petition's text (正文); may be empty when the title has text.")
    external_id: str | None = Field(None, max_length=200, pattern=NO_NUL,
                                    description="The petition's number in the office's own register (信访件编号). Sent again "
                                                "with the same title and body (a retry), the petition is answered with the "
                                                "triage stored for it (`replayed`), not stored twice; a number that masking "
                                                "changes (one that looks like a phone, ID or card number) cannot tell a "
                                                "retry, and each sending is stored.")
    received_at: Annotated[UTCMoment, AfterValidator(_not_ahead)] | None = Field(
        None, description="When the office received it; the statutory time limits run from it. "
                          "At most a day ahead of the server's clock. " + MOMENT_READ)
    channel: Channel | None = Field(None, description="How it arrived: 来信 (letter), 来访 (visit), 网上 (online), 电话 (phone).")


class ErrorOut(BaseModel):
    """Every error but a 422: one sentence saying what was wrong and what to send instead."""

    detail: str = Field(description="What was wrong, naming the field, header or record concerned.")


class Span(BaseModel):
    start: int = Field(description=OFFSETS)
    end: int = Field(description="End offset (exclusive), in the same text as start.")
    text: str = Field(description="The characters between start and end.")


class Term(BaseModel):
    term: str = Field(description="A word or phrase the model weighed.")
    kind: str = Field(description="Which feature it is: e.g. a taxonomy keyword or a word of the text.")
    weight: float = Field(description="Its contribution to the suggested label (positive: towards it).")
    spans: list[Span] = Field(description="Where it occurs in the text.")


class RuleHit(BaseModel):
    rule: str = Field(description="The rule's id in data/taxonomy.toml.")
    label: str = Field(description="The code the rule proposes (a risk level or key group).")
    explain: str = Field(description="The rule's explanation, in Chinese.")
    spans: list[Span] = Field(description="The text that fired it.")


class HeadExplanation(BaseModel):
    label: str = Field(description="The code this head suggested.")
    terms: list[Term] = Field(description="The words that drove it, strongest first.")
    rules: list[RuleHit] = Field(description="The rules that fired for this head.")


class DivisionOption(BaseModel):
    code: str = Field(description="The division's code (data/taxonomy.toml).")
    name: str = Field(description="The division's Chinese name.")
    probability: float = Field(description="Calibrated probability that this division handles the petition.")


class TimeLimits(BaseModel):
    """The statutory time limits of the 信访工作条例, in calendar days (settings TRIAGE_ACCEPT_DAYS,
    TRIAGE_CONCLUDE_DAYS, TRIAGE_EXTENSION_DAYS)."""

    starts_at: datetime = Field(description="When the limits run from: received_at, or when the petition was triaged if it was not given.")
    from_received_at: bool = Field(description="False when received_at was not given and the triage time stands in for it.")
    accept_by: datetime = Field(description="Deadline to decide whether to accept the petition (受理告知).")
    conclude_by: datetime = Field(description="Deadline to conclude it (办结).")
    conclude_by_extended: datetime = Field(description="Deadline to conclude it if the extension is granted (延期办结).")
    days_left_to_accept: int = Field(description="Whole days from today (the office's calendar, Beijing time) to accept_by; negative when overdue.")
    days_left_to_conclude: int = Field(description="Whole days from today (the office's calendar) to conclude_by; negative when overdue.")


class SimilarCase(BaseModel):
    triage_id: str
    external_id: str | None
    received_at: datetime
    similarity: float
    decided_division: str | None
    review_status: str | None


class Suggestion(BaseModel):
    triage_id: str = Field(description="This suggestion's id: send it with the decision.")
    model_version: str = Field(description="The model that made it.")
    division: DivisionOption = Field(description="The suggested handling division.")
    division_top3: list[DivisionOption] = Field(description="The three most probable divisions, most probable first.")
    risk: str = Field(description="Risk level code: low, medium or high.")
    risk_name: str = Field("", description="The risk level's Chinese name: 一般, 加急 or 当日人工研判.")
    risk_confidence: float = Field(description="Calibrated probability of that risk level (or the precision of the rule that set it).")
    key_group: str = Field(description="Key group code ('none' when the case concerns no key group).")
    key_group_name: str = Field(description="The key group's Chinese name.")
    key_group_confidence: float = Field(description="Calibrated probability of that key group.")
    needs_review: bool = Field(description="True when the petition office's review queue got it "
                                           "(high risk, low division confidence, or too short to route).")
    explanation: dict[str, HeadExplanation] = Field(
        description="Per head (division, risk, key_group): the words and rules that drove it. " + OFFSETS)
    time_limits: TimeLimits | None = Field(None, description="The statutory time limits, from received_at "
                                                            "(null when it is so far off that a deadline is out of the calendar's range).")
    stored: bool = Field(description="False when the suggestion could not be written to the database.")
    similar_cases: list[SimilarCase] = Field(default_factory=list,
                                             description="Stored petitions about the same matter within the window, most similar first.")
    repeat_of: str | None = Field(None, description="The triage_id of the closest earlier petition about the same matter.")
    replayed: bool = Field(False, description="True when the petition was sent again (the same external_id, one that masking "
                                              "leaves as it is, and the same title and body as a triage already stored, "
                                              "compared as stored, with identity numbers masked, as a client retrying after a "
                                              "timeout sends it): this is that triage as stored, and nothing new was stored or "
                                              "queued for review.")


class BatchIn(BaseModel):
    petitions: list[dict] = Field(..., min_length=1, description="Petitions, each as the body of POST /v1/triage.")


class BatchItem(BaseModel):
    index: int = Field(description="The petition's position in the request.")
    result: Suggestion | None = Field(None, description="Its suggestion, unless it was refused.")
    error: str | None = Field(None, description="Why it was refused, naming the field.")


class DecisionIn(BaseModel):
    triage_id: str = Field(..., max_length=200, pattern=NO_NUL, description="The suggestion decided on.")
    division: str = Field(..., max_length=200, pattern=NO_NUL, description="The handling division: its code or its Chinese name.")
    risk: str | None = Field(None, max_length=200, pattern=NO_NUL,
                             description="Risk level code or Chinese name; the suggested one when omitted.")
    key_group: str | None = Field(None, max_length=200, pattern=NO_NUL,
                                  description="Key group code or Chinese name; the suggested one when omitted.")
    decided_by: Written = Field(..., min_length=1, max_length=200, pattern=NO_NUL, description="The staff member who decided.")
    reason: str | None = Field(None, max_length=2000, pattern=NO_NUL, description="Why the suggestion was overridden, if it was.")


class DecisionOut(BaseModel):
    triage_id: str = Field(description="The suggestion decided on.")
    revision: int = Field(description="1 for the first decision on a triage; a change is a new revision.")
    division: str = Field(description="Division code.")
    risk: str = Field(description="Risk level code.")
    key_group: str = Field(description="Key group code.")
    accepted: bool = Field(description="True when all three labels equal the suggestion.")
    decided_by: str = Field(description="The staff member who decided.")
    created_at: datetime = Field(description="When it was recorded (UTC).")
    division_name: str = Field("", description="The division's Chinese name.")
    risk_name: str = Field("", description="The risk level's Chinese name.")
    key_group_name: str = Field("", description="The key group's Chinese name.")
    reason: str | None = Field(None, description="Why the suggestion was overridden, if given.")


class ReviewState(BaseModel):
    reason: ReviewReason = Field(description=QUEUED_BECAUSE)
    status: str = Field(description="open or resolved.")
    created_at: datetime = Field(description="When it was queued.")
    due_at: datetime = Field(description="The review target: created_at + TRIAGE_REVIEW_TARGET_HOURS.")
    resolved_by: str | None = Field(None, description="Who resolved it.")
    resolved_at: datetime | None = Field(None, description="When it was resolved.")
    note: str | None = Field(None, description="The reviewer's note.")


class CaseOut(BaseModel):
    """A stored triage: the masked petition, the suggestion with its evidence, the time limits,
    its place in the review queue and every decision taken on it."""

    triage_id: str = Field(description="The triage's id.")
    external_id: str | None = Field(None, description="The petition's number in the office's register.")
    channel: str | None = Field(None, description="How it arrived.")
    received_at: datetime | None = Field(None, description="When the office received it.")
    created_at: datetime = Field(description="When it was triaged.")
    title: str = Field(description="The title, personal identifiers masked.")
    body: str = Field(description="The body, personal identifiers masked.")
    model_version: str = Field(description="The model that made the suggestion.")
    division: DivisionOption = Field(description="The suggested division.")
    division_top3: list[DivisionOption] = Field(description="The three most probable divisions.")
    risk: str = Field(description="Suggested risk level code.")
    risk_name: str = Field(description="Its Chinese name.")
    key_group: str = Field(description="Suggested key group code.")
    key_group_name: str = Field(description="Its Chinese name.")
    needs_review: bool = Field(description="Whether it went to the review queue.")
    rules: list[str] = Field(description="Ids of the rules that fired.")
    explanation: dict[str, HeadExplanation] = Field(
        description="As in the suggestion, but with offsets into the masked text: title + '\\n' + body of this object "
                    "(empty for triages stored before explanations were kept).")
    time_limits: TimeLimits | None = Field(description="The statutory time limits (null when received_at is out of the calendar's range).")
    review: ReviewState | None = Field(None, description="Its review-queue item, if it has one.")
    decisions: list[DecisionOut] = Field(description="Every decision on it, oldest first; the last one counts.")


class ReviewItemOut(BaseModel):
    triage_id: str = Field(description="The triage queued.")
    reason: ReviewReason = Field(description=QUEUED_BECAUSE)
    status: str = Field(description="open or resolved.")
    created_at: datetime = Field(description="When it was queued.")
    division: str = Field(description="Suggested division code.")
    risk: str = Field(description="Suggested risk level code.")
    title: str = Field(description="The masked title.")
    resolved_by: str | None = Field(None, description="Who resolved it.")
    note: str | None = Field(None, description="The reviewer's note.")
    division_name: str = Field("", description="The suggested division's Chinese name.")
    risk_name: str = Field("", description="The risk level's Chinese name.")
    case: CaseOut | None = Field(None, description="The whole case: masked text, explanation, time limits, decisions.")


class ResolveIn(BaseModel):
    note: Written = Field(..., min_length=1, max_length=2000, pattern=NO_NUL, description="What the reviewer found or did.")


class ReloadIn(BaseModel):
    # At most what the audit log's target column holds.
    model_dir: str = Field(..., min_length=1, max_length=200, pattern=NO_NUL, description="Directory of the model artifact to serve.")


class EmergingMember(BaseModel):
    triage_id: str
    external_id: str | None
    received_at: datetime
    division: str
    risk: str
    review_status: str | None


class EmergingGroup(BaseModel):
    size: int = Field(description="Members: petitions of the matter in a span of `days` that holds at least `min_size` of them, "
                                  "one at least received in the look-back; copies of one case count once.")
    growth: int = Field(description="Members received in the last quarter of the look-back.")
    first_seen: datetime = Field(description="When the first member was received: up to `days` before the look-back began.")
    last_seen: datetime = Field(description="When the latest member was received, within the look-back.")
    divisions: dict[str, int]
    highest_risk: str
    shared_words: list[str] = Field(description="Organisation, project and place names most members mention (never persons).")
    members: list[EmergingMember]
