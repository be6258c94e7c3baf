from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from office_ledgers import (
    GROUPED_HEADER,
    OFFICE_HEADER,
    OFFICE_TITLE,
    TWO_ROW_HEADER,
    filtered_xlsx,
    office_xls,
    office_xlsx,
    two_row_header_csv,
    two_row_header_xlsx,
)
from serving import app_with_key

from training.ledger import LedgerError, LedgerWarning, LedgerWarningKind, iter_ledger, read_ledger, read_ledgers

ROWS = [
    {"id": "A1", "title": "老板拖欠工资", "body": "三个月没发工资", "division": "labor_inspection", "risk": "medium",
     "key_group": "none"},
    {"id": "A2", "title": "咨询养老金", "body": "视同缴费年限怎么算", "division": "pension", "risk": "low",
     "key_group": "none"},
]
CHINESE = [
    {"编号": "B1", "信访事项": "工伤认定", "诉求内容": "单位不给认定工伤", "承办处室": "工伤保险处", "风险等级": "加急",
     "重点群体": "无", "登记日期": "2025-03-02"},
    {"编号": "B2", "信访事项": "民办教师", "诉求内容": "我是原民办教师，教龄没有认定", "承办处室": "pension",
     "风险等级": "中", "重点群体": "民办教师、代课教师", "登记日期": "2025/04/01"},
]


def write_csv(path, rows, encoding="utf-8"):
    pd.DataFrame(rows).to_csv(path, index=False, encoding=encoding)
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_in_every_office_encoding_loads(tmp_path, taxonomy, encoding):
    frame = read_ledger(write_csv(tmp_path / "l.csv", CHINESE, encoding), taxonomy)
    assert frame["division"].tolist() == ["work_injury", "pension"]
    assert frame["risk"].tolist() == ["medium", "medium"]
    assert frame["key_group"].tolist() == ["none", "minban_teachers"]
    assert str(frame["received_at"].iloc[1].date()) == "2025-04-01"


@pytest.mark.parametrize(("name", "chunk_rows"), [("l.csv", None), ("l.csv", 1), ("l.jsonl", None)])
def test_gbk_text_behind_a_utf8_byte_order_mark_is_read(tmp_path, taxonomy, name, chunk_rows):
    # Some export programs write a UTF-8 byte-order mark whatever the encoding: GBK text
    # behind one was refused as "unreadable encoding".
    import codecs

    text = ("编号,标题,内容\nA1,欠薪,三个月没发工资\nA2,养老,视同缴费年限\n" if name.endswith(".csv") else
            '{"编号": "A1", "标题": "欠薪", "内容": "三个月没发工资"}\n{"编号": "A2", "标题": "养老", "内容": "视同缴费年限"}\n')
    path = tmp_path / name
    path.write_bytes(codecs.BOM_UTF8 + text.encode("gbk"))
    frame = pd.concat(iter_ledger(path, taxonomy, require_labels=False, chunk_rows=chunk_rows))
    assert frame[["id", "title", "body"]].values.tolist() == [["A1", "欠薪", "三个月没发工资"], ["A2", "养老", "视同缴费年限"]]
    assert frame["row"].tolist() == ([2, 3] if name.endswith(".csv") else [1, 2])


def test_xlsx_and_jsonl_load(tmp_path, taxonomy):
    xlsx = tmp_path / "l.xlsx"
    pd.DataFrame(CHINESE).to_excel(xlsx, index=False)
    jsonl = tmp_path / "l.jsonl"
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), encoding="utf-8")
    assert read_ledger(xlsx, taxonomy)["id"].tolist() == ["B1", "B2"]
    assert read_ledger(jsonl, taxonomy)["division"].tolist() == ["labor_inspection", "pension"]


@pytest.mark.parametrize(("mutate", "message", "row", "column"), [
    (lambda r: [{k: v for k, v in x.items() if k != "risk"} for x in r], "missing column", None, None),
    (lambda r: [r[0], {**r[1], "title": "", "body": "  "}], "empty petition text", 3, "body"),
    (lambda r: [r[0], {**r[1], "division": "housing"}], "unknown division 'housing'", 3, "division"),
    (lambda r: [r[0], {**r[1], "risk": "critical"}], "unknown risk", 3, "risk"),
    (lambda r: [r[0], {**r[1], "id": ""}], "empty id", 3, "id"),
])
def test_bad_rows_are_reported_with_file_row_and_column(tmp_path, taxonomy, mutate, message, row, column):
    path = write_csv(tmp_path / "bad.csv", mutate(ROWS))
    with pytest.raises(LedgerError, match=message) as caught:
        read_ledger(path, taxonomy)
    assert caught.value.path == str(path)
    assert (caught.value.row, caught.value.column) == (row, column)


def test_the_matter_column_is_read_under_its_chinese_header(tmp_path, taxonomy):
    rows = [{**r, "事项编号": "SX-7"} for r in CHINESE]
    assert read_ledger(write_csv(tmp_path / "m.csv", rows), taxonomy)["matter"].tolist() == ["SX-7", "SX-7"]


def test_duplicate_id_with_different_labels_names_both_places(tmp_path, taxonomy):
    first = write_csv(tmp_path / "q1.csv", ROWS)
    second = write_csv(tmp_path / "q2.csv", [{**ROWS[0], "division": "labor_relations"}])
    with pytest.raises(LedgerError, match=r"duplicate id 'A1'.*q1\.csv row 2"):
        read_ledgers([first, second], taxonomy)
    same = write_csv(tmp_path / "q3.csv", [ROWS[0]])
    assert read_ledgers([first, same], taxonomy).duplicates_dropped == 1


def test_one_id_given_to_two_different_petitions_is_refused_not_dropped(tmp_path, taxonomy):
    # Same labels, another text: one of two petitions was dropped from training, counted as
    # an "exact duplicate".
    first = write_csv(tmp_path / "q1.csv", ROWS)
    other = write_csv(tmp_path / "q2.csv", [{**ROWS[0], "body": ROWS[0]["body"] + "另外，单位还拖欠了加班费。"}])
    with pytest.raises(LedgerError, match=r"q2\.csv, row 2, column 'id': duplicate id 'A1' for another petition.*"
                                          r"q1\.csv row 2") as caught:
        read_ledgers([first, other], taxonomy)
    assert (caught.value.row, caught.value.column) == (2, "id")
    # The same petition exported again, its spacing and line ends changed, is still one petition.
    respaced = write_csv(tmp_path / "q3.csv", [{**ROWS[0], "body": f" {ROWS[0]['body'][:3]}\r\n{ROWS[0]['body'][3:]} "}])
    assert read_ledgers([first, respaced], taxonomy).duplicates_dropped == 1


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"id,title,body,division,risk,key_group\n", "header only"),
    (b"\x00\x01\x02binary\x00junk" * 20, "binary"),
    (b"id,title,body\n1,\xff\xfe\xfd\xff\xff,x\n", "unreadable encoding"),
])
def test_hostile_files_get_a_clear_error(tmp_path, taxonomy, content, message):
    path = tmp_path / "hostile.csv"
    path.write_bytes(content)
    with pytest.raises(LedgerError, match=message):
        read_ledger(path, taxonomy)


def test_embedded_newlines_and_quotes_survive(tmp_path, taxonomy):
    rows = [{**ROWS[0], "body": '第一行\n第二行，"引号"里的话'}]
    frame = read_ledger(write_csv(tmp_path / "q.csv", rows), taxonomy)
    assert frame["body"].iloc[0] == '第一行\n第二行，"引号"里的话'


def test_oversized_file_is_refused_before_reading(tmp_path, taxonomy):
    path = write_csv(tmp_path / "big.csv", ROWS)
    with pytest.raises(LedgerError, match="over the"):
        read_ledger(path, taxonomy, max_bytes=10)


# ---------------------------------------------------------------- ledgers as offices keep them
@pytest.mark.parametrize("make", [office_xlsx, office_xls], ids=["xlsx", "xls"])
def test_an_office_workbook_is_read_from_the_sheet_that_has_the_columns(tmp_path, taxonomy, make):
    """Title row above the header, 序号 beside 编号, the ledger on the second sheet,
    a merged division cell, dates written three ways (one an Excel serial number)."""
    path = make(tmp_path / f"台账.{make.__name__.split('_')[1]}")
    frame = read_ledger(path, taxonomy)
    assert frame["id"].tolist() == ["XF-2026-0107", "XF-2026-0108", "XF-2026-0109"]
    assert frame["division"].tolist() == ["labor_inspection", "labor_inspection", "pension"]
    assert frame["risk"].tolist() == ["medium", "high", "low"]
    assert [str(d.date()) for d in frame["received_at"]] == ["2026-07-01", "2026-07-02", "2026-07-03"]
    assert frame["row"].tolist() == [3, 4, 5]


@pytest.mark.parametrize("make", [office_xlsx, office_xls], ids=["xlsx", "xls"])
def test_a_named_sheet_is_read_and_a_wrong_name_lists_the_sheets(tmp_path, taxonomy, make):
    path = make(tmp_path / f"l.{make.__name__.split('_')[1]}")
    assert len(read_ledger(path, taxonomy, sheet="台账")) == 3
    with pytest.raises(LedgerError, match="no sheet named '汇总'; the workbook has '填表说明', '台账'"):
        read_ledger(path, taxonomy, sheet="汇总")
    with pytest.raises(LedgerError, match=r"sheet '填表说明': missing column\(s\)") as caught:
        read_ledger(path, taxonomy, sheet="填表说明")
    assert caught.value.sheet == "填表说明"


def test_a_workbook_with_a_sheet_per_month_names_the_sheets_it_does_not_read(tmp_path, taxonomy, recwarn):
    # A quarter's workbook with a sheet per month: the first was read and the others
    # dropped without a word, and a model was trained on a third of the quarter.
    import openpyxl

    from training.ledger import LedgerWarning

    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active.append(["本表按月分页填写"])
    for month in ("7月", "8月", "9月"):
        sheet = book.create_sheet(month)
        sheet.append(["编号", "标题", "来信内容"])
        sheet.append([f"{month}-1", "老板拖欠工资", "厂里三个月没发工资了"])
    book.create_sheet("汇总").append(["承办处室", "件数"])
    path = tmp_path / "季度台账.xlsx"
    book.save(path)
    with pytest.warns(LedgerWarning, match=r"季度台账\.xlsx: sheet '7月' is read; sheet\(s\) '8月', '9月' also hold a "
                                           r"ledger and are not read \(give --sheet NAME"):
        assert read_ledger(path, taxonomy, require_labels=False)["id"].tolist() == ["7月-1"]
    recwarn.clear()
    assert read_ledger(path, taxonomy, require_labels=False, sheet="8月")["id"].tolist() == ["8月-1"]
    assert not [w for w in recwarn if issubclass(w.category, LedgerWarning)]


def test_errors_in_a_workbook_name_the_sheet_and_the_row_people_see(tmp_path, taxonomy):
    import openpyxl

    path = office_xlsx(tmp_path / "l.xlsx")
    book = openpyxl.load_workbook(path)
    book["台账"]["F5"] = "很急"
    book.save(path)
    # The ledger's own header is named beside the canonical column, which the person does not
    # see in their file; an empty cell is said to be one, not an "unknown division ''".
    with pytest.raises(LedgerError, match="sheet '台账', row 5, column 'risk': unknown risk '很急' under '风险等级' "
                                          r"\(accepted: the code or the Chinese name"):
        read_ledger(path, taxonomy)
    book["台账"]["E5"] = None
    book.save(path)
    with pytest.raises(LedgerError, match="sheet '台账', row 5, column 'division': no division: the cell under "
                                          "'承办处室' is empty"):
        read_ledger(path, taxonomy)


def office_csv_rows(dates):
    lines = [f"{OFFICE_TITLE},,,,,,,", ",".join(OFFICE_HEADER)]
    for i, date in enumerate(dates, start=1):
        lines.append(f"{i},XF-{i},欠薪,三个月没发工资,劳动保障监察局,中,无,{date}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("written", "meant"), [
    ("2026年7月1日", "2026-07-01"), ("2026年07月01日 14:30", "2026-07-01 14:30:00"), ("2026/7/1", "2026-07-01"),
    ("2026.07.01", "2026-07-01"), ("2026-07-01", "2026-07-01"), ("46204", "2026-07-01"), ("46204.5", "2026-07-01 12:00:00"),
    # Times, parts of the day and days of the week as Chinese forms write them were refused.
    ("2026年7月1日9时30分", "2026-07-01 09:30:00"), ("2026年7月1号", "2026-07-01"), ("2026年07月01日 上午", "2026-07-01"),
    ("2026-07-01 下午3:00", "2026-07-01 15:00:00"), ("2026/7/1 星期三", "2026-07-01"),
    ("2026/7/1（周三）晚上8点半", "2026-07-01 20:30:00"),
    # A two-digit year, first as Chinese dates write it: pandas read 26-7-1 as 2001-07-26.
    ("26-7-1", "2026-07-01"), ("26/7/1", "2026-07-01"), ("26.07.01 9:30", "2026-07-01 09:30:00"),
    ("26年7月1日", "2026-07-01"), ("98-3-1", "1998-03-01"),
    # Chinese numerals, as formal letters date themselves: refused as not a date.
    ("二〇二六年七月一日", "2026-07-01"), ("二零二六年十二月三十一日", "2026-12-31"),
    ("二〇二六年七月十一日 下午3点", "2026-07-11 15:00:00"),
])
def test_dates_as_offices_write_them(tmp_path, taxonomy, written, meant):
    path = tmp_path / "l.csv"
    path.write_text(office_csv_rows([written]), encoding="gbk")
    frame = read_ledger(path, taxonomy)
    assert str(frame["received_at"].iloc[0]) == (meant if " " in meant else meant + " 00:00:00")
    assert frame["id"].tolist() == ["XF-1"]  # 编号, not the row counter 序号
    assert frame["row"].tolist() == [3]  # under the title row and the header


@pytest.mark.parametrize("time_first", [False, True])
def test_a_date_and_its_time_of_day_in_two_columns_are_one_moment(tmp_path, taxonomy, time_first):
    # 登记日期 and 登记时间 side by side: train refused "two columns map to 'received_at'",
    # and predict and the 登记 page read the date without its time.
    import datetime as dt

    import openpyxl

    header = ["编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体", "登记日期", "登记时间"]
    rows = [["XF-1", "欠薪", "厂里三个月没发工资了", "劳动保障监察局", "中", "无", dt.date(2026, 7, 1), dt.time(9, 30)],
            ["XF-2", "欠薪", "工地欠薪", "劳动保障监察局", "中", "无", "2026年7月2日", "下午3点"],
            ["XF-3", "欠薪", "包工头跑了", "劳动保障监察局", "中", "无", "2026-07-03 08:00", "9:30"],
            ["XF-4", "欠薪", "老板不见了", "劳动保障监察局", "中", "无", "2026-07-04", "不详"]]
    if time_first:
        header[-2:], rows = header[:-3:-1], [[*r[:-2], r[-1], r[-2]] for r in rows]
    book = openpyxl.Workbook()
    for row in [header, *rows]:
        book.active.append(row)
    path = tmp_path / "l.xlsx"
    book.save(path)
    for frame in (read_ledger(path, taxonomy), read_ledger(path, taxonomy, require_labels=False)):
        assert [str(t) for t in frame["received_at"]] == [
            "2026-07-01 09:30:00", "2026-07-02 15:00:00", "2026-07-03 08:00:00", "2026-07-04 00:00:00"]
        assert "received_time" not in frame.columns


@pytest.mark.parametrize("written", ["2026年13月1日", "下周一", "123"])
def test_what_is_not_a_date_is_still_refused_with_its_row(tmp_path, taxonomy, written):
    path = tmp_path / "l.csv"
    path.write_text(office_csv_rows(["2026/7/1", written]), encoding="utf-8")
    with pytest.raises(LedgerError, match="row 4, column 'received_at': not a date") as caught:
        read_ledger(path, taxonomy)
    assert "2026年7月1日" in str(caught.value)  # says which spellings are understood


def test_a_month_without_a_day_is_refused_saying_a_day_is_needed(tmp_path, taxonomy):
    path = tmp_path / "l.csv"
    path.write_text(office_csv_rows(["2026/7/1", "2026年7月"]), encoding="utf-8")
    with pytest.raises(LedgerError, match="row 4, column 'received_at': '2026年7月' under '登记日期' names a month, "
                                          "not a day; "
                                          "a day is needed"):
        read_ledger(path, taxonomy)


def test_the_row_counter_is_the_id_only_when_there_is_no_case_number(tmp_path, taxonomy):
    path = tmp_path / "l.csv"
    path.write_text("序号,信访事项,诉求内容\n1,欠薪,三个月没发工资\n2,养老,视同缴费年限\n", encoding="utf-8")
    assert read_ledger(path, taxonomy, require_labels=False)["id"].tolist() == ["1", "2"]
    path.write_text("序号,编号,件号,诉求内容\n1,A,B,三个月没发工资\n", encoding="utf-8")
    with pytest.raises(LedgerError, match="two columns map to 'id': '编号' and '件号'; remove one of them"):
        read_ledger(path, taxonomy, require_labels=False)


@pytest.mark.parametrize("chunk_rows", [None, 2])
def test_empty_lines_in_a_csv_are_skipped_and_rows_keep_the_numbers_a_spreadsheet_shows(tmp_path, taxonomy, chunk_rows):
    # A blank line made every later row be reported one too high; the ",,,,," lines Excel
    # saves below the data were refused as petitions with an empty id.
    ledger = tmp_path / "l.csv"
    ledger.write_text("id,title,body\r\nA1,欠薪,三个月没发工资\r\n\r\nA3,欠薪,\"工资\r\n拖欠\"\r\n,,\r\n , ,\r\n"
                      "A7,养老,视同缴费年限\r\n,,\r\n,,\r\n", encoding="gbk")
    frames = list(iter_ledger(ledger, taxonomy, require_labels=False, chunk_rows=chunk_rows))
    frame = pd.concat(frames, ignore_index=True)
    assert frame["id"].tolist() == ["A1", "A3", "A7"]
    assert frame["row"].tolist() == [2, 4, 7]
    ledger.write_text("id,title,body\nA1,欠薪,三个月没发工资\n\nA3,欠薪,三个月\n,欠薪,没有编号\n", encoding="utf-8")
    with pytest.raises(LedgerError, match=r"l\.csv, row 5, column 'id': empty id"):
        read_ledger(ledger, taxonomy, require_labels=False)


def test_a_petition_of_invisible_characters_is_refused_as_empty_in_ledgers_and_the_api(tmp_path, taxonomy,
                                                                                     small_model_dir):
    # Zero-width spaces and byte-order marks pasted from web pages or Word: such a "petition"
    # was routed (to external, without review) as if it said something.

    from service.settings import Settings

    invisible = "\u200b\ufeff\u200e\u3000"
    ledger = write_csv(tmp_path / "l.csv", [ROWS[0], {**ROWS[1], "title": invisible, "body": "\u200b"}])
    with pytest.raises(LedgerError, match=r"row 3, column 'body': empty petition text"):
        read_ledger(ledger, taxonomy, require_labels=False)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=small_model_dir,
                        registry_dir=tmp_path / "no-registry")
    with app_with_key(settings, "intake") as (client, key, _):
        answer = client.post("/v1/triage", json={"title": invisible, "body": "\u200b"}, headers={"X-API-Key": key})
        assert answer.status_code == 422 and answer.json()["detail"][0]["msg"].startswith("body: empty"), answer.text
        kept = client.post("/v1/triage", json={"title": "", "body": "\u200b欠薪"}, headers={"X-API-Key": key})
        assert kept.status_code == 200, kept.text


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_headers_spaced_out_or_wrapped_onto_two_lines_are_recognised(tmp_path, taxonomy, kind):
    # "编  号" and "标　题" line up short headers in Chinese forms; "诉求\n内容" is a header
    # wrapped in its cell. The ledger was refused for a missing column the person could see.
    header = ["序  号", "编  号", "标　题", "诉求\n内容", "承办\r\n处室", "风险 等级", "重点群体"]
    rows = [[1, "A1", "老板拖欠工资", "三个月没发工资", "劳动保障监察局", "中", "无"]]
    path = tmp_path / f"l.{kind}"
    pd.DataFrame(rows, columns=header).to_csv(path, index=False) if kind == "csv" else \
        pd.DataFrame(rows, columns=header).to_excel(path, index=False)
    frame = read_ledger(path, taxonomy)
    assert frame[["id", "title", "body", "division", "risk"]].values.tolist() == [
        ["A1", "老板拖欠工资", "三个月没发工资", "labor_inspection", "medium"]]


def test_headers_typed_with_full_width_letters_are_recognised(tmp_path, taxonomy):
    # A Chinese input method types ＩＤ and ｔｉｔｌｅ full-width: the ledger was refused for a
    # missing column the person could see.
    path = tmp_path / "l.csv"
    path.write_text("ＩＤ,Ｔｉｔｌｅ,ｂｏｄｙ,ｄｉｖｉｓｉｏｎ,ｒｉｓｋ,ｋｅｙ＿ｇｒｏｕｐ\n"
                    "A1,老板拖欠工资,三个月没发工资,劳动保障监察局,中,无\n", encoding="utf-8")
    frame = read_ledger(path, taxonomy)
    assert frame[["id", "title", "division"]].values.tolist() == [["A1", "老板拖欠工资", "labor_inspection"]]


@pytest.mark.parametrize("written", ["xlsx, merged down", "xlsx", "csv"])
def test_a_two_row_header_is_one_header_for_predict_and_train_alike(tmp_path, taxonomy, written):
    # predict read the first header row and scored the second (编号, 来信内容 filled down
    # into it) as a petition; train, which needs the label names below, read the second row.
    # Saved from Excel as CSV, both read the second header row as the first petition.
    path = (two_row_header_csv(tmp_path / "l.csv") if written == "csv"
            else two_row_header_xlsx(tmp_path / "l.xlsx", merged_down=written == "xlsx, merged down"))
    unlabelled = pd.concat(iter_ledger(path, taxonomy, require_labels=False, chunk_rows=1))
    labelled = read_ledger(path, taxonomy)
    for frame in (unlabelled, labelled):
        assert frame["id"].tolist() == ["XF-2026-0301", "XF-2026-0302"]
        assert frame["row"].tolist() == [3, 4]
    assert labelled["division"].tolist() == ["labor_inspection", "pension"]


@pytest.mark.parametrize("written", ["xlsx, merged down", "xlsx", "csv", "xlsx, grouped", "csv, grouped"])
@pytest.mark.parametrize("chunk_rows", [None, 1, 4])
def test_a_two_row_header_pasted_again_with_the_next_month_is_left_out_as_the_header_again(tmp_path, taxonomy, written,
                                                                                           chunk_rows):
    # Two months' exports pasted one under the other, each under its two-row header: the
    # second header's upper row (编号 … 办理情况, or the group headings 基本信息 and 办理情况)
    # was scored as a petition numbered 编号, or refused as an unknown division 办理情况, and
    # its lower row stopped the ledger as a petition with an empty id, however it was cut.
    from training.ledger import LedgerWarning

    header = GROUPED_HEADER if "grouped" in written else TWO_ROW_HEADER
    path = (two_row_header_csv(tmp_path / "l.csv", header=header, months=2) if written.startswith("csv")
            else two_row_header_xlsx(tmp_path / "l.xlsx", merged_down=written == "xlsx, merged down", header=header, months=2))
    with pytest.warns(LedgerWarning) as caught:
        unlabelled = pd.concat(iter_ledger(path, taxonomy, require_labels=False, chunk_rows=chunk_rows))
        labelled = pd.concat(iter_ledger(path, taxonomy, chunk_rows=chunk_rows))
    for frame in (unlabelled, labelled):
        assert frame["id"].tolist() == ["XF-2026-0301", "XF-2026-0302", "XF-2026-0401"]
        assert frame["row"].tolist() == [3, 4, 7]
    assert labelled["division"].tolist() == ["labor_inspection", "pension", "work_injury"]
    said = [str(w.message) for w in caught]
    assert said == [f"{path}: row(s) 5, 6 left out: the header again, not a petition"] * 2, said


def test_rows_hidden_by_a_filter_in_excel_are_left_out_by_train_and_predict_with_a_warning(tmp_path, taxonomy):
    # An office filters its quarter's ledger to September and saves: the hidden months were
    # still read as petitions, scored by predict and trained on, with nothing said.
    import openpyxl

    from training.ledger import LedgerWarning

    path = filtered_xlsx(tmp_path / "l.xlsx")
    with pytest.warns(LedgerWarning, match=r"l\.xlsx: 3 hidden row\(s\) left out: 2, 3, 5 \(filtered out or hidden in Excel"):
        trained = read_ledger(path, taxonomy)
    with pytest.warns(LedgerWarning, match=r"3 hidden row\(s\) left out: 2, 3, 5"):
        predicted = pd.concat(iter_ledger(path, taxonomy, require_labels=False, chunk_rows=1))
    for frame in (trained, predicted):
        assert frame["id"].tolist() == ["XF-2026-0901", "XF-2026-0902"]
        assert frame["row"].tolist() == [4, 6]
    # A filter that hides every row leaves nothing to read: said so, not "no data rows".
    book = openpyxl.load_workbook(path)
    for number in range(2, 7):
        book.active.row_dimensions[number].hidden = True
    book.save(path)
    with pytest.raises(LedgerError, match=r"all 5 rows under the header are hidden in Excel"):
        read_ledger(path, taxonomy)


def test_a_total_row_under_the_row_counter_is_left_out_of_a_workbook(tmp_path, taxonomy):
    # With 序号 before 编号 the total sits in 序号, its 编号 empty.
    import openpyxl

    from training.ledger import LedgerWarning

    book = openpyxl.Workbook()
    sheet = book.active
    for row in [["序号", "编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体"],
                [1, "XF-0501", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无"],
                ["小计", None, None, None, None, None, None],
                ["总计：1件", None, None, None, None, None, None]]:
        sheet.append(row)
    path = tmp_path / "l.xlsx"
    book.save(path)
    with pytest.warns(LedgerWarning, match=r"row\(s\) 3, 4 left out"):
        assert read_ledger(path, taxonomy)["id"].tolist() == ["XF-0501"]


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
def test_a_signature_line_spread_over_its_cells_is_a_footer_not_a_petition(tmp_path, taxonomy, kind):
    # 制表人 in the first cell and 审核人 under 来信内容, as offices sign a ledger: the line was
    # refused as a petition with an empty id, and so was 填报人 (a word the footer did not know).
    from training.ledger import LedgerWarning

    rows = [["序号", "编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体", "登记日期"],
            [1, "XF-0701", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无", "2026-07-01"],
            ["合计：1件", None, None, None, None, None, None, None],
            ["制表人：王某", None, None, "审核人：李某", None, None, None, "制表日期：2026年10月8日"],
            ["填报人：张三", None, "联系电话：0571-88888888", None, None, None, None, None],
            ["注：本表按受理顺序填写", None, None, None, None, None, None, None]]
    path = tmp_path / f"l.{kind}"
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_excel(path, index=False)
    with pytest.warns(LedgerWarning, match=r"row\(s\) 3, 4, 5, 6 left out: a total or footer"):
        assert read_ledger(path, taxonomy)["id"].tolist() == ["XF-0701"]
    # A row without a case number whose body is a petition is still refused.
    frame.loc[len(frame)] = ["说明：", None, None, "厂里还欠加班费", None, None, None, None]
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_excel(path, index=False)
    with pytest.raises(LedgerError, match="row 7, column 'id': empty id"), pytest.warns(LedgerWarning):
        read_ledger(path, taxonomy)


def test_a_date_column_under_a_header_not_read_is_named_in_a_warning(tmp_path, taxonomy):
    # 收件日期 is the 登记 page's own word for the date, and it was not read; nor was 来访日期,
    # without a word: on the page each petition's time limits then ran from the upload.
    from training.ledger import LedgerWarning

    path = tmp_path / "l.csv"
    path.write_text("编号,标题,内容,收件日期\nA1,欠薪,三个月没发工资,2026-7-1\n", encoding="utf-8")
    assert str(read_ledger(path, taxonomy, require_labels=False)["received_at"].iloc[0]) == "2026-07-01 00:00:00"
    path.write_text("编号,标题,内容,来访日期,办结时间\nA1,欠薪,三个月没发工资,2026-7-1,2026-7-9\n", encoding="utf-8")
    with pytest.warns(LedgerWarning, match=r"l\.csv: no column is read as the date received; '来访日期', '办结时间' are "
                                           r"not one of its headers \(登记日期/.*\): rename it 登记日期 if it is that date"):
        assert "received_at" not in read_ledger(path, taxonomy, require_labels=False).columns


def test_a_ledgers_warnings_carry_their_kind_rows_and_headers_as_well_as_the_english(tmp_path, taxonomy):
    # The 登记 page showed clerks the command line's English; it says them in Chinese from
    # these parts. Every row is carried, not only the ten the English lists.
    from training.ledger import LedgerWarning, LedgerWarningDetail, LedgerWarningKind

    path = tmp_path / "l.csv"
    dates = "".join(f"A{i},欠薪,三个月没发工资,{'七月一日' if i > 1 else '2026-7-1'},无,无\n" for i in range(1, 14))
    path.write_text("编号,标题,内容,来信日期,群体,重点群体\n" + dates, encoding="utf-8")
    with pytest.warns(LedgerWarning) as caught:
        read_ledger(path, taxonomy, require_labels=False)
    assert [str(w.message) for w in caught] == [
        f"{path}: columns '群体' and '重点群体' both mean 'key_group'; '群体' is read and '重点群体' left out",
        f"{path}: row(s) 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 2 more, column 'received_at': not a date, left empty "
        "(e.g. '七月一日')"]
    assert [w.message.detail for w in caught] == [
        LedgerWarningDetail(LedgerWarningKind.SAME_MEANING, str(path), headers=("群体", "重点群体"), column="key_group"),
        LedgerWarningDetail(LedgerWarningKind.DATES_LEFT_EMPTY, str(path), rows=tuple(range(3, 15)), headers=("来信日期",),
                            column="received_at", value="七月一日")]
    with pytest.warns(LedgerWarning) as caught:
        read_ledger(filtered_xlsx(tmp_path / "l.xlsx"), taxonomy, require_labels=False)
    assert [(w.message.detail.kind, w.message.detail.rows) for w in caught] == [(LedgerWarningKind.HIDDEN_ROWS, (2, 3, 5))]


@pytest.mark.parametrize(("kind", "chunk_rows"), [("xlsx", None), ("csv", None), ("csv", 1)])
def test_months_pasted_one_under_another_are_read_without_their_headers_and_headings(tmp_path, taxonomy, kind,
                                                                                   chunk_rows):
    # Two monthly exports pasted into one ledger, each under its title and header, with a
    # heading before a block: predict scored the second header as a petition numbered 编号,
    # train refused it as "unknown division '承办处室'", and a heading stopped both as a
    # petition with an empty id.
    from training.ledger import LedgerWarning

    header = ["序号", "编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体"]
    rows = [["2026年7月台账", None, None, None, None, None, None], header,
            ["一、欠薪类", None, None, None, None, None, None],
            [1, "XF-0701", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无"],
            [None] * 7,
            ["2026年8月台账", None, None, None, None, None, None], header,
            [1, "XF-0801", "养老金算少了", "视同缴费年限没有算进去", "养老保险处", "一般", "无"]]
    path = tmp_path / f"l.{kind}"
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False, header=False) if kind == "csv" else frame.to_excel(path, index=False, header=False)
    with pytest.warns(LedgerWarning) as caught:
        read = pd.concat(iter_ledger(path, taxonomy, chunk_rows=chunk_rows))
    assert read["id"].tolist() == ["XF-0701", "XF-0801"]
    assert read["division"].tolist() == ["labor_inspection", "pension"]
    said = " ".join(str(w.message) for w in caught)
    assert "7 left out: the header again, not a petition" in said, said
    headings = [str(w.message).split("row(s) ")[1].split(" left out")[0] for w in caught if "a heading" in str(w.message)]
    assert ", ".join(headings) == "3, 6", said
    # A single cell under the id or the body that names no period or section is a petition
    # without its text or its id: refused.
    rows[2] = [None, None, None, "厂里三个月没发工资了", None, None, None]
    pd.DataFrame(rows).to_csv(path.with_suffix(".csv"), index=False, header=False)
    with pytest.raises(LedgerError, match="row 3, column 'id': empty id"), pytest.warns(LedgerWarning):
        read_ledger(path.with_suffix(".csv"), taxonomy)


@pytest.mark.parametrize("header", [["序号", "编号", "标题", "来信内容"], ["序号", "标题", "来信内容"]])
def test_rows_numbered_ahead_of_the_petitions_in_a_template_are_left_out(tmp_path, taxonomy, header):
    # A ledger template numbered 1 to 50 down the page, filled in as petitions come: the
    # numbered rows below the last petition stopped the ledger as "empty id" (or, with 序号
    # as the only id, "empty petition text").
    import openpyxl

    from training.ledger import LedgerWarning

    book = openpyxl.Workbook()
    book.active.append(header)
    book.active.append([1, *(["XF-0901"] if "编号" in header else []), "老板拖欠工资", "厂里三个月没发工资了"])
    for number in range(2, 51):
        book.active.append([number])
    path = tmp_path / "l.xlsx"
    book.save(path)
    with pytest.warns(LedgerWarning, match=r"row\(s\) 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 39 more left out: a 序号 and "
                                           "nothing else, not a petition"):
        frame = read_ledger(path, taxonomy, require_labels=False)
    assert frame["id"].tolist() == ["XF-0901" if "编号" in header else "1"]


def test_labels_written_with_half_width_brackets_or_spaces_are_the_taxonomys_labels(tmp_path, taxonomy):
    # The taxonomy names 调解仲裁管理处（劳动人事争议仲裁院） with full-width brackets; typed
    # with half-width ones, or with a space, the division was "unknown".
    rows = [{**ROWS[0], "division": "调解仲裁管理处(劳动人事争议仲裁院)"},
            {**ROWS[1], "division": "养老保险 处", "risk": "Ｈｉｇｈ", "key_group": "－"}]
    frame = read_ledger(write_csv(tmp_path / "l.csv", rows), taxonomy)
    assert frame["division"].tolist() == ["arbitration", "pension"]
    assert frame[["risk", "key_group"]].values.tolist() == [["medium", "none"], ["high", "none"]]


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_label_codes_written_in_another_case_are_the_taxonomys_codes(tmp_path, taxonomy, kind):
    # An office system that capitalises its codes, or a clerk typing them: Pension and
    # Laid_Off_Workers were refused as unknown (only a risk level took another case).
    rows = [{**ROWS[0], "division": "Labor_Inspection", "risk": "HIGH", "key_group": " Laid_Off_Workers "},
            {**ROWS[1], "division": "ＰＥＮＳＩＯＮ", "risk": "Medium", "key_group": "国企改制、下岗、买断工龄职工"}]
    path = tmp_path / f"l.{kind}"
    pd.DataFrame(rows).to_csv(path, index=False) if kind == "csv" else pd.DataFrame(rows).to_excel(path, index=False)
    frame = read_ledger(path, taxonomy)
    assert frame[["division", "risk", "key_group"]].values.tolist() == [["labor_inspection", "high", "laid_off_workers"],
                                                                       ["pension", "medium", "laid_off_workers"]]
    # A label that is no code in any case is still refused with its file, row and column.
    rows[1]["key_group"] = "Laid_Off"
    pd.DataFrame(rows).to_csv(path, index=False) if kind == "csv" else pd.DataFrame(rows).to_excel(path, index=False)
    with pytest.raises(LedgerError, match=rf"l\.{kind}, row 3, column 'key_group': unknown key_group 'Laid_Off'"):
        read_ledger(path, taxonomy)


def test_an_unknown_division_is_refused_listing_the_codes_with_their_chinese_names(tmp_path, taxonomy):
    path = write_csv(tmp_path / "l.csv", [{**ROWS[0], "division": "住建局"}])
    with pytest.raises(LedgerError, match=r"unknown division '住建局'.*pension \(养老保险处\), .*"
                                          r"labor_inspection \(劳动保障监察局\)"):
        read_ledger(path, taxonomy)


@pytest.mark.parametrize("require_labels", [True, False])
def test_case_numbers_excel_shortened_when_saving_a_csv_are_refused_saying_how_to_keep_them(tmp_path, taxonomy,
                                                                                          require_labels):
    # 信访件编号 of twelve digits in a General column: Excel's CSV holds 2.02607E+11 for each,
    # so predict wrote one id for different petitions and train called them duplicates.
    path = tmp_path / "l.csv"
    path.write_text("信访件编号,标题,来信内容,承办处室,风险等级,重点群体\n"
                    "202607010001,欠薪,三个月没发工资,劳动保障监察局,中,无\n"
                    "2.02607E+11,养老,视同缴费年限,养老保险处,低,无\n", encoding="gbk")
    with pytest.raises(LedgerError, match=r"l\.csv, row 3, column 'id': '2\.02607E\+11' under '信访件编号' is a long "
                                          "number as Excel shortened it.*format the column as text"):
        read_ledger(path, taxonomy, require_labels=require_labels)


def test_case_numbers_kept_with_their_leading_zeros_are_read_as_excel_shows_them(tmp_path, taxonomy):
    # A CSV export writes ="0000001" so that Excel keeps the zeros; a workbook pads a number
    # with a 00000 format. Both were read as ="0000001" and 3, matching no case on file.
    import openpyxl

    path = tmp_path / "l.csv"
    path.write_text('编号,标题,来信内容\n="0000001",老板拖欠工资,"=""再等等""，老板说"\n="0000002",养老金,视同缴费年限\n',
                    encoding="utf-8")
    frame = read_ledger(path, taxonomy, require_labels=False)
    assert frame["id"].tolist() == ["0000001", "0000002"]
    assert frame["body"].tolist() == ['="再等等"，老板说', "视同缴费年限"]  # not of the exact form: kept
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["编号", "标题", "来信内容"])
    sheet.append([3, "老板拖欠工资", "三个月没发工资"])
    sheet["A2"].number_format = "00000"
    sheet.append([2026070100000004, "养老金", "视同缴费年限"])
    book.save(tmp_path / "l.xlsx")
    assert read_ledger(tmp_path / "l.xlsx", taxonomy, require_labels=False)["id"].tolist() == ["00003", "2026070100000004"]


@pytest.mark.parametrize("chunk_rows", [None, 1])
@pytest.mark.parametrize("hint", ["", "sep=;\r\n"])
@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_a_semicolon_separated_csv_from_a_european_excel_is_read(tmp_path, taxonomy, hint, encoding, chunk_rows):
    # Excel writes the system's list separator, a semicolon in European locales, sometimes after
    # a first line sep=;. The header was read as one unknown column: "missing column(s)".
    path = tmp_path / "l.csv"
    path.write_bytes((f"{hint}编号;标题;内容;承办处室;风险等级;重点群体\r\nA1;欠薪;三个月没发工资;劳动保障监察局;中;无\r\n"
                      'A2;养老;"视同缴费年限; 怎么算";养老保险处;低;无\r\n').encode(encoding))
    frame = pd.concat(list(iter_ledger(path, taxonomy, chunk_rows=chunk_rows)), ignore_index=True)
    assert frame["id"].tolist() == ["A1", "A2"]
    assert frame["body"].tolist() == ["三个月没发工资", "视同缴费年限; 怎么算"]
    assert frame["division"].tolist() == ["labor_inspection", "pension"]
    assert frame["row"].tolist() == ([3, 4] if hint else [2, 3])


def test_semicolons_in_the_text_of_a_comma_separated_csv_do_not_change_its_delimiter(tmp_path, taxonomy):
    # The header line decides: a petition's ASCII semicolons, quoted or not, stay in its text.
    path = tmp_path / "l.csv"
    path.write_text('sep=,\n编号,标题,内容\nA1,欠薪;拖欠,三个月没发工资;老板说再等等;还没发\n'
                    'A2,养老,"视同缴费年限;怎么算,请答复"\n', encoding="utf-8")
    frame = read_ledger(path, taxonomy, require_labels=False)
    assert frame["title"].tolist() == ["欠薪;拖欠", "养老"]
    assert frame["body"].tolist() == ["三个月没发工资;老板说再等等;还没发", "视同缴费年限;怎么算,请答复"]


@pytest.mark.parametrize("chunk_rows", [None, 1])
@pytest.mark.parametrize("request_first", [False, True])
def test_the_account_and_the_request_in_two_columns_are_one_body(tmp_path, taxonomy, request_first, chunk_rows):
    # Offices keep 主要诉求 beside 信访内容: the ledger was refused, "two columns map to 'body'".
    # The account comes first, the request on a line of its own, whichever column is first.
    header = ["编号", "标题", "信访内容", "主要诉求", "承办处室", "风险等级", "重点群体"]
    rows = [["A1", "欠薪", "厂里三个月没发工资", "要求老板结清工资", "劳动保障监察局", "中", "无"],
            ["A2", "养老", "", "要求补缴养老保险", "养老保险处", "低", "无"],
            ["A3", "养老", "视同缴费年限怎么算", "", "养老保险处", "低", "无"]]
    frame = pd.DataFrame(rows, columns=header)
    if request_first:
        frame = frame[["编号", "标题", "主要诉求", "信访内容", "承办处室", "风险等级", "重点群体"]]
    path = tmp_path / "l.csv"
    frame.to_csv(path, index=False, encoding="gbk")
    for require_labels in (True, False):
        read = pd.concat(list(iter_ledger(path, taxonomy, require_labels, chunk_rows=chunk_rows)), ignore_index=True)
        assert read["body"].tolist() == ["厂里三个月没发工资\n要求老板结清工资", "要求补缴养老保险", "视同缴费年限怎么算"]
        assert "body_request" not in read.columns


@pytest.mark.parametrize(("header", "named"), [
    (["编号", "标题", "信访内容", "来信内容"], "'信访内容' and '来信内容'"),
    (["编号", "标题", "主要诉求", "诉求"], "'主要诉求' and '诉求'"),
    (["编号", "标题", "信访内容", "主要诉求", "诉求"], "'主要诉求' and '诉求'"),
])
def test_two_columns_of_one_kind_of_body_are_still_refused(tmp_path, taxonomy, header, named):
    # Only an account beside a request is joined: two accounts, or two requests, are two
    # columns of one meaning, and which one is meant cannot be guessed.
    path = tmp_path / "l.csv"
    path.write_text(",".join(header) + "\n" + ",".join(["A1", "欠薪"] + ["工资没发"] * (len(header) - 2)) + "\n",
                    encoding="utf-8")
    with pytest.raises(LedgerError, match=f"two columns map to 'body': {named}"):
        read_ledger(path, taxonomy, require_labels=False)


def read_as_trained_and_predicted(path: Path, taxonomy, chunk_rows: int | None) -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """The warnings of reading `path` for training, and the rows training and `triage predict`
    (in chunks of `chunk_rows`) read from it: the two must read the same rows."""
    with pytest.warns(LedgerWarning) as caught:
        trained = read_ledger(path, taxonomy)
    with pytest.warns(LedgerWarning):
        predicted = pd.concat(iter_ledger(path, taxonomy, require_labels=False, chunk_rows=chunk_rows))
    return list(caught), trained, predicted


def headings_left_out(caught: list) -> list[int]:
    return [row for w in caught if w.message.detail.kind is LedgerWarningKind.HEADING_ROWS for row in w.message.detail.rows]


@pytest.mark.parametrize(("kind", "chunk_rows"), [("xlsx", None), ("xlsx", 1), ("csv", 1), ("copied", None)])
def test_a_month_title_merged_across_a_ledger_without_a_row_counter_is_left_out(tmp_path, taxonomy, kind, chunk_rows):
    # A year's ledger split into months by a title row merged across the columns (2026年8月,
    # 八月份): without 序号 the title sits under 编号, and the row stopped the ledger as a
    # petition numbered 2026年8月 with no text. Unmerged with its cells filled, each column
    # holds a copy of the title.
    import openpyxl


    header = ["编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体"]
    petitions = {4: ["XF-0701", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无"],
                 6: ["XF-0801", "养老金算少了", "视同缴费年限没有算进去", "养老保险处", "一般", "无"],
                 8: ["XF-0802", "八月份", "八月份", "养老保险处", "一般", "无"]}
    titles = {3: "2026年7月", 5: "八月份", 7: "（二）养老类"}
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["2026年信访事项台账"])
    sheet.append(header)
    for number in range(3, 9):
        if number in titles:
            sheet.append([titles[number]] * (len(header) if kind == "copied" else 1))
            if kind != "copied":
                sheet.merge_cells(start_row=number, start_column=1, end_row=number, end_column=len(header))
        else:
            sheet.append(petitions[number])
    path = tmp_path / "l.xlsx"
    book.save(path)
    if kind == "csv":
        pd.read_excel(path, header=None, engine="openpyxl").to_csv(path := tmp_path / "l.csv", index=False, header=False)
    caught, trained, predicted = read_as_trained_and_predicted(path, taxonomy, chunk_rows)
    for frame in (trained, predicted):
        # A petition whose title and text happen to be a month's name is still a petition.
        assert frame["id"].tolist() == ["XF-0701", "XF-0801", "XF-0802"]
    left_out = headings_left_out(caught)
    assert left_out == [3, 5, 7], [str(w.message) for w in caught]
    assert f"{path}: row(s) 3, 5, 7 left out: a heading between petitions" in " ".join(str(w.message) for w in caught)
    # A case number with no text is still refused, and so is a month's name as the title of a
    # petition with a text of its own and no case number.
    for cells, refused in ((["XF-0800"], "column 'body': empty petition text"),
                           ([None, "八月份", "厂里三个月没发工资了"], "column 'id': empty id")):
        again = openpyxl.Workbook()
        for row in (header, petitions[4], cells):
            again.active.append(row)
        again.save(tmp_path / "again.xlsx")
        with pytest.raises(LedgerError, match=f"row 3, {refused}"):
            read_ledger(tmp_path / "again.xlsx", taxonomy)


@pytest.mark.parametrize("chunk_rows", [None, 1])
def test_a_column_hidden_in_excel_beside_a_shown_one_of_its_meaning_is_left_out(tmp_path, taxonomy, chunk_rows):
    # An office keeps last year's 内容 and 承办处室 hidden beside the ones it fills in now
    # (hidden together as a group): train refused the ledger for two columns meaning the
    # division (责任处室, 承办处室), and a hidden column with the shown one's very header (内容)
    # was read in its place, without a word.
    import openpyxl

    from training.ledger import LedgerWarningKind

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["编号", "标题", "内容", "责任处室", "内容", "承办处室", "风险等级", "重点群体"])
    sheet.append(["XF-1", "老板拖欠工资", "旧的内容", "养老保险处", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无"])
    sheet.append(["XF-2", "养老金算少了", "旧的内容", "劳动保障监察局", "视同缴费年限没有算进去", "养老保险处", "一般", "无"])
    sheet.column_dimensions.group("C", "D", hidden=True)
    sheet.column_dimensions["G"].hidden = True  # the only 风险等级: read, and said to be hidden
    path = tmp_path / "l.xlsx"
    book.save(path)
    caught, trained, predicted = read_as_trained_and_predicted(path, taxonomy, chunk_rows)
    assert trained["body"].tolist() == ["厂里三个月没发工资了", "视同缴费年限没有算进去"]
    assert trained["division"].tolist() == ["labor_inspection", "pension"]
    assert trained["risk"].tolist() == ["medium", "low"]
    assert predicted["body"].tolist() == trained["body"].tolist()
    details = [(w.message.detail.kind, w.message.detail.headers, w.message.detail.column) for w in caught]
    assert details == [(LedgerWarningKind.HIDDEN_COLUMNS, ("内容", "内容"), "body"),
                       (LedgerWarningKind.HIDDEN_COLUMNS, ("责任处室", "承办处室"), "division"),
                       (LedgerWarningKind.HIDDEN_COLUMN_READ, ("风险等级",), "risk")], details
    said = " ".join(str(w.message) for w in caught)
    assert f"{path}: column C '内容' is hidden in Excel and left out; column E '内容' is read" in said, said
    assert "column G '风险等级' is hidden in Excel, and read" in said, said


def test_two_hidden_columns_of_one_meaning_are_refused_without_saying_either_is_read(tmp_path, taxonomy):
    # With no shown 内容, each hidden one was said to be "read" just before the ledger was
    # refused for having two: the refusal alone names both.
    import openpyxl

    from training.ledger import SameMeaningError

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["编号", "标题", "内容", "内容"])
    sheet.append(["XF-1", "老板拖欠工资", "厂里三个月没发工资了", "旧的内容"])
    sheet.column_dimensions.group("C", "D", hidden=True)
    path = tmp_path / "l.xlsx"
    book.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SameMeaningError, match="columns C '内容' and D '内容'"):
            read_ledger(path, taxonomy)
    assert not [str(w.message) for w in caught if "hidden" in str(w.message)]

def _alike_headers(path, header, rows):
    # A ledger whose header names one column twice, as an .xlsx or a CSV (two-row header or not).
    if path.suffix == ".xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        for row in (header, *rows):
            book.active.append(row)
        book.save(path)
    else:
        path.write_text("".join(",".join(row) + "\n" for row in (header, *rows)), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["l.xlsx", "l.csv"])
def test_two_columns_under_one_header_are_two_columns_of_one_meaning(tmp_path, taxonomy, name):
    # Two columns both headed 内容: the second was read under a name made unique (内容' or
    # 内容.1) and left out without a word, while 内容 beside 来信内容 was refused. Which of the
    # two is meant cannot be guessed: refused by every command, naming both by letter.
    from training.ledger import LedgerWarning, LedgerWarningDetail, LedgerWarningKind, SameMeaningError

    header = ["编号", "标题", "内容", "群体", "内容", "备注", "备注"]
    path = _alike_headers(tmp_path / name, header, [["A-1", "拖欠工资", "旧的内容", "无", "老板三个月没发工资了", "甲", "乙"]])
    for require_labels, chunk_rows in ((False, None), (False, 1), (True, None)):
        with pytest.raises(SameMeaningError) as refused:
            list(iter_ledger(path, taxonomy, require_labels=require_labels, chunk_rows=chunk_rows))
        assert str(refused.value).startswith(
            f"{path}, column '内容': two columns map to 'body': columns C '内容' and E '内容'; remove one of them, "
            "or rename column E '内容'"), str(refused.value)
        assert (refused.value.headers, refused.value.letters) == (("内容", "内容"), ("C", "E"))
    # A column the commands do not need (群体, for predict) is read from the first, said by
    # letter; two alike headers of no known column (备注) are not read, and need nothing.
    header[4] = "群体"
    path = _alike_headers(tmp_path / name, header, [["A-1", "拖欠工资", "老板三个月没发工资了", "无", "农民工", "甲", "乙"]])
    with pytest.warns(LedgerWarning) as caught:
        frame = read_ledger(path, taxonomy, require_labels=False)
    assert frame["body"].tolist() == ["老板三个月没发工资了"] and frame["key_group"].tolist() == ["无"]
    assert [str(w.message) for w in caught] == [
        f"{path}: columns D '群体' and E '群体' both mean 'key_group'; column D '群体' is read and column E '群体' left out"]
    assert caught[0].message.detail == LedgerWarningDetail(LedgerWarningKind.SAME_MEANING, str(path),
                                                           headers=("群体", "群体"), column="key_group", letters=("D", "E"))
    header[4] = "来信内容"
    _alike_headers(tmp_path / name, header, [["A-1", "拖欠工资", "老板三个月没发工资了", "无", "x", "甲", "乙"]])
    with pytest.raises(SameMeaningError, match="two columns map to 'body': '内容' and '来信内容'; remove one"):
        read_ledger(path, taxonomy, require_labels=False)


@pytest.mark.parametrize("chunk_rows", [None, 1])
def test_a_month_title_merged_from_the_title_or_body_column_on_is_a_heading(tmp_path, taxonomy, chunk_rows):
    # An office merges its month titles from the title's column across (the 编号 column left
    # empty) or types one in the body's column alone: only the first cell was looked at, and
    # the ledger stopped at the title as a petition with an empty id.
    import openpyxl


    book = openpyxl.Workbook()
    sheet = book.active
    header = ["编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体"]
    for row in (header,
                [None, "2026年7月"],  # merged B2:F2
                ["XF-0701", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无"],
                [None, None, "八月份"],  # alone under the body
                ["XF-0801", "八月份", "八月份", "养老保险处", "一般", "无"],  # a petition with its own case number
                [None, "（二）养老类", "（二）养老类", "（二）养老类"],  # the merge unmerged and filled
                ["XF-0802", "养老金算少了", "视同缴费年限没有算进去", "养老保险处", "一般", "无"]):
        sheet.append(row)
    sheet.merge_cells("B2:F2")
    path = tmp_path / "l.xlsx"
    book.save(path)
    caught, trained, predicted = read_as_trained_and_predicted(path, taxonomy, chunk_rows)
    for frame in (trained, predicted):
        assert frame["id"].tolist() == ["XF-0701", "XF-0801", "XF-0802"]
    left_out = headings_left_out(caught)
    assert left_out == [2, 4, 6], [str(w.message) for w in caught]
    # A month's name beside other fields of a petition with no case number is no heading.
    sheet.append([None, "八月份", None, "养老保险处"])
    book.save(path)
    with pytest.raises(LedgerError, match="row 8, column 'id': empty id"):
        read_ledger(path, taxonomy, require_labels=False)
