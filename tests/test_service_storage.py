"""Storage: migrations, what is stored, database outages and recovery, on SQLite and
(when TRIAGE_TEST_POSTGRES_URL is set, as .ci/run does) PostgreSQL; and the model
registry watch. Outages are real: the SQLite file's directory disappears, or the
TCP path to PostgreSQL is cut."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from postgres_db import POSTGRES_PARAM, POSTGRES_URL, migration_lock_held, throwaway_database
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy import text as text_sql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from model.artifact import sign_artifact
from model.text import PURGED_TEXT as PURGED
from model.text import join_fields
from service.app import create_app
from service.database import Base, Database, ReviewItem, TriageRecord, alembic_config, head_revision
from service.keys import create_key
from service.maintenance import Purged, purge_petitions, text_purged
from service.registry_watch import RegistryError, read_champion
from service.settings import Settings

PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资。我的电话13812345678。", "channel": "网上"}
TABLES = {"triages", "decisions", "review_items", "api_keys", "audit", "model_in_service"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpCut:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL. stop() closes the listening
    port and every relayed connection, as when the server or the network goes away;
    start() opens the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Backend:
    name: str
    url: str  # what the service connects to, through the fault
    direct_url: str  # what the test checks with, never cut
    down: Callable[[], None]
    up: Callable[[], None]

    @contextmanager
    def connect(self) -> Iterator[Any]:
        engine = create_engine(self.direct_url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.connect() as connection:
            return connection.execute(text(sql), params).scalar()


def sqlite_backend(tmp_path: Path) -> Backend:
    volume = tmp_path / "volume"
    away = tmp_path / "volume.unmounted"
    url = f"sqlite:///{volume / 'triage.db'}"

    def down() -> None:
        # The directory goes, as when its volume is unmounted. If there never was one,
        # a plain file takes its name so that nothing can bring it up too early.
        if volume.is_dir():
            volume.rename(away)
        else:
            volume.write_text("the database volume is not mounted", encoding="utf-8")

    def up() -> None:
        if volume.is_file():
            volume.unlink()
        if away.exists():
            away.rename(volume)

    return Backend("sqlite", url, url, down, up)


@contextmanager
def postgres_backend() -> Iterator[Backend]:
    with throwaway_database("triage_t") as database:
        cut = TcpCut(database.port or 5432)
        cut.start()
        direct = database.render_as_string(hide_password=False)
        through = database.set(host="127.0.0.1", port=cut.port).render_as_string(hide_password=False)
        try:
            yield Backend("postgresql", through, direct, cut.stop, cut.start)
        finally:
            cut.stop()


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield sqlite_backend(tmp_path)
    else:
        with postgres_backend() as pg:
            yield pg


def settings_for(url: str, model_dir: Path, **extra: Any) -> Settings:
    # Retry at once: the tests decide when the database is back.
    return Settings(database_url=url, model_dir=model_dir, database_retry_seconds=0, _env_file=None, **extra)


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.database.engine.dispose()


def make_keys(url: str, *roles: str) -> dict[str, str]:
    database = Database(url)
    try:
        with database.sessions() as session:
            return {role: create_key(session, role) for role in roles}
    finally:
        database.engine.dispose()


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@contextmanager
def statements_run() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement.strip().split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


# --- migrations -------------------------------------------------------------


def test_an_empty_database_is_migrated_and_a_second_start_changes_nothing(backend):
    database = Database(backend.url)
    assert database.migrate() == head_revision() == "0006"
    with backend.connect() as connection:
        assert set(inspect(connection).get_table_names()) == TABLES | {"alembic_version"}
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        # The revisions make exactly the tables the code declares.
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    database.engine.dispose()

    restarted = Database(backend.url)
    with statements_run() as seen:
        assert restarted.migrate() == head_revision()
    assert seen, "the second start did not look at the database at all"
    assert not {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"} & set(seen), seen
    assert restarted.check() is True
    restarted.engine.dispose()
    assert backend.scalar("SELECT count(*) FROM alembic_version") == 1


def test_a_database_from_before_migrations_is_adopted_and_upgraded(backend):
    config = alembic_config(backend.direct_url)
    # What create_all made before migrations existed is revision 0001 without the version table
    # (0001 was written to match it; the test above holds head to the current models).
    command.upgrade(config, "0001")
    with backend.connect() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.commit()
    keys = make_keys(backend.direct_url, "intake")
    # Revisions as the code before 0002 could store them: two decisions numbered 2 at once.
    with backend.connect() as connection:
        connection.execute(text(
            "INSERT INTO triages (id, created_at, title_masked, body_masked, model_version, division, "
            "division_confidence, risk, key_group, needs_review, suggestion) "
            "VALUES ('t1', CURRENT_TIMESTAMP, '', '正文', 'm', 'pension', 0.9, 'low', 'none', false, '{}')"))
        for revision, who in ((1, "a"), (2, "b"), (2, "c"), (3, "d")):
            connection.execute(text(
                "INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, decided_by, created_at) "
                "VALUES ('t1', :r, 'pension', 'low', 'none', true, :w, CURRENT_TIMESTAMP)"), {"r": revision, "w": who})
        connection.commit()

    database = Database(backend.url)
    assert database.migrate() == head_revision()
    database.engine.dispose()
    assert backend.scalar("SELECT version_num FROM alembic_version") == head_revision()
    assert backend.scalar("SELECT count(*) FROM api_keys WHERE prefix = :p", p=keys["intake"].split("_")[1]) == 1
    with backend.connect() as connection:
        renumbered = connection.execute(text("SELECT decided_by, revision FROM decisions ORDER BY id")).all()
        assert [tuple(r) for r in renumbered] == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
        with pytest.raises(IntegrityError):
            connection.execute(text(
                "INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, decided_by, created_at) "
                "VALUES ('t1', 4, 'pension', 'low', 'none', true, 'e', CURRENT_TIMESTAMP)"))
        connection.rollback()

    command.downgrade(config, "base")
    with backend.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}


def test_an_upgrade_masks_numbers_stored_with_other_separators_and_empties_purged_explanations(backend):
    # Before 0004 a phone number split by non-breaking spaces was stored in clear, and a purged
    # petition's explanation kept the words it quoted.
    config = alembic_config(backend.direct_url)
    command.upgrade(config, "0003")
    explanation = {"risk": {"label": "high", "terms": [{"term": "跳楼", "kind": "word", "weight": 1.2,
                                                         "spans": [{"start": 3, "end": 5, "text": "跳楼"}]}],
                            "rules": [{"rule": "risk.self_harm", "label": "high", "explain": "自伤", "spans": [
                                {"start": 3, "end": 5, "text": "跳楼"}]}]}}
    with backend.connect() as connection:
        for tid, body, suggestion in (("kept", "电话138\u00a01234\u00a05678，欠薪", {}),
                                      ("purged", PURGED, {"top3": [["pension", 0.9]], "explanation": explanation})):
            connection.execute(text(
                "INSERT INTO triages (id, created_at, title_masked, body_masked, model_version, division, "
                "division_confidence, risk, key_group, needs_review, suggestion) "
                "VALUES (:id, CURRENT_TIMESTAMP, '', :body, 'm', 'pension', 0.9, 'low', 'none', false, :s)"),
                {"id": tid, "body": body, "s": json.dumps(suggestion, ensure_ascii=False)})
        connection.commit()
    database = Database(backend.url)
    assert database.migrate() == head_revision()
    database.engine.dispose()
    with backend.connect() as connection:
        assert connection.execute(text("SELECT body_masked FROM triages WHERE id = 'kept'")).scalar() == "电话[手机号]，欠薪"
        stored = connection.execute(text("SELECT suggestion FROM triages WHERE id = 'purged'")).scalar()
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert "跳楼" not in json.dumps(stored, ensure_ascii=False)
    assert stored["top3"] == [["pension", 0.9]] and stored["explanation"]["risk"]["rules"][0]["rule"] == "risk.self_harm"


def _stored_after_upgrade(backend, tables: tuple[str, ...]) -> dict[str, list[dict]]:
    """Every row of `tables`, by table, once the database is upgraded to the head revision."""
    database = Database(backend.url)
    assert database.migrate() == head_revision()
    database.engine.dispose()
    with backend.connect() as connection:
        stored = {table: [dict(row._mapping) for row in connection.execute(text_sql(f"SELECT * FROM {table}"))]
                  for table in tables}
    return stored


def test_an_upgrade_masks_numbers_typed_with_several_separators_in_every_stored_field(backend):
    # Before 0005 a number with more than one separator between its groups was stored in
    # clear: in the text, in what staff wrote, and in the explanation's quotes of the text.
    config = alembic_config(backend.direct_url)
    command.upgrade(config, "0004")
    phone, landline = "138  1234  5678", "010 - 6234 5678"
    title, body = f"电话{phone}", f"我是中专毕业，电话{phone}，没有分配工作。"
    text = join_fields(title, body)

    def span(words: str, at: int | None = None) -> dict[str, Any]:
        start = text.index(words) if at is None else at
        return {"start": start, "end": start + len(words), "text": words}

    quoted = text[text.index("中专毕业") : text.index("没有分配") + 4]
    explanation = {"key_group": {"label": "graduates", "terms": [
        {"term": "分配", "kind": "word", "weight": 0.8, "spans": [span("分配")]},
        # Digits the model read inside the number: no place on the masked text.
        {"term": "1234", "kind": "char", "weight": 0.1, "spans": [span("1234")]}],
        "rules": [{"rule": "key_group.graduates", "label": "graduates", "explain": "毕业生", "spans": [span(quoted)]}]}}
    # Masked in its text by 0004, its explanation still quoting the number where it was.
    stale = {"risk": {"label": "low", "terms": [], "rules": [{"rule": "r", "label": "low", "explain": "", "spans": [
        {"start": 9, "end": 25, "text": "电话139\u00a08765\u00a04321，请处理"}]}]}}
    with backend.connect() as connection:
        for tid, row_title, row_body, number, suggestion in (
                ("typed", title, body, f"XF {phone}", {"top3": [["employment", 0.9]], "explanation": explanation}),
                ("by-0004", "欠薪", "老板欠薪三个月，电话[手机号]，请处理", None, {"explanation": stale})):
            connection.execute(text_sql(
                "INSERT INTO triages (id, external_id, created_at, title_masked, body_masked, model_version, division, "
                "division_confidence, risk, key_group, needs_review, suggestion) "
                "VALUES (:id, :number, CURRENT_TIMESTAMP, :title, :body, 'm', 'employment', 0.9, 'low', 'none', false, :s)"),
                {"id": tid, "number": number, "title": row_title, "body": row_body, "s": json.dumps(suggestion, ensure_ascii=False)})
        connection.execute(text_sql(
            "INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, decided_by, reason, created_at) "
            "VALUES ('typed', 1, 'employment', 'low', 'none', true, :who, :why, CURRENT_TIMESTAMP)"),
            {"who": f"受理员 {landline}", "why": f"已电话{phone}联系"})
        connection.execute(text_sql(
            "INSERT INTO review_items (triage_id, reason, status, created_at, resolved_by, note) "
            "VALUES ('typed', 'low_confidence', 'resolved', CURRENT_TIMESTAMP, :who, :note)"),
            {"who": f"复核员 {landline}", "note": f"回电{phone}"})
        connection.execute(text_sql(
            "INSERT INTO api_keys (prefix, key_hash, role, label, created_at) "
            "VALUES ('p1', 'h', 'intake', :label, CURRENT_TIMESTAMP)"), {"label": f"窗口 {landline}"})
        connection.execute(text_sql(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (CURRENT_TIMESTAMP, 'a', 'decision', 'typed', :d)"),
            {"d": json.dumps({"reason": f"电话{phone}"}, ensure_ascii=False)})
        connection.commit()

    stored = _stored_after_upgrade(backend, ("triages", "decisions", "review_items", "api_keys", "audit"))
    everything = json.dumps(stored, ensure_ascii=False, default=str)
    # No number, whatever separates its groups (a term of four digits the model read is no number).
    for number in (r"138\D{0,3}1234\D{0,3}5678", r"010\D{0,3}6234\D{0,3}5678", r"139\D{0,3}8765\D{0,3}4321"):
        assert not re.search(number, everything), number
    triages = {row["id"]: row for row in stored["triages"]}
    typed = triages["typed"]
    assert (typed["title_masked"], typed["body_masked"]) == ("电话[手机号]", "我是中专毕业，电话[手机号]，没有分配工作。")
    assert typed["external_id"] == "XF [手机号]"
    masked = join_fields(typed["title_masked"], typed["body_masked"])
    suggestion = json.loads(typed["suggestion"]) if isinstance(typed["suggestion"], str) else typed["suggestion"]
    assert suggestion["top3"] == [["employment", 0.9]]
    placed = suggestion["explanation"]["key_group"]
    # The evidence on the masked text: the rule's span across the number covers the mask whole.
    assert placed["rules"][0]["spans"] == [{"start": masked.index("中专"), "end": masked.index("没有分配") + 4,
                                            "text": "中专毕业，电话[手机号]，没有分配"}]
    assert placed["terms"][0]["spans"] == [{"start": masked.index("分配"), "end": masked.index("分配") + 2, "text": "分配"}]
    assert placed["terms"][1]["spans"] == []
    earlier = triages["by-0004"]
    suggestion = json.loads(earlier["suggestion"]) if isinstance(earlier["suggestion"], str) else earlier["suggestion"]
    masked = join_fields(earlier["title_masked"], earlier["body_masked"])
    assert suggestion["explanation"]["risk"]["rules"][0]["spans"] == [
        {"start": masked.index("电话"), "end": masked.index("电话") + len("电话[手机号]，请处理"), "text": "电话[手机号]，请处理"}]


def test_an_upgrade_masks_numbers_stored_with_tabs_between_their_groups(backend):
    # Before 0006 a tab was no separator: a number pasted from a spreadsheet, one group to a
    # cell, was stored in clear, in the text, in what staff wrote and in the explanation.
    config = alembic_config(backend.direct_url)
    command.upgrade(config, "0005")
    phone, card = "138\t1234\t5678", "6222\t0212\t3456\t7890"
    title, body = "欠薪", f"工资没发，电话{phone}，卡号{card}，请处理。"
    text = join_fields(title, body)
    quoted = text[text.index("工资") : text.index("请处理") + 3]
    explanation = {"risk": {"label": "low", "terms": [{"term": "工资", "kind": "word", "weight": 0.5, "spans": [
        {"start": text.index("工资"), "end": text.index("工资") + 2, "text": "工资"}]}],
        "rules": [{"rule": "r", "label": "low", "explain": "", "spans": [
            {"start": text.index(quoted), "end": text.index(quoted) + len(quoted), "text": quoted}]}]}}
    with backend.connect() as connection:
        connection.execute(text_sql(
            "INSERT INTO triages (id, external_id, created_at, title_masked, body_masked, model_version, division, "
            "division_confidence, risk, key_group, needs_review, suggestion) "
            "VALUES ('tabbed', :number, CURRENT_TIMESTAMP, :title, :body, 'm', 'labor', 0.9, 'low', 'none', false, :s)"),
            {"number": f"XF\t{phone}", "title": title, "body": body,
             "s": json.dumps({"top3": [["labor", 0.9]], "explanation": explanation}, ensure_ascii=False)})
        connection.execute(text_sql(
            "INSERT INTO decisions (triage_id, revision, division, risk, key_group, accepted, decided_by, reason, created_at) "
            "VALUES ('tabbed', 1, 'labor', 'low', 'none', true, 'a', :why, CURRENT_TIMESTAMP)"), {"why": f"已电话{phone}联系"})
        connection.execute(text_sql(
            "INSERT INTO review_items (triage_id, reason, status, created_at, resolved_by, note) "
            "VALUES ('tabbed', 'low_confidence', 'resolved', CURRENT_TIMESTAMP, 'b', :note)"), {"note": f"卡号{card}"})
        connection.execute(text_sql(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (CURRENT_TIMESTAMP, 'a', 'decision', 'tabbed', :d)"),
            {"d": json.dumps({"reason": f"电话{phone}"}, ensure_ascii=False)})
        connection.commit()

    stored = _stored_after_upgrade(backend, ("triages", "decisions", "review_items", "audit"))
    everything = json.dumps(stored, ensure_ascii=False, default=str)
    for number in (r"138\D{0,6}1234\D{0,6}5678", r"6222\D{0,6}0212\D{0,6}3456\D{0,6}7890"):
        assert not re.search(number, everything), number
    tabbed = stored["triages"][0]
    assert tabbed["body_masked"] == "工资没发，电话[手机号]，卡号[银行卡号]，请处理。"
    assert tabbed["external_id"] == "XF\t[手机号]"
    assert stored["decisions"][0]["reason"] == "已电话[手机号]联系"
    assert stored["review_items"][0]["note"] == "卡号[银行卡号]"
    masked = join_fields(tabbed["title_masked"], tabbed["body_masked"])
    suggestion = json.loads(tabbed["suggestion"]) if isinstance(tabbed["suggestion"], str) else tabbed["suggestion"]
    assert suggestion["top3"] == [["labor", 0.9]]
    # The rule's span across the numbers covers their masks whole on the masked text.
    assert suggestion["explanation"]["risk"]["rules"][0]["spans"] == [
        {"start": masked.index("工资"), "end": masked.index("请处理") + 3, "text": "工资没发，电话[手机号]，卡号[银行卡号]，请处理"}]
    assert suggestion["explanation"]["risk"]["terms"][0]["spans"] == [
        {"start": masked.index("工资"), "end": masked.index("工资") + 2, "text": "工资"}]


def test_an_upgrade_that_masks_every_stored_petition_says_how_far_it_has_come(backend, caplog):
    # 0005 and 0006 read every stored petition again, at the service's start: on a department's
    # database that is minutes, and the log said nothing from the start to "schema at revision".
    config = alembic_config(backend.direct_url)
    command.upgrade(config, "0004")
    with backend.connect() as connection:
        for number in range(3):
            connection.execute(text_sql(
                "INSERT INTO triages (id, created_at, title_masked, body_masked, model_version, division, "
                "division_confidence, risk, key_group, needs_review, suggestion) "
                "VALUES (:id, CURRENT_TIMESTAMP, '欠薪', :body, 'm', 'labor', 0.9, 'low', 'none', false, '{}')"),
                {"id": f"t{number}", "body": "工资没发，电话138  1234  5678，请处理。"})
        connection.execute(text_sql(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (CURRENT_TIMESTAMP, 'a', 'decision', 't0', '{}')"))
        connection.commit()
    caplog.set_level(logging.INFO, logger="service.migrations")
    database = Database(backend.url)
    assert database.migrate() == head_revision()
    database.engine.dispose()
    said = [record.getMessage() for record in caplog.records if record.name.startswith("service.migrations")]
    # Each of 0005 and 0006 says, per table, how many rows it goes through, and when it is done.
    for line in ("moving stored explanations onto the masked text: 3 rows of triages",
                 "masking stored text again: 3 rows of triages", "masking stored text again: 1 rows of audit"):
        assert said.count(line) == 2, said
    assert sum(re.fullmatch(r"masking stored text again: 3 rows of triages done in \d+ s", line) is not None
               for line in said) == 2, said
    # Counts only: no petition's words in the log.
    assert not any("工资" in line or "138" in line for line in said), said


def test_simultaneous_start_ups_migrate_once(backend):
    databases = [Database(backend.url) for _ in range(3)]
    barrier = threading.Barrier(len(databases))
    results: list[Any] = []

    def start(database: Database) -> None:
        barrier.wait()
        try:
            results.append(database.migrate())
        except Exception as exc:  # reported below with the others
            results.append(exc)

    threads = [threading.Thread(target=start, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [head_revision()] * len(databases)
    assert backend.scalar("SELECT count(*) FROM alembic_version") == 1
    for database in databases:
        database.engine.dispose()


def _tries_twice_and_says_it_waits(database, caplog, name):
    """Two attempts to migrate while another process migrates from 0005: no ERROR, one warning
    when the wait begins, then quieter lines while it goes on."""
    with caplog.at_level(logging.INFO, logger="service.database"):
        assert database.ensure_migrated() is False
        assert database.ensure_migrated() is False
    said = [(record.levelno, record.getMessage()) for record in caplog.records if record.name == "service.database"]
    assert not [line for level, line in said if level >= logging.ERROR], said
    waiting = f"database {name} is being migrated by another process (from revision 0005 to {head_revision()}); waiting"
    assert [level for level, line in said if line.startswith(waiting)] == [logging.WARNING, logging.INFO], said


def test_a_start_while_another_process_migrates_sqlite_says_so_without_an_error(tmp_path, monkeypatch, caplog):
    # A second worker (or a CLI command) started during the first one's long upgrade found the
    # file locked and logged an ERROR that the database was unavailable, alarming IT staff.
    monkeypatch.setattr("service.database.MIGRATION_BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "triage.db"
    command.upgrade(alembic_config(f"sqlite:///{path}"), "0005")
    migrating = sqlite3.connect(path, isolation_level=None)
    migrating.execute("BEGIN IMMEDIATE")  # as migration_engine's transactions begin
    database = Database(f"sqlite:///{path}", retry_seconds=0)
    try:
        _tries_twice_and_says_it_waits(database, caplog, str(path))
    finally:
        migrating.execute("ROLLBACK")
        migrating.close()
    assert database.ensure_migrated() is True
    database.engine.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="TRIAGE_TEST_POSTGRES_URL is not set (.ci/run sets it when it can start PostgreSQL)")
def test_a_start_while_another_process_migrates_postgresql_says_so_and_serves(monkeypatch, caplog, small_model_dir):
    # A worker started during another process's long migration of a PostgreSQL database waited
    # for the migration lock without a word, and so did the request that tried again, for as
    # long as that migration ran.
    monkeypatch.setattr("service.database.MIGRATION_BUSY_TIMEOUT_S", 0.2)
    with postgres_backend() as backend:
        command.upgrade(alembic_config(backend.direct_url), "0005")
        named = make_url(backend.direct_url).render_as_string(hide_password=True)
        with migration_lock_held(backend.direct_url, seconds=10) as end:
            database = Database(backend.direct_url, retry_seconds=0)
            _tries_twice_and_says_it_waits(database, caplog, named)
            with running(settings_for(backend.direct_url, small_model_dir)) as client:
                # The worker answers meanwhile: not ready, and the request that tried again gave up in time.
                asked = time.monotonic()
                assert client.get("/readyz").status_code == 503
                assert client.get("/healthz").status_code == 200
                assert time.monotonic() - asked < 5
                end()
                assert client.get("/readyz").status_code == 200
        assert database.ensure_migrated() is True
        database.engine.dispose()
    assert make_url(backend.direct_url).password not in caplog.text


def test_a_sqlite_file_already_at_head_is_ready_while_another_process_writes(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("service.database.MIGRATION_BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "triage.db"
    Database(f"sqlite:///{path}").migrate()
    writing = sqlite3.connect(path, isolation_level=None)
    writing.execute("BEGIN IMMEDIATE")  # e.g. another worker's long write
    try:
        database = Database(f"sqlite:///{path}", retry_seconds=0)
        with caplog.at_level(logging.WARNING, logger="service.database"):
            assert database.ensure_migrated() is True
        assert not caplog.records
    finally:
        writing.execute("ROLLBACK")
        writing.close()
    database.engine.dispose()


# --- what is stored ---------------------------------------------------------


def test_triages_are_stored_masked_and_decisions_as_revisions(backend, small_model_dir):
    with running(settings_for(backend.url, small_model_dir)) as client:
        key = make_keys(backend.url, "intake")["intake"]
        suggestion = client.post("/v1/triage", json=PETITION, headers=h(key)).json()
        assert suggestion["stored"] is True
        tid, predicted = suggestion["triage_id"], suggestion["division"]["code"]
        other = "external" if predicted != "external" else "pension"
        for division, who in ((predicted, "张三"), (other, "李四")):
            response = client.post("/v1/decisions", json={"triage_id": tid, "division": division, "decided_by": who},
                                   headers=h(key))
            assert response.status_code == 201, response.text
    with backend.connect() as connection:
        body = connection.execute(text("SELECT body_masked FROM triages WHERE id = :t"), {"t": tid}).scalar()
        assert "13812345678" not in body and "[手机号]" in body
        rows = connection.execute(text("SELECT revision, division, decided_by, accepted FROM decisions "
                                       "WHERE triage_id = :t ORDER BY revision"), {"t": tid}).all()
    assert [tuple(r) for r in rows] == [(1, predicted, "张三", True), (2, other, "李四", False)]


def _old_triage(database: Database, *ids: str) -> None:
    with database.sessions() as session:
        for tid in ids:
            session.add(TriageRecord(id=tid, created_at=datetime(2024, 3, 1, tzinfo=UTC), title_masked="标题",
                                     body_masked=f"老板拖欠工资半年，再不给就去跳楼（{tid}）", model_version="m",
                                     division="pension", division_confidence=0.9, risk="low", key_group="none",
                                     needs_review=False, suggestion={}))
        session.commit()


def test_a_purge_waits_for_a_review_item_being_opened_and_keeps_that_petitions_text(backend):
    # On PostgreSQL the purge read which petitions had an open item, then emptied the others:
    # an item a clerk's decision was opening at that moment was not seen, and the petition
    # stood in the queue with no text. SQLite's write lock serialised the two; PostgreSQL's
    # row locks must.
    database = Database(backend.direct_url)
    database.migrate()
    _old_triage(database, "judged", "routine")
    opening = database.sessions()
    opening.add(ReviewItem(triage_id="judged", reason="high_risk"))
    opening.flush()
    assert not text_purged(opening, "judged")
    done: list[Purged] = []
    purge = threading.Thread(target=lambda: done.append(purge_petitions(database, datetime.now(UTC), actor="test")))
    purge.start()
    purge.join(1.0)  # time for the purge to reach the petitions: it must wait for this session
    opening.commit()
    opening.close()
    purge.join(30)
    assert done == [Purged(petitions=1, awaiting_review=1)]
    with database.sessions() as session:
        assert session.get(TriageRecord, "judged").body_masked != PURGED
        assert session.get(TriageRecord, "routine").body_masked == PURGED
    database.engine.dispose()


def test_a_decision_made_while_a_purge_runs_does_not_queue_the_purged_petition(backend, small_model_dir):
    # The decision read the petition before the purge committed, found its text, and queued it
    # as the purge emptied it: an open item with nothing to review.
    purging = Database(backend.direct_url)
    purging.migrate()
    _old_triage(purging, "judged")
    reached = threading.Event()

    def hold_before_commit(session, *_: Any) -> None:
        reached.set()
        time.sleep(1.0)  # the decision is sent meanwhile, and must wait for this commit

    event.listen(purging.sessions, "before_commit", hold_before_commit)
    with running(settings_for(backend.url, small_model_dir)) as client:
        key = make_keys(backend.url, "intake")["intake"]
        purge = threading.Thread(target=purge_petitions, args=(purging, datetime.now(UTC), "test"))
        purge.start()
        assert reached.wait(30)
        decided = client.post("/v1/decisions", json={"triage_id": "judged", "division": "pension", "risk": "high",
                                                     "decided_by": "李四"}, headers=h(key))
        purge.join(30)
    assert decided.status_code == 409, decided.text
    with purging.sessions() as session:
        assert session.get(TriageRecord, "judged").body_masked == PURGED
        assert session.get(ReviewItem, "judged") is None
    purging.engine.dispose()


# --- outages ----------------------------------------------------------------


def test_an_outage_while_serving_then_recovery_without_a_restart(backend, small_model_dir, caplog):
    with running(settings_for(backend.url, small_model_dir)) as client:
        keys = make_keys(backend.url, "intake", "reviewer", "analyst")
        # Keys used before the outage are remembered; the analyst's is not used until during it.
        first = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
        assert first["stored"] is True
        assert client.get("/v1/review-queue", headers=h(keys["reviewer"])).status_code == 200

        backend.down()
        with caplog.at_level(logging.ERROR, logger="service"):
            lost = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"]))
        assert lost.status_code == 200 and lost.json()["stored"] is False
        assert lost.json()["division_top3"], "the suggestion itself must still be given"
        assert "not stored" in caplog.text
        decision = client.post("/v1/decisions", headers=h(keys["intake"]),
                               json={"triage_id": first["triage_id"], "division": "pension", "decided_by": "张三"})
        assert decision.status_code == 503 and "NOT recorded" in decision.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] is False and ready.json()["model"]
        assert client.get("/healthz").status_code == 200
        queue = client.get("/v1/review-queue", headers=h(keys["reviewer"]))
        assert queue.status_code == 503 and "database is unavailable" in queue.json()["detail"]
        unseen = client.get("/v1/stats", headers=h(keys["analyst"]))
        assert unseen.status_code == 503 and "cannot be checked" in unseen.json()["detail"]

        backend.up()
        assert client.get("/readyz").status_code == 200
        back = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
        assert back["stored"] is True
        decision = client.post("/v1/decisions", headers=h(keys["intake"]),
                               json={"triage_id": back["triage_id"], "division": "pension", "decided_by": "张三"})
        assert decision.status_code == 201
        assert client.get("/v1/stats", headers=h(keys["analyst"])).status_code == 200
    assert backend.scalar("SELECT count(*) FROM triages WHERE id = :t", t=lost.json()["triage_id"]) == 0
    assert backend.scalar("SELECT count(*) FROM triages") == 2
    assert backend.scalar("SELECT count(*) FROM decisions WHERE triage_id = :t", t=back["triage_id"]) == 1
    assert backend.scalar("SELECT count(*) FROM decisions WHERE triage_id = :t", t=first["triage_id"]) == 0


def test_a_file_locked_by_another_writer_holds_up_storage_not_suggestions(tmp_path, small_model_dir, monkeypatch):
    monkeypatch.setattr("service.database.SQLITE_BUSY_TIMEOUT_S", 0.5)
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    with running(settings_for(url, small_model_dir)) as client:
        keys = make_keys(url, "intake")
        first = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
        other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another program writing, e.g. a backup tool or a manual edit
        try:
            lost = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"]))
            assert lost.status_code == 200 and lost.json()["stored"] is False and lost.json()["division_top3"]
            decision = client.post("/v1/decisions", headers=h(keys["intake"]),
                                   json={"triage_id": first["triage_id"], "division": "pension", "decided_by": "张三"})
            assert decision.status_code == 503 and "NOT recorded" in decision.json()["detail"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()["stored"] is True
        decision = client.post("/v1/decisions", headers=h(keys["intake"]),
                               json={"triage_id": first["triage_id"], "division": "pension", "decided_by": "张三"})
        assert decision.status_code == 201


@pytest.mark.parametrize("fault", ["read-only", "read-only -wal", "full"])
def test_a_sqlite_database_that_cannot_be_written_is_not_ready(fault, tmp_path, small_model_dir, monkeypatch, caplog):
    # The state volume remounted read-only after a disk error, or filled up: SQLite still
    # opened and read the file, so /readyz said ready while every petition was answered
    # `stored: false` and every decision refused. A -wal file the service may not write (e.g.
    # left by an admin command run as root) makes SQLite open the database read-only too.
    path = tmp_path / "triage.db"
    wal = path.with_name("triage.db-wal")
    url = f"sqlite:///{path}"
    broken = {"now": False}
    real_access, real_statvfs = os.access, os.statvfs

    def access(target, mode, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fault == "read-only" and broken["now"] and mode & os.W_OK and Path(target) in (path, path.parent):
            return False  # what access(2) says on a read-only mount, to root too
        if fault == "read-only -wal" and broken["now"] and mode & os.W_OK and Path(target) == wal:
            return False
        return real_access(target, mode, *args, **kwargs)

    def statvfs(target):  # type: ignore[no-untyped-def]
        found = real_statvfs(target)
        if fault == "full" and broken["now"] and Path(target) == path.parent:
            return os.statvfs_result((*found[:4], 0, *found[5:]))  # f_bavail: nothing left
        return found

    monkeypatch.setattr("service.database.os.access", access)
    monkeypatch.setattr("service.database.os.statvfs", statvfs)
    with running(settings_for(url, small_model_dir)) as client:
        key = make_keys(url, "intake")["intake"]

        @event.listens_for(client.app.state.database.engine, "checkout")
        def _writes_fail(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.execute(f"PRAGMA query_only={int(broken['now'])}")

        assert client.get("/readyz").status_code == 200
        broken["now"] = True
        assert client.post("/v1/triage", json=PETITION, headers=h(key)).json()["stored"] is False
        with caplog.at_level(logging.ERROR, logger="service"):
            ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] is False and ready.json()["model"]
        assert f"database {path} cannot be written" in caplog.text
        why = {"read-only": f"{path} is read-only", "read-only -wal": f"{wal} is read-only", "full": "no space left"}
        assert why[fault] in caplog.text

        broken["now"] = False
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/triage", json=PETITION, headers=h(key)).json()["stored"] is True


@pytest.mark.parametrize("shm_left", [True, False], ids=["shm-left", "no-shm"])
def test_storing_resumes_without_a_restart_once_a_read_only_volume_is_writable(shm_left, tmp_path, small_model_dir, monkeypatch):
    # A service started on a read-only volume where a -shm file was left (by another process,
    # or one killed): SQLite, unable to open the file read-write, opened it read-only, and that
    # pooled connection kept answering "readonly database" after the volume was writable
    # again, every petition `stored: false` until a restart. Without a -shm SQLite cannot
    # open the file at all, so nothing was pooled and storing resumed by itself.
    path = tmp_path / "triage.db"
    url = f"sqlite:///{path}"
    made = Database(url)
    made.migrate()
    made.engine.dispose()
    key = make_keys(url, "intake")["intake"]
    other = sqlite3.connect(path, isolation_level=None)
    if shm_left:
        other.execute("SELECT count(*) FROM triages")  # keeps the -wal and -shm there
    else:
        other.close()
    assert path.with_name("triage.db-shm").exists() is shm_left
    broken = {"now": True}
    real_access = os.access

    def access(target, mode, *args, **kwargs):  # type: ignore[no-untyped-def]
        if broken["now"] and mode & os.W_OK and Path(target).parent == path.parent:
            return False  # what access(2) says on a read-only mount, to root too
        return real_access(target, mode, *args, **kwargs)

    def open_as_sqlite_does(_dialect, _record, cargs, cparams) -> None:  # type: ignore[no-untyped-def]
        # What SQLite does when it cannot open the file read-write (chmod does not stop root,
        # so the tests ask for it): it opens it read-only if it can read the -shm, and
        # otherwise fails on the connection's first statement.
        if broken["now"] and cparams.get("uri") and str(cargs[0]).startswith(f"file:{path}"):
            if not shm_left:
                raise sqlite3.OperationalError("attempt to write a readonly database")
            cargs[0] = str(cargs[0]).replace("mode=rw", "mode=ro")

    monkeypatch.setattr("service.database.os.access", access)
    event.listen(Engine, "do_connect", open_as_sqlite_does)
    try:
        with running(settings_for(url, small_model_dir)) as client:
            lost = client.post("/v1/triage", json=PETITION, headers=h(key))
            assert lost.status_code == 503 if not shm_left else lost.json()["stored"] is False
            assert client.get("/readyz").status_code == 503

            broken["now"] = False
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/triage", json=PETITION, headers=h(key)).json()["stored"] is True
            assert client.post("/v1/triage", json=PETITION, headers=h(key)).json()["stored"] is True
    finally:
        event.remove(Engine, "do_connect", open_as_sqlite_does)
        other.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM triages").fetchone() == (2,)


def test_a_database_down_at_start_up_is_migrated_when_it_comes(backend, small_model_dir):
    backend.down()
    with running(settings_for(backend.url, small_model_dir)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"ready": False, "model": ready.json()["model"], "database": False}
        refused = client.post("/v1/triage", json=PETITION, headers=h("pt_00000000_never-seen"))
        assert refused.status_code == 503 and "cannot be checked" in refused.json()["detail"]

        backend.up()
        # The first request after the database came back migrates it.
        assert client.get("/healthz").status_code == 200
        assert backend.scalar("SELECT version_num FROM alembic_version") == head_revision()
        assert client.get("/readyz").status_code == 200
        key = make_keys(backend.url, "intake")["intake"]
        assert client.post("/v1/triage", json=PETITION, headers=h(key)).json()["stored"] is True


def test_an_unreachable_postgresql_at_an_unused_port_does_not_stop_the_service(small_model_dir):
    url = f"postgresql+psycopg://triage:secret@127.0.0.1:{free_port()}/triage"
    started = time.monotonic()
    with running(settings_for(url, small_model_dir)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] is False
        assert client.post("/v1/triage", json=PETITION, headers=h("pt_00000000_x")).status_code == 503
        response = client.post("/v1/decisions", json={"triage_id": "x", "division": "pension", "decided_by": "x"},
                               headers=h("pt_00000000_x"))
        assert response.status_code == 503
    # Refused connections fail at once; nothing waits for a timeout.
    assert time.monotonic() - started < 20


# --- the model registry -----------------------------------------------------


def registry_version(registry: Path, small_model_dir: Path, name: str, version: str) -> Path:
    target = registry / "models" / name
    shutil.copytree(small_model_dir, target)
    meta_path = target / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["version"] = version  # a distinct version tells the copies apart
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    sign_artifact(target)  # as the registry signs what it registers
    return target


def promote(registry: Path, champion: str | None) -> None:
    tmp = registry / "registry.json.tmp"
    tmp.write_text(json.dumps({"champion": champion, "history": [{"version": champion}]}), encoding="utf-8")
    os.replace(tmp, registry / "registry.json")


@pytest.fixture
def registry(tmp_path: Path, small_model_dir: Path) -> Path:
    registry = tmp_path / "registry"
    registry_version(registry, small_model_dir, "2026q3", "2026q3-test")
    registry_version(registry, small_model_dir, "2026q4", "2026q4-test")
    broken = registry_version(registry, small_model_dir, "2027q1", "2027q1-test")
    with (broken / "model.joblib").open("r+b") as handle:
        handle.truncate(1000)
    promote(registry, "2026q3")
    return registry


def test_the_registry_champion_is_served_and_a_promotion_needs_no_restart(registry, tmp_path, small_model_dir, caplog):
    settings = settings_for(f"sqlite:///{tmp_path / 'db' / 'triage.db'}", tmp_path / "no-model-here",
                            registry_dir=registry, registry_poll_seconds=3600)
    with running(settings) as client:
        watch = client.app.state.registry_watch
        keys = make_keys(settings.database_url, "analyst", "intake")
        version = lambda: client.get("/v1/model", headers=h(keys["analyst"])).json()["version"]  # noqa: E731
        assert version() == "2026q3-test"
        assert watch.check() is None  # nothing changed: no reload

        promote(registry, "2026q4")
        assert watch.check() == "2026q4-test"
        assert version() == "2026q4-test"
        suggestion = client.post("/v1/triage", json=PETITION, headers=h(keys["intake"])).json()
        assert suggestion["model_version"] == "2026q4-test" and suggestion["stored"] is True

        with caplog.at_level(logging.ERROR, logger="service"):
            promote(registry, "2027q1")
            assert watch.check() is None
            assert watch.check() is None  # a broken champion is not retried until something changes
        assert caplog.text.count("champion 2027q1 not loaded") == 1 and "2026q4-test keeps serving" in caplog.text
        assert version() == "2026q4-test"
        for content in ("{not json", json.dumps({"champion": None}), json.dumps({"champion": "../../etc"})):
            (registry / "registry.json").write_text(content, encoding="utf-8")
            assert watch.check() is None
            assert version() == "2026q4-test"
        promote(registry, "2026q4")
        assert watch.check() is None  # already serving it

    with Database(settings.database_url).sessions() as session:
        promotions = session.execute(text("SELECT target FROM audit WHERE action = 'model.promote' ORDER BY id")).scalars().all()
    assert promotions == ["2026q3", "2026q4"]


def test_the_watcher_thread_picks_up_a_promotion_by_itself(registry, tmp_path, small_model_dir):
    settings = settings_for(f"sqlite:///{tmp_path / 'db' / 'triage.db'}", small_model_dir,
                            registry_dir=registry, registry_poll_seconds=0.05)
    with running(settings) as client:
        key = make_keys(settings.database_url, "analyst")["analyst"]
        promote(registry, "2026q4")
        deadline = time.monotonic() + 10
        while client.get("/v1/model", headers=h(key)).json()["version"] != "2026q4-test":
            assert time.monotonic() < deadline, "the watcher did not pick up the promotion within 10 s"
            time.sleep(0.05)
        thread = client.app.state.registry_watch._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive(), "the watcher thread outlived the application"


def test_without_a_usable_champion_the_configured_model_serves(registry, tmp_path, small_model_dir, small_model):
    promote(registry, "2027q1")
    settings = settings_for(f"sqlite:///{tmp_path / 'db' / 'triage.db'}", small_model_dir, registry_dir=registry,
                            registry_poll_seconds=3600)
    with running(settings) as client:
        key = make_keys(settings.database_url, "analyst")["analyst"]
        assert client.get("/v1/model", headers=h(key)).json()["version"] == small_model.version
        promote(registry, "2026q3")
        assert client.app.state.registry_watch.check() == "2026q3-test"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('["2026q3"]', "'champion' field"),
    ('{"champion": "../outside"}', "version name or null"),
    ('{"champion": 3}', "version name or null"),
])
def test_a_bad_registry_file_is_named_in_the_error(tmp_path, content, message):
    (tmp_path / "registry.json").write_text(content, encoding="utf-8")
    with pytest.raises(RegistryError, match=message) as error:
        read_champion(tmp_path)
    assert "registry.json" in str(error.value)
