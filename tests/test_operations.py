"""Operating the service from the command line: keys list and revoke, backup and
restore of a live SQLite database, purging old petition texts, log settings."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres_db import POSTGRES_URL, migration_lock_held, throwaway_database
from serving import CLI, ROOT

from model.artifact import load_model, signing_key
from service.database import AuditEntry, Database, DecisionRecord, ReviewItem, TriageRecord
from service.keys import create_key
from service.logs import JSONFormatter, log_config
from service.maintenance import PURGED
from service.settings import get_settings
from triage.cli import main


@pytest.fixture
def database(tmp_path: Path, monkeypatch) -> Database:
    url = f"sqlite:///{tmp_path / 'var' / 'triage.db'}"
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    get_settings.cache_clear()
    database = Database(url)
    database.migrate()
    yield database
    database.engine.dispose()
    get_settings.cache_clear()


def _triage(session, tid: str, created_at: datetime, body: str) -> None:
    session.add(TriageRecord(id=tid, created_at=created_at, title_masked="标题", body_masked=body, model_version="m",
                             division="pension", division_confidence=0.9, risk="low", key_group="none",
                             needs_review=False, suggestion={}))
    session.flush()
    session.add(DecisionRecord(triage_id=tid, revision=1, division="pension", risk="low", key_group="none",
                               accepted=True, decided_by="受理员", reason=None))


def test_keys_list_shows_no_secret_and_revoke_takes_a_whole_key(database, capsys):
    with database.sessions() as session:
        key = create_key(session, "reviewer", label="复核科")
        other = create_key(session, "intake")
        third = create_key(session, "analyst")
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key.split("_")[1] in listed and "reviewer" in listed and "复核科" in listed
    assert key not in listed and key.split("_", 2)[2] not in listed
    forged = f"pt_{other.split('_')[1]}_not-the-real-secret"
    assert main(["keys", "revoke", forged]) == 2  # same prefix, not the key: refused
    assert main(["keys", "revoke", key]) == 0
    assert main(["keys", "revoke", other.split("_")[1]]) == 0
    assert main(["keys", "revoke", "_".join(third.split("_")[:2])]) == 0  # the prefix as the key begins: pt_PREFIX
    assert main(["keys", "list"]) == 0
    assert capsys.readouterr().out.count("+00:00") >= 4  # created and revoked, with their offset



def test_keys_create_names_the_database_it_wrote_to(database, capsys):
    # Made from another directory, a key went into that directory's ./var/triage.db, and the
    # service answered it "unknown or revoked API key", with nothing to say where it went.
    assert main(["keys", "create", "--role", "intake"]) == 0
    assert f"in {database.url.removeprefix('sqlite:///')};" in capsys.readouterr().err


def test_a_key_label_longer_than_its_column_is_refused_before_the_database(database, capsys):
    # SQLite stored a label of any length; PostgreSQL's varchar(200) refused it with a traceback.
    with pytest.raises(SystemExit) as stopped:
        main(["keys", "create", "--role", "intake", "--label", "登" * 201])
    assert stopped.value.code == 2
    assert "--label: 201 characters; at most 200" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "intake", "--label", "  登记窗口 "]) == 0
    assert main(["keys", "list"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("登记窗口")
    with sqlite3.connect(database.url.removeprefix("sqlite:///")) as connection:
        assert connection.execute("SELECT label FROM api_keys").fetchall() == [("登记窗口",)]


def test_backup_of_a_live_database_restores_what_it_held(database, tmp_path: Path):
    with database.sessions() as session:
        _triage(session, "kept", datetime.now(UTC), "备份前的信访")
        session.commit()
    reader = sqlite3.connect(database.url.removeprefix("sqlite:///"))  # an open connection, as the service has
    backup = tmp_path / "backups" / "triage-backup.db"
    assert main(["backup", "--out", str(backup)]) == 0
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with database.sessions() as session:
        _triage(session, "after", datetime.now(UTC), "备份后的信访")
        session.commit()
    assert main(["restore", "--from", str(backup)]) == 0
    assert [r[0] for r in reader.execute("SELECT id FROM triages")] == ["kept"]
    with database.sessions() as session:
        assert session.get(TriageRecord, "after") is None and session.get(TriageRecord, "kept") is not None
    reader.close()



def test_backup_never_writes_over_the_live_database_or_a_file_that_is_not_a_backup(database, tmp_path: Path, capsys):
    # Renamed over the live database, the copy left the running service writing into the
    # unlinked file (lost at its restart); renamed over a ledger, the ledger was gone.
    live = Path(database.url.removeprefix("sqlite:///"))
    writer = sqlite3.connect(live)  # an open connection, as the running service has
    ledger = tmp_path / "台账.csv"
    ledger.write_text("编号,内容\nA1,欠薪\n", encoding="utf-8")
    for out, said in ((live, "is the database itself"), (ledger, "exists and is not a backup")):
        before = out.read_bytes()
        assert main(["backup", "--out", str(out)]) == 2
        assert said in capsys.readouterr().err
        assert out.read_bytes() == before
    assert writer.execute("SELECT count(*) FROM triages").fetchone() == (0,)  # still the live file
    writer.close()
    earlier = tmp_path / "nightly.db"
    assert main(["backup", "--out", str(earlier)]) == 0
    assert main(["backup", "--out", str(earlier)]) == 0  # last night's copy is replaced


def test_restore_refuses_a_file_that_is_not_a_backup(database, tmp_path: Path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert main(["restore", "--from", str(junk)]) == 2
    assert "junk.db" in capsys.readouterr().err


def test_restore_from_a_missing_file_says_so_and_changes_nothing(database, tmp_path: Path, capsys):
    with database.sessions() as session:
        create_key(session, "intake")
    before = (tmp_path / "var" / "triage.db").read_bytes()
    assert main(["restore", "--from", str(tmp_path / "nightly.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"triage restore: error: {tmp_path / 'nightly.db'}: no such file"
    assert (tmp_path / "var" / "triage.db").read_bytes() == before


def test_purge_empties_old_petition_texts_keeps_labels_and_is_audited(database):
    old, new = datetime(2024, 3, 1, tzinfo=UTC), datetime.now(UTC)
    with database.sessions() as session:
        _triage(session, "old", old, "很久以前的信访内容")
        _triage(session, "new", new, "最近的信访内容")
        session.commit()
    # Midnight in Beijing on 2025-01-01 is 16:00 UTC the day before.
    assert main(["purge", "--before", "2025-01-01T00:00:00+08:00"]) == 0
    with database.sessions() as session:
        assert session.get(TriageRecord, "old").body_masked == PURGED
        assert session.get(TriageRecord, "new").body_masked == "最近的信访内容"
        assert session.query(DecisionRecord).count() == 2
        audit = session.query(AuditEntry).filter_by(action="retention.purge").one()
        assert audit.detail == {"petitions": 1, "kept_awaiting_review": 0}
        assert audit.target.startswith("2025-01-01T00:00:00+08:00")
    assert main(["purge", "--before", "2025-01-01"]) == 0  # nothing left to purge: recorded as 0
    with database.sessions() as session:
        assert [a.detail["petitions"] for a in session.query(AuditEntry).filter_by(action="retention.purge")] == [1, 0]


def test_purge_reads_a_cut_off_without_an_offset_as_beijing_time(database, capsys):
    # The API and the pages read a time without an offset as Beijing time; `--before 2025-01-01`
    # was midnight UTC, eight hours into the office's 1 January, and took that morning's petitions.
    with database.sessions() as session:
        _triage(session, "evening", datetime(2024, 12, 31, 15, 0, tzinfo=UTC), "年底最后一天晚上的信访内容")  # 23:00 in Beijing
        _triage(session, "morning", datetime(2024, 12, 31, 17, 0, tzinfo=UTC), "元旦凌晨一点的信访内容")  # 01:00 on 1 January
        _triage(session, "at-nine", datetime(2025, 1, 1, 1, 30, tzinfo=UTC), "元旦上午九点半的信访内容")  # 09:30 on 1 January
        session.commit()
    assert main(["purge", "--before", "2025-01-01"]) == 0
    assert "triaged before 2025-01-01T00:00:00+08:00" in capsys.readouterr().err
    with database.sessions() as session:
        assert [t.id for t in session.query(TriageRecord).filter_by(body_masked=PURGED)] == ["evening"]
    assert main(["purge", "--before", "2025-01-01T09:00"]) == 0  # a time of day, also the office's
    with database.sessions() as session:
        assert {t.id for t in session.query(TriageRecord).filter_by(body_masked=PURGED)} == {"evening", "morning"}
        assert session.query(AuditEntry).filter_by(action="retention.purge").order_by(AuditEntry.id.desc()).first().target \
            == "2025-01-01T09:00:00+08:00"
    # Beijing's first day begins before UTC's first moment: said, not a traceback.
    with pytest.raises(SystemExit) as stopped:
        main(["purge", "--before", "0001-01-01"])
    assert stopped.value.code == 2 and "--before: '0001-01-01': before the first moment" in capsys.readouterr().err


def test_purge_keeps_the_text_of_a_petition_still_open_in_the_review_queue(database, capsys):
    # Purged with its review item still open, a high-risk petition stayed in the 研判 queue
    # with no title and no body: nobody could review it, and the case was lost unread.
    old = datetime(2024, 3, 1, tzinfo=UTC)
    with database.sessions() as session:
        for tid, status in (("waiting", "open"), ("reviewed", "resolved"), ("routine", None)):
            _triage(session, tid, old, f"老板拖欠工资半年，再不给就去跳楼（{tid}）")
            if status:
                session.add(ReviewItem(triage_id=tid, reason="high_risk", status=status, created_at=old,
                                       resolved_at=old if status == "resolved" else None))
        session.commit()
    assert main(["purge", "--before", "2025-01-01"]) == 0
    said = capsys.readouterr().err
    assert "purged the text of 2 petitions" in said and "1 still open in the review queue were kept" in said
    with database.sessions() as session:
        assert session.get(TriageRecord, "waiting").body_masked == "老板拖欠工资半年，再不给就去跳楼（waiting）"
        assert session.get(TriageRecord, "waiting").title_masked == "标题"
        assert {session.get(TriageRecord, tid).body_masked for tid in ("reviewed", "routine")} == {PURGED}
        audit = session.query(AuditEntry).filter_by(action="retention.purge").one()
        assert audit.detail == {"petitions": 2, "kept_awaiting_review": 1}
        item = session.get(ReviewItem, "waiting")
        item.status, item.resolved_by, item.resolved_at = "resolved", "研判员", datetime.now(UTC)
        session.commit()
    # Once reviewed, the next purge takes it.
    assert main(["purge", "--before", "2025-01-01"]) == 0
    assert "purged the text of 1 petitions" in capsys.readouterr().err
    with database.sessions() as session:
        assert session.get(TriageRecord, "waiting").body_masked == PURGED
        details = [a.detail for a in session.query(AuditEntry).filter_by(action="retention.purge").order_by(AuditEntry.id)]
        assert details[-1] == {"petitions": 1, "kept_awaiting_review": 0}


@pytest.mark.parametrize("command", [["keys", "list"], ["purge", "--before", "2025-01-01"]])
def test_commands_that_migrate_an_older_database_show_the_migrations_progress(command, tmp_path, monkeypatch, capsys):
    # After an upgrade, the first command to open the database runs 0005 and 0006, minutes on
    # a department's database: `triage serve` logs how far they are, these said nothing.
    from alembic import command as alembic

    from service.database import alembic_config, head_revision

    url = f"sqlite:///{tmp_path / 'var' / 'triage.db'}"
    alembic.upgrade(alembic_config(url), "0004")
    with sqlite3.connect(tmp_path / "var" / "triage.db") as connection:
        connection.execute("INSERT INTO triages (id, created_at, title_masked, body_masked, model_version, division, "
                           "division_confidence, risk, key_group, needs_review, suggestion) VALUES ('t0', "
                           "'2026-01-01 00:00:00', '欠薪', '工资没发', 'm', 'labor', 0.9, 'low', 'none', 0, '{}')")
    capsys.readouterr()
    assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=url) == 0
    said = capsys.readouterr().err.splitlines()
    for line in ("moving stored explanations onto the masked text: 1 rows of triages",
                 "masking stored text again: 1 rows of triages"):
        assert sum(re.fullmatch(rf"\[\d\d:\d\d:\d\d\] {line}", shown) is not None for shown in said) == 2, said
    # The migrations' lines only: not Alembic's own, nor anything else the service logs at INFO.
    assert all(re.match(r"\[\d\d:\d\d:\d\d\] ", shown) for shown in said), said
    assert not any("alembic" in shown.lower() or "Running upgrade" in shown or "工资" in shown for shown in said), said
    with sqlite3.connect(tmp_path / "var" / "triage.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
    assert logging.getLogger("service.migrations").level == logging.NOTSET  # left as it was found


@pytest.mark.parametrize("command", [["keys", "list"], ["purge", "--before", "2025-01-01"]])
def test_commands_wait_for_another_process_migrating_the_database_and_say_so(command, tmp_path, monkeypatch, capsys):
    # `triage serve` migrating a department's database after an upgrade holds its write lock for
    # minutes: these commands waited out the busy timeout, then failed with "database is locked;
    # check that it is reachable and writable", which sent IT staff to check a sound database.
    import threading

    from alembic import command as alembic

    from service.database import alembic_config, head_revision

    monkeypatch.setattr("service.database.MIGRATION_BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr("service.database.MIGRATION_FIRST_TRY_S", 0.2)
    path = tmp_path / "var" / "triage.db"
    url = f"sqlite:///{path}"
    alembic.upgrade(alembic_config(url), "0005")
    migrating = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    migrating.execute("BEGIN IMMEDIATE")  # as migration_engine's transactions begin
    finished = threading.Timer(1.5, lambda: migrating.execute("ROLLBACK"))
    finished.start()
    capsys.readouterr()
    try:
        assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=url) == 0
    finally:
        finished.join()
        migrating.close()
    said = capsys.readouterr().err
    waiting = f"database {path} is being migrated by another process (from revision 0005 to {head_revision()}); waiting"
    assert waiting in said, said
    assert "database is locked" not in said and "reachable and writable" not in said, said
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
    # A migration that does not finish within the wait: the command says so and gives up.
    alembic.downgrade(alembic_config(url), "0005")
    monkeypatch.setattr("service.database.MIGRATION_WAIT_S", 0.5)
    migrating = sqlite3.connect(path, isolation_level=None)
    migrating.execute("BEGIN IMMEDIATE")
    try:
        assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=url) == 2
    finally:
        migrating.execute("ROLLBACK")
        migrating.close()
    said = capsys.readouterr().err
    assert f"triage {command[0]}" in said and (f"error: database {path} is being migrated by another process (from "
                                               f"revision 0005 to {head_revision()}), still after") in said, said
    assert "database is locked" not in said, said


@pytest.mark.skipif(not POSTGRES_URL, reason="TRIAGE_TEST_POSTGRES_URL is not set (.ci/run sets it when it can start PostgreSQL)")
@pytest.mark.parametrize("command", [["keys", "list"], ["purge", "--before", "2025-01-01"]])
def test_commands_wait_for_another_process_migrating_a_postgresql_database_and_say_so(command, monkeypatch, capsys):
    # On PostgreSQL these commands waited for the migration lock without a word, for as long as
    # another process's migration ran (minutes on a department's database), as if they hung.
    from alembic import command as alembic
    from sqlalchemy import make_url

    from service.database import alembic_config, head_revision

    monkeypatch.setattr("service.database.MIGRATION_BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr("service.database.MIGRATION_FIRST_TRY_S", 0.2)
    with throwaway_database("triage_pgwait") as made:
        url = made.render_as_string(hide_password=False)
        named = make_url(url).render_as_string(hide_password=True)
        alembic.upgrade(alembic_config(url), "0005")
        capsys.readouterr()
        with migration_lock_held(url, seconds=1.5):
            assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=url) == 0
        said = capsys.readouterr().err
        waiting = f"database {named} is being migrated by another process (from revision 0005 to {head_revision()}); waiting"
        assert waiting in said, said
        assert made.password not in said, said
        assert _postgres_revision(url) == head_revision()
        # A migration that does not finish within the wait: the command says so and gives up.
        alembic.downgrade(alembic_config(url), "0005")
        monkeypatch.setattr("service.database.MIGRATION_WAIT_S", 0.5)
        with migration_lock_held(url, seconds=10):
            assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=url) == 2
        said = capsys.readouterr().err
        assert f"triage {command[0]}" in said and (f"error: database {named} is being migrated by another process (from "
                                                   f"revision 0005 to {head_revision()}), still after") in said, said
        assert made.password not in said, said
        assert _postgres_revision(url) == "0005"


def _postgres_revision(url: str) -> str | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_log_settings_give_the_level_and_json_lines_with_utc_timestamps():
    config = log_config("debug", as_json=True)
    assert config["loggers"]["triage"]["level"] == "DEBUG" and config["loggers"]["sqlalchemy"]["level"] == "WARNING"
    record = logging.LogRecord("service.app", logging.INFO, __file__, 1, "model %s", ("v1",), None)
    line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "model v1" and line["level"] == "INFO"
    assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)


def _main_with(monkeypatch, command: list[str], **environment: str) -> int:
    """`triage COMMAND` run with these TRIAGE_ settings set, read afresh."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        return main(command)
    finally:
        get_settings.cache_clear()


def test_an_unknown_log_level_is_refused(monkeypatch):
    assert _main_with(monkeypatch, ["serve", "--port", "1"], TRIAGE_LOG_LEVEL="loud") == 2



def test_purge_empties_the_title_of_a_petition_whose_body_is_the_placeholder(database):
    # A petition was taken for purged already when its body was the placeholder, whatever its
    # title: a petition sent with that body kept its title past the retention period.
    with database.sessions() as session:
        _triage(session, "old", datetime(2024, 3, 1, tzinfo=UTC), PURGED)
        session.commit()
    assert main(["purge", "--before", "2025-01-01"]) == 0
    with database.sessions() as session:
        record = session.get(TriageRecord, "old")
        assert (record.title_masked, record.body_masked) == ("", PURGED)
        assert session.query(AuditEntry).filter_by(action="retention.purge").one().detail["petitions"] == 1


def test_purge_takes_the_words_its_explanation_quotes_out_too(database):
    # Retention deleted the text, and GET /v1/triage still showed the words and spans the
    # explanation had quoted from it.
    quoted = {"division": {"label": "labor_inspection", "terms": [
        {"term": "宏达建筑", "kind": "word", "weight": 0.8, "spans": [{"start": 0, "end": 4, "text": "宏达建筑"}]}], "rules": []},
        "risk": {"label": "high", "terms": [], "rules": [{"rule": "risk.collective", "label": "high", "explain": "集体行动",
                                                          "spans": [{"start": 9, "end": 13, "text": "集体上访"}]}]}}
    with database.sessions() as session:
        _triage(session, "old", datetime(2024, 3, 1, tzinfo=UTC), "宏达建筑欠薪，我们要去集体上访")
        session.get(TriageRecord, "old").suggestion = {"top3": [["labor_inspection", 0.9]], "rules": ["risk.collective"],
                                                      "explanation": quoted}
        session.commit()
    assert main(["purge", "--before", "2025-01-01"]) == 0
    with database.sessions() as session:
        stored = session.get(TriageRecord, "old").suggestion
    assert "宏达" not in str(stored) and "集体上访" not in str(stored)
    assert stored["explanation"]["division"]["terms"] == [] and stored["explanation"]["risk"]["rules"][0]["spans"] == []
    assert stored["rules"] == ["risk.collective"] and stored["top3"] == [["labor_inspection", 0.9]]


def test_purge_refuses_a_cut_off_in_the_future(database, capsys):
    # A year typed wrong (2062 for 2026) deleted every petition's text, today's included.
    with database.sessions() as session:
        _triage(session, "today", datetime.now(UTC) - timedelta(minutes=5), "最近的信访内容，工资拖欠")
        session.commit()
    assert main(["purge", "--before", "2062-01-01"]) == 2
    assert "--before 2062-01-01T00:00:00+08:00 is in the future" in capsys.readouterr().err
    with database.sessions() as session:
        assert session.get(TriageRecord, "today").body_masked == "最近的信访内容，工资拖欠"
        assert session.query(AuditEntry).filter_by(action="retention.purge").count() == 0
    assert main(["purge", "--before", datetime.now(UTC).isoformat()]) == 0
    with database.sessions() as session:
        assert session.get(TriageRecord, "today").body_masked == PURGED


def test_the_export_writes_offsets_and_leaves_purged_petitions_out(database, tmp_path: Path, taxonomy):
    from training.decisions import read_decisions

    with database.sessions() as session:
        _triage(session, "old", datetime(2024, 3, 1, tzinfo=UTC), "很久以前的信访内容")
        _triage(session, "new", datetime(2026, 12, 6, 1, 0, tzinfo=UTC), "最近的信访内容，工资拖欠")
        session.commit()
    assert main(["purge", "--before", "2025-01-01"]) == 0
    out = tmp_path / "export.csv"
    assert main(["export-decisions", "--db", database.url.removeprefix("sqlite:///"), "--out", str(out)]) == 0
    exported = out.read_text(encoding="utf-8-sig")
    assert "很久以前" not in exported and PURGED not in exported
    assert "2026-12-06T09:00:00+08:00" in exported  # 01:00 UTC, in Beijing time with its offset
    again = read_decisions(out, taxonomy)
    assert list(again["id"]) == ["new"] and str(again["received_at"].iloc[0]) == "2026-12-06 09:00:00"



def test_export_decisions_never_writes_its_csv_over_a_database(database, tmp_path: Path, capsys):
    # --db and --out swapped, or the service's own triage.db given as --out: the CSV replaced
    # the database, every petition, decision and key in it gone.
    with database.sessions() as session:
        _triage(session, "kept", datetime(2026, 12, 6, 1, 0, tzinfo=UTC), "最近的信访内容，工资拖欠")
        session.commit()
    live = Path(database.url.removeprefix("sqlite:///"))
    other = tmp_path / "copy.db"
    assert main(["backup", "--out", str(other)]) == 0
    for out in (live, other):
        before = out.read_bytes()
        assert main(["export-decisions", "--db", str(live), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"triage export-decisions: error: {out}: is a SQLite database" in err, err
        assert out.read_bytes() == before
    with sqlite3.connect(live) as connection:
        assert connection.execute("SELECT count(*) FROM triages").fetchone() == (1,)


@pytest.mark.parametrize("command", [["backup", "--out", "copy.db"], ["restore", "--from", "copy.db"],
                                     ["purge", "--before", "2025-01-01"], ["keys", "list"], ["serve"]])
def test_a_wrong_setting_is_named_as_it_is_set_without_a_traceback(command, tmp_path):
    env = {**os.environ, "TRIAGE_HOME": str(tmp_path), "TRIAGE_WORKERS": "0"}
    done = subprocess.run([*CLI, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "TRIAGE_WORKERS: Input should be greater than or equal to 1" in done.stderr
    # Only the setting that is wrong: not the paths whose defaults could not be made because of it.
    assert "registry_dir" not in done.stderr.lower() and "signing_key_file" not in done.stderr.lower()
    assert not list(tmp_path.iterdir()), "nothing is written when the settings are wrong"


def test_export_decisions_before_the_service_has_run_creates_no_database(tmp_path, capsys):
    home = tmp_path / "var"
    home.mkdir()
    url = f"sqlite:///{home / 'triage.db'}"
    assert main(["export-decisions", "--db", url, "--out", str(tmp_path / "decisions.csv")]) == 2
    assert "database file not found" in capsys.readouterr().err
    # An empty file here would be a world-readable database the service later stores petitions in.
    assert not list(home.iterdir()) and not (tmp_path / "decisions.csv").exists()


@pytest.mark.parametrize("command", [["backup", "--out", "copy.db"], ["purge", "--before", "2025-01-01"],
                                     ["keys", "list"], ["keys", "revoke", "abcdefgh"]])
def test_commands_on_a_missing_sqlite_file_refuse_naming_it_and_create_none(command, tmp_path, monkeypatch, capsys):
    # A TRIAGE_HOME or TRIAGE_DATABASE_URL mistyped: an empty database made there would be
    # purged, listed or backed up "successfully" while the service's own stays untouched.
    missing = tmp_path / "var" / "triage.db"
    monkeypatch.chdir(tmp_path)
    assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=f"sqlite:///{missing}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", [["keys", "create", "--role", "intake"], ["keys", "list"],
                                     ["purge", "--before", "2025-01-01"]])
def test_commands_with_the_database_down_say_so_in_one_line_naming_it(command, monkeypatch, capsys):
    # PostgreSQL stopped (or a SQLite disk full or read-only): keys and purge ended in
    # SQLAlchemy's traceback, the driver's message buried at its end.
    url = f"postgresql+psycopg://triage:s3cret@127.0.0.1:{_closed_port()}/triage"
    assert _main_with(monkeypatch, command, TRIAGE_DATABASE_URL=url) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"triage {command[0]}: error: postgresql+psycopg://triage:***@127.0.0.1:")
    assert "Connection refused" in err and "s3cret" not in err


class _FullDisk:
    """sqlite3 as service/maintenance.py uses it, every file it writes to full: SQLite's own
    SQLITE_FULL, as a full backup disk or state volume gives."""

    Error, DatabaseError = sqlite3.Error, sqlite3.DatabaseError

    @staticmethod
    def connect(target, *args, **kwargs):  # type: ignore[no-untyped-def]
        connection = sqlite3.connect(target, *args, **kwargs)
        if "mode=ro" not in str(target):
            connection.execute("PRAGMA max_page_count=1")  # below the current size: nothing can be added
        return connection


def test_backup_and_restore_on_a_full_disk_say_so_and_leave_both_files_as_they_were(database, tmp_path: Path,
                                                                                    monkeypatch, capsys):
    from service import maintenance

    with database.sessions() as session:
        _triage(session, "kept", datetime.now(UTC), "备份前的信访")
        _triage(session, "large", datetime.now(UTC), "工资拖欠已有半年。" * 20000)
        session.commit()
    nightly = tmp_path / "nightly.db"
    assert main(["backup", "--out", str(nightly)]) == 0
    with database.sessions() as session:
        session.query(DecisionRecord).filter_by(triage_id="large").delete()
        session.query(TriageRecord).filter_by(id="large").delete()
        session.commit()
    live = Path(database.url.removeprefix("sqlite:///"))
    with sqlite3.connect(live) as connection:
        connection.execute("VACUUM")  # smaller than the backup: restoring it needs more space
    before = nightly.read_bytes()
    capsys.readouterr()

    monkeypatch.setattr(maintenance, "sqlite3", _FullDisk)
    assert main(["backup", "--out", str(nightly)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"triage backup: error: backing up {live} to {nightly} failed: database or disk is full; "
                   f"nothing was written to {nightly}")
    assert nightly.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["nightly.db", "var"]

    assert main(["restore", "--from", str(nightly)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"triage restore: error: restoring {nightly} into {live} failed: database or disk is full"
    with sqlite3.connect(live) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [r[0] for r in connection.execute("SELECT id FROM triages")] == ["kept"]


def test_a_signing_key_under_a_dotenv_home_is_the_one_commands_sign_with(tmp_path: Path, monkeypatch, small_model_dir):
    # TRIAGE_HOME in .env: the service looked for the key under it, while training and
    # `triage sign` signed with ./var/signing.key, and the service refused to start.
    for name in ("TRIAGE_HOME", "TRIAGE_SIGNING_KEY", "TRIAGE_SIGNING_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TRIAGE_HOME=state\n", encoding="utf-8")
    shutil.copytree(small_model_dir, tmp_path / "model")
    get_settings.cache_clear()
    try:
        assert main(["sign", "--model", "model"]) == 0
        assert "TRIAGE_HOME" not in os.environ  # put back as it was
        assert (tmp_path / "state" / "signing.key").is_file() and not (tmp_path / "var").exists()
        served_key = signing_key(create=False, key_file=get_settings().signing_key_file)
        assert load_model(tmp_path / "model", served_key).version
    finally:
        get_settings.cache_clear()
