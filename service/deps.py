"""Shared dependencies: settings, database session, the model, and role checks."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from model.artifact import LoadedModel
from service.database import ApiKey
from service.group_commit import GroupCommit
from service.keys import verify_key
from service.routers import MISSING_KEY
from service.settings import Settings

# What actor_of writes: the key's prefix and its role.
ACTOR = re.compile(r"key:([0-9A-Za-z]+)\((\w+)\)")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
logger = logging.getLogger(__name__)


# The dependencies that only look something up are coroutines: a plain function would be
# run in a thread of the pool, a hand-over that costs more than the lookup, on every request.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Opened and closed on the event loop, not in one of the threads sync code runs in: a
    # request whose endpoint has returned gives its connection back at once, instead of
    # holding it until a thread is free to close it (under load every thread may be waiting
    # for a connection, and none would come back).
    session = request.app.state.database.sessions()
    try:
        yield session
    finally:
        # Closing rolls back what is still open. When the connection died during the request
        # that rollback fails, after the answer (a 200 with stored: false, or a 503) may already
        # have been sent: the error would replace nothing and only break the response stream.
        # The pool has already discarded the dead connection, so there is nothing to undo.
        try:
            session.close()
        except SQLAlchemyError as exc:
            logger.warning("closing a request's database session failed: %s", type(exc).__name__)


async def get_group_commit(request: Request) -> GroupCommit:
    return request.app.state.database.group_commit


async def get_model(request: Request) -> LoadedModel:
    loaded = request.app.state.models.current
    if loaded is None:
        raise HTTPException(503, "no model is loaded")
    return loaded


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
GroupCommitDep = Annotated[GroupCommit, Depends(get_group_commit)]


class RecentKeys:
    """Keys verified against the database lately. Within `fresh` seconds of its last
    verification a key is taken without asking the database again; while the database
    is down, within `ttl` seconds, so that the intake desk still gets suggestions
    (answered with stored: false) instead of 503s. Holds only the sha256 of each key."""

    def __init__(self, ttl: float, fresh: float = 0.0) -> None:
        self.ttl = ttl
        self.fresh = fresh
        self._keys: dict[str, tuple[float, str, str]] = {}
        self._lock = threading.Lock()

    def remember(self, key: str, row: ApiKey) -> None:
        with self._lock:
            self._keys[hashlib.sha256(key.encode()).hexdigest()] = (time.monotonic(), row.prefix, row.role)

    def forget(self, key: str) -> None:
        with self._lock:
            self._keys.pop(hashlib.sha256(key.encode()).hexdigest(), None)

    def recall(self, key: str, within: float | None = None) -> ApiKey | None:
        """The key's role if it was verified within `within` seconds (default `ttl`), else None."""
        with self._lock:
            entry = self._keys.get(hashlib.sha256(key.encode()).hexdigest())
        if entry is None or time.monotonic() - entry[0] > (self.ttl if within is None else within):
            return None
        # A detached copy: the request's session may roll back and expire its own rows.
        return ApiKey(prefix=entry[1], role=entry[2])


def allowed_roles(*roles: str) -> tuple[str, ...]:
    """The roles that may use something meant for `roles`: admin may use everything. The API's
    keys and the pages' sessions are checked with the same rule. Admin is named once even
    when the caller names it too."""
    return tuple(dict.fromkeys((*roles, "admin")))


def require_role(*roles: str) -> Callable[..., ApiKey]:
    allowed = allowed_roles(*roles)

    def verify(request: Request, session: Session, key: str) -> ApiKey:
        recent: RecentKeys = request.app.state.recent_keys
        try:
            row = verify_key(session, key)
        except SQLAlchemyError:
            session.rollback()
            row = recent.recall(key)
            if row is None:
                raise HTTPException(503, "the database is unavailable, so the API key cannot be checked; "
                                         "try again shortly") from None
            return row
        if row is None:
            recent.forget(key)
            raise HTTPException(401, "unknown or revoked API key")
        recent.remember(key, row)
        # The read is over: the connection goes back to the pool now, not when the request
        # ends. Between this check and its endpoint a request waits for a free thread, and
        # requests holding connections while threads wait for connections stop the worker.
        # (A commit of nothing, not a rollback: that would expire the row just read, and
        # reading it again would take a connection again.)
        session.commit()
        return row

    # A coroutine: a key verified within the last `key_check_seconds` is taken on the event
    # loop, without the database and without a hand-over to a thread, which on the triage
    # endpoint cost as much as the check itself. Only a key not seen lately is looked up.
    async def check(request: Request, session: SessionDep, key: Annotated[str | None, Security(api_key_header)]) -> ApiKey:
        if not key:
            raise HTTPException(401, MISSING_KEY)
        recent: RecentKeys = request.app.state.recent_keys
        row = recent.recall(key, within=recent.fresh)
        if row is None:
            row = await run_in_threadpool(verify, request, session, key)
        if row.role not in allowed:
            raise HTTPException(403, f"this endpoint needs the role {' or '.join(allowed)}; your key has {row.role!r}")
        return row

    check.roles = allowed  # type: ignore[attr-defined]  # read by service/roles.py for the README's table
    return check


def actor_of(key: ApiKey) -> str:
    return f"key:{key.prefix}({key.role})"


def actor_prefix(actor: str | None) -> str | None:
    """The key prefix in an `actor_of` text; None for anything else (a name a client sent, "cli:…")."""
    match = ACTOR.fullmatch(actor or "")
    return match[1] if match else None
