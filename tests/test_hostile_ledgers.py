"""Hostile ledgers through the command line, as staff would meet them: `triage train` and
`triage predict` either answer correctly or stop with exit code 2 and one line naming the
file (and the row or byte when there is one), never a traceback, and write nothing.
tests/test_ledger_reading.py covers the reader itself on the common cases."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from office_ledgers import OFFICE_HEADER, OFFICE_TITLE, office_xls, office_xlsx
from openpyxl.worksheet.formula import ArrayFormula

import training.ledger
from model.taxonomy import load_taxonomy
from training.ledger import read_ledger
from triage.cli import main
from triage.defaults import default_corpus

HEADER = ["id", "title", "body", "division", "risk", "key_group"]
ROW = ["A1", "老板拖欠工资", "三个月没发工资了", "labor_inspection", "medium", "none"]
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def csv_text(rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in [HEADER, *rows]) + "\n"


def gbk_with_bad_bytes(path: Path) -> str:
    good = csv_text([ROW]).encode("gbk")
    path.write_bytes(good + "A2,养老金,".encode("gbk") + b"\xff\xfe\x80" + b",pension,low,none\n")
    return f"invalid byte 0xff at byte {len(good) + len('A2,养老金,'.encode('gbk'))}, line 3"


def xlsx_with_array_formula(path: Path) -> str:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(ROW)
    sheet.append(["A2", "t", None, "pension", "low", "none"])
    sheet["C3"] = ArrayFormula("C3:C3", "=CONCAT(A1:B1)")
    book.save(path)
    return "row 3, column 'body': an array formula"


def opendocument(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")


# name -> (file name, how to make it, what the error must say)
HOSTILE: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "empty": ("l.csv", lambda p: p.write_bytes(b""), "the file is empty"),
    "header only": ("l.csv", lambda p: p.write_text(csv_text([]), encoding="utf-8"), "no data rows (header only)"),
    "only blank lines": ("l.csv", lambda p: p.write_text("\n\n  \n", encoding="utf-8"), "the file is empty"),
    "binary garbage": ("l.csv", lambda p: p.write_bytes(bytes(range(256)) * 40), "binary data, not a CSV/JSONL text file"),
    "a picture": ("l.csv", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\xde\xad" * 500), "binary data"),
    "UTF-16 without BOM": ("l.csv", lambda p: p.write_bytes(csv_text([ROW]).encode("utf-16-le")),
                           "UTF-16 text without a byte-order mark"),
    "GBK with invalid bytes": ("l.csv", gbk_with_bad_bytes, "unreadable encoding"),
    "Excel 97-2003 .xls": ("l.xls", lambda p: p.write_bytes(OLE2 + b"\x00" * 600), "Excel 97-2003 workbook (.xls)"),
    "password-protected .xlsx": ("l.xlsx", lambda p: p.write_bytes(OLE2 + b"\x00" * 600), "password-protected workbook"),
    "HTML saved as .xls": ("l.xls", lambda p: p.write_text("<html><body><table><tr><td>编号</td></tr></table></body></html>",
                                                           encoding="utf-8"), "an HTML or XML page, not a CSV/JSONL file"),
    "CSV named .xlsx": ("l.xlsx", lambda p: p.write_text(csv_text([ROW]), encoding="utf-8"), "not a readable XLSX workbook"),
    "array formula": ("l.xlsx", xlsx_with_array_formula, "array formula; replace it by its value"),
    "OpenDocument spreadsheet": ("l.ods", lambda p: opendocument(p), "an OpenDocument spreadsheet (.ods"),
    "unterminated quote": ("l.csv", lambda p: p.write_text(csv_text([]) + 'A1,"老板,三个月没发工资,pension,low,none\n',
                                                           encoding="utf-8"), "not a valid CSV file"),
    "comma at the end of each row": ("l.csv", lambda p: p.write_text(csv_text([[*ROW, ""]]), encoding="utf-8"),
                                     "row 2: the data rows have more fields than the 6 columns of the header"),
    "JSONL of arrays": ("l.jsonl", lambda p: p.write_text("[1, 2]\n", encoding="utf-8"), "row 1: each line must be a JSON object"),
    "directory": ("ledger.csv", lambda p: p.mkdir(), "is a directory"),
    "missing": ("nowhere.csv", lambda p: None, "file not found"),
}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)  # an exception escaping here is a traceback the user would see: the test fails
    return code, capsys.readouterr().err


def command(kind: str, ledger: Path, model_dir: Path, tmp_path: Path) -> tuple[list[str], Path]:
    out = tmp_path / ("model" if kind == "train" else "out.csv")
    if kind == "train":
        return ["train", "--data", str(ledger), "--out", str(out)], out
    return ["predict", "--model", str(model_dir), "--input", str(ledger), "--output", str(out)], out


def assert_refused(code: int, err: str, kind: str, ledger: Path | None, message: str, out: Path) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert f"triage {kind}: error: {ledger if ledger else ''}" in err
    assert message in err
    assert not out.exists() and not list(out.parent.glob(f"{out.name}*.tmp")) and not list(out.parent.glob(f".{out.name}*"))


@pytest.mark.parametrize("kind", ["train", "predict"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_ledger_stops_with_a_clear_error(case, kind, tmp_path, small_model_dir, capsys):
    name, make, message = HOSTILE[case]
    ledger = tmp_path / name
    made = make(ledger)
    if isinstance(made, str):  # the maker knows a more precise message (the byte, the row)
        message = made
    argv, out = command(kind, ledger, small_model_dir, tmp_path)
    code, err = run(argv, capsys)
    assert_refused(code, err, kind, ledger, message, out)


@pytest.mark.parametrize(("kind", "name"), [("train", "big.csv"), ("train", "big.xlsx"), ("predict", "big.xlsx")])
def test_a_ledger_over_the_size_limit_is_refused(kind, name, tmp_path, small_model_dir, monkeypatch, capsys):
    ledger = tmp_path / name
    if name.endswith(".csv"):
        ledger.write_text(csv_text([ROW] * 50), encoding="utf-8")
    else:
        pd.DataFrame([ROW] * 50, columns=HEADER).to_excel(ledger, index=False)
    monkeypatch.setattr(training.ledger, "MAX_LEDGER_BYTES", 1024)
    argv, out = command(kind, ledger, small_model_dir, tmp_path)
    code, err = run(argv, capsys)
    assert_refused(code, err, kind, ledger, "limit; split the ledger into several files", out)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_predict_streams_a_text_ledger_over_the_size_limit(workers, tmp_path, small_model_dir, monkeypatch, capsys):
    """Read and scored in batches (several of them here, each by a worker process with
    --workers 2), a CSV larger than the limit is scored whole, in order, with a progress line."""
    import training.batch

    ledger = tmp_path / "big.csv"
    rows = [[f"A{i}", *ROW[1:3]] for i in range(1, 5001)]
    ledger.write_text("\n".join(",".join(r) for r in [HEADER[:3], *rows]) + "\n", encoding="utf-8")
    monkeypatch.setattr(training.ledger, "MAX_LEDGER_BYTES", 1024)
    monkeypatch.setattr(training.batch, "STREAM_BATCH", 700)
    monkeypatch.setattr(training.batch, "PROGRESS_SECONDS", 0.0)
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    code, err = run([*argv, "--workers", workers], capsys)
    assert code == 0, err
    with out.open(encoding="utf-8-sig", newline="") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == [r[0] for r in rows]
    assert "scored 700 petitions" in err and f"wrote 5,000 rows to {out}" in err
    assert f"({workers} scoring process" in err


def test_a_bad_row_late_in_a_streamed_ledger_leaves_nothing_written(tmp_path, small_model_dir, monkeypatch, capsys):
    import training.batch

    ledger = tmp_path / "late.csv"
    rows = [[f"A{i}", *ROW[1:3]] for i in range(1, 3001)] + [["", "t", "b"]]
    ledger.write_text("\n".join(",".join(r) for r in [HEADER[:3], *rows]) + "\n", encoding="utf-8")
    monkeypatch.setattr(training.batch, "STREAM_BATCH", 500)
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    code, err = run(argv, capsys)
    assert_refused(code, err, "predict", ledger, "row 3002, column 'id': empty id", out)


@pytest.mark.parametrize(("rows", "message"), [
    ([ROW], "cannot learn from these 1 petitions"),
    # No character appears in two petitions: nothing to learn from, whatever the labels.
    ([[f"A{i}", "", chr(0x4E00 + i), d, r, "none"] for i, (d, r) in
      enumerate([("pension", "low"), ("labor_inspection", "medium")] * 20)], "cannot learn from these 40 petitions"),
])
def test_training_on_too_little_text_is_refused(rows, message, tmp_path, capsys):
    ledger = tmp_path / "few.csv"
    ledger.write_text(csv_text(rows), encoding="utf-8")
    argv, out = command("train", ledger, tmp_path, tmp_path)
    code, err = run(argv, capsys)
    assert_refused(code, err, "train", None, message, out)  # the whole ledger is at fault, not one file or row
    assert "too few, or too little text shared between them" in err


def predicted_ids(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, err = run(argv, capsys)
    assert code == 0, err
    with out.open(encoding="utf-8-sig", newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def test_quotes_newlines_spaces_and_a_bom_are_read_as_meant(tmp_path, small_model_dir, taxonomy, capsys):
    ledger = tmp_path / "messy.csv"
    ledger.write_bytes("\ufeff id , title ,body\n".encode() + (
        ' Q1 ,"标题, 带逗号","第一行\n第二行，""引号""里的话\r\n第三行"\n'
        'Q2,,"只有正文, 没有标题"\n'
        '"Q3","=1+1","@SUM(1)"\n').encode())
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    assert predicted_ids(argv, out, capsys) == ["Q1", "Q2", "Q3"]
    frame = read_ledger(ledger, taxonomy, require_labels=False)
    assert frame["body"].iloc[0] == '第一行\n第二行，"引号"里的话\r\n第三行'
    assert frame["title"].tolist() == ["标题, 带逗号", "", "=1+1"]


@pytest.mark.parametrize(("name", "data"), [
    # Excel's "Unicode Text": UTF-16 with a byte-order mark, tab-separated.
    ("unicode.txt", "\t".join(HEADER[:3]).encode("utf-16") + "\nT1\t欠薪\t三个月没发工资\r\nT2\t养老\t视同缴费年限\r\n".encode("utf-16-le")),
    ("utf16be.csv", b"\xfe\xff" + "id,title,body\nT1,欠薪,三个月没发工资\nT2,养老,视同缴费年限\n".encode("utf-16-be")),
    # Office systems export CSV text under an .xls or .txt name.
    ("export.xls", "id,title,body\nT1,欠薪,三个月没发工资\nT2,养老,视同缴费年限\n".encode("gbk")),
    ("export.txt", "id\ttitle\tbody\nT1\t欠薪\t三个月没发工资\nT2\t养老\t视同缴费年限\n".encode()),
], ids=["utf-16-le-bom-tabs", "utf-16-be-bom", "gbk-csv-named-xls", "utf-8-tabs-named-txt"])
def test_utf16_and_misnamed_text_exports_are_read(name, data, tmp_path, small_model_dir, capsys):
    ledger = tmp_path / name
    ledger.write_bytes(data)
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    assert predicted_ids(argv, out, capsys) == ["T1", "T2"]


def formula_workbook(path: Path, rows: list[list[object]], header: list[str] | None = None) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header or ["编号", "信访事项", "诉求内容"])
    for row in rows:
        sheet.append(row)  # openpyxl stores a string starting with "=" as a formula
    book.save(path)
    return path


def test_xlsx_formulas_are_read_as_text_and_neutralised_in_predict_output(tmp_path, small_model_dir, taxonomy, capsys):
    ledger = formula_workbook(tmp_path / "f.xlsx", [
        ["=SUM(1,2)", "=HYPERLINK(\"http://example.invalid/x\",\"点此查看\")", "老板三个月没发工资"],
        ['=HYPERLINK("http://example.invalid/y","X2")', "欠薪", "=1+1"],
        ["+86", "养老", "视同缴费年限"],
        ["@X4", "养老", "视同缴费年限"],
        ["-5", "养老", "视同缴费年限"],
        [7, "养老", "视同缴费年限"],
    ])
    frame = read_ledger(ledger, taxonomy, require_labels=False)
    assert frame["id"].tolist()[:2] == ["=SUM(1,2)", '=HYPERLINK("http://example.invalid/y","X2")']
    assert frame["title"].iloc[0] == '=HYPERLINK("http://example.invalid/x","点此查看")'
    assert frame["body"].iloc[1] == "=1+1"
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    ids = predicted_ids(argv, out, capsys)
    assert ids == ["'=SUM(1,2)", "'=HYPERLINK(\"http://example.invalid/y\",\"X2\")", "'+86", "'@X4", "'-5", "7"]
    with out.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            assert not any(v[:1] in "=+-@" for v in row.values() if v), row


def saved_as_excel_does(path: Path, values: dict[str, object]) -> Path:
    """The workbook with each formula cell's computed value saved beside the formula, as
    Excel and WPS save every workbook (openpyxl saves formulas without values)."""
    with zipfile.ZipFile(path) as book:
        parts = {item: book.read(item.filename) for item in book.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for item, data in parts.items():
            if item.filename.startswith("xl/worksheets/sheet"):
                def value(match: re.Match[str]) -> str:
                    saved = values[match[1]]
                    kind = ' t="str"' if isinstance(saved, str) else ""
                    return f'<c r="{match[1]}"{kind}><f>{match[2]}</f><v>{saved}</v>'
                data = re.sub(r'<c r="([A-Z]+[0-9]+)"><f>(.*?)</f><v\s*/>', value, data.decode()).encode()
            book.writestr(item, data)
    return path


def test_xlsx_formulas_are_read_as_the_values_excel_saved(tmp_path, small_model_dir, taxonomy, capsys):
    # An office's ledger numbers its petitions with a formula and computes its dates: read as
    # the formulas' text, predict wrote one and the same id for every row.
    ledger = formula_workbook(tmp_path / "f.xlsx", [
        ['="XF-2026-"&TEXT(ROW()-1,"0000")', "老板拖欠工资", "三个月没发工资了", "=DATE(2026,7,1)"],
        ['="XF-2026-"&TEXT(ROW()-1,"0000")', "养老", "视同缴费年限怎么算", "=DATE(2026,7,2)"],
        ['=HYPERLINK("http://example.invalid","XF-2026-0003")', "养老", "视同缴费年限", "2026-07-03"],
    ], header=["编号", "信访事项", "诉求内容", "登记日期"])
    saved_as_excel_does(ledger, {"A2": "XF-2026-0001", "A3": "XF-2026-0002", "A4": "XF-2026-0003",
                                 "D2": 46204, "D3": 46205})
    frame = read_ledger(ledger, taxonomy, require_labels=False)
    assert frame["id"].tolist() == ["XF-2026-0001", "XF-2026-0002", "XF-2026-0003"]
    assert [d.date().isoformat() for d in frame["received_at"]] == ["2026-07-01", "2026-07-02", "2026-07-03"]
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    assert predicted_ids(argv, out, capsys) == ["XF-2026-0001", "XF-2026-0002", "XF-2026-0003"]


def test_training_on_messy_but_valid_ledgers_succeeds(small_corpus, tmp_path, capsys):
    corpus = pd.read_csv(small_corpus, dtype=str, keep_default_na=False)
    first, second = corpus.iloc[:450].copy(), corpus.iloc[450:].copy()
    # CSV: BOM, Chinese headers with surrounding spaces, values with spaces, quotes and newlines.
    first["body"] = first["body"].str.replace("。", '。\n"', n=1, regex=False)
    first["division"] = " " + first["division"] + " "
    first = first.rename(columns={"id": " 编号 ", "title": "信访事项 ", "body": " 诉求内容", "division": "承办处室",
                                  "risk": " 风险等级", "key_group": "重点群体 "})
    messy = tmp_path / "messy.csv"
    first.to_csv(messy, index=False, encoding="utf-8-sig")
    # XLSX: some titles are formulas, read as their text.
    second.loc[second.index[:20], "title"] = "=HYPERLINK(\"http://example.invalid\",\"点击\")"
    book = tmp_path / "second.xlsx"
    second.to_excel(book, index=False)
    out = tmp_path / "model"
    code, err = run(["train", "--data", str(messy), "--data", str(book), "--out", str(out)], capsys)
    assert code == 0, err
    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["training_data"]["rows"] == 900
    assert metadata["training_data"]["sources"] == [str(messy), str(book)]


# ---------------------------------------------------------------- ledgers as offices keep them
@pytest.mark.parametrize("make", [office_xlsx, office_xls], ids=["xlsx", "xls"])
@pytest.mark.parametrize("sheet", [None, "台账"])
def test_an_office_workbook_is_predicted(make, sheet, tmp_path, small_model_dir, capsys):
    ledger = make(tmp_path / f"台账.{make.__name__.split('_')[1]}")
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    if sheet:
        argv += ["--sheet", sheet]
    assert predicted_ids(argv, out, capsys) == ["XF-2026-0107", "XF-2026-0108", "XF-2026-0109"]


def test_a_sheet_that_is_not_there_is_refused_by_name(tmp_path, small_model_dir, capsys):
    ledger = office_xlsx(tmp_path / "l.xlsx")
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    code, err = run([*argv, "--sheet", "Sheet1"], capsys)
    assert_refused(code, err, "predict", ledger, "no sheet named 'Sheet1'; the workbook has '填表说明', '台账'", out)


def office_ledger_of(corpus: pd.DataFrame) -> list[list[object]]:
    """The corpus as an office writes it: a row counter, Chinese names, dates in Chinese."""
    taxonomy = load_taxonomy()
    return [[i, r.id, r.title, r.body, taxonomy.name_of("division", r.division), taxonomy.name_of("risk", r.risk),
             "无" if r.key_group == "none" else taxonomy.name_of("key_group", r.key_group),
             f"2026年{1 + i % 12}月{1 + i % 28}日"] for i, r in enumerate(corpus.itertuples(), start=1)]


def test_an_office_xls_ledger_trains(small_corpus, tmp_path, capsys):
    xlwt = pytest.importorskip("xlwt")
    rows = office_ledger_of(pd.read_csv(small_corpus, dtype=str, keep_default_na=False).iloc[:600])
    book = xlwt.Workbook(encoding="utf-8")
    book.add_sheet("说明").write(0, 0, "季度台账")
    sheet = book.add_sheet("台账")
    sheet.write_merge(0, 0, 0, len(OFFICE_HEADER) - 1, OFFICE_TITLE)
    for i, row in enumerate([OFFICE_HEADER, *rows], start=1):
        for j, value in enumerate(row):
            sheet.write(i, j, value)
    ledger = tmp_path / "台账.xls"
    book.save(str(ledger))
    out = tmp_path / "model"
    code, err = run(["train", "--data", str(ledger), "--out", str(out)], capsys)
    assert code == 0, err
    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["training_data"]["rows"] == 600
    assert metadata["training_data"]["period"][0].startswith("2026-01")


def test_a_tiny_ledger_gets_a_plain_error_and_trains_beside_the_corpus(small_corpus, tmp_path, capsys):
    corpus = pd.read_csv(small_corpus, dtype=str, keep_default_na=False)
    members = corpus[corpus["key_group"] != "none"].iloc[:1]
    tiny = pd.concat([corpus[corpus["key_group"] == "none"].iloc[:59], members])
    ledger = tmp_path / "tiny.xlsx"
    book = openpyxl.Workbook()
    book.active.append(OFFICE_HEADER)
    for row in office_ledger_of(tiny):
        book.active.append(row)
    book.save(ledger)
    out = tmp_path / "model"
    code, err = run(["train", "--data", str(ledger), "--out", str(out)], capsys)
    assert code == 2, err
    assert "Traceback" not in err and "np." not in err and "int64" not in err
    assert f"key_group: need at least two labels with 2+ examples each, got {{'{members['key_group'].iloc[0]}': 1" in err
    assert "add --with-corpus" in err
    assert not out.exists()
    code, err = run(["train", "--data", str(ledger), "--out", str(out), "--with-corpus"], capsys)
    assert code == 0, err
    sources = json.loads((out / "metadata.json").read_text(encoding="utf-8"))["training_data"]["sources"]
    assert sources == [str(ledger), str(default_corpus())]


def test_training_that_would_not_fit_in_memory_is_refused_before_it_starts(small_corpus, tmp_path, monkeypatch, capsys):
    import training.memory

    monkeypatch.setattr(training.memory, "available_bytes", lambda: 300 * 2**20)
    out = tmp_path / "model"
    code, err = run(["train", "--data", str(small_corpus), "--out", str(out)], capsys)
    assert_refused(code, err, "train", None, "training on 900 petitions (", out)
    assert "GiB of memory at its peak, and 0.3 GiB is available" in err
    assert "fitting on" not in err  # refused before any work
    monkeypatch.setenv(training.memory.SKIP_VARIABLE, "1")
    assert training.memory.check_training_memory(["工资"] * 10) > 300 * 2**20


def test_a_ledger_fitted_with_a_held_out_sample_is_estimated_at_its_lower_rate():
    # Its heads share one mapped matrix (model.triage), so the same characters need less
    # memory than in a ledger small enough for folds; the estimate must still grow with them.
    from model.triage import HOLDOUT_ABOVE
    from training.memory import BASE_BYTES, estimate_training_bytes

    small = ["工资" * 50] * HOLDOUT_ABOVE
    large = ["工资" * 25] * (2 * HOLDOUT_ABOVE)  # the same characters, in twice the petitions
    assert BASE_BYTES < estimate_training_bytes(large) < estimate_training_bytes(small)
    assert estimate_training_bytes(["工资" * 50] * (2 * HOLDOUT_ABOVE)) > estimate_training_bytes(large)


def test_link_reads_the_sheet_it_is_given(tmp_path, capsys):
    # A workbook with a sheet per quarter: predict, train and evaluate took --sheet, link
    # refused it and always linked the first quarter.
    book = openpyxl.Workbook()
    for name, ids in (("2026Q3", ["Q3-1", "Q3-2"]), ("2026Q4", ["Q4-1", "Q4-2"])):
        sheet = book.create_sheet(name)
        sheet.append(["编号", "信访事项", "诉求内容"])
        for pid in ids:
            sheet.append([pid, "老板拖欠工资", "三个月没发工资了"])
    book.remove(book["Sheet"])
    ledger = tmp_path / "台账.xlsx"
    book.save(ledger)
    out = tmp_path / "linked.csv"
    code, err = run(["link", "--input", str(ledger), "--output", str(out), "--sheet", "2026Q4"], capsys)
    assert code == 0, err
    with out.open(encoding="utf-8-sig", newline="") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == ["Q4-1", "Q4-2"]


@pytest.mark.parametrize("name", ["台账.csv", "台账", "台账.xlsx.download"])
def test_a_workbook_under_another_name_is_read_as_the_workbook_it_is(name, tmp_path, small_model_dir, capsys):
    # Saved or downloaded under a .csv name (or none), an .xlsx was refused as "binary data",
    # as if it were no ledger at all; an .xls under any name was already read.
    ledger = office_xlsx(tmp_path / "l.xlsx").rename(tmp_path / name)
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    assert predicted_ids(argv, out, capsys) == ["XF-2026-0107", "XF-2026-0108", "XF-2026-0109"]


def _hidden_quarter_first(path: Path, kind: str) -> Path:
    quarters = (("2026Q2", ["Q2-1", "Q2-2"], True), ("2026Q3", ["Q3-1", "Q3-2"], False))
    if kind == "xlsx":
        book = openpyxl.Workbook()
        book.remove(book.active)
        for name, ids, hidden in quarters:
            sheet = book.create_sheet(name)
            sheet.append(["编号", "信访事项", "诉求内容"])
            for pid in ids:
                sheet.append([pid, "老板拖欠工资", "三个月没发工资了"])
            sheet.sheet_state = "hidden" if hidden else "visible"
        book.save(path)
        return path
    xlwt = pytest.importorskip("xlwt")
    book = xlwt.Workbook(encoding="utf-8")
    for name, ids, hidden in quarters:
        sheet = book.add_sheet(name)
        for j, header in enumerate(["编号", "信访事项", "诉求内容"]):
            sheet.write(0, j, header)
        for i, pid in enumerate(ids, start=1):
            for j, value in enumerate([pid, "老板拖欠工资", "三个月没发工资了"]):
                sheet.write(i, j, value)
        sheet.visibility = 1 if hidden else 0
    book.active_sheet = 1
    book.save(str(path))
    return path


@pytest.mark.parametrize("kind", ["xlsx", "xls"])
def test_the_sheet_read_is_the_one_shown_not_a_hidden_one_before_it(kind, tmp_path, small_model_dir, capsys):
    # Offices hide last quarter's sheet rather than delete it; it was read in place of the
    # sheet the person sees, without a word.
    ledger = _hidden_quarter_first(tmp_path / f"台账.{kind}", kind)
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    assert predicted_ids(argv, out, capsys) == ["Q3-1", "Q3-2"]
    assert predicted_ids([*argv, "--sheet", "2026Q2"], out, capsys) == ["Q2-1", "Q2-2"]


def test_total_and_footer_rows_are_left_out_with_a_warning_naming_them(tmp_path, small_model_dir, capsys):
    # 合计 and 制表人：… at the foot of a ledger were scored as petitions (with a division
    # and a risk in the results) or stopped predict as "empty petition text".
    ledger = tmp_path / "季度台账.csv"
    rows = [["XF-0401", "老板拖欠工资", "厂里三个月没发工资了"], ["XF-0402", "养老金算少了", "视同缴费年限没有算进去"],
            ["合计", "共2件", ""], ["制表人：王某", "", ""], ["", "审核人：李某", ""], ["填表说明：按受理顺序填写", "", ""]]
    ledger.write_text("\n".join(",".join(r) for r in [["编号", "标题", "来信内容"], *rows]) + "\n", encoding="utf-8")
    argv, out = command("predict", ledger, small_model_dir, tmp_path)
    code, err = run(argv, capsys)
    assert code == 0, err
    assert [r["id"] for r in csv.DictReader(out.open(encoding="utf-8-sig"))] == ["XF-0401", "XF-0402"]
    assert f"triage predict: warning: {ledger}: row(s) 4, 5, 6, 7 left out: a total or footer" in err, err
    # A petition with a case number and no text is still refused, beside a total row.
    rows = [["XF-0401", "老板拖欠工资", "厂里三个月没发工资了"], ["XF-0402", "", ""], ["合计", "", ""]]
    ledger.write_text("\n".join(",".join(r) for r in [["编号", "标题", "来信内容"], *rows]) + "\n", encoding="utf-8")
    out.unlink()
    code, err = run(argv, capsys)
    assert_refused(code, err, "predict", ledger, "row 3, column 'body': empty petition text", out)


def test_columns_predict_and_link_do_not_need_do_not_stop_them(tmp_path, small_model_dir, capsys):
    # Two date columns (来信日期, 受理日期), 群体 beside 重点群体 and one date nobody can read
    # stopped predict and link, whose results use none of them.
    ledger = tmp_path / "台账.csv"
    rows = [["编号", "标题", "来信内容", "来信日期", "受理日期", "重点群体", "群体"],
            ["XF-0601", "老板拖欠工资", "厂里三个月没发工资了", "2026-07-01", "2026-07-02", "无", "无"],
            ["XF-0602", "养老金算少了", "视同缴费年限没有算进去", "七月初", "2026-07-03", "无", "无"]]
    ledger.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    predicted, linked = tmp_path / "predicted.csv", tmp_path / "linked.csv"
    for argv, out in ((["predict", "--model", str(small_model_dir), "--input", str(ledger), "--output", str(predicted)],
                       predicted), (["link", "--input", str(ledger), "--output", str(linked)], linked)):
        code, err = run(argv, capsys)
        assert code == 0, err
        assert [r["id"] for r in csv.DictReader(out.open(encoding="utf-8-sig"))] == ["XF-0601", "XF-0602"]
        assert "columns '来信日期' and '受理日期' both mean 'received_at'; '来信日期' is read" in err, err
        assert "columns '重点群体' and '群体' both mean 'key_group'" in err, err
        assert "row(s) 3, column 'received_at': not a date, left empty" in err, err
    assert [r["received_at"] for r in csv.DictReader(linked.open(encoding="utf-8-sig"))] == ["2026-07-01", ""]
    # Training learns from these columns: it still refuses, saying which column to rename or remove.
    code, err = run(["train", "--data", str(ledger), "--out", str(tmp_path / "model")], capsys)
    assert code == 2
    assert ("two columns map to 'received_at': '来信日期' and '受理日期'; remove one of them, or rename '受理日期'"
            in err), err


def test_a_workbook_too_large_to_read_whole_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # A workbook is read whole, its sheets unpacked many times the file's size: a large one
    # got the process killed, with no message. CSV is read in chunks.
    ledger = office_xlsx(tmp_path / "台账.xlsx")
    monkeypatch.setattr(training.ledger, "available_bytes", lambda: 4096)
    monkeypatch.delenv("TRIAGE_SKIP_MEMORY_CHECK", raising=False)
    with pytest.raises(training.ledger.LedgerError, match="save it as UTF-8 CSV, which is read in chunks"):
        read_ledger(ledger, load_taxonomy(), require_labels=False)
    monkeypatch.setenv("TRIAGE_SKIP_MEMORY_CHECK", "1")
    assert len(read_ledger(ledger, load_taxonomy(), require_labels=False))
