"""The outcome looks like the file that went in: its formats, titles and widths, printable, and a
sandbox outcome that cannot pass for a real one. Read back with openpyxl, as a user's tool would."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xlsxwriter

from filedrop.outcome import (
    _STATUS_COLOURS,
    OUTCOME_COLUMNS,
    SANDBOX_COLUMN,
    BatchLine,
    OutcomeSummary,
    write_error_outcome,
    write_outcome,
)
from filedrop.read import ReadInfo, Table, read_table
from filedrop.states import RowStatus

STARTED = dt.datetime(2024, 3, 1, 9, 0, 0)
BATCH_ID = "8ede0d7a-c3ba-4a9e-93de-ef86ab1031d0"


def export(path: Path, rows: int = 3) -> Path:
    """An ERP export: two title rows, a blank row, the header on row 4, amounts as ``# ##0.00``
    and dates as ``dd.mm.yyyy`` (one date typed as text), as Tripletex and Visma write them."""
    workbook = xlsxwriter.Workbook(path)
    sheet = workbook.add_worksheet("Åpne poster")
    amount = workbook.add_format({"num_format": "# ##0.00"})
    date = workbook.add_format({"num_format": "dd.mm.yyyy"})
    sheet.write_string(0, 0, "Åpne poster per 15.03.2024")
    sheet.write_string(1, 0, "Fjordlys Regnskap AS")
    for col, header in enumerate(("Fakturanr", "Beløp", "Forfall")):
        sheet.write_string(3, col, header)
    for i in range(rows):
        sheet.write_string(4 + i, 0, f"24-{1001 + i}")
        sheet.write_number(4 + i, 1, 1234.5 * (i + 1), amount)
        if i == rows - 1:
            sheet.write_string(4 + i, 2, "31.02.2024")
        else:
            sheet.write_datetime(4 + i, 2, dt.datetime(2024, 3, 15) + dt.timedelta(days=i), date)
    workbook.close()
    return path


def results(statuses: list[str], *, batch: str = BATCH_ID) -> pd.DataFrame:
    rows = [
        {
            "outcome_status": status,
            "outcome_message": "",
            "outcome_invoice_id": "",
            "outcome_case_id": "",
            "outcome_case_number": "",
            "outcome_batch_id": batch,
        }
        for status in statuses
    ]
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))


def summary_for(source: Path, *, environment: str, **extra) -> OutcomeSummary:
    return OutcomeSummary(
        source=source,
        environment=environment,
        mapping="erp.toml",
        started_at=STARTED,
        finished_at=STARTED + dt.timedelta(seconds=5),
        **extra,
    )


def test_input_number_and_date_formats_are_kept_per_column(tmp_path: Path) -> None:
    """Amounts keep ``# ##0.00``; real dates keep ``dd.mm.yyyy``, like the text date below them."""
    table = read_table(export(tmp_path / "mars.xlsx"))
    path = write_outcome(
        table, results(["SUCCEEDED"] * 3), summary_for(table.path, environment="staging")
    )

    sheet = openpyxl.load_workbook(path).worksheets[0]
    assert [sheet.cell(5, 2).number_format, sheet.cell(6, 2).number_format] == [
        "# ##0.00",
        "# ##0.00",
    ]
    assert [sheet.cell(5, 3).number_format, sheet.cell(6, 3).number_format] == [
        "dd.mm.yyyy",
        "dd.mm.yyyy",
    ]
    assert sheet.cell(5, 3).value == dt.datetime(2024, 3, 15)
    assert sheet.cell(7, 3).value == "31.02.2024"


def test_title_rows_above_the_header_are_kept_on_their_rows(tmp_path: Path) -> None:
    """The export's title lines stay on rows 1 and 2; header and data keep their row numbers."""
    table = read_table(export(tmp_path / "mars.xlsx"))
    path = write_outcome(
        table, results(["SUCCEEDED"] * 3), summary_for(table.path, environment="staging")
    )

    rows = list(openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True))
    assert rows[0][:3] == ("Åpne poster per 15.03.2024", None, None)
    assert rows[1][:3] == ("Fjordlys Regnskap AS", None, None)
    assert rows[2] == (None,) * len(rows[2])
    assert rows[3][:4] == ("Fakturanr", "Beløp", "Forfall", "outcome_status")
    assert rows[4][0] == "24-1001"


def test_a_sheet_that_begins_in_column_c_keeps_every_column_on_its_letter(tmp_path: Path) -> None:
    """Columns A and B empty, a title in C1, the header on row 3 with a blank one in E: the
    outcome keeps each column on its letter, so "column E", as a message names a blank-headed
    column, is column E there too (the columns had moved two to the left), and the outcome's own
    columns follow the data."""
    source = tmp_path / "c.xlsx"
    workbook = xlsxwriter.Workbook(source)
    sheet = workbook.add_worksheet("Ark1")
    amount = workbook.add_format({"num_format": "# ##0.00"})
    sheet.write_string(0, 2, "Åpne poster")
    for col, header in enumerate(("Fakturanr", "Beløp", "", "Kunde"), start=2):
        if header:
            sheet.write_string(2, col, header)
    for i in range(2):
        sheet.write_string(3 + i, 2, f"24-{i + 1}")
        sheet.write_number(3 + i, 3, 100.5 * (i + 1), amount)
        sheet.write_string(3 + i, 4, f"note {i}")
        sheet.write_string(3 + i, 5, "Kari")
    workbook.close()
    table = read_table(source)
    assert table.headers == ["Fakturanr", "Beløp", "E", "Kunde"]

    path = write_outcome(
        table, results(["SUCCEEDED", "INVALID"]), summary_for(table.path, environment="staging")
    )
    out = openpyxl.load_workbook(path).worksheets[0]
    rows = list(out.iter_rows(values_only=True))
    assert rows[0][:3] == (None, None, "Åpne poster")
    assert rows[2][:8] == (None, None, "Fakturanr", "Beløp", "E", "Kunde", "outcome_status",
                           "outcome_message")  # fmt: skip
    assert rows[3][:7] == (None, None, "24-1", 100.5, "note 0", "Kari", "SUCCEEDED")
    assert rows[4][6] == "INVALID"
    assert out.cell(4, 4).number_format == "# ##0.00"
    assert out.auto_filter.ref == f"C3:{openpyxl.utils.get_column_letter(6 + 7)}5"


def test_columns_are_wide_enough_for_every_id_not_only_the_first_rows(tmp_path: Path) -> None:
    """A batch id first seen on row 500 is not cut, and an amount fits as its format shows it."""
    table = read_table(export(tmp_path / "mars.xlsx", rows=600))
    outcome = results(["INVALID"] * 500 + ["SUCCEEDED"] * 100, batch="")
    outcome.loc[500:, "outcome_batch_id"] = BATCH_ID
    path = write_outcome(table, outcome, summary_for(table.path, environment="staging"))

    sheet = openpyxl.load_workbook(path).worksheets[0]
    batch_letter = openpyxl.utils.get_column_letter(
        3 + OUTCOME_COLUMNS.index("outcome_batch_id") + 1
    )
    assert sheet.column_dimensions[batch_letter].width >= len(BATCH_ID)
    # 740 700,00 is the widest amount as shown (the cell text reads 740700)
    assert sheet.column_dimensions["B"].width >= len("740 700,00")


def test_data_sheet_prints_landscape_one_page_wide_with_the_header_on_every_page(
    tmp_path: Path,
) -> None:
    """Landscape, fit to one page wide (any number of pages long), the header row repeated."""
    table = read_table(export(tmp_path / "mars.xlsx"))
    path = write_outcome(
        table, results(["SUCCEEDED"] * 3), summary_for(table.path, environment="staging")
    )

    sheet = openpyxl.load_workbook(path).worksheets[0]
    assert sheet.page_setup.orientation == "landscape"
    assert sheet.sheet_properties.pageSetUpPr.fitToPage is True
    # fitToWidth absent means 1, its default in the file format (xlsxwriter leaves it out)
    assert (sheet.page_setup.fitToWidth or 1, sheet.page_setup.fitToHeight) == (1, 0)
    assert sheet.print_title_rows == "$4:$4"


def test_sandbox_xlsx_says_so_on_the_data_sheet(tmp_path: Path) -> None:
    """Red tab, the warning above the outcome columns, in the printed page header, on every row."""
    table = read_table(export(tmp_path / "mars.xlsx"))
    path = write_outcome(
        table, results(["SUCCEEDED"] * 3), summary_for(table.path, environment="sandbox")
    )

    sheet = openpyxl.load_workbook(path).worksheets[0]
    assert sheet.sheet_properties.tabColor.rgb == "FFC00000"
    assert sheet.cell(3, 4).value == "SANDBOX — nothing was sent to Amili"
    assert "SANDBOX — nothing was sent to Amili" in sheet.oddHeader.center.text
    last = 3 + len(OUTCOME_COLUMNS) + 1
    assert sheet.cell(4, last).value == SANDBOX_COLUMN
    assert [sheet.cell(r, last).value for r in (5, 6, 7)] == ["SANDBOX: not sent"] * 3


def test_sandbox_csv_says_so_on_every_row_and_keeps_line_numbers(tmp_path: Path) -> None:
    """A last column says SANDBOX on each row; the header stays on line 1, row N on line N."""
    headers = ["Fakturanr", "Beløp"]
    cells = pd.DataFrame([["1", "10,00"], ["2", "20,00"]], dtype=object)
    table = Table(
        path=tmp_path / "mars.csv",
        headers=headers,
        cells=cells,
        values=cells,
        row_numbers=np.array([2, 3]),
        info=ReadInfo(kind="csv", encoding="utf-8", delimiter=";"),
    )
    path = write_outcome(
        table, results(["SUCCEEDED", "FAILED"]), summary_for(table.path, environment="sandbox")
    )

    with path.open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh, delimiter=";"))
    assert lines[0] == [*headers, *OUTCOME_COLUMNS, SANDBOX_COLUMN]
    assert [line[0] for line in lines[1:]] == ["1", "2"]
    assert [line[-1] for line in lines[1:]] == ["SANDBOX: not sent"] * 2


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_a_real_run_outcome_has_no_sandbox_column(tmp_path: Path, suffix: str) -> None:
    """Staging and production outcomes end with the outcome columns, as before."""
    path = write_error_outcome(
        tmp_path / f"broken{suffix}", "cannot be read", summary_for(tmp_path, environment="staging")
    )
    if suffix == ".xlsx":
        header = next(openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True))
    else:
        header = next(csv.reader(path.open(encoding="utf-8-sig")))
    assert tuple(header) == ("file", *OUTCOME_COLUMNS)


def test_summary_sums_amounts_per_status_and_counts_rows_per_batch(tmp_path: Path) -> None:
    """Sums of the amount column per status (text amounts left out, as SUM does), and per batch
    its status with its rows per status."""
    table = read_table(export(tmp_path / "mars.xlsx"))
    batch = BatchLine(
        batch_id=BATCH_ID, invoices=3, status="PARTIAL", submitted_at=None, finished_at=None
    )
    summary = summary_for(table.path, environment="staging", batches=(batch,), amount_column=1)
    path = write_outcome(table, results(["SUCCEEDED", "FAILED", "SUCCEEDED"]), summary)

    rows = list(openpyxl.load_workbook(path)["Summary"].iter_rows(values_only=True))
    by_label = {row[0]: row[1:] for row in rows if row[0]}
    assert by_label["Status"][:2] == ("Rows", "Sum of Beløp")
    assert by_label["SUCCEEDED"][:2] == (2, 1234.5 + 3703.5)
    assert by_label["FAILED"][:2] == (1, 2469)
    assert by_label["INVALID"][:2] == (0, 0)
    assert by_label["Rows total"][:2] == (3, 7407)
    assert by_label["Batch"][:6] == (
        "Invoices",
        "Status",
        "Submitted",
        "Finished",
        "SUCCEEDED rows",
        "FAILED rows",
    )
    assert by_label[BATCH_ID][:6] == (3, "PARTIAL", None, None, 2, 1)


def test_every_row_status_has_its_colour() -> None:
    """The one colour table covers every status, so a new status shows coloured everywhere."""
    assert set(_STATUS_COLOURS) == set(RowStatus)


def test_data_cells_keep_their_styles_when_written_column_by_column(tmp_path: Path) -> None:
    """Each data cell carries the style xlsxwriter would give it: the sandbox cells red, amounts
    and dates their column's format, a text date its column's format too, ids unstyled."""
    table = read_table(export(tmp_path / "mars.xlsx"))
    path = write_outcome(
        table, results(["SUCCEEDED"] * 3), summary_for(table.path, environment="sandbox")
    )

    sheet = openpyxl.load_workbook(path).worksheets[0]
    last = 3 + len(OUTCOME_COLUMNS) + 1
    for row in (5, 6, 7):
        banner = sheet.cell(row, last)
        assert banner.fill.fgColor.rgb == "FFC00000" and banner.font.b
        assert banner.font.color.rgb == "FFFFFFFF"
        assert sheet.cell(row, 1).number_format == "General"
        assert sheet.cell(row, 4).fill.patternType is None  # status: conditional colours only
    assert sheet.cell(7, 3).value == "31.02.2024" and sheet.cell(7, 3).number_format == "dd.mm.yyyy"
