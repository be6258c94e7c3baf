"""Reading past petitions (台账 exports): CSV, XLSX or JSONL, English or
Chinese headers, codes or Chinese display names. Every problem is reported
with the file, the row as a person sees it in a spreadsheet, and the column."""

from __future__ import annotations

import codecs
import io
import json
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from pathlib import Path

import pandas as pd

from model.taxonomy import HEADS, Taxonomy

# Ledger dates are the petition office's wall-clock time.
CHINA_TIME = timezone(timedelta(hours=8))
_WITH_OFFSET = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?\s*(?:Z|[+-][0-9]{2}:?[0-9]{2})$"


def local_times(values: pd.Series) -> pd.Series:
    """Dates and times as Beijing wall-clock time (naive): values with an offset (as
    export-decisions writes them) are converted, values without one are taken as they are."""
    values = values.astype("string").str.strip()
    has_offset = values.str.contains(_WITH_OFFSET, regex=True, na=False)
    parsed = pd.to_datetime(values.where(~has_offset), errors="coerce", format="mixed")
    if has_offset.any():
        aware = pd.to_datetime(values.where(has_offset), errors="coerce", format="mixed", utc=True)
        parsed = parsed.where(~has_offset, aware.dt.tz_convert(CHINA_TIME).dt.tz_localize(None))
    return parsed

MAX_LEDGER_BYTES = 100 * 1024 * 1024
# The compound-file signature of Excel 97-2003 .xls workbooks and of password-protected .xlsx.
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# Header spellings seen in real 台账 exports, per canonical column.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "信访编号", "件号", "登记编号", "序号", "信访件编号"),
    "title": ("title", "标题", "信访事项", "事项", "主题", "信访标题", "事由"),
    "body": ("body", "内容", "诉求内容", "来信内容", "正文", "信访内容", "反映内容", "主要诉求", "诉求"),
    "division": ("division", "责任处室", "承办处室", "处室", "承办单位", "责任单位", "分办处室"),
    "risk": ("risk", "风险等级", "风险", "风险级别", "紧急程度"),
    "key_group": ("key_group", "重点群体", "群体", "群体类别", "重点群体类别"),
    "received_at": ("received_at", "登记日期", "来信日期", "受理日期", "登记时间", "来信时间", "日期"),
    # Marks petitions written by a generator (the bundled corpus), not by citizens.
    "synthetic": ("synthetic", "生成数据"),
    # Petitions about one matter, or generated from one corpus scenario, share a value;
    # training keeps them together when it scores petitions out-of-fold.
    "matter": ("matter", "事项编号"),
    # The board, city or office a petition reached: thresholds are chosen on petitions
    # scored by models that did not see their board (training/train.py, matter_groups).
    "board": ("board", "source", "地市", "来源地区"),
}
TRUE_VALUES = {"true", "1", "yes", "y", "是"}
# Common ways a ledger writes a risk level or "no key group".
RISK_ALIASES = {"低": "low", "中": "medium", "高": "high", "低风险": "low", "中风险": "medium", "高风险": "high",
                "一般": "low", "较高": "medium", "紧急": "high"}
NONE_ALIASES = {"", "无", "否", "none", "非重点群体", "-", "/"}


class LedgerError(ValueError):
    """A ledger that cannot be used; str() names the file, row and column."""

    def __init__(self, path: str | Path, message: str, row: int | None = None, column: str | None = None) -> None:
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.column = str(path), row, column


@dataclass
class Ledger:
    frame: pd.DataFrame  # id, title, body, [division, risk, key_group], [received_at], source, row
    sources: list[str]
    duplicates_dropped: int = 0
    warnings: list[str] = field(default_factory=list)


def _decode(path: Path, raw: bytes) -> str:
    # Excel's "Unicode Text" export is UTF-16 with a byte-order mark.
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LedgerError(path, f"unreadable UTF-16 text (invalid data at byte {exc.start}); "
                                    "re-export the file as UTF-8 CSV or XLSX") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as gbk_error:
            line = raw[: gbk_error.start].count(b"\n") + 1
            raise LedgerError(
                path,
                f"unreadable encoding: not UTF-8 (byte {utf8_error.start}) nor GBK/GB18030 "
                f"(invalid byte 0x{raw[gbk_error.start]:02x} at byte {gbk_error.start}, line {line}); "
                "re-export the file as UTF-8 CSV or XLSX",
            ) from None


def _not_text(path: Path, raw: bytes) -> str:
    """Why a file with NUL bytes is not a ledger, in terms a person can act on."""
    if raw.startswith(OLE2_MAGIC):
        return ("an Excel 97-2003 workbook (.xls) or a password-protected workbook; "
                "save it without a password as .xlsx or UTF-8 CSV")
    head = raw[:4096]
    if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
        return "UTF-16 text without a byte-order mark; re-export the file as UTF-8 CSV or XLSX"
    return "binary data, not a CSV/JSONL text file"


def _delimiter(text: str) -> str:
    # Excel's "Text (tab delimited)" and "Unicode Text" exports separate columns with tabs.
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    return "\t" if "\t" in header and "," not in header else ","


def _read_raw(path: Path) -> tuple[pd.DataFrame, int]:
    """The file as strings, and the spreadsheet row number of its first data row."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        with path.open("rb") as handle:
            if handle.read(len(OLE2_MAGIC)) == OLE2_MAGIC:
                raise LedgerError(path, _not_text(path, OLE2_MAGIC))
        try:
            # data_only=False: a formula is read as the text of the formula, never as a value
            # Excel computed (a cell "=HYPERLINK(...)" stays that text, and is never evaluated).
            frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl",
                                  engine_kwargs={"data_only": False})
        except Exception as exc:  # openpyxl raises many types for a damaged workbook
            raise LedgerError(path, f"not a readable XLSX workbook ({type(exc).__name__}: {exc})") from None
        for column in frame.columns:
            # Array formulas come back as openpyxl objects whose text pandas cannot give.
            odd = frame[column].astype(str).str.startswith("<openpyxl.worksheet.formula.")
            if odd.any():
                raise LedgerError(path, "an array formula; replace it by its value (paste as values)",
                                  row=2 + int(odd.to_numpy().nonzero()[0][0]), column=str(column))
        return frame, 2
    raw = path.read_bytes()
    if b"\x00" in raw[:4096] and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise LedgerError(path, _not_text(path, raw))
    text = _decode(path, raw)
    if not text.strip():
        raise LedgerError(path, "the file is empty")
    if text.lstrip("\ufeff \t\r\n")[:1] == "<":
        # What many web systems' "export to Excel" writes under an .xls name.
        raise LedgerError(path, "an HTML or XML page, not a CSV/JSONL file; open it in Excel and save it as .xlsx or UTF-8 CSV")
    if suffix in (".jsonl", ".ndjson", ".json"):
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LedgerError(path, f"not valid JSON ({exc.msg})", row=number) from None
            if not isinstance(record, dict):
                raise LedgerError(path, "each line must be a JSON object", row=number)
            records.append({k: "" if v is None else str(v) for k, v in record.items()})
        return pd.DataFrame.from_records(records), 1
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=False,
                            sep=_delimiter(text))
    except pd.errors.ParserError as exc:
        raise LedgerError(path, f"not a valid CSV file ({exc})") from None
    except pd.errors.EmptyDataError:
        raise LedgerError(path, "the file is empty") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas turns the surplus leading fields into an index and shifts every column by as many.
        raise LedgerError(path, f"the data rows have more fields than the {len(frame.columns)} columns of the header "
                                "(a comma at the end of each line, or an unquoted comma inside a field?)", row=2)
    return frame, 2


def _rename(path: Path, frame: pd.DataFrame, required: tuple[str, ...]) -> pd.DataFrame:
    mapping: dict[str, str] = {}
    for column in frame.columns:
        name = str(column).strip().lstrip("\ufeff")
        for canonical, aliases in HEADER_ALIASES.items():
            if name in aliases or name.lower() == canonical:
                if canonical in mapping.values():
                    raise LedgerError(path, f"two columns map to '{canonical}' (one is '{name}')", column=name)
                mapping[column] = canonical
                break
    frame = frame.rename(columns=mapping)[list(dict.fromkeys(mapping.values()))]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        accepted = "; ".join(f"{c}: {'/'.join(HEADER_ALIASES[c])}" for c in missing)
        raise LedgerError(path, f"missing column(s) {missing} (accepted headers: {accepted})")
    return frame


def _resolve_labels(path: Path, frame: pd.DataFrame, first_row: int, taxonomy: Taxonomy) -> None:
    for head in HEADS:
        codes = []
        for i, value in enumerate(frame[head].astype(str)):
            value = value.strip()
            code = taxonomy.resolve(head, value)
            if code is None and head == "risk":
                code = RISK_ALIASES.get(value) or taxonomy.resolve(head, value.lower())
            if code is None and head == "key_group" and value.lower() in NONE_ALIASES:
                code = "none"
            if code is None:
                allowed = ", ".join(taxonomy.codes(head))
                raise LedgerError(
                    path, f"unknown {head} {value!r} (the taxonomy defines: {allowed}, or their Chinese names)",
                    row=first_row + i, column=head,
                )
            codes.append(code)
        frame[head] = codes


def read_ledger(path: str | Path, taxonomy: Taxonomy, require_labels: bool = True,
                max_bytes: int | None = None) -> pd.DataFrame:
    path = Path(path)
    if max_bytes is None:
        max_bytes = MAX_LEDGER_BYTES  # looked up now, so that the limit can be changed at run time
    if not path.exists():
        raise LedgerError(path, "file not found")
    if path.is_dir():
        raise LedgerError(path, "is a directory, expected a CSV, XLSX or JSONL file")
    size = path.stat().st_size
    if size > max_bytes:
        raise LedgerError(path, f"file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit; "
                                "split the ledger into several files and pass each with --data")
    if size == 0:
        raise LedgerError(path, "the file is empty")
    frame, first_row = _read_raw(path)
    if frame.empty:
        raise LedgerError(path, "no data rows (header only)")
    required = ("id", "body") + (HEADS if require_labels else ())
    frame = _rename(path, frame, required)
    if "title" not in frame.columns:
        frame["title"] = ""
    frame = frame.fillna("").astype(str)
    frame["row"] = range(first_row, first_row + len(frame))
    frame["source"] = str(path)
    for i, (pid, title, body) in enumerate(zip(frame["id"], frame["title"], frame["body"], strict=True)):
        if not pid.strip():
            raise LedgerError(path, "empty id", row=first_row + i, column="id")
        if not (title.strip() or body.strip()):
            raise LedgerError(path, "empty petition text (title and body are both empty)", row=first_row + i, column="body")
    frame["id"] = frame["id"].str.strip()
    frame["synthetic"] = (frame["synthetic"].str.strip().str.lower().isin(TRUE_VALUES)
                          if "synthetic" in frame.columns else False)
    if require_labels:
        _resolve_labels(path, frame, first_row, taxonomy)
    if "received_at" in frame.columns:
        parsed = local_times(frame["received_at"].str.strip().replace("", None))
        bad = frame["received_at"].str.strip().ne("") & parsed.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise LedgerError(path, f"not a date: {frame['received_at'].iloc[i]!r}", row=first_row + i, column="received_at")
        frame["received_at"] = parsed
    return frame


def read_ledgers(paths: list[str | Path], taxonomy: Taxonomy, require_labels: bool = True) -> Ledger:
    """All files as one frame; a petition listed twice with the same labels is kept once,
    with different labels it is an error that names both places."""
    if not paths:
        raise LedgerError("--data", "no ledger given")
    frames = [read_ledger(p, taxonomy, require_labels) for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    dropped = 0
    if require_labels:
        seen: dict[str, int] = {}
        keep = []
        for i, (pid, *labels) in enumerate(zip(frame["id"], *(frame[h] for h in HEADS), strict=True)):
            if pid in seen:
                j = seen[pid]
                first = tuple(frame.loc[j, h] for h in HEADS)
                if first != tuple(labels):
                    raise LedgerError(
                        frame.loc[i, "source"],
                        f"duplicate id {pid!r} with different labels {tuple(labels)} vs {first} "
                        f"at {frame.loc[j, 'source']} row {frame.loc[j, 'row']}",
                        row=int(frame.loc[i, "row"]), column="id",
                    )
                dropped += 1
                continue
            seen[pid] = i
            keep.append(i)
        frame = frame.iloc[keep].reset_index(drop=True)
    return Ledger(frame=frame, sources=[str(p) for p in paths], duplicates_dropped=dropped)
