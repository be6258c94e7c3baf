"""Storage: SQLAlchemy tables, migrations and the session dependency. SQLite in
WAL mode by default; any SQLAlchemy URL (e.g. PostgreSQL) by setting
TRIAGE_DATABASE_URL. The schema is made by the Alembic revisions in
service/migrations/versions; a change to the tables here needs a new revision."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    URL,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

from model.artifact import make_private_dir
from service.group_commit import GroupCommit
from service.pii import mask_pii, mask_pii_in

log = logging.getLogger(__name__)
# Alembic finds the revisions as a package resource, wherever the service is installed.
MIGRATIONS = "service:migrations"
CONNECT_TIMEOUT_S = 5
# How long SQLite itself waits for another writer before failing the write.
SQLITE_BUSY_TIMEOUT_S = 5
# How long a migration waits for another process's migration (or, on SQLite, other write) to
# end before this attempt gives up and is retried later: long enough for a short upgrade to
# finish in it, short enough that a worker's start does not wait on a long one without a word.
MIGRATION_BUSY_TIMEOUT_S = 30
# How long a command run by hand (triage keys, triage purge) waits for another process's
# migration of the database before giving up: a re-masking revision takes minutes on a
# department's database, and one that has not finished in this long is not finishing.
MIGRATION_WAIT_S = 3600
# How long such a command's first attempt waits for the write lock (the migration lock on
# PostgreSQL) before it looks at why: another writer's ordinary transaction, or another
# process finding its schema current, ends well within it.
MIGRATION_FIRST_TRY_S = 2
# Any fixed 64-bit number; it names this project's migration lock on a shared PostgreSQL.
MIGRATION_LOCK_KEY = 0x7472696167650001
# How long a PostgreSQL migration sleeps between asks for the migration lock another process
# holds: short beside a migration, long enough not to busy the server with asking.
MIGRATION_LOCK_POLL_S = 0.1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC and read back as an aware UTC datetime.

    SQLite has no time zone type: SQLAlchemy writes an aware datetime's wall-clock
    digits and drops its offset, so 09:00+08:00 was stored (and compared) as 09:00.
    Converting every value bound to these columns, query parameters included,
    makes `since=...+08:00` and `since=...Z` the same instant on SQLite and
    PostgreSQL alike. A value without an offset is taken as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MaskedText(TypeDecorator[str]):
    """Free text that staff or callers write: resident ID, mobile, landline and card
    numbers are masked on the way into the database, whichever code path writes it."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else mask_pii(value)


class MaskedString(MaskedText):
    impl = String  # with its length, as the column declares it (masking never lengthens text)
    # Declared again: SQLAlchemy reads cache_ok from each class itself. Without it, every
    # statement naming such a column was compiled anew each time it ran.
    cache_ok = True


class MaskedJSON(TypeDecorator[dict]):
    """JSON whose strings are masked, e.g. the audit log's detail."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: dict | None, dialect: Dialect) -> dict | None:
        return None if value is None else mask_pii_in(value)


class Base(DeclarativeBase):
    pass


class TriageRecord(Base):
    """One suggestion as the model made it. Text is stored PII-masked."""

    __tablename__ = "triages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(MaskedString(200), index=True)
    channel: Mapped[str | None] = mapped_column(String(10))
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    title_masked: Mapped[str] = mapped_column(MaskedText)
    body_masked: Mapped[str] = mapped_column(MaskedText)
    model_version: Mapped[str] = mapped_column(String(80))
    division: Mapped[str] = mapped_column(String(40), index=True)
    division_confidence: Mapped[float] = mapped_column(Float)
    risk: Mapped[str] = mapped_column(String(10), index=True)
    key_group: Mapped[str] = mapped_column(String(40))
    needs_review: Mapped[bool] = mapped_column(Boolean)
    suggestion: Mapped[dict] = mapped_column(JSON)


class DecisionRecord(Base):
    """A person's final labels for a triage. Never updated: a change is a new revision."""

    __tablename__ = "decisions"
    __table_args__ = (Index("uq_decisions_triage_revision", "triage_id", "revision", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    triage_id: Mapped[str] = mapped_column(ForeignKey("triages.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    division: Mapped[str] = mapped_column(String(40))
    risk: Mapped[str] = mapped_column(String(10))
    key_group: Mapped[str] = mapped_column(String(40))
    accepted: Mapped[bool] = mapped_column(Boolean)
    decided_by: Mapped[str] = mapped_column(MaskedString(200))
    reason: Mapped[str | None] = mapped_column(MaskedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ReviewItem(Base):
    __tablename__ = "review_items"
    triage_id: Mapped[str] = mapped_column(ForeignKey("triages.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    resolved_by: Mapped[str | None] = mapped_column(MaskedString(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(MaskedText)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(MaskedString(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict] = mapped_column(MaskedJSON, default=dict)


class ServedModel(Base):
    """The model in service: one row, shared by every worker process (and every replica
    using this database). A reload writes it; each worker follows it within
    model_poll_seconds and a restart starts from it."""

    __tablename__ = "model_in_service"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always SERVED_MODEL_ROW
    path: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(80))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(200))


SERVED_MODEL_ROW = 1


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    # As SQLAlchemy reads the URL (it %-decodes the path); None for ":memory:" and other dialects.
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def _sqlite_existing(path: Path) -> URL:
    # mode=rw: open the file only if it exists. Once the service runs, a missing file is
    # an outage (a volume not mounted, a file moved away), not a cue to start an empty
    # database beside the real one and acknowledge decisions into it.
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "rw", "uri": "true"})


def _make_parent(path: Path) -> None:
    try:
        make_private_dir(path.parent)
    except OSError as exc:
        # The volume may not be there yet; connecting fails and is retried later.
        log.error("cannot create the database directory %s: %s", path.parent, exc)


def _create_private(path: Path) -> None:
    # Made here, owner-only (0600), before SQLite makes it with the umask's 0644: it holds
    # petitions. SQLite gives its -wal and -shm files the database file's permissions.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o004:
            log.warning("database %s is readable by every user of this machine; chmod 600 it (and its -wal, -shm)", path)
    except OSError as exc:
        log.error("cannot create the database file %s: %s", path, exc)


def make_engine(url: str) -> Engine:
    path = _sqlite_path(url)
    if path is not None:
        # The file itself is made by Database.migrate(), the first time only.
        engine = create_engine(_sqlite_existing(path), connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            # WAL lets readers proceed during a write; synchronous=FULL makes an
            # acknowledged commit survive a power cut or SIGKILL.
            _journal_mode_wal(cursor)
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            record.info["file_id"] = _file_id(path)
            # SQLite opens a file it may not write read-only, without a word, and such a
            # connection stays read-only after the file can be written again: marked here,
            # so that it is replaced then. Checked once per connection, not per request.
            record.info["opened_unwritable"] = _unwritable(path) is not None

        @event.listens_for(engine, "checkout")
        def _same_file(dbapi_connection, record, proxy) -> None:  # type: ignore[no-untyped-def]
            # A pooled connection keeps writing to the file it opened even after that
            # file was deleted or moved: commits would be acknowledged into a file
            # nobody reads. Reconnect instead, which fails while the file is gone.
            if _file_id(path) != record.info.get("file_id"):
                raise DisconnectionError(f"{path} is no longer the file this connection opened")
            if record.info.get("opened_unwritable") and _unwritable(path) is None:
                raise DisconnectionError(f"{path} can be written again; this connection was opened read-only")

        @event.listens_for(engine, "handle_error")
        def _read_only_connection(context) -> None:  # type: ignore[no-untyped-def]
            # A write refused as "readonly database" (the file, its -wal or -shm not writable
            # when the connection was opened, or the file moved away): the connection is
            # thrown away with the pool's others, not reused for every later write, so that
            # storing resumes by itself once the volume is writable again.
            if _read_only_error(context.original_exception):
                context.is_disconnect = True

        return engine
    # A database that does not answer must fail the request quickly, not hold it for minutes.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _journal_mode_wal(cursor: sqlite3.Cursor, wait_seconds: float = 5.0) -> None:
    # Turning a new file to WAL needs it to itself, and SQLite refuses at once ("database is
    # locked"), without waiting, while another process reads it: e.g. two `triage serve`
    # workers on their first connections. Once the file is in WAL, this returns at once.
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _read_only_error(exc: BaseException) -> bool:
    """True for SQLite's SQLITE_READONLY and its extended codes ("attempt to write a
    readonly database"), which the connection will give again for every write."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_READONLY


def _unwritable(path: Path) -> str | None:
    """Why the SQLite database cannot be written, if it cannot: a file system remounted
    read-only (as after a disk error), a file or folder the service's user may not write, or
    a volume with no space left. SQLite then still opens and reads the file, so the revision
    check alone reported ready while every petition was answered `stored: false`. Its -wal
    and -shm files count too, when they are there: SQLite opens the database read-only
    when it may not write either of them (e.g. left by an admin command run as root)."""
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    for target in (path, path.parent, *(f for f in (wal, shm) if f.exists())):
        if not os.access(target, os.W_OK):
            return f"{target} is read-only for this process (a read-only mount, or its owner or mode)"
    try:
        if os.statvfs(path.parent).f_bavail == 0:
            return f"no space left on the volume of {path.parent}"
    except OSError:
        pass  # the file's own errors are for the reads and writes to report
    return None


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration, built in code: no alembic.ini is needed at run time.

    To write a new revision after changing the tables above:
        python -c "from alembic import command; from service.database import alembic_config; \
                   command.revision(alembic_config('sqlite:///var/dev.db'), 'what changed', autogenerate=True)"
    (upgrade that database to head first so autogenerate compares against the current schema)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "service/migrations/versions has no revision"
    return head


def migration_engine(url: str, create: bool = True, busy_timeout: float | None = None) -> Engine:
    """The engine migrations run on. PostgreSQL's DDL is transactional as it is; SQLite
    needs this: pysqlite runs DDL outside any transaction by default, so a crash
    mid-migration would leave half a schema and two processes starting together could
    both create the tables. Here every transaction is an explicit BEGIN IMMEDIATE: DDL
    and the version stamp commit together, and a second migrator waits for the first,
    then finds head. `create=False` refuses to make a missing SQLite file. `busy_timeout`
    is how long to wait for another writer (MIGRATION_BUSY_TIMEOUT_S by default)."""
    path = _sqlite_path(url)
    if path is None:
        return create_engine(url, poolclass=NullPool)
    if create:
        _make_parent(path)
        _create_private(path)
    timeout = MIGRATION_BUSY_TIMEOUT_S if busy_timeout is None else busy_timeout
    engine = create_engine(url if create else _sqlite_existing(path), connect_args={"timeout": timeout}, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SQLiteWriteLock:
    """One writing session at a time across the worker processes and their threads.

    SQLite lets one writer in and makes the others retry after sleeps that grow to
    100 ms, so under load a write could wait out the whole busy timeout behind
    luckier ones (the slowest triage requests of benchmarks/load.py waited 5 s).
    Writers queue here instead, and the next one goes as soon as a commit ends.
    Held from a session's first flush to the end of its transaction; a session
    that cannot get it within the busy timeout writes anyway and lets SQLite decide.
    A plain Lock, not an RLock: FastAPI may close a request's session in another
    thread than the one that flushed it."""

    POLL_S = 0.0005

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".write-lock")
        self._threads = threading.Lock()
        self._fd: int | None = None

    def hold(self, session: Session) -> None:
        if session.info.get("write_lock") or not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            return
        if not self._lock_file():
            self._threads.release()
            return
        session.info["write_lock"] = True

    def let_go(self, session: Session) -> None:
        if not session.info.pop("write_lock", False):
            return
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self) -> bool:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(self.POLL_S)
        except OSError:  # e.g. a read-only disk: SQLite will say why the write fails
            return False


class Database:
    """The engine, the session factory and the schema state.

    Start-up must not depend on the database being up: when the first migration
    fails, `ensure_migrated()` tries again (at most every `retry_seconds`) from
    the first requests and from /readyz until it succeeds."""

    def __init__(self, url: str, retry_seconds: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_lock: SQLiteWriteLock | None = None
        path = _sqlite_path(url)
        if path is not None:
            lock = self.write_lock = SQLiteWriteLock(path)
            event.listen(self.sessions, "before_flush", lambda session, *_: lock.hold(session))
            event.listen(self.sessions, "after_transaction_end",
                         lambda session, transaction: transaction.parent is None and lock.let_go(session))
        # The triages of concurrent requests, committed together (service/group_commit.py). Its
        # inserts bypass the ORM's flush, so it takes the write lock itself.
        self.group_commit = GroupCommit(None if self.write_lock is None else self.write_lock.hold)
        self.retry_seconds = retry_seconds
        self.migrated = False
        self._migrated_once = False
        self._lock = threading.Lock()
        self._last_attempt = float("-inf")
        self._unwritable: str | None = None
        self._waiting_for: str | None = None  # the database another process was migrating, last attempt

    def migrate(self, busy_timeout: float | None = None) -> str:
        """Brings the schema to the newest revision (a no-op when it is there) and returns it.
        `busy_timeout`: how long a SQLite migration waits for another writer, and a PostgreSQL
        one for the migration lock (MIGRATION_BUSY_TIMEOUT_S by default); past it, SQLite's
        "database is locked" or MigrationLocked is raised."""
        # A first start creates a SQLite database; later attempts (after an outage) never do.
        sqlite = _sqlite_path(self.url) is not None
        engine = (migration_engine(self.url, create=not self._migrated_once, busy_timeout=busy_timeout) if sqlite
                  else self.engine)
        config = alembic_config(self.url)
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Several replicas may start together; one migrates, the others wait and find head.
                    _take_migration_lock(connection, MIGRATION_BUSY_TIMEOUT_S if busy_timeout is None else busy_timeout)
                config.attributes["connection"] = connection
                names = set(inspect(connection).get_table_names())
                if "alembic_version" not in names and "triages" in names:
                    # Made by create_all before migrations existed: the tables of revision 0001.
                    log.warning("database has tables but no alembic_version; stamping it at revision 0001")
                    command.stamp(config, "0001")
                command.upgrade(config, "head")
        finally:
            if engine is not self.engine:
                engine.dispose()
        self.migrated = self._migrated_once = True
        return head_revision()

    def migrate_waiting(self, say: Callable[[str], None], wait_s: float | None = None) -> str:
        """migrate(), for a command run by hand: while another process migrates the database
        (`triage serve` started after an upgrade), waits for it to finish, saying so with `say`
        at each try, for at most `wait_s` (MIGRATION_WAIT_S), then raises MigrationBusy. Such a
        command waited out the busy timeout and failed with "database is locked" on SQLite, which
        sent IT staff to check a database that was fine, and waited without a word for as long as
        the migration ran on PostgreSQL, as if it hung. Other errors are raised as migrate() raises them."""
        wait_s = MIGRATION_WAIT_S if wait_s is None else wait_s
        started = time.monotonic()
        busy_timeout = min(MIGRATION_FIRST_TRY_S, MIGRATION_BUSY_TIMEOUT_S)
        while True:
            try:
                return self.migrate(busy_timeout=busy_timeout)
            except Exception as exc:
                busy = self._migration_elsewhere(exc)
                if busy is None:
                    raise
            name, revision = busy
            if revision == head_revision():
                # Migrated already; the lock is some other write, which the command's own writes
                # wait for, or another process finding the schema current.
                self.migrated = self._migrated_once = True
                return revision
            waited = time.monotonic() - started
            what = _busy(revision, sqlite=_sqlite_path(self.url) is not None)
            if waited >= wait_s:
                raise MigrationBusy(f"database {name} {what}, still after {waited:.0f}s of waiting; "
                                    "run the command again once it has finished (triage serve logs how far it is)")
            say(f"database {name} {what}; waiting for it to finish ({waited:.0f}s so far, at most {wait_s:.0f}s)")
            busy_timeout = max(min(MIGRATION_BUSY_TIMEOUT_S, wait_s - waited), 0.05)

    def _migration_elsewhere(self, exc: BaseException) -> tuple[str, str | None] | None:
        """When `exc` says another process holds the migration's lock (SQLite's write lock, or
        the migration lock on PostgreSQL): the database as a person recognises it (a file's path,
        or the URL without its password) and its committed revision, None when that cannot be
        read at once. None for any other error."""
        path = _sqlite_path(self.url)
        if path is not None:
            return (str(path), _committed_revision(path)) if _sqlite_locked(exc) else None
        if not isinstance(exc, MigrationLocked):
            return None
        return make_url(self.url).render_as_string(hide_password=True), _postgres_revision(self.engine)

    def ensure_migrated(self) -> bool:
        """True once the schema is at head; otherwise tries to migrate, never raising."""
        if self.migrated:
            return True
        # Requests arriving while another one is trying do not queue behind a connect timeout.
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self.migrated:
                return True
            if time.monotonic() - self._last_attempt < self.retry_seconds:
                return False
            self._last_attempt = time.monotonic()
            try:
                self.migrate()
            except Exception as exc:  # driver, OS or Alembic errors alike: log, keep serving, retry later
                busy = self._migration_elsewhere(exc)
                if busy is None:
                    self._waiting_for = None
                    log.error("database unavailable, schema not migrated (retrying in %.0fs): %s",
                              self.retry_seconds, _first_line(exc))
                    return False
                # Another process holds the migration's lock: during an upgrade, the worker or
                # command that started first, migrating. The database is there and answering;
                # nothing for IT staff to act on, so no ERROR.
                name, revision = busy
                if revision == head_revision():
                    # Migrated already; the lock is some other write (or another process finding
                    # the schema current), which this process need not wait for.
                    self.migrated = self._migrated_once = True
                else:
                    self._say_waiting(name, revision)
                    return False
        finally:
            self._lock.release()
        self._waiting_for = None
        log.info("database schema at revision %s", head_revision())
        return True

    def _say_waiting(self, name: str, revision: str | None) -> None:
        # A warning when the wait begins, then INFO lines while it goes on: one upgrade, one warning.
        what = _busy(revision, sqlite=_sqlite_path(self.url) is not None)
        level = logging.INFO if self._waiting_for == name else logging.WARNING
        self._waiting_for = name
        log.log(level, "database %s %s; waiting, trying again in %.0fs", name, what, self.retry_seconds)

    def check(self) -> bool:
        """True when the database answers and its schema is the one this code needs."""
        if not self.ensure_migrated():
            return False
        try:
            with self.engine.connect() as connection:
                revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError as exc:
            log.error("database check failed: %s", _first_line(exc))
            revision = None
        if revision != head_revision():
            # Down, or e.g. the file was replaced by an empty one: migrate again when it answers.
            self.migrated = False
            return False
        path = _sqlite_path(self.url)
        problem = None if path is None else _unwritable(path)
        if problem != self._unwritable:
            # Said once when it starts and once when it ends, not on every probe.
            if problem:
                log.error("database %s cannot be written: %s; nothing is stored until it can", path, problem)
            else:
                log.info("database %s can be written again", path)
            self._unwritable = problem
        return problem is None

    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session


class MigrationBusy(RuntimeError):
    """Another process was still migrating the database when a command gave up waiting."""


class MigrationLocked(RuntimeError):
    """Another process held PostgreSQL's migration lock for longer than this attempt would wait."""


def _take_migration_lock(connection: Connection, wait_s: float) -> None:
    """The migration lock, for the rest of `connection`'s transaction, or MigrationLocked once
    `wait_s` has passed without it. Asked for without blocking: a blocking ask held a command run
    by hand, or a worker's start and its requests, without a word for as long as another
    process's migration ran."""
    deadline = time.monotonic() + wait_s
    ask = text("SELECT pg_try_advisory_xact_lock(:key)")
    while not connection.execute(ask, {"key": MIGRATION_LOCK_KEY}).scalar():
        left = deadline - time.monotonic()
        if left <= 0:
            raise MigrationLocked(f"another process held the migration lock for longer than {wait_s:.1f}s")
        time.sleep(min(MIGRATION_LOCK_POLL_S, left))


def _postgres_revision(engine: Engine) -> str | None:
    """The schema revision committed in a PostgreSQL database, read without waiting for the
    process migrating it (a reader sees the last commit); None when it cannot be read at once,
    e.g. while the first migration is still creating the tables."""
    try:
        with engine.connect() as connection:
            # A migration that changes the version table itself holds its readers: give up then
            # rather than wait. Local to this transaction: the pooled connection goes back as it was.
            connection.execute(text("SELECT set_config('lock_timeout', :wait, true)"),
                               {"wait": f"{int(MIGRATION_FIRST_TRY_S * 1000)}ms"})
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    return None if revision is None else str(revision)


def _busy(revision: str | None, sqlite: bool = True) -> str:
    """What holds the migration's lock while the schema is at `revision`, not head: on SQLite,
    the file's write lock, which any long write also holds; on PostgreSQL, the migration lock,
    which only a migration holds."""
    if revision is None:
        if not sqlite:
            return f"is being migrated by another process (to revision {head_revision()})"
        return "is locked by another process (a migration or a long write)"
    return f"is being migrated by another process (from revision {revision} to {head_revision()})"


def _sqlite_locked(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" (SQLITE_BUSY): another connection held the write
    lock for longer than this one would wait."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.OperationalError) and (
        (code is not None and code & 0xFF == sqlite3.SQLITE_BUSY) or "database is locked" in str(orig))


def _committed_revision(path: Path) -> str | None:
    """The schema revision committed in the SQLite file, read without waiting for its writer
    (in WAL mode a reader sees the last commit); None when it cannot be read at once."""
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return None
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return None if row is None else str(row[0])


def _first_line(exc: BaseException) -> str:
    # Driver messages run over several lines (SQL, parameters, a link); the first says what happened.
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
