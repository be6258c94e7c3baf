"""Ledgers built as offices keep them: a notes sheet before the ledger, a title row above
the header, a row counter (序号) beside the case number (编号), a merged division cell,
dates written the Chinese way and as an Excel serial number. Real files, written here."""

from __future__ import annotations

import pytest

OFFICE_HEADER = ["序号", "编号", "信访事项", "诉求内容", "承办处室", "风险等级", "重点群体", "登记日期"]
# The fifth column (承办处室) of the first two petitions is one merged cell.
OFFICE_ROWS = [
    [1, "XF-2026-0107", "老板拖欠工资", "三个月没发工资", "劳动保障监察局", "中", "无", "2026年7月1日"],
    [2, "XF-2026-0108", "工地欠薪", "包工头跑了，工资没人给", None, "高", "无", 46205],
    [3, "XF-2026-0109", "咨询养老金", "视同缴费年限怎么算", "pension", "低", "无", "2026.07.03"],
]
OFFICE_TITLE = "2026年第三季度信访事项台账"


def office_xlsx(path, sheet_first="填表说明"):
    import openpyxl

    book = openpyxl.Workbook()
    notes = book.active
    notes.title = sheet_first
    notes.append(["本表由信访办按季度导出，请勿修改表头。"])
    sheet = book.create_sheet("台账")
    sheet.append([OFFICE_TITLE])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(OFFICE_HEADER))
    sheet.append(OFFICE_HEADER)
    for row in OFFICE_ROWS:
        sheet.append(row)
    sheet.merge_cells("E3:E4")
    book.save(path)
    return path


def office_xls(path, sheet_first="填表说明"):
    # xlwt writes the Excel 97-2003 format itself (openpyxl cannot): a real .xls, as old office PCs save.
    xlwt = pytest.importorskip("xlwt")
    book = xlwt.Workbook(encoding="utf-8")
    book.add_sheet(sheet_first).write(0, 0, "本表由信访办按季度导出，请勿修改表头。")
    sheet = book.add_sheet("台账")
    sheet.write_merge(0, 0, 0, len(OFFICE_HEADER) - 1, OFFICE_TITLE)
    for j, name in enumerate(OFFICE_HEADER):
        sheet.write(1, j, name)
    for i, row in enumerate(OFFICE_ROWS, start=2):
        for j, value in enumerate(row):
            if j == 4 and i in (2, 3):
                continue
            if value is not None:
                sheet.write(i, j, value)
    sheet.write_merge(2, 3, 4, 4, OFFICE_ROWS[0][4])
    book.save(str(path))
    return path


# 办理情况 is merged over the three label columns named in the second header row; the
# other headers are merged down over both rows.
TWO_ROW_HEADER = [["编号", "标题", "来信内容", "办理情况", None, None],
                  [None, None, None, "承办处室", "风险等级", "重点群体"]]
TWO_ROW_PETITIONS = [
    ["XF-2026-0301", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "非重点群体"],
    ["XF-2026-0302", "养老金算少了", "视同缴费年限没有算进去", "养老保险处", "一般", "非重点群体"],
]


# Another layout: a group heading over every column (基本信息 over the case, 办理情况 over
# its handling), all the names in the second row.
GROUPED_HEADER = [["基本信息", None, None, "办理情况", None, None],
                  ["编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体"]]
# A second month's export pasted below the first, its two-row header with it.
NEXT_MONTH_PETITIONS = [["XF-2026-0401", "工伤认定太慢", "单位不给申报工伤认定", "工伤保险处", "一般", "非重点群体"]]


def _blocks(header, months):
    return [[*header, *petitions] for petitions in (TWO_ROW_PETITIONS, NEXT_MONTH_PETITIONS)[:months]]


def two_row_header_csv(path, header=TWO_ROW_HEADER, months=1):
    """The two-row header as Excel saves it to CSV: a merged cell's text in its first cell only."""
    import csv

    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([["" if v is None else v for v in row] for block in _blocks(header, months) for row in block])
    return path


def two_row_header_xlsx(path, merged_down=True, header=TWO_ROW_HEADER, months=1):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    top = 1
    for block in _blocks(header, months):
        for row in block:
            sheet.append(row)
        if merged_down and header is TWO_ROW_HEADER:
            for column in "ABC":
                sheet.merge_cells(f"{column}{top}:{column}{top + 1}")
        if header is GROUPED_HEADER:
            sheet.merge_cells(f"A{top}:C{top}")
        sheet.merge_cells(f"D{top}:F{top}")
        top += len(block)
    book.save(path)
    return path


# A quarter's ledger filtered in Excel to its last month (登记月份 = 9月) and saved: the other
# months' rows are still in the file, marked hidden, as Excel marks the rows a filter hides.
QUARTER_HEADER = ["编号", "标题", "来信内容", "承办处室", "风险等级", "重点群体", "登记月份"]
QUARTER_ROWS = [
    ["XF-2026-0701", "老板拖欠工资", "厂里三个月没发工资了", "劳动保障监察局", "加急", "无", "7月"],
    ["XF-2026-0801", "养老金算少了", "视同缴费年限没有算进去", "养老保险处", "一般", "无", "8月"],
    ["XF-2026-0901", "工伤认定太慢", "单位不给申报工伤认定", "工伤保险处", "一般", "无", "9月"],
    ["XF-2026-0802", "失业金没到账", "申领了两个月还没发", "就业促进和失业保险处", "一般", "无", "8月"],
    ["XF-2026-0902", "工地欠薪", "包工头跑了，工资没人给", "劳动保障监察局", "加急", "无", "9月"],
]
SHOWN_MONTH = "9月"


def filtered_xlsx(path, shown=SHOWN_MONTH):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(QUARTER_HEADER)
    for row in QUARTER_ROWS:
        sheet.append(row)
    sheet.auto_filter.ref = f"A1:G{len(QUARTER_ROWS) + 1}"
    sheet.auto_filter.add_filter_column(len(QUARTER_HEADER) - 1, [shown])
    for number, row in enumerate(QUARTER_ROWS, start=2):
        sheet.row_dimensions[number].hidden = row[-1] != shown
    book.save(path)
    return path
