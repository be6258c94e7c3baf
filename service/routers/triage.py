"""POST /v1/triage and /v1/triage/batch: suggestions for the intake desk."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import ValidationError
from sqlalchemy import bindparam, exists, insert, literal, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.artifact import LoadedModel
from model.text import has_text, join_fields
from service.cases import case_out, decisions_of, masked_text, placed_explanations, sent_explanation, time_limits
from service.database import ApiKey, ReviewItem, TriageRecord, utcnow
from service.deps import GroupCommitDep, ModelDep, SessionDep, SettingsDep, require_role
from service.group_commit import GroupCommit, Once
from service.maintenance import PURGED_ROW
from service.metrics import PREDICTIONS, REPLAYED
from service.pii import mask_pii
from service.routers import BODY_ERRORS, KEYED_ERRORS, InvalidField, KeyedRoute, errors
from service.schemas import NO_NUL, BatchIn, BatchItem, CaseOut, DecisionOut, PetitionIn, RuleHit, SimilarCase, Suggestion
from service.settings import Settings
from service.similar import PURGED, MattersDep, SharedMatterIndex, case_infos, case_number, link, text_of

log = logging.getLogger(__name__)
# Triages a worker computes at once (the model and the same-matter lookup). Threads
# computing side by side only take turns on the GIL, and each turn handed over cost the
# worker more CPU, in the kernel and in its caches, than it saved (benchmarks/load.py).
TRIAGE_AT_ONCE = 1
# Triage requests a worker runs in threads at once: one computing, the others waiting for
# their rows' commit, which is a disk flush on SQLite and a round trip on PostgreSQL, while
# the next one computes; their rows are committed together (service/group_commit.py).
# Further requests wait on the event loop, without a thread or a database connection.
TRIAGE_IN_THREADS = 4
router = APIRouter(prefix="/v1/triage", tags=["triage"], route_class=KeyedRoute,
                   responses=errors(*KEYED_ERRORS))
Intake = Annotated[ApiKey, Depends(require_role("intake"))]
Reader = Annotated[ApiKey, Depends(require_role("intake", "reviewer"))]
TriageId = Annotated[str, Path(max_length=200, pattern=NO_NUL)]
# Built once, as the same-matter statements are: it runs on every triage with a usable case
# number. external_id is indexed; the rows with one number are a handful at most.
_STORED_COPIES = (select(TriageRecord.id, TriageRecord.suggestion)
                  .where(TriageRecord.external_id == bindparam("number"), TriageRecord.title_masked == bindparam("title"),
                         TriageRecord.body_masked == bindparam("body"))
                  .order_by(TriageRecord.created_at))


class Refused(ValueError):
    """A petition the model is not asked about, with where in the request the problem is."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _check_size(petition: PetitionIn, settings: Settings) -> None:
    if len(petition.body) > settings.max_body_chars:
        # The body field, as a title over its limit names the title field: located at the
        # request's body as a whole, a client's form could not put the message beside 正文.
        raise Refused(("body", "body"), f"body: {len(petition.body)} characters, over the limit of {settings.max_body_chars}")
    if not has_text(petition.title, petition.body):
        # Neither field alone is wrong: the request's body is.
        raise Refused(("body",), "body: empty, and so is title (spaces and invisible characters do not count); "
                                 "a petition needs text in its title or its body")


def _same_matter(suggestion: Suggestion, loaded: LoadedModel, linked_text: str, received: datetime, external_id: str | None,
                 session: Session, matters: SharedMatterIndex, settings: Settings) -> list[str]:
    """Adds similar cases and repeat_of (with the taxonomy's "repeated" cue naming the
    predecessor); returns the stored members of the emerging group the petition makes or
    joins (empty when it makes none)."""
    linked = link(session, matters, linked_text, received, settings.emerging_min_size, settings.emerging_days,
                  external_id)
    suggestion.similar_cases = linked.similar
    if linked.similar:
        first = linked.similar[0]
        suggestion.repeat_of = first.triage_id
        _cue_repeat(suggestion, loaded, first)
    return linked.group


def _cue_repeat(suggestion: Suggestion, loaded: LoadedModel, first: SimilarCase) -> None:
    """Adds the taxonomy's "repeated" cue naming the earlier petition to the risk explanation."""
    # A taxonomy without the cue still gets the hit, in the bundled taxonomy's words.
    cue = next((r for r in loaded.model.taxonomy.rules if r.id == "risk.repeated"), None)
    if "risk" in suggestion.explanation:
        suggestion.explanation["risk"].rules.append(RuleHit(
            rule="risk.repeated", label=cue.label if cue else "medium", spans=[],
            explain=f"{cue.explain if cue else '多次反映或久拖未决'}：同一事项已于 {first.received_at:%Y-%m-%d} 登记"
                    f"（triage_id {first.triage_id}，相似度 {first.similarity:.2f}）"))


def _stored_copy(petition: PetitionIn, masked: tuple[str, str], loaded: LoadedModel, session: Session,
                 settings: Settings) -> Suggestion | None:
    """The stored triage `petition` is sent again as, answered as it was suggested; None when
    it is none.

    A client that sent a petition and timed out before the answer sends it again: the same
    case number, the same title and body. Stored again, it was a second triage in the review
    queue, the case lists and the statistics. A case number that masking changed tells
    petitions apart no more (service/similar.py, case_number), and a petition with other
    text under its number is an amended one: both are triaged as new. So is a copy of a
    triage stored before its confidences were kept, which could not be answered as it was."""
    number = case_number(petition.external_id)
    if number is None:
        return None
    try:
        found = _stored_copy_id(session, number, *masked)
        if found is None:
            return None  # triaged as new, on the same session and connection
        record = session.get(TriageRecord, found)
        stored = record.suggestion
        infos = case_infos(session, [tid for tid, _ in stored.get("similar", [])])
        queued = session.get(ReviewItem, record.id) is not None
        # The connection goes back to the pool before the answer is written (service/deps.py).
        session.commit()
    except SQLAlchemyError as exc:
        # Looked up again by the next retry; meanwhile the petition is triaged as new, as before.
        session.rollback()
        log.error("stored copy lookup failed: %s", type(exc).__name__)
        return None
    taxonomy = loaded.model.taxonomy

    def option(code: str, p: float) -> dict[str, Any]:
        return {"code": code, "name": taxonomy.display_name("division", code), "probability": round(p, 4)}

    # As linked when it was stored, with what has become of those petitions since; a purged
    # one is left out, as the lookup leaves it out.
    similar = [SimilarCase(triage_id=tid, external_id=info.external_id, received_at=info.received_at,
                           similarity=similarity, decided_division=info.decided_division, review_status=info.review_status)
               for tid, similarity in stored.get("similar", []) if (info := infos.get(tid)) is not None and not info.purged]
    suggestion = Suggestion(
        triage_id=record.id, model_version=record.model_version,
        division=option(record.division, record.division_confidence),
        division_top3=[option(code, p) for code, p in stored.get("top3", [])],
        risk=record.risk, risk_name=taxonomy.display_name("risk", record.risk), risk_confidence=stored["risk_confidence"],
        key_group=record.key_group, key_group_name=taxonomy.display_name("key_group", record.key_group),
        key_group_confidence=stored["key_group_confidence"],
        # Queued later too, as an emerging group's earlier member: it is in the queue now.
        needs_review=record.needs_review or queued,
        # Stored on the masked text; the answer's offsets index the text as the client sent it.
        explanation=sent_explanation(stored.get("explanation", {}), masked_text(record), join_fields(petition.title, petition.body)),
        time_limits=time_limits(record.received_at, record.created_at, settings),
        stored=True, replayed=True, similar_cases=similar, repeat_of=stored.get("repeat_of"))
    # The cue is added to the answer, not stored: added again, as the first answer had it.
    first = next((case for case in similar if case.triage_id == suggestion.repeat_of), None)
    if first is not None:
        _cue_repeat(suggestion, loaded, first)
    log.info("triage %s answered again: petition sent again with its case number", record.id)
    REPLAYED.inc()
    return suggestion


def _stored_copy_id(session: Session, number: str, title_masked: str, body_masked: str) -> str | None:
    """The first triage stored with this case number and this masked text that can be answered
    as it was made (one stored before its confidences were kept cannot). Read as plain rows on
    the request's connection, not through the ORM: every petition with a case number asks.

    Never a purged triage: `triage purge` leaves it the same placeholder text as every other,
    which a petition sent with that text under its number matched. Its text is gone, so
    nothing can be compared with it, and whatever comes under its number is triaged anew."""
    if text_of(title_masked, body_masked) == PURGED:
        return None
    copies = session.connection().execute(_STORED_COPIES, {"number": number, "title": title_masked, "body": body_masked})
    return next((tid for tid, suggestion in copies if "risk_confidence" in (suggestion or {})), None)


def _once(petition: PetitionIn, record: TriageRecord) -> Once | None:
    """What makes the petition's rows stored once in a race with a copy of it (service/group_commit.py):
    two requests with the same petition, arriving together, both look before either has stored."""
    number = case_number(petition.external_id)
    if number is None:
        return None
    title, body = record.title_masked, record.body_masked
    # Each part quoted: joined by newlines, a title and body that split one text otherwise
    # (a title with a newline in it) made the key of another petition, which was then
    # taken for a copy in the same commit, not stored, and answered `stored: false`.
    return Once(key=json.dumps([number, title, body], ensure_ascii=False),
                stored=lambda session: _stored_copy_id(session, number, title, body) is not None)


def _suggest(petition: PetitionIn, loaded: LoadedModel, session: Session, writes: GroupCommit,
             matters: SharedMatterIndex, settings: Settings, turn: threading.Semaphore | None = None) -> Suggestion:
    """The suggestion, stored, or the stored one when the petition is sent again; `turn` is
    held while it is computed, not while its rows are committed."""
    # Masked once: the look-up of a stored copy and the stored row both compare the masked text.
    masked = mask_pii(petition.title), mask_pii(petition.body)
    if (replayed := _stored_copy(petition, masked, loaded, session, settings)) is not None:
        return replayed
    with turn or contextlib.nullcontext():
        suggestion, record, queued, received, group = _computed(petition, masked, loaded, session, matters, settings)
    try:
        # Committed with the rows of other requests arriving meanwhile; returns once committed.
        new = writes.store(session, [record], queued, _once(petition, record))
    except SQLAlchemyError as exc:
        # A suggestion is still useful when storage is down; the caller is told it was not kept.
        log.error("triage %s not stored: %s", suggestion.triage_id, type(exc).__name__)
        return _made(suggestion)
    finally:
        # Reads and writes are over: the connection goes back to the pool before the answer
        # waits for a thread to be checked in (see service/deps.py on why that matters).
        session.commit()
    if not new:
        # A copy sent at the same time was stored first: answered as that one, as a retry is.
        # Should that lookup fail, this suggestion is answered `stored: false`: it was not kept, the copy was.
        return _stored_copy(petition, masked, loaded, session, settings) or _made(suggestion)
    _made(suggestion)
    suggestion.stored = True
    matters.add(suggestion.triage_id, text_of(record.title_masked, record.body_masked), received, stored=record.created_at)
    if group:
        _queue_group(session, writes, group)
    return suggestion


def _made(suggestion: Suggestion) -> Suggestion:
    """`suggestion`, counted as a prediction: once it is the answer. Counted when it was made,
    the suggestion for a copy that lost the race to be stored counted twice what the client
    was answered once, from storage."""
    PREDICTIONS.labels(division=suggestion.division.code, risk=suggestion.risk).inc()
    return suggestion


def _queue_group(session: Session, writes: GroupCommit, group: list[str]) -> None:
    """Queues the earlier members of an emerging group that are not queued yet: the petition
    that makes a group of three is queued as it arrives, and the reviewer must see the first
    two with it. Best effort after the petition's own rows are committed: another request
    may queue the same member meanwhile, and a failure here must not unsay `stored`."""
    # One statement reads which members are neither queued nor purged and queues them: read
    # first and queued after, a `triage purge` in between emptied a member's text and it stood
    # in the queue with nothing to review. On SQLite the statement holds the write lock
    # throughout; on PostgreSQL FOR SHARE waits for a purge that has locked the row, then
    # reads it as purged, and a purge reaching it later waits for this commit and sees the item.
    members = (select(TriageRecord.id, literal("emerging_group", ReviewItem.reason.type),
                      literal("open", ReviewItem.status.type), literal(utcnow(), ReviewItem.created_at.type))
               .where(TriageRecord.id.in_(group), ~PURGED_ROW, ~exists().where(ReviewItem.triage_id == TriageRecord.id))
               .with_for_update(read=True, of=TriageRecord))
    try:
        # Without the writers' queue (service/database.py, SQLiteWriteLock) this insert met the
        # group commits of busy workers as SQLite's busy retries.
        writes.join_writers(session)
        session.execute(insert(ReviewItem).from_select(["triage_id", "reason", "status", "created_at"], members))
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("earlier members of an emerging group not queued: %s", type(exc).__name__)


def _computed(petition: PetitionIn, masked: tuple[str, str], loaded: LoadedModel, session: Session, matters: SharedMatterIndex,
              settings: Settings) -> tuple[Suggestion, TriageRecord, list[ReviewItem], datetime, list[str]]:
    """The suggestion with its same-matter links, the rows that store it, and the stored
    members of the emerging group it makes or joins."""
    model, taxonomy = loaded.model, loaded.model.taxonomy
    sent = join_fields(petition.title, petition.body)
    raw = model.suggest(sent)
    triage_id = str(uuid.uuid4())
    # The moment stored as the triage's created_at too: the time limits of a petition sent
    # without received_at run from it, on the case page and in a retry's answer, which
    # named a moment a few milliseconds later than the first answer when left to the insert.
    triaged = utcnow()

    def option(code: str, p: float) -> dict[str, Any]:
        return {"code": code, "name": taxonomy.name_of("division", code), "probability": round(p, 4)}

    title_masked, body_masked = masked
    # Answered as it is stored, on the masked text (GET /v1/triage/{id}, the review queue),
    # so that a petition sent again is answered with the evidence of its first answer.
    answered, stored = placed_explanations(raw["explanation"], sent, join_fields(title_masked, body_masked))
    suggestion = Suggestion(
        triage_id=triage_id, model_version=loaded.version,
        division=option(raw["division"], raw["division_confidence"]),
        division_top3=[option(c, p) for c, p in raw["division_top3"]],
        risk=raw["risk"], risk_name=taxonomy.name_of("risk", raw["risk"]), risk_confidence=round(raw["risk_confidence"], 4),
        key_group=raw["key_group"], key_group_name=taxonomy.name_of("key_group", raw["key_group"]),
        key_group_confidence=round(raw["key_group_confidence"], 4),
        needs_review=raw["needs_review"], explanation=answered, stored=False,
        time_limits=time_limits(petition.received_at, triaged, settings),
    )
    received = petition.received_at or triaged
    group = _same_matter(suggestion, loaded, text_of(title_masked, body_masked), received, petition.external_id, session,
                         matters, settings)
    suggestion.needs_review = suggestion.needs_review or bool(group)
    record = TriageRecord(
        id=triage_id, external_id=petition.external_id, channel=petition.channel, created_at=triaged,
        received_at=petition.received_at, title_masked=title_masked,
        body_masked=body_masked, model_version=loaded.version,
        division=suggestion.division.code, division_confidence=suggestion.division.probability,
        risk=suggestion.risk, key_group=suggestion.key_group, needs_review=suggestion.needs_review,
        suggestion={"top3": raw["division_top3"], "rules": raw["rules"], "repeat_of": suggestion.repeat_of,
                    # Kept so that a petition sent again is answered as it was (_stored_copy).
                    "risk_confidence": suggestion.risk_confidence, "key_group_confidence": suggestion.key_group_confidence,
                    # Kept so that the case page can show the clerk and the reviewer the earlier
                    # petitions about the same matter after the suggestion itself is gone.
                    "similar": [[case.triage_id, case.similarity] for case in suggestion.similar_cases]},
    )
    # Kept on the masked text, so that GET /v1/triage/{id} and the review queue can show the evidence.
    record.suggestion["explanation"] = stored
    queued = []
    if suggestion.needs_review:
        reason = "high_risk" if suggestion.risk == "high" else "emerging_group" if group else "low_confidence"
        queued.append(ReviewItem(triage_id=triage_id, reason=reason))
    return suggestion, record, queued, received, group


def suggest_one(petition: PetitionIn, loaded: LoadedModel, session: Session, writes: GroupCommit, settings: Settings,
                matters: SharedMatterIndex, turn: threading.Semaphore | None = None) -> Suggestion:
    """The suggestion for one petition, stored: what `POST /v1/triage` answers and the intake page shows."""
    try:
        _check_size(petition, settings)
    except Refused as exc:
        raise InvalidField(exc.loc, str(exc)) from None
    return _suggest(petition, loaded, session, writes, matters, settings, turn)


@dataclass(frozen=True)
class TriageTurns:
    """A worker's TRIAGE_IN_THREADS threads for triage requests and its TRIAGE_AT_ONCE turns to compute."""

    threads: CapacityLimiter
    compute: threading.Semaphore


async def get_triage_turns(request: Request) -> TriageTurns:  # a lookup: no thread needed (service/deps.py)
    """The worker's turns, made on its event loop the first time they are asked for."""
    turns = getattr(request.app.state, "triage_turns", None)
    if turns is None:
        turns = request.app.state.triage_turns = TriageTurns(CapacityLimiter(TRIAGE_IN_THREADS),
                                                             threading.Semaphore(TRIAGE_AT_ONCE))
    return turns


def _answer(petition: PetitionIn, loaded: LoadedModel, session: Session, writes: GroupCommit, settings: Settings,
            matters: SharedMatterIndex, turn: threading.Semaphore) -> bytes:
    # Written here, as the Suggestion it already is: handed back as a model, it would be
    # checked against Suggestion again and serialised in another thread of the pool.
    return suggest_one(petition, loaded, session, writes, settings, matters, turn).model_dump_json().encode()


@router.post("", response_model=Suggestion, responses=errors(*BODY_ERRORS))
async def triage_one(petition: PetitionIn, loaded: ModelDep, session: SessionDep, writes: GroupCommitDep,
                     settings: SettingsDep, matters: MattersDep, turns: Annotated[TriageTurns, Depends(get_triage_turns)],
                     _: Intake) -> Response:
    answer = await to_thread.run_sync(_answer, petition, loaded, session, writes, settings, matters, turns.compute,
                                      limiter=turns.threads)
    return Response(answer, media_type="application/json")


@router.post("/batch", response_model=list[BatchItem], responses=errors(*BODY_ERRORS))
def triage_batch(batch: BatchIn, loaded: ModelDep, session: SessionDep, writes: GroupCommitDep, settings: SettingsDep,
                 matters: MattersDep, _: Intake) -> list[BatchItem]:
    if len(batch.petitions) > settings.max_batch:
        raise InvalidField(("body", "petitions"),
                           f"petitions: {len(batch.petitions)} items, over the batch limit of {settings.max_batch}")
    results = []
    for index, item in enumerate(batch.petitions):
        try:
            petition = PetitionIn.model_validate(item)
            _check_size(petition, settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "item"
            results.append(BatchItem(index=index, error=f"{field}: {first['msg']}"))
            continue
        except ValueError as exc:
            results.append(BatchItem(index=index, error=str(exc)))
            continue
        results.append(BatchItem(index=index, result=_suggest(petition, loaded, session, writes, matters, settings)))
    return results


def _record(session: Session, triage_id: str) -> TriageRecord:
    record = session.get(TriageRecord, triage_id)
    if record is None:
        raise HTTPException(404, f"triage_id: no triage {triage_id!r}")
    return record


@router.get("/{triage_id}", response_model=CaseOut, responses=errors(404))
def get_case(triage_id: TriageId, loaded: ModelDep, session: SessionDep, settings: SettingsDep, _: Reader) -> CaseOut:
    """A stored triage with its masked text, evidence, time limits, review state and decisions."""
    return case_out(session, _record(session, triage_id), loaded.model.taxonomy, settings)


@router.get("/{triage_id}/decisions", response_model=list[DecisionOut], responses=errors(404))
def get_decisions(triage_id: TriageId, loaded: ModelDep, session: SessionDep, _: Reader) -> list[DecisionOut]:
    """Every decision on a triage, oldest first; the last one counts."""
    return decisions_of(session, _record(session, triage_id).id, loaded.model.taxonomy)
