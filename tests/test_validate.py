"""prepare(): each rule with a good and a bad value, grouping, pass-through, each row's fate."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import re
import threading
import unicodedata
import warnings
import zipfile
from bisect import bisect_right
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from builders import ERP_HEADER, erp_row, write_erp_csv, write_erp_workbook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.no import fodselsnummer, orgnr

from filedrop.errors import MappingError, ReadError
from filedrop.mapping import Mapping, load_mapping, load_mappings, select_mapping
from filedrop.mapping import prepare as prepare_module
from filedrop.mapping.payload import invoice_rows
from filedrop.mapping.prepare import Prepared, Problem, Rejection, payloads, prepare
from filedrop.memory import no_cyclic_gc
from filedrop.read import ReadInfo, Table, read_table
from filedrop.states import ExitCode, RowStatus, exit_code_for

ROOT = Path(__file__).resolve().parent.parent
ERP = load_mapping(ROOT / "mappings" / "norwegian-erp.toml")
ERP_TEXT = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
HEADERS = [
    "Fakturanr",
    "Fakturadato",
    "Forfallsdato",
    "Beløp",
    "Valuta",
    "KID",
    "Kundenr",
    "Kundetype",
    "Fornavn",
    "Etternavn",
    "Fødselsnr",
    "Orgnr",
    "E-post",
    "Mobil",
    "Adresse",
    "Postnr",
    "Poststed",
]


@cache
def fnr(day: int, month: int, year: int) -> str:
    """A synthetic fødselsnummer with valid check digits."""
    for serial in range(100, 500):
        base = f"{day:02d}{month:02d}{year % 100:02d}{serial:03d}"
        k1 = fodselsnummer.calc_check_digit1(base)
        k2 = fodselsnummer.calc_check_digit2(base + k1) if len(k1) == 1 else "xx"
        if len(k2) == 1 and fodselsnummer.is_valid(base + k1 + k2):
            return base + k1 + k2
    raise AssertionError("no id")


def org(seed: int) -> str:
    """A synthetic organisation number with a valid check digit."""
    bases = (f"9{s:07d}" for s in range(seed, seed + 20))
    return next(b + d for b in bases for d in "0123456789" if orgnr.is_valid(b + d))


PERSON = fnr(12, 4, 1985)


#: A note pasted into the amount column: shown by its start and end, so the reason still shows.
NOTE = "1 234,50" + " see the note" * 3000


def row(**cells: str) -> dict[str, str]:
    """One valid ERP row; keyword arguments (header names with _ for spaces/ø) replace cells."""
    good = {
        "Fakturanr": "240301", "Fakturadato": "01.03.2024", "Forfallsdato": "15.03.2024",
        "Beløp": "4 500,00", "Valuta": "NOK", "KID": "", "Kundenr": "10411", "Kundetype": "P",
        "Fornavn": "Åse", "Etternavn": "Kristiansen", "Fødselsnr": PERSON, "Orgnr": "",
        "E-post": "ase@example.no", "Mobil": "912 34 567", "Adresse": "Storgata 12",
        "Postnr": "0155", "Poststed": "Oslo",
    }  # fmt: skip
    return good | cells


def table(
    rows: list[dict[str, Any]], *, headers: list[str] = HEADERS, excel: bool = False, first: int = 2
) -> Table:
    """A Table as read.py makes it: text cells, and for Excel the typed values beside them."""
    values = pd.DataFrame(
        {i: [r.get(h, "") for r in rows] for i, h in enumerate(headers)}, dtype=object
    )
    cells = values.map(_as_seen) if excel else values
    return Table(
        path=Path("mars.xlsx" if excel else "mars.csv"), headers=list(headers), cells=cells,
        values=values if excel else cells, row_numbers=np.arange(first, first + len(rows)),
        info=ReadInfo(kind="excel" if excel else "csv"),
    )  # fmt: skip


def _as_seen(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date):
        return value.isoformat()[:10]
    return str(value)


def run(rows: list[dict[str, Any]], mapping: Mapping = ERP, **kw: Any) -> Prepared:
    return prepare(table(rows, **kw), mapping)


def messages(prepared: Prepared) -> list[str]:
    return [str(p) for p in prepared.problems]


def custom(tmp_path: Path, text: str) -> Mapping:
    path = tmp_path / "custom.toml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


def row_file(
    tmp_path: Path,
    rows: list[dict[str, Any]],
    *,
    headers: list[str] = HEADERS,
    excel: bool = False,
    typed: dict[str, dict[str, object]] | None = None,
) -> Path:
    """``rows`` in a real file: a UTF-8 semicolon CSV (cells with line breaks quoted, as Excel
    saves them), or a workbook keeping dates as date cells; ``typed``: per column, cells written
    there as other values (numbers, as a spreadsheet holds them)."""
    if excel:
        path = tmp_path / "mars.xlsx"
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.append(headers)
        for cells in rows:
            shown = {h: (typed or {}).get(h, {}).get(v, v) for h, v in cells.items()}
            sheet.append([None if shown.get(h, "") == "" else shown[h] for h in headers])
        book.save(path)
    else:
        path = tmp_path / "mars.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(headers)
            writer.writerows([cells.get(h, "") for h in headers] for cells in rows)
    return path


def written(tmp_path: Path, rows: list[dict[str, Any]], *, excel: bool = False) -> Table:
    """``rows`` in a real file (``row_file``), read back as every run reads it."""
    return read_table(row_file(tmp_path, rows, excel=excel), ERP.read)


def assert_every_row_once(prepared: Prepared) -> None:
    sent = [r for inv in prepared.invoices for r in inv.rows]
    assert sorted(sent + list(prepared.rejected)) == list(range(len(prepared.table)))


# --- the JSON -------------------------------------------------------------------------------------


def test_a_good_row_becomes_the_invoice_json() -> None:
    """Every field of the Invoice comes out converted: amounts, dates, E.164, padded zip."""
    prepared = run([row(Postnr="155")])
    assert prepared.rejected == {} and prepared.problems == []
    (invoice,) = prepared.invoices
    assert (invoice.invoice_number, invoice.rows) == ("240301", (0,))
    assert invoice.payload == {
        "type": "NOTICE",
        "invoiceNumber": "240301",
        "originalInvoiceAmount": 4500.0,
        "currency": "NOK",
        "invoiceDate": "2024-03-01T00:00:00Z",
        "dueDate": "2024-03-15T00:00:00Z",
        "uniqueSourceInvoiceId": "10411-240301",
        "description": "Faktura 240301",
        "debtors": [
            {
                "type": "PRIVATE",
                "firstname": "Åse",
                "lastname": "Kristiansen",
                "customerNumber": "10411",
                "identificationNumber": PERSON,
                "emails": [{"value": "ase@example.no"}],
                "phoneNumbers": [{"value": "+4791234567", "countryCode": "NO"}],
                "addresses": [
                    {
                        "street": "Storgata 12",
                        "zipCode": "0155",
                        "city": "Oslo",
                        "countryCode": "NO",
                    }
                ],
            }
        ],
        "claims": [{"type": "PRINCIPAL", "remainingAmount": 4500.0, "description": "Hovedstol"}],
    }


def test_empty_optional_cells_leave_fields_out() -> None:
    """No KID, no phone, no address: those keys are absent, never null."""
    (invoice,) = run([row(Mobil="", Adresse="", Postnr="", Poststed="", **{"E-post": ""})]).invoices
    debtor = invoice.payload["debtors"][0]
    assert "ocrReferenceNumber" not in invoice.payload
    assert {"emails", "phoneNumbers", "addresses"}.isdisjoint(debtor)


def test_company_takes_the_organisation_number_and_value_map() -> None:
    """Kundetype B maps to COMPANY; an empty Fødselsnr falls back to Orgnr."""
    company = org(1234567)
    (invoice,) = run(
        [
            row(
                Kundetype="b",
                Fornavn="",
                Etternavn="Bølgen Bygg AS",
                Orgnr=company,
                Fødselsnr="",
            )
        ]
    ).invoices
    debtor = invoice.payload["debtors"][0]
    assert (debtor["type"], debtor["identificationNumber"], "firstname" in debtor) == (
        "COMPANY",
        company,
        False,
    )


def test_an_invoice_number_excel_shortened_to_scientific_notation_is_not_sent() -> None:
    """ "1,23457E+15" (a CSV Excel saved) or "1.23456789012346e+16" (a long number in a cell)
    lost digits: sent, the invoice went out under a number nobody has, and the next invoice
    that shortens to the same text was held back as already sent."""
    prepared = run(
        [row(Fakturanr="1,23457E+15"), row(Fakturanr="240302"), row(Fakturanr="1.2e+16")]
    )
    assert [invoice.invoice_number for invoice in prepared.invoices] == ["240302"]
    assert messages(prepared) == [
        f'row {n}: Fakturanr "{shown}" is a number Excel shortened to scientific notation, and '
        "its last digits are lost; format the column as text in Excel and export it again"
        for n, shown in ((2, "1,23457E+15"), (4, "1.2e+16"))
    ]
    assert_every_row_once(prepared)


def test_national_id_that_lost_its_leading_zero_is_restored() -> None:
    """An id exported as a number (10 digits) gets its zero back and passes the check."""
    person = fnr(3, 11, 1972)
    (invoice,) = run([row(Fødselsnr=person[1:])]).invoices
    assert invoice.payload["debtors"][0]["identificationNumber"] == person


def test_two_emails_in_one_cell_become_two_email_objects() -> None:
    """A cell with "a; b" sends both addresses."""
    (invoice,) = run([row(**{"E-post": "mari@example.no, mari@strom.example.no"})]).invoices
    assert invoice.payload["debtors"][0]["emails"] == [
        {"value": "mari@example.no"},
        {"value": "mari@strom.example.no"},
    ]


def test_excel_typed_amounts_and_dates_need_no_text_parsing() -> None:
    """Numbers and dates typed in Excel are taken as they are; text cells follow the mapping."""
    rows = [
        row(
            Beløp=1234.5,
            Fakturadato=dt.datetime(2024, 3, 1),
            Forfallsdato="15.03.2024",
            Postnr=155.0,
        )
    ]
    (invoice,) = run(rows, excel=True).invoices
    assert invoice.payload["originalInvoiceAmount"] == 1234.5
    assert invoice.payload["invoiceDate"] == "2024-03-01T00:00:00Z"
    assert invoice.payload["debtors"][0]["addresses"][0]["zipCode"] == "0155"


def test_unknown_fields_pass_through_unchanged(tmp_path: Path) -> None:
    """Fields filedrop does not know reach the JSON as the mapping says, objects too."""
    text = (
        (ROOT / "mappings" / "norwegian-erp.toml")
        .read_text(encoding="utf-8")
        .replace(
            "[debtor]\n",
            'collectionChannel = { constant = "EMAIL" }\npriority = 2\nreference = "Kundenr"\n'
            'reminderDate = { column = "Fakturadato", as = "date" }\n'
            '[invoice.metadata]\nsource = { constant = "erp" }\nbatchNo = '
            '{ template = "B-{Fakturanr}" }\n\n[debtor]\n',
            1,
        )
    )
    (invoice,) = run([row()], custom(tmp_path, text)).invoices
    p = invoice.payload
    assert (p["collectionChannel"], p["priority"], p["reference"]) == ("EMAIL", 2, "10411")
    assert p["reminderDate"] == "2024-03-01T00:00:00Z"
    assert p["metadata"] == {"source": "erp", "batchNo": "B-240301"}


# --- the rules, each with a good and a bad value --------------------------------------------------


@pytest.mark.parametrize(
    ("amounts", "sent"),
    [
        (["12,500", "3,000", "1,250"], None),  # whole kroner, commas between thousands
        (["12,500", "3,50"], [12.5, 3.5]),  # the column shows its comma to be a decimal one
        (["12,500", "1 250,000"], [12.5, 1250.0]),  # grouped by the thousands separator
        (["kr 12,500", "3,000 NOK"], None),  # the currency changes nothing
        (["12,500", "12,5"], [12.5, 12.5]),
    ],
)
def test_three_decimals_are_read_as_such_only_where_the_column_shows_the_mark_is_decimal(
    amounts: list[str], sent: list[float] | None
) -> None:
    """Under a decimal comma, "12,500" is how an export of whole kroner writes 12 500 with a
    comma between thousands: sent, it went a thousand times too small. It is read as 12,5 only
    beside an amount whose comma can only be a decimal one."""
    prepared = run([row(Fakturanr=f"A-{n}", Beløp=a) for n, a in enumerate(amounts)])
    assert_every_row_once(prepared)
    if sent is None:
        assert prepared.invoices == []
        assert all("has three digits after the decimal comma" in m for m in messages(prepared))
        assert len(messages(prepared)) == len(amounts)
    else:
        assert [i.payload["originalInvoiceAmount"] for i in prepared.invoices] == sent


@pytest.mark.parametrize(
    ("amounts", "refused"),
    [
        # Written with decimal points, read with the mapping's points between thousands.
        (["1.250", "99.50"], {0: "99.50", 1: None}),
        (["1.250", "-2.500", "1250.00"], {0: "1250.00", 1: "1250.00", 2: None}),
        (["kr 1.250", "0.5"], {0: "0.5", 1: None}),
        (["1.250", ".50"], {0: ".50", 1: None}),  # decimals without a whole part, as Oracle's
        (["1.250", "1.250,50"], {}),  # points between thousands, as the mapping says
        # Points that can only be between thousands: with a decimal comma, or more than one.
        (["1.250,00", "2.500.000", "0.5"], {2: None}),
        (["1.250", "15.03.2024"], {1: None}),  # a date is no amount, and no evidence of one
    ],
)
def test_a_point_between_thousands_is_refused_where_the_column_shows_decimal_points(
    amounts: list[str], refused: dict[int, str | None]
) -> None:
    """The mapping reads 1.250 with a point between thousands (norwegian-erp's thousands = [" ",
    "."]), but an export written with decimal points holds 1.250 for 1,25 kroner: it went out
    as 1250, a thousand times the debt, beside 99.50 refused as no amount. Where another amount
    of the column shows the point to be a decimal one, an amount grouped by points is refused,
    naming that row; the others say what they are as before (None)."""
    prepared = run([row(Fakturanr=f"A-{n}", Beløp=a) for n, a in enumerate(amounts)])
    assert_every_row_once(prepared)
    problems = {int(m.split(":")[0].removeprefix("row ")) - 2: m for m in messages(prepared)}
    assert problems.keys() == refused.keys()
    for at, evidence in refused.items():
        if evidence is None:
            assert "is not an amount" in problems[at]
            continue
        evidence_row = amounts.index(evidence) + 2
        assert problems[at] == (
            f'row {at + 2}: Beløp "{amounts[at]}" reads with a point between thousands, as '
            f'[read] thousands says, but row {evidence_row} ("{evidence}") shows the point to '
            "be a decimal one, and then this amount is another: filedrop does not guess; have "
            "the export write every amount one way (1.234,50)"
        )


def test_a_long_file_reads_three_decimals_in_its_first_part_by_what_a_later_part_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prepared in parts, the first part's "12,500" is read as the whole column shows it (a
    decimal comma, in a later part's "7,50"), as one go would read it."""
    monkeypatch.setattr(prepare_module, "FIRST_PART_ROWS", 2)
    monkeypatch.setattr(prepare_module, "PART_ROWS", 2)
    amounts = ["12,500", "3,000", "1,000", "7,50"]
    rows = [row(Fakturanr=f"P-{n}", Beløp=a) for n, a in enumerate(amounts)]
    prepared = prepare(table(rows), ERP)
    assert messages(prepared) == []
    assert [i.payload["originalInvoiceAmount"] for i in prepared.invoices] == [12.5, 3, 1, 7.5]
    one_part = prepare(table(rows[:3]), ERP)
    assert len(one_part.problems) == 3


def test_a_long_file_refuses_a_point_between_thousands_by_what_a_later_part_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prepared in parts, the first part's "1.250" is refused by a later part's "99.50", which
    shows the point to be a decimal one, as one go would refuse it."""
    monkeypatch.setattr(prepare_module, "FIRST_PART_ROWS", 2)
    monkeypatch.setattr(prepare_module, "PART_ROWS", 2)
    amounts = ["1.250", "300", "100", "99.50"]
    rows = [row(Fakturanr=f"P-{n}", Beløp=a) for n, a in enumerate(amounts)]
    prepared = prepare(table(rows), ERP)
    assert [m.split(" reads ")[0] for m in messages(prepared)] == [
        'row 2: Beløp "1.250"',
        'row 5: Beløp "99.50" is not an amount (expected e.g. 1.234,50)',
    ]
    assert 'but row 5 ("99.50") shows the point' in messages(prepared)[0]
    assert [i.payload["originalInvoiceAmount"] for i in prepared.invoices] == [300, 100]


@pytest.mark.parametrize(
    ("cells", "problem"),
    [
        ({"Fakturanr": ""}, "row 2: Fakturanr is empty (the invoice needs an invoice number)"),
        (
            {"Forfallsdato": "31.02.2024"},
            'row 2: Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy or dd.mm.yy)',
        ),
        ({"Fakturadato": "29.02.2024", "Forfallsdato": "29.02.2024"}, None),
        (
            {"Forfallsdato": "28.02.2024"},
            'row 2: Forfallsdato "28.02.2024" is before Fakturadato "01.03.2024" (the due date '
            "cannot be before the invoice date)",
        ),
        ({"Forfallsdato": "01.03.24"}, None),
        (
            {"Beløp": "-1 250,00"},
            'row 2: Beløp "-1 250,00" is not a positive amount (it must be more than 0)',
        ),
        (
            {"Beløp": "0,00"},
            'row 2: Beløp "0,00" is not a positive amount (it must be more than 0)',
        ),
        ({"Beløp": "12,3456"}, 'row 2: Beløp "12,3456" has more than two decimals'),
        (
            {"Beløp": "12,500"},  # 12 500 kroner from an export with commas between thousands
            'row 2: Beløp "12,500" has three digits after the decimal comma, as a whole amount '
            "has after a separator between thousands, and no other amount in the column shows "
            "the comma to be a decimal one: filedrop does not guess; have the export write two "
            "decimals (1.234,50)",
        ),
        ({"Beløp": "1250,500"}, None),  # no thousands group has four digits before it
        ({"Beløp": "0,500"}, None),  # nor a lone 0
        ({"Beløp": "kr 1.234,50"}, None),
        ({"Beløp": "1 234,50 NOK"}, None),
        ({"Beløp": "€12", "Valuta": "EUR"}, None),
        (
            {"Beløp": "USD 100"},
            'row 2: Beløp "USD 100" is in USD, but the invoice\'s currency is NOK; only the number '
            "would be sent, in NOK",
        ),
        (
            {"Beløp": "100 SEK", "Valuta": ""},  # the mapping's default currency, NOK
            'row 2: Beløp "100 SEK" is in SEK, but the invoice\'s currency is NOK; only the number '
            "would be sent, in NOK",
        ),
        (
            {"Beløp": "kr 100", "Valuta": "kr"},  # one cause, said once
            'row 2: Valuta "kr" is not an ISO 4217 currency code (such as NOK or EUR)',
        ),
        (
            {"Beløp": "kr 100", "Valuta": "EUR"},
            'row 2: Beløp "kr 100" is in kr, but the invoice\'s currency is EUR; only the number '
            "would be sent, in EUR",
        ),
        ({"Beløp": "1.5"}, 'row 2: Beløp "1.5" is not an amount (expected e.g. 1.234,50)'),
        (
            {"Beløp": "9" * 400},
            f'row 2: Beløp "{"9" * 60}...{"9" * 30}" (400 characters) is too large to be an amount'
            " (at most 13 whole digits)",
        ),
        ({"Beløp": "9 999 999 999 999,99"}, None),  # 15 digits: one JSON number exactly
        (
            {"Beløp": "99999999999999999999,99"},  # sent, it would have been 1e+20
            'row 2: Beløp "99999999999999999999,99" is too large to be an amount (at most 13 '
            "whole digits)",
        ),
        (
            {"Beløp": NOTE},
            f'row 2: Beløp "{NOTE[:60]}...{NOTE[-30:]}" (39,008 characters) is not an amount '
            "(expected e.g. 1.234,50)",
        ),
        ({"E-post": "x" * 120}, f'row 2: E-post "{"x" * 120}" is not an email address'),
        ({"Beløp": ""}, "row 2: Beløp is empty (the invoice needs an amount)"),
        (
            {"Valuta": "NKO"},
            'row 2: Valuta "NKO" is not an ISO 4217 currency code (such as NOK or EUR)',
        ),
        ({"Valuta": "eur"}, None),
        ({"Valuta": ""}, None),  # the mapping's default, NOK
        ({"KID": "1234567897"}, None),
        (
            {"KID": "1234567890"},
            'row 2: KID "1234567890" is not a valid KID (expected 2 to 25 digits ending in a mod '
            "10 or mod 11 check digit)",
        ),
        # Zeros pass both check digits; an export's "no KID" is never sent as one.
        (
            {"KID": "00.00.0000"},
            'row 2: KID "00.00.0000" is only zeros, which is no KID; leave it empty if none',
        ),
        (
            {"KID": "0000000000-"},
            'row 2: KID "0000000000-" is only zeros, which is no KID; leave it empty if none',
        ),
        (
            {"KID": "-"},
            'row 2: KID "-" is not a valid KID (expected 2 to 25 digits ending in a mod 10 or '
            "mod 11 check digit)",
        ),
        (
            {"Fødselsnr": PERSON[:-1] + str((int(PERSON[-1]) + 1) % 10)},
            f'row 2: Fødselsnr "{PERSON[:6]}*****" is not a valid fødselsnummer or D-number '
            "(expected 11 digits with correct check digits)",
        ),
        ({"Fødselsnr": fnr(52, 4, 1985)}, None),  # a D-number: day + 40
        (
            # An organisation number in the wrong column: pad never touches 9 digits.
            {"Fødselsnr": "976986350"},
            'row 2: Fødselsnr "976986350" is an organisation number, but the debtor is PRIVATE '
            "(expected an 11-digit fødselsnummer or D-number)",
        ),
        (
            {"Fødselsnr": "1106631234"},  # a leading zero lost, and wrong check digits
            'row 2: Fødselsnr "110663****" padded to 11 digits is not a valid fødselsnummer or '
            "D-number",
        ),
        (
            {"Fødselsnr": "", "Orgnr": "988077917"},
            'row 2: Orgnr "988077917" is an organisation number, but the debtor is PRIVATE '
            "(expected an 11-digit fødselsnummer or D-number)",
        ),
        (
            {"Kundetype": "B", "Fødselsnr": "", "Orgnr": "988077918"},
            'row 2: Orgnr "988077918" is not a valid organisation number (expected 9 digits with '
            "a correct check digit)",
        ),
        ({"Kundetype": "B", "Fødselsnr": ""}, None),  # a company without an id is fine
        (
            {"Kundetype": "B"},
            f'row 2: Fødselsnr "{PERSON[:6]}*****" is a fødselsnummer, but the debtor is COMPANY '
            "(expected a 9-digit organisation number)",
        ),
        (
            {"Kundetype": "X"},
            'row 2: Kundetype "X" is not one of P, B (the values the mapping knows)',
        ),
        ({"Fornavn": ""}, "row 2: Fornavn is empty (a PRIVATE debtor needs a first name)"),
        ({"Kundetype": "B", "Fornavn": "", "Fødselsnr": ""}, None),
        ({"E-post": "kari.example.no"}, 'row 2: E-post "kari.example.no" is not an email address'),
    ],
)
def test_each_rule_names_the_column_and_the_value(
    cells: dict[str, str], problem: str | None
) -> None:
    """An error makes the row INVALID with one sentence; a good value passes unnoticed."""
    prepared = run([row(**cells)])
    assert_every_row_once(prepared)
    if problem is None:
        assert messages(prepared) == [] and len(prepared.invoices) == 1
    else:
        assert messages(prepared) == [problem]
        status, text = prepared.rejected[0]
        assert status is RowStatus.INVALID and text == problem.removeprefix("row 2: ")


def test_a_bad_phone_is_a_warning_in_the_erp_mapping() -> None:
    """The row is sent with the number as typed, and the problem is noted on the row."""
    prepared = run([row(Mobil="12 34")])
    assert [p.severity for p in prepared.problems] == ["warning"]
    assert prepared.notes == {
        0: 'Mobil "12 34" is not a phone number (numbers without a + country code are read as NO)'
    }
    assert prepared.invoices[0].payload["debtors"][0]["phoneNumbers"] == [{"value": "12 34"}]


def test_severity_error_warning_off(tmp_path: Path) -> None:
    """The same bad email: INVALID when error, sent and noted when warning, silent when off."""
    base = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    bad = [row(**{"E-post": "nope"})]
    for severity, sent, notes in (
        ("error", 0, {}),
        ("warning", 1, {0: 'E-post "nope" is not an email address'}),
        ("off", 1, {}),
    ):
        mapping = custom(
            tmp_path, base.replace('phone = "warning"', f'phone = "warning"\nemail = "{severity}"')
        )
        prepared = run(bad, mapping)
        assert (len(prepared.invoices), prepared.notes) == (sent, notes)
        assert len(prepared.problems) == (0 if severity == "off" else 1)


@pytest.mark.parametrize(
    ("excel", "phone", "shown"),
    [
        (False, "31.02.2024", "31.02.2024"),  # its digits were sent as +4731022024
        (False, "15.03.2024", "15.03.2024"),
        (False, "1/2/24", "1/2/24"),  # split on its "/" into three bad numbers
        (True, dt.datetime(2024, 2, 29), "2024-02-29"),  # an ERP's date cell in the phone column
        (True, dt.datetime(2024, 3, 15, 10, 30), "2024-03-15 10:30:00"),
    ],
)
def test_a_date_in_the_phone_column_is_not_a_phone_number(
    tmp_path: Path, excel: bool, phone: object, shown: str
) -> None:
    """A date is an invalid phone number under the phone rule, never its digits dialled: a
    warning in the ERP mapping (sent as typed, as any bad number), INVALID under "error"."""
    rows = [row(Mobil=phone), row(Fakturanr="240302", Mobil="912 34 567")]
    prepared = prepare(written(tmp_path, rows, excel=excel), ERP)
    message = f'Mobil "{shown}" is not a phone number (it reads as a date)'
    assert prepared.notes == {0: message}
    sent = [inv.payload["debtors"][0]["phoneNumbers"] for inv in prepared.invoices]
    assert sent == [[{"value": shown}], [{"value": "+4791234567", "countryCode": "NO"}]]
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    strict = custom(tmp_path, text.replace('phone = "warning"', 'phone = "error"'))
    prepared = prepare(written(tmp_path, rows, excel=excel), strict)
    assert prepared.rejected == {0: Rejection(RowStatus.INVALID, message)}
    assert [inv.invoice_number for inv in prepared.invoices] == ["240302"]


def test_a_phone_number_excel_shortened_is_one_value_said_so(tmp_path: Path) -> None:
    """A mobile number Excel wrote into a CSV as "9,12345E+07": split on its comma, it was two
    bad numbers ("9" and "12345E+07"), neither saying what happened (found by a hostile review
    of real exports). It is one, named as shortened, with what to do."""
    prepared = run([row(Mobil="9,12345E+07")], ERP)
    assert prepared.notes == {
        0: 'Mobil "9,12345E+07" is not a phone number (Excel shortened it to scientific '
        "notation, and its last digits are lost; format the column as Text in Excel and type "
        "the numbers again)"
    }


def test_a_fodselsnummer_that_lost_its_leading_zero_says_how_to_put_it_back(
    tmp_path: Path,
) -> None:
    """Without ``pad`` in the mapping, a fødselsnummer of 10 digits (Excel kept it as a number
    and dropped the 0 of a birthday on the 1st to the 9th) says that pad = 11 puts it back; any
    other wrong id keeps its plain sentence."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    unpadded = custom(
        tmp_path, text.replace('column = "Fødselsnr", pad = 11,', 'column = "Fødselsnr",')
    )
    lost = fnr(5, 4, 1985)[1:]
    prepared = run([row(Fødselsnr=lost)], unpadded)
    assert messages(prepared) == [
        f'row 2: Fødselsnr "{lost[:6]}****" is not a valid fødselsnummer or D-number (expected '
        "11 digits with correct check digits); if a spreadsheet dropped its leading zero, add "
        "pad = 11 to debtor.identificationNumber in the mapping"
    ]
    padded = run([row(Fødselsnr=lost)], ERP)  # the shipped mapping pads: the id goes
    assert messages(padded) == [] and len(padded.invoices) == 1
    wrong = PERSON[:-1] + str((int(PERSON[-1]) + 1) % 10)
    assert messages(run([row(Fødselsnr=wrong)], unpadded)) == [
        f'row 2: Fødselsnr "{PERSON[:6]}*****" is not a valid fødselsnummer or D-number '
        "(expected 11 digits with correct check digits)"
    ]


def test_phone_numbers_as_norwegians_write_them_are_not_dates(tmp_path: Path) -> None:
    """Dots between pairs of digits, spaces, brackets and 00 are a landline's or a mobile's
    usual dress, not a date."""
    written_as = [
        "+47 912 34 567", "912 34 567", "91234567", "0047 91234567", "(+47) 22 12 34 56",
        "22.12.34.56", "22 12 34 56", "912.34.567", "22.12.3456",
    ]  # fmt: skip
    rows = [row(Fakturanr=f"2403{i:02d}", Mobil=p) for i, p in enumerate(written_as)]
    prepared = prepare(written(tmp_path, rows), ERP)
    assert messages(prepared) == []
    numbers = [inv.payload["debtors"][0]["phoneNumbers"][0]["value"] for inv in prepared.invoices]
    mobile, landline = "+4791234567", "+4722123456"
    assert numbers == [mobile] * 4 + [landline] * 3 + [mobile, landline]


@pytest.mark.parametrize("excel", [False, True])
def test_line_breaks_in_names_and_addresses_are_sent_as_one_line(
    tmp_path: Path, excel: bool
) -> None:
    """A line break (Alt+Enter in Excel) or a tab inside a name, an address line, a customer
    number or an email cell is one space, with the spaces around it: the letter's address has
    the lines it should. Silently, as trimming is; the outcome keeps the cells as they were."""
    cells = {
        "Fornavn": "Åse\tMarie",
        "Etternavn": "Kristiansen \n",
        "Adresse": "c/o Hansen \n Storgata 12",
        "Poststed": "Oslo\nSentrum" if excel else "Oslo\u2028Sentrum",
        "Kundenr": "104\n11",
        "E-post": "ase@example.no\nase@jobb.no",
    }
    prepared = prepare(written(tmp_path, [row(**cells)], excel=excel), ERP)
    assert messages(prepared) == []
    (invoice,) = prepared.invoices
    debtor = invoice.payload["debtors"][0]
    assert (debtor["firstname"], debtor["lastname"]) == ("Åse Marie", "Kristiansen")
    assert debtor["addresses"] == [
        {"street": "c/o Hansen Storgata 12", "zipCode": "0155", "city": "Oslo Sentrum",
         "countryCode": "NO"}
    ]  # fmt: skip
    assert debtor["customerNumber"] == "104 11"
    assert invoice.payload["uniqueSourceInvoiceId"] == "104 11-240301"  # a template's too
    assert debtor["emails"] == [{"value": "ase@example.no"}, {"value": "ase@jobb.no"}]
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    as_typed = custom(
        tmp_path,
        text.replace('street = "Adresse"', 'street = { column = "Adresse", trim = false }'),
    )
    (invoice,) = prepare(written(tmp_path, [row(**cells)], excel=excel), as_typed).invoices
    assert invoice.payload["debtors"][0]["addresses"][0]["street"] == "c/o Hansen \n Storgata 12"


@pytest.mark.parametrize(("number", "what"), [("2403\n01", "a line break"), ("2403\t01", "a tab")])
def test_an_invoice_number_with_a_line_break_is_refused_not_made_one_line(
    tmp_path: Path, number: str, what: str
) -> None:
    """The invoice number tells invoices apart: "2403" and "01" on two lines of a cell, made one
    line, would be "2403 01", another invoice's number. Its row is INVALID, naming the column;
    the real "2403 01" is sent."""
    rows = [row(Fakturanr=number), row(Fakturanr="2403 01")]
    prepared = prepare(written(tmp_path, rows), ERP)
    why = (
        f'Fakturanr "{number}" holds {what}, which an invoice number cannot have (filedrop does'
        " not guess which number was meant); remove it in the export"
    )
    assert prepared.rejected[0] == Rejection(RowStatus.INVALID, why)
    assert [inv.invoice_number for inv in prepared.invoices] == ["2403 01"]
    assert_every_row_once(prepared)


def test_repeated_invoice_number_is_a_duplicate_of_the_first_row() -> None:
    """The later rows are DUPLICATE naming the first row; the first is sent once."""
    prepared = run([row(), row(Fakturanr="240302"), row(), row(Beløp="-1")])
    assert [inv.invoice_number for inv in prepared.invoices] == ["240301", "240302"]
    other = (
        "invoice number 240301 already appears on row 2, with other values in Beløp: this row is "
        "not sent, and that row says what became of the invoice"
    )
    assert prepared.rejected == {
        2: Rejection(RowStatus.DUPLICATE, "invoice number 240301 already appears on row 2"),
        3: Rejection(RowStatus.DUPLICATE, other),
    }
    assert messages(prepared) == [
        "row 4: invoice number 240301 already appears on row 2",
        'row 5: Beløp "-1" is not a positive amount (it must be more than 0)',
        f"row 5: {other}",
    ]


def test_a_number_of_zeros_alone_is_what_a_spreadsheet_makes_one_zero() -> None:
    """000 saved by a spreadsheet program is 0: the lone 0 has no zeros in front, so the
    program is named (it was not, as both numbers began with a zero)."""
    assert messages(run([row(Fakturanr="000"), row(Fakturanr="0")])) == [
        "row 3: invoice number 0 (as 000: the same number but for zeros in front, which a "
        "spreadsheet program drops) already appears on row 2"
    ]


def test_a_repeated_number_with_one_date_written_another_way_holds_no_other_value() -> None:
    """15.03.24, 2024-03-15, 45366 (a date cell exported as its number) and 15.03.2024 00:00
    are the one day 15.03.2024 the mapping reads: a repeat so written was told "with other
    values in Forfallsdato", which the mappings README rules out. Another day still is one."""
    written = ["15.03.24", "2024-03-15", "45366", "15.03.2024 00:00", "16.03.2024"]
    rows = [row()] + [row(Forfallsdato=due) for due in written]
    assert messages(run(rows)) == [
        *(f"row {r}: invoice number 240301 already appears on row 2" for r in range(3, 7)),
        "row 7: invoice number 240301 already appears on row 2, with other values in "
        "Forfallsdato: this row is not sent, and that row says what became of the invoice",
    ]


@pytest.mark.parametrize("date1904", [False, True], ids=["1900", "1904"])
def test_a_repeated_workbook_date_is_compared_as_the_day_its_field_reads(
    tmp_path: Path, date1904: bool
) -> None:
    """Typed cells are compared as the date Field reads them: a number as a day of the
    workbook's own count (45366 is 15.03.2024 counted from 1900, 16.03.2128 from 1904, where
    43904 is 15.03.2024), with its time of day left out (45366.5). Parsed as text from 1900, a
    1904 workbook's 45366 was the first row's day, and its 43904 another."""
    path = tmp_path / "mars.xlsx"
    write_erp_workbook(path, [erp_row("240301")] * 4)
    book = openpyxl.load_workbook(path)
    if date1904:
        book.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    book.active["C2"] = dt.datetime(2024, 3, 15)
    book.active["C2"].number_format = "dd.mm.yyyy"
    for cell, value in (("C3", 45366), ("C4", 45366.5), ("C5", 43904)):  # General numbers
        book.active[cell] = value
    book.save(path)
    repeat = "invoice number 240301 already appears on row 2"
    other = (
        f"{repeat}, with other values in Forfallsdato: this row is not sent, and that row says "
        "what became of the invoice"
    )
    fates = [other, other, repeat] if date1904 else [repeat, repeat, other]
    # Read on a day after 2128, so that no row waits for its due date (skip.not_due).
    prepared = prepare(read_table(path, ERP.read), ERP, today=dt.date(2200, 1, 1))
    assert [p.message for p in prepared.problems if p.rule == "duplicate"] == fates


def test_a_repeated_date_a_text_field_also_reads_is_another_value_when_written_otherwise(
    tmp_path: Path,
) -> None:
    """A description that reads the due date's column as text sends what it is written as:
    there 15.03.2024 and 2024-03-15 are other values, as they were before days were compared."""
    described = 'description = { template = "Faktura {Fakturanr}, forfall {Forfallsdato}" }'
    mapping = custom(
        tmp_path, ERP_TEXT.replace('description = { template = "Faktura {Fakturanr}" }', described)
    )
    rows = [row(), row(Forfallsdato="2024-03-15")]
    assert messages(run(rows, mapping)) == [
        "row 3: invoice number 240301 already appears on row 2, with other values in "
        "Forfallsdato: this row is not sent, and that row says what became of the invoice",
    ]


@pytest.mark.parametrize("in_parts", [False, True])
def test_a_repeated_number_with_other_values_says_which_columns_differ(in_parts: bool) -> None:
    """A second invoice under one number (another customer, another amount), or a second line
    of one invoice in a mapping without [group], was DUPLICATE with only "already appears", and
    the run exited 0: nothing told the user a claim was not sent. It stays DUPLICATE (the number
    went once) and names the columns that differ; an exact repeat, one written otherwise (4500
    for 4 500,00, 1.3.2024, capitals), or one whose number has its zeros dropped, says only
    where it appears. The same when the rows fall in different parts."""
    rows = [
        row(),
        row(Fakturanr="240302"),
        row(Fakturanr="00240301"),
        row(Beløp="2 500,00", Etternavn="Hansen"),
        row(Beløp="4500", Fakturadato="1.3.2024", Etternavn="KRISTIANSEN "),  # written otherwise
        row(Fakturanr="0240303"),
        row(Fakturanr="00240303"),  # padded otherwise: a spreadsheet drops every zero, not one
    ]
    with pytest.MonkeyPatch.context() as patch:
        if in_parts:
            patch.setattr(prepare_module, "FIRST_PART_ROWS", 1)
            patch.setattr(prepare_module, "PART_ROWS", 2)
        prepared = run(rows)
    assert [inv.invoice_number for inv in prepared.invoices] == ["240301", "240302", "0240303"]
    assert {r: (s.value, t) for r, (s, t) in prepared.rejected.items()} == {
        2: (
            "DUPLICATE",
            "invoice number 00240301 (as 240301: the same number but for zeros in front, which "
            "a spreadsheet program drops) already appears on row 2",
        ),
        3: (
            "DUPLICATE",
            "invoice number 240301 already appears on row 2, with other values in Beløp and "
            "Etternavn: this row is not sent, and that row says what became of the invoice",
        ),
        4: ("DUPLICATE", "invoice number 240301 already appears on row 2"),
        6: (
            "DUPLICATE",
            "invoice number 00240303 (as 0240303: the same number but for zeros in front) "
            "already appears on row 7",
        ),
    }


@pytest.mark.parametrize("in_parts", [False, True])
def test_a_number_repeated_after_an_invalid_row_is_invalid_not_duplicate(in_parts: bool) -> None:
    """The first row with the number is INVALID, so never sent: its repeat is no DUPLICATE of
    anything sent (that told the user it went to Amili), it is INVALID naming the first row, and
    so is every later one. Which of them is the invoice is for the user to say; nothing is sent
    under that number. The same when the rows fall in different parts of a long file."""
    rows = [row(Beløp="-1"), row(Fakturanr="240302"), row(), row()]
    with pytest.MonkeyPatch.context() as patch:
        if in_parts:
            patch.setattr(prepare_module, "FIRST_PART_ROWS", 1)
            patch.setattr(prepare_module, "PART_ROWS", 2)
        prepared = run(rows)
    assert [inv.invoice_number for inv in prepared.invoices] == ["240302"]
    why = (
        "invoice number 240301 already appears on row 2, which is invalid and not sent: correct "
        "that row, or keep only one row with that number"
    )
    assert prepared.rejected == {
        0: Rejection(
            RowStatus.INVALID, 'Beløp "-1" is not a positive amount (it must be more than 0)'
        ),
        2: Rejection(RowStatus.INVALID, why),
        3: Rejection(RowStatus.INVALID, why),
    }
    assert [(p.row, p.severity, p.rule) for p in prepared.problems] == [
        (2, "error", "amount"),
        (4, "error", "duplicate_of_invalid"),
        (5, "error", "duplicate_of_invalid"),
    ]


def test_numbers_excel_shortened_alike_are_not_called_repeats_of_each_other() -> None:
    """ "2,40302E+11" twice: two invoices whose numbers Excel cut the same way, not one given
    twice. Each is INVALID for its own number; the second is not told to delete itself as a
    repeat of the first."""
    rows = [row(Fakturanr="2,40302E+11", Beløp="100"), row(Fakturanr="2,40302E+11", Kundenr="9")]
    prepared = run(rows)
    assert prepared.invoices == []
    assert prepared.rejected[1].status is RowStatus.INVALID
    assert "already appears" not in prepared.rejected[1].text
    assert prepared.rejected[1].text == prepared.rejected[0].text


def test_a_group_repeating_the_number_of_an_invalid_group_is_invalid(tmp_path: Path) -> None:
    """Grouped: the second invoice with number A follows an INVALID first one; both its lines
    are INVALID, not DUPLICATE."""
    text = GROUPED.replace('by = "Nr"', 'by = "Etternavn"')
    rows = [
        line("A", "Hovedstol", "-1,00", first=True),
        line("A", "Hovedstol", "2,00", first=True, Etternavn="Berg"),
        line("A", "Gebyr", "70,00", Etternavn="Berg"),
    ]
    prepared = run(rows, custom(tmp_path, text), headers=G)
    assert prepared.invoices == []
    assert {r: status for r, (status, _) in prepared.rejected.items()} == dict.fromkeys(
        (0, 1, 2), RowStatus.INVALID
    )
    assert prepared.rejected[2].text == (
        "invoice number A already appears on row 2, which is invalid and not sent: correct that "
        "row, or keep only one row with that number"
    )


def test_a_long_repeated_invoice_number_is_shown_by_its_start_and_end() -> None:
    """A 5,000-character number twice: the message still ends in where it first appears."""
    number = "7" * 5_000
    prepared = run([row(Fakturanr=number), row(Fakturanr=number)])
    assert messages(prepared) == [
        f"row 3: invoice number {'7' * 60}...{'7' * 30} (5,000 characters) already appears on row 2"
    ]


def test_empty_row_is_invalid_saying_only_that() -> None:
    """A row with no cells at all gets one message, not one per missing field."""
    prepared = run([row(), dict.fromkeys(HEADERS, "")])
    assert messages(prepared) == ["row 3: the row is empty"]
    assert prepared.rejected == {1: Rejection(RowStatus.INVALID, "the row is empty")}


def test_problem_reads_as_one_sentence() -> None:
    """str(Problem) is the row number and the message."""
    problem = Problem(
        row=14,
        column="Forfallsdato",
        value="31.02.2024",
        message='Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy)',
        severity="error",
        rule="date",
        position=12,
    )
    assert str(problem) == 'row 14: Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy)'


def test_missing_column_is_a_mapping_error() -> None:
    """A file without a column the mapping needs is refused before any row is looked at."""
    from filedrop.errors import MappingError

    with pytest.raises(MappingError) as err:
        prepare(table([row()], headers=[h for h in HEADERS if h != "Fakturadato"]), ERP)
    assert (
        'key "invoice.invoiceDate" names column "Fakturadato", which mars.csv does not have'
        in str(err.value)
    )


@pytest.mark.parametrize(
    ("file_spelling", "mapping_spelling"),
    [("NFD", "NFC"), ("NFC", "NFD")],
    ids=["decomposed-file", "decomposed-mapping"],
)
def test_a_header_spelled_decomposed_is_found_and_matched(
    tmp_path: Path, file_spelling: str, mapping_spelling: str
) -> None:
    """A header with å typed as a + ring finds the header row and matches the mapping, both ways."""

    def spelled(form: str, text: str) -> str:
        return unicodedata.normalize(form, text)

    mapping = custom(
        tmp_path,
        spelled(
            mapping_spelling,
            """
[read]
decimal = ","

[invoice]
type = { constant = "NOTICE" }
invoiceNumber = "Fakturanr"
originalInvoiceAmount = "Å betale"
currency = { constant = "NOK" }
invoiceDate = { constant = 2024-03-01 }
dueDate = { constant = 2024-03-15 }

[debtor]
type = { constant = "COMPANY" }
lastname = "Navn på kunde"

[[claims]]
type = { constant = "PRINCIPAL" }
remainingAmount = "Å betale"
""",
        ),
    )
    path = tmp_path / "mars.csv"
    title = "Åpne poster;Kunde;Periode\n"
    header = spelled(file_spelling, "Fakturanr;Å betale;Navn på kunde\n")
    path.write_text(title + header + "240301;1 500,00;Fjord AS\n", encoding="utf-8")
    table = read_table(path, mapping.read)
    prepared = prepare(table, mapping)
    assert (table.info.header_row, prepared.rejected) == (2, {})
    (invoice,) = prepared.invoices
    assert invoice.payload["originalInvoiceAmount"] == 1500.0
    assert invoice.payload["debtors"] == [{"type": "COMPANY", "lastname": "Fjord AS"}]


# --- identifiers typed as numbers in a workbook ---------------------------------------------------

#: Excel's columns of the KID, Fødselsnr and Orgnr in the ERP layout.
KID, FNR, ORGNR = "F", "K", "L"
LOST = (
    "is a number of 20 digits, and Excel keeps only the first 15 digits of a number, so the "
    "others are lost; format the column as Text in Excel and type the value again"
)


def erp_with(tmp_path: Path, rules: str = "", kid: str = '"KID"') -> Mapping:
    """The shipped ERP mapping with ``rules`` added under ``[rules]``, and ``kid`` the source of
    its ocrReferenceNumber."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace("[rules]", f"[rules]\n{rules}", 1)
    text = text.replace('ocrReferenceNumber = "KID"', f"ocrReferenceNumber = {kid}")
    return custom(tmp_path, text)


def test_an_identifier_that_lost_digits_is_never_sent_whatever_the_rules(tmp_path: Path) -> None:
    """A KID, fødselsnummer or organisation number typed as a number of more than 15 digits is
    no longer the identifier (Excel keeps 15); nor is one Excel shortened to scientific
    notation. With their rules off, each row is still INVALID, named as Excel shows the value,
    and none goes out as "123456789012346e+19". 15 digits are kept whole."""
    mapping = erp_with(tmp_path, 'kid = "off"\nnational_id = "off"\norgnr = "off"')
    rows = [erp_row(f"24030{n}") for n in range(1, 7)]
    rows[2] = erp_row("240303", Kundetype="B", Fødselsnr="", Etternavn="Bygg AS")
    rows[3] = erp_row("240304", KID="1,23457E+19")
    path = write_erp_workbook(
        tmp_path / "mars.xlsx",
        rows,
        typed={
            f"{KID}2": 12345678901234567890,
            f"{FNR}3": 12345678901234567890,
            f"{ORGNR}4": 98765432101234567890,
            f"{KID}6": 1234567890123456,  # 16 digits: the 16th is not Excel's
            f"{KID}7": 123456789012347,  # 15 digits, a valid KID
        },
    )
    prepared = prepare(read_table(path, mapping.read), mapping)
    assert messages(prepared) == [
        f'row 2: KID "12345678901234600000" {LOST}',
        f'row 3: Fødselsnr "123456**************" {LOST}',
        f'row 4: Orgnr "987654**************" {LOST}',
        'row 5: KID "1,23457E+19" is a number Excel shortened to scientific notation, and its '
        "last digits are lost; format the column as Text in Excel and type the value again",
        f'row 6: KID "1234567890123460" {LOST.replace("20 digits", "16 digits")}',
    ]
    assert [r.status for r in prepared.rejected.values()] == [RowStatus.INVALID] * 5
    sent = [invoice.payload for invoice in prepared.invoices]
    assert [p["invoiceNumber"] for p in sent] == ["240306"]
    assert sent[0]["ocrReferenceNumber"] == "123456789012347"


def test_an_invoice_number_that_lost_digits_is_never_sent(tmp_path: Path) -> None:
    """Two 16-digit invoice numbers typed as numbers are one number to Excel (it keeps 15
    digits): the first went out under it, a number the ERP never gave, and the second, another
    invoice, was DUPLICATE of it and never sent. Both are INVALID, said as Excel shows them; one
    Excel shows in scientific notation is said so, once; 15 digits go out whole."""
    path = write_erp_workbook(
        tmp_path / "mars.xlsx",
        [erp_row("x") for _ in range(4)],
        typed={
            "A2": 2026000000000121,
            "A3": 2026000000000122,
            "A4": 12345678901234567890,
            "A5": 202600000000012,
        },
    )
    prepared = prepare(read_table(path, ERP.read), ERP)
    lost16 = LOST.replace("20 digits", "16 digits")
    assert messages(prepared) == [
        f'row 2: Fakturanr "2026000000000120" {lost16}',
        f'row 3: Fakturanr "2026000000000120" {lost16}',
        'row 4: Fakturanr "1.23456789012346e+19" is a number Excel shortened to scientific '
        "notation, and its last digits are lost; format the column as text in Excel and export "
        "it again",
    ]
    assert [r.status for r in prepared.rejected.values()] == [RowStatus.INVALID] * 3
    assert [i.payload["invoiceNumber"] for i in prepared.invoices] == ["202600000000012"]


def _without_field(line: str, header: str) -> str:
    """``line`` with the field under ``header`` left out, as a line an export cut short."""
    fields = line.split(";")
    del fields[ERP_HEADER.split(";").index(header)]
    return ";".join(fields)


@pytest.mark.parametrize("ragged", [False, True])  # True: a line too long reads it the csv way
def test_a_line_with_a_field_missing_says_so_before_its_problems(
    tmp_path: Path, ragged: bool
) -> None:
    """A line with one field too few reads every value after the gap one column early, and
    its row said five problems ("Beløp "NOK" is not an amount", "Kundetype "Åse" ..."), none of
    them what was wrong. The line's own count comes first now; a short line without problems
    (Excel leaves trailing empty fields out of some lines) is sent, as before, and so is one
    DUPLICATE, unsaid; a quoted delimiter, or a quoted line break, counts as part of its value,
    and a quote inside an unquoted value is itself."""
    rows = [
        erp_row("240301"),
        _without_field(erp_row("240302"), "Forfallsdato"),
        # No Poststed, the last field: read as empty, which a city may be.
        erp_row("240303").rsplit(";", 1)[0],
        erp_row("240304", Etternavn='"Berg; Hansen"').rsplit(";", 1)[0],
        erp_row("240305", Adresse='"Storgata 1\nOppgang B"').rsplit(";", 1)[0],
        # A quote inside an unquoted value is itself: the line after it is whole.
        erp_row("240306", Adresse='Skjerm 24" gate 1'),
        erp_row("240307", Poststed=""),
        # The same invoice again, short: DUPLICATE, and no line to correct.
        erp_row("240307", Poststed="").rsplit(";", 1)[0],
    ]
    if ragged:
        rows.append(erp_row("240308") + ";;")
    path = write_erp_csv(tmp_path / "mars.csv", rows, encoding="utf-8")
    table = read_table(path, ERP.read)
    assert table.short_rows == dict.fromkeys([3, 4, 5, 6, 10], (16, 17))
    prepared = prepare(table, ERP)
    assert_every_row_once(prepared)
    said = [str(p) for p in prepared.problems]
    assert said[0] == (
        "row 3: the line has 16 of the header's 17 fields: if the missing one is not the last, "
        "the values after it stand under the wrong columns, which may be what this row's other "
        "problems are; correct the line in the export"
    )
    assert all(m.startswith(("row 3: ", "row 10: invoice number 240307 already")) for m in said)
    assert prepared.rejected[1].text.startswith("the line has 16 of the header's 17 fields")
    sent = ["240301", "240303", "240304", "240305", "240306", "240307"]
    sent += ["240308"] if ragged else []
    assert [i.invoice_number for i in prepared.invoices] == sent


def test_a_short_line_whose_problems_are_warnings_is_not_sent(tmp_path: Path) -> None:
    """A line without its phone number read the street as the phone and the postcode as the
    street, and only the phone said so, as a warning: the short line took the severity of its
    worst problem and the invoice went with the debtor's address in the wrong fields (found by
    a hostile review). A short line with problems is an error, whatever they are."""
    assert ERP.rules["phone"] == "warning"
    # No postcode nor city: the street goes under Mobil, and nothing under the address.
    short = _without_field(erp_row("240302", Postnr="", Poststed=""), "Mobil")
    path = write_erp_csv(tmp_path / "mars.csv", [erp_row("240301"), short], encoding="utf-8")
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert [(p.row, p.severity, p.rule) for p in prepared.problems][:2] == [
        (3, "error", "short_line"),
        (3, "warning", "phone"),
    ]
    assert [i.invoice_number for i in prepared.invoices] == ["240301"]
    assert prepared.rejected[1].status is RowStatus.INVALID


def test_a_short_line_is_told_where_every_line_ends_with_the_delimiter(tmp_path: Path) -> None:
    """Lines that all end with a ";" (an empty last field, cut from the table) hid a line with a
    field missing in the middle: it was measured against the table's width, not the header's
    line. It says so now, against the header line's own count."""
    rows = [erp_row("240301") + ";", _without_field(erp_row("240302"), "Kundetype") + ";"]
    path = tmp_path / "mars.csv"
    path.write_bytes(("\r\n".join([ERP_HEADER + ";", *rows]) + "\r\n").encode("utf-8"))
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert str(prepared.problems[0]).startswith("row 3: the line has 17 of the header's 18 fields")
    assert [i.invoice_number for i in prepared.invoices] == ["240301"]


#: What an invoice number a number format wrote is told to do.
_FORMAT_CURE = (
    "by its column's number format, not the invoice number as it reads; format the column as "
    "General or Text in Excel and export it again"
)


def test_an_invoice_number_a_number_format_wrote_is_refused(tmp_path: Path) -> None:
    """Invoice numbers formatted # ##0 and 0,00 in a workbook: the workbook sends 240301, the
    CSV Excel saves of it holds "240 301" (a no-break space) and "240302,00", which went out as
    two more numbers, a second case for each invoice; so did "70,001" and "70.001", what Excel
    set to English or German numbers saves of #,##0. They are refused, saying why; a space a
    person typed, decimals that are not zeros and a series before a dot are the number as it
    reads."""
    path = tmp_path / "mars.csv"
    numbers = ["240\u00a0301", "240302,00", "1\u202f240\u00a0303", "2024 001", "240305.5"]
    numbers += ["70,001", "1.070.002", "70,000", "2024.003", "70 001.004", "7,0001", "070.005"]
    rows = [erp_row(n, email="kunde@example.no") for n in numbers]
    write_erp_csv(path, rows, encoding="utf-8")
    prepared = prepare(read_table(path, ERP.read), ERP)
    cure = _FORMAT_CURE
    grouped = "is a number written with its digits grouped"
    assert messages(prepared) == [
        f'row 2: Fakturanr "240\u00a0301" {grouped} {cure}',
        f'row 3: Fakturanr "240302,00" is a number written with decimals {cure}',
        f'row 4: Fakturanr "1\u202f240\u00a0303" {grouped} {cure}',
        f'row 7: Fakturanr "70,001" {grouped} {cure}',
        f'row 8: Fakturanr "1.070.002" {grouped} {cure}',
        f'row 9: Fakturanr "70,000" {grouped} or with decimals {cure}',
    ]
    assert [i.payload["invoiceNumber"] for i in prepared.invoices] == [
        "2024 001",
        "240305.5",
        "2024.003",
        "70 001.004",
        "7,0001",
        "070.005",  # no number format writes a zero in front of a group
    ]


def test_a_csv_column_with_ungrouped_numbers_keeps_its_points_and_commas(tmp_path: Path) -> None:
    """A number format groups every number of its column: one beside 70002, written without a
    separator, did not write "70.001" or "1.001", which are how the numbering reads, and were
    refused (found by a hostile review). "70,000" is still refused for its decimals of zeros, and
    a no-break space between digits is still a format's."""
    path = tmp_path / "mars.csv"
    numbers = ["70002", "70.001", "1.001", "70,000", "240\u00a0301"]
    write_erp_csv(path, [erp_row(n, email="kunde@example.no") for n in numbers], encoding="utf-8")
    prepared = prepare(read_table(path, ERP.read), ERP)
    cure = _FORMAT_CURE
    assert messages(prepared) == [
        f'row 5: Fakturanr "70,000" is a number written with decimals {cure}',
        f'row 6: Fakturanr "240\u00a0301" is a number written with its digits grouped {cure}',
    ]
    assert [i.invoice_number for i in prepared.invoices] == ["70002", "70.001", "1.001"]


def test_a_workbook_s_text_cell_grouped_by_points_is_its_number(tmp_path: Path) -> None:
    """A workbook holds a number as a number, whatever its format shows: a text cell reading
    70.001 was typed so (an ERP's series), not written by a number format, and was refused with
    advice to format the column as Text, which it was. It goes out as it reads; one grouped by
    no-break spaces, a formatted number's text pasted as shown, is still refused."""
    rows = [erp_row(n, email="kunde@example.no") for n in ("70.001", "1,070,002", "240\u00a0301")]
    prepared = prepare(read_table(write_erp_workbook(tmp_path / "mars.xlsx", rows)), ERP)
    assert [i.invoice_number for i in prepared.invoices] == ["70.001", "1,070,002"]
    assert [p.row for p in prepared.problems] == [4]


def test_a_name_that_is_a_number_is_refused() -> None:
    """A customer number column read as the name sent the company Vinmonopolet AS as "50002",
    and one glued to a person's name went out as the last name "60001 - Nordmann" (a hostile
    review of real exports). A person's name with a digit, and a company's without a letter,
    are refused, saying what they may be; "3M Norge AS" is a company's name."""
    company = {"Kundetype": "B", "Fødselsnr": "", "Orgnr": org(1), "Fornavn": ""}
    prepared = run(
        [
            row(Fakturanr="240301", Etternavn="60001 - Nordmann"),
            row(Fakturanr="240302", **company, Etternavn="50002"),
            row(Fakturanr="240303", **company, Etternavn="3M Norge AS"),
            row(Fakturanr="240304", Fornavn="Åse 2"),
            row(Fakturanr="240305"),
            row(Fakturanr="240306", **company, Etternavn="10100 - Bygg og Anlegg AS"),
            row(Fakturanr="240307", **company, Etternavn="1881 AS"),
            row(Fakturanr="240308", **company, Etternavn="10100: Bygg AS"),
            row(Fakturanr="240309", **company, Etternavn="50003"),
            row(Fakturanr="240310", **company, Etternavn="50004"),  # after another: said too
            row(Fakturanr="240311", **company, Etternavn="10100\u00a0- Bygg AS"),
            row(Fakturanr="240312", **company, Etternavn="365-Dager AS"),
        ]
    )
    cure = "(a customer number?); correct it in the export, or map the column that holds the name"
    assert messages(prepared) == [
        f'row 2: Etternavn "60001 - Nordmann" holds digits, which a person\'s name does not {cure}',
        f'row 3: Etternavn "50002" holds no letter, which a company\'s name has {cure}',
        f'row 5: Fornavn "Åse 2" holds digits, which a person\'s name does not {cure}',
        f'row 7: Etternavn "10100 - Bygg og Anlegg AS" begins with a number and a dash or '
        f"colon {cure}",
        f'row 9: Etternavn "10100: Bygg AS" begins with a number and a dash or colon {cure}',
        f'row 10: Etternavn "50003" holds no letter, which a company\'s name has {cure}',
        f'row 11: Etternavn "50004" holds no letter, which a company\'s name has {cure}',
        f'row 12: Etternavn "10100\u00a0- Bygg AS" begins with a number and a dash or colon {cure}',
    ]
    sent = ["240303", "240305", "240307", "240312"]
    assert [i.invoice_number for i in prepared.invoices] == sent


def test_a_name_is_told_its_digits_in_any_script_and_a_control_character_once() -> None:
    """A person's name in full-width or Arabic-Indic digits went out as a name; one with an
    escape sequence ("\x1b[1m") was said to hold a control character and digits, one cause
    twice (a hostile review). Digits of any script are digits; the escape is said once."""
    prepared = run(
        [
            row(Fakturanr="240301", Etternavn="\uff15\uff10\uff10\uff10\uff12"),
            row(Fakturanr="240302", Etternavn="\u0665\u0660\u0660\u0660\u0662"),
            row(Fakturanr="240303", Etternavn="Kristiansen\x1b[1m"),
        ]
    )
    said = messages(prepared)
    assert [m.split('"')[0] for m in said] == [
        "row 2: Etternavn ",
        "row 3: Etternavn ",
        "row 4: Etternavn ",
    ]
    assert "holds digits" in said[0] and "holds digits" in said[1]
    assert "holds a control character (U+001B)" in said[2]
    assert not prepared.invoices


def test_a_kid_or_zip_code_written_with_decimals_is_refused(tmp_path: Path) -> None:
    """A column a program wrote as floats holds "1234567897.0": the dot went with the ones
    people type into a KID, and the KID went out as 12345678970, which passes its check digit
    (a payment would never match); "5003.0" went out as the zip code, and a fødselsnummer
    "1010039955.0" as 10100399550, another person's. Refused, saying why, once; a KID grouped by
    dots is the KID it reads as."""
    path = tmp_path / "mars.csv"
    cells = [
        {"KID": "1234567897.0"},
        {"KID": "1234567897,00"},
        {"Postnr": "5003.0"},
        {"Fødselsnr": "1010039955.0"},  # padded without its ".0": another person, 10100399550
        {"KID": "123.456.789.7", "Postnr": "5003"},
    ]
    rows = [erp_row(f"24030{k}", **c) for k, c in enumerate(cells, start=1)]
    write_erp_csv(path, rows, encoding="utf-8")
    prepared = prepare(read_table(path, ERP.read), ERP)
    why = (
        "is a number written with decimals (by a program or a number format that took the "
        "column for numbers), not {} as it reads; format the column as Text and export it again"
    )
    assert messages(prepared) == [
        f'row 2: KID "1234567897.0" {why.format("the KID")}',
        f'row 3: KID "1234567897,00" {why.format("the KID")}',
        f'row 4: Postnr "5003.0" {why.format("the value")}',
        f'row 5: Fødselsnr "101003******" {why.format("the number")}',
    ]
    (sent,) = (invoice.payload for invoice in prepared.invoices)
    assert sent["ocrReferenceNumber"] == "1234567897"
    assert sent["debtors"][0]["addresses"][0]["zipCode"] == "5003"


def test_a_row_with_no_invoice_number_and_little_else_is_said_in_one_sentence(
    tmp_path: Path,
) -> None:
    """An export's own lines (a count of records, a subtotal that no rule skips) were INVALID
    with a sentence per empty value, five or six for a line that is no invoice. One sentence
    says it; the row stays INVALID (it may be an invoice that lost its values). A row with its
    dates is an invoice that lost its number: each missing value is said, as before."""
    path = tmp_path / "mars.csv"
    subtotal = dict.fromkeys(ERP_HEADER.split(";"), "") | {"Kundenr": "Sum kunde 10001"}
    rows = [
        erp_row("240301"),
        erp_row("", Fornavn="Kari"),
        ";".join((subtotal | {"Beløp": "1 234,50"}).values()),
        # An invoice that lost its number and names, not its dates: said value by value.
        erp_row("", Fornavn="", Etternavn=""),
    ]
    write_erp_csv(path, rows, encoding="utf-8")
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert messages(prepared) == [
        "row 3: Fakturanr is empty (the invoice needs an invoice number)",
        "row 4: Fakturanr is empty, and so are Fakturadato, Forfallsdato, Fornavn and "
        "Etternavn: the row reads as no invoice (a line of the export's own, such as a count or a "
        "subtotal?); delete such rows in the export, or leave them out with a [skip] rule on a "
        "column that marks them",
        "row 5: Fakturanr is empty (the invoice needs an invoice number)",
        "row 5: Fornavn is empty (a PRIVATE debtor needs a first name)",
        "row 5: Etternavn is empty (a PRIVATE debtor needs a last name)",
    ]
    assert {r: s.value for r, (s, _) in prepared.rejected.items()} == dict.fromkeys(
        (1, 2, 3), "INVALID"
    )


def test_an_address_in_norway_needs_a_norwegian_postal_code(tmp_path: Path) -> None:
    """Every address goes with countryCode NO in the ERP mapping: "NO-0150", a German "12345",
    "5003 Bergen" and "0" (padded to 0000) went out as Norwegian postal codes, and a collection
    letter to them goes astray. Refused (rule zip); a warning sends them, noted; an address
    abroad, its country from a column, is not looked at."""
    path = tmp_path / "mars.csv"
    zips = ["NO-0150", "12345", "5003 Bergen", "0", "155", "0150"]
    rows = [erp_row(f"24030{k}", Postnr=z) for k, z in enumerate(zips, start=1)]
    write_erp_csv(path, rows, encoding="utf-8")
    prepared = prepare(read_table(path, ERP.read), ERP)
    why = (
        "is not a Norwegian postal code (4 digits), and the address goes with countryCode NO; "
        "correct it in the export, or map countryCode from a column if the address is abroad"
    )
    assert messages(prepared) == [
        f'row {row}: Postnr "{typed}" {why}' for row, typed in enumerate(zips[:4], start=2)
    ]
    sent = [i.payload["debtors"][0]["addresses"][0]["zipCode"] for i in prepared.invoices]
    assert sent == ["0155", "0150"]
    warned = custom(tmp_path, ERP_TEXT.replace("[rules]", '[rules]\nzip = "warning"', 1))
    assert len(prepare(read_table(path, warned.read), warned).invoices) == 6
    abroad = custom(
        tmp_path,
        ERP_TEXT.replace('countryCode = { constant = "NO" }', 'countryCode = { constant = "DE" }'),
    )
    assert len(prepare(read_table(path, abroad.read), abroad).invoices) == 6
    # A country column saying Norway by its name; a zip column without pad, written as floats.
    norge_text = ERP_TEXT.replace('constant = "NO" }', 'constant = "Norge" }')
    norge = custom(tmp_path, norge_text.replace('{ column = "Postnr", pad = 4 }', '"Postnr"'))
    floats = tmp_path / "floats.csv"
    floats.write_text(f"{ERP_HEADER}\n{erp_row('240301', Postnr='5003.0')}\n", encoding="utf-8")
    assert messages(prepare(read_table(floats, norge.read), norge)) == [
        f'row 2: Postnr "5003.0" {why.replace("countryCode NO", "countryCode Norge")}'
    ]


def test_a_date_far_outside_any_claims_years_is_refused_saying_why(tmp_path: Path) -> None:
    """A year typed as a number in a workbook's date column (2024) read as Excel's day 2024 and
    went out as 1905-07-16; a due date typed 2124 for 2024 went out a century ahead. Dates
    before 1970 or after 2099 are no claim's: refused, saying so. "is not a date (expected
    dd.mm.yyyy)", as it was, had the user look for a fault in a date written just so; and a date
    cell holding 0 was "00:00:00", as calamine gives it, "not a date" with no more said."""
    path = tmp_path / "mars.xlsx"
    rows = [
        erp_row("240301"),
        erp_row("240302", Forfallsdato="15.03.2124"),
        erp_row("240303", Fakturadato="01.03.1965"),
        erp_row("240304"),
        erp_row("240305"),
        erp_row("240306"),
        erp_row("240307", Forfallsdato="15.03.24x"),
    ]
    write_erp_workbook(path, rows)
    book = openpyxl.load_workbook(path)
    book.active["B5"] = 2024  # Fakturadato of 240304, a number
    for cell, value in (("C6", 0), ("C7", 1)):  # date cells holding 0 (shown 00.01.1900) and 1
        book.active[cell] = value
        book.active[cell].number_format = "dd.mm.yyyy"
    book.save(path)
    prepared = prepare(read_table(path, ERP.read), ERP)
    outside = (
        "outside the years 1970 to 2099 that a claim's dates fall in; correct it in the export"
    )
    assert messages(prepared) == [
        f'row 3: Forfallsdato "15.03.2124" reads as 2124-03-15, {outside}',
        f'row 4: Fakturadato "01.03.1965" reads as 1965-03-01, {outside}',
        f'row 5: Fakturadato "2024" reads as 1905-07-16, {outside}',
        'row 6: Forfallsdato "00:00:00" is a time of day with no date (a date cell holding a '
        "number below 1 shows so); correct it in the export",
        f'row 7: Forfallsdato "1900-01-01" is {outside}',
        'row 8: Forfallsdato "15.03.24x" is not a date (expected dd.mm.yyyy or dd.mm.yy)',
    ]
    assert [i.invoice_number for i in prepared.invoices] == ["240301"]


@pytest.mark.parametrize("date1904", [False, True], ids=["1900", "1904"])
def test_a_number_in_a_date_column_is_told_as_the_day_excel_shows_or_as_none(
    tmp_path: Path, date1904: bool
) -> None:
    """A number in a workbook's date column is the day Excel shows for it. Counted from
    30.12.1899 for all, 1 read as 31.12.1899 where Excel shows 01.01.1900; 0, -3 and 3000000,
    which Excel shows as no day, read as 1899-12-30, 1899-12-27 and "not a date (expected
    dd.mm.yyyy)", a text format for a cell that held none. A 1904 workbook's date cell holding
    day 0 (01.01.1904), which calamine gives as a time of day, was "a time of day with no date";
    calamine gives a negative number so too, so the message holds for both."""
    path = tmp_path / "mars.xlsx"
    write_erp_workbook(path, [erp_row(f"24030{k}") for k in range(1, 7)])
    book = openpyxl.load_workbook(path)
    if date1904:
        book.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    for cell, value in (("C2", 1), ("C3", 0), ("C4", -3), ("C5", 3000000), ("C6", 0)):
        book.active[cell] = value  # General: typed numbers
    book.active["C6"].number_format = "dd.mm.yyyy"  # a date cell holding 0
    book.save(path)
    prepared = prepare(read_table(path, ERP.read), ERP)
    outside = (
        "outside the years 1970 to 2099 that a claim's dates fall in; correct it in the export"
    )
    if date1904:
        none = "counts days from 0 (01.01.1904) to 2957003 (31.12.9999)"
        expected = [
            f'row 2: Forfallsdato "1" reads as 1904-01-02, {outside}',
            f'row 3: Forfallsdato "0" reads as 1904-01-01, {outside}',
            f'row 4: Forfallsdato "-3" is a number that is no day: a date column {none}; '
            "correct it in the export",
            f'row 5: Forfallsdato "3000000" is a number that is no day: a date column {none}; '
            "correct it in the export",
            'row 6: Forfallsdato "00:00:00" is a date cell holding a number below 1, no day '
            f"after 01.01.1904, {outside}",
        ]
    else:
        none = "counts days from 1 (01.01.1900) to 2958465 (31.12.9999)"
        expected = [
            f'row 2: Forfallsdato "1" reads as 1900-01-01, {outside}',
            *(
                f'row {row}: Forfallsdato "{value}" is a number that is no day: a date column '
                f"{none}; correct it in the export"
                for row, value in ((3, 0), (4, -3), (5, 3000000))
            ),
            'row 6: Forfallsdato "00:00:00" is a time of day with no date (a date cell holding a '
            "number below 1 shows so); correct it in the export",
        ]
    assert messages(prepared) == expected
    assert [i.invoice_number for i in prepared.invoices] == ["240306"]  # row 7, left as written


def test_an_invoice_number_with_an_apostrophe_in_front_is_refused(tmp_path: Path) -> None:
    """'000782 (an ERP's way to make Excel keep the zeros) went out as itself, and another export
    of the invoice, 000782, went out as a second number: a second case. So did the curly
    apostrophes a word processor's autocorrect makes of it (‘70001, in cp1252 too). An
    apostrophe inside a number is the number as it reads."""
    path = tmp_path / "mars.csv"
    numbers = ["'000782", "000783", "O'784", "\u201870001", "\u201970002"]
    rows = [erp_row(n, email="kunde@example.no") for n in numbers]
    write_erp_csv(path, rows, encoding="cp1252")
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert messages(prepared) == [
        f'row {row}: Fakturanr "{number}" begins with an apostrophe, the mark that tells Excel '
        "to keep a value as text, not part of the invoice number; remove it in the export"
        for row, number in ((2, "'000782"), (5, "\u201870001"), (6, "\u201970002"))
    ]
    assert [i.payload["invoiceNumber"] for i in prepared.invoices] == ["000783", "O'784"]


def test_a_workbook_amount_is_sent_as_the_ore_it_shows(tmp_path: Path) -> None:
    """A formula's saved result =1.1*3 holds 3.3000000000000003 (shown 3,30), and one of
    1234.5 computed another way 1234.5000000000002: each went out with its binary noise. Within
    that noise of an øre, an amount is sent as the øre shown; a real fraction of an øre is
    still refused."""
    path = tmp_path / "mars.xlsx"
    with xlsxwriter.Workbook(path) as workbook:
        sheet = workbook.add_worksheet()
        sheet.write_row(0, 0, ERP_HEADER.split(";"))
        for r, number in enumerate(("240301", "240302", "240303"), start=1):
            sheet.write_row(r, 0, erp_row(number).split(";"))
        sheet.write_formula("D2", "=1.1*3", None, 1.1 * 3)
        sheet.write_formula("D3", "=1234.4+0.1", None, 1234.5000000000002)
        sheet.write_number("D4", 12.345)
    # Saved as Excel saves: the results calculated (xlsxwriter asks for it on opening).
    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(b' fullCalcOnLoad="1"', b"")
    with zipfile.ZipFile(path, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert messages(prepared) == ['row 4: Beløp "12.345" has more than two decimals']
    sent = [i.payload["originalInvoiceAmount"] for i in prepared.invoices]
    assert sent == [3.3, 1234.5]  # not 3.3000000000000003, which the JSON would carry


def test_a_kid_number_is_read_with_the_zeros_its_column_format_shows(tmp_path: Path) -> None:
    """A KID column formatted 0000000000 shows 12345674 as 0012345674, and that is the KID:
    zeros in front change neither check digit, so without them it passed and went out short."""
    path = write_erp_workbook(
        tmp_path / "mars.xlsx",
        [erp_row("240301"), erp_row("240302")],
        typed={f"{KID}2": 12345674, f"{KID}3": 1234567897},
        formats={KID: "0000000000"},
    )
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert prepared.problems == []
    assert [i.payload["ocrReferenceNumber"] for i in prepared.invoices] == [
        "0012345674",
        "1234567897",
    ]


@pytest.mark.parametrize(
    ("rules", "kid", "sent", "severity"),
    [
        ("", '"KID"', ["1234567897"], "error"),
        ('kid = "warning"', '"KID"', ["12345674", "1234567897"], "warning"),
        ("", '{ column = "KID", pad = 10 }', ["0012345674", "1234567897"], None),
    ],
    ids=["refused", "warning-sends-it-noted", "pad-puts-the-zeros-back"],
)
def test_a_kid_number_shorter_than_its_column_s_kids_lost_its_leading_zeros(
    tmp_path: Path, rules: str, kid: str, sent: list[str], severity: str | None
) -> None:
    """Without a format that shows them, a KID typed as a number (0012345674 became 12345674)
    passes both check digits; only the column's longer KIDs show that zeros are gone. It breaks
    rule kid, naming the fix; ``pad`` on the KID puts the zeros back."""
    mapping = erp_with(tmp_path, rules, kid=kid)
    path = write_erp_workbook(
        tmp_path / "mars.xlsx",
        [erp_row("240301"), erp_row("240302", KID="1234567897")],
        typed={f"{KID}2": 12345674},
    )
    prepared = prepare(read_table(path, mapping.read), mapping)
    assert [i.payload["ocrReferenceNumber"] for i in prepared.invoices] == sent
    assert [(p.severity, str(p)) for p in prepared.problems] == (
        []
        if severity is None
        else [
            (
                severity,
                'row 2: KID "12345674" is a number of 8 digits, where the column\'s longest KID '
                "(row 3) has 10, and Excel drops the leading zeros of a number; format the column "
                "as Text in Excel and type the KIDs again, or add pad = 10 to "
                "invoice.ocrReferenceNumber in the mapping if every KID has 10 digits",
            )
        ]
    )


def test_a_short_kid_number_in_a_later_part_of_a_long_file_is_refused_as_in_one_go(
    tmp_path: Path,
) -> None:
    """A long file is prepared in parts (``FIRST_PART_ROWS``, then ``PART_ROWS``), but the
    column's longest KID is the whole file's: 12345674 (0012345674 typed as a number) after
    10-digit KIDs is refused in whatever part it lands, and not sent short because its part
    holds no longer KID."""
    path = write_erp_workbook(
        tmp_path / "mars.xlsx",
        [erp_row("240301"), erp_row("240302"), erp_row("240303")],
        typed={f"{KID}2": 1234567897, f"{KID}3": 1234567897, f"{KID}4": 12345674},
    )
    whole = prepare(read_table(path, ERP.read), ERP)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare_module, "FIRST_PART_ROWS", 2)
        patch.setattr(prepare_module, "PART_ROWS", 2)
        parts = prepare(read_table(path, ERP.read), ERP)
    assert len({id(invoice.columns) for invoice in parts.invoices}) == 1  # row 4 is alone
    for prepared in (whole, parts):
        assert [i.payload["ocrReferenceNumber"] for i in prepared.invoices] == ["1234567897"] * 2
        assert [str(p) for p in prepared.problems] == [
            'row 4: KID "12345674" is a number of 8 digits, where the column\'s longest KID '
            "(row 2) has 10, and Excel drops the leading zeros of a number; format the column as "
            "Text in Excel and type the KIDs again, or add pad = 10 to invoice.ocrReferenceNumber "
            "in the mapping if every KID has 10 digits"
        ]


def test_kids_typed_as_numbers_of_one_length_are_sent_as_they_are(tmp_path: Path) -> None:
    """Numbers that lost nothing (as long as the column's longest KID, or text cells) pass."""
    path = write_erp_workbook(
        tmp_path / "mars.xlsx",
        [erp_row("240301"), erp_row("240302"), erp_row("240303", KID="0012345674")],
        typed={f"{KID}2": 1234567897, f"{KID}3": 1234567897.0},
    )
    prepared = prepare(read_table(path, ERP.read), ERP)
    assert prepared.problems == []
    assert [i.payload["ocrReferenceNumber"] for i in prepared.invoices] == [
        "1234567897",
        "1234567897",
        "0012345674",
    ]


# --- several rows per invoice ---------------------------------------------------------------------

# Several lines per invoice: principal, fee and interest (a real mapping file in tests/data).
GROUPED_PATH = ROOT / "tests" / "data" / "grouped-lines.toml"
GROUPED = GROUPED_PATH.read_text(encoding="utf-8")
GROUPED_MAPPING = load_mapping(GROUPED_PATH)
G = ["Nr", "Linje", "Beløp", "Dato", "Forfall", "Fornavn", "Etternavn"]


def line(nr: str, kind: str, amount: str, *, first: bool = False, **cells: str) -> dict[str, str]:
    head = (
        {"Dato": "01.03.2024", "Forfall": "15.03.2024", "Fornavn": "Åse", "Etternavn": "Lie"}
        if first
        else {}
    )
    return {"Nr": nr, "Linje": kind, "Beløp": amount} | head | cells


def test_a_grouped_invoice_with_a_credit_line_left_out_is_refused(tmp_path: Path) -> None:
    """A credit_notes rule on a grouped mapping leaves a discount line (-20) out, and its
    invoice would go without it: INVALID, naming the line. The first version crashed the whole
    file ("index 4 is out of bounds") when the credit line came after an invoice of two lines:
    it looked invoices up by row. A credit line of another invoice, zeros in front aside
    (070001), counts too; one of 0 does not."""
    text = GROUPED + '\n[skip]\ncredit_notes = { column = "Beløp", at_most = 0 }\n'
    rows = [
        line("A", "Hovedstol", "1 000,00", first=True),
        line("A", "Gebyr", "70,00"),
        line("70001", "Hovedstol", "50,00", first=True),
        line("C", "Hovedstol", "80,00", first=True),
        line("A", "Rabatt", "-20,00"),
        line("070001", "Kreditnota", "-50,00"),
        line("C", "Rabatt", "0,00"),
    ]
    prepared = run(rows, custom(tmp_path, text), headers=G)
    left_out = 'a credit note or payment left out (rule skip.credit_notes: Beløp "{}" is 0 or less)'
    cure = CREDIT_CURE
    assert messages(prepared) == [
        f"row 2: invoice number A is also on row 6, {left_out.format('-20,00')}: {cure}",
        f"row 4: invoice number 70001 is also on row 7, {left_out.format('-50,00')}: {cure}",
        'row 6: rule skip.credit_notes: Beløp "-20,00" is 0 or less',
        'row 7: rule skip.credit_notes: Beløp "-50,00" is 0 or less',
        'row 8: rule skip.credit_notes: Beløp "0,00" is 0 or less',
    ]
    assert [invoice.invoice_number for invoice in prepared.invoices] == ["C"]
    assert_every_row_once(prepared)


def test_rows_with_one_key_become_one_invoice_with_a_claim_per_row() -> None:
    """Principal, fee and interest lines make one invoice; its amount is their sum."""
    rows = [
        line("A", "Hovedstol", "1 000,00", first=True),
        line("B", "Hovedstol", "50,00", first=True),
        line("A", "Gebyr", "70,00"),
        line("A", "Rente", "12,35"),
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    assert [(inv.invoice_number, inv.rows) for inv in prepared.invoices] == [
        ("A", (0, 2, 3)),
        ("B", (1,)),
    ]
    a = prepared.invoices[0].payload
    assert a["originalInvoiceAmount"] == 1082.35
    assert a["claims"] == [
        {"type": "PRINCIPAL", "remainingAmount": 1000.0, "description": "Hovedstol"},
        {"type": "REMINDER_FEE", "remainingAmount": 70.0, "description": "Gebyr"},
        {"type": "INTEREST", "remainingAmount": 12.35, "description": "Rente"},
    ]
    assert a["dueDate"] == "2024-03-15T00:00:00Z"  # from the first line; the others leave it empty
    assert_every_row_once(prepared)


def test_a_grouped_invoice_listed_twice_is_sent_once() -> None:
    """An invoice's lines again further down (two exports appended): grouped, every claim went
    out twice and the debtor was asked for twice the debt. A line that repeats an earlier one
    exactly is DUPLICATE, naming it; a second principal of another amount is a claim."""
    rows = [
        line("A", "Hovedstol", "1 000,00", first=True),
        line("A", "Gebyr", "70,00"),
        line("A", "Hovedstol", "200,00", first=True),  # another line of A: sent
        line("B", "Hovedstol", "50,00", first=True),
        line("A", "Hovedstol", "1 000,00", first=True),  # rows 2-4 again: rows 6-8
        line("A", "Gebyr", "70,00"),
        line("A", "Hovedstol", "200,00", first=True),
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    assert [(inv.invoice_number, inv.rows) for inv in prepared.invoices] == [
        ("A", (0, 1, 2)),
        ("B", (3,)),
    ]
    assert prepared.invoices[0].payload["originalInvoiceAmount"] == 1270.0
    twice = "exactly, every cell the same: a line of the invoice listed twice, sent once"
    assert prepared.rejected == {
        4: Rejection(RowStatus.DUPLICATE, f"the row repeats row 2 {twice}"),
        5: Rejection(RowStatus.DUPLICATE, f"the row repeats row 3 {twice}"),
        6: Rejection(RowStatus.DUPLICATE, f"the row repeats row 4 {twice}"),
    }
    assert_every_row_once(prepared)


#: Lines of invoice A (and B's principal) for the tests of repeated lines, by letter.
LINES = {
    "P": ("A", "Hovedstol", "1 000,00"),
    "F": ("A", "Gebyr", "70,00"),
    "I": ("A", "Rente", "12,00"),
    "B": ("B", "Hovedstol", "50,00"),
    "Q": ("A", "Gebyr", "70,00"),  # a fee line with the invoice's dates and debtor
}


def lines_of(letters: str) -> Prepared:
    return run([line(*LINES[x], first=x in "PBQ") for x in letters], GROUPED_MAPPING, headers=G)


@pytest.mark.parametrize(
    ("letters", "repeats"),
    [
        ("PFPF", {2: 0, 3: 1}),  # one invoice's file appended to itself
        ("PPFF", {1: 0, 3: 2}),  # two exports appended, then sorted by invoice and line
        ("PFFBPFF", {4: 0, 5: 1, 6: 2}),  # equal fees, the invoice listed again later
        ("PFBPFB", {3: 0, 4: 1, 5: 2}),
        ("QQ", {1: 0}),  # an invoice of one line, listed twice, as a repeated number is
    ],
)
def test_an_invoice_listed_again_whole_is_sent_once(letters: str, repeats: dict[int, int]) -> None:
    """Every line of the invoice there the same number of times, in whatever order: the
    invoice listed that many times. Each line is kept once, the copies are DUPLICATE naming
    the line they repeat."""
    prepared = lines_of(letters)
    kept = [i for i, x in enumerate(letters) if x != "B" and i not in repeats]
    assert prepared.invoices[0].rows == tuple(kept)
    assert prepared.rejected == {
        r: Rejection(
            RowStatus.DUPLICATE,
            f"the row repeats row {e + 2} exactly, every cell the same: a line of the invoice "
            "listed twice, sent once",
        )
        for r, e in repeats.items()
    }
    assert_every_row_once(prepared)


@pytest.mark.parametrize(
    ("letters", "unclear"),
    [
        ("PFF", {2: 1}),  # two fees of 70, or a fee listed twice
        ("PFFB", {2: 1}),
        ("PBFF", {3: 2}),  # the invoice's lines apart
        ("PFPFI", {2: 0, 3: 1}),  # a second export that added interest, or two of each
        ("PFFPF", {3: 0, 2: 1, 4: 1}),
    ],
)
def test_equal_lines_that_may_be_two_claims_or_one_listed_twice_make_the_invoice_invalid(
    letters: str, unclear: dict[int, int]
) -> None:
    """Equal lines beside a line given once: two fees of 70, or one listed twice? Dropping one
    sent the invoice 70 short, keeping both sent an invoice listed twice with every claim twice;
    filedrop does not guess. The invoice is INVALID, each such line naming the first, and the
    rest of the file is sent."""
    prepared = lines_of(letters)
    assert [inv.invoice_number for inv in prepared.invoices] == ["B"] * ("B" in letters)
    a_rows = [i for i, x in enumerate(letters) if x != "B"]
    assert {r: status for r, (status, _) in prepared.rejected.items()} == dict.fromkeys(
        a_rows, RowStatus.INVALID
    )
    for row, earlier in unclear.items():
        assert (
            f"the row is the same as row {earlier + 2} in every cell, while other lines of the "
            "invoice are not given twice: two equal claims (two fees of 70) cannot be told from "
            "a line listed twice, and filedrop does not guess: make them one line (one fee of "
            "140), or delete the repeat"
        ) in prepared.rejected[row].text
    assert_every_row_once(prepared)


def test_a_repeated_line_of_an_invalid_invoice_is_invalid_not_sent_once() -> None:
    """Invoice A listed twice, its principal's due date impossible: A is INVALID, and the
    copies say so instead of "sent once"."""
    bad = line(*LINES["P"], first=True, Forfall="31.02.2024")
    rows = [bad, line(*LINES["F"]), line(*LINES["B"], first=True), bad, line(*LINES["F"])]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    assert [inv.invoice_number for inv in prepared.invoices] == ["B"]
    assert prepared.rejected[3] == Rejection(
        RowStatus.INVALID,
        "the row repeats row 2 exactly, every cell the same, and that invoice is invalid: "
        "nothing of it was sent",
    )
    assert prepared.rejected[4].status is RowStatus.INVALID
    # validate prints the problems: the copies are errors there too, not "duplicate".
    assert [(p.row, p.severity, p.rule) for p in prepared.problems if p.position in (3, 4)] == [
        (5, "error", "repeated_line_of_invalid"),
        (6, "error", "repeated_line_of_invalid"),
    ]
    assert_every_row_once(prepared)


def test_a_copy_of_a_line_of_a_duplicate_invoice_is_duplicate(tmp_path: Path) -> None:
    """Grouped by one column, numbered by another: B repeats A's number, so B is DUPLICATE, and
    B's lines listed again are DUPLICATE with it, not INVALID "that invoice is invalid" (exit
    1 for a file whose every invoice was sent), as B's repeated number is an error of B's."""
    by_nr_numbered_by_fnr = custom(
        tmp_path, GROUPED.replace('invoiceNumber = "Nr"', 'invoiceNumber = "Fnr"')
    )
    a = [line("A", "Hovedstol", "1 000,00", first=True, Fnr="100"), line("A", "Gebyr", "70,00")]
    b = [line("B", "Hovedstol", "500,00", first=True, Fnr="100"), line("B", "Gebyr", "70,00")]
    prepared = run([*a, *b, *b], by_nr_numbered_by_fnr, headers=[*G, "Fnr"])
    assert [inv.invoice_number for inv in prepared.invoices] == ["100"]
    assert {r: status for r, (status, _) in prepared.rejected.items()} == dict.fromkeys(
        (2, 3, 4, 5), RowStatus.DUPLICATE
    )
    assert_every_row_once(prepared)


def test_claims_adding_up_past_any_amount_make_their_invoice_invalid() -> None:
    """Each line 9·10^12, a valid amount; their sum has 14 whole digits, more than a JSON number
    carries exactly to the øre: INVALID, its lines saying why, and the other invoice sent."""
    big = "9" + "0" * 12
    rows = [
        line("A", "Hovedstol", big, first=True),
        line("A", "Gebyr", big),
        line("B", "Hovedstol", "50,00", first=True),
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    why = "the claims (Beløp) add up to more than an amount can hold (the invoice's sum)"
    assert messages(prepared) == [f"row 2: {why}"]
    assert prepared.rejected == {
        0: Rejection(RowStatus.INVALID, why),
        1: Rejection(RowStatus.INVALID, f"row 2: {why}"),
    }
    assert [inv.invoice_number for inv in prepared.invoices] == ["B"]
    assert_every_row_once(prepared)


DEFAULTED_LASTNAME = """
name = "custom"
[match]
files = ["*.csv"]
headers = ["Fakturanr", "Beløp"]
[read]
delimiter = ";"
decimal = ","
thousands = [" "]
dates = ["dd.mm.yyyy"]
[invoice]
type = { constant = "NOTICE" }
invoiceNumber = "Fakturanr"
originalInvoiceAmount = "Beløp"
currency = { constant = "NOK" }
invoiceDate = "Fakturadato"
dueDate = "Forfallsdato"
[debtor]
type = { constant = "COMPANY" }
lastname = { column = "Etternavn", default = { column = "Firma" } }
customerNumber = "Kundenr"
[[claims]]
type = { constant = "PRINCIPAL" }
remainingAmount = "Beløp"
"""


def test_no_debtor_names_the_columns_as_its_own_row_reads_them(tmp_path: Path) -> None:
    """A debtor column with another column as its default: an invoice with no debtor at all
    names the columns as its own row has them, not as the first row of the file does."""
    headers = ["Fakturanr", "Fakturadato", "Forfallsdato", "Beløp", "Etternavn", "Firma", "Kundenr"]
    dated = {"Fakturadato": "01.03.2024", "Forfallsdato": "15.03.2024", "Beløp": "100,00"}
    rows = [
        dated | {"Fakturanr": "1", "Etternavn": "", "Firma": "Bygg AS", "Kundenr": "7"},
        dated | {"Fakturanr": "2", "Etternavn": "", "Firma": "", "Kundenr": ""},
    ]
    prepared = run(rows, custom(tmp_path, DEFAULTED_LASTNAME), headers=headers)
    assert messages(prepared) == [
        "row 3: Etternavn, Kundenr are empty (the invoice needs a debtor)"
    ]


def test_a_zero_fee_line_is_left_out() -> None:
    """An empty or 0,00 fee is no claim; the invoice is still sent."""
    rows = [
        line("A", "Hovedstol", "100,00", first=True),
        line("A", "Gebyr", "0,00"),
        line("A", "Rente", ""),
    ]
    (invoice,) = run(rows, GROUPED_MAPPING, headers=G).invoices
    assert [c["type"] for c in invoice.payload["claims"]] == ["PRINCIPAL"]
    assert invoice.rows == (0, 1, 2)


def test_an_error_on_one_line_makes_every_line_of_the_invoice_invalid() -> None:
    """Every row of the invoice is INVALID, and the others name the bad row."""
    rows = [
        line("A", "Hovedstol", "100,00", first=True),
        line("A", "Gebyr", "-70,00"),
        line("B", "Hovedstol", "5,00", first=True),
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    assert [inv.invoice_number for inv in prepared.invoices] == ["B"]
    assert prepared.rejected == {
        0: Rejection(
            RowStatus.INVALID,
            'row 3: Beløp "-70,00" is not a positive amount (it must be more than 0)',
        ),
        1: Rejection(
            RowStatus.INVALID, 'Beløp "-70,00" is not a positive amount (it must be more than 0)'
        ),
    }


def test_a_group_missing_an_invoice_field_is_reported_once_on_its_first_row() -> None:
    """A field empty on every line of the invoice is one problem, on the invoice's first row."""
    rows = [line("A", "Hovedstol", "100,00", first=True, Forfall=""), line("A", "Gebyr", "70,00")]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    assert messages(prepared) == ["row 2: Forfall is empty (the invoice needs a due date)"]
    assert set(prepared.rejected) == {0, 1}


def test_lines_of_one_invoice_that_name_another_debtor_make_it_invalid() -> None:
    """A line with the same invoice number but another customer's name is not sent on the first
    line's invoice: every line of it is INVALID, and the message names the line at fault, the
    value and the line it disagrees with. A fee line with dates of its own is no other debtor:
    its invoice is sent, with the first line's dates."""
    rows = [
        line("A", "Hovedstol", "100,00", first=True),
        line("A", "Gebyr", "70,00", Etternavn="Berg", Forfall="15.03.2024"),
        line("B", "Hovedstol", "5,00", first=True),
        line("B", "Gebyr", "7,00", Dato="10.03.2024", Forfall="24.03.2024"),
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    assert messages(prepared) == [
        'row 3: Etternavn "Berg" differs from row 2 of the same invoice ("Lie"); the rows of '
        "one invoice must agree on it",
    ]
    assert {r: j.status for r, j in prepared.rejected.items()} == dict.fromkeys(
        (0, 1), RowStatus.INVALID
    )
    (sent,) = prepared.invoices
    assert (sent.invoice_number, sent.payload["dueDate"]) == ("B", "2024-03-15T00:00:00Z")
    assert_every_row_once(prepared)


def test_lines_that_agree_or_leave_invoice_fields_empty_make_one_invoice(tmp_path: Path) -> None:
    """The same debtor written with other capitals or spacing, a follow-up line left empty,
    holding "-" (what ERPs print for nothing), or filled by the mapping's default (Valuta empty:
    NOK, while the first line says EUR): one invoice, with the first line's values."""
    text = GROUPED.replace(
        'currency = { constant = "NOK" }', 'currency = { column = "Valuta", default = "NOK" }'
    )
    rows = [
        line("A", "Hovedstol", "100,00", first=True, Valuta="EUR"),
        line("A", "Gebyr", "70,00", Fornavn=" ÅSE ", Etternavn="lie", Valuta=""),
        line("A", "Rente", "1,00", Fornavn="-", Etternavn="-"),
    ]
    (invoice,) = run(rows, custom(tmp_path, text), headers=[*G, "Valuta"]).invoices
    assert invoice.rows == (0, 1, 2)
    assert invoice.payload["currency"] == "EUR"


def test_lines_naming_another_customer_are_caught_however_the_mapping_reads_the_debtor(
    tmp_path: Path,
) -> None:
    """A full name split into first and last names, and an id that a follow-up line gives only
    in the default column (another company's organisation number where the fødselsnummer is
    empty), are compared as the debtor they name."""
    full = GROUPED.replace('firstname = "Fornavn"\nlastname = "Etternavn"', 'full_name = "Kunde"')
    rows = [
        line("A", "Hovedstol", "100,00", first=True, Kunde="Åse Lie"),
        line("A", "Gebyr", "70,00", Kunde="Per Hansen"),
    ]
    prepared = run(rows, custom(tmp_path, full), headers=[*G, "Kunde"])
    assert prepared.invoices == []
    assert any("Kunde" in m and "differs from row 2" in m for m in messages(prepared))
    ids = GROUPED.replace(
        'lastname = "Etternavn"',
        'lastname = "Etternavn"\n'
        'identificationNumber = { column = "Fnr", default = { column = "Orgnr" } }',
    )
    rows = [
        line("A", "Hovedstol", "100,00", first=True, Fnr=PERSON, Orgnr=""),
        line("A", "Gebyr", "70,00", Fnr="", Orgnr="988077917"),
    ]
    prepared = run(rows, custom(tmp_path, ids), headers=[*G, "Fnr", "Orgnr"])
    assert prepared.invoices == []
    assert [m.split(" differs")[0] for m in messages(prepared)] == ['row 3: Orgnr "988077917"']


def test_names_spelt_with_other_code_points_or_dashes_for_nothing_agree() -> None:
    """Å written as one character or as A and a ring (both show Å), and "--" or "–" where a
    follow-up line has no name: the same debtor."""
    rows = [
        line("A", "Hovedstol", "100,00", first=True, Fornavn="\u00c5se"),
        line("A", "Gebyr", "70,00", Fornavn="A\u030ase", Etternavn="--"),
        line("A", "Rente", "1,00", Fornavn="\u2013", Etternavn="\u2014"),
    ]
    (invoice,) = run(rows, GROUPED_MAPPING, headers=G).invoices
    assert invoice.rows == (0, 1, 2)


def test_lines_that_disagree_are_sent_on_the_first_lines_values_as_a_warning(
    tmp_path: Path,
) -> None:
    """rules.group = "warning": sent as before this check, the first line's values, noted."""
    text = GROUPED.replace("[group]", '[rules]\ngroup = "warning"\n\n[group]')
    rows = [
        line("A", "Hovedstol", "100,00", first=True),
        line("A", "Gebyr", "70,00", Etternavn="Berg"),
    ]
    prepared = run(rows, custom(tmp_path, text), headers=G)
    (invoice,) = prepared.invoices
    assert invoice.payload["debtors"][0]["lastname"] == "Lie"
    assert prepared.notes == {
        1: 'Etternavn "Berg" differs from row 2 of the same invoice ("Lie"); the rows of one '
        "invoice must agree on it"
    }


def test_grouped_national_ids_that_disagree_are_shown_masked(tmp_path: Path) -> None:
    """A fødselsnummer in the message keeps its birth date only, as every message does."""
    text = GROUPED.replace(
        'lastname = "Etternavn"', 'lastname = "Etternavn"\nidentificationNumber = "Fnr"'
    )
    other = fnr(3, 5, 1990)
    rows = [
        line("A", "Hovedstol", "100,00", first=True, Fnr=PERSON),
        line("A", "Gebyr", "70,00", Fnr=other),
    ]
    prepared = run(rows, custom(tmp_path, text), headers=[*G, "Fnr"])
    (message,) = messages(prepared)
    assert PERSON not in message
    assert other not in message
    assert (
        f'Fnr "{other[:6]}*****" differs from row 2 of the same invoice ("{PERSON[:6]}*****")'
        in message
    )


def test_two_groups_with_one_invoice_number_are_duplicates(tmp_path: Path) -> None:
    """Grouping by customer while the number repeats: the later group is DUPLICATE."""
    text = GROUPED.replace('by = "Nr"', 'by = "Etternavn"')
    rows = [
        line("A", "Hovedstol", "1,00", first=True),
        line("A", "Hovedstol", "2,00", first=True, Etternavn="Berg"),
    ]
    prepared = run(rows, custom(tmp_path, text), headers=G)
    assert prepared.rejected == {
        1: Rejection(
            RowStatus.DUPLICATE,
            "invoice number A already appears on row 2, with other values in Beløp and "
            "Etternavn: this row is not sent, and that row says what became of the invoice",
        )
    }


# --- never lose a row -----------------------------------------------------------------------------

CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "-",
            " ",
            "0",
            "P",
            "B",
            "X",
            "NOK",
            "31.02.2024",
            "01.03.2024",
            "1 234,50",
            "-5",
            PERSON,
            "988077917",
            "a@b.no",
            "a@",
            "912 34 567",
            "1234567897",
            "240301",
        ]
    ),
    st.text(max_size=10),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries(dict.fromkeys(HEADERS, CELL)), min_size=1, max_size=6))
def test_any_cells_give_every_row_exactly_one_outcome(rows: list[dict[str, str]]) -> None:
    """Whatever the cells hold, prepare never raises and every row is sent or rejected once."""
    prepared = run(rows)
    assert_every_row_once(prepared)
    for pos, rejection in prepared.rejected.items():
        status, text = rejection.status, rejection.text
        assert status in (RowStatus.INVALID, RowStatus.DUPLICATE, RowStatus.SKIPPED) and text
        if status is RowStatus.SKIPPED:
            # A totals row (empty invoice number, a cell reading "Sum"): named by its rule.
            assert text.startswith("rule skip."), text
            continue
        own = [p.message for p in prepared.problems if p.row == pos + 2 and p.severity == "error"]
        assert own and text == "; ".join(own) if status is RowStatus.INVALID else text in own
    for p in prepared.problems:
        assert p.message and 2 <= p.row < 2 + len(rows)


def _everything(prepared: Prepared) -> tuple[Any, ...]:
    """All that prepare decided, comparable: each invoice's number, rows and JSON, then the rest."""
    return (
        [(inv.invoice_number, inv.rows) for inv in prepared.invoices],
        payloads(prepared.invoices),
        invoice_rows(prepared.invoices)[0].tolist(),
        list(prepared.rejected.items()),
        list(prepared.notes.items()),
        prepared.problems,
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            dict.fromkeys(HEADERS, CELL) | {"Fakturanr": st.sampled_from(["", "Sum", "7", "8"])}
        ),
        min_size=2,
        max_size=9,
    ),
    st.integers(1, 4),
    st.integers(1, 4),
    st.booleans(),
)
def test_a_long_file_prepared_in_parts_gives_what_one_go_gives(
    rows: list[dict[str, str]], first_rows: int, part_rows: int, excel: bool
) -> None:
    """Parts of a few rows (as 10,000 then 20,000 are for a long file): the same invoices with
    the same JSON, the same rejections, notes and problems, and a number repeated across parts
    still DUPLICATE."""
    whole = _everything(prepare(table(rows, excel=excel), ERP))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare_module, "FIRST_PART_ROWS", first_rows)
        patch.setattr(prepare_module, "PART_ROWS", part_rows)
        parts = prepare(table(rows, excel=excel), ERP)
    # Really in parts: each part's invoices are built from Columns of its own.
    starts = [0, *range(first_rows, len(rows), part_rows)] if len(rows) > first_rows else [0]
    used = {bisect_right(starts, inv.rows[0]) for inv in parts.invoices}
    assert len({id(inv.columns) for inv in parts.invoices}) == len(used)
    assert _everything(parts) == whole
    assert_every_row_once(parts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from("ABC"),
            st.sampled_from(["Hovedstol", "Gebyr", "Rente", "?"]),
            st.sampled_from(["10,00", "0", "", "-1", "x"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_grouped_lines_give_every_row_exactly_one_outcome(
    lines: list[tuple[str, str, str]],
) -> None:
    """Grouped rows, good and bad in any order: still one outcome per row."""
    prepared = run(
        [line(nr, kind, amount, first=True) for nr, kind, amount in lines],
        GROUPED_MAPPING,
        headers=G,
    )
    assert_every_row_once(prepared)


# --- the shipped examples -------------------------------------------------------------------------

CSV_PROBLEMS = [
    'row 5: Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy or dd.mm.yy)',
    'row 6: Beløp "-1 250,00" is not a positive amount (it must be more than 0)',
    'row 7: Fødselsnr "090679*****" is not a valid fødselsnummer or D-number (expected 11 digits '
    "with correct check digits)",
    'row 8: KID "104662403073" is not a valid KID (expected 2 to 25 digits ending in a mod 10 or '
    "mod 11 check digit)",
    "row 9: Fornavn is empty (a PRIVATE debtor needs a first name)",
    'row 12: Mobil "12 34" is not a phone number (numbers without a + country code are read as NO)',
    "row 14: invoice number 240302 already appears on row 3, with other values in Fakturadato "
    "and Forfallsdato: this row is not sent, and that row says what became of the invoice",
]
XLSX_PROBLEMS = [
    'row 9: Email "pal.saerheim(at)example.no" is not an email address',
    'row 11: Due date "31.02.2024" is not a date (expected dd.mm.yyyy)',
    'row 13: Amount "-250" is not a positive amount (it must be more than 0)',
    "row 14: Last name is empty (a PRIVATE debtor needs a last name)",
    'row 15: National ID "402771****" padded to 11 digits is not a valid fødselsnummer or D-number',
    'row 16: KID "003522410080" is not a valid KID (expected 2 to 25 digits ending in a mod 10 '
    "or mod 11 check digit)",
]


@pytest.mark.parametrize(
    ("name", "mapping", "problems", "sent", "duplicates"),
    [
        ("faktura-mars.csv", "norwegian-erp.toml", CSV_PROBLEMS, 7, {12}),
        ("apne-poster-mars.xlsx", "example.toml", XLSX_PROBLEMS, 5, set()),
    ],
)
def test_shipped_mappings_map_the_inbox_examples(
    name: str, mapping: str, problems: list[str], sent: int, duplicates: set[int]
) -> None:
    """Each example file picks its mapping by name and shows exactly its broken rows' problems."""
    chosen, tbl = select_mapping(
        load_mappings(ROOT / "mappings"), ROOT / "inbox-example" / name, read_table
    )
    assert chosen.path.name == mapping
    prepared = prepare(tbl, chosen)
    assert messages(prepared) == problems
    assert len(prepared.invoices) == sent
    assert {
        r for r, why in prepared.rejected.items() if why.status is RowStatus.DUPLICATE
    } == duplicates
    assert_every_row_once(prepared)


@pytest.mark.parametrize("header", [None, "E-post"])
def test_the_tripletex_mapping_finds_the_emails_under_a_header_too(
    tmp_path: Path, header: str | None
) -> None:
    """The example report has no header over its e-mails (read as column K); a real export
    heads them "E-post", and tripletex.toml refused the whole file: 'needs column "K"'."""
    path = tmp_path / "tripletex-mars.xlsx"
    book = openpyxl.load_workbook(ROOT / "inbox-example" / "tripletex-apne-poster.xlsx")
    book.active.cell(row=4, column=11, value=header)
    book.save(path)
    mapping = load_mapping(ROOT / "mappings" / "tripletex.toml")
    prepared = prepare(read_table(path, mapping.read), mapping)
    assert len(prepared.invoices) == 12
    assert sum("emails" in invoice.payload["debtors"][0] for invoice in prepared.invoices) == 9


def test_example_xlsx_sends_a_bad_email_for_the_api_to_refuse() -> None:
    """example.toml makes email a warning: the row is sent (the sandbox FAILS it) and noted."""
    chosen, tbl = select_mapping(
        load_mappings(ROOT / "mappings"),
        ROOT / "inbox-example" / "apne-poster-mars.xlsx",
        read_table,
    )
    prepared = prepare(tbl, chosen)
    bad = next(inv for inv in prepared.invoices if inv.invoice_number == "24-1003")
    assert bad.payload["debtors"][0]["emails"] == [{"value": "pal.saerheim(at)example.no"}]
    assert prepared.notes == {4: 'Email "pal.saerheim(at)example.no" is not an email address'}
    first = prepared.invoices[0].payload
    assert first["originalInvoiceAmount"] == 4605.5 and len(first["claims"]) == 3


@pytest.fixture
def gc_on() -> Iterator[None]:
    """The collector on before the test and again after it, whatever the test did."""
    gc.enable()
    yield
    gc.enable()


def test_gc_stays_off_until_the_last_of_two_overlapping_builds_leaves(gc_on: None) -> None:
    """Two builds at once: the first one out leaves the GC off; the last one out turns it on."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with no_cyclic_gc():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with no_cyclic_gc():
            second_in.set()
            first_out.wait(5)
            seen["on after the first left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"on after the first left": False}
    assert gc.isenabled()


def test_prepare_leaves_a_gc_the_caller_switched_off_off(gc_on: None) -> None:
    """prepare() turns the collector back on only if it was on when prepare came in."""
    gc.disable()
    prepared = run([row()])
    assert len(prepared.invoices) == 1
    assert not gc.isenabled()


# --- rows that are not invoices, names in one column, the type from the id ---------------------

OPEN = """
[read]
decimal = ","
dates = ["dd.mm.yyyy"]
{skip}
[invoice]
type = {{ constant = "NOTICE" }}
invoiceNumber = "Fakturanr"
originalInvoiceAmount = "Beløp"
currency = {{ constant = "NOK" }}
invoiceDate = "Fakturadato"
dueDate = "Forfallsdato"

[debtor]
type = {{ from_id = true }}
full_name = "Kunde"
identificationNumber = {{ column = "Id", pad = 11 }}

[[claims]]
type = {{ constant = "PRINCIPAL" }}
remainingAmount = "Beløp"
"""
OPEN_HEADERS = ["Fakturanr", "Fakturadato", "Forfallsdato", "Kunde", "Id", "Beløp"]


def open_row(**cells: str) -> dict[str, str]:
    good = {
        "Fakturanr": "1", "Fakturadato": "01.03.2024", "Forfallsdato": "15.03.2024",
        "Kunde": "Nordmann, Kari", "Id": PERSON, "Beløp": "100,00",
    }  # fmt: skip
    return good | cells


def open_run(tmp_path: Path, rows: list[dict[str, str]], skip: str = "") -> Prepared:
    return run(rows, custom(tmp_path, OPEN.format(skip=skip)), headers=OPEN_HEADERS)


def fates(prepared: Prepared) -> dict[int, tuple[str, str]]:
    return {r: (s.value, t) for r, (s, t) in prepared.rejected.items()}


def test_a_totals_row_is_skipped_without_any_setting(tmp_path: Path) -> None:
    """No invoice number and a cell reading "Sum:" or "Totalt": SKIPPED, naming skip.totals."""
    prepared = open_run(
        tmp_path,
        [open_row(), {"Kunde": "Sum:", "Beløp": "100,00"}, {"Fakturanr": "Totalt"}],
    )
    assert fates(prepared) == {
        1: ("SKIPPED", 'rule skip.totals: Kunde "Sum:" marks a totals row'),
        2: ("SKIPPED", 'rule skip.totals: Fakturanr "Totalt" marks a totals row'),
    }
    assert [p.severity for p in prepared.problems] == ["skipped", "skipped"]
    assert_every_row_once(prepared)


def test_an_invoice_number_that_begins_with_a_totals_word_is_a_totals_row(
    tmp_path: Path,
) -> None:
    """Uni Economy writes its subtotals, totals and count into the invoice number's column:
    "Sum kunde 10001", "Totalt for alle kunder", "Antall fakturaer: 3". Each was INVALID with
    three or four messages, and a run ended in error on a normal export. A number that begins
    with a totals or count word and a space or colon after it is the export's own line,
    SKIPPED: a subtotal with the customer's number and dates ("Sum 10001") went out as another
    invoice of the customer's. One joined to it by a dash or a dot is an invoice numbering's
    prefix (SUM-2024-001, Total-17), sent as any other invoice, as is "Summit-4"."""
    prefixes = ["Summit-4", "SUM-2024-001", "Total-17", "Sum.2024.7", "TOTAL-F240301"]
    lines = ["Sum kunde 10001", "Totalt for alle kunder", "Antall fakturaer: 3", "Sum 10001"]
    lines += ["Sum: 900,00", "Antall: 3", "Sum. kunde 10002"]
    rows = [
        open_row(),
        open_row(Fakturanr=lines[0], Kunde="", Beløp="2 000,00"),
        {"Fakturanr": lines[1], "Beløp": "2 900,00"},
        {"Fakturanr": lines[2]},
        open_row(Fakturanr=lines[3], Beløp="2 000,00"),  # whole, dates and all
        {"Fakturanr": lines[4]},
        {"Fakturanr": lines[5]},
        {"Fakturanr": lines[6], "Beløp": "900,00"},
        *(open_row(Fakturanr=number) for number in prefixes),
    ]
    prepared = open_run(tmp_path, rows)
    assert fates(prepared) == {
        k: ("SKIPPED", f'rule skip.totals: Fakturanr "{line}" marks a totals row')
        for k, line in enumerate(lines, start=1)
    }
    assert [inv.invoice_number for inv in prepared.invoices] == ["1", *prefixes]
    assert_every_row_once(prepared)


def test_a_row_with_an_invoice_number_is_never_a_totals_row(tmp_path: Path) -> None:
    """A customer called "Total" on an invoice is sent; an empty row without the word is INVALID."""
    prepared = open_run(
        tmp_path, [open_row(Kunde="Sum, Kari"), open_row(Fakturanr="", Kunde="X Y")]
    )
    assert len(prepared.invoices) == 1
    assert fates(prepared) == {
        1: ("INVALID", "Fakturanr is empty (the invoice needs an invoice number)")
    }


def test_a_row_repeating_the_header_is_skipped(tmp_path: Path) -> None:
    """An export that repeats its header at every page: that row is SKIPPED saying so, even with
    skip.totals off (it was INVALID with a message per column). A row whose invoice number only
    reads like the header, with data beside it, is checked as any row."""
    header = dict(zip(OPEN_HEADERS, OPEN_HEADERS, strict=True))
    rows = [open_row(), header, header | {"Beløp": ""}, open_row(Fakturanr="2"), open_row(
        Fakturanr="Fakturanr", Kunde="Hansen, Ola"
    )]  # fmt: skip
    for skip in ("", "[skip]\ntotals = false\n"):
        prepared = open_run(tmp_path, rows, skip=skip)
        assert fates(prepared) == {
            1: ("SKIPPED", "the row repeats the header"),
            2: ("SKIPPED", "the row repeats the header"),
        }
        assert [inv.invoice_number for inv in prepared.invoices] == ["1", "2", "Fakturanr"]
        assert_every_row_once(prepared)


def test_a_header_repeated_in_other_case_or_spacing_is_skipped_too(tmp_path: Path) -> None:
    """Headers are compared without case and spaces everywhere: a page header in capitals, or
    with "Faktura nr" for "Fakturanr", repeats it (it was INVALID, a clause for every column).
    One with a cell that is no header (a page number) is checked as any row."""
    shout = {name: name.upper() for name in OPEN_HEADERS}
    spaced = {name: " ".join(name) if name == "Fakturanr" else name for name in OPEN_HEADERS}
    paged = dict(zip(OPEN_HEADERS, OPEN_HEADERS, strict=True)) | {"Kunde": "Side 2"}
    prepared = open_run(tmp_path, [open_row(), shout, spaced, paged, open_row(Fakturanr="2")])
    assert {row: fate for row, fate in fates(prepared).items() if row < 3} == {
        1: ("SKIPPED", "the row repeats the header"),
        2: ("SKIPPED", "the row repeats the header"),
    }
    assert fates(prepared)[3][0] == "INVALID"
    assert_every_row_once(prepared)


@pytest.mark.parametrize(
    ("moved", "said"),
    [
        ({"Kunde": "Id", "Id": "Kunde"}, '"Id" stands under "Kunde"; "Kunde" stands under "Id"'),
        (
            {"Fakturanr": "Beløp", "Beløp": "Fakturanr"},
            '"Beløp" stands under "Fakturanr"; "Fakturanr" stands under "Beløp"',
        ),
        (
            {"Fakturanr": "Fakturanummer", "Kunde": "Id", "Id": "Kunde"},
            '"Id" stands under "Kunde"; "Kunde" stands under "Id"',
        ),
    ],
    ids=[
        "two columns swapped",
        "the invoice number's column moved",
        "the invoice number's column spelt otherwise",
    ],
)
def test_a_header_again_with_its_columns_elsewhere_refuses_the_file(
    tmp_path: Path, moved: dict[str, str], said: str
) -> None:
    """Two exports pasted into one file, the second's columns in another order: the rows below
    its header would be read under the first's, one column's amount or id sent as another's
    (found by a hostile review: a claim of 5 000 sent on an invoice of 1 000). The file is
    refused, naming the row and the columns that moved; a page header with a page number in it
    is still checked as any row (above)."""
    header = dict(zip(OPEN_HEADERS, OPEN_HEADERS, strict=True)) | moved
    rows = [open_row(), header, open_row(Fakturanr="2")]
    with pytest.raises(ReadError) as refused:
        open_run(tmp_path, rows)
    assert refused.value.detail == (
        f"row 3 is a header again, with its columns in other places ({said}): two exports were "
        "put into one file, and the rows below it would be read under the first header's "
        "columns; send each export as a file of its own"
    )


def test_totals_false_turns_the_built_in_rule_off(tmp_path: Path) -> None:
    """With skip.totals = false a Sum row is checked like any row, so it is INVALID."""
    prepared = open_run(tmp_path, [open_row(), {"Kunde": "Sum"}], skip="[skip]\ntotals = false\n")
    assert fates(prepared)[1][0] == "INVALID"


def test_skip_rules_match_text_empty_cells_and_amounts(tmp_path: Path) -> None:
    """is = [...] matches text (case ignored) and "" an empty cell; at_most matches amounts;
    the first rule that matches is named, and a skipped row is no DUPLICATE of another."""
    skip = (
        '[skip]\ncredit_notes = { column = "Beløp", at_most = 0 }\n'
        'subtotals = { column = "Kunde", is = ["delsum", ""] }\n'
    )
    rows = [
        open_row(),
        open_row(Fakturanr="5", Beløp="-50,00"),
        open_row(Fakturanr="2", Beløp="0"),
        open_row(Fakturanr="3", Kunde="DELSUM"),
        open_row(Fakturanr="4", Kunde=""),
        open_row(Fakturanr="2", Beløp="0,01"),
    ]
    prepared = open_run(tmp_path, rows, skip=skip)
    assert fates(prepared) == {
        1: ("SKIPPED", 'rule skip.credit_notes: Beløp "-50,00" is 0 or less'),
        2: ("SKIPPED", 'rule skip.credit_notes: Beløp "0" is 0 or less'),
        3: ("SKIPPED", 'rule skip.subtotals: Kunde is "DELSUM"'),
        4: ("SKIPPED", "rule skip.subtotals: Kunde is empty"),
    }
    assert [inv.invoice_number for inv in prepared.invoices] == ["1", "2"]


def _day(offset: int) -> str:
    return f"{dt.date.today() + dt.timedelta(days=offset):%d.%m.%Y}"


def _not_due(due: str, on: dt.date | None = None) -> str:
    return (
        f'Forfallsdato "{due}" has not passed on {on or dt.date.today():%d.%m.%Y}: the invoice is'
        " not overdue yet, and is not sent"
    )


def test_an_invoice_not_due_yet_is_skipped_until_it_is(tmp_path: Path) -> None:
    """An export of open items holds invoices whose due date has not come: each went to
    collection, and its debtor, with days left to pay, got a collection letter. An invoice due
    today or later is SKIPPED, naming the built-in rule skip.not_due and the day; one due
    yesterday is sent. What else is wrong with an invoice is said first: a due date that is no
    date, a credit note's amount, a number already in the file. skip.not_due = false (or true,
    the default) sends (or holds) them as before; a rule of one's own cannot take its name."""
    rows = [
        open_row(Fakturanr="1", Forfallsdato=_day(-1)),
        open_row(Fakturanr="2", Forfallsdato=_day(0)),
        open_row(Fakturanr="3", Forfallsdato=_day(30)),
        open_row(Fakturanr="4", Forfallsdato="31.02.2024"),
        {"Kunde": "Sum:", "Forfallsdato": _day(1)},  # a totals row is named as one
        open_row(Fakturanr="5", Forfallsdato=_day(9), Beløp="-400,00"),
        open_row(Fakturanr="1", Forfallsdato=_day(20)),  # its due date moved: said, not hidden
    ]
    prepared = open_run(tmp_path, rows)
    assert fates(prepared) == {
        1: ("SKIPPED", f"rule skip.not_due: {_not_due(_day(0))}"),
        2: ("SKIPPED", f"rule skip.not_due: {_not_due(_day(30))}"),
        3: ("INVALID", 'Forfallsdato "31.02.2024" is not a date (expected dd.mm.yyyy)'),
        4: ("SKIPPED", 'rule skip.totals: Kunde "Sum:" marks a totals row'),
        5: ("INVALID", 'Beløp "-400,00" is not a positive amount (it must be more than 0)'),
        6: (
            "DUPLICATE",
            "invoice number 1 already appears on row 2, with other values in Forfallsdato: this "
            "row is not sent, and that row says what became of the invoice",
        ),
    }
    assert [p.message for p in prepared.problems if p.severity == "skipped"] == [
        f"rule skip.not_due: {_not_due(_day(0))}",
        f"rule skip.not_due: {_not_due(_day(30))}",
        'rule skip.totals: Kunde "Sum:" marks a totals row',
    ]
    assert [inv.invoice_number for inv in prepared.invoices] == ["1"]
    assert_every_row_once(prepared)
    sent = open_run(tmp_path, rows, skip="[skip]\nnot_due = false\n")
    assert [inv.invoice_number for inv in sent.invoices] == ["1", "2", "3"]
    held = open_run(tmp_path, rows, skip="[skip]\nnot_due = true\n")
    assert [inv.invoice_number for inv in held.invoices] == ["1"]
    with pytest.raises(MappingError, match=re.escape(
        'key "skip.not_due" is { column = "Forfallsdato", is = [""] }; it is built in and on: '
        "write not_due = false to send invoices before they fall due, and give a rule of your "
        "own another name."
    )):  # fmt: skip
        open_run(tmp_path, rows, skip='[skip]\nnot_due = { column = "Forfallsdato", is = [""] }\n')


def test_an_invoice_is_judged_by_its_own_due_date_and_waits_whole(tmp_path: Path) -> None:
    """Rows grouped into one invoice: the invoice's due date (its first row's, as it is sent)
    decides, and every row of an invoice not due waits with it, naming that row (a copy of one
    of its lines too, which said "sent once"); a line's own later date does not hold an overdue
    invoice back. A serial number or another way of writing
    the date is shown as the day it reads."""
    rows = [
        line("7", "Hovedstol", "100,00", first=True, Forfall=_day(3)),
        line("8", "Hovedstol", "100,00", first=True, Forfall=_day(-10)),
        line("7", "Gebyr", "70,00", Forfall=_day(-10)),
        line("8", "Gebyr", "70,00", Forfall=_day(5)),
        line("7", "Hovedstol", "100,00", first=True, Forfall=_day(3)),  # listed twice
        line("7", "Gebyr", "70,00", Forfall=_day(-10)),
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    why = _not_due(_day(3)).replace("Forfallsdato", "Forfall")
    copy = (
        "rule skip.not_due: the row repeats row {} exactly, every cell the same, and that "
        "invoice is not overdue yet: nothing of it is sent"
    )
    assert fates(prepared) == {
        0: ("SKIPPED", f"rule skip.not_due: {why}"),
        2: ("SKIPPED", f"rule skip.not_due: row 2: {why}"),
        4: ("SKIPPED", copy.format(2)),
        5: ("SKIPPED", copy.format(4)),
    }
    assert [p.message for p in prepared.problems][-2:] == [copy.format(2), copy.format(4)]
    assert [inv.invoice_number for inv in prepared.invoices] == ["8"]
    assert_every_row_once(prepared)
    iso = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    mapping = OPEN.format(skip="").replace('"dd.mm.yyyy"', '"dd.mm.yyyy", "yyyy-mm-dd"')
    prepared = run([open_row(Forfallsdato=iso)], custom(tmp_path, mapping), headers=OPEN_HEADERS)
    assert fates(prepared) == {0: ("SKIPPED", f"rule skip.not_due: {_not_due(iso)}".replace(
        f'"{iso}"', f'"{iso}" ({_day(3)})'
    ))}  # fmt: skip


def test_the_day_an_invoice_must_be_overdue_on_is_the_one_given() -> None:
    """prepare judges on the day it is given (the pipeline gives the day a file was first
    taken), not on the computer's date."""
    rows = [row(Forfallsdato="15.03.2024")]
    assert prepare(table(rows), ERP).invoices
    held = prepare(table(rows), ERP, today=dt.date(2024, 3, 15))
    why = _not_due("15.03.2024", dt.date(2024, 3, 15))
    assert fates(held) == {0: ("SKIPPED", f"rule skip.not_due: {why}")}


#: What an invoice whose credit note or payment the file leaves out is told to do.
CREDIT_CURE = (
    "the invoice would go for its whole amount, that line not subtracted; export the amount "
    "still owed, or remove the line if it is on another invoice"
)


def test_a_ledgers_payment_line_skipped_by_its_type_is_a_payment_shown(tmp_path: Path) -> None:
    """A customer ledger: invoice lines and payment lines in one amount column, told apart by
    a type column that a skip rule reads. The payment of 400 on invoice 6001, left out by its
    type, went unseen, and 6001 went for its whole 1 000 (a hostile review, helper-138). A line
    a rule leaves out with an amount below zero, carrying an invoice's number, is a payment
    shown on it (rule paid): refused where the claims do not take it off; taken off where they
    are read from what is still owed (helper-142: refused as a credit note, that ledger went no
    more). One of 0, or a note line with no amount, leaves its invoice alone."""
    skip = '[skip]\npayments = { column = "Bilagstype", is = ["Innbetaling", "Notat"] }\n'
    rows = [
        open_row(Bilagstype="Faktura", Fakturanr="6001", Beløp="1 000,00", Rest="1 000,00"),
        open_row(Bilagstype="Innbetaling", Fakturanr="6001", Beløp="-400,00", Rest="0"),
        open_row(Bilagstype="Faktura", Fakturanr="6002", Beløp="2 000,00", Rest="2 000,00"),
        open_row(Bilagstype="Innbetaling", Fakturanr="6002", Beløp="0,00", Rest="0"),
        open_row(Bilagstype="Notat", Fakturanr="6002", Beløp="", Rest=""),
        open_row(Bilagstype="Faktura", Fakturanr="6003", Beløp="1 000,00", Rest="600,00"),
        open_row(Bilagstype="Innbetaling", Fakturanr="6003", Beløp="-400,00", Rest="0"),
        # Two payments add up (helper-143: judged by the larger, 600 went where 300 was owed).
        open_row(Bilagstype="Faktura", Fakturanr="6004", Beløp="1 000,00", Rest="600,00"),
        open_row(Bilagstype="Innbetaling", Fakturanr="6004", Beløp="-300,00", Rest="0"),
        open_row(Bilagstype="Innbetaling", Fakturanr="6004", Beløp="-400,00", Rest="0"),
    ]
    headers = [*OPEN_HEADERS, "Bilagstype", "Rest"]
    prepared = run(rows, custom(tmp_path, OPEN.format(skip=skip)), headers=headers)
    assert fates(prepared)[0] == (
        "INVALID",
        'on row 3, which carries its invoice number, Beløp "-400,00" shows a payment on this '
        "invoice, but its claims add up to 1000.00, more than its amount less that payment "
        "(600.00), so it would go to collection for what was paid: export the amount still "
        "owed and read it as a claim's remainingAmount, or remove row 3 if it is on another "
        "invoice",
    )
    assert sorted(r for r, (status, _) in fates(prepared).items() if status == "INVALID") == [
        0,
        5,
        7,
    ]
    assert [inv.invoice_number for inv in prepared.invoices] == ["6002"]
    assert_every_row_once(prepared)
    owed = OPEN.format(skip=skip).replace('remainingAmount = "Beløp"', 'remainingAmount = "Rest"')
    netted = run(rows, custom(tmp_path, owed), headers=headers)
    assert [inv.invoice_number for inv in netted.invoices] == ["6002", "6003"]
    assert [inv.payload["claims"][0]["remainingAmount"] for inv in netted.invoices] == [
        2000.0,
        600.0,
    ]
    assert fates(netted)[7] == (
        "INVALID",
        'on rows 10 and 11, which carry its invoice number, Beløp "-300,00 + -400,00" shows a '
        "payment on this invoice, but its claims add up to 600.00, more than its amount less "
        "that payment (300.00), so it would go to collection for what was paid: export the "
        "amount still owed and read it as a claim's remainingAmount, or remove rows 10 and 11 "
        "if they are on another invoice",
    )


def test_an_invoice_with_thousands_of_payment_lines_is_told_in_one_sentence(tmp_path: Path) -> None:
    """Each of an invoice's payment lines was named in its message, rows and cells: 2,000
    lines made a page of one sentence. Five are named, and how many more."""
    skip = '[skip]\npayments = { column = "Bilagstype", is = ["Innbetaling"] }\n'
    rows = [open_row(Bilagstype="Faktura", Fakturanr="6100", Beløp="5 000,00")]
    rows += [open_row(Bilagstype="Innbetaling", Fakturanr="6100", Beløp="-1,00")] * 2_000
    prepared = run(
        rows, custom(tmp_path, OPEN.format(skip=skip)), headers=[*OPEN_HEADERS, "Bilagstype"]
    )
    status, message = fates(prepared)[0]
    assert status == "INVALID" and len(message) < 600
    assert message.startswith(
        'on rows 3, 4, 5, 6, 7 and 1,995 more, which carry its invoice number, Beløp "-1,00 + '
        '-1,00 + -1,00 + -1,00 + -1,00 + 1,995 more" shows a payment on this invoice, but its '
        "claims add up to 5000.00, more than its amount less that payment (3000.00)"
    )


def test_an_invoice_with_a_credit_note_of_its_number_in_the_file_is_refused(
    tmp_path: Path,
) -> None:
    """A ledger holding invoice 70001 and a credit note booked on the same number: the credit
    note was skipped and the invoice went for its whole amount, its debt perhaps cancelled. The
    invoice is INVALID, naming the credit note's row; a row of 0 (no credit) or a credit note of
    another number leaves an invoice alone, and so does the amount rule set to a warning."""
    skip = '[skip]\ncredit_notes = { column = "Beløp", at_most = 0 }\n'
    rows = [
        open_row(Fakturanr="70001", Beløp="1 000,00"),
        open_row(Fakturanr="70002", Beløp="800,00"),
        open_row(Fakturanr="70001", Beløp="-1 000,00"),
        open_row(Fakturanr="70002", Beløp="0"),
        open_row(Fakturanr="70003", Beløp="-200,00"),
    ]
    prepared = open_run(tmp_path, rows, skip=skip)
    assert fates(prepared) == {
        0: (
            "INVALID",
            "invoice number 70001 is also on row 4, a credit note or payment left out (rule "
            f'skip.credit_notes: Beløp "-1 000,00" is 0 or less): {CREDIT_CURE}',
        ),
        2: ("SKIPPED", 'rule skip.credit_notes: Beløp "-1 000,00" is 0 or less'),
        3: ("SKIPPED", 'rule skip.credit_notes: Beløp "0" is 0 or less'),
        4: ("SKIPPED", 'rule skip.credit_notes: Beløp "-200,00" is 0 or less'),
    }
    assert [inv.invoice_number for inv in prepared.invoices] == ["70002"]
    assert_every_row_once(prepared)
    warned = open_run(tmp_path, rows, skip=skip + '\n[rules]\namount = "warning"\n')
    assert [inv.invoice_number for inv in warned.invoices] == ["70001", "70002"]


PAID_TAIL = (
    "export the amount still owed and read it as a claim's remainingAmount, or name "
    '"Innbetalt" in [match] unread if it is not a payment on this invoice'
)


def paid_says(
    cell: str, *, owed: str = "", left: str = "", elsewhere: str = "", amount: str = ""
) -> str:
    """What a row showing a payment in an unread Innbetalt column says: for an amount paid,
    what the claims owe (``owed``) and what the invoice's amount less it is (``left``)."""
    if any(c.isdigit() for c in cell) and not owed and not amount:
        return (
            f'{elsewhere}Innbetalt "{cell}" holds a number that filedrop cannot read as an '
            "amount paid (a date, or an amount written otherwise), so what was paid on it "
            "cannot be told: write the payment as the column's other amounts are written, or "
            f"{PAID_TAIL}"
        )
    if amount:
        why = (
            "but the invoice's amount is not read from a column, or is no number, so nothing "
            "tells whether its claims had it taken off: map originalInvoiceAmount from the "
            "column of the invoice's whole amount, or name "
            '"Innbetalt" in [match] unread if it is not a payment on this invoice'
        )
        return f'{elsewhere}Innbetalt "{cell}" shows a payment on this invoice, {why}'
    if owed:
        return (
            f'{elsewhere}Innbetalt "{cell}" shows a payment on this invoice, but its claims add '
            f"up to {owed}, more than its amount less that payment ({left}), so it would go to "
            f"collection for what was paid: {PAID_TAIL}"
        )
    return (
        f'{elsewhere}Innbetalt "{cell}" is neither empty, 0 nor "Nei", so this invoice may have '
        "been paid, but its claims add up to its whole amount or more, so it would go to "
        f"collection for all of it: {PAID_TAIL}"
    )


#: What invoice 4 500,00 says of 1 000,00 paid on row 3, a row carrying its number.
PAID_ON_ROW_3 = paid_says(
    "1 000,00",
    owed="4500.00",
    left="3500.00",
    elsewhere="on row 3, which carries its invoice number, ",
)


def paid_file(tmp_path: Path, rows: list[dict[str, Any]], *, excel: bool = False) -> Path:
    """``rows`` with an Innbetalt column (and any other they name) in a real file; in a
    workbook the amounts of Innbetalt are numbers, as a spreadsheet holds them."""
    headers = [*HEADERS, *dict.fromkeys(h for r in rows for h in r if h not in HEADERS)]
    typed = {"Innbetalt": {"0,00": 0, "1 000,00": 1000, "4 500,00": 4500}}
    return row_file(tmp_path, rows, headers=headers, excel=excel, typed=typed)


def prepared_from(path: Path, mapping: Mapping) -> Prepared:
    return prepare(read_table(path, mapping.read), mapping)


@pytest.mark.parametrize("excel", [False, True])
def test_an_invoice_showing_a_payment_the_mapping_leaves_unread_is_refused(
    tmp_path: Path, excel: bool
) -> None:
    """An export with Innbetalt beside Beløp and no column of what is still owed, taken by the
    shipped mapping (which reads Beløp alone): a partly paid invoice went to collection for its
    whole amount, and one marked paid went too. Each invoice showing a payment is INVALID (rule
    amount), naming the cell and the ways on; one showing none (0 however written, empty, Nei)
    is sent, and so is every invoice once the mapping names the column unread or makes the rule
    a warning. A totals row stays SKIPPED. A skip rule reading the column leaves the rows it does
    not skip to be checked (a hostile review, helper-130: Ja skipped, 1 000,00 went whole)."""
    paid = ["0,00", "1 000,00", "", "Ja", "Nei takk", "4 500,00", "12.03.2024", "kr -"]
    rows = [row(Fakturanr=str(70001 + i), Innbetalt=cell) for i, cell in enumerate(paid)]
    rows.append({"Fakturanr": "", "Kundenr": "Sum", "Beløp": "31 500,00", "Innbetalt": "x"})
    path = paid_file(tmp_path, rows, excel=excel)
    prepared = prepared_from(path, ERP)
    shown = {"1 000,00": "1000", "4 500,00": "4500"} if excel else {}
    refused = {1: "1 000,00", 3: "Ja", 5: "4 500,00", 6: "12.03.2024"}
    left = {1: "3500.00", 5: "0.00"}
    assert {r: why for r, why in fates(prepared).items() if r < 8} == {
        r: (
            "INVALID",
            paid_says(shown.get(cell, cell), owed="4500.00" * (r in left), left=left.get(r, "")),
        )
        for r, cell in refused.items()
    }
    assert fates(prepared)[8][0] == "SKIPPED"
    assert [inv.invoice_number for inv in prepared.invoices] == ["70001", "70003", "70005", "70008"]
    assert_every_row_once(prepared)
    told = ERP_TEXT.replace("[match]\n", '[match]\nunread = ["innbetalt"]\n', 1)
    warned = ERP_TEXT.replace("[rules]\n", '[rules]\npaid = "warning"\n', 1)
    assert ERP_TEXT not in (told, warned)
    for text in (told, warned):
        assert len(prepared_from(path, custom(tmp_path, text)).invoices) == 8
    # Passed on in a field of the user's own, as an amount, it is not taken off (helper-138:
    # paidAmount = { column = "Innbetalt", as = "amount" } let every paid invoice go whole).
    for table in ("[invoice]", "[invoice.metadata]"):
        own = f'{ERP_TEXT}\n{table}\npaidAmount = {{ column = "Innbetalt", as = "amount" }}\n'
        if table == "[invoice]":  # a second [invoice] is no TOML: the field goes into the first
            own = ERP_TEXT.replace(
                "[invoice]\n", '[invoice]\npaidAmount = { column = "Innbetalt", as = "amount" }\n'
            )
        refused = fates(prepared_from(path, custom(tmp_path, own)))
        # (Nei takk and kr - are no amounts of that field: refused by it, not by rule paid.)
        assert {r: refused[r] for r in (1, 5)} == {1: fates(prepared)[1], 5: fates(prepared)[5]}
    # A rule of its own: amount = "warning" (for more than two decimals, say) let every paid
    # invoice go whole (a hostile review, helper-134).
    lax = ERP_TEXT.replace("[rules]\n", '[rules]\namount = "warning"\n', 1)
    assert len(prepared_from(path, custom(tmp_path, lax)).invoices) == 4
    skips = ERP_TEXT + '\n[skip]\npaid = { column = "Innbetalt", is = ["Ja"] }\n'
    skipping = prepared_from(path, custom(tmp_path, skips))
    assert fates(skipping)[3] == ("SKIPPED", 'rule skip.paid: Innbetalt is "Ja"')
    assert [r for r, (status, _) in fates(skipping).items() if status == "INVALID"] == [1, 5, 6]


@pytest.mark.parametrize("excel", [False, True])
def test_what_a_cell_of_what_was_paid_says_nothing_was_paid_with(
    tmp_path: Path, excel: bool
) -> None:
    """Zero and no, as spreadsheets and people write them, show no payment; a text that only
    begins with a no, or holds a number, may (helper-132: "Nei 500", "Open 200" and "Ikke
    fullt betalt" let invoices go whole, and USANN, Norwegian Excel's FALSE, was a payment).
    An Excel error is no answer: #N/A, where a lookup of the payments found nothing, read as
    a plain no and #NULL! as the word null, and the invoice went whole (helper-138); in a
    workbook they are real error cells."""
    nothing = ["kr -", "- kr", "0.00", "0 %", "$0.00", "kr \u2212", "USANN", "Ikkje", "Nej"]
    nothing += ["Ingenting", "Null", "Nei takk", "Ikke betalt", "N/A", "Ingen innbetaling"]
    shown = ["Nei 500", "Open 200", "Ikke fullt betalt", "No. 12", "Nei - delvis betalt"]
    shown += ["N 500", "kr 0,50", "(500)", "Ja", "#N/A", "#NULL!", "#DIV/0!"]
    shown += [] if excel else ["#I/T", "#NAVN?"]  # as Norwegian Excel saves them in a CSV
    rows = [row(Fakturanr=str(71001 + i), Innbetalt=cell) for i, cell in enumerate(nothing + shown)]
    prepared = prepared_from(paid_file(tmp_path, rows, excel=excel), ERP)
    assert sorted(fates(prepared)) == list(range(len(nothing), len(nothing) + len(shown)))
    error = fates(prepared)[len(nothing) + shown.index("#DIV/0!")]
    assert error == (
        "INVALID",
        'Innbetalt "#DIV/0!" is an Excel error, no value, so this invoice may have been paid, '
        "but its claims add up to its whole amount or more, so it would go to collection for "
        f"all of it: {PAID_TAIL}",
    )


def test_a_column_of_words_that_say_nothing_of_a_payment_is_not_one(tmp_path: Path) -> None:
    """A column headed Betaling holding how each invoice is paid (AvtaleGiro, eFaktura): every
    invoice "may have been paid", and the whole file was refused (helper-138). A column none of
    whose cells is an amount, a number, a yes or a no, or an error says nothing of what was
    paid, and is not looked at; one with a yes (Delvis) among such words is, and so are they.
    Only words of how an invoice is paid make such a column: any other may mark a payment."""
    ways = ["AvtaleGiro", "eFaktura", "Giro", "Kort", ""]
    rows = [row(Fakturanr=str(75001 + i), Betaling=way) for i, way in enumerate(ways)]
    prepared = prepared_from(paid_file(tmp_path, rows), ERP)
    assert fates(prepared) == {}
    assert len(prepared.invoices) == len(ways)
    rows.append(row(Fakturanr="75100", Betaling="Delvis"))
    told = fates(prepared_from(paid_file(tmp_path, rows), ERP))
    assert sorted(told) == [0, 1, 2, 3, 5]
    assert told[0][1].startswith('Betaling "AvtaleGiro" is neither empty, 0 nor "Nei"')
    # A payment marked with any other word, or a tick, is one: ignored as words that say
    # nothing of a payment, the paid invoice went whole (helper-142).
    for mark in ["Oppgjort", "Kvittert", "Lukket", "Closed", "Cleared", "\u2713", "Bet."]:
        marked = [row(Fakturanr="75200", Betalt=mark), row(Fakturanr="75201", Betalt="")]
        assert sorted(fates(prepared_from(paid_file(tmp_path, marked), ERP))) == [0], mark
    # Under a header that says it was paid, how is how it was paid: "Betalt: Kort" on the
    # paid row, empty on the other, went whole (helper-143).
    for header in ("Betalt", "Innbetalt", "Paid"):
        marked = [row(Fakturanr="75300", **{header: "Kort"}), row(Fakturanr="75301")]
        assert sorted(fates(prepared_from(paid_file(tmp_path, marked), ERP))) == [0], header


def test_a_payment_shown_on_a_row_repeating_an_invoice_number_refuses_the_invoice(
    tmp_path: Path,
) -> None:
    """A ledger repeating an invoice's line with its payment on the later line: the later row
    was DUPLICATE, its payment went with it, and the first row was sent whole, while the report
    said "error" beside "0 invalid" (a hostile review, helper-130). The invoice is INVALID on
    its first row, naming the row with the payment; the repeat stays a repeat of it."""
    rows = [
        row(Fakturanr="70001", Innbetalt="0,00"),
        row(Fakturanr="70001", Innbetalt="1 000,00"),
        row(Fakturanr="70002", Innbetalt="0,00"),
    ]
    prepared = prepared_from(paid_file(tmp_path, rows), ERP)
    assert fates(prepared) == {
        0: (
            "INVALID",
            PAID_ON_ROW_3,
        ),
        1: (
            "INVALID",
            "invoice number 70001 already appears on row 2, which is invalid and not sent: "
            "correct that row, or keep only one row with that number",
        ),
    }
    assert [inv.invoice_number for inv in prepared.invoices] == ["70002"]


def test_an_amount_paid_counts_over_a_text_and_an_unreadable_number_is_refused(
    tmp_path: Path,
) -> None:
    """helper-136: a status column before the amount (Betalt "Ja" beside Innbetalt 1 000,00)
    judged the invoice by the text, which any claim below the amount passes, so claims 0,01
    below went; and a payment written in a format filedrop does not read (1,000.00 in a file
    of decimal commas, 1'000) passed the same way. The amount counts over the text; a number
    that is no amount refuses the invoice, as what was paid cannot be told."""
    rows = [
        row(Fakturanr="73001", Betalt="Ja", Innbetalt="1 000,00", Rest="4 499,00"),
        row(Fakturanr="73002", Betalt="Ja", Innbetalt="1 000,00", Rest="3 500,00"),
        row(Fakturanr="73003", Betalt="", Innbetalt="1'000", Rest="3 500,00"),
    ]
    text = ERP_TEXT.replace('remainingAmount = "Beløp"', 'remainingAmount = "Rest"')
    prepared = prepared_from(paid_file(tmp_path, rows), custom(tmp_path, text))
    assert fates(prepared) == {
        0: ("INVALID", paid_says("1 000,00", owed="4499.00", left="3500.00")),
        2: ("INVALID", paid_says("1'000")),
    }


def test_a_payment_in_another_currency_than_its_invoices_refuses_it(tmp_path: Path) -> None:
    """helper-136: "EUR 1 000,00" paid on a NOK invoice was taken off as 1 000 kroner, and the
    claim went for some 10 000 kroner too much. A payment naming another currency than its
    invoice's refuses it; "kr" and the invoice's own code go as before."""
    rows = [
        row(Fakturanr="74001", Innbetalt="EUR 1 000,00", Rest="3 500,00"),
        row(Fakturanr="74002", Innbetalt="1 000,00 kr", Rest="3 500,00"),
        row(Fakturanr="74003", Innbetalt="NOK 1 000,00", Rest="3 500,00"),
    ]
    text = ERP_TEXT.replace('remainingAmount = "Beløp"', 'remainingAmount = "Rest"')
    prepared = prepared_from(paid_file(tmp_path, rows), custom(tmp_path, text))
    assert fates(prepared) == {
        0: (
            "INVALID",
            'Innbetalt "EUR 1 000,00" is in EUR, but the invoice\'s currency is NOK, so what was '
            "paid on it cannot be taken off its amount: export the amount still owed and read it "
            'as a claim\'s remainingAmount, or name "Innbetalt" in [match] unread if it is not '
            "a payment on this invoice",
        )
    }
    # The currency in the header: 5 500 kroner paid on a EUR invoice was taken off as euros,
    # and the message said its amount less that payment was -1000.00 (helper-138). In
    # capitals only: "nok" is a Norwegian word.
    rows = [
        row(Fakturanr="74101", Valuta="EUR", **{"Innbetalt NOK": "5 500,00"}, Rest="500,00"),
        row(Fakturanr="74102", Valuta="NOK", **{"Innbetalt NOK": "1 000,00"}, Rest="3 500,00"),
    ]
    prepared = prepared_from(paid_file(tmp_path, rows), custom(tmp_path, text))
    assert fates(prepared) == {
        0: (
            "INVALID",
            'Innbetalt NOK "5 500,00" is in NOK, but the invoice\'s currency is EUR, so what was '
            "paid on it cannot be taken off its amount: export the amount still owed and read it "
            'as a claim\'s remainingAmount, or name "Innbetalt NOK" in [match] unread if it is '
            "not a payment on this invoice",
        )
    }


def test_a_huge_header_or_cell_of_what_was_paid_is_shown_cut(tmp_path: Path) -> None:
    """A header of 100,000 characters was printed whole in each row's sentence, and a cell of
    200,000 digits, read as an infinite amount, said the amount less that payment was -inf.
    The header is shown cut, as a cell is, and such a number is one filedrop cannot read."""
    header = "Innbetalt " + "x" * 100_000
    rows = [row(Fakturanr="75001", **{header: "9" * 200_000})]
    prepared = prepared_from(paid_file(tmp_path, rows), ERP)
    ((status, message),) = fates(prepared).values()
    assert status == "INVALID"
    assert len(message) < 1_000
    assert message.startswith(f'Innbetalt {"x" * 50}...{"x" * 30} (100,010 characters) "9')
    assert "holds a number that filedrop cannot read as an amount paid" in message
    assert "inf" not in message


def test_a_payment_on_a_repeat_in_a_later_part_of_a_long_file_refuses_its_invoice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file long enough to be prepared in parts, with the payment on a repeat of an invoice
    number in a later part than the invoice: the check looked the repeat's row up in the
    invoice's part and stopped the file with an IndexError, and a run resumed it into the same
    error for good (a hostile review, helper-134). The invoice is refused, naming the row."""
    monkeypatch.setattr(prepare_module, "FIRST_PART_ROWS", 2)
    monkeypatch.setattr(prepare_module, "PART_ROWS", 2)
    n = 7  # parts of rows 0-1, 2-3, 4-5 and 6
    rows = [row(Fakturanr=str(100_000 + i), Innbetalt="0,00") for i in range(n)]
    rows[-1] = row(Fakturanr="100001", Innbetalt="1 000,00")  # the second row's invoice
    prepared = prepared_from(paid_file(tmp_path, rows), ERP)
    assert fates(prepared)[1] == (
        "INVALID",
        paid_says(
            "1 000,00",
            owed="4500.00",
            left="3500.00",
            elsewhere=f"on row {n + 1}, which carries its invoice number, ",
        ),
    )
    assert len(prepared.invoices) == n - 2


def test_payments_skipped_lines_and_claims_that_owe_a_little_less_are_looked_at(
    tmp_path: Path,
) -> None:
    """helper-134: a ledger's line of a payment, left out by a skip rule, carried the invoice's
    number and its payment, and the invoice went whole; claims 0,01 below the amount counted
    as the payment taken off; and a claim type written "PRINCIPAL " (a space after) or none of
    PRINCIPAL made the invoice owe nothing to compare. Each is refused now; claims that owe the
    amount less the payment go."""
    rows = [
        row(Fakturanr="72001", Bilagstype="Faktura", Innbetalt="0,00"),
        row(Fakturanr="72001", Bilagstype="Innbetaling", Innbetalt="1 000,00"),
        row(Fakturanr="72002", Bilagstype="Faktura", Innbetalt="1 000,00", Rest="4 499,99"),
        row(Fakturanr="72003", Bilagstype="Faktura", Innbetalt="1 000,00", Rest="3 500,00"),
    ]
    for r in rows[:2]:
        r["Rest"] = "4 500,00"
    path = paid_file(tmp_path, rows)
    text = ERP_TEXT.replace('remainingAmount = "Beløp"', 'remainingAmount = "Rest"')
    text += '\n[skip]\npayments = { column = "Bilagstype", is = ["Innbetaling"] }\n'
    for kind in ('"PRINCIPAL"', '"PRINCIPAL "', '"HOVEDSTOL"'):
        mapping = custom(
            tmp_path, text.replace('{ constant = "PRINCIPAL" }', f"{{ constant = {kind} }}")
        )
        prepared = prepared_from(path, mapping)
        assert [inv.invoice_number for inv in prepared.invoices] == ["72003"], kind
        assert fates(prepared)[0] == (
            "INVALID",
            PAID_ON_ROW_3,
        )
        assert fates(prepared)[2] == (
            "INVALID",
            paid_says("1 000,00", owed="4499.99", left="3500.00"),
        )


def test_a_formula_without_its_result_in_a_column_of_what_was_paid_refuses_its_invoice(
    tmp_path: Path,
) -> None:
    """A workbook another program wrote, with Innbetalt computed by formulas whose results were
    never saved: read as empty, they let the invoices go whole (a hostile review, helper-130).
    Each is refused with the message a formula without its result gets in a column read."""
    path = tmp_path / "mars.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append([*HEADERS, "Innbetalt"])
    for number, paid in (("70001", "=500"), ("70002", 0)):
        cells = row(Fakturanr=number)
        sheet.append([None if cells[h] == "" else cells[h] for h in HEADERS] + [paid])
    book.save(path)
    prepared = prepared_from(path, ERP)
    ((status, message),) = fates(prepared).values()
    assert status == "INVALID"
    assert message.startswith('Innbetalt holds the formula "=500", whose result')
    assert [inv.invoice_number for inv in prepared.invoices] == ["70002"]


def test_an_invoice_whose_claims_owe_less_than_its_amount_had_the_payment_taken_off(
    tmp_path: Path,
) -> None:
    """Whether a payment was taken off is told by the invoice itself: its PRINCIPAL claims add
    up to less than its amount. A claim read from what is owed under a header filedrop does not
    know ("Utest.") was refused (a hostile review, helper-130); a second column holding the
    whole amount too, a fee typed PRINCIPAL, an interest claim reading an owed column, or a
    claim falling back to the whole amount where the owed cell is empty all switched the
    check off, and the invoice went whole (helper-132). Now each invoice showing a payment is
    refused exactly when its claims are its whole amount, whatever the mapping reads."""
    rows = [
        row(Fakturanr="70001", Innbetalt="1 000,00", **{"Utest.": "3 500,00"}),
        row(Fakturanr="70002", Innbetalt="1 000,00", **{"Utest.": "4 500,00"}),
        row(Fakturanr="70003", Innbetalt="1 000,00", **{"Utest.": ""}),
        row(Fakturanr="70004", Innbetalt="0,00", **{"Utest.": "4 500,00"}),
    ]
    path = paid_file(tmp_path, rows)
    own = ERP_TEXT.replace('remainingAmount = "Beløp"', 'remainingAmount = "Utest."')
    assert fates(prepared_from(path, custom(tmp_path, own))) == {
        1: ("INVALID", paid_says("1 000,00", owed="4500.00", left="3500.00")),
        2: (
            "INVALID",
            "Utest. is empty (the invoice needs a claim amount)",
        ),
    }
    fallback = ERP_TEXT.replace(
        'remainingAmount = "Beløp"',
        'remainingAmount = { column = "Utest.", default = { column = "Beløp" } }',
    )
    assert [r for r, (s, _) in fates(prepared_from(path, custom(tmp_path, fallback))).items()
            if s == "INVALID"] == [1, 2]  # fmt: skip
    text = ERP_TEXT.replace(
        'description = { template = "Faktura {Fakturanr}" }',
        'description = { template = "Faktura {Fakturanr}, innbetalt {Innbetalt}" }',
    )
    assert fates(prepared_from(path, custom(tmp_path, text)))[0] == (
        "INVALID",
        paid_says("1 000,00", owed="4500.00", left="3500.00"),
    )
    # The invoice's amount as the sum of its claims: nothing tells what was taken off.
    summed = own.replace(
        'originalInvoiceAmount = "Beløp"', "originalInvoiceAmount = { sum_of_claims = true }"
    )
    assert summed != own
    assert fates(prepared_from(path, custom(tmp_path, summed)))[0] == (
        "INVALID",
        paid_says("1 000,00", amount="sum"),
    )


def test_a_persons_full_name_holding_a_care_of_or_a_company_form_is_refused(
    tmp_path: Path,
) -> None:
    """Split as a person's name, "Kari Nordmann c/o Ola Hansen" went out as first name "Kari
    Nordmann c/o Ola" and last name "Hansen", and "Kari Nordmann AS" under a person's number with
    the last name "AS". Both refused (rule text), saying why, in capitals too ("HANSEN BYGG AS");
    a company's name ending in AS, a person's name holding "as" or "Co" inside, the family name
    As, and last names that are company forms elsewhere (DA, SA) are sent."""
    rows = [
        open_row(Kunde="Kari Nordmann c/o Ola Hansen"),
        open_row(Fakturanr="2", Kunde="Kari Nordmann AS"),
        open_row(Fakturanr="3", Kunde="Tomas Coco"),
        open_row(Fakturanr="4", Kunde="Fjord AS", Id="923609016"),
        open_row(Fakturanr="5", Kunde="Kari As"),  # As, a Norwegian family name
        open_row(Fakturanr="6", Kunde="NGUYEN THI DA"),  # DA and SA: last names too
        open_row(Fakturanr="7", Kunde="Lê Văn SA"),
        open_row(Fakturanr="8", Kunde="HANSEN BYGG AS"),  # capitals: still a company's name
    ]
    prepared = open_run(tmp_path, rows)
    assert {r: why for r, why in fates(prepared).items() if r < 7} == {
        0: (
            "INVALID",
            'Kunde "Kari Nordmann c/o Ola Hansen" holds a c/o, which belongs to the address, not '
            "to a person's name; move it in the export",
        ),
        1: (
            "INVALID",
            'Kunde "Kari Nordmann AS" ends in AS, a company\'s form, while the identification '
            "number is a person's; give the company's organisation number, or the person's name "
            "alone in the export",
        ),
    }
    assert [inv.invoice_number for inv in prepared.invoices] == ["3", "4", "5", "6", "7"]
    assert fates(prepared)[7][1].startswith('Kunde "HANSEN BYGG AS" ends in AS, a company')


def test_skipped_rows_leave_the_exit_code_alone() -> None:
    """SKIPPED beside SUCCEEDED exits 0; beside INVALID it is the INVALID that counts."""
    assert exit_code_for([RowStatus.SUCCEEDED, RowStatus.SKIPPED]) is ExitCode.OK
    assert exit_code_for([RowStatus.SKIPPED, RowStatus.INVALID]) is ExitCode.ATTENTION


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("Nordmann, Kari", "Kari", "Nordmann"),
        ("Nordmann , Kari Anne", "Kari Anne", "Nordmann"),
        ("Kari Nordmann", "Kari", "Nordmann"),
        ("Kari Anne Nordmann", "Kari Anne", "Nordmann"),
    ],
)
def test_a_persons_full_name_is_split(tmp_path: Path, name: str, first: str, last: str) -> None:
    """ "Etternavn, Fornavn" at the comma, "Fornavn [Mellomnavn] Etternavn" at the last word."""
    debtor = open_run(tmp_path, [open_row(Kunde=name)]).invoices[0].payload["debtors"][0]
    assert (debtor["firstname"], debtor["lastname"]) == (first, last)


def test_no_debtor_names_a_full_name_column_once(tmp_path: Path) -> None:
    """First and last name both come from the one full-name column: the message names it once."""
    prepared = open_run(tmp_path, [open_row(Kunde="", Id="")])
    assert messages(prepared) == ["row 2: Kunde, Id are empty (the invoice needs a debtor)"]


def test_a_companys_name_is_never_split(tmp_path: Path) -> None:
    """A COMPANY's whole name, comma and all, is its lastname; it has no firstname."""
    company = org(300)
    prepared = open_run(tmp_path, [open_row(Kunde="Hansen, Bygg og Sønn AS", Id=company)])
    debtor = prepared.invoices[0].payload["debtors"][0]
    assert debtor == {
        "type": "COMPANY",
        "lastname": "Hansen, Bygg og Sønn AS",
        "identificationNumber": company,
    }


@pytest.mark.parametrize(
    ("typed", "sent"),
    [(PERSON, PERSON), (fnr(3, 4, 1985).removeprefix("0"), fnr(3, 4, 1985))],
)
def test_the_debtor_type_comes_from_the_ids_length(tmp_path: Path, typed: str, sent: str) -> None:
    """11 digits, or 10 that lost their leading zero (put back by pad), are PRIVATE."""
    debtor = open_run(tmp_path, [open_row(Id=typed)]).invoices[0].payload["debtors"][0]
    assert (debtor["type"], debtor["identificationNumber"]) == ("PRIVATE", sent)


def test_an_organisation_number_is_company_and_never_padded(tmp_path: Path) -> None:
    """9 digits are COMPANY, sent as typed even with pad = 11 on the column."""
    company = org(400)
    debtor = (
        open_run(tmp_path, [open_row(Kunde="Bygg AS", Id=company)])
        .invoices[0]
        .payload["debtors"][0]
    )
    assert (debtor["type"], debtor["identificationNumber"]) == ("COMPANY", company)


def test_an_organisation_number_as_invoices_print_it_is_its_nine_digits(tmp_path: Path) -> None:
    """ "NO 936 153 321 MVA", a VAT-registered company's number as invoices print it, is the
    organisation number 936153321 (it was INVALID, its digits masked as a fødselsnummer's)."""
    company = org(500)
    printed = f"NO {company[:3]} {company[3:6]} {company[6:]} MVA"
    debtor = (
        open_run(tmp_path, [open_row(Kunde="Bygg AS", Id=printed)])
        .invoices[0]
        .payload["debtors"][0]
    )
    assert (debtor["type"], debtor["identificationNumber"]) == ("COMPANY", company)


def test_an_id_of_no_known_length_leaves_the_type_unknown(tmp_path: Path) -> None:
    """Neither 9 nor 10/11 digits, or empty: INVALID saying the type cannot be told; a default
    fills the empty ones."""
    prepared = open_run(tmp_path, [open_row(Id="1234567"), open_row(Fakturanr="2", Id="")])
    assert messages(prepared) == [
        'row 2: Id "123456*" is neither an organisation number (9 digits) nor a fødselsnummer (11'
        " digits), so the debtor type cannot be told",
        "row 3: Id is empty, so the debtor type cannot be told (a debtor needs one)",
    ]
    text = OPEN.format(skip="").replace(
        "{ from_id = true }", '{ from_id = true, default = "PRIVATE" }'
    )
    defaulted = run([open_row(Id="")], custom(tmp_path, text), headers=OPEN_HEADERS)
    assert defaulted.invoices[0].payload["debtors"][0]["type"] == "PRIVATE"


# --- the JSON built batch by batch ----------------------------------------------------------------

TEXTS = """
[read]
decimal = ","
dates = ["dd.mm.yyyy"]

[invoice]
type = { constant = "NOTICE" }
invoiceNumber = "Nr"
originalInvoiceAmount = "Beløp"
currency = { constant = "NOK" }
invoiceDate = "Dato"
dueDate = "Dato"
description = { template = " {Tekst} {Ref} ", trim = false }
uniqueSourceInvoiceId = { template = "{Ref}-{Nr}" }

[debtor]
type = { constant = "COMPANY" }
lastname = { column = "Navn", default = { column = "Kunde" } }
customerNumber = { column = "Kunde", trim = false }

[[claims]]
type = { constant = "PRINCIPAL" }
remainingAmount = "Beløp"
description = "Navn"
"""
TEXT_HEADERS = ["Nr", "Beløp", "Dato", "Tekst", "Ref", "Navn", "Kunde"]


def text_row(nr: str, **cells: str) -> dict[str, str]:
    good = {"Nr": nr, "Beløp": "100,00", "Dato": "01.03.2024", "Navn": "Fjord AS", "Kunde": "42"}
    return good | cells


def test_text_and_template_values_are_sent_as_prepared(tmp_path: Path) -> None:
    """Texts and templates are put together again when their batch is built: trimmed or not as
    the mapping says, absent where empty, and a default never changes what another field reads."""
    rows = [
        text_row("A", Tekst="Husleie", Ref="R1"),
        text_row("B", Navn=" ", Kunde=" Sjø 7 "),  # Navn empty: lastname takes Kunde, as typed
        text_row("C", Tekst="  ", Kunde=""),
    ]
    prepared = run(rows, custom(tmp_path, TEXTS), headers=TEXT_HEADERS)
    a, b, c = (inv.payload for inv in prepared.invoices)
    assert (a["description"], a["uniqueSourceInvoiceId"]) == (" Husleie R1 ", "R1-A")
    assert "description" not in b and b["uniqueSourceInvoiceId"] == "-B"
    assert "description" not in c
    assert [p["debtors"][0] for p in (a, b, c)] == [
        {"type": "COMPANY", "lastname": "Fjord AS", "customerNumber": "42"},
        {"type": "COMPANY", "lastname": "Sjø 7", "customerNumber": " Sjø 7 "},
        {"type": "COMPANY", "lastname": "Fjord AS"},
    ]
    # Navn read as itself, although lastname's default filled its empty cell
    assert [p["claims"][0].get("description") for p in (a, b, c)] == ["Fjord AS", None, "Fjord AS"]
    assert prepared.table.cells[5].tolist() == ["Fjord AS", " ", "Fjord AS"]


def test_a_batch_is_built_as_its_invoices_are_one_by_one() -> None:
    """Any invoices of a file, in any order, make the same JSON together as each alone: a batch
    uses its own rows only, with each invoice's claims and their sum."""
    rows = [
        line(f"G{k % 7}", kind, f"{10 + k},{k % 100:02d}", first=k < 7)
        for k, kind in enumerate(["Hovedstol", "Gebyr", "Rente"] * 7)
    ]
    prepared = run(rows, GROUPED_MAPPING, headers=G)
    invoices = prepared.invoices
    batch = [invoices[k] for k in (5, 0, 3, 6)]
    alone = [invoice.payload for invoice in batch]
    assert payloads(batch) == alone
    assert [len(p["claims"]) for p in alone] == [3, 3, 3, 3]
    assert alone[1]["originalInvoiceAmount"] == round(10.0 + 17.07 + 24.14, 2)
    erp = run([row(Fakturanr=str(k), E_post="") for k in range(5)])
    assert payloads(erp.invoices[::-2]) == [inv.payload for inv in erp.invoices[::-2]]


def test_an_object_of_more_than_64_values_keeps_them_all(tmp_path: Path) -> None:
    """Which values an object has is kept in bits; past 64 of them, each still counts."""
    keys = "".join(f'k{j} = {{ template = "{{Nr}}-{j}" }}\n' for j in range(70))
    keys += 'k70 = "Ref"\nk71 = "Tekst"\n'  # empty on the first row: left out there
    mapping = custom(tmp_path, TEXTS + f"\n[invoice.extra]\n{keys}")
    rows = [text_row("A"), text_row("B", Ref="x")]
    a, b = (inv.payload for inv in run(rows, mapping, headers=TEXT_HEADERS).invoices)
    assert a["extra"] == {f"k{j}": f"A-{j}" for j in range(70)}
    assert b["extra"] == {**{f"k{j}": f"B-{j}" for j in range(70)}, "k70": "x"}


@pytest.mark.parametrize("severity", ["error", "warning", "off"])
def test_an_excel_error_in_a_required_cell_never_lets_its_row_go_without_the_value(
    tmp_path: Path, severity: str
) -> None:
    """rules.text decides what an Excel error says, not whether an invoice goes without a value
    it needs: the amount's row is refused at every severity, said once when the error already
    refuses it; an optional cell's error (E-post) lets its row go without it unless an error."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    mapping = custom(tmp_path, text.replace("[rules]", f'[rules]\ntext = "{severity}"', 1))
    prepared = run([row(Beløp="#N/A"), row(Fakturanr="240302", **{"E-post": "#REF!"})], mapping)
    assert_every_row_once(prepared)
    required = 'row 2: Beløp "#N/A" gives no value, and the invoice needs an amount'
    shown = 'row 2: Beløp "#N/A" shows an Excel error, not a value'
    lines = messages(prepared)
    assert prepared.rejected[0].status is RowStatus.INVALID
    assert sum(required in line for line in lines) == (severity != "error")
    assert sum(shown in line for line in lines) == (severity != "off")
    if severity == "error":
        assert sorted(prepared.rejected) == [0, 1]
    else:
        (invoice,) = prepared.invoices
        assert "email" not in str(invoice.payload) and invoice.payload["originalInvoiceAmount"]


def test_a_cell_with_two_problems_says_both(tmp_path: Path) -> None:
    """Only a required value its cell failed to give is left unsaid beside that cell's error:
    a name with a control character that is also one word has both said, so the user fixes both
    at once."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace('firstname = "Fornavn"\nlastname = "Etternavn"', 'full_name = "Etternavn"')
    prepared = run([row(Etternavn="Kari\x07")], custom(tmp_path, text))
    lines = messages(prepared)
    assert any("holds a control character (U+0007)" in line for line in lines), lines
    assert any("holds one name only" in line for line in lines), lines


@pytest.mark.parametrize("severity", ["error", "warning"])
def test_an_excel_error_in_a_template_s_cell_is_said_and_fills_nothing_in(
    tmp_path: Path, severity: str
) -> None:
    """``{Serie}-{Fakturanr}`` with Serie showing #N/A is no invoice number: the Excel error is
    said (naming the column), and the invoice needs its number whatever rule text says; once
    when the error already refuses the row. Kundenr, also a field of its own, is said once."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace(
        'invoiceNumber = "Fakturanr"', 'invoiceNumber = { template = "{Serie}-{Fakturanr}" }'
    ).replace("[rules]", f'[rules]\ntext = "{severity}"', 1)
    text = text.replace('{ constant = "Hovedstol" }', '{ template = "Kunde {Kundenr}" }')
    rows = [
        row(Serie="#N/A"),
        row(Serie="A", Fakturanr="240302", Kundenr="#REF!"),
        row(Serie="A", Fakturanr="240303"),
    ]
    prepared = run(rows, custom(tmp_path, text), headers=[*HEADERS, "Serie"])
    assert_every_row_once(prepared)
    lines = messages(prepared)
    assert sorted(prepared.rejected) == ([0, 1] if severity == "error" else [0]), lines
    assert prepared.invoices[-1].payload["invoiceNumber"] == "A-240303"
    assert sum('row 3: Kundenr "#REF!" shows an Excel error' in line for line in lines) == 1
    shown = 'row 2: Serie "#N/A" shows an Excel error, not a value'
    required = "gives no value, and the invoice needs an invoice number"
    assert sum(shown in line for line in lines) == 1, lines
    assert sum(required in line for line in lines) == (severity == "warning"), lines


def test_a_full_name_showing_an_excel_error_is_no_name(tmp_path: Path) -> None:
    """With rules.text = "warning", a full name of #N/A was split into the last name "None":
    a company, as a person, is refused for the missing name (as with an empty cell), not for
    "one name only"."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace('firstname = "Fornavn"\nlastname = "Etternavn"', 'full_name = "Etternavn"')
    text = text.replace("[rules]", '[rules]\ntext = "warning"', 1)
    company = row(Fakturanr="240302", Kundetype="B", Fødselsnr="", Orgnr=org(1), Etternavn="#N/A")
    prepared = run([row(Etternavn="#N/A"), company], custom(tmp_path, text))
    assert_every_row_once(prepared)
    assert sorted(prepared.rejected) == [0, 1]
    lines = messages(prepared)
    assert not any("one name only" in line for line in lines), lines
    assert any(
        'row 2: Etternavn "#N/A" gives no value, and a PRIVATE debtor' in line for line in lines
    )
    assert any(
        'row 3: Etternavn "#N/A" gives no value, and a COMPANY debtor needs its name' in line
        for line in lines
    )


def test_principal_claims_owing_more_than_the_invoice_are_refused(tmp_path: Path) -> None:
    """Beløp 980,00 with Restbeløp 9 800,00 (a slip), or a mapping that took the amount before
    VAT for the invoice's, sent the debtor to collection for more than was invoiced, and
    validate called it valid. What is still owed may be less (paid in part); a fee, another
    claim type, may add to it; an invoice whose amount is its claims' sum has none to compare."""
    text = ERP_TEXT.replace('remainingAmount = "Beløp"', 'remainingAmount = "Restbeløp"')
    fee = '\n[[claims]]\ntype = { constant = "FEE" }\nremainingAmount = "Gebyr"\n'
    headers = [*HEADERS, "Restbeløp", "Gebyr"]
    rows = [
        row(Fakturanr="240301", Beløp="980,00", Restbeløp="9 800,00"),
        row(Fakturanr="240302", Beløp="980,00", Restbeløp="400,00"),  # paid in part
        row(Fakturanr="240303", Beløp="980,00", Restbeløp="980,00", Gebyr="70,00"),
    ]
    prepared = run(rows, custom(tmp_path, text + fee), headers=headers)
    assert messages(prepared) == [
        'row 2: Restbeløp "9 800,00" is more than Beløp "980,00", the invoice\'s amount: the '
        "debtor would be asked for more than was invoiced; correct it in the export (or, if "
        "Beløp is not the invoice's whole amount, map originalInvoiceAmount from the column "
        "that is)"
    ]
    assert [i.invoice_number for i in prepared.invoices] == ["240302", "240303"]
    summed = text.replace('originalInvoiceAmount = "Beløp"', 'originalInvoiceAmount = "sum"')
    summed = summed.replace(
        'originalInvoiceAmount = "sum"', "originalInvoiceAmount = { sum_of_claims = true }"
    )
    assert messages(run(rows[:1], custom(tmp_path, summed), headers=headers)) == []


def test_an_amount_past_the_floats_range_is_compared_without_a_warning(tmp_path: Path) -> None:
    """A workbook amount of 1e308 (refused as too large) made the comparison of claims with the
    invoice's amount print numpy's overflow warning on the user's terminal."""
    path = write_erp_workbook(tmp_path / "stor.xlsx", [erp_row("240301")], typed={"D2": 1e308})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare(read_table(path, ERP.read), ERP)
    assert [p.rule for p in prepared.problems] == ["amount"]


def test_an_invoices_lines_owing_more_than_it_together_are_refused(tmp_path: Path) -> None:
    """The lines of one invoice ([group]) add up: 600 and 700 on an invoice of 1 000 owe 1 300."""
    text = ERP_TEXT.replace('remainingAmount = "Beløp"', 'remainingAmount = "Linje"')
    text = text.replace("[invoice]", '[group]\nby = ["Fakturanr"]\n\n[invoice]', 1)
    lines = [row(Beløp="1 000,00", Linje="600,00"), row(Beløp="1 000,00", Linje="700,00")]
    prepared = run(lines, custom(tmp_path, text), headers=[*HEADERS, "Linje"])
    assert messages(prepared) == [
        'row 2: the claims (Linje) add up to 1300.00, which is more than Beløp "1 000,00", the '
        "invoice's amount: the debtor would be asked for more than was invoiced; correct it in "
        "the export (or, if Beløp is not the invoice's whole amount, map originalInvoiceAmount "
        "from the column that is)"
    ]


def test_a_company_debtor_without_a_name_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    """Kundetype B with Etternavn empty (the name typed in Fornavn, or nowhere) passed validate,
    then FAILED at the API with "Debtor company name is required", naming no column. Amili
    takes a company's name as its last name; a mapping with none says so."""
    company = {"Kundetype": "B", "Fødselsnr": "", "Orgnr": org(1)}
    rows = [
        row(Fakturanr="240301", Etternavn="", **company),
        row(Fakturanr="240302", Fornavn="Bølgen Bygg AS", Etternavn="", **company),
        row(Fakturanr="240303", Fornavn="", Etternavn="Bølgen Bygg AS", **company),
    ]
    prepared = run(rows)
    assert messages(prepared) == [
        "row 2: Etternavn is empty (a COMPANY debtor needs its name)",
        "row 3: Etternavn is empty (a COMPANY debtor needs its name)",
    ]
    assert [i.invoice_number for i in prepared.invoices] == ["240303"]
    no_lastname = custom(tmp_path, ERP_TEXT.replace('lastname = "Etternavn"', ""))
    assert messages(run(rows[2:], no_lastname)) == [
        "row 2: the debtor is COMPANY, but the mapping has no debtor.lastname, where Amili takes "
        "a company's name"
    ]


def test_a_type_from_id_whose_default_cell_shows_an_excel_error_is_not_told(
    tmp_path: Path,
) -> None:
    """type = { from_id = true, default = { column = ... } }: where the id tells no type and the
    default's cell shows #N/A, the debtor was sent without a type and nothing was said; now
    both the Excel error and the unknown type are said, and the row is not sent."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace(
        'type = { column = "Kundetype", map = { P = "PRIVATE", B = "COMPANY" }, default = '
        '"PRIVATE" }',
        'type = { from_id = true, default = { column = "Kundetype" } }',
    )
    rows = [row(Kundetype="#N/A", Fødselsnr="123"), row(Fakturanr="240302", Kundetype="#N/A")]
    prepared = run(rows, custom(tmp_path, text))
    assert_every_row_once(prepared)
    assert sorted(prepared.rejected) == [0]  # the second's id tells its type: no default needed
    lines = messages(prepared)
    assert any('row 2: Kundetype "#N/A" shows an Excel error' in line for line in lines), lines
    assert any("so the debtor type cannot be told" in line for line in lines), lines
    assert prepared.invoices[0].payload["debtors"][0]["type"] == "PRIVATE"


@pytest.mark.parametrize("severity", ["error", "warning"])
def test_an_id_showing_an_excel_error_is_said_once_and_checked_as_nothing(
    tmp_path: Path, severity: str
) -> None:
    """Fødselsnr #N/A beside another row's short id crashed the whole file (a missing value read
    as a float), or was judged as some other row's id. Only the Excel error is said; under a
    warning the debtor goes without an id."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    mapping = custom(tmp_path, text.replace("[rules]", f'[rules]\ntext = "{severity}"', 1))
    company = row(Fakturanr="240303", Kundetype="B", Fødselsnr="#N/A", Orgnr="")
    rows = [row(Fødselsnr="#N/A"), row(Fakturanr="240302", Fødselsnr="0101"), company]
    prepared = run(rows, mapping)
    assert_every_row_once(prepared)
    lines = messages(prepared)
    for at in (2, 4):
        mine = [line for line in lines if line.startswith(f"row {at}:")]
        assert mine == [
            f'row {at}: Fødselsnr "#N/A" shows an Excel error, not a value; correct it in '
            "Excel and save the file again"
        ], lines
    assert 1 in prepared.rejected  # the short id is said as before
    if severity == "warning":
        sent = {inv.payload["invoiceNumber"]: inv.payload for inv in prepared.invoices}
        assert "identificationNumber" not in sent["240303"]["debtors"][0]


def test_every_excel_error_a_template_reads_is_said_once_as_the_file_names_its_column(
    tmp_path: Path,
) -> None:
    """Both bad cells of ``{Serie}-{Kode}`` are said at once (the user fixes both in one go),
    and a placeholder written in other capitals names the file's header, so the same cell read
    by a field too is one message."""
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace(
        'description = { template = "Faktura {Fakturanr}" }',
        'description = { template = "Faktura {fakturanr}" }\n'
        'sourceReference = { template = "{Serie}-{Kode}" }',
    )
    rows = [row(Fakturanr="#N/A", Serie="A", Kode="1"), row(Serie="#REF!", Kode="#N/A")]
    prepared = run(rows, custom(tmp_path, text), headers=[*HEADERS, "Serie", "Kode"])
    lines = messages(prepared)
    errors = [line.split(" shows")[0] for line in lines if "shows an Excel error" in line]
    assert errors == ['row 2: Fakturanr "#N/A"', 'row 3: Serie "#REF!"', 'row 3: Kode "#N/A"']


def test_cells_of_nothing_but_unusual_spaces_are_empty_and_crash_nothing(tmp_path: Path) -> None:
    """An ideographic space or a line separator alone was a filled cell (sent as the invoice
    number "\\u2028"), and a full name that str.split takes for spaces ended the whole file."""
    prepared = run([row(Fakturanr="\u3000"), row(Fakturanr="240302", Fornavn="\u2028\u2003")])
    lines = messages(prepared)
    assert any("row 2: Fakturanr is empty" in line for line in lines), lines
    assert any("row 3: Fornavn is empty" in line for line in lines), lines
    assert prepared.invoices == []
    text = (ROOT / "mappings" / "norwegian-erp.toml").read_text(encoding="utf-8")
    text = text.replace('firstname = "Fornavn"\nlastname = "Etternavn"', 'full_name = "Etternavn"')
    text = text.replace("[rules]", '[rules]\ntext = "off"', 1)
    prepared = run([row(Etternavn="\x1c")], custom(tmp_path, text))  # a separator str.split knows
    assert prepared.invoices == [] and prepared.rejected[0].status is RowStatus.INVALID


@pytest.mark.parametrize("serial", [1e308, 12345678901234567890, float("inf"), -1e20])
def test_a_workbook_date_too_large_to_be_one_is_said_not_the_end_of_the_file(
    serial: float,
) -> None:
    """An Excel number far past Excel's last day (9999-12-31) in a date column ended the whole
    file (numpy's day count overflowed); it is a date the row does not have, said for the row."""
    prepared = run([row(Fakturadato=serial), row(Fakturanr="240302")], excel=True)
    assert sorted(prepared.rejected) == [0]
    assert any("row 2: Fakturadato" in line for line in messages(prepared))


@pytest.mark.parametrize("epoch", ["1900", "1904", "1904 written otherwise"])
def test_a_date_typed_as_a_number_counts_from_the_workbooks_own_first_day(
    tmp_path: Path, epoch: str
) -> None:
    """An old Mac workbook counts its days from 1904: a due date typed there as a plain number
    (43904) was read from 1900, four years and a day early. Counted from the workbook's own first
    day, it is the day its dated cell beside it shows."""
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    book = openpyxl.Workbook()
    if epoch.startswith("1904"):
        book.epoch = CALENDAR_MAC_1904
    sheet = book.active
    sheet.append(ERP_HEADER.split(";"))
    sheet.append(erp_row("240301").split(";"))
    sheet["B2"] = dt.date(2024, 3, 1)  # Fakturadato, a date cell
    sheet["B2"].number_format = "dd.mm.yyyy"
    sheet["C2"] = 43904 if epoch != "1900" else 45366  # Forfallsdato 2024-03-15, a plain number
    path = tmp_path / "mac.xlsx"
    book.save(path)
    if epoch == "1904 written otherwise":  # single quotes and spaces: as legal XML
        with zipfile.ZipFile(path) as saved:
            parts = {name: saved.read(name) for name in saved.namelist()}
        parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(
            b'date1904="1"', b"date1904 = '1'"
        )
        with zipfile.ZipFile(path, "w") as rewritten:
            for name, data in parts.items():
                rewritten.writestr(name, data)
    prepared = prepare(read_table(path, ERP.read), ERP)
    payload = prepared.invoices[0].payload
    assert (payload["invoiceDate"], payload["dueDate"]) == (
        "2024-03-01T00:00:00Z",
        "2024-03-15T00:00:00Z",
    )
