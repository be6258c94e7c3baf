"""Reading past petitions (台账 exports): CSV, XLSX, XLS or JSONL, English or
Chinese headers, codes or Chinese display names, as offices keep them: a
title row above the header, a row counter (序号) beside the case number (编号),
dates written the Chinese way or as Excel serial numbers, the data on another
sheet than the first, merged cells. Every problem is reported with the file,
the sheet, the row as a person sees it in a spreadsheet, and the column."""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from model.office_time import CHINA_TIME
from model.taxonomy import HEADS, Taxonomy
from model.text import has_text
from training.memory import SKIP_VARIABLE, available_bytes

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
# The file endings a ledger is saved under, as the 登记 page takes them: workbooks (with
# macros too), CSV, Excel's "文本文件(制表符分隔)" and "Unicode 文本" (.txt, tab-separated),
# TSV and JSONL. The reader goes by content; these are what a person is told to upload.
LEDGER_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv", ".txt", ".tsv", ".jsonl")
# Memory to read a workbook whole, per byte of its sheets unpacked (their XML and shared
# strings), with room for the second reading of the values saved with formulas.
WORKBOOK_BYTES_PER_SHEET_BYTE = 8
# The compound-file signature of Excel 97-2003 .xls workbooks and of password-protected .xlsx.
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"

# Header spellings seen in real 台账 exports, per canonical column.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "编号", "信访编号", "件号", "登记编号", "信访件编号"),
    "title": ("title", "标题", "信访事项", "事项", "主题", "信访标题", "事由"),
    "body": ("body", "内容", "诉求内容", "来信内容", "正文", "信访内容", "反映内容", "主要诉求", "诉求"),
    "division": ("division", "责任处室", "承办处室", "处室", "承办单位", "责任单位", "分办处室"),
    "risk": ("risk", "风险等级", "风险", "风险级别", "紧急程度"),
    "key_group": ("key_group", "重点群体", "群体", "群体类别", "重点群体类别"),
    # 收件日期 is the 登记 page's own word for it (its form and its messages).
    "received_at": ("received_at", "登记日期", "来信日期", "受理日期", "登记时间", "来信时间", "日期", "收件日期",
                    "收件时间", "收到日期", "信访日期"),
    # Marks petitions written by a generator (the bundled corpus), not by citizens.
    "synthetic": ("synthetic", "生成数据"),
    # Petitions about one matter, or generated from one corpus scenario, share a value;
    # training keeps them together when it scores petitions out-of-fold.
    "matter": ("matter", "事项编号"),
    # The board, city or office a petition reached: thresholds are chosen on petitions
    # scored by models that did not see their board (training/train.py, matter_groups).
    "board": ("board", "source", "地市", "来源地区"),
}
# Body headers that name the petitioner's request (主要诉求), which offices often keep in a
# column of its own beside the account of the matter (信访内容): the two are one body, the
# account first. Two columns of one kind are still two of one meaning.
REQUEST_HEADERS = ("主要诉求", "诉求")
# The canonical name of the request's column while a chunk is read; joined into the body.
BODY_REQUEST = "body_request"
# The columns every command reads: which of two is meant cannot be guessed.
TEXT_COLUMNS = ("id", "title", "body")
# 序号 numbers the rows of a printed ledger (1, 2, 3 …) and changes whenever rows are
# sorted or deleted: it identifies a petition only in a ledger that has no case number.
ROW_COUNTER = "序号"
# Every header spelling the reader knows, as _header_text writes it (English ones in any case).
KNOWN_HEADERS = frozenset({ROW_COUNTER} | {name for names in HEADER_ALIASES.values() for name in names}
                          | {name.upper() for name in HEADER_ALIASES} | {name.title() for name in HEADER_ALIASES})
# How far down a title block (ledger name, office, period, notes) may push the header row.
HEADER_SEARCH_ROWS = 20
TRUE_VALUES = {"true", "1", "yes", "y", "是"}
# 2026年7月1日 (or 1号), 2026/7/1, 2026.07.01, 2026-7-1, with or without a time after the date;
# the year may have two digits (26-7-1, 26年7月1日), always first, as Chinese dates are written.
CHINESE_DATE = re.compile(r"^(\d{4}|\d{2})\s*[年./-]\s*(\d{1,2})\s*[月./-]\s*(\d{1,2})(?!\d)\s*[日号]?\s*(.*)$")
# A two-digit year as Excel reads it when typed: up to this one in the 2000s, above it in the 1900s.
TWO_DIGIT_YEAR_PIVOT = 29
# A date in Chinese numerals, as formal letters write it: 二〇二六年七月一日, 二零二六年七月二十一日.
NUMERAL_DATE = re.compile(r"^([〇零一二三四五六七八九]{2,4})年([一二三四五六七八九十]{1,3})月([一二三四五六七八九十]{1,3})[日号]")
NUMERALS = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0}
# A month without a day (2026年7月): no date, but the message says what is missing.
MONTH_ONLY = re.compile(r"^\d{4}\s*[年./-]\s*\d{1,2}\s*月?$")
# The day of the week written after a date: 星期三, 周三, 礼拜三, in brackets or not.
WEEKDAY = re.compile(r"[（(]?\s*(?:星期|周|礼拜)[一二三四五六日天]\s*[）)]?")
# A time of day as written in Chinese or on a clock, after an optional part of the day:
# 9时30分, 9点半, 下午3:00, 上午 (no time: the date alone).
CHINESE_TIME = re.compile(r"^(上午|早上|凌晨|中午|下午|傍晚|晚上)?\s*(?:(\d{1,2})\s*(?:[时点:：]\s*(?:(\d{1,2})\s*分?|(半))?"
                          r"(?:\s*[:：]?\s*(\d{1,2})\s*秒?)?)?)?$")
# Parts of the day after noon: 下午3:00 is 15:00.
AFTERNOON = ("下午", "傍晚", "晚上")
# A ledger's last rows: a total (合计/总计/小计) and who made, filled in, checked and answers
# for the table (制表人, 填报人, 审核人, 负责人, 经办人, 联系人), the instructions for filling
# it in (填表说明, 说明, 注：) and notes (备注).
FOOTER_WORDS = ("合计", "总计", "小计", "制表", "填报", "审核", "负责人", "经办人", "联系人", "填表", "说明", "备注",
                "注：", "注:")
# A title between blocks of petitions that names a period (2026年8月, 八月份, 2026年第三季度台账)
# or a section (一、欠薪类, （二）养老类), as written after NFKC with spaces removed. An office
# splits a year's ledger into months by such a row merged across the columns.
_MONTH = r"(?:\d{1,2}|十[一二]|[一二三四五六七八九十])月份?"
PERIOD_TITLE = re.compile(
    r"^(?:(?:\d{4}|[〇零一二三四五六七八九]{4})年(?:" + _MONTH + r"|第?[一二三四1-4]季度|[上下]半年|全年)?|"
    + _MONTH + r"|第?[一二三四1-4]季度|[上下]半年)(?:[至到~—-]" + _MONTH + r")?"
    r"(?:信访)?(?:事项)?(?:登记)?(?:台账|登记表|明细|汇总)?(?:\(续\))?$"
    r"|^(?:\([一二三四五六七八九十]{1,3}\)|[一二三四五六七八九十]{1,3}[、.])\S{1,20}$")
# A number format of zeros only: Excel pads a whole number with leading zeros to its length.
ZERO_PADDED = re.compile(r"^0{2,}$")
# A cell saved by Excel as a text formula (="0000001") so that its leading zeros survive;
# the value is the text between the quotes, a doubled quote standing for one.
TEXT_FORMULA = r'^="((?:[^"]|"")*)"$'
# Excel stores a date as days since 1899-12-30; a date cell copied as a value, or a
# CSV saved from it, shows that number. Only 1960-2100 are taken for dates.
EXCEL_SERIAL = re.compile(r"^\d{5}(\.\d+)?$")
EXCEL_EPOCH = pd.Timestamp("1899-12-30")
EXCEL_SERIAL_RANGE = (21916, 73415)
# A long number as Excel shows it in a narrow General cell (2.02607E+11), which is what it
# writes to a CSV: a case number saved so has lost its last digits.
SHORTENED_NUMBER = r"\d(?:\.\d+)?[Ee]\+\d+"
# The column separators of text ledgers: comma; tab (Excel's "文本文件(制表符分隔)" and
# "Unicode 文本"); semicolon, which Excel writes to a CSV where the system's list separator
# is one (European locales, with a first line sep=; when asked for it).
DELIMITERS = (",", "\t", ";")
# Bytes decoded at a time when checking a text ledger's encoding; cut at a line end.
DECODE_BLOCK = 8 * 1024 * 1024


# A cell starting with one of these is run as a formula by a spreadsheet (CSV injection).
FORMULA_START = ("=", "+", "-", "@")


def spreadsheet_safe(value: str) -> str:
    """`value` as a cell no spreadsheet will run: a leading formula character is quoted."""
    return "'" + value if value[:1] in FORMULA_START else value


def check_output(out: str | Path, inputs: Sequence[str | Path]) -> None:
    """Raise LedgerError when writing the CSV `out` would replace one of the ledgers being
    read, or a folder. Outputs are renamed into place when complete, so `--output` naming
    the `--input` ledger (one slip of the keyboard) replaced the office's ledger by the
    results; a folder was refused only after every row had been scored."""
    out = Path(out)
    if out.is_dir():
        raise LedgerError(out, "is a folder; --output names the CSV file to write (e.g. results/predictions.csv)")
    if not out.exists():
        return
    for source in inputs:
        if Path(source).exists() and out.samefile(source):
            raise LedgerError(out, "is also given as --input; writing the results there would replace the ledger. "
                                   "Choose another --output file")


@contextlib.contextmanager
def replaced_when_complete(out: str | Path) -> Iterator[Path]:
    """A temporary file to write `out` through: renamed to `out` when the block completes.

    Parameters
    ----------
    out : str or Path
        The output file; its folder is made when absent.

    Yields
    ------
    Path
        A file beside `out` with a name of its own, so that two runs writing the same
        output do not write into one file. It is removed on any failure or interrupt
        (it holds petition text), and a write error without a file name (a full disk)
        is raised naming `out`, so that the message says which output failed.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        # Named as the person typed it, not as the temporary file they never heard of.
        raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        # Left owner-only, as mkstemp makes it: it may hold petition text, and whoever reads
        # the ledger runs the command (README: owner-only files).
        try:
            yield tmp
        except OSError as exc:
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from exc
            raise
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


class LedgerWarningKind(Enum):
    """What a ledger's reading left out or set aside, one kind per warning the reader gives."""

    DATES_NOT_READ = "no column is read as the date received"
    SAME_MEANING = "two columns of one meaning: the second is left out"
    OTHER_SHEETS = "other sheets hold a ledger and are not read"
    HIDDEN_ROWS = "rows hidden or filtered out in Excel are left out"
    HIDDEN_COLUMNS = "a column hidden in Excel beside a shown one of its meaning is left out"
    HIDDEN_COLUMN_READ = "a column hidden in Excel is read: no shown column has its meaning"
    FOOTER_ROWS = "a total or footer is left out"
    HEADER_AGAIN = "the header again is left out"
    COUNTER_ONLY = "a row with a 序号 and nothing else is left out"
    HEADING_ROWS = "a heading between petitions is left out"
    DATES_LEFT_EMPTY = "a date that cannot be read is left empty"


@dataclass(frozen=True)
class LedgerWarningDetail:
    """What a LedgerWarning says, as its parts: the 登记 page says it in its own words from
    these, where it showed clerks the command line's English."""

    kind: LedgerWarningKind
    path: str
    sheet: str | None = None  # the rows' sheet when the workbook has several; for OTHER_SHEETS the one read
    rows: tuple[int, ...] = ()  # every row meant, numbered as a person sees them in a spreadsheet
    headers: tuple[str, ...] = ()  # the ledger's own headers meant, as written
    column: str | None = None  # the canonical column they stand for (received_at, key_group …)
    value: str | None = None  # one of the values set aside, as written
    sheets: tuple[str, ...] = ()  # the other sheets holding a ledger, not read
    letters: tuple[str, ...] = ()  # the spreadsheet's column letters of `headers`, when they can be alike


class LedgerWarning(UserWarning):
    """A ledger that is read, with rows left out or values set aside; str() is the message naming
    the file, as the command line prints it, and `detail` its parts (None from other readers)."""

    def __init__(self, message: str, detail: LedgerWarningDetail | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class LedgerError(ValueError):
    """A ledger that cannot be used; str() names the file, sheet, row and column."""

    def __init__(self, path: str | Path, message: str, row: int | None = None, column: str | None = None,
                 sheet: str | None = None) -> None:
        where = str(path)
        if sheet is not None:
            where += f", sheet '{sheet}'"
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.column, self.sheet, self.message = str(path), row, column, sheet, message


class ShortenedNumberError(LedgerError):
    """A case number Excel wrote to a CSV in scientific notation (2.02607E+11), its last
    digits lost. `value` is the cell as written and `header` the ledger's own header over
    it, so that the 登记 page can say both in its own words."""

    def __init__(self, path: str | Path, value: str, header: str, row: int, sheet: str | None = None) -> None:
        super().__init__(path, f"{value!r}{_under('id', {'id': header})} is a long number as Excel shortened it when saving the CSV: its last "
                               "digits are lost. In Excel, format the column as text and save again, or save the workbook "
                               "as .xlsx", row=row, column="id", sheet=sheet)
        self.value, self.header = value, header


class SameMeaningError(LedgerError):
    """Two columns of one meaning where which is meant cannot be guessed. `headers` are the
    ledger's own headers, `letters` their spreadsheet column letters when the headers are
    alike (two 内容), so that the 登记 page can say which two in its own words."""

    def __init__(self, path: str | Path, meaning: str, headers: tuple[str, str], letters: tuple[str, ...],
                 sheet: str | None = None) -> None:
        first, second = _named(headers, letters)
        both = ("columns " if letters else "") + f"{first} and {second}"
        rename = ("column " if letters else "") + f"{second} to a header that is not read (e.g. '{headers[1]}（备用）')"
        super().__init__(path, f"two columns map to '{meaning}': {both}; remove one of them, or rename {rename}",
                         column=headers[1], sheet=sheet)
        self.meaning, self.headers, self.letters = meaning, headers, letters


def _named(headers: tuple[str, ...], letters: tuple[str, ...]) -> list[str]:
    """Headers as messages name them: after their letters when there are letters (C '内容')."""
    return [(f"{letters[i]} " if i < len(letters) else "") + f"'{header}'" for i, header in enumerate(headers)]


@dataclass
class Ledger:
    frame: pd.DataFrame  # id, title, body, [division, risk, key_group], [received_at], source, row
    sources: list[str]
    duplicates_dropped: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Chunk:
    """Rows of a file under its own headers, with their row numbers as a person sees them."""

    frame: pd.DataFrame
    rows: np.ndarray
    sheet: str | None = None  # named in errors when the workbook has several
    header: list[list[str]] = field(default_factory=list)  # the header's rows and the one above, as written
    # Each column's header as written and its spreadsheet letter, by place: the frame's names
    # are made unique (a second 内容 is 内容' or 内容.1), which hid a second column of a meaning.
    names: list[str] = field(default_factory=list)
    letters: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ headers
def _header_text(name: object) -> str:
    # Chinese forms space out short headers to line them up ("编  号", "标　题") and wrap long
    # ones onto two lines in their cell ("诉求\n内容"); such a header was not recognised, and
    # the ledger refused for a "missing column" the person could see.
    # Typed with a Chinese input method, letters come out full-width (ＩＤ): NFKC, as labels are read.
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(name).lstrip("\ufeff")))


def _canonical(name: object) -> str | None:
    text = _header_text(name)
    if text == ROW_COUNTER:
        return "id"
    for canonical, aliases in HEADER_ALIASES.items():
        if text in aliases or text.lower() == canonical:
            return canonical
    return None


def _recognised(cells: list[str]) -> set[str]:
    return {c for c in map(_canonical, cells) if c is not None}


def _find_header(rows: list[list[str]], required: tuple[str, ...]) -> tuple[int, int]:
    """The index of the header row among the first rows, and how many columns it names:
    the first row that names every required column, else the one that names most."""
    best, best_count = 0, 0
    for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        names = _recognised(cells)
        if set(required) <= names:
            return i, len(names)
        if len(names) > best_count:
            best, best_count = i, len(names)
    return best, best_count


def _repeats_header(cells: list[str], above: list[str]) -> bool:
    """Whether a row holds only header names: copies of the row above (a merged header cell
    filled down) or known column names (the second row of a two-row header)."""
    filled = [(j, c.strip()) for j, c in enumerate(cells) if c.strip()]
    return bool(filled) and all(
        (j < len(above) and text == above[j].strip()) or _canonical(text) is not None or _header_text(text) == ROW_COUNTER
        for j, text in filled)


def _header_block(rows: list[list[str]], required: tuple[str, ...]) -> tuple[int, int, list[str]]:
    """The header row's index, how many rows the header spans, and its names.

    A two-row header (办理情况 merged over the columns 承办处室, 风险等级, 重点群体 named
    below it, the other headers merged down over both rows) was read as a header and a
    first petition named 编号 and 来信内容; `train`, which needs the lower row's names,
    chose the lower row instead, so the two commands read the ledger differently. The rows
    below the header that only repeat header names belong to it; each column is named by
    the lowest of them that names a known column, else by the lowest non-empty one."""
    index, _ = _find_header(rows, required)
    if not rows:
        return index, 1, []
    header = list(rows[index])
    end = index + 1
    while end < len(rows) and end - index < HEADER_SEARCH_ROWS and _repeats_header(rows[end], rows[end - 1]):
        lower = rows[end]
        header += [""] * (len(lower) - len(header))
        for j, text in enumerate(lower):
            if text.strip() and (_canonical(text) is not None or _canonical(header[j]) is None):
                header[j] = text
        end += 1
    return index, end - index, header


def _header_as_written(rows: list[list[str]], index: int, depth: int) -> list[list[str]]:
    """The rows the header spans and the row above it, as written: a group heading (办理情况,
    基本信息) merged over the names below is the header's first row, which `train`, needing
    the label names, reads as a row above a header that names every column."""
    return rows[max(index - 1, 0):index + depth]


def _where(path: Path, sheet: str | None) -> str:
    """The file, and the sheet when the workbook has several, as warnings name them."""
    return f"{path}" + (f", sheet '{sheet}'" if sheet is not None else "")


def _row_list(rows: Sequence[int], shown: int = 10) -> str:
    """Row numbers for a message: the first `shown` of them, and how many more."""
    listed = ", ".join(str(int(r)) for r in rows[:shown])
    return listed + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def _warn_unread_dates(path: Path, columns: list[object], sheet: str | None) -> None:
    """Warns when no column is read as the date received but some header names a date
    (来访日期, 收文时间): the dates were dropped without a word, and on the 登记 page each
    petition's time limits ran from the upload instead; retraining found no dated quarter."""
    dated = [_header_text(c) for c in columns if re.search(r"日期|时间", _header_text(c))]
    if dated:
        warnings.warn(LedgerWarning(
            f"{_where(path, sheet)}: no column is read as the date received; "
            f"{', '.join(map(repr, dated))} {'is' if len(dated) == 1 else 'are'} not one of its headers "
            f"({'/'.join(HEADER_ALIASES['received_at'][1:])}): rename it 登记日期 if it is that date",
            LedgerWarningDetail(LedgerWarningKind.DATES_NOT_READ, str(path), sheet, headers=tuple(dated),
                                column="received_at")), stacklevel=3)


def _date_and_time(first: str, second: str) -> bool:
    """Whether two headers are one moment's date and time of day (登记日期 and 登记时间)."""
    first, second = _header_text(first), _header_text(second)
    return "日期" in first and "时间" in second and first.replace("日期", "") == second.replace("时间", "")


def _mapping(path: Path, columns: list[object], required: tuple[str, ...], sheet: str | None,
             strict: bool = True, names: Sequence[str] = (), letters: Sequence[str] = ()) -> dict[object, str]:
    """Which column of the file is which canonical column. Two columns with one meaning
    (来信日期 and 受理日期, 群体 and 重点群体, or two headed 内容) are refused when `strict`
    (training, where the column may be learnt from) or when they are the id or the text,
    which every command uses; otherwise the first is read, with a warning. A request's
    column beside the account's (主要诉求 beside 信访内容) is BODY_REQUEST, joined into the
    body. `names` are the headers as written, by place, when `columns` were made unique,
    and `letters` the columns' spreadsheet letters, which tell two alike headers apart."""
    mapping: dict[object, str] = {}
    written: dict[object, tuple[str, str | None]] = {}
    counters = []
    for i, column in enumerate(columns):
        name = str(names[i] if len(names) == len(columns) else column).strip().lstrip("\ufeff")
        written[column] = (name, letters[i] if len(letters) == len(columns) else None)
        canonical = _canonical(name)
        if canonical is None:
            continue
        if _header_text(name) == ROW_COUNTER:
            counters.append(column)
            continue
        if canonical in mapping.values():
            # A second request column is named beside the first request's, not beside the account's.
            same = BODY_REQUEST if canonical == "body" and BODY_REQUEST in mapping.values() and \
                _header_text(name) in REQUEST_HEADERS else canonical
            first_column = next(c for c, meant in mapping.items() if meant == same)
            first = written[first_column][0]
            if canonical == "received_at" and "received_time" not in mapping.values():
                if _date_and_time(first, name):
                    mapping[column] = "received_time"
                    continue
                if _date_and_time(name, first):  # the time's column before the date's
                    earlier = next(c for c, meant in mapping.items() if meant == canonical)
                    mapping[earlier], mapping[column] = "received_time", canonical
                    continue
            if canonical == "body" and BODY_REQUEST not in mapping.values() and \
                    (_header_text(first) in REQUEST_HEADERS) != (_header_text(name) in REQUEST_HEADERS):
                # The account and the request in two columns (信访内容, 主要诉求): read as one body.
                if _header_text(name) in REQUEST_HEADERS:
                    mapping[column] = BODY_REQUEST
                else:  # the request's column before the account's
                    earlier = next(c for c, meant in mapping.items() if meant == canonical)
                    mapping[earlier], mapping[column] = BODY_REQUEST, canonical
                continue
            # Headers alike (two 内容) are told apart by their letters; the second was read
            # under a name made unique (内容') and left out without a word.
            alike = _header_text(first) == _header_text(name)
            letters_of = tuple(letter for letter in (written[first_column][1], written[column][1])
                               if alike and letter is not None)
            letters_of = letters_of if len(letters_of) == 2 else ()
            if strict or canonical in TEXT_COLUMNS:
                raise SameMeaningError(path, canonical, (first, name), letters_of, sheet=sheet)
            named = _named((first, name), letters_of)
            column_word = "column " if letters_of else ""
            warnings.warn(LedgerWarning(f"{_where(path, sheet)}: columns {named[0]} and {named[1]} both mean "
                                        f"'{canonical}'; {column_word}{named[0]} is read and {column_word}{named[1]} "
                                        "left out",
                                        LedgerWarningDetail(LedgerWarningKind.SAME_MEANING, str(path), sheet,
                                                            headers=(first, name), column=canonical,
                                                            letters=letters_of)), stacklevel=2)
            continue
        mapping[column] = canonical
    if "id" not in mapping.values() and counters:
        mapping[counters[0]] = "id"  # no case number: the row counter is all there is
    if "received_at" not in mapping.values():
        _warn_unread_dates(path, columns, sheet)
    missing = [c for c in required if c not in mapping.values()]
    if missing:
        accepted = "; ".join(f"{c}: {'/'.join(HEADER_ALIASES[c] + ((ROW_COUNTER,) if c == 'id' else ()))}" for c in missing)
        raise LedgerError(path, f"missing column(s) {missing} (accepted headers: {accepted}; "
                                f"looked for the header row in the first {HEADER_SEARCH_ROWS} rows)", sheet=sheet)
    return mapping


# ------------------------------------------------------------------ text files
def _decode_error(path: Path, raw: bytes, offset: int, utf8_at: int, gbk_at: int, lines_before: int) -> LedgerError:
    line = lines_before + raw[:gbk_at].count(b"\n") + 1
    return LedgerError(
        path,
        f"unreadable encoding: not UTF-8 (byte {offset + utf8_at}) nor GBK/GB18030 "
        f"(invalid byte 0x{raw[gbk_at]:02x} at byte {offset + gbk_at}, line {line}); "
        "re-export the file as UTF-8 CSV or XLSX",
    )


def _encoding(path: Path, head: bytes) -> str:
    """The encoding of a text ledger: UTF-16 or UTF-8 by their byte-order marks, else
    UTF-8 if the whole file decodes as UTF-8, else GB18030 (which includes GBK). The file
    is checked block by block, so that a large one is never held in memory."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bom = head.startswith(codecs.BOM_UTF8)
    utf8_failed_at: int | None = None
    offset, lines = 0, 0
    with path.open("rb") as handle:
        pending = b""
        while True:
            block = handle.read(DECODE_BLOCK)
            data = pending + block
            if block:
                cut = data.rfind(b"\n") + 1  # neither encoding uses the byte 0x0a inside a character
                data, pending = (data[:cut], data[cut:]) if cut else (b"", data)
            else:
                pending = b""
            if data:
                if utf8_failed_at is None:
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        utf8_failed_at = offset + exc.start
                if utf8_failed_at is not None:
                    # A UTF-8 byte-order mark before GBK text (some export programs write one
                    # whatever the encoding) is not part of the text: see _text_handle.
                    skip = len(codecs.BOM_UTF8) if bom and offset == 0 else 0
                    try:
                        data[skip:].decode("gb18030")
                    except UnicodeDecodeError as exc:
                        raise _decode_error(path, data, offset, utf8_failed_at - offset, skip + exc.start, lines) from None
                offset += len(data)
                lines += data.count(b"\n")
            if not block and not pending:
                break
    if utf8_failed_at is None:
        return "utf-8-sig" if bom else "utf-8"
    return "gb18030"


def _text_handle(path: Path, encoding: str) -> io.TextIOWrapper:
    """The text of a ledger in `encoding`, past a UTF-8 byte-order mark written before GBK
    text: decoded with the text, the mark ate the first header's first character, and the
    ledger was refused as an unreadable encoding."""
    handle = path.open("rb")
    if encoding != "gb18030" or handle.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
        handle.seek(0)
    return io.TextIOWrapper(handle, encoding=encoding, newline="")


def _not_text(raw: bytes) -> str:
    """Why a file with NUL bytes is not a ledger, in terms a person can act on."""
    if raw.startswith(OLE2_MAGIC):
        return ("an Excel 97-2003 workbook (.xls) or a password-protected workbook; "
                "save it without a password as .xlsx or UTF-8 CSV")
    head = raw[:4096]
    if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
        return "UTF-16 text without a byte-order mark; re-export the file as UTF-8 CSV or XLSX"
    return "binary data, not a CSV/JSONL text file"


@dataclass(frozen=True)
class _CsvLayout:
    """Where a CSV file's header is: its delimiter, the rows above the header, the rows the
    header spans (two when Excel saved a two-row header), its names, the line it starts on,
    and its rows as written."""

    delimiter: str
    above: int
    header_rows: int
    header: list[str]
    line: int
    written: list[list[str]]


def _csv_layout(text_head: str, required: tuple[str, ...]) -> _CsvLayout:
    """The header's layout, from the file's first lines."""
    found = {}
    for delimiter in DELIMITERS:
        reader = csv.reader(io.StringIO(text_head), delimiter=delimiter)
        rows, line_starts = [], []
        with contextlib.suppress(StopIteration, csv.Error):
            for _ in range(HEADER_SEARCH_ROWS):
                line_starts.append(reader.line_num)
                rows.append(next(reader))
        index, depth, header = _header_block(rows, required)
        # Rows, not lines, as pandas counts them: a header cell may hold a line break.
        found[delimiter] = _CsvLayout(delimiter, index, depth, header, line_starts[index] if index < len(line_starts) else 0,
                                      _header_as_written(rows, index, depth))
    # The delimiter is the one that splits the header row into the most known columns: a
    # semicolon in a petition's text under a comma header never changes it.
    count = {d: len(_recognised(layout.header)) for d, layout in found.items()}
    best = [d for d in DELIMITERS if count[d] == max(count.values())]
    if len(best) == 1:
        delimiter = best[0]
    else:
        # No header tells them apart (none is known): the line where one would be does.
        # Excel's "Text (tab delimited)" and "Unicode Text" exports separate columns with tabs.
        lines = text_head.lstrip("\ufeff").splitlines() or [""]
        line = lines[min(found[","].line, len(lines) - 1)]
        alone = [d for d in best if d in line and all(o not in line for o in DELIMITERS if o != d)]
        delimiter = (alone or best)[0]
    return found[delimiter]


def _column_names(header: list[str]) -> list[str]:
    """The header's names made unique, an empty one named by its place."""
    columns: list[str] = []
    for j, value in enumerate(header):
        column = value.strip() or f"(column {j + 1})"
        while column in columns:
            column += "'"
        columns.append(column)
    return columns


def _text_chunks(path: Path, required: tuple[str, ...], chunk_rows: int | None) -> Iterator[_Chunk]:
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if b"\x00" in head[:4096] and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise LedgerError(path, _not_text(head))
    encoding = _encoding(path, head)
    text_head = (head.removeprefix(codecs.BOM_UTF8) if encoding == "gb18030" else head).decode(encoding, errors="ignore")
    if not text_head.strip():
        raise LedgerError(path, "the file is empty")
    if text_head.lstrip("\ufeff \t\r\n")[:1] == "<":
        # What many web systems' "export to Excel" writes under an .xls name.
        raise LedgerError(path, "an HTML or XML page, not a CSV/JSONL file; open it in Excel and save it as .xlsx or UTF-8 CSV")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        yield from _jsonl_chunks(path, encoding, chunk_rows)
        return
    layout = _csv_layout(text_head, required)
    # skip_blank_lines=False: pandas dropped blank lines without a word, so every row after one
    # was reported a row too high; empty rows are dropped below, with their numbers kept.
    options = {"encoding": encoding, "dtype": str, "keep_default_na": False, "skipinitialspace": False,
               "sep": layout.delimiter, "skiprows": layout.above, "skip_blank_lines": False}
    if layout.header_rows > 1:
        # A two-row header saved from Excel (办理情况 over the label columns named below it):
        # pandas would take its first row for the names and its second for a petition.
        options.update(skiprows=layout.above + layout.header_rows, header=None, names=_column_names(layout.header))
    first = layout.above + layout.header_rows + 1
    try:
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(_text_handle(path, encoding)) if encoding == "gb18030" else path
            frames: Iterator[pd.DataFrame] | list[pd.DataFrame] = (
                stack.enter_context(pd.read_csv(source, chunksize=chunk_rows, **options)) if chunk_rows
                else [pd.read_csv(source, **options)])
            for frame in frames:
                if not isinstance(frame.index, pd.RangeIndex):
                    # pandas turns the surplus leading fields into an index and shifts every column by as many.
                    raise LedgerError(path, f"the data rows have more fields than the {len(frame.columns)} columns of "
                                            "the header (a comma at the end of each line, or an unquoted comma inside a field?)",
                                      row=first)
                rows = np.arange(first, first + len(frame))
                first += len(frame)
                # A row with nothing in it is no petition, as in a workbook: blank lines, and the
                # ",,,,," lines Excel saves below the data when formatted cells reach further down.
                frame = _unwrapped(frame.fillna(""))
                filled = frame.apply(lambda column: column.str.strip().ne("")).any(axis=1).to_numpy()
                yield _Chunk(frame[filled].reset_index(drop=True), rows[filled], header=layout.written,
                             names=layout.header, letters=[_column_letter(j + 1) for j in range(len(layout.header))])
    except pd.errors.ParserError as exc:
        raise LedgerError(path, f"not a valid CSV file ({exc})") from None
    except pd.errors.EmptyDataError:
        raise LedgerError(path, "the file is empty") from None
    except UnicodeDecodeError as exc:  # only UTF-16 is not checked beforehand
        raise LedgerError(path, f"unreadable {encoding.upper()} text ({exc.reason}); "
                                "re-export the file as UTF-8 CSV or XLSX") from None


def _unwrapped(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every ="…" cell (a CSV export's way of keeping 0000001's leading zeros
    in Excel) as the text between the quotes, which is what Excel shows; the ids were
    written to results as ="0000001" and matched no case in the office's records."""
    for column in frame.columns:
        cells = frame[column]
        if cells.str.startswith('="').any():
            frame[column] = cells.str.replace(TEXT_FORMULA, lambda m: m[1].replace('""', '"'), regex=True)
    return frame


def _jsonl_chunks(path: Path, encoding: str, chunk_rows: int | None) -> Iterator[_Chunk]:
    records: list[dict[str, str]] = []
    numbers: list[int] = []
    with _text_handle(path, encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LedgerError(path, f"not valid JSON ({exc.msg})", row=number) from None
            if not isinstance(record, dict):
                raise LedgerError(path, "each line must be a JSON object", row=number)
            records.append({k: "" if v is None else str(v) for k, v in record.items()})
            numbers.append(number)
            if chunk_rows and len(records) >= chunk_rows:
                yield _Chunk(pd.DataFrame.from_records(records), np.asarray(numbers))
                records, numbers = [], []
    if records:
        yield _Chunk(pd.DataFrame.from_records(records), np.asarray(numbers))


# ------------------------------------------------------------------ workbooks
def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _as_shown(value: object, number_format: str) -> object:
    """A whole number as Excel shows it under a format of zeros only ("00000"): 00003, not
    3. Case numbers are kept that way, their leading zeros added by the cell's format; read
    as numbers, they came out as 3 and no longer matched the office's records."""
    if (isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
            and ZERO_PADDED.match(number_format or "")):
        return str(int(value)).zfill(len(number_format))
    return value


def _fill_down(cells: list[list[object]], top: int, left: int, bottom: int) -> None:
    """A merged range shows its first cell's value in every row it spans (a division
    merged over the petitions it handles); 0-based, inclusive."""
    if top >= len(cells):
        return
    value = cells[top][left] if left < len(cells[top]) else None
    for r in range(top + 1, min(bottom, len(cells) - 1) + 1):
        if left < len(cells[r]):
            cells[r][left] = value


def _opendocument(path: Path) -> bool:
    """Whether the zip archive at `path` is an OpenDocument spreadsheet, which openpyxl cannot read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("mimetype").startswith(b"application/vnd.oasis.opendocument.spreadsheet")
    except (KeyError, OSError, zipfile.BadZipFile):
        return False


def _check_workbook_memory(path: Path) -> None:
    """Refuses a workbook that would not fit in memory read whole, before it is read: its
    sheets unpacked are many times the file (a ledger of 100 MiB could need tens of GiB),
    and a process the kernel kills leaves no message. TRIAGE_SKIP_MEMORY_CHECK=1 lets it try."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(i.file_size for i in archive.infolist()
                           if i.filename.startswith("xl/worksheets/") or i.filename == "xl/sharedStrings.xml")
    except (OSError, zipfile.BadZipFile):
        return  # openpyxl says what is wrong with it
    estimate = WORKBOOK_BYTES_PER_SHEET_BYTE * unpacked
    available = available_bytes()
    if available is not None and estimate > available and os.environ.get(SKIP_VARIABLE) != "1":
        raise LedgerError(path, f"a workbook is read whole, and this one needs about {estimate / 2**30:.1f} GiB of memory "
                                f"({available / 2**30:.1f} GiB is available); save it as UTF-8 CSV, which is read in "
                                f"chunks, or split it (or set {SKIP_VARIABLE}=1 to try anyway)")


def _xlsx_sheets(path: Path) -> tuple[list[tuple[str, list[list[object]]]], set[str], dict[str, set[int]],
                                     dict[str, set[int]]]:
    """Every sheet's name and cells, the names of the hidden sheets, each sheet's hidden
    rows (numbered as Excel numbers them) and its hidden columns (0-based)."""
    import openpyxl

    _check_workbook_memory(path)
    try:
        # Nothing is ever evaluated. A formula cell is read as the value Excel (or WPS) saved
        # with it, which is what the person sees: ids made by ="XF-"&TEXT(ROW(),"0000"), a
        # division looked up with VLOOKUP, a date from =DATE(…). Read as their text, every
        # such id was the same formula (predict wrote one id for all rows, train refused
        # "duplicate id") and every such date "not a date". A file written by a program
        # that saved no value keeps the formula's text (then neutralised in outputs).
        # Not read_only: merged ranges are only known to a fully loaded workbook.
        # Opened as a file, not by name: openpyxl refuses a workbook by its name's ending.
        with path.open("rb") as handle:
            book = openpyxl.load_workbook(handle, data_only=False)
    except Exception as exc:  # openpyxl raises many types for a damaged workbook
        if _opendocument(path):
            raise LedgerError(path, "an OpenDocument spreadsheet (.ods, from WPS or LibreOffice); save it as .xlsx "
                                    "or UTF-8 CSV") from None
        raise LedgerError(path, f"not a readable XLSX workbook ({type(exc).__name__}: {exc})") from None
    saved = None  # the values saved with the formulas: a second reading, only when there are formulas
    sheets = []
    for sheet in book.worksheets:
        cells = []
        for r, row in enumerate(sheet.iter_rows(min_row=1, min_col=1)):
            values = [_as_shown(cell.value, cell.number_format) for cell in row]
            for c, cell in enumerate(row):
                if cell.data_type == "f":
                    if saved is None:
                        with path.open("rb") as handle:
                            saved = openpyxl.load_workbook(handle, data_only=True)
                    value = saved[sheet.title].cell(row=r + 1, column=c + 1).value
                    if value is not None:
                        values[c] = value
            cells.append(values)
        for merged in sheet.merged_cells.ranges:
            _fill_down(cells, merged.min_row - 1, merged.min_col - 1, merged.max_row - 1)
        sheets.append((sheet.title, cells))
    hidden = {sheet.title for sheet in book.worksheets if sheet.sheet_state != "visible"}
    # Rows filtered out in Excel (an office keeps this quarter's) or hidden by hand are marked
    # hidden in the file; the workbook is loaded whole, so knowing them costs nothing more.
    hidden_rows = {sheet.title: {r for r, row in sheet.row_dimensions.items() if row.hidden} for sheet in book.worksheets}
    # Columns are hidden by ranges (a group of columns folded away is one entry, its first
    # and last column), not one by one.
    hidden_columns = {sheet.title: {c - 1 for dimension in sheet.column_dimensions.values() if dimension.hidden
                                    and dimension.min for c in range(dimension.min, (dimension.max or dimension.min) + 1)}
                      for sheet in book.worksheets}
    book.close()
    if saved is not None:
        saved.close()
    return sheets, hidden, hidden_rows, hidden_columns


def _xls_sheets(path: Path) -> tuple[list[tuple[str, list[list[object]]]], set[str], dict[str, set[int]],
                                    dict[str, set[int]]]:
    """Every sheet's name and cells, the names of the hidden sheets, and no hidden rows or
    columns: calamine does not say which of an .xls are hidden, so all of them are read."""
    # python-calamine (Rust calamine) reads the Excel 97-2003 format, which openpyxl does not.
    from python_calamine import CalamineWorkbook, SheetVisibleEnum

    try:
        book = CalamineWorkbook.from_path(str(path))
        sheets = []
        for name in book.sheet_names:
            sheet = book.get_sheet_by_name(name)
            cells = [list(row) for row in sheet.to_python(skip_empty_area=False)]
            for (top, left), (bottom, _right) in sheet.merged_cell_ranges or []:
                _fill_down(cells, top, left, bottom)
            sheets.append((name, cells))
        hidden = {meta.name for meta in book.sheets_metadata if meta.visible != SheetVisibleEnum.Visible}
        book.close()
    except Exception as exc:  # calamine raises its own error types for a damaged or encrypted file
        raise LedgerError(path, f"not a readable Excel 97-2003 workbook (.xls), or a password-protected workbook "
                                f"({type(exc).__name__}: {exc}); save it without a password as .xlsx or UTF-8 CSV") from None
    return sheets, hidden, {}, {}


def _column_letter(index: int) -> str:
    """The spreadsheet's letter of the column at 1-based `index` (1 is A, 27 is AA)."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _same_meaning(first: str, second: str) -> bool:
    """Whether two headers are two columns of one meaning, as _mapping tells them apart: not
    a date and its time of day, nor the account of the matter and the request, which are
    read together, nor 序号, which is the id only when there is no other."""
    meaning = _canonical(first)
    if meaning is None or meaning != _canonical(second) or ROW_COUNTER in (_header_text(first), _header_text(second)):
        return False
    if meaning == "received_at" and (_date_and_time(first, second) or _date_and_time(second, first)):
        return False
    return not (meaning == "body" and (_header_text(first) in REQUEST_HEADERS) != (_header_text(second) in REQUEST_HEADERS))


def _shown_columns(path: Path, header: list[str], hidden: set[int], sheet: str | None) -> list[int]:
    """The columns to read, by place: all but those hidden in Excel beside a shown column of
    their meaning (last year's 内容 kept hidden beside this year's), each said. Such a ledger
    was refused for two columns of one meaning, or, the two headers alike, the hidden column
    was read in place of the shown one. A hidden column with no shown one of its meaning is
    read, and said to be: what it holds is not what the person sees."""
    keep = list(range(len(header)))
    for j in sorted(c for c in hidden if c < len(header)):
        name = str(header[j]).strip()
        meaning = _canonical(name)
        if meaning is None:
            continue  # not read whether hidden or not
        if _header_text(name) == ROW_COUNTER and any(
                _canonical(other) == "id" and _header_text(other) != ROW_COUNTER for other in header):
            continue  # 序号 beside a case number is not read
        alike = [k for k in range(len(header)) if k != j and _same_meaning(header[k], name)]
        shown = [k for k in alike if k not in hidden]
        letter = _column_letter(j + 1)
        if shown:
            other, other_letter = str(header[shown[0]]).strip(), _column_letter(shown[0] + 1)
            keep.remove(j)
            warnings.warn(LedgerWarning(
                f"{_where(path, sheet)}: column {letter} '{name}' is hidden in Excel and left out; column {other_letter} "
                f"'{other}' is read (both mean '{meaning}')",
                LedgerWarningDetail(LedgerWarningKind.HIDDEN_COLUMNS, str(path), sheet, headers=(name, other),
                                    column=meaning, letters=(letter, other_letter))), stacklevel=3)
        elif not alike:
            # Two hidden columns of one meaning and no shown one: the ledger is refused for two
            # columns of one meaning, naming both; saying first that each is read misleads.
            warnings.warn(LedgerWarning(
                f"{_where(path, sheet)}: column {letter} '{name}' is hidden in Excel, and read: no shown column "
                f"means '{meaning}'",
                LedgerWarningDetail(LedgerWarningKind.HIDDEN_COLUMN_READ, str(path), sheet, headers=(name,),
                                    column=meaning, letters=(letter,))), stacklevel=3)
    return keep


def _workbook_chunks(path: Path, ole2: bool, required: tuple[str, ...], sheet: str | None,
                     chunk_rows: int | None) -> Iterator[_Chunk]:
    sheets, hidden, hidden_rows, hidden_columns = _xls_sheets(path) if ole2 else _xlsx_sheets(path)
    texts = [(name, [[_cell_text(v) for v in row] for row in cells]) for name, cells in sheets]
    names = [name for name, _ in sheets]
    if sheet is not None:
        if sheet not in names:
            raise LedgerError(path, f"no sheet named {sheet!r}; the workbook has {', '.join(map(repr, names))}")
        chosen = names.index(sheet)
    else:
        # The first sheet that has every column and data under them; a cover sheet, notes or a
        # summary before the ledger are passed over, and so are hidden sheets while a visible
        # one has them (an office hides last quarter's sheet: it was read instead of the one shown).
        found = [_header_block(rows, required) for _, rows in texts]
        complete = [i for i, (_, _, header) in enumerate(found) if set(required) <= _recognised(header)]
        with_data = [i for i in complete
                     if any(any(c.strip() for c in row) for row in texts[i][1][found[i][0] + found[i][1]:])]
        shown_with_data = [i for i in with_data if names[i] not in hidden]
        chosen = (shown_with_data or with_data or complete or [0])[0]
        others = [names[i] for i in shown_with_data if i != chosen]
        if others:
            # A quarter's workbook with a sheet per month (7月, 8月, 9月): only the first was
            # read, without a word, and a model was trained on a third of the quarter.
            warnings.warn(LedgerWarning(
                f"{path}: sheet '{names[chosen]}' is read; sheet(s) {', '.join(map(repr, others))} also hold "
                "a ledger and are not read (give --sheet NAME to read another, or save each sheet as its own "
                "file and give them all)",
                LedgerWarningDetail(LedgerWarningKind.OTHER_SHEETS, str(path), names[chosen], sheets=tuple(others))),
                stacklevel=2)
    name, rows = texts[chosen]
    shown = name if len(names) > 1 else None
    if not rows:
        raise LedgerError(path, "the sheet is empty", sheet=shown)
    index, depth, header = _header_block(rows, required)
    keep = _shown_columns(path, header, hidden_columns.get(name, set()), shown)
    letters = [_column_letter(j + 1) for j in keep]
    if len(keep) < len(header):
        header = [header[j] for j in keep]
        rows = [[row[j] for j in keep if j < len(row)] for row in rows]
    columns = _column_names(header)
    data = [(index + depth + 1 + i, (row + [""] * len(columns))[: len(columns)])
            for i, row in enumerate(rows[index + depth:]) if any(c.strip() for c in row)]
    left_out = [number for number, _ in data if number in hidden_rows.get(name, ())]
    if left_out:
        # What the person sees is read: the rows an office filtered out (last quarter's) or
        # hid were read as petitions, scored and trained on. Said, so that none is lost unseen.
        if len(left_out) == len(data):
            raise LedgerError(path, f"all {len(data)} rows under the header are hidden in Excel (filtered out or hidden); "
                                    "show them (clear the filter or unhide them) and save again", sheet=shown)
        warnings.warn(LedgerWarning(
            f"{_where(path, shown)}: {len(left_out)} hidden row(s) left out: {_row_list(left_out)} (filtered "
            "out or hidden in Excel; to read them, clear the filter or unhide them and save again)",
            LedgerWarningDetail(LedgerWarningKind.HIDDEN_ROWS, str(path), shown, rows=tuple(left_out))), stacklevel=2)
        data = [(number, row) for number, row in data if number not in hidden_rows[name]]
    raw = sheets[chosen][1]
    for number, _ in data:
        for j, value in enumerate([raw[number - 1][k] for k in keep if k < len(raw[number - 1])]):
            if type(value).__name__ == "ArrayFormula":  # openpyxl's object, which has no text of its own
                raise LedgerError(path, "an array formula; replace it by its value (paste as values)",
                                  row=number, column=columns[j], sheet=shown)
    step = chunk_rows or max(len(data), 1)
    written = _header_as_written(rows, index, depth)
    if not data:
        yield _Chunk(pd.DataFrame(columns=columns), np.zeros(0, int), shown, written, header, letters)
    for start in range(0, len(data), step):
        part = data[start:start + step]
        yield _Chunk(pd.DataFrame([r for _, r in part], columns=columns, dtype=str),
                     np.asarray([n for n, _ in part]), shown, written, header, letters)


# ------------------------------------------------------------------ values
def _clock_time(written: str) -> str:
    """A time of day written the Chinese way (9时30分, 下午3:00, 上午) as 09:30, 15:00 or
    nothing; any other text is given back as it is, for pandas to read or refuse."""
    match = CHINESE_TIME.match(written)
    if match is None:
        return written
    part, hour, minute, half, second = match.groups()
    if hour is None:
        return ""  # a part of the day alone (上午): the date is all there is
    hours = int(hour) + (12 if part in AFTERNOON and int(hour) < 12 else 0)
    minutes = 30 if half else int(minute or 0)
    return f"{hours:02d}:{minutes:02d}:{int(second or 0):02d}"


def _numeral_number(written: str) -> int:
    """A month or a day in Chinese numerals (七, 十一, 二十, 三十一) as a number."""
    tens, _, units = written.rpartition("十")
    if "十" not in written:
        return NUMERALS[written]
    return (NUMERALS[tens] if tens else 1) * 10 + (NUMERALS[units] if units else 0)


def _with_digits(value: str) -> str:
    """`value` with a date in Chinese numerals at its start written in digits (二〇二六年七月一日
    as 2026年7月1日); anything else as it is. Such dates were refused as not a date."""
    match = NUMERAL_DATE.match(value)
    if match is None:
        return value
    year = "".join(str(NUMERALS[c]) for c in match[1])
    return f"{year}年{_numeral_number(match[2])}月{_numeral_number(match[3])}日{value[match.end():]}"


def _not_a_date(value: str, under: str = "") -> str:
    """Why `value` (written `under` a header) is refused as a date, with the spellings that are understood."""
    if MONTH_ONLY.match(value.strip()):
        return f"{value!r}{under} names a month, not a day; a day is needed (e.g. 2026年7月1日)"
    return (f"not a date: {value!r}{under} (accepted: 2026-07-01, 2026/7/1, 2026.07.01, 2026年7月1日 or 1号, with a time "
            "such as 14:30, 9时30分 or 下午3:00, or an Excel date)")


def parse_dates(values: pd.Series) -> pd.Series:
    """Dates as offices write them: ISO, 2026年7月1日 (or 1号), 2026/7/1, 2026.07.01, or an
    Excel serial number (46204), with a time (14:30, 9时30分, 下午3:00) or a day of the week
    (星期三) after the date or not; NaT where empty, and where not a date (the caller reports it)."""
    text = values.astype(str).str.strip()

    def standard(value: str) -> str | None:
        if not value:
            return None
        match = CHINESE_DATE.match(_with_digits(value))
        if match:
            year, month, day, rest = match.groups()
            if len(year) == 2:
                # pandas read 26-7-1 as day 26 of July 2001, without a word: a petition received
                # this year was a quarter of a century old, its time limits long run out.
                year = f"{20 if int(year) <= TWO_DIGIT_YEAR_PIVOT else 19}{year}"
            rest = WEEKDAY.sub("", rest).strip()
            return f"{year}-{int(month):02d}-{int(day):02d}" + (f" {_clock_time(rest)}" if rest else "")
        if EXCEL_SERIAL.match(value) and EXCEL_SERIAL_RANGE[0] <= float(value) <= EXCEL_SERIAL_RANGE[1]:
            return (EXCEL_EPOCH + pd.to_timedelta(float(value), unit="D")).round("s").isoformat(sep=" ")
        return value

    return local_times(text.map(standard))


def _under(head: str, headers: dict[str, str]) -> str:
    """Where a value was written, for a message: the ledger's own header for `head` (承办处室)
    when it is not the canonical name the error's column gives."""
    header = headers.get(head, head)
    return "" if _header_text(header).lower() == head else f" under '{header}'"


def _add_time_of_day(frame: pd.DataFrame) -> None:
    """The date received with its time of day from a column of its own (登记日期 2026-07-01,
    登记时间 9:30), where it has none: `train` refused the ledger for two date columns, and
    `predict` and the 登记 page dropped the time. A time that is not a time of day, or a date
    that already has one, leaves the date as it is."""
    dates = frame["received_at"].str.strip()
    alone = parse_dates(dates)
    clock = frame.pop("received_time").str.strip().map(_clock_time)
    combined = (dates + " " + clock).where(clock.str.fullmatch(r"\d{2}:\d{2}:\d{2}") & alone.eq(alone.dt.normalize()))
    read = parse_dates(combined.fillna(""))
    frame["received_at"] = combined.where(read.notna(), dates)


def _resolve_labels(path: Path, frame: pd.DataFrame, rows: np.ndarray, taxonomy: Taxonomy, sheet: str | None,
                    headers: dict[str, str]) -> None:
    for head in HEADS:
        codes = []
        for i, value in enumerate(frame[head].astype(str)):
            value = value.strip()
            code = taxonomy.resolve_written(head, value)
            if code is None:
                # The ledger's header is named beside the canonical column, which the person
                # does not see in their file (risk for 风险等级); an empty cell is said to be one.
                written = f"no {head}: the cell{_under(head, headers)} is empty" if not value else \
                    f"unknown {head} {value!r}{_under(head, headers)}"
                raise LedgerError(
                    path, f"{written} (accepted: the code or the Chinese name of one of {taxonomy.accepted(head)})",
                    row=int(rows[i]), column=head, sheet=sheet,
                )
            codes.append(code)
        frame[head] = codes


def _footer_rows(cells: pd.DataFrame, mapping: dict[object, str]) -> np.ndarray:
    """Which rows are a total or a footer, not petitions: their first filled cell starts
    with a FOOTER_WORDS word, the id holds nothing else, and the body nothing but another
    such line (制表人：王某 in the first cell, 审核人：李某 further along, under the body:
    the line was refused as a petition with an empty id). `cells` are the chunk's, stripped."""
    first = pd.Series("", index=cells.index)
    for column in reversed(cells.columns):  # column by column, not row by row: predict streams large ledgers
        first = cells[column].where(cells[column].ne(""), first)
    marked = first.str.startswith(FOOTER_WORDS)
    by_name = {canonical: column for column, canonical in mapping.items()}
    blank = pd.Series("", index=cells.index)
    # A JSONL record may lack a key the first records had.
    pid, body = (cells[by_name[c]] if by_name[c] in cells.columns else blank for c in ("id", "body"))
    return (marked & (pid.eq("") | pid.eq(first)) & (body.eq("") | body.str.startswith(FOOTER_WORDS))).to_numpy()


def _header_words(columns: Sequence[object], header: list[list[str]]) -> list[set[str]]:
    """Each column's own header words: its name, and what the header's rows hold above it
    (办理情况, a group heading merged over the label columns)."""
    return [{_header_text(column)} | {_header_text(row[j]) for row in header if j < len(row) and str(row[j]).strip()}
            for j, column in enumerate(columns)]


def _holds_header_words(values: Sequence[object], words: list[set[str]]) -> bool:
    """Whether a row holds header words only: each filled cell a header name the reader knows,
    or one its own column's header holds."""
    filled = [(j, _header_text(value)) for j, value in enumerate(values) if str(value).strip()]
    return bool(filled) and all(text in KNOWN_HEADERS or (j < len(words) and text in words[j]) for j, text in filled)


def _repeated_header_rows(cells: pd.DataFrame, mapping: dict[object, str], header: list[list[str]]) -> np.ndarray:
    """Which rows repeat the header: each filled cell is a header name (that of its column, or
    any the reader knows), the id's among them. Ledgers of several months pasted one under
    another, or printed with the header on every page, carry it again: predict scored it as
    a petition numbered 编号, and train refused it as an "unknown division '承办处室'". The
    rows of a header over several rows (`header`) come again together: the rows beside a
    repeated one, within the header's height, that hold its words only go with it."""
    by_name = {canonical: column for column, canonical in mapping.items()}
    if by_name.get("id") not in cells.columns:
        return np.zeros(len(cells), bool)
    words = _header_words(cells.columns, header)
    # The id first, on the whole chunk (predict streams large ledgers); the rest on its few hits.
    candidates = cells[by_name["id"]].str.replace(r"\s+", "", regex=True).isin(KNOWN_HEADERS).to_numpy().copy()
    for i in candidates.nonzero()[0]:
        candidates[i] = _holds_header_words(cells.iloc[i].tolist(), words)
    repeated = candidates.copy()
    for i in candidates.nonzero()[0]:
        # 办理情况 above the repeated 承办处室 row, or the label names below an id merged down:
        # the other row was read as a petition named 编号, or refused as one with an empty id.
        for step in (-1, 1):
            j = i + step
            while abs(j - i) < len(header) and 0 <= j < len(cells) and not repeated[j] \
                    and _holds_header_words(cells.iloc[j].tolist(), words):
                repeated[j] = True
                j += step
    return repeated


def _headers_kept_whole(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """`chunks` with the rows at a chunk's end that could begin a header over several rows
    repeated (header words only) moved to the front of the next one, so that predict, which
    cuts a large ledger into chunks, leaves the repeat out as a whole reading does."""
    held: _Chunk | None = None
    for chunk in chunks:
        if held is not None:
            chunk = replace(chunk, frame=pd.concat([held.frame, chunk.frame], ignore_index=True),
                            rows=np.concatenate([held.rows, chunk.rows]))
            held = None
        words = _header_words(chunk.frame.columns, chunk.header)
        tail = 0
        # All such rows, not only the header's height less one: rows held once come back here.
        while len(chunk.header) > 1 and tail < min(HEADER_SEARCH_ROWS, len(chunk.frame)) and \
                _holds_header_words(chunk.frame.iloc[len(chunk.frame) - 1 - tail].tolist(), words):
            tail += 1
        if tail:
            cut = len(chunk.frame) - tail
            held = replace(chunk, frame=chunk.frame.iloc[cut:].reset_index(drop=True), rows=chunk.rows[cut:])
            chunk = replace(chunk, frame=chunk.frame.iloc[:cut].reset_index(drop=True), rows=chunk.rows[:cut])
        yield chunk
    if held is not None:
        yield held


def _numbered_empty_rows(cells: pd.DataFrame, filled: pd.Series) -> np.ndarray:
    """Which rows hold nothing but their 序号: a ledger template numbered down the page ahead
    of the petitions. They stopped the ledger as a petition with an empty id (or, with 序号
    as the only id, with no text). `filled` counts each row's filled cells."""
    counters = [column for column in cells.columns if _header_text(column) == ROW_COUNTER]
    if not counters:
        return np.zeros(len(cells), bool)
    alone = filled.eq(1).to_numpy().copy()
    # A number: a heading under 序号 (一、欠薪类) is told apart as one. Only rows of one cell
    # are looked at, few in a ledger.
    alone[alone] = cells.loc[alone, counters].apply(lambda column: column.str.fullmatch(r"\d+")).any(axis=1).to_numpy()
    return alone


def _heading_rows(cells: pd.DataFrame, filled: pd.Series, mapping: dict[object, str]) -> np.ndarray:
    """Which rows are a heading between blocks of petitions (一、欠薪类, 2026年8月): one filled
    cell, outside the id, title and body (under 序号, merged across the row). They stopped
    the ledger as a petition with an empty id. One cell in the id, title or body column is
    still refused unless it names a period or a section: it is a petition without its id or
    its text. In a ledger without 序号 a title merged across the row sits under the id, or
    further right under the title or the body when the merge starts there (the first column
    left empty): it is a heading when it names a period or a section (PERIOD_TITLE) and every
    other filled cell is a copy of it (the merge unmerged and filled), so that no petition,
    whose case number differs from its text, is taken for one."""
    read = [column for column, canonical in mapping.items()
            if (canonical in TEXT_COLUMNS or canonical == BODY_REQUEST) and column in cells.columns]
    outside = filled.eq(1) & ~cells[read].ne("").any(axis=1)
    if cells.empty or not read:
        return outside.to_numpy()
    # Each row's first filled cell, wherever it is: only the first column was looked at, and a
    # title merged from the title's column on stopped the ledger as a petition with an empty id.
    values = cells.to_numpy()
    first = pd.Series(values[np.arange(len(values)), (values != "").argmax(axis=1)], index=cells.index)
    # Copies only, on the whole chunk (predict streams large ledgers); the title's words on its few hits.
    copies = first.ne("") & (cells.eq(first, axis=0) | cells.eq("")).all(axis=1)
    titled = copies.copy()
    titled[copies] = first[copies].map(lambda text: bool(PERIOD_TITLE.match(_header_text(text))))
    return (outside | titled).to_numpy()


def _without_other_rows(path: Path, chunk: _Chunk, mapping: dict[object, str], sheet: str | None) -> _Chunk:
    """`chunk` without its totals, footers, repeated headers and headings, each named in a
    warning: scored as petitions, 合计 or 制表人：… came out with a division and a risk in
    predict's results, or stopped the ledger as an "empty petition text"."""
    if chunk.frame.empty:
        return chunk
    keep = np.ones(len(chunk.frame), bool)
    # Stripped once for every test below: predict streams large ledgers through here.
    cells = chunk.frame.fillna("").astype(str).apply(lambda column: column.str.strip())
    filled = cells.ne("").sum(axis=1)
    for rows, kind, what in (
            (_footer_rows(cells, mapping), LedgerWarningKind.FOOTER_ROWS, "a total or footer (合计, 制表人, 填表说明 …)"),
            (_repeated_header_rows(cells, mapping, chunk.header), LedgerWarningKind.HEADER_AGAIN, "the header again"),
            (_numbered_empty_rows(cells, filled), LedgerWarningKind.COUNTER_ONLY, "a 序号 and nothing else"),
            (_heading_rows(cells, filled, mapping), LedgerWarningKind.HEADING_ROWS,
             "a heading between petitions (一、欠薪类, 2026年8月 …)")):
        rows = rows & keep
        if rows.any():
            warnings.warn(LedgerWarning(
                f"{_where(path, sheet)}: row(s) {_row_list(chunk.rows[rows])} left out: {what}, not a petition",
                LedgerWarningDetail(kind, str(path), sheet, rows=tuple(int(r) for r in chunk.rows[rows]))), stacklevel=2)
            keep &= ~rows
    if keep.all():
        return chunk
    return replace(chunk, frame=chunk.frame[keep].reset_index(drop=True), rows=chunk.rows[keep])


def _join_request(frame: pd.DataFrame) -> None:
    """The body as the account of the matter followed, on a line of its own, by the request
    kept in a column of its own (信访内容, 主要诉求); either alone when the other is empty. The
    ledger was refused for two columns meaning the body."""
    account, request = frame["body"], frame.pop(BODY_REQUEST)
    both = account.str.strip().ne("") & request.str.strip().ne("")
    frame["body"] = (account + "\n" + request).where(both, account.where(account.str.strip().ne(""), request))


def _standard(path: Path, chunk: _Chunk, mapping: dict[object, str], taxonomy: Taxonomy, require_labels: bool,
              sheet: str | None) -> pd.DataFrame:
    # reindex, not [...]: a JSONL record may lack a key the first records had.
    frame = chunk.frame.rename(columns=mapping).reindex(columns=list(dict.fromkeys(mapping.values())))
    if "title" not in frame.columns:
        frame["title"] = ""
    frame = frame.fillna("").astype(str)
    if BODY_REQUEST in frame.columns:
        _join_request(frame)
    frame["row"] = chunk.rows
    frame["source"] = str(path)
    headers = {canonical: str(column).strip() for column, canonical in mapping.items()}
    for i, (pid, title, body) in enumerate(zip(frame["id"], frame["title"], frame["body"], strict=True)):
        if not pid.strip():
            raise LedgerError(path, "empty id", row=int(chunk.rows[i]), column="id", sheet=sheet)
        if not has_text(title, body):
            raise LedgerError(path, "empty petition text (title and body are both empty, or hold only spaces and "
                                    "invisible characters)", row=int(chunk.rows[i]),
                              column="body", sheet=sheet)
    frame["id"] = frame["id"].str.strip()
    shortened = frame["id"].str.fullmatch(SHORTENED_NUMBER).to_numpy()
    if shortened.any():
        # Case numbers of 12 digits or more come out of Excel's CSV as 2.02607E+11: several
        # petitions share one, none matches the office's records, and train called them
        # "duplicate id for another petition".
        i = int(shortened.nonzero()[0][0])
        raise ShortenedNumberError(path, frame["id"].iloc[i], headers.get("id", "id"), int(chunk.rows[i]), sheet)
    frame["synthetic"] = (frame["synthetic"].str.strip().str.lower().isin(TRUE_VALUES)
                          if "synthetic" in frame.columns else False)
    if require_labels:
        _resolve_labels(path, frame, chunk.rows, taxonomy, sheet, headers)
    if "received_time" in frame.columns:
        _add_time_of_day(frame)
    if "received_at" in frame.columns:
        parsed = parse_dates(frame["received_at"])
        bad = frame["received_at"].str.strip().ne("") & parsed.isna()
        if bad.any() and not require_labels:
            # Scoring and linking do not need the date: a date that cannot be read is left
            # empty, where it stopped a ledger whose results have no date at all.
            example = frame["received_at"][bad].iloc[0]
            warnings.warn(LedgerWarning(
                f"{_where(path, sheet)}: row(s) {_row_list(chunk.rows[bad.to_numpy()])}, column "
                f"'received_at': not a date, left empty (e.g. {example!r})",
                LedgerWarningDetail(LedgerWarningKind.DATES_LEFT_EMPTY, str(path), sheet,
                                    rows=tuple(int(r) for r in chunk.rows[bad.to_numpy()]),
                                    headers=(headers.get("received_at", "received_at"),), column="received_at",
                                    value=example)), stacklevel=2)
        elif bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise LedgerError(path, _not_a_date(frame["received_at"].iloc[i], _under("received_at", headers)),
                              row=int(chunk.rows[i]), column="received_at", sheet=sheet)
        frame["received_at"] = parsed
    return frame


# ------------------------------------------------------------------ reading
def iter_ledger(path: str | Path, taxonomy: Taxonomy, require_labels: bool = True, sheet: str | None = None,
                chunk_rows: int | None = None, max_bytes: int | None = None) -> Iterator[pd.DataFrame]:
    """The petitions of one ledger file, checked, `chunk_rows` at a time (all at once by
    default). CSV and JSONL files are read as they are consumed, in constant memory;
    a workbook is read whole. `max_bytes` (default MAX_LEDGER_BYTES; 0 for no limit)
    refuses a larger file before anything is read, unless it is a text file read in chunks. `sheet` names the sheet of a workbook;
    without it, the first sheet that has the columns is read."""
    path = Path(path)
    if max_bytes is None:
        max_bytes = MAX_LEDGER_BYTES  # looked up now, so that the limit can be changed at run time
    if not path.exists():
        raise LedgerError(path, "file not found")
    if path.is_dir():
        raise LedgerError(path, "is a directory, expected a CSV, XLSX, XLS or JSONL file")
    size = path.stat().st_size
    if size == 0:
        raise LedgerError(path, "the file is empty")
    with path.open("rb") as handle:
        magic = handle.read(len(OLE2_MAGIC))
    # By content as well as by name: a workbook saved or downloaded under a .csv name was
    # refused as "binary data", as if it were no ledger at all.
    workbook = magic == OLE2_MAGIC or magic.startswith(ZIP_MAGIC) or path.suffix.lower() in (".xlsx", ".xlsm")
    # A text file read in chunks needs no more memory when it is larger; a workbook is read whole.
    if max_bytes and size > max_bytes and (workbook or not chunk_rows):
        raise LedgerError(path, f"file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit; "
                                "split the ledger into several files (each given with its own --data or --input)"
                                + ("" if chunk_rows else ", or save it as CSV"))
    required = ("id", "body") + (HEADS if require_labels else ())
    if workbook and magic != OLE2_MAGIC and not magic.startswith(ZIP_MAGIC):
        raise LedgerError(path, "not a readable XLSX workbook (not a zip archive: a CSV or text file named .xlsx?)")
    chunks = (_workbook_chunks(path, magic == OLE2_MAGIC, required, sheet, chunk_rows) if workbook
              else _text_chunks(path, required, chunk_rows))
    mapping: dict[object, str] | None = None
    empty = True
    for chunk in _headers_kept_whole(chunks):
        if mapping is None:
            mapping = _mapping(path, list(chunk.frame.columns), required, chunk.sheet, strict=require_labels,
                               names=chunk.names, letters=chunk.letters)
        chunk = _without_other_rows(path, chunk, mapping, chunk.sheet)
        if chunk.frame.empty:
            continue
        empty = False
        yield _standard(path, chunk, mapping, taxonomy, require_labels, chunk.sheet)
    if empty:
        raise LedgerError(path, "no data rows (header only)")


def read_ledger(path: str | Path, taxonomy: Taxonomy, require_labels: bool = True,
                max_bytes: int | None = None, sheet: str | None = None) -> pd.DataFrame:
    frames = list(iter_ledger(path, taxonomy, require_labels, sheet=sheet, max_bytes=max_bytes))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _text_key(row: pd.Series) -> str:
    """A petition's text as compared between two rows with one id: spacing and line ends
    differ between exports of the same ledger."""
    return re.sub(r"\s+", "", f"{row['title']}{row['body']}")


def read_ledgers(paths: list[str | Path], taxonomy: Taxonomy, require_labels: bool = True,
                 sheet: str | None = None) -> Ledger:
    """All files as one frame; a petition listed twice with the same labels is kept once,
    with different labels, or one id given to two different texts, it is an error that
    names both places. `sheet` names the sheet to read in every workbook among them (CSV
    and JSONL files have none)."""
    if not paths:
        raise LedgerError("--data", "no ledger given")
    frames = [read_ledger(p, taxonomy, require_labels, sheet=sheet) for p in paths]
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
                if _text_key(frame.loc[i]) != _text_key(frame.loc[j]):
                    # Two petitions numbered alike (a typing slip in 编号): dropping one would
                    # lose a petition from training without a word, counted as a repeat.
                    raise LedgerError(
                        frame.loc[i, "source"],
                        f"duplicate id {pid!r} for another petition: its title and body differ from those at "
                        f"{frame.loc[j, 'source']} row {frame.loc[j, 'row']}; give each petition its own id",
                        row=int(frame.loc[i, "row"]), column="id",
                    )
                dropped += 1
                continue
            seen[pid] = i
            keep.append(i)
        frame = frame.iloc[keep].reset_index(drop=True)
    return Ledger(frame=frame, sources=[str(p) for p in paths], duplicates_dropped=dropped)

