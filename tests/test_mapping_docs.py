"""mappings/README.md matches the product: every example message in it is what filedrop says in
that case (each case is run here), and it points only at files the repository has."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from builders import ERP_HEADER, erp_row, national_id, write_erp_workbook
from test_exports import OPEN_ITEMS_MAPPING

from filedrop.errors import MappingError, ReadError
from filedrop.logs import printable
from filedrop.mapping import load_mapping, load_mappings, select_mapping
from filedrop.mapping.prepare import prepare
from filedrop.read import read_table

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
README = (MAPPINGS / "README.md").read_text(encoding="utf-8")
WHOLE = README.split("```toml\n", 1)[1].split("```", 1)[0]  # "A whole mapping"


def documented_messages() -> set[str]:
    """Every example message: rows and rules in backticks, sentences in plain code blocks."""
    quoted = re.findall(r"`((?:row \d+|rule skip\.)[^`]+)`", README)
    said, plain = [], None
    for line in README.splitlines():
        if line.startswith("```"):
            plain = (line == "```") if plain is None else None
        elif plain and line.startswith(("mappings/", "inbox/")):
            said.append(line)
    return {" ".join(message.split()) for message in [*quoted, *said]}


def _csv(folder: Path, header: str, rows: list[str]) -> Path:
    path = folder / "faktura.csv"
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("cp1252"))
    return path


def _row_message(folder: Path, row: int, mapping_text: str | None = None, **cells: str) -> str:
    """What filedrop says about line ``row`` of a norwegian-erp CSV whose bad row has ``cells``
    (lines before it hold good invoices)."""
    rows = [erp_row(f"2403{n:02d}") for n in range(2, row)] + [erp_row("240399", **cells)]
    mapping = (
        load_mapping(MAPPINGS / "norwegian-erp.toml")
        if mapping_text is None
        else _mapping(folder, mapping_text)
    )
    prepared = prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping)
    return _only_message(prepared, row)


def _quoted_row_message(folder: Path, row: int, **cells: str) -> str:
    """``_row_message`` for cells a CSV holds only in quotes (a line break), as Excel saves them."""
    rows = [erp_row(f"2403{n:02d}") for n in range(2, row)]
    bad = dict(zip(ERP_HEADER.split(";"), erp_row("240399", **cells).split(";"), strict=True))
    path = folder / "faktura.csv"
    with path.open("w", encoding="cp1252", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerows([ERP_HEADER.split(";"), *(r.split(";") for r in rows), bad.values()])
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    return _only_message(prepare(read_table(path, mapping.read), mapping), row)


def _only_message(prepared: object, row: int) -> str:
    problems = [p for p in prepared.problems if p.row == row]  # type: ignore[attr-defined]
    assert len(problems) == 1, problems
    return problems[0].message if problems[0].severity == "skipped" else str(problems[0])


def _mapping(folder: Path, text: str) -> object:
    path = folder / "m.toml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


def _duplicate(folder: Path) -> str:
    rows = [erp_row("240301"), erp_row("240302"), erp_row("240303"), erp_row("240302")]
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    prepared = prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping)
    return _only_message(prepared, 5)


def _duplicate_with_other_dates(folder: Path) -> str:
    rows = [erp_row(f"2403{n:02}") for n in range(1, 13)]
    rows.append(erp_row("240302", Fakturadato="01.04.2024", Forfallsdato="15.04.2024"))
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    prepared = prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping)
    return _only_message(prepared, 14)


def _zeros_dropped(folder: Path) -> str:
    # One invoice exported twice: the same address; only the number's zeros differ.
    email = {"email": "kunde781@example.no"}
    rows = [erp_row("000781", **email), erp_row("240302"), erp_row("781", **email)]
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    prepared = prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping)
    return _only_message(prepared, 4)


def _unsaved_formula(folder: Path) -> str:
    """A workbook written by openpyxl, whose row 3 reads its customer number from a formula."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(ERP_HEADER.split(";"))
    for number in ("240301", "240302"):
        sheet.append(erp_row(number).split(";"))
    sheet["G3"] = "=A2&B2"
    book.save(folder / "faktura.xlsx")
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    return _only_message(prepare(read_table(folder / "faktura.xlsx"), mapping), 3)


def _kid_typed(folder: Path, row: int, kid: int) -> str:
    """What filedrop says about row ``row`` of an ERP workbook whose KIDs are typed as numbers:
    a 10-digit one on the rows above it, ``kid`` on it."""
    rows = [erp_row(f"2403{n:02d}") for n in range(2, row + 1)]
    typed: dict[str, object] = {f"F{n}": 1234567897 for n in range(2, row)}
    path = write_erp_workbook(folder / "faktura.xlsx", rows, typed={**typed, f"F{row}": kid})
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    return _only_message(prepare(read_table(path, mapping.read), mapping), row)


def _date_typed(folder: Path, row: int, value: int) -> str:
    """What filedrop says about row ``row`` of an ERP workbook whose due date there is the
    number ``value``, typed into the cell."""
    rows = [erp_row(f"2403{n:02d}") for n in range(2, row + 1)]
    path = write_erp_workbook(folder / "faktura.xlsx", rows, typed={f"C{row}": value})
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    return _only_message(prepare(read_table(path, mapping.read), mapping), row)


def _decimal_points(folder: Path, row: int) -> str:
    """An ERP CSV whose row ``row`` holds 1.250 and the row after it 99.50: written with decimal
    points, read with the mapping's points between thousands."""
    rows = [erp_row(f"2403{n:02d}") for n in range(2, row)]
    rows += [erp_row("240398", amount="1.250"), erp_row("240399", amount="99.50")]
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    return _only_message(
        prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping), row
    )


def _short_line(folder: Path, row: int) -> str:
    """The first thing said of row ``row`` of an ERP CSV, whose line lacks its due date."""
    header = ERP_HEADER.split(";")
    fields = erp_row("240399").split(";")
    del fields[header.index("Forfallsdato")]
    rows = [erp_row(f"2403{n:02d}") for n in range(2, row)] + [";".join(fields)]
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    prepared = prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping)
    return str(next(p for p in prepared.problems if p.row == row))


def _owing_more(folder: Path, row: int) -> str:
    """An ERP CSV with a Restbeløp column the claim reads, which on row ``row`` owes more than
    that invoice's Beløp."""
    rows = [f"{erp_row(f'2403{n:02d}')};1 234,50" for n in range(2, row)]
    rows.append(f"{erp_row('240399', amount='980,00')};9 800,00")
    text = (MAPPINGS / "norwegian-erp.toml").read_text(encoding="utf-8")
    mapping = _mapping(
        folder, text.replace('remainingAmount = "Beløp"', 'remainingAmount = "Restbeløp"')
    )
    path = _csv(folder, f"{ERP_HEADER};Restbeløp", rows)
    return _only_message(prepare(read_table(path, mapping.read), mapping), row)


def _paid_unread(folder: Path, row: int) -> str:
    """An ERP CSV with an Innbetalt column the shipped mapping leaves unread, in which row
    ``row`` shows a payment (the rows before it show none)."""
    rows = [f"{erp_row(f'2403{n:02d}')};0,00" for n in range(2, row)]
    rows.append(f"{erp_row('240399')};1 000,00")
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    path = _csv(folder, f"{ERP_HEADER};Innbetalt", rows)
    return _only_message(prepare(read_table(path, mapping.read), mapping), row)


OPEN_ITEMS_HEADER = (
    "Fakturanr;Fakturadato;Forfall;Kunde;Org.nr/Personnr;Adresse;Postnr;Poststed;Beløp"
)


def _not_due_yet(folder: Path) -> str:
    """An invoice due on 20.12.2026, read on 07.12.2026."""
    rows = [erp_row("240302"), erp_row("240399", Forfallsdato="20.12.2026")]
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    table = read_table(_csv(folder, ERP_HEADER, rows), mapping.read)
    return _only_message(prepare(table, mapping, today=dt.date(2026, 12, 7)), 3)


def _open_items(folder: Path, row: int, **cells: str) -> str:
    """What filedrop says about line ``row`` of an open-items CSV (full names, one id column)."""
    good = {
        "Fakturanr": "1",
        "Fakturadato": "01.03.2024",
        "Forfall": "15.03.2024",
        "Kunde": "Bygg AS",
        "Org.nr/Personnr": "988077917",
        "Adresse": "Vei 1",
        "Postnr": "5003",
        "Poststed": "Bergen",
        "Beløp": "100,00",
    }
    names = OPEN_ITEMS_HEADER.split(";")
    rows = [";".join({**good, "Fakturanr": str(n)}[h] for h in names) for n in range(2, row)]
    rows.append(";".join({**good, "Fakturanr": "99", **cells}[h] for h in names))
    text = OPEN_ITEMS_MAPPING.replace('emails = "K"\n', "").replace(
        "[read]", '[read]\ndelimiter = ";"'
    )
    mapping = _mapping(folder, text)
    path = _csv(folder, OPEN_ITEMS_HEADER, rows)
    return _only_message(prepare(read_table(path, mapping.read), mapping), row)  # type: ignore[arg-type]


def _refused(folder: Path, change: Callable[[str], str]) -> str:
    """The sentence that refuses the README's whole mapping, changed, saved as mappings/erp.toml."""
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "mappings" / "erp.toml").write_text(change(WHOLE), encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mapping(Path("mappings/erp.toml"))
    return str(err.value)


def _no_mapping_fits(folder: Path) -> str:
    (folder / "inbox").mkdir()
    (folder / "inbox" / "mars.csv").write_text("Nr;Beløp\n1;2\n", encoding="utf-8")
    with pytest.raises(MappingError) as err:
        select_mapping(load_mappings(MAPPINGS), Path("inbox/mars.csv"), read_table)
    return str(err.value)


def _missing_column(folder: Path) -> str:
    (folder / "mappings").mkdir()
    (folder / "mappings" / "erp.toml").write_text(WHOLE, encoding="utf-8")
    wb = openpyxl.Workbook()
    wb.active.append(["Fakturanr", "Fakturadato", "Forfall", "Beløp", "Valuta"])
    wb.active.append(["1", "01.03.2024", "15.03.2024", 100, "NOK"])
    wb.save(folder / "januar.xlsx")
    mapping = load_mapping(Path("mappings/erp.toml"))
    with pytest.raises(MappingError) as err:
        prepare(read_table(Path("januar.xlsx"), mapping.read), mapping)
    return str(err.value)


def _moved_header(folder: Path) -> str:
    """Two exports in one file, the second with its date columns the other way round."""
    second = ERP_HEADER.replace("Fakturadato;Forfallsdato", "Forfallsdato;Fakturadato")
    rows = [erp_row("240301"), second, erp_row("240302")]
    mapping = load_mapping(MAPPINGS / "norwegian-erp.toml")
    with pytest.raises(ReadError) as err:
        prepare(read_table(_csv(folder, ERP_HEADER, rows), mapping.read), mapping)
    return err.value.detail


CASES: dict[str, Callable[[Path], str]] = {
    'row 3 is a header again, with its columns in other places ("Forfallsdato" stands under '
    '"Fakturadato"; "Fakturadato" stands under "Forfallsdato"): two exports were put into one '
    "file, and the rows below it would be read under the first header's columns; send each "
    "export as a file of its own": _moved_header,
    "row 9: Fornavn is empty (a PRIVATE debtor needs a first name)": lambda d: _row_message(
        d, 9, Fornavn=""
    ),
    "row 10: Etternavn is empty (a COMPANY debtor needs its name)": lambda d: _row_message(
        d, 10, Kundetype="B", Fødselsnr="", Orgnr="923609016", Etternavn=""
    ),
    'row 6: Beløp "-1 250,00" is not a positive amount (it must be more than 0)': lambda d: (
        _row_message(d, 6, Beløp="-1 250,00")
    ),
    'row 8: Beløp "1.250" reads with a point between thousands, as [read] thousands says, but '
    'row 9 ("99.50") shows the point to be a decimal one, and then this amount is another: '
    "filedrop does not guess; have the export write every amount one way (1.234,50)": lambda d: (
        _decimal_points(d, 8)
    ),
    "row 3: the line has 16 of the header's 17 fields: if the missing one is not the last, the "
    "values after it stand under the wrong columns, which may be what this row's other problems "
    "are; correct the line in the export": lambda d: _short_line(d, 3),
    'row 7: Restbeløp "9 800,00" is more than Beløp "980,00", the invoice\'s amount: the debtor '
    "would be asked for more than was invoiced; correct it in the export (or, if Beløp is not "
    "the invoice's whole amount, map originalInvoiceAmount from the column that is)": lambda d: (
        _owing_more(d, 7)
    ),
    'row 4: Innbetalt "1 000,00" shows a payment on this invoice, but its claims add up to '
    "1234.50, more than its amount less that payment (234.50), so it would go to collection for "
    "what was paid: export the amount still owed and read it as a claim's remainingAmount, or "
    'name "Innbetalt" in [match] unread if it is not a payment on this invoice': lambda d: (
        _paid_unread(d, 4)
    ),
    'row 14: Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy or dd.mm.yy)': lambda d: (
        _row_message(d, 14, Forfallsdato="31.02.2024")
    ),
    'row 15: Forfallsdato "15.03.2124" reads as 2124-03-15, outside the years 1970 to 2099 that a '
    "claim's dates fall in; correct it in the export": lambda d: _row_message(
        d, 15, Forfallsdato="15.03.2124"
    ),
    'row 16: Forfallsdato "0" is a number that is no day: a date column counts days from 1 '
    "(01.01.1900) to 2958465 (31.12.9999); correct it in the export": lambda d: _date_typed(
        d, 16, 0
    ),
    'row 3: Forfallsdato "28.02.2024" is before Fakturadato "01.03.2024" (the due date cannot be '
    "before the invoice date)": lambda d: _row_message(d, 3, Forfallsdato="28.02.2024"),
    'row 2: Valuta "NKO" is not an ISO 4217 currency code (such as NOK or EUR)': lambda d: (
        _row_message(d, 2, Valuta="NKO")
    ),
    'row 5: Beløp "USD 100" is in USD, but the invoice\'s currency is NOK; only the number would '
    "be sent, in NOK": lambda d: _row_message(d, 5, Beløp="USD 100"),
    'row 7: Fødselsnr "090679*****" is not a valid fødselsnummer or D-number (expected 11 digits '
    "with correct check digits)": lambda d: _row_message(d, 7, Fødselsnr="09067912345"),
    'row 4: Orgnr "988077918" is not a valid organisation number (expected 9 digits with a correct '
    "check digit)": lambda d: _row_message(d, 4, Kundetype="B", Fødselsnr="", Orgnr="988077918"),
    'row 8: KID "104662403073" is not a valid KID (expected 2 to 25 digits ending in a mod 10 or '
    "mod 11 check digit)": lambda d: _row_message(d, 8, KID="104662403073"),
    'row 3: KID "12345674" is a number of 8 digits, where the column\'s longest KID (row 2) has '
    "10, and Excel drops the leading zeros of a number; format the column as Text in Excel and "
    "type the KIDs again, or add pad = 10 to invoice.ocrReferenceNumber in the mapping if every "
    "KID has 10 digits": lambda d: _kid_typed(d, 3, 12345674),
    'row 4: KID "12345678901234600000" is a number of 20 digits, and Excel keeps only the first 15 '
    "digits of a number, so the others are lost; format the column as Text in Excel and type the "
    "value again": lambda d: _kid_typed(d, 4, 12345678901234567890),
    'row 9: E-post "kari.example.no" is not an email address': lambda d: _row_message(
        d, 9, **{"E-post": "kari.example.no"}
    ),
    'row 12: Mobil "12 34" is not a phone number (numbers without a + country code are read as '
    "NO)": lambda d: _row_message(d, 12, Mobil="12 34"),
    'row 4: Mobil "31.02.2024" is not a phone number (it reads as a date)': lambda d: _row_message(
        d, 4, Mobil="31.02.2024"
    ),
    'row 4: Postnr "NO-0150" is not a Norwegian postal code (4 digits), and the address goes '
    "with countryCode NO; correct it in the export, or map countryCode from a column if the "
    "address is abroad": lambda d: _row_message(d, 4, Postnr="NO-0150"),
    'row 5: Kundetype "X" is not one of P, B (the values the mapping knows)': lambda d: (
        _row_message(d, 5, Kundetype="X")
    ),
    # As a terminal shows it: the control character escaped.
    'row 3: Fornavn "Bj\\x07rn" holds a control character (U+0007), which no letter can show; '
    "remove it in the export": lambda d: printable(_row_message(d, 3, Fornavn="Bj\x07rn")),
    'row 4: Fakturanr "2403\\n01" holds a line break, which an invoice number cannot have '
    "(filedrop does not guess which number was meant); remove it in the export": lambda d: (
        printable(_quoted_row_message(d, 4, Fakturanr="2403\n01"))
    ),
    # With rule text off, the Excel error itself is not said; that the amount is missing is.
    'row 2: Beløp "#N/A" gives no value, and the invoice needs an amount': lambda d: _row_message(
        d,
        2,
        (MAPPINGS / "norwegian-erp.toml")
        .read_text(encoding="utf-8")
        .replace("[rules]", '[rules]\ntext = "off"', 1),
        Beløp="#N/A",
    ),
    "row 5: invoice number 240302 already appears on row 3": _duplicate,
    "row 4: invoice number 781 (as 000781: the same number but for zeros in front, which a "
    "spreadsheet program drops) already appears on row 2": _zeros_dropped,
    "row 14: invoice number 240302 already appears on row 3, with other values in Fakturadato "
    "and Forfallsdato: this row is not sent, and that row says what became of the "
    "invoice": _duplicate_with_other_dates,
    'row 5: Etternavn "Berg" differs from row 4 of the same invoice ("Kristiansen"); the rows of '
    "one invoice must agree on it": lambda d: _row_message(
        d,
        5,
        (MAPPINGS / "norwegian-erp.toml").read_text(encoding="utf-8")
        + '\n[group]\nby = "Fakturanr"\n',
        # Row 4's invoice on a second line, with all of row 4's values but the last name.
        Fakturanr="240304",
        Fødselsnr=national_id(240304 % 50),
        Etternavn="Berg",
        **{"E-post": "kunde240304@example.no"},
    ),
    'rule skip.credit_notes: Beløp "-500,00" is 0 or less': lambda d: _row_message(
        d,
        4,
        (MAPPINGS / "norwegian-erp.toml").read_text(encoding="utf-8")
        + '\n[skip]\ncredit_notes = { column = "Beløp", at_most = 0 }\n',
        Beløp="-500,00",
    ),
    'row 3: Kundenr holds the formula "=A2&B2", whose result Excel or LibreOffice never '
    "calculated and saved (the file was written by another program), so it has no value; open "
    "the file in Excel or LibreOffice and save it, then drop it again": _unsaved_formula,
    'rule skip.not_due: Forfallsdato "20.12.2026" has not passed on 07.12.2026: the invoice is '
    "not overdue yet, and is not sent": _not_due_yet,
    'rule skip.totals: Kunde "Sum" marks a totals row': lambda d: _open_items(
        d, 5, Fakturanr="", Kunde="Sum"
    ),
    'row 6: Org.nr/Personnr "123456**" is neither an organisation number (9 digits) nor a '
    "fødselsnummer (11 digits), so the debtor type cannot be told": lambda d: _open_items(
        d, 6, **{"Org.nr/Personnr": "12345678"}
    ),
    'row 7: Kunde "Kari" holds one name only (a PRIVATE debtor needs a first and a last name: '
    '"Etternavn, Fornavn")': lambda d: _open_items(
        d, 7, Kunde="Kari", **{"Org.nr/Personnr": national_id(1)}
    ),
    "inbox/mars.csv: no mapping fits this file: example.toml takes only files named "
    'apne-poster*.xlsx, åpne-poster*.xlsx; norwegian-erp.toml needs column "Fakturanr" (key '
    '"match.headers"); tripletex.toml takes only files named tripletex*.xlsx; visma.toml takes '
    "only files named visma*.csv (the file's headers: Nr, Beløp).": _no_mapping_fits,
    'mappings/erp.toml: key "invoice.dueDate" names column "Forfallsdato", which januar.xlsx does '
    "not have (its headers: Fakturanr, Fakturadato, Forfall, Beløp, Valuta); fix the header or add "
    'the name to "names".': _missing_column,
    'mappings/erp.toml: key "read.delimter" is not a known option (did you mean "delimiter"?).': (
        lambda d: _refused(d, lambda t: t.replace("delimiter =", "delimter ="))
    ),
    'mappings/erp.toml: key "rules.email" is "warn"; use "error", "warning" or "off".': (
        lambda d: _refused(d, lambda t: t.replace('phone = "warning"', 'email = "warn"'))
    ),
    'mappings/erp.toml: key "invoice.dueDate" is missing; the API needs a due date (e.g. dueDate = '
    '"<column>").': lambda d: _refused(d, lambda t: t.replace('dueDate = "Forfallsdato"\n', "")),
    'mappings/erp.toml: key "read.dates" has "dd.mm.åååå", which is not a date format (use dd, mm, '
    'yyyy or yy with . - / or a space between them, like "dd.mm.yyyy").': lambda d: _refused(
        d, lambda t: t.replace('["dd.mm.yyyy"]', '["dd.mm.åååå"]')
    ),
    'mappings/erp.toml: key "invoice.type" is "NOTCE", which is not an invoice type filedrop knows '
    "(NOTICE, PAYMENT_REMINDER); fix it, or add it to the setting FILEDROP_INVOICE_TYPES if Amili "
    "takes it.": lambda d: _refused(d, lambda t: t.replace('"NOTICE"', '"NOTCE"', 1)),
    'mappings/erp.toml: key "debtor.type.map.Privat" is "PRIVAT", which is not a debtor type; use '
    "PRIVATE or COMPANY.": lambda d: _refused(
        d, lambda t: t.replace('P = "PRIVATE"', 'Privat = "PRIVAT"')
    ),
    'mappings/erp.toml: key "skip.credit_notes" needs a column and one of "is" or "at_most", like '
    '{ column = "Fakturanr", is = ["", "Sum"] }.': lambda d: _refused(
        d, lambda t: t + '\n[skip]\ncredit_notes = { column = "Beløp" }\n'
    ),
}


def test_every_example_message_in_the_readme_is_checked_here() -> None:
    """The README shows no message this file does not run, and this file runs no message the
    README does not show."""
    assert documented_messages() == set(CASES)


@pytest.mark.parametrize("message", list(CASES))
def test_the_readme_message_is_what_filedrop_says(
    message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each example message, produced by running its case."""
    monkeypatch.chdir(tmp_path)
    assert CASES[message](tmp_path) == message


def test_the_readme_points_only_at_files_the_repository_has() -> None:
    """Every link and every example file it names exists; nothing outside the repository."""
    links = re.findall(r"\]\(([^)#]+)\)", README)
    named = re.findall(r"`(inbox-example/[^`\s]+)`", README)
    named += [f"mappings/{m}" for m in re.findall(r"^- `([\w-]+\.toml)`", README, flags=re.M)]
    assert named  # the shipped examples are named
    missing = [
        p for p in [*links, *named] if not (ROOT / p).exists() and not (MAPPINGS / p).exists()
    ]
    assert missing == []
    assert "shared/" not in README and "amili-api.md" not in README
