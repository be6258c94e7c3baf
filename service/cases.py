"""A stored triage as the API and the pages show it: masked text with the evidence
re-anchored on it, Chinese names, the statutory time limits and the decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.office_time import office_date
from model.taxonomy import Taxonomy, load_taxonomy
from model.text import join_fields
from service.database import DecisionRecord, ReviewItem, TriageRecord
from service.pii import mask_pii_placed
from service.schemas import CaseOut, DecisionOut, DivisionOption, ReviewState, TimeLimits
from service.settings import Settings


def get_taxonomy(request: Request) -> Taxonomy:
    # The served model's label set; pages and lists that need only names stay readable
    # (with the configured names) while no model is loaded.
    loaded = request.app.state.models.current
    return loaded.model.taxonomy if loaded is not None else load_taxonomy()


TaxonomyDep = Annotated[Taxonomy, Depends(get_taxonomy)]


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything the service writes is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def time_limits(received_at: datetime | None, triaged_at: datetime, settings: Settings,
                now: datetime | None = None) -> TimeLimits | None:
    """Deadlines in calendar days from receipt, as the 信访工作条例 counts them, the days
    left counted on the office's calendar (Beijing time); None when received_at is so
    near year 1 or 9999 that a deadline falls outside the calendar."""
    today = office_date(now or datetime.now(UTC))
    try:
        starts = as_utc(received_at or triaged_at)
        accept_by = starts + timedelta(days=settings.accept_days)
        conclude_by = starts + timedelta(days=settings.conclude_days)
        extended = conclude_by + timedelta(days=settings.extension_days)
    except OverflowError:
        return None
    return TimeLimits(starts_at=starts, from_received_at=received_at is not None, accept_by=accept_by,
                      conclude_by=conclude_by, conclude_by_extended=extended,
                      days_left_to_accept=(office_date(accept_by) - today).days,
                      days_left_to_conclude=(office_date(conclude_by) - today).days)


def rebase_explanation(explanation: dict[str, Any], text: str) -> dict[str, Any]:
    """The explanation with its spans moved onto `text` (the masked text that is stored):
    masking changes the length of what it replaces, so later offsets shift. Each span goes
    to the occurrence of its words nearest its old place; a span inside masked digits is dropped."""

    def moved(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for span in spans:
            word, start = span["text"], span["start"]
            if text[start:start + len(word)] == word:
                out.append(span)
                continue
            found, at = None, text.find(word) if word else -1
            while at >= 0:
                if found is None or abs(at - start) < abs(found - start):
                    found = at
                at = text.find(word, at + 1)
            if found is not None:
                out.append({"start": found, "end": found + len(word), "text": word})
        return out

    return with_spans(explanation, moved)


def with_spans(explanation: dict[str, Any], moved: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> dict[str, Any]:
    """The explanation with the spans of each term and rule replaced by `moved(spans)`."""
    return {
        head: {**part,
               "terms": [{**term, "spans": moved(term["spans"])} for term in part.get("terms", [])],
               "rules": [{**rule, "spans": moved(rule["spans"])} for rule in part.get("rules", [])]}
        for head, part in explanation.items()
    }


def _placed(explanation: dict[str, Any], places: list[int | None], onto: str) -> dict[str, Any]:
    """The explanation with each span moved to `places` of its characters in `onto`. A span
    that begins or ends with a character that has no place there (one in a masked number)
    is dropped; one with a masked number between its ends covers it whole, in `onto` as it
    is there (the mask on the stored text, the number as sent on the client's)."""

    def moved(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for span in spans:
            start, end = span["start"], span["end"]
            if not 0 <= start < end <= len(places):
                continue
            first, last = places[start], places[end - 1]
            # Its ends have places, and masking keeps the order of characters: what lay
            # between them, a masked number included, lies between them in `onto`.
            if first is not None and last is not None:
                out.append({"start": first, "end": last + 1, "text": onto[first : last + 1]})
        return out

    return with_spans(explanation, moved)


def placed_explanations(explanation: dict[str, Any], sent: str, masked: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The explanation found on the text as `sent`, as it is answered and as it is stored.

    Each span moves where masking put its characters (rebase_explanation, which looks for
    the words again, when the masked text is not the sent one masked). A span that begins
    or ends in a masked number has no place in the stored text; it is left out of the
    answer too, as it is out of what a petition sent again is answered with
    (sent_explanation) and of the case page: evidence inside a phone or ID number tells
    nothing of the petition, and the first answer had shown it where no later one could.

    Parameters
    ----------
    explanation : dict
        The model's explanation, its spans on `sent`.
    sent : str
        The text as the client sent it (title + "\n" + body).
    masked : str
        The same text as stored, masked.

    Returns
    -------
    answered : dict
        The explanation on `sent`, for the answer.
    stored : dict
        The explanation on `masked`, for the stored triage.
    """
    if sent == masked:
        return explanation, explanation  # nothing masked, as for most petitions: no span moves
    placed, places = mask_pii_placed(sent)
    if placed != masked:
        return explanation, rebase_explanation(explanation, masked)
    kept = [None if place is None else at for at, place in enumerate(places)]
    return _placed(explanation, kept, sent), _placed(explanation, places, masked)


def sent_explanation(explanation: dict[str, Any], masked: str, sent: str) -> dict[str, Any]:
    """The stored explanation, on the `masked` text, with its spans back on the text as `sent`
    (a petition sent again is answered with offsets into what its client sent)."""
    if sent == masked:
        return explanation
    placed, places = mask_pii_placed(sent)
    if placed != masked:
        return rebase_explanation(explanation, sent)
    back: list[int | None] = [None] * len(masked)
    for at, place in enumerate(places):
        if place is not None:
            back[place] = at
    return _placed(explanation, back, sent)


def decision_out(row: DecisionRecord, taxonomy: Taxonomy) -> DecisionOut:
    return DecisionOut(triage_id=row.triage_id, revision=row.revision, division=row.division, risk=row.risk,
                       key_group=row.key_group, accepted=row.accepted, decided_by=row.decided_by, created_at=row.created_at,
                       division_name=taxonomy.display_name("division", row.division), risk_name=taxonomy.display_name("risk", row.risk),
                       key_group_name=taxonomy.display_name("key_group", row.key_group), reason=row.reason)



def decisions_of(session: Session, triage_id: str, taxonomy: Taxonomy) -> list[DecisionOut]:
    rows = session.scalars(select(DecisionRecord).where(DecisionRecord.triage_id == triage_id).order_by(DecisionRecord.revision))
    return [decision_out(row, taxonomy) for row in rows]


def review_state(item: ReviewItem, settings: Settings) -> ReviewState:
    return ReviewState(reason=item.reason, status=item.status, created_at=item.created_at,
                       due_at=as_utc(item.created_at) + timedelta(hours=settings.review_target_hours),
                       resolved_by=item.resolved_by, resolved_at=item.resolved_at, note=item.note)


def case_out(session: Session, record: TriageRecord, taxonomy: Taxonomy, settings: Settings) -> CaseOut:
    stored = record.suggestion or {}

    def option(code: str, p: float) -> DivisionOption:
        return DivisionOption(code=code, name=taxonomy.display_name("division", code), probability=round(p, 4))

    item = session.get(ReviewItem, record.id)
    return CaseOut(
        triage_id=record.id, external_id=record.external_id, channel=record.channel, received_at=record.received_at,
        created_at=record.created_at, title=record.title_masked, body=record.body_masked, model_version=record.model_version,
        division=option(record.division, record.division_confidence),
        division_top3=[option(code, p) for code, p in stored.get("top3", [])],
        risk=record.risk, risk_name=taxonomy.display_name("risk", record.risk),
        key_group=record.key_group, key_group_name=taxonomy.display_name("key_group", record.key_group),
        # Queued later too: as an emerging group's earlier member, or judged high risk at intake.
        needs_review=record.needs_review or item is not None, rules=stored.get("rules", []), explanation=stored.get("explanation", {}),
        time_limits=time_limits(record.received_at, record.created_at, settings),
        review=review_state(item, settings) if item is not None else None,
        decisions=decisions_of(session, record.id, taxonomy),
    )


def masked_text(record: TriageRecord) -> str:
    """The text the stored explanation's offsets index."""
    return join_fields(record.title_masked, record.body_masked)
