"""A throwaway PostgreSQL database per test, on the server .ci/run starts
(TRIAGE_TEST_POSTGRES_URL); tests without that server are skipped, saying why."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

DROP_ATTEMPTS = 50
POSTGRES_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")
# A parameter of a fixture that runs on SQLite and on PostgreSQL: pytest.param("postgresql", ...).
POSTGRES_PARAM = pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="TRIAGE_TEST_POSTGRES_URL is not set (.ci/run sets it when it can start PostgreSQL)"))


@contextmanager
def throwaway_database(prefix: str) -> Iterator[URL]:
    """The URL of a new, empty database, dropped afterwards even while connections to it are open."""
    assert POSTGRES_URL
    base = make_url(POSTGRES_URL)
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name)
    finally:
        for attempt in range(DROP_ATTEMPTS):
            try:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except ProgrammingError as exc:
                # The server's own autovacuum worker may have just started on the database: the
                # test role may not end it (it is not the test role's process), and it ends by
                # itself within moments.
                if "pg_signal_backend" not in str(exc) or attempt == DROP_ATTEMPTS - 1:
                    raise
                time.sleep(0.2)
        admin.dispose()


@contextmanager
def migration_lock_held(url: str, seconds: float) -> Iterator[Callable[[], None]]:
    """The migration lock held by another connection, as a process migrating the database holds
    it (Database.migrate's transaction), for `seconds`, or until the block ends or the callable
    it yields is called. A bounded hold: code that waits for the lock without limit then goes
    on late, and the test fails on what it says, rather than hanging."""
    from service.database import MIGRATION_LOCK_KEY

    engine = create_engine(url, poolclass=NullPool)
    connection = engine.connect()
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    ended = threading.Lock()

    def end() -> None:
        with ended:
            if connection.in_transaction():
                connection.rollback()

    timer = threading.Timer(seconds, end)
    timer.start()
    try:
        yield end
    finally:
        timer.cancel()
        timer.join()
        end()
        connection.close()
        engine.dispose()
