"""The same-matter index of one worker, kept equal to the database's.

Every worker holds a model.matter.MatterIndex of the petitions stored within the window.
It is built from the database on first use and, before each lookup, takes in the rows
stored since by any worker: so a petition stored by one worker is found by the others,
and a restart or a model reload loses nothing (the index depends on the stored, masked
text only, never on the model). Once a day it drops the rows stored before the window,
which a restart would not read: a worker's index stays the size of a restarted one's.

On SQLite "stored since" is read by rowid: SQLite writes one transaction at a time and
gives each new row a rowid above every committed one, so the rows after the last rowid
seen are exactly the new ones. Elsewhere rows are read by created_at, looking back
COMMIT_LAG each time. That re-reads every row of the last COMMIT_LAG, so on PostgreSQL
a worker takes in other workers' rows at most every PEER_ROWS_SECONDS, not on every
lookup: read on each one, at 200 petitions a second every request re-read thousands of
ids and the service fell behind the arrivals (benchmarks/load.py --database-url). A
worker's own rows are in its index as soon as they are stored."""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Row, bindparam, func, literal_column, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.matter import Match, MatterIndex
from model.text import PURGED_TEXT
from service import heap
from service.database import Database, DecisionRecord, ReviewItem, TriageRecord
from service.pii import mask_pii
from service.schemas import SimilarCase

log = logging.getLogger(__name__)
# A row's created_at is set before its transaction commits, so a row committed late can
# carry an earlier time than one already seen: each refresh looks this far back again.
COMMIT_LAG = timedelta(seconds=10)
# Elsewhere than on SQLite: how stale another worker's rows may be in this worker's index.
# A repeat may miss a petition another worker stored less than this before it; the
# petitions of the matter that come later are linked to both.
PEER_ROWS_SECONDS = 0.25
SIMILAR_SHOWN = 5
# Matches asked of one search for a petition's group.
LOOKUP_LIMIT = 50
# Linked petitions searched at most for the group a petition makes between earlier and later ones.
AROUND_CAP = 200
# Rows read by one query for /v1/emerging: few enough for any database's limit on parameters.
CASES_READ = 500
# What a petition's text is once `triage purge` has emptied it.
PURGED = f"\n{PURGED_TEXT}"
# The index's objects are frozen (service/heap.py) each time it has grown by this many rows.
FREEZE_EVERY_ROWS = 5_000
# How often, at most, a worker drops from its index the rows a restart would not read: sorting
# the band hashes again costs a pass over the index, and a day's rows are a small part of it.
PRUNE_EVERY_SECONDS = 86_400.0

# Built once: these run on every triage, and building a statement costs more than running it.
_TEXT_COLUMNS = (TriageRecord.id, TriageRecord.title_masked, TriageRecord.body_masked, TriageRecord.received_at, TriageRecord.created_at)
_IDS_SINCE = select(TriageRecord.id).where(TriageRecord.created_at >= bindparam("since"))
_TEXTS_SINCE = select(*_TEXT_COLUMNS).where(TriageRecord.created_at >= bindparam("since"))
_TEXTS_OF = select(*_TEXT_COLUMNS).where(TriageRecord.id.in_(bindparam("ids", expanding=True)))
# SQLite only. From the last rowid seen, inclusive: that row coming back first, with the id it
# had, shows the table is the one read before (not, e.g., replaced by `triage restore`).
_ROWID = literal_column("triages.rowid")
_LAST_ROWID = select(func.max(_ROWID)).select_from(TriageRecord)
_TEXTS_FROM_ROWID = select(_ROWID, *_TEXT_COLUMNS).where(bindparam("rowid") <= _ROWID).order_by(_ROWID)
_LATEST = (select(DecisionRecord.triage_id, func.max(DecisionRecord.revision).label("rev"))
           .where(DecisionRecord.triage_id.in_(bindparam("ids", expanding=True))).group_by(DecisionRecord.triage_id).subquery())
_CASES_OF = (select(TriageRecord.id, TriageRecord.external_id, TriageRecord.received_at, TriageRecord.created_at,
                    TriageRecord.division, TriageRecord.risk, TriageRecord.title_masked, TriageRecord.body_masked,
                    DecisionRecord.division, ReviewItem.status)
             .outerjoin(_LATEST, _LATEST.c.triage_id == TriageRecord.id)
             .outerjoin(DecisionRecord, (DecisionRecord.triage_id == _LATEST.c.triage_id) & (DecisionRecord.revision == _LATEST.c.rev))
             .outerjoin(ReviewItem, ReviewItem.triage_id == TriageRecord.id)
             .where(TriageRecord.id.in_(bindparam("ids", expanding=True))))


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
    registered_at: datetime

    @property
    def purged(self) -> bool:
        return self.text == PURGED

    @property
    def order(self) -> tuple[datetime, datetime, str]:
        """Where the case stands among others: by time received, then, as a form gives only the
        day, by when it was registered; the id keeps the order one everywhere."""
        return self.received_at, self.registered_at, self.triage_id


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
        # SQLite: the last row taken in, (rowid, triage id); None before the first refresh.
        self._last_row: tuple[int, str | None] | None = None
        self._lock = threading.Lock()
        self._rows_frozen = 0
        # When the last refresh that succeeded began (time.monotonic).
        self._refresh_began: float | None = None
        # When each row in the index was stored (its created_at, a timestamp): a restart reads
        # the rows stored within the window, and the others leave the index as they would.
        # Its own lock: a request adding its row must not wait for a refresh.
        self._created: dict[str, float] = {}
        self._created_lock = threading.Lock()
        # When rows were last dropped (time.monotonic); None before the first refresh.
        self._pruned_at: float | None = None

    def refresh(self, session: Session) -> None:
        """Adds the rows stored since the last refresh (all rows within the window the first time)."""
        asked = time.monotonic()
        with self._lock:
            # Under load many requests wait here while one refreshes. A refresh that began
            # after this call has read every row committed before it, all that this call
            # would read: no second query for them, one after the other.
            if self._refresh_began is not None and self._refresh_began > asked:
                return
            began = time.monotonic()
            sqlite = session.get_bind().dialect.name == "sqlite"
            if not sqlite and self._refresh_began is not None and began - self._refresh_began < PEER_ROWS_SECONDS:
                return
            now = datetime.now(UTC)
            if sqlite and self._last_row is not None and self._refresh_by_rowid(session):
                self._seen_until = now
                self._refresh_began = began
                self._prune_when_due(began, now)
                return
            # Read before the texts: a row stored in between is read twice, and taken in once.
            last_rowid = (session.scalar(_LAST_ROWID) or 0) if sqlite else None
            if self._seen_until is None:
                # The first time, the texts come with the ids: nearly all of them are new.
                rows = session.execute(_TEXTS_SINCE, {"since": now - self.window - timedelta(days=1)})
                self._add_rows(rows)
            else:
                new = [tid for tid, in session.execute(_IDS_SINCE, {"since": self._seen_until - COMMIT_LAG}) if tid not in self.index]
                for start in range(0, len(new), 500):
                    self._add_rows(session.execute(_TEXTS_OF, {"ids": new[start:start + 500]}))
            self._seen_until = now
            if last_rowid is not None:
                self._last_row = (last_rowid, None)
            self._refresh_began = began
            self._prune_when_due(began, now)

    def _prune_when_due(self, began: float, now: datetime) -> None:
        """Drops the rows stored before the window a restart reads, once PRUNE_EVERY_SECONDS
        have passed since it was last done (under the lock, after a refresh).

        Without it a worker kept every petition since it started, however long it ran.
        By when the row was stored, not when it was received: a petition entered today with
        an old date received is read by a restart, and stays."""
        if self._pruned_at is None:
            self._pruned_at = began  # the first refresh read the window, no more
            return
        if began - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = began
        # As the first refresh reads them; in seconds, so that no window overflows a datetime.
        since = now.timestamp() - self.window.total_seconds() - 86_400
        with self._created_lock:
            old = [key for key, created in self._created.items() if created < since]
            for key in old:
                del self._created[key]
        dropped = self.index.drop(old)
        # The rows dropped are the oldest, frozen long ago: the rows not yet frozen are still
        # those added since, and the next freeze comes after FREEZE_EVERY_ROWS more of them.
        self._rows_frozen = max(0, self._rows_frozen - dropped)
        if dropped:
            log.info("same-matter index: %d petitions stored before the window dropped, %d kept", dropped, len(self.index))

    def _refresh_by_rowid(self, session: Session) -> bool:
        """Takes in the rows after the last one seen; False when that row is no longer
        where it was (the caller then reads by time, and starts again from there)."""
        assert self._last_row is not None
        last_rowid, last_id = self._last_row
        # On the session's connection, as plain SQL: these statements read columns, not ORM
        # objects, and the ORM's handling of a statement cost more than running it.
        rows = session.connection().execute(_TEXTS_FROM_ROWID, {"rowid": last_rowid}).all()
        if last_id is None:  # only the rowid known: the first refresh read by time
            rows = [r for r in rows if r[0] > last_rowid]
        elif not rows or tuple(rows[0][:2]) != (last_rowid, last_id):
            return False
        else:
            rows = rows[1:]
        if rows:
            # This worker's own rows are in already (added when stored): no signature again.
            self._add_rows(row[1:] for row in rows if row[1] not in self.index)
            self._last_row = (rows[-1][0], rows[-1][1])
        return True

    def _add_rows(self, rows: Iterable[Row]) -> None:
        stored: dict[str, float] = {}

        def taken() -> Iterator[tuple[str, str, float]]:
            # One row at a time: at start the rows are a year of texts.
            for tid, title, body, received, created in rows:
                # A purged petition has no text left to link by; taken in, every purged petition
                # would carry the same placeholder and all of them would link into one matter.
                if (text := text_of(title, body)) != PURGED:
                    stored[tid] = aware(created).timestamp()
                    yield tid, text, aware(received or created).timestamp()

        self.index.add_many(taken())
        with self._created_lock:
            self._created.update(stored)
        self._freeze_growth()

    def _freeze_growth(self) -> None:
        if len(self.index) - self._rows_frozen >= FREEZE_EVERY_ROWS:
            self._rows_frozen = len(self.index)
            heap.freeze_new()

    def warm_up(self, database: Database) -> None:
        """Builds the index in the background, so that the first lookup does not wait for a
        year of petitions; a lookup before it is done waits for it (or, with the database
        down, builds it later)."""

        def build() -> None:
            try:
                with database.sessions() as session:
                    self.refresh(session)
                log.info("same-matter index: %d petitions", len(self.index))
                heap.settle()
                self._rows_frozen = len(self.index)
            except Exception as exc:  # the database may be down at start; the first lookup tries again
                log.error("same-matter index not built at start: %s", type(exc).__name__)

        threading.Thread(target=build, name="matter-index", daemon=True).start()

    def add(self, triage_id: str, text: str, received: datetime, stored: datetime | None = None) -> None:
        """Takes in a petition this worker has just stored (`stored`: its created_at, by default now)."""
        self.index.add(triage_id, text, aware(received).timestamp())
        with self._created_lock:
            # A refresh may have read the row meanwhile, with the time it was stored.
            self._created.setdefault(triage_id, (stored or datetime.now(UTC)).timestamp())
        self._freeze_growth()

    def lookup(self, session: Session, text: str, received: datetime, limit: int = LOOKUP_LIMIT) -> list[Match]:
        """Stored petitions about the same matter received within the window before `received`."""
        self.refresh(session)
        # Timestamps, not datetimes: a window reaching before year 1 is no error.
        until = aware(received).timestamp()
        return self.index.query(text, limit=limit, since=until - self.window.total_seconds(), until=until)

    def group_of(self, matches: list[Match], since: float, until: float, cap: int) -> set[str]:
        """The stored petitions linked, directly or through others, to a petition whose matches
        these are, received between the timestamps (the search stops once it has `cap`). A match
        dropped from the index since it was found is outside the window: a restart would not read it."""
        frontier = [key for key, when in self.index.whens(m.key for m in matches).items() if since <= when <= until]
        seen = set(frontier)
        while frontier and len(seen) < cap:
            for match in self.index.query_key(frontier.pop(), limit=cap, since=since, until=until):
                if match.key not in seen:
                    seen.add(match.key)
                    frontier.append(match.key)
        return seen


def case_infos(session: Session, triage_ids: list[str]) -> dict[str, CaseInfo]:
    """The stored facts of these triages, with the latest decided division and the review status
    (one query: it runs on every triage that has similar cases)."""
    if not triage_ids:
        return {}
    return {tid: CaseInfo(triage_id=tid, external_id=external_id, received_at=aware(received or created), division=division,
                          decided_division=decided, risk=risk, review_status=status, text=text_of(title, body),
                          registered_at=aware(created))
            for tid, external_id, received, created, division, risk, title, body, decided, status
            in session.connection().execute(_CASES_OF, {"ids": triage_ids})}


def later_cases(session: Session, shared: SharedMatterIndex, triage_id: str, limit: int) -> tuple[list[tuple[CaseInfo, float]], int]:
    """The stored petitions about the same matter as `triage_id` received after it, within the
    window, by time received: the first `limit` of them with their similarity, and how many
    were found. None when it is not in the index (older than the window, or purged), or while
    the database cannot be read."""
    try:
        shared.refresh(session)
        # Looked up once: a row may be dropped between asking whether it is there and its time.
        if (when := shared.index.whens([triage_id]).get(triage_id)) is None:
            return [], 0
        matches = shared.index.query_key(triage_id, limit=LOOKUP_LIMIT, since=when, until=when + shared.window.total_seconds())
        infos = case_infos(session, [m.key for m in matches])
    except SQLAlchemyError as exc:
        session.rollback()
        log.error("same-matter lookup failed: %s", type(exc).__name__)
        return [], 0
    found = sorted(((info, m.similarity) for m in matches if (info := infos.get(m.key)) is not None and not info.purged),
                   key=lambda pair: pair[0].order)
    return found[:limit], len(found)


@dataclass
class Linked:
    """What the same-matter lookup adds to one suggestion."""

    similar: list[SimilarCase]
    # The stored petitions of the group this one makes or joins; empty unless it does.
    group: list[str]


def case_number(external_id: str | None) -> str | None:
    """A petition's number in the office's register as stored, when it still tells one petition
    from another: None when absent, or when masking changed it (0531-2026-0001 looks like a
    landline and is stored as [电话], as other numbers are)."""
    if not external_id or not external_id.strip():
        return None
    return external_id if mask_pii(external_id) == external_id else None


def distinct_cases(infos: Iterable[CaseInfo]) -> list[CaseInfo]:
    """`infos` with one petition per case number, the first kept: a client that sent a petition
    again after a timeout stored it twice, and its copies counted as several petitions of an
    emerging group."""
    seen: set[str] = set()
    kept = []
    for info in infos:
        number = case_number(info.external_id)
        if number is None or number not in seen:
            kept.append(info)
        if number is not None:
            seen.add(number)
    return kept


def link(session: Session, shared: SharedMatterIndex, text: str, received: datetime, min_size: int, days: float,
         external_id: str | None = None) -> Linked:
    """Similar cases of a petition about to be stored, and whether it makes (or joins) a group of
    `min_size` within `days`. Nothing is found while the database cannot be read. Stored
    petitions with its case number (`external_id`) are the same petition sent again, neither
    an earlier petition about its matter nor another member of its group."""
    number = case_number(external_id)
    try:
        matches = shared.lookup(session, text, received)
        infos = case_infos(session, [m.key for m in matches[:SIMILAR_SHOWN]])
    except SQLAlchemyError as exc:
        session.rollback()
        log.error("same-matter lookup failed: %s", type(exc).__name__)
        return Linked([], [])
    # A petition purged since the index took it in (`triage purge`) is no longer shown:
    # its text is gone, and so is the reason to link to it.
    similar = [SimilarCase(triage_id=m.key, external_id=info.external_id, received_at=info.received_at, similarity=m.similarity,
                           decided_division=info.decided_division, review_status=info.review_status)
               for m in matches[:SIMILAR_SHOWN] if (info := infos.get(m.key)) is not None and not info.purged
               and (number is None or info.external_id != number)]
    when, window = aware(received).timestamp(), days * 86400
    before = shared.group_of(matches, when - window, when, cap=min_size)
    members = _members(session, before, number) if len(before) + 1 >= min_size else []
    if len(before) + 1 >= min_size > len(members) + 1:
        # The search stopped at enough petitions, but some were copies of one case or purged:
        # searched on, others of the matter may still make the group.
        members = _members(session, shared.group_of(matches, when - window, when, cap=AROUND_CAP), number)
    # Searched only when something was received after it: a petition triaged as it arrives, as
    # most are, pays for no second search. A ledger listed newest first, or a county's backlog
    # entered late, stores petitions received after this one before it.
    if len(members) + 1 < min_size and shared.index.latest > when:
        members = _members_around(session, shared, matches, text, when, window, min_size, number)
    return Linked(similar, sorted(i.triage_id for i in members) if len(members) + 1 >= min_size else [])


def _members(session: Session, triage_ids: Iterable[str], number: str | None) -> list[CaseInfo]:
    """The members among these stored petitions (see _members_of)."""
    return _members_of(_infos_or_none(session, sorted(triage_ids)).values(), number)


def _members_of(infos: Iterable[CaseInfo], number: str | None) -> list[CaseInfo]:
    """The members among these stored petitions, by time received: purged ones are none (their
    text is gone), nor are copies of the petition itself (its case number `number`), and one
    case sent twice is one member."""
    return distinct_cases(sorted((i for i in infos if not i.purged and (number is None or i.external_id != number)),
                                 key=lambda i: i.order))


def _members_around(session: Session, shared: SharedMatterIndex, matches: list[Match], text: str, when: float,
                    window: float, min_size: int, number: str | None) -> list[CaseInfo]:
    """The largest group a petition received at `when` makes in some span of `window` that holds
    `when`: between petitions received before it and after it, neither the span ending at it
    nor the one starting at it may hold enough of them. The linked petitions received within
    `window` either side are searched, one link further at a time, until some span holds enough
    members or none is left (or AROUND_CAP are found)."""
    since, until = when - window, when + window
    later = shared.index.query(text, limit=LOOKUP_LIMIT, since=when, until=until)
    # The petitions found, each with those it links to; the new one is not stored, and is
    # known by the petitions it links to directly.
    # Petitions dropped from the index since they were found are left out, as outside the window.
    found = {key: t for key, t in shared.index.whens(m.key for m in (*matches, *later)).items() if since <= t <= until}
    direct = set(found)
    links: dict[str, set[str]] = {key: set() for key in direct}
    frontier = sorted(direct, key=lambda key: (found[key], key))
    infos: dict[str, CaseInfo] = {}
    weighed = 0
    while True:
        done = not frontier or len(links) >= AROUND_CAP
        whens = shared.index.whens(links)
        # Weighed again only once the petitions found have doubled, and at the end: a span that
        # held too few (copies of one case, purged petitions) is not weighed after every link.
        if ((done and len(links) > weighed) or len(links) >= 2 * weighed) \
                and _most_within(sorted(whens.values()), when, window) + 1 >= min_size:
            weighed = len(links)
            # Only then are the rows read: a span may still hold too few once purged petitions
            # and copies of one case are set aside.
            missing = [key for key in links if key not in infos]
            found = _infos_or_none(session, missing)
            if missing and not found:
                return []  # the database cannot be read: no group
            infos |= found
            best = _largest_in_a_span(direct, links, whens, infos, when, window, number)
            if len(best) + 1 >= min_size:
                return best
        if done:
            return []
        key = frontier.pop()
        for match in shared.index.query_key(key, limit=LOOKUP_LIMIT, since=since, until=until):
            if match.key not in links:
                links[match.key] = set()
                frontier.append(match.key)
            links[key].add(match.key)
            links[match.key].add(key)


def _most_within(times: list[float], when: float, window: float) -> int:
    """The most of these sorted timestamps that one span of `window` holding `when` holds."""
    most, end = 0, 0
    for start, first in enumerate(times):
        if first > when:
            break
        if first < when - window:
            continue
        end = max(end, start)
        while end < len(times) and times[end] <= first + window:
            end += 1
        most = max(most, end - start)
    # A span starting at `when` holds those received from it on.
    return max(most, sum(when <= t <= when + window for t in times))


def _largest_in_a_span(direct: set[str], links: dict[str, set[str]], whens: dict[str, float], infos: dict[str, CaseInfo],
                       when: float, window: float, number: str | None) -> list[CaseInfo]:
    """The members of the largest group the new petition makes within one span of `window` holding
    `when`, linked within that span, as /v1/emerging links a group within its window. The spans
    tried start at `when` or at a petition received before it: any other holds no more than one of those."""
    best: list[CaseInfo] = []
    for start in sorted({when, *(t for t in whens.values() if when - window <= t <= when)}):
        inside = {key for key, t in whens.items() if start <= t <= start + window}
        reached = direct & inside
        frontier = list(reached)
        while frontier:
            for key in links[frontier.pop()] & inside:
                if key not in reached:
                    reached.add(key)
                    frontier.append(key)
        members = _members_of((infos[key] for key in reached if key in infos), number)
        if len(members) > len(best):
            best = members
    return best


def emerging_groups(session: Session, shared: SharedMatterIndex, start: float, end: float, span: float,
                    min_size: int) -> list[list[CaseInfo]]:
    """The groups /v1/emerging lists for the look-back from `start` to `end` (timestamps).

    A group is petitions about one matter, linked within a span of `span` seconds that holds at
    least `min_size` of them, at least one received in the look-back. The span may begin before
    the look-back: a group whose members arrived over six days is one of the last seven days
    while its latest member is, not only while the look-back holds all of it. Spans overlapping
    a matter's petitions make one group, listed once.

    Parameters
    ----------
    session : Session
        Reads the members' stored facts.
    shared : SharedMatterIndex
        The worker's index, refreshed by the caller.
    start, end : float
        The look-back; petitions received after `end` are not seen.
    span : float
        The span a group's petitions arrive within, in seconds.
    min_size : int
        The fewest petitions a group has; copies of one case count once, purged petitions not at all.

    Returns
    -------
    list of list of CaseInfo
        Each group's members by time received, in the order of the groups' first petitions.
    """
    keys, links = shared.index.links_between(start - span, end, limit=LOOKUP_LIMIT)
    matters = []
    for component in _connected(keys, links, set(keys)):
        # A petition dropped from the index since links_between is left out, as outside the look-back.
        whens = shared.index.whens(component)
        if whens and len(whens) >= min_size and max(whens.values()) >= start:
            matters.append(whens)
    # The rows of every matter read together, a few hundred at a time: one query per matter was
    # hundreds of queries for a look-back of a year.
    wanted = sorted(key for whens in matters for key in whens)
    stored: dict[str, CaseInfo] = {}
    for first in range(0, len(wanted), CASES_READ):
        stored |= case_infos(session, wanted[first:first + CASES_READ])
    groups = []
    for whens in matters:
        infos = {key: stored[key] for key in sorted(whens) if key in stored}
        # A petition purged since this worker's index took it in is no member: its text is gone.
        members = {key for key, info in infos.items() if not info.purged}
        listed = _linked_in_a_span(members, links, whens, infos, start, span, min_size)
        kept = distinct_cases(sorted((infos[key] for key in listed), key=lambda i: i.order))
        if len(kept) >= min_size:
            groups.append(kept)
    return groups


def _connected(keys: Iterable[str], links: dict[str, set[str]], inside: set[str]) -> list[list[str]]:
    """`keys` split into groups linked directly or through others of `inside`, in the order of `keys`."""
    seen: set[str] = set()
    groups = []
    for key in keys:
        if key in seen:
            continue
        group, frontier = [key], [key]
        seen.add(key)
        while frontier:
            for other in links[frontier.pop()] & inside:
                if other not in seen:
                    seen.add(other)
                    group.append(other)
                    frontier.append(other)
        groups.append(group)
    return groups


def _linked_in_a_span(members: set[str], links: dict[str, set[str]], whens: dict[str, float], infos: dict[str, CaseInfo],
                      start: float, span: float, min_size: int) -> set[str]:
    """The `members` of one matter that are linked within some span of `span` holding `min_size`
    of them (a case counted once), at least one received from `start` on."""

    def makes_a_group(found: set[str]) -> bool:
        cases = {case_number(infos[key].external_id) or key for key in found}
        return len(cases) >= min_size and any(whens[key] >= start for key in found)

    if max(whens.values()) - min(whens.values()) <= span:
        # One span holds them all, and they are linked within it: the usual group.
        return members if makes_a_group(members) else set()
    listed: set[str] = set()
    # The petitions by time: a span's are then found by bisection, not by looking at every petition
    # of the matter for each span, which for a matter petitioned about all year took seconds.
    by_time = sorted(whens, key=whens.__getitem__)
    times = [whens[key] for key in by_time]
    # Any span holding members is one beginning at a member's time, or holds no more than it.
    for begin in sorted({t for t in whens.values() if t + span >= start}):
        inside = set(by_time[bisect_left(times, begin):bisect_right(times, begin + span)])
        if not (inside & members) - listed:
            continue
        for group in _connected(sorted(inside & members - listed), links, inside):
            found = set(group) & members
            if makes_a_group(found):
                listed |= found
    return listed


def _infos_or_none(session: Session, triage_ids: list[str]) -> dict[str, CaseInfo]:
    """case_infos, or none while the database cannot be read (no group is then made)."""
    try:
        return case_infos(session, triage_ids)
    except SQLAlchemyError as exc:
        session.rollback()
        log.error("same-matter lookup failed: %s", type(exc).__name__)
        return {}


async def get_matters(request: Request) -> SharedMatterIndex:  # a lookup: no thread needed (service/deps.py)
    return request.app.state.matters


MattersDep = Annotated[SharedMatterIndex, Depends(get_matters)]
