"""POST /v1/decisions: the intake desk's final labels, kept as revisions."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from model.taxonomy import Taxonomy
from service.cases import decision_out
from service.database import ApiKey, AuditEntry, DecisionRecord, ReviewItem, TriageRecord, utcnow
from service.deps import GroupCommitDep, ModelDep, SessionDep, actor_of, require_role
from service.group_commit import GroupCommit
from service.maintenance import text_purged
from service.pii import mask_pii
from service.routers import BODY_ERRORS, KEYED_ERRORS, InvalidField, KeyedRoute, errors
from service.schemas import DecisionIn, DecisionOut

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/decisions", tags=["decisions"], route_class=KeyedRoute,
                   responses=errors(*KEYED_ERRORS))
Intake = Annotated[ApiKey, Depends(require_role("intake"))]
REVISION_ATTEMPTS = 20


@router.post("", response_model=DecisionOut, status_code=201, responses=errors(*BODY_ERRORS, 404, 409))
def record_decision(decision: DecisionIn, session: SessionDep, loaded: ModelDep, writes: GroupCommitDep,
                    key: Intake) -> DecisionOut:
    """Records a person's labels for a triage: codes or Chinese names, as in ledgers. Risk high
    (当日人工研判) queues the triage for review: refused with 409 when `triage purge` has deleted
    its text; other labels are recorded on such a triage."""
    return record(decision, session, loaded.model.taxonomy, key, writes)


def record(decision: DecisionIn, session: Session, taxonomy: Taxonomy, key: ApiKey, writes: GroupCommit) -> DecisionOut:
    """The one way a decision is recorded: the API's route and the intake page both call it."""
    try:
        triage = session.get(TriageRecord, decision.triage_id)
    except SQLAlchemyError:
        raise HTTPException(503, "the database is unavailable; the decision was NOT recorded, send it again") from None
    if triage is None:
        raise HTTPException(404, f"triage_id: no triage {decision.triage_id!r}")
    final = {
        "division": decision.division,
        "risk": decision.risk or triage.risk,
        "key_group": decision.key_group or triage.key_group,
    }
    for head, value in final.items():
        # As a ledger writes it (高, 紧急, 无 …): the same labels retrain reads from ledgers and exports.
        code = taxonomy.resolve_written(head, value)
        if code is None:
            raise InvalidField(("body", head), f"{head}: unknown code or name {value!r}; one of {taxonomy.codes(head)}")
        final[head] = code
    accepted = all(final[h] == getattr(triage, h) for h in final)
    triage_id = triage.id
    for _attempt in range(REVISION_ATTEMPTS):
        try:
            # On SQLite, the writers' queue before the latest revision is read: read first,
            # several clerks deciding at once each took the same number, all but one failed
            # the insert and read again, and on a busy machine one could lose every time.
            writes.join_writers(session)
            latest = session.scalars(select(DecisionRecord).where(DecisionRecord.triage_id == triage_id)
                                     .order_by(DecisionRecord.revision.desc()).limit(1)).first()
            if latest is not None and _same_decision(latest, final, decision):
                # A second click on 采纳, or a client sending its decision again after a timeout,
                # recorded a second revision identical to the first: answered with that one.
                session.commit()
                return decision_out(latest, taxonomy)
            revision = (latest.revision if latest is not None else 0) + 1
            row = DecisionRecord(triage_id=triage_id, revision=revision, accepted=accepted,
                                 decided_by=mask_pii(decision.decided_by),
                                 # As stored, so that this answer and a later one say the same.
                                 reason=None if decision.reason is None else mask_pii(decision.reason), **final)
            session.add(row)
            if final["risk"] == "high" and not _queue_as_high_risk(session, triage_id):
                session.rollback()
                raise HTTPException(409, purged_text_refusal(triage_id))
            session.add(AuditEntry(actor=actor_of(key), action="decision", target=triage_id,
                                   detail={**final, "revision": revision, "accepted": accepted,
                                           "decided_by": decision.decided_by}))
            session.commit()
            break
        except IntegrityError:
            # Another decision on this triage took that revision number first: count again.
            session.rollback()
        except SQLAlchemyError:
            session.rollback()
            raise HTTPException(503, "the database is unavailable; the decision was NOT recorded, send it again") from None
    else:
        raise HTTPException(503, "too many simultaneous decisions on this triage; the decision was NOT recorded, send it again")
    log.debug("decision on triage %s stored as revision %d (accepted: %s)", triage_id, revision, accepted)
    return decision_out(row, taxonomy)


def _same_decision(row: DecisionRecord, final: dict[str, str], decision: DecisionIn) -> bool:
    """Whether `decision` (its labels resolved to `final`) says what the stored revision `row`
    says, by the same person for the same reason (names and reasons are stored masked)."""
    return (all(getattr(row, head) == code for head, code in final.items())
            and row.decided_by == mask_pii(decision.decided_by)
            and row.reason == (None if decision.reason is None else mask_pii(decision.reason)))


def purged_text_refusal(triage_id: str) -> str:
    return (f"triage_id: the text of triage {triage_id!r} was deleted under retention (triage purge); it cannot be "
            "queued for review as high risk, where nobody could review it; the decision was NOT recorded")


def _queue_as_high_risk(session: Session, triage_id: str) -> bool:
    """A case a person judges 当日人工研判 reaches the petition office as one the model flagged
    would: queued, or moved up to high risk (and opened again) when queued for another reason.
    The model misses some threats of self-harm; the clerk who reads one is the last safeguard.
    False, and nothing queued, when retention has deleted the petition's text: queued, it
    stood in the review queue with no title and no text, and nobody could review it."""
    item = session.get(ReviewItem, triage_id)
    if item is not None and item.reason == "high_risk":
        return True
    session.flush()  # first: on SQLite the flush takes the write lock, so no purge runs meanwhile
    if text_purged(session, triage_id):
        return False
    if item is None:
        session.add(ReviewItem(triage_id=triage_id, reason="high_risk"))
    elif item.reason != "high_risk":
        item.reason, item.status, item.resolved_by, item.resolved_at, item.note = "high_risk", "open", None, None, None
        # Queued as high risk now: its same-day target runs from now. With the time it was first
        # queued for another reason, it showed overdue by days the moment the clerk judged it.
        item.created_at = utcnow()
    return True
