"""The outcome file: original rows and columns kept, one status per row, safe to open, atomic."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import errno
import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import python_calamine
import xlsxwriter

from filedrop import outcome as outcome_module
from filedrop import sheetxml
from filedrop.inbox import outcome_path
from filedrop.outcome import (
    OUTCOME_COLUMNS,
    BatchLine,
    OutcomeSummary,
    outcome_paths,
    rows_ahead,
    write_error_outcome,
    write_outcome,
)
from filedrop.read import ReadInfo, Table
from filedrop.states import RowStatus

STARTED = dt.datetime(2024, 3, 1, 9, 0, 0)
FINISHED = dt.datetime(2024, 3, 1, 9, 2, 5)


def excel_table(path: Path, headers: list[str], rows: list[list[object]], sheet="Ark1") -> Table:
    """A Table as the reader gives it for an Excel file: typed values, their text in cells."""
    values = pd.DataFrame(rows, columns=range(len(headers)), dtype=object)
    cells = values.map(lambda v: "" if v is None else str(v))
    info = ReadInfo(kind="excel", sheet=sheet)
    return Table(
        path=path,
        headers=headers,
        cells=cells,
        values=values,
        row_numbers=np.arange(2, len(rows) + 2),
        info=info,
    )


def csv_table(
    path: Path, headers: list[str], rows: list[list[str]], *, encoding: str, delimiter: str
):
    """A Table as the reader gives it for a CSV file: cells and values are the same frame."""
    cells = pd.DataFrame(rows, columns=range(len(headers)), dtype=object)
    info = ReadInfo(kind="csv", encoding=encoding, delimiter=delimiter)
    return Table(
        path=path,
        headers=headers,
        cells=cells,
        values=cells,
        row_numbers=np.arange(2, len(rows) + 2),
        info=info,
    )


def outcomes(*statuses: str, message: str = "", batch: str = "b-1") -> pd.DataFrame:
    """One outcome row per status (invoice numbers F-0, F-1, ...); SUCCEEDED rows get ids."""
    rows = []
    for i, status in enumerate(statuses):
        ok = status == "SUCCEEDED"
        rows.append(
            {
                "outcome_status": status,
                "outcome_message": "" if ok else message,
                "outcome_invoice_id": f"inv-{i}" if ok else "",
                "outcome_case_id": f"case-{i}" if ok else "",
                "outcome_case_number": f"{1000 + i}" if ok else "",
                "outcome_batch_id": batch,
                "outcome_invoice_number": f"F-{i}",
            }
        )
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))


def summary_for(source: Path, *, environment: str = "staging", **extra) -> OutcomeSummary:
    return OutcomeSummary(
        source=source,
        environment=environment,
        mapping="norwegian-erp.toml",
        started_at=STARTED,
        finished_at=FINISHED,
        **extra,
    )


def sheet_rows(path: Path, sheet: str | int = 0) -> list[tuple]:
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[sheet] if isinstance(sheet, int) else wb[sheet]
    return [tuple(row) for row in ws.iter_rows(values_only=True)]


def summary_values(path: Path) -> dict[object, object]:
    """Summary sheet as {first cell: second cell}."""
    return {row[0]: row[1] for row in sheet_rows(path, "Summary") if row and row[0] is not None}


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "outcome"),
    [
        ("januar.xlsx", "januar.outcome.xlsx"),
        ("Januar.XLSM", "Januar.XLSM.outcome.xlsx"),
        ("old.xls", "old.xls.outcome.xlsx"),
        ("export.csv", "export.outcome.csv"),
        ("EXPORT.CSV", "EXPORT.outcome.csv"),
        ("faktura.2024.csv", "faktura.2024.outcome.csv"),
        # A name ending in two suffixes keeps it whole: rapport.xlsm.xlsx took the outcome of
        # rapport.xlsm, gone from the inbox, read its day and wrote over it (helper-138).
        ("rapport.xlsm.xlsx", "rapport.xlsm.xlsx.outcome.xlsx"),
        ("rapport.XLS.xlsx", "rapport.XLS.xlsx.outcome.xlsx"),
        ("rapport.xlsx.csv", "rapport.xlsx.csv.outcome.csv"),
        ("rapport.csv.csv", "rapport.csv.csv.outcome.csv"),
    ],
)
def test_outcome_path_sits_next_to_the_source(tmp_path: Path, source: str, outcome: str) -> None:
    """Excel input gives .outcome.xlsx, CSV input .outcome.csv, in the same folder; its name
    is never another input's outcome name, whether that input is there or gone."""
    assert outcome_path(tmp_path / source) == tmp_path / outcome


@pytest.mark.parametrize(
    ("names", "outcomes"),
    [
        (["report.xls", "report.xlsx"], ["report.xls.outcome.xlsx", "report.outcome.xlsx"]),
        (["Report.XLSX", "report.xlsx"], ["Report.XLSX.outcome.xlsx", "report.outcome.xlsx"]),
        (["report.xlsm", "report.xls"], ["report.xlsm.outcome.xlsx", "report.xls.outcome.xlsx"]),
        (["report.xls"], ["report.xls.outcome.xlsx"]),
        (["report.xlsm"], ["report.xlsm.outcome.xlsx"]),
        (["report.csv", "report.xlsx"], ["report.outcome.csv", "report.outcome.xlsx"]),
        (
            ["report.xlsx", "report.xls", "report.xls.xlsx"],
            ["report.outcome.xlsx", "report.xls.outcome.xlsx", "report.xls.xlsx.outcome.xlsx"],
        ),
    ],
)
def test_inputs_that_would_share_an_outcome_get_distinct_names(
    tmp_path: Path, names: list[str], outcomes: list[str | None]
) -> None:
    """The usual suffix keeps the plain name whatever the order; the other gets its full name
    in front; a name still shared after that is None (refused before sending)."""
    for order in (names, names[::-1]):
        chosen = outcome_paths([tmp_path / name for name in order])
        got = [chosen[tmp_path / name] for name in names]
        assert [path.name if path else None for path in got] == outcomes


def test_outcome_path_refuses_other_kinds(tmp_path: Path) -> None:
    """A file that is neither Excel nor CSV has no outcome format."""
    with pytest.raises(ValueError, match=r"notes\.txt"):
        outcome_path(tmp_path / "notes.txt")


# --- xlsx ------------------------------------------------------------------------------------


def test_xlsx_keeps_original_columns_and_rows_in_order(tmp_path: Path) -> None:
    """Original headers (even repeated or blank) and rows come first, then the outcome columns."""
    headers = ["Fakturanr", "Beløp", "Beløp", ""]
    rows = [["F-3", 30.5, 1, "c"], ["F-1", 10.0, 2, None], ["F-2", 20.25, 3, "a"]]
    table = excel_table(tmp_path / "januar.xlsx", headers, rows)
    path = write_outcome(table, outcomes("FAILED", "SUCCEEDED", "INVALID"), summary_for(table.path))

    assert path == tmp_path / "januar.outcome.xlsx"
    got = sheet_rows(path)
    assert got[0] == ("Fakturanr", "Beløp", "Beløp", None, *OUTCOME_COLUMNS)
    assert [row[:4] for row in got[1:]] == [tuple(r) for r in rows]
    assert [row[4] for row in got[1:]] == ["FAILED", "SUCCEEDED", "INVALID"]
    assert got[2][4:] == ("SUCCEEDED", None, "inv-1", "case-1", "1001", "b-1", "F-1")
    assert len(got) == 4


def test_xlsx_numbers_stay_numbers_and_dates_stay_dates(tmp_path: Path) -> None:
    """Typed originals keep their type: numbers are numbers, dates are date cells."""
    headers = ["Beløp", "Antall", "Forfall", "Sendt", "Dag", "Betalt", "Tekst"]
    rows = [
        [
            1234.5,
            7,
            dt.datetime(2024, 1, 31),
            dt.datetime(2024, 2, 1, 13, 45),
            dt.date(2024, 5, 17),
            True,
            "00123",
        ],
        [float("nan"), None, pd.Timestamp("2024-02-29"), pd.NaT, None, False, ""],
    ]
    table = excel_table(tmp_path / "t.xlsx", headers, rows)
    path = write_outcome(table, outcomes("SUCCEEDED", "FAILED"), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    assert ws["A2"].data_type == "n" and ws["A2"].value == 1234.5
    assert ws["B2"].data_type == "n" and ws["B2"].value == 7
    assert ws["C2"].is_date and ws["C2"].value == dt.datetime(2024, 1, 31)
    assert ws["C2"].number_format == "yyyy-mm-dd"
    assert ws["D2"].is_date and ws["D2"].value == dt.datetime(2024, 2, 1, 13, 45)
    assert "hh:mm" in ws["D2"].number_format
    assert ws["E2"].is_date and ws["E2"].value == dt.datetime(2024, 5, 17)
    assert ws["F2"].value is True
    assert ws["G2"].data_type == "s" and ws["G2"].value == "00123"
    assert ws["C3"].is_date and ws["C3"].value == dt.datetime(2024, 2, 29)
    for empty in ("A3", "B3", "D3", "E3", "G3"):
        assert ws[empty].value is None, empty


@pytest.mark.parametrize("text", ["=SUM(A1)", "+4722334455", "+47 22 33 44 55", "-x", "@x", "=1+1"])
def test_xlsx_formula_like_text_stays_text(tmp_path: Path, text: str) -> None:
    """Text starting with = + - @ is a string cell, in original and outcome columns alike."""
    table = excel_table(tmp_path / "t.xlsx", ["Kunde"], [[text]])
    path = write_outcome(table, outcomes("FAILED", message=text), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    for cell in (ws["A2"], ws["C2"]):
        assert cell.data_type == "s"
        assert cell.value == text


def test_xlsx_header_is_bold_frozen_and_filtered(tmp_path: Path) -> None:
    """The header row stays in view and carries a filter over every column."""
    table = excel_table(tmp_path / "t.xlsx", ["A", "B"], [["x", 1], ["y", 2], ["z", 3]])
    path = write_outcome(table, outcomes("SUCCEEDED", "FAILED", "PENDING"), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:I4"
    assert all(cell.font.b for cell in ws[1])


def test_xlsx_status_colours_are_conditional_formats_not_cell_styles(tmp_path: Path) -> None:
    """One conditional rule per status over the status column; the status cells have no fill."""
    statuses = [status.value for status in RowStatus]
    table = excel_table(tmp_path / "t.xlsx", ["Fakturanr"], [[f"F-{i}"] for i in statuses])
    path = write_outcome(table, outcomes(*statuses), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    ranges = {str(cf.sqref): cf.rules for cf in ws.conditional_formatting}
    last = 1 + len(statuses)
    assert list(ranges) == [f"B2:B{last}"]
    rules = ranges[f"B2:B{last}"]
    assert sorted(rule.formula[0] for rule in rules) == sorted(f'"{s}"' for s in statuses)
    assert all(rule.type == "cellIs" and rule.operator == "equal" for rule in rules)
    fills = {rule.formula[0]: rule.dxf.fill.bgColor.rgb for rule in rules}
    assert fills['"SUCCEEDED"'] != fills['"FAILED"'] == fills['"ERROR"']
    assert fills['"INVALID"'] == fills['"UNKNOWN"'] != fills['"PENDING"'] != fills['"DUPLICATE"']
    assert fills['"NOT_SENT"'] not in {fills[f'"{s}"'] for s in statuses if s != "NOT_SENT"}
    for row in range(2, last + 1):
        assert ws.cell(row, 2).fill.patternType is None


def test_xlsx_columns_get_widths_from_their_content(tmp_path: Path) -> None:
    """A long-text column is wider than a short one, and no column is absurdly wide."""
    table = excel_table(
        tmp_path / "t.xlsx", ["N", "Kunde"], [[1, "Aksjeselskapet Langt Navn " * 9]]
    )
    path = write_outcome(table, outcomes("SUCCEEDED"), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    assert ws.column_dimensions["A"].width < ws.column_dimensions["B"].width <= 62


def test_summary_sheet_has_counts_environment_batches_and_notes(tmp_path: Path) -> None:
    """Summary lists file, mapping, SANDBOX loudly, all seven counts, total, batches and notes."""
    table = excel_table(tmp_path / "mars.xlsx", ["Fakturanr"], [["1"], ["2"], ["3"], ["4"]])
    batch = BatchLine(
        batch_id="b-77",
        invoices=3,
        status="PARTIAL",
        submitted_at=dt.datetime(2024, 3, 1, 9, 0, 1),
        finished_at=dt.datetime(2024, 3, 1, 9, 1, 0),
    )
    summary = summary_for(
        table.path,
        environment="sandbox",
        batches=(batch,),
        notes=("2 rows had no invoice number",),
    )
    statuses = outcomes("SUCCEEDED", "SUCCEEDED", "FAILED", "DUPLICATE", batch="b-77")
    path = write_outcome(table, statuses, summary)

    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Ark1", "Summary"]
    assert wb.active.title == "Ark1"
    values = summary_values(path)
    assert any("SANDBOX" in str(key) for key in values)
    assert values["File"] == "mars.xlsx"
    assert values["Mapping"] == "norwegian-erp.toml"
    assert values["Environment"] == "SANDBOX"
    assert values["Started"] == STARTED
    assert values["Duration"] == "2 min 5 s"
    counts = {status.value: values[status.value] for status in RowStatus}
    assert counts == {
        "SUCCEEDED": 2,
        "FAILED": 1,
        "INVALID": 0,
        "DUPLICATE": 1,
        "PENDING": 0,
        "NOT_SENT": 0,
        "UNKNOWN": 0,
        "ERROR": 0,
        "SKIPPED": 0,
    }
    assert values["Rows total"] == 4
    rows = sheet_rows(path, "Summary")
    assert (
        "Batch",
        "Invoices",
        "Status",
        "Submitted",
        "Finished",
        "SUCCEEDED rows",
        "FAILED rows",
        "DUPLICATE rows",
    ) in rows
    assert ("b-77", 3, "PARTIAL", batch.submitted_at, batch.finished_at, 2, 1, 1) in rows
    assert "2 rows had no invoice number" in values


def test_summary_of_a_production_run_does_not_say_sandbox(tmp_path: Path) -> None:
    """Only a sandbox run carries the SANDBOX banner."""
    table = excel_table(tmp_path / "t.xlsx", ["A"], [["x"]])
    path = write_outcome(
        table, outcomes("SUCCEEDED"), summary_for(table.path, environment="production")
    )

    text = " ".join(str(cell) for row in sheet_rows(path, "Summary") for cell in row)
    assert "SANDBOX" not in text.upper()
    assert summary_values(path)["Environment"] == "production"


@pytest.mark.parametrize(
    ("sheet", "expected"), [("Ark1", "Ark1"), (None, "Outcome"), ("Summary", "Outcome")]
)
def test_data_sheet_is_first_and_named_like_the_source_sheet(
    tmp_path: Path, sheet: str | None, expected: str
) -> None:
    """The data sheet keeps the source sheet's name unless that clashes with Summary."""
    table = excel_table(tmp_path / "t.xlsx", ["A"], [["x"]], sheet=sheet)
    path = write_outcome(table, outcomes("SUCCEEDED"), summary_for(table.path))

    assert openpyxl.load_workbook(path).sheetnames == [expected, "Summary"]


def test_xlsx_of_a_table_without_rows_has_header_and_zero_counts(tmp_path: Path) -> None:
    """An empty sheet still gives a valid outcome: header only, all counts 0."""
    table = excel_table(tmp_path / "t.xlsx", ["A", "B"], [])
    path = write_outcome(table, outcomes(), summary_for(table.path))

    assert sheet_rows(path) == [("A", "B", *OUTCOME_COLUMNS)]
    assert summary_values(path)["Rows total"] == 0


# --- CSV -------------------------------------------------------------------------------------


def test_csv_round_trips_in_cp1252_with_semicolons(tmp_path: Path) -> None:
    """Same delimiter and encoding as the input; æøå survive; what cp1252 lacks becomes '?'."""
    headers = ["Fakturanr", "Kunde", "Beløp"]
    rows = [
        ["F-1", "Blåbær Ærø AS", "1 234,50"],
        ["F-2", "Ola; «Nordmann»", "-100,50"],
        ["F-3", "Søren 中", "7"],
    ]
    table = csv_table(tmp_path / "export.csv", headers, rows, encoding="cp1252", delimiter=";")
    path = write_outcome(
        table,
        outcomes("SUCCEEDED", "FAILED", "PENDING", message="beløp: må være positiv"),
        summary_for(table.path),
    )

    assert path == tmp_path / "export.outcome.csv"
    raw = path.read_bytes()
    assert "Blåbær Ærø AS".encode("cp1252") in raw
    with path.open(encoding="cp1252", newline="") as fh:
        got = list(csv.reader(fh, delimiter=";"))
    assert got[0] == [*headers, *OUTCOME_COLUMNS]
    assert [row[:3] for row in got[1:]] == [rows[0], rows[1], ["F-3", "Søren ?", "7"]]
    assert [row[3] for row in got[1:]] == ["SUCCEEDED", "FAILED", "PENDING"]
    assert got[2][4] == "beløp: må være positiv"
    assert got[1][5:] == ["inv-0", "case-0", "1000", "b-1", "F-0"]


@pytest.mark.parametrize("encoding", ["cp1252", "iso8859-15", "latin-1", "koi8-r"])
def test_csv_is_written_as_its_codec_writes_it(tmp_path: Path, encoding: str) -> None:
    """Text that Latin-1 writes byte for byte is copied at once, but only where this codec
    writes the same bytes: cp1252's euro sign is 0x80, ISO-8859-15 has no currency sign ¤
    (0xA4 is its euro), KOI8-R agrees with Latin-1 on ASCII only."""
    cells = ["Åse Ærø", "€ 5", "¤ ½", "\u201a", "plain ASCII", "中 ø", "\x85 \x9f"]
    for n, cell in enumerate(cells):  # each in a file of its own: one cell decides its chunk
        table = csv_table(tmp_path / f"{n}.csv", ["T"], [[cell]], encoding=encoding, delimiter=";")
        path = write_outcome(table, outcomes("SUCCEEDED"), summary_for(table.path))

        line = path.read_bytes().split(b"\r\n")[1]
        assert line.split(b";")[0] == cell.encode(encoding, errors="replace"), cell


def test_csv_keeps_a_utf8_bom_and_tabs(tmp_path: Path) -> None:
    """A UTF-8-with-BOM, tab-separated input gives the same kind of outcome."""
    table = csv_table(tmp_path / "e.csv", ["Navn"], [["Åse"]], encoding="utf-8-sig", delimiter="\t")
    path = write_outcome(table, outcomes("SUCCEEDED"), summary_for(table.path))

    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfNavn\toutcome_status\t")
    assert "Åse\tSUCCEEDED".encode() in raw


@pytest.mark.parametrize(
    ("original", "written"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("@x", "'@x"),
        ("-x", "'-x"),
        ("+47 22 33 44 55", "'+47 22 33 44 55"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\t=1+1", "'\t=1+1"),
        ("-100,50", "-100,50"),
        ("-1 234,50", "-1 234,50"),
        ("+4722334455", "+4722334455"),
        ("-1.5e3", "-1.5e3"),
        ("-", "-"),
        ("Ola = Kari", "Ola = Kari"),
        ("", ""),
    ],
)
def test_csv_original_cells_change_only_when_excel_would_run_them(
    tmp_path: Path, original: str, written: str
) -> None:
    """Original columns: formulas get a leading quote; signed numbers and plain text do not."""
    table = csv_table(tmp_path / "e.csv", ["Felt"], [[original]], encoding="utf-8", delimiter=";")
    path = write_outcome(table, outcomes("INVALID"), summary_for(table.path))

    with path.open(encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh, delimiter=";"))[1][0] == written


@pytest.mark.parametrize(
    ("message", "written"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("-100", "'-100"),
        ("+1", "'+1"),
        ("@a", "'@a"),
        ("amount: too big", "amount: too big"),
    ],
)
def test_csv_outcome_text_never_starts_a_formula(
    tmp_path: Path, message: str, written: str
) -> None:
    """Outcome columns: anything starting with = + - @ gets a leading quote, numbers included."""
    table = csv_table(tmp_path / "e.csv", ["Felt"], [["x"]], encoding="utf-8", delimiter=",")
    path = write_outcome(table, outcomes("FAILED", message=message), summary_for(table.path))

    with path.open(encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh))[1][2] == written


def test_csv_headers_that_look_like_formulas_are_neutralised(tmp_path: Path) -> None:
    """A header is original data too: '=x' would be a formula, 'Beløp' stays."""
    table = csv_table(
        tmp_path / "e.csv", ["=x", "Beløp"], [["1", "2"]], encoding="utf-8", delimiter=","
    )
    path = write_outcome(table, outcomes("FAILED"), summary_for(table.path))

    with path.open(encoding="utf-8", newline="") as fh:
        assert next(csv.reader(fh))[:2] == ["'=x", "Beløp"]


# --- contract and atomicity ------------------------------------------------------------------


def test_length_mismatch_is_refused(tmp_path: Path) -> None:
    """Fewer outcome rows than data rows is a bug: nothing is written."""
    table = excel_table(tmp_path / "t.xlsx", ["A"], [["x"], ["y"]])
    with pytest.raises(ValueError, match="1 outcome rows for 2 data rows"):
        write_outcome(table, outcomes("SUCCEEDED"), summary_for(table.path))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_missing_outcome_column_is_refused(tmp_path: Path) -> None:
    """An outcomes frame without outcome_batch_id is a bug, not a blank column."""
    table = excel_table(tmp_path / "t.xlsx", ["A"], [["x"]])
    with pytest.raises(ValueError, match="outcome_batch_id"):
        write_outcome(
            table, outcomes("SUCCEEDED").drop(columns="outcome_batch_id"), summary_for(table.path)
        )


def test_existing_outcome_is_replaced_whole_and_no_temp_file_remains(tmp_path: Path) -> None:
    """A rewrite (PENDING -> SUCCEEDED) replaces the old file; no .tmp is left behind."""
    table = csv_table(
        tmp_path / "e.csv", ["A"], [[str(i)] for i in range(50)], encoding="utf-8", delimiter=","
    )
    write_outcome(
        table, outcomes(*["PENDING"] * 50, message="still queued " * 20), summary_for(table.path)
    )
    path = write_outcome(table, outcomes(*["SUCCEEDED"] * 50), summary_for(table.path))

    text = path.read_text(encoding="utf-8")
    assert "PENDING" not in text and "still queued" not in text
    assert text.count("SUCCEEDED") == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.outcome.csv"]


def test_a_failed_write_keeps_the_old_outcome_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """A crash halfway through writing leaves the previous outcome untouched and no debris."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    good = excel_table(tmp_path / "t.xlsx", ["A"], [["x"], ["y"]])
    path = write_outcome(good, outcomes("PENDING", "PENDING"), summary_for(good.path))
    before = path.read_bytes()
    values = pd.DataFrame({0: ["x", Unprintable()]}, dtype=object)
    bad = dataclasses.replace(good, values=values)

    with pytest.raises(RuntimeError, match="boom"):
        write_outcome(bad, outcomes("SUCCEEDED", "SUCCEEDED"), summary_for(bad.path))

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.outcome.xlsx"]


def test_outcome_is_readable_by_others_on_a_shared_folder(tmp_path: Path) -> None:
    """The outcome gets the usual umask permissions, not a private temp file's 0600."""
    old = os.umask(0o022)
    try:
        table = excel_table(tmp_path / "t.xlsx", ["A"], [["x"]])
        path = write_outcome(table, outcomes("SUCCEEDED"), summary_for(table.path))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# --- error outcome ---------------------------------------------------------------------------


def test_error_outcome_xlsx_has_one_error_row_and_a_summary(tmp_path: Path) -> None:
    """An unreadable Excel file gets an xlsx with one ERROR row saying why."""
    source = tmp_path / "ødelagt.xlsx"
    message = "ødelagt.xlsx: the file is not a valid Excel workbook; save it again from Excel."
    path = write_error_outcome(source, message, summary_for(source))

    assert path == tmp_path / "ødelagt.outcome.xlsx"
    assert sheet_rows(path) == [
        ("file", *OUTCOME_COLUMNS),
        ("ødelagt.xlsx", "ERROR", message, None, None, None, None, None),
    ]
    ws = openpyxl.load_workbook(path).worksheets[0]
    assert [str(cf.sqref) for cf in ws.conditional_formatting] == ["B2"]
    values = summary_values(path)
    assert values["ERROR"] == 1 and values["Rows total"] == 1


def test_error_outcome_csv_is_utf8_with_bom_and_commas(tmp_path: Path) -> None:
    """An unreadable CSV gets a CSV Excel opens cleanly: UTF-8 BOM, one ERROR row; commas when
    nothing tells the input's delimiter (here: no input at all)."""
    source = tmp_path / "rar.csv"
    path = write_error_outcome(
        source, "rar.csv: the file is empty; export it again.", summary_for(source)
    )

    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbffile,outcome_status,")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        got = list(csv.reader(fh))
    assert got == [
        ["file", *OUTCOME_COLUMNS],
        ["rar.csv", "ERROR", "rar.csv: the file is empty; export it again.", "", "", "", "", ""],
    ]


@pytest.mark.parametrize(
    ("content", "delimiter"),
    [
        # cp1252 and ;, with a UTF-8 line pasted in: refused as mixing encodings.
        ("Fakturanr;Navn\r\n1;Bjørn\r\n".encode("cp1252") + "2;Åse\r\n".encode(), ";"),
        # Excel's "Unicode text": UTF-16 and tabs, with bytes that are no UTF-16 character.
        ("Fakturanr\tNavn\r\n1\tBjørn\r\n".encode("utf-16") + b"\x00\xd8", "\t"),
        (b"sep=|\r\nFakturanr|Navn\r\n1|Kari\r\n", "|"),
        (b"\xef\xbb\xbfFakturanr,Navn\n1,Kari\n", ","),
        (b"\x00\x01\x02 binary", ","),
        (b"", ","),
        # Old Mac line ends, with a UTF-8 line pasted in.
        (b"Fakturanr;Navn;Bel\xf8p\r1;Bj\xf8rn;5\r2;\xc3\x85se;4\r", ";"),
        ("Fakturanr;Navn\r\n1;Bjørn\r\n2;Kari\r\n".encode("utf-16-le"), ";"),  # no BOM
        ("Fakturanr;Navn\r\n1;Bjørn\r\n2;Kari\r\n".encode("utf-32"), ";"),
        # A sep= line naming no delimiter (nothing, a quote, a NUL): sniffed instead.
        (b"sep=\r\nFakturanr;Navn\r\n1;Kari\r\n", ";"),
        (b'sep="\r\nFakturanr;Navn\r\n1;Kari\r\n', ";"),
        (b"sep=\x00\r\nFakturanr;Navn\r\n1;Kari\r\n", ";"),
    ],
    ids=[
        "cp1252-semicolons",
        "utf16-tabs",
        "sep-line",
        "utf8-commas",
        "binary",
        "empty",
        "lone-cr",
        "utf16-no-bom",
        "utf32",
        "sep-empty",
        "sep-quote",
        "sep-nul",
    ],
)
def test_error_outcome_csv_is_delimited_as_its_input(
    tmp_path: Path, content: bytes, delimiter: str
) -> None:
    """Excel opens a CSV split at the locale's list separator (";" in Norway): a comma-separated
    ERROR outcome of a ";" export showed its columns in one cell. The delimiter is read off the
    input's first lines, whatever made it unreadable."""
    source = tmp_path / "eksport.csv"
    source.write_bytes(content)
    path = write_error_outcome(source, "eksport.csv: why, in one sentence.", summary_for(source))
    raw = path.read_bytes()
    assert raw.startswith(f"\ufefffile{delimiter}outcome_status{delimiter}".encode())
    with path.open(encoding="utf-8-sig", newline="") as fh:
        got = list(csv.reader(fh, delimiter=delimiter))
    assert got[1][:3] == ["eksport.csv", "ERROR", "eksport.csv: why, in one sentence."]


@pytest.mark.parametrize("kind", ["link", "pipe"])
def test_error_outcome_csv_reads_no_link_and_waits_on_no_pipe(tmp_path: Path, kind: str) -> None:
    """The delimiter is read as the inbox reads: a link's target is not opened (here a ";"
    file), and a pipe in the file's place does not hold the outcome up: commas."""
    target = tmp_path / "hemmelig.csv"
    target.write_text("a;b;c\n1;2;3\n")
    source = tmp_path / "eksport.csv"
    if kind == "link":
        source.symlink_to(target)
    else:
        os.mkfifo(source)
    path = write_error_outcome(source, "eksport.csv: why.", summary_for(source))
    assert path.read_bytes().startswith(b"\xef\xbb\xbffile,outcome_status,")


# --- the xlsx data rows, as sheetxml writes them ---------------------------------------------


def calamine_rows(path: Path, sheet: int = 0) -> list[list[object]]:
    """The sheet as calamine (filedrop's own reader) reads it, each row as wide as the sheet."""
    workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    return workbook.get_sheet_by_index(sheet).to_python(skip_empty_area=False)


AWKWARD_TEXTS = [
    "a & b <c> d",
    "<r><t>not markup</t></r>",
    "ctl\x01\x02\x1f end",
    "_x0041_ stays as typed",
    " leading",
    "trailing ",
    "\ttab first",
    "line\nfeed",
    "cr\rcr",
    "Åse Ødegård 日本 😀",
    "=SUM(A1)",
    "00123",
]


def test_xlsx_awkward_text_reads_back_as_written(tmp_path: Path) -> None:
    """Markup characters, control characters, Excel's own _xHHHH_ escapes, edge whitespace and
    non-ASCII text all read back exactly, as text, in calamine; openpyxl agrees where it
    unescapes (it leaves _xHHHH_ as it is)."""
    table = excel_table(tmp_path / "t.xlsx", ["Tekst"], [[text] for text in AWKWARD_TEXTS])
    path = write_outcome(
        table,
        outcomes(*["FAILED"] * len(AWKWARD_TEXTS), message="x < y & z"),
        summary_for(table.path),
    )

    rows = calamine_rows(path)
    assert [row[0] for row in rows[1:]] == AWKWARD_TEXTS
    assert {row[2] for row in rows[1:]} == {"x < y & z"}
    ws = openpyxl.load_workbook(path).worksheets[0]
    for r, text in enumerate(AWKWARD_TEXTS, start=2):
        assert ws.cell(r, 1).data_type == "s"
        if "_x" not in text and "\r" not in text and not any(ord(c) < 32 for c in text[1:]):
            assert ws.cell(r, 1).value == text


def test_xlsx_text_longer_than_excel_allows_is_cut_as_before(tmp_path: Path) -> None:
    """A cell beyond Excel's 32,767 UTF-16 units is cut to that, never inside a character."""
    long_ascii, long_emoji = "x" * 40_000, "😀" * 20_000  # 40,000 units each
    table = excel_table(tmp_path / "t.xlsx", ["Lang"], [[long_ascii], [long_emoji], ["kort"]])
    path = write_outcome(table, outcomes("FAILED", "FAILED", "FAILED"), summary_for(table.path))

    rows = calamine_rows(path)
    assert rows[1][0] == "x" * 32_767
    assert rows[2][0] == "😀" * 16_383  # 32,766 units: one more would split a character
    assert rows[3][0] == "kort"


def test_xlsx_empty_columns_have_no_cells(tmp_path: Path) -> None:
    """A column of None and one of empty text write no cells, only their headers."""
    table = excel_table(
        tmp_path / "t.xlsx", ["Nr", "Tom", "Blank"], [["1", None, ""], ["2", None, ""]]
    )
    path = write_outcome(table, outcomes("SUCCEEDED", "FAILED"), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    assert [ws.cell(1, c).value for c in (1, 2, 3)] == ["Nr", "Tom", "Blank"]
    assert ws._cells.keys().isdisjoint({(r, c) for r in (2, 3) for c in (2, 3)})
    assert ws.dimensions == f"A1:{openpyxl.utils.get_column_letter(3 + len(OUTCOME_COLUMNS))}3"


def test_xlsx_numbers_text_and_dates_read_back_with_pandas_and_calamine(tmp_path: Path) -> None:
    """pandas (openpyxl) and calamine see numbers as numbers (whole ones as integers, every
    double exact), text that looks like a number as text, and dates as dates."""
    rows = [
        [1234.5, "00123", dt.date(2024, 5, 17), 3.0, 0.1 + 0.2],
        [-0.5, "1e5", dt.date(1900, 3, 1), 12.0, 1e-7],
        [7.0, "", dt.date(1900, 2, 28), None, 1.2345678901234567e16],
    ]
    table = excel_table(tmp_path / "t.xlsx", ["Beløp", "Kode", "Dag", "Antall", "Brøk"], rows)
    path = write_outcome(table, outcomes("SUCCEEDED", "FAILED", "FAILED"), summary_for(table.path))

    frame = pd.read_excel(path, engine="openpyxl", dtype={"Kode": str})
    assert frame["Beløp"].tolist() == [1234.5, -0.5, 7.0]
    assert frame["Kode"].tolist()[:2] == ["00123", "1e5"]
    assert frame["Dag"].tolist() == [
        pd.Timestamp(2024, 5, 17),
        pd.Timestamp(1900, 3, 1),
        pd.Timestamp(1900, 2, 28),
    ]
    assert frame["Brøk"].tolist() == [0.1 + 0.2, 1e-7, 1.2345678901234567e16]
    ws = openpyxl.load_workbook(path).worksheets[0]
    assert ws["D2"].value == 3 and isinstance(ws["D2"].value, int)
    cal = calamine_rows(path)
    assert cal[1][:5] == [1234.5, "00123", dt.date(2024, 5, 17), 3.0, 0.1 + 0.2]
    assert cal[3][3] == ""


def test_xlsx_mixed_column_writes_each_cell_by_its_type(tmp_path: Path) -> None:
    """A column mixing numbers, text, dates, booleans and gaps keeps each cell's own type."""
    tz = dt.timezone(dt.timedelta(hours=2))
    mixed = [
        1,
        "two",
        dt.date(2024, 1, 3),
        None,
        4.5,
        True,
        "",
        float("inf"),
        dt.datetime(2024, 1, 1, 10, 30, tzinfo=tz),
        dt.time(13, 14, 15),
        np.float64(2.5),
        " spaced ",
        pd.NA,
    ]
    table = excel_table(tmp_path / "t.xlsx", ["Blandet"], [[v] for v in mixed])
    path = write_outcome(table, outcomes(*["FAILED"] * len(mixed)), summary_for(table.path))

    ws = openpyxl.load_workbook(path).worksheets[0]
    got = [ws.cell(r, 1).value for r in range(2, 2 + len(mixed))]
    assert got[:3] == [1, "two", dt.datetime(2024, 1, 3)]
    assert got[3] is None and got[4] == 4.5 and got[5] is True and got[6] is None
    assert got[7] == "inf" and ws.cell(9, 1).data_type == "s"
    assert got[8] == dt.datetime(2024, 1, 1, 10, 30)  # the wall-clock reading, zone dropped
    assert got[9] == dt.time(13, 14, 15) and ws.cell(11, 1).number_format == "hh:mm:ss"
    assert got[10] == 2.5 and got[11] == " spaced " and got[12] is None


def test_xlsx_many_rows_keep_order_and_row_numbers(tmp_path: Path) -> None:
    """Rows beyond one chunk of XML stay in order, each on its own row number (gaps kept), and
    the sheet's used range ends at the last one."""
    n = sheetxml.CHUNK_ROWS * 2 + 3
    table = excel_table(
        tmp_path / "t.xlsx", ["Nr", "Beløp"], [[f"F-{i}", i + 0.5] for i in range(n)]
    )
    numbers = np.arange(2, n + 2) + (np.arange(n) >= 5000)  # a blank row before the 5,001st
    table = dataclasses.replace(table, row_numbers=numbers)
    path = write_outcome(table, outcomes(*["SUCCEEDED"] * n), summary_for(table.path))

    rows = calamine_rows(path)
    assert len(rows) == n + 2
    assert rows[5000] == ["F-4999", 4999.5, "SUCCEEDED", *rows[5000][3:]]
    assert set(rows[5001]) == {""}
    assert [row[0] for row in rows[5002:]] == [f"F-{i}" for i in range(5000, n)]
    ws = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    assert ws.max_row == n + 2


# --- CSV, a column at a time ------------------------------------------------------------------


def test_csv_fields_are_quoted_exactly_as_the_csv_module_quotes_them(tmp_path: Path) -> None:
    """Delimiters, quotes and line breaks inside cells, over more rows than one chunk, give the
    same bytes the csv module writes, and read back as the cells."""
    awkward = ["a;b", 'say "hi"', "two\nlines", "cr\rhere", "plain", "", "Åse", "a,b", "\0nul"]
    rows = [[f"F-{i}", awkward[i % len(awkward)]] for i in range(10_000)]
    table = csv_table(tmp_path / "e.csv", ["Nr", "Tekst"], rows, encoding="utf-8", delimiter=";")
    result = outcomes(*["FAILED"] * len(rows), message='bad "date"; see\nrow')
    path = write_outcome(table, result, summary_for(table.path))

    expected = io.StringIO()
    writer = csv.writer(expected, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Nr", "Tekst", *OUTCOME_COLUMNS])
    for row, (_, outcome) in zip(rows, result.iterrows(), strict=True):
        writer.writerow([*row, *outcome.tolist()])
    assert path.read_bytes() == expected.getvalue().encode("utf-8")


def test_csv_keeps_one_bom_and_every_line_number_across_chunks(tmp_path: Path) -> None:
    """A BOM only at the start, and blank input lines kept, however many rows there are."""
    n = 9_000
    rows = [[f"F-{i}"] for i in range(n)]
    table = csv_table(tmp_path / "e.csv", ["Nr"], rows, encoding="utf-8-sig", delimiter=",")
    blank_before = {10: 1, 4_096: 2, 8_999: 1}  # row index: blank lines before it
    numbers, line = [], 2
    for i in range(n):
        line += blank_before.get(i, 0)
        numbers.append(line)
        line += 1
    table = dataclasses.replace(table, row_numbers=np.array(numbers))
    path = write_outcome(table, outcomes(*["SUCCEEDED"] * n), summary_for(table.path))

    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfNr,") and raw.count(b"\xef\xbb\xbf") == 1
    lines = raw.decode("utf-8-sig").split("\r\n")
    for i, number in enumerate(numbers):
        assert lines[number - 1].startswith(f"F-{i},SUCCEEDED"), number
    assert sum(1 for text in lines[:-1] if not text) == sum(blank_before.values())


class _FullDisk(io.BytesIO):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def _skeleton() -> bytes:
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    workbook.add_worksheet("Data")
    workbook.close()
    return buffer.getvalue()


def _chunks(count: int, *, fail_at: int | None = None) -> Iterator[bytes]:
    for n in range(count):
        if n == fail_at:
            raise ValueError("a row could not be made")
        # Random digits: deflate cannot shrink them, so the package outgrows a small disk.
        yield f'<row r="{n + 1}"><c r="A{n + 1}"><v>{os.urandom(4096).hex()}</v></c></row>'.encode()


def test_the_sheets_rows_are_deflated_behind_and_what_fails_on_either_side_is_raised() -> None:
    """Chunks are written on a thread of their own while the next is made: all arrive in
    order, a full disk while one is written is raised, and so is a row that cannot be made."""
    dest = io.BytesIO()
    sheetxml.write_package(
        _skeleton(),
        dest,
        sheet="xl/worksheets/sheet1.xml",
        rows=_chunks(20),
        last_row=19,
        last_col=0,
    )
    workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(dest.getvalue()))
    assert len(workbook.get_sheet_by_index(0).to_python()) == 20

    with pytest.raises(OSError, match="No space left"):
        sheetxml.write_package(
            _skeleton(),
            _FullDisk(room=40_000),
            sheet="xl/worksheets/sheet1.xml",
            rows=_chunks(20),
            last_row=19,
            last_col=0,
        )
    with pytest.raises(ValueError, match="could not be made"):
        sheetxml.write_package(
            _skeleton(),
            io.BytesIO(),
            sheet="xl/worksheets/sheet1.xml",
            rows=_chunks(20, fail_at=7),
            last_row=19,
            last_col=0,
        )


@pytest.mark.parametrize("length", [0, 1, 7, 4_096, 100_003])
def test_crc32_combine_gives_the_crc_of_both_parts_together(length: int) -> None:
    """What a zip entry of separately deflated parts is checked by: zlib's own CRC of the lot."""
    first, second = os.urandom(1_000), os.urandom(length)
    combined = sheetxml.crc32_combine(zlib.crc32(first), zlib.crc32(second), length)
    assert combined == zlib.crc32(first + second)


def _entries(package: bytes) -> dict[str, bytes]:
    """Each entry of a zip package, inflated, after zipfile checked every CRC; the moment it was
    written left out (two packages written a second apart hold different ones)."""
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert archive.testzip() is None
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    entries["docProps/core.xml"] = _WRITTEN_AT.sub(b"", entries["docProps/core.xml"])
    return entries


_WRITTEN_AT = re.compile(rb"<dcterms:(created|modified)[^>]*>[^<]*</dcterms:\1>")


def test_rows_deflated_apart_make_the_package_written_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The package around rows deflated in parts holds what the one written in one go does,
    every entry in the same order; one that would need zip64 is refused before a byte."""
    row = '<row r="{0}"><c r="A{0}"><v>{0}</v></c></row>'
    rows = ["".join(row.format(n) for n in range(k, k + 50)).encode() for k in range(2, 500, 50)]
    package = {"sheet": "xl/worksheets/sheet1.xml", "last_row": 500, "last_col": 0}
    whole, apart = io.BytesIO(), io.BytesIO()
    sheetxml.write_package(_skeleton(), whole, rows=iter(rows), **package)
    segments = sheetxml.deflated_behind(rows)
    sheetxml.write_segmented_package(_skeleton(), apart, rows=segments, **package)
    assert _entries(apart.getvalue()) == _entries(whole.getvalue())
    assert list(_entries(apart.getvalue())) == list(_entries(whole.getvalue()))
    sheet = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(apart.getvalue()))
    assert len(sheet.get_sheet_by_index(0).to_python()) == 500

    monkeypatch.setattr(sheetxml, "_ZIP32_LIMIT", 1_000)
    untouched = io.BytesIO()
    with pytest.raises(sheetxml.ZipTooLargeError):
        sheetxml.write_segmented_package(_skeleton(), untouched, rows=segments, **package)
    assert untouched.getvalue() == b""


def _ahead_case(tmp_path: Path) -> tuple[Table, pd.DataFrame, np.ndarray]:
    """A table of three chunks and more (of 64 rows), of mixed kinds with a gap in its row
    numbers, and its final outcome; the last chunk is not settled when rows are made ahead."""
    n = 64 * 3 + 5
    kinds = ["text", 12.5, dt.date(2024, 3, 1), None, " spaced ", "a & <b>", 7]
    cells = [[f"F-{i}", kinds[i % len(kinds)]] for i in range(n)]
    table = excel_table(tmp_path / "t.xlsx", ["Nr", "Blandet"], cells)
    table = dataclasses.replace(table, row_numbers=np.arange(2, n + 2) + (np.arange(n) >= 100))
    statuses = ["SUCCEEDED"] * n
    statuses[3], statuses[70] = "INVALID", "DUPLICATE"
    settled = np.ones(n, dtype=bool)
    settled[64 * 3 + 1] = False
    return table, outcomes(*statuses, message="why"), settled


def _ahead_of(table: Table, final: pd.DataFrame, settled: np.ndarray, *, sandbox: bool):
    provisional = {name: final[name].to_numpy(dtype=object).copy() for name in OUTCOME_COLUMNS}
    return rows_ahead(table, provisional, settled, sandbox=sandbox)


@pytest.mark.parametrize("environment", ["staging", "sandbox"])
def test_rows_made_ahead_give_the_outcome_made_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    """Rows made while the last polls were awaited are taken as made where their outcome is
    the same at the end; a chunk whose outcome changed since, and the one not settled then,
    are made at the end. The file holds exactly what it would have, made at once."""
    monkeypatch.setattr(sheetxml, "CHUNK_ROWS", 64)
    table, final, settled = _ahead_case(tmp_path)
    summary = summary_for(table.path, environment=environment)
    ahead = _ahead_of(table, final, settled, sandbox=summary.sandbox)
    assert ahead is not None and sorted(ahead.chunks) == [0, 1, 2]
    changed = final.copy()
    changed.loc[65, "outcome_status"] = "FAILED"  # the journal changed it since: chunk 1
    packaged: list[int] = []
    segmented = sheetxml.write_segmented_package
    monkeypatch.setattr(
        outcome_module,
        "write_segmented_package",
        lambda *args, rows, **kw: packaged.append(len(rows)) or segmented(*args, rows=rows, **kw),
    )

    ahead_path = write_outcome(table, changed, summary, dest=tmp_path / "a.xlsx", ahead=ahead)
    once_path = write_outcome(table, changed, summary, dest=tmp_path / "o.xlsx")

    assert packaged == [4]  # the chunks made ahead were used
    assert _entries(ahead_path.read_bytes()) == _entries(once_path.read_bytes())
    rows = calamine_rows(ahead_path)
    assert rows[66][2] == "FAILED" and rows[4][2] == "INVALID"


def test_rows_made_ahead_of_a_sheet_beginning_in_column_c_give_the_outcome_made_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows made ahead keep the sheet's first column too: the file is the one made at once,
    its data from column C on."""
    monkeypatch.setattr(sheetxml, "CHUNK_ROWS", 64)
    table, final, settled = _ahead_case(tmp_path)
    table = dataclasses.replace(table, info=dataclasses.replace(table.info, first_column=2))
    summary = summary_for(table.path, environment="sandbox")
    ahead = _ahead_of(table, final, settled, sandbox=True)
    ahead_path = write_outcome(table, final, summary, dest=tmp_path / "a.xlsx", ahead=ahead)
    once_path = write_outcome(table, final, summary, dest=tmp_path / "o.xlsx")
    assert _entries(ahead_path.read_bytes()) == _entries(once_path.read_bytes())
    rows = calamine_rows(ahead_path)
    assert rows[0][:3] == ["", "", "Nr"] and rows[1][2] == "F-0"


def test_rows_made_ahead_for_other_columns_are_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows made ahead for a sandbox outcome (one column more) are not used for another, and
    an outcome too large for a package without zip64 is written whole: both as made at once."""
    monkeypatch.setattr(sheetxml, "CHUNK_ROWS", 64)
    table, final, settled = _ahead_case(tmp_path)
    summary = summary_for(table.path, environment="staging")
    sandboxed = _ahead_of(table, final, settled, sandbox=True)
    once = write_outcome(table, final, summary, dest=tmp_path / "once.outcome.xlsx")
    other = write_outcome(table, final, summary, dest=tmp_path / "o.outcome.xlsx", ahead=sandboxed)
    assert _entries(other.read_bytes()) == _entries(once.read_bytes())

    monkeypatch.setattr(sheetxml, "_ZIP32_LIMIT", 10_000)
    ahead = _ahead_of(table, final, settled, sandbox=False)
    large = write_outcome(table, final, summary, dest=tmp_path / "l.outcome.xlsx", ahead=ahead)
    assert _entries(large.read_bytes()) == _entries(once.read_bytes())


def test_no_rows_are_made_ahead_unsettled_or_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None when no chunk is settled, or the outcome is too long to hold its rows deflated."""
    table, final, _ = _ahead_case(tmp_path)
    assert _ahead_of(table, final, np.zeros(len(table), dtype=bool), sandbox=False) is None
    everything = np.ones(len(table), dtype=bool)
    assert _ahead_of(table, final, everything, sandbox=False) is not None
    cells = len(table) * (len(table.headers) + len(OUTCOME_COLUMNS) + 1)
    monkeypatch.setattr(outcome_module, "AHEAD_MAX_CELLS", cells - 1)
    assert _ahead_of(table, final, everything, sandbox=False) is None


def test_rows_made_ahead_of_another_table_or_cut_otherwise_are_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows made ahead are of one table, cut in chunks of one size: another table with the same
    headers and outcome, or the same one cut in other chunks, is made at the end (taken, they
    wrote the first table's values, or lost and repeated rows)."""
    monkeypatch.setattr(sheetxml, "CHUNK_ROWS", 64)
    table, final, settled = _ahead_case(tmp_path)
    summary = summary_for(table.path)
    ahead = _ahead_of(table, final, settled, sandbox=False)
    other = dataclasses.replace(table, values=table.values.map(lambda v: "other"))
    once = write_outcome(other, final, summary, dest=tmp_path / "once.outcome.xlsx")
    taken = write_outcome(other, final, summary, dest=tmp_path / "t.outcome.xlsx", ahead=ahead)
    assert _entries(taken.read_bytes()) == _entries(once.read_bytes())

    monkeypatch.setattr(sheetxml, "CHUNK_ROWS", 50)
    once = write_outcome(table, final, summary, dest=tmp_path / "once.outcome.xlsx")
    cut = write_outcome(table, final, summary, dest=tmp_path / "c.outcome.xlsx", ahead=ahead)
    assert _entries(cut.read_bytes()) == _entries(once.read_bytes())


def test_amounts_too_large_to_add_up_are_said_so_and_the_outcome_is_written(
    tmp_path: Path,
) -> None:
    """Two amounts of 1e308 add up past any float: the Summary says so where the sum goes, and
    the outcome is written (math.fsum raised, and the file had no outcome at all)."""
    table = excel_table(tmp_path / "t.xlsx", ["Beløp"], [[1e308], [1e308], [5.0]])
    summary = summary_for(table.path, amount_column=0)
    path = write_outcome(table, outcomes("SUCCEEDED", "SUCCEEDED", "FAILED"), summary)
    rows = {row[0]: row[2] for row in sheet_rows(path, "Summary") if row and len(row) > 2}
    assert rows["SUCCEEDED"] == "too large to add up"
    assert rows["FAILED"] == 5
    assert rows["Rows total"] == "too large to add up"
