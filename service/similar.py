"""The same-matter index of one worker, kept equal to the database's.

Every worker holds a model.matter.MatterIndex of the petitions stored within the window.
It is built from the database on first use and, before each lookup, takes in the rows
stored since by any worker: so a petition stored by one worker is found by the others,
and a restart or a model reload loses nothing (the index depends on the stored, masked
text only, never on the model)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.matter import Match, MatterIndex, components
from service.database import Database, DecisionRecord, ReviewItem, TriageRecord
from service.schemas import SimilarCase

log = logging.getLogger("triage.service")
# A row's created_at is set before its transaction commits, so a row committed late can
# carry an earlier time than one already seen: each refresh looks this far back again.
COMMIT_LAG = timedelta(seconds=10)


def aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def text_of(title_masked: str, body_masked: str) -> str:
    return f"{title_masked}\n{body_masked}"


@dataclass
class CaseInfo:
    """What a lookup shows of a stored petition: the case, never the person."""

    triage_id: str
    external_id: str | None
    received_at: datetime
    division: str
    decided_division: str | None
    risk: str
    review_status: str | None
    text: str


class SharedMatterIndex:
    """A worker's MatterIndex, refreshed from the database.

    Parameters
    ----------
    window_days : float
        Petitions received this long before a query are looked up.
    threshold : float
        MatterIndex's link threshold.
    """

    def __init__(self, window_days: float, threshold: float) -> None:
        self.window = timedelta(days=window_days)
        self.index = MatterIndex(threshold)
        self._seen_until: datetime | None = None
        self._lock = threading.Lock()

    def refresh(self, session: Session) -> None:
        """Adds the rows stored since the last refresh (all rows within the window the first time)."""
        with self._lock:
            now = datetime.now(UTC)
            query = select(TriageRecord.id, TriageRecord.created_at)
            if self._seen_until is None:
                query = query.where(TriageRecord.created_at >= now - self.window - timedelta(days=1))
            else:
                query = query.where(TriageRecord.created_at >= self._seen_until - COMMIT_LAG)
            new = [tid for tid, _ in session.execute(query) if tid not in self.index]
            for start in range(0, len(new), 500):
                rows = session.execute(select(TriageRecord.id, TriageRecord.title_masked, TriageRecord.body_masked,
                                              TriageRecord.received_at, TriageRecord.created_at)
                                       .where(TriageRecord.id.in_(new[start:start + 500])))
                self.index.add_many((tid, text_of(title, body), aware(received or created).timestamp())
                                    for tid, title, body, received, created in rows)
            self._seen_until = now

    def warm_up(self, database: Database) -> None:
        """Builds the index in the background, so that the first lookup does not wait for a
        year of petitions; a lookup before it is done waits for it (or, with the database
        down, builds it later)."""

        def build() -> None:
            try:
                with database.sessions() as session:
                    self.refresh(session)
                log.info("same-matter index: %d petitions", len(self.index))
            except Exception as exc:  # the database may be down at start; the first lookup tries again
                log.error("same-matter index not built at start: %s", type(exc).__name__)

        threading.Thread(target=build, name="matter-index", daemon=True).start()

    def add(self, triage_id: str, text: str, received: datetime) -> None:
        self.index.add(triage_id, text, aware(received).timestamp())

    def lookup(self, session: Session, text: str, received: datetime, limit: int = 5) -> list[Match]:
        """Stored petitions about the same matter received within the window before `received`."""
        self.refresh(session)
        # Timestamps, not datetimes: a window reaching before year 1 is no error.
        until = aware(received).timestamp()
        return self.index.query(text, limit=limit, since=until - self.window.total_seconds(), until=until)

    def group_size(self, text: str, received: datetime, days: float, cap: int) -> int:
        """How many stored petitions are linked to `text`, directly or through others, within `days`
        before `received` (at most `cap` are counted)."""
        until = aware(received).timestamp()
        since = until - days * 86400
        frontier = [m.key for m in self.index.query(text, limit=cap, since=since, until=until)]
        seen = set(frontier)
        while frontier and len(seen) < cap:
            for match in self.index.query_key(frontier.pop(), limit=cap, since=since, until=until):
                seen.add(match.key)
        return len(seen)

    def groups(self, since: float, until: float, min_size: int) -> list[list[str]]:
        """Connected groups of linked petitions received between the timestamps, of at least `min_size`."""
        return [g for g in components(self.index, self.index.keys_between(since, until), since, until) if len(g) >= min_size]


def case_infos(session: Session, triage_ids: list[str]) -> dict[str, CaseInfo]:
    """The stored facts of these triages, with the latest decided division and the review status."""
    if not triage_ids:
        return {}
    latest = (select(DecisionRecord.triage_id, func.max(DecisionRecord.revision).label("rev"))
              .where(DecisionRecord.triage_id.in_(triage_ids)).group_by(DecisionRecord.triage_id).subquery())
    decided = dict(session.execute(
        select(DecisionRecord.triage_id, DecisionRecord.division)
        .join(latest, (latest.c.triage_id == DecisionRecord.triage_id) & (latest.c.rev == DecisionRecord.revision))).all())
    status = dict(session.execute(select(ReviewItem.triage_id, ReviewItem.status).where(ReviewItem.triage_id.in_(triage_ids))).all())
    infos = {}
    for row in session.scalars(select(TriageRecord).where(TriageRecord.id.in_(triage_ids))):
        infos[row.id] = CaseInfo(triage_id=row.id, external_id=row.external_id, received_at=aware(row.received_at or row.created_at),
                                 division=row.division, decided_division=decided.get(row.id), risk=row.risk,
                                 review_status=status.get(row.id), text=text_of(row.title_masked, row.body_masked))
    return infos


@dataclass
class Linked:
    """What the same-matter lookup adds to one suggestion."""

    similar: list[SimilarCase]
    emerging: bool


def link(session: Session, shared: SharedMatterIndex, text: str, received: datetime, min_size: int, days: float) -> Linked:
    """Similar cases of a petition about to be stored, and whether it makes (or joins) a group of
    `min_size` within `days`. Nothing is found while the database cannot be read."""
    try:
        matches = shared.lookup(session, text, received)
        infos = case_infos(session, [m.key for m in matches])
    except SQLAlchemyError as exc:
        session.rollback()
        log.error("same-matter lookup failed: %s", type(exc).__name__)
        return Linked([], False)
    similar = [SimilarCase(triage_id=m.key, external_id=info.external_id, received_at=info.received_at, similarity=m.similarity,
                           decided_division=info.decided_division, review_status=info.review_status)
               for m in matches if (info := infos.get(m.key)) is not None]
    emerging = bool(similar) and shared.group_size(text, received, days, cap=min_size) + 1 >= min_size
    return Linked(similar, emerging)


def get_matters(request: Request) -> SharedMatterIndex:
    return request.app.state.matters


MattersDep = Annotated[SharedMatterIndex, Depends(get_matters)]
