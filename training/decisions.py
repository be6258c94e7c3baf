"""Intake decisions as training labels: a person's final division, risk and key
group for a petition, read from the service's database (SQLite file or any
SQLAlchemy URL, through SQLAlchemy Core: training never imports the service)
or from a ledger written by `triage export-decisions`.

The database stores times in UTC; they are shown here in China time (UTC+8),
the time the ledgers' 登记日期 are written in."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from model.taxonomy import HEADS, Taxonomy
from model.text import MASKED_NUMBER, PURGED_TEXT
from training.ledger import (
    CHINA_TIME,
    FORMULA_START,
    LedgerError,
    LedgerWarning,
    check_output,
    local_times,
    read_ledger,
    replaced_when_complete,
    spreadsheet_safe,
)

SQLITE_MAGIC = b"SQLite format 3\x00"
# The first seven columns make it a ledger that `triage train` / `retrain --data` read;
# the rest let `retrain --decisions` count overrides against the model's suggestion.
EXPORT_COLUMNS = ["id", "title", "body", "division", "risk", "key_group", "received_at",
                  "suggested_division", "suggested_risk", "suggested_key_group", "accepted",
                  "decided_by", "reason", "decided_at", "triage_id", "revision"]
_TEXT_COLUMNS = ("id", "title", "body", "decided_by", "reason")
_REQUIRED = {
    "triages": {"id", "external_id", "title_masked", "body_masked", "division", "risk", "key_group", "created_at"},
    "decisions": {"triage_id", "revision", "division", "risk", "key_group", "accepted", "decided_by", "reason",
                  "created_at"},
}


class DecisionsError(LedgerError):
    """Decisions that cannot be used; str() names the database or file, the triage or row, and the field."""


def is_database(source: str | Path) -> bool:
    if "://" in str(source):
        return True
    path = Path(source)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def source_name(source: str | Path) -> str:
    """`source` as messages name it: a database URL without its password (it is printed on
    the terminal and kept in logs; TRIAGE_DATABASE_URL carries the service's)."""
    if "://" not in str(source):
        return str(source)
    try:
        return make_url(str(source)).render_as_string(hide_password=True)
    except ArgumentError:
        return "the database URL given (not shown: it could not be read as a URL)"


def _sqlite_file(source: str | Path) -> Path | None:
    """The SQLite file `source` names, as a path or as a sqlite:/// URL (the service's
    TRIAGE_DATABASE_URL); None for another database."""
    if "://" not in str(source):
        return Path(source)
    url = make_url(str(source))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" and not url.query:
        return Path(url.database)
    return None


def _url(source: str | Path) -> str:
    file = _sqlite_file(source)
    if file is None:
        return str(source)
    # Read-only, a URL too: opening a missing file read-write would create an empty database,
    # world-readable, where the service later puts petitions.
    return f"sqlite:///file:{quote(str(file.resolve()))}?mode=ro&uri=true"


def _china_time(values: pd.Series) -> pd.Series:
    # Naive values from SQLite are UTC (the service writes UTC); aware ones are converted.
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    return parsed.dt.tz_convert(CHINA_TIME).dt.tz_localize(None).dt.as_unit("us")


def _check_labels(frame: pd.DataFrame, taxonomy: Taxonomy, source: str, where: pd.Series) -> None:
    for head in HEADS:
        allowed = set(taxonomy.codes(head))
        for value, place in zip(frame[head], where, strict=True):
            if value not in allowed:
                raise DecisionsError(source, f"{place}: unknown {head} {value!r} (the taxonomy defines: "
                                     f"{', '.join(taxonomy.codes(head))})", column=head)


def _from_database(source: str | Path, taxonomy: Taxonomy) -> pd.DataFrame:
    shown = source_name(source)
    file = _sqlite_file(source)
    if file is not None and not file.exists():
        raise DecisionsError(shown, "database file not found")
    engine = create_engine(_url(source))
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            for table, needed in _REQUIRED.items():
                if table not in tables:
                    raise DecisionsError(shown, f"no table '{table}': not a triage service database "
                                         f"(tables: {', '.join(tables) or 'none'})")
                columns = {c["name"] for c in inspect(connection).get_columns(table)}
                missing = sorted(needed - columns)
                if missing:
                    raise DecisionsError(shown, f"table '{table}' lacks column(s) {missing}")
            has_received = "received_at" in {c["name"] for c in inspect(connection).get_columns("triages")}
            # The only text put into the query is one of these two fixed strings.
            received = "t.received_at" if has_received else "NULL"
            # The latest revision per triage is the person's final word on it.
            rows = connection.execute(text(f"""
                SELECT t.id AS triage_id, t.external_id, t.title_masked AS title, t.body_masked AS body,
                       t.division AS suggested_division, t.risk AS suggested_risk,
                       t.key_group AS suggested_key_group, t.created_at AS triaged_at,
                       {received} AS received_at,
                       d.revision, d.division, d.risk, d.key_group, d.accepted, d.decided_by, d.reason,
                       d.created_at AS decided_at
                FROM decisions d
                JOIN triages t ON t.id = d.triage_id
                JOIN (SELECT triage_id, MAX(revision) AS revision FROM decisions GROUP BY triage_id) latest
                  ON latest.triage_id = d.triage_id AND latest.revision = d.revision
                WHERE t.body_masked <> :purged
                ORDER BY d.created_at, t.id
            """), {"purged": PURGED_TEXT}).mappings().all()
    except SQLAlchemyError as exc:
        raise DecisionsError(shown, f"cannot read the database ({type(exc).__name__}: {exc})") from None
    finally:
        engine.dispose()
    frame = pd.DataFrame([dict(r) for r in rows],
                         columns=["triage_id", "external_id", "title", "body", "suggested_division", "suggested_risk",
                                  "suggested_key_group", "triaged_at", "received_at", "revision", "division", "risk",
                                  "key_group", "accepted", "decided_by", "reason", "decided_at"])
    if frame.empty:
        return pd.DataFrame(columns=EXPORT_COLUMNS)
    frame["external_id"] = frame["external_id"].fillna("").astype(str).str.strip()
    # A case number stored masked no longer tells one petition from another.
    masked = frame["external_id"].str.contains(MASKED_NUMBER)
    if masked.any():
        # Taken as one petition, the decisions on every case number masked alike were one,
        # and all but the last were dropped without a word.
        warnings.warn(f"{shown}: {int(masked.sum())} decisions have a case number that was stored masked because it "
                      f"looks like an ID, card or phone number (e.g. {frame.loc[masked, 'external_id'].iloc[0]!r}); "
                      "they cannot be matched to ledger rows and are kept under their triage ids", LedgerWarning,
                      stacklevel=2)
    named = (frame["external_id"] != "") & ~masked
    frame["id"] = frame["external_id"].where(named, frame["triage_id"].astype(str))
    _check_labels(frame, taxonomy, shown, "triage " + frame["triage_id"].astype(str))
    frame["decided_at"] = _china_time(frame["decided_at"])
    frame["received_at"] = _china_time(frame["received_at"]).fillna(_china_time(frame["triaged_at"]))
    frame["accepted"] = frame["accepted"].map(lambda v: None if v is None else bool(int(v)))
    for column in ("title", "body", "decided_by", "reason", "suggested_division", "suggested_risk",
                   "suggested_key_group"):
        frame[column] = frame[column].fillna("").astype(str)
    frame["revision"] = frame["revision"].astype(int)
    return _latest_per_petition(frame)[EXPORT_COLUMNS]


def _latest_per_petition(frame: pd.DataFrame) -> pd.DataFrame:
    # A petition triaged twice (same external id) has two decisions; the later one stands.
    frame = frame.sort_values(["decided_at", "triage_id"], kind="stable", na_position="first")
    return frame.drop_duplicates("id", keep="last").reset_index(drop=True)


def _unprotect(value: str) -> str:
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_START else value


def _from_export(path: Path, taxonomy: Taxonomy) -> pd.DataFrame:
    core = read_ledger(path, taxonomy)
    frame = pd.DataFrame({c: core[c] for c in ("id", "title", "body", *HEADS)})
    frame["received_at"] = core["received_at"] if "received_at" in core.columns else pd.NaT
    extras = pd.DataFrame()
    if path.suffix.lower() == ".csv":
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                extras = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
                break
            except UnicodeDecodeError:
                continue
    if len(extras) != len(frame):
        extras = pd.DataFrame(index=frame.index)
    for column in EXPORT_COLUMNS[7:]:
        frame[column] = extras[column].to_numpy() if column in extras.columns else ""
    for column in _TEXT_COLUMNS:
        frame[column] = frame[column].astype(str).map(_unprotect)
    frame["accepted"] = frame["accepted"].map({"true": True, "false": False, "1": True, "0": False}.get)
    frame["decided_at"] = local_times(frame["decided_at"].astype(str).replace("", None))
    frame["revision"] = pd.to_numeric(frame["revision"].replace("", None), errors="coerce")
    return frame[EXPORT_COLUMNS].reset_index(drop=True)


def read_decisions(source: str | Path, taxonomy: Taxonomy) -> pd.DataFrame:
    """One row per petition with the final human labels (columns EXPORT_COLUMNS).

    `suggested_*` are the model's suggestions ('' when the source does not have them),
    `accepted` is None when unknown."""
    if is_database(source):
        return _from_database(source, taxonomy)
    path = Path(source)
    if not path.exists():
        raise DecisionsError(path, "file not found (expected the service's SQLite database or a file "
                                   "written by `triage export-decisions`)")
    return _from_export(path, taxonomy)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, pd.Timestamp):
        # Times here are Beijing wall-clock time; written with their offset so nobody takes them for UTC.
        return (value.tz_localize(CHINA_TIME) if value.tzinfo is None else value).isoformat(timespec="seconds")
    return str(value)


def write_export(frame: pd.DataFrame, out: str | Path) -> Path:
    """The decisions as a UTF-8 (BOM, for Excel) CSV ledger, owner-only (it holds the masked
    petition text), written to a temporary file and renamed."""
    with replaced_when_complete(out) as tmp, tmp.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for record in frame[EXPORT_COLUMNS].to_dict("records"):
            row = {k: _cell(v) for k, v in record.items()}
            writer.writerow({k: spreadsheet_safe(v) if k in _TEXT_COLUMNS else v for k, v in row.items()})
    return Path(out)


def export_decisions(source: str | Path, out: str | Path, taxonomy: Taxonomy) -> int:
    # `--out` is the CSV to write, `--db` the database to read: a database given as --out
    # (the two swapped, or the service's own triage.db) was replaced by the CSV, every
    # petition, decision and key in it gone.
    if "://" not in str(out) and is_database(out):
        raise DecisionsError(out, "is a SQLite database; --out names the CSV file to write (the database to read "
                                  "is --db). Choose another --out file")
    check_output(out, [])
    frame = read_decisions(source, taxonomy)
    write_export(frame, out)
    return len(frame)
