"""Real exports map without editing them: an open-items report shaped like Tripletex's and Visma's
(full names in one column, one combined id column, no type column, a title, merged group headers,
blank rows, a credit note, a Sum row) goes through a mapping as it is, and ends with exit 0."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import openpyxl
import pytest
from builders import filedrop, national_id, run_env
from stdnum.no import orgnr

from filedrop.mapping import load_mapping
from filedrop.mapping.prepare import prepare
from filedrop.read import ReadOptions, read_table
from filedrop.sandbox import Sandbox

ORGNR = next(f"9{n:08d}" for n in range(10**6) if orgnr.is_valid(f"9{n:08d}"))
LOST_ZERO = next(national_id(n) for n in range(50) if national_id(n).startswith("0"))
PERSON = next(national_id(n) for n in range(50) if not national_id(n).startswith("0"))

# The mapping a user writes for the export below, with no edit to the export itself.
OPEN_ITEMS_MAPPING = """
name = "Open items (Tripletex-like)"

[read]
decimal = ","
thousands = [" "]
dates = ["dd.mm.yyyy"]

[skip]
credit_notes = { column = "Beløp", at_most = 0 }

[invoice]
type = { constant = "NOTICE" }
invoiceNumber = "Fakturanr"
originalInvoiceAmount = "Beløp"
currency = { constant = "NOK" }
invoiceDate = "Fakturadato"
dueDate = "Forfall"

[debtor]
type = { from_id = true }
full_name = "Kunde"
identificationNumber = { column = "Org.nr/Personnr", pad = 11 }
emails = "K"

[debtor.addresses]
street = "Adresse"
zipCode = { column = "Postnr", pad = 4 }
city = "Poststed"
countryCode = { constant = "NO" }

[[claims]]
type = { constant = "PRINCIPAL" }
remainingAmount = "Beløp"
"""

HEADERS = [
    "Fakturanr", "Fakturadato", "Forfall", "Kunde", "Org.nr/Personnr", "Adresse", "Postnr",
    "Poststed", "Beløp", "Telefon", None,
]  # fmt: skip


def write_open_items(path: Path) -> Path:
    """An open-items report as an ERP writes it: title, merged group headers over the header,
    a column with no header of its own (the e-mail under "Kontakt", column K), blank rows,
    numbers and text mixed, a credit note and a Sum row with a formula."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Åpne poster"
    ws["A1"] = "Åpne poster per 31.03.2024"
    ws.merge_cells("A1:H1")
    for cell, text, span in (
        ("A3", "Faktura", "A3:C3"),
        ("D3", "Kunde", "D3:H3"),
        ("I3", "Beløp", "I3:I3"),
        ("J3", "Kontakt", "J3:K3"),
    ):
        ws[cell] = text
        if ":" in span and span.split(":")[0] != span.split(":")[1]:
            ws.merge_cells(span)
    for col, header in enumerate(HEADERS, start=1):
        if header is not None:
            ws.cell(row=4, column=col, value=header)
    rows: list[list[object] | None] = [
        # A person whose personnummer and postnr lost their leading zero; real Excel dates.
        ["24001", dt.date(2024, 1, 15), dt.date(2024, 2, 14), "Nordmann, Kari",
         int(LOST_ZERO), "Storgata 1", 150, "Oslo", 3200, "91234567", "kari@example.no"],
        # A company: its name is never split, its organisation number never padded; text dates
        # and an amount typed as text.
        ["24002", "15.01.2024", "14.02.2024", "Bygg og Anlegg AS", int(ORGNR),
         "Industriveien 5", "5003", "Bergen", "3 200,00", None, "post@bygg.example.no"],
        None,
        # "Fornavn Mellomnavn Etternavn".
        ["24003", dt.date(2024, 1, 20), "19.02.2024", "Ola Johan Hansen", PERSON,
         "Fjordveien 2", "7010", "Trondheim", 1250.5, None, None],
        # A credit note.
        ["24004", dt.date(2024, 1, 22), dt.date(2024, 2, 21), "Bygg og Anlegg AS", int(ORGNR),
         "Industriveien 5", "5003", "Bergen", -500, None, None],
        None,
        [None, None, None, "Sum", None, None, None, None, "=SUM(I5:I9)", None, None],
    ]  # fmt: skip
    for r, values in enumerate(rows, start=5):
        for c, value in enumerate(values or [], start=1):
            if value is not None:
                ws.cell(row=r, column=c, value=value)
    for r in (5, 8, 9):
        for c in (2, 3):
            ws.cell(row=r, column=c).number_format = "dd.mm.yyyy"
    wb.save(path)
    old = 1_000_000_000  # older than any stability window
    os.utime(path, (old, old))
    return path


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, Path]:
    """(the export in an inbox, its mapping in a mappings folder)."""
    inbox, mappings = tmp_path / "inbox", tmp_path / "mappings"
    inbox.mkdir()
    mappings.mkdir()
    (mappings / "open-items.toml").write_text(OPEN_ITEMS_MAPPING, encoding="utf-8")
    return write_open_items(inbox / "apne-poster.xlsx"), mappings / "open-items.toml"


def test_the_open_items_export_maps_as_it_is(export: tuple[Path, Path]) -> None:
    """Each invoice becomes the JSON a user expects; the credit note and Sum row are SKIPPED."""
    path, mapping_path = export
    mapping = load_mapping(mapping_path)
    prepared = prepare(read_table(path, mapping.read), mapping)
    assert [str(p) for p in prepared.problems if p.severity != "skipped"] == []
    assert {r: (s.value, t) for r, (s, t) in prepared.rejected.items()} == {
        3: ("SKIPPED", 'rule skip.credit_notes: Beløp "-500" is 0 or less'),
        4: ("SKIPPED", 'rule skip.totals: Kunde "Sum" marks a totals row'),
    }
    debtors = [invoice.payload["debtors"][0] for invoice in prepared.invoices]
    assert [(d["type"], d.get("firstname"), d["lastname"]) for d in debtors] == [
        ("PRIVATE", "Kari", "Nordmann"),
        ("COMPANY", None, "Bygg og Anlegg AS"),
        ("PRIVATE", "Ola Johan", "Hansen"),
    ]
    assert [d["identificationNumber"] for d in debtors] == [LOST_ZERO, ORGNR, PERSON]
    assert [d["addresses"][0]["zipCode"] for d in debtors] == ["0150", "5003", "7010"]
    assert [d.get("emails") for d in debtors] == [
        [{"value": "kari@example.no"}],
        [{"value": "post@bygg.example.no"}],
        None,
    ]
    amounts = [invoice.payload["originalInvoiceAmount"] for invoice in prepared.invoices]
    assert amounts == [3200.0, 3200.0, 1250.5]


def test_the_open_items_export_runs_with_exit_0(
    export: tuple[Path, Path], sandbox: Sandbox
) -> None:
    """`filedrop run` on the export: every row SUCCEEDED or SKIPPED, exit 0, and the headerless
    column keeps its data under its letter in the outcome."""
    path, mapping_path = export
    env = run_env(path.parent, sandbox.url, FILEDROP_MAPPING=str(mapping_path.parent))
    filedrop("run", environ=env, expect=0)
    sheet = openpyxl.load_workbook(path.with_name("apne-poster.outcome.xlsx")).worksheets[0]
    header = [c.value for c in sheet[4]]
    assert header[:11] == [*HEADERS[:10], "K"]
    status = header.index("outcome_status") + 1
    statuses = {r: sheet.cell(row=r, column=status).value for r in range(5, 12)}
    assert statuses == {
        5: "SUCCEEDED",
        6: "SUCCEEDED",
        7: None,
        8: "SUCCEEDED",
        9: "SKIPPED",
        10: None,
        11: "SKIPPED",
    }
    assert sheet.cell(row=5, column=11).value == "kari@example.no"
    assert sorted(sandbox.received_invoice_numbers()) == ["24001", "24002", "24003"]


def test_validate_calls_the_export_fine_and_counts_the_skipped_rows(
    export: tuple[Path, Path],
) -> None:
    """`filedrop validate` exits 0 on the export and lists the skipped rows with their rule."""
    path, mapping_path = export
    _, out, _ = filedrop("validate", str(path), "--mapping", str(mapping_path), environ={})
    lines = out.splitlines()[1:]
    assert lines == [
        "5 rows, 3 invoices to send, 3 rows valid, 0 invalid, 0 duplicate, 2 skipped (not "
        "invoices to send)",
        '  skipped: row 9: rule skip.credit_notes: Beløp "-500" is 0 or less',
        '  skipped: row 11: rule skip.totals: Kunde "Sum" marks a totals row',
    ]


def test_a_headerless_csv_column_is_named_by_its_letter(tmp_path: Path) -> None:
    """A CSV column with an empty header is read under its letter, its data kept."""
    path = tmp_path / "x.csv"
    path.write_text("Fakturanr;;Beløp\n1;a@x.no;10\n", encoding="utf-8")
    table = read_table(path, ReadOptions())
    assert table.headers == ["Fakturanr", "B", "Beløp"]
    assert table.cells[1].tolist() == ["a@x.no"]


def test_a_csv_outcome_keeps_every_input_line(tmp_path: Path, sandbox: Sandbox) -> None:
    """Blank lines and title lines stay in a CSV outcome, so its line N is the input's line N;
    a title line keeps its text (it was written empty)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "m.toml").write_text(
        OPEN_ITEMS_MAPPING.replace("[read]", '[read]\ndelimiter = ";"'),
        encoding="utf-8",
    )
    lines = [
        "Åpne poster per 31.03.2024",
        "",
        "Fakturanr;Fakturadato;Forfall;Kunde;Org.nr/Personnr;Adresse;Postnr;Poststed;Beløp;"
        "Telefon;",
        f"24001;15.01.2024;14.02.2024;Nordmann, Kari;{LOST_ZERO[1:]};Storgata 1;150;Oslo;"
        "3 200,00;;kari@example.no",
        "",
        f"24002;15.01.2024;14.02.2024;Bygg AS;{ORGNR};Vei 5;5003;Bergen;100,00;;",
        ";;;Sum;;;;;3 300,00;;",
    ]
    path = inbox / "poster.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    env = run_env(inbox, sandbox.url, FILEDROP_MAPPING=str(tmp_path / "m"))
    filedrop("run", environ=env, expect=0)
    with path.with_name("poster.outcome.csv").open(encoding="utf-8", newline="") as fh:
        out = list(csv.reader(fh, delimiter=";"))
    assert len(out) == len(lines)
    assert [row[:1] for row in out[:3]] == [["Åpne poster per 31.03.2024"], [], ["Fakturanr"]]
    assert out[3][0] == "24001" and out[3][11] == "SUCCEEDED"
    assert out[4] == []
    assert out[5][0] == "24002" and out[5][11] == "SUCCEEDED"
    assert out[6][3] == "Sum" and out[6][11] == "SKIPPED"
