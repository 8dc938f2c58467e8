"""Exports as ERPs write them, made in code: the Tripletex-like and Visma-like examples that ship in
inbox-example/, and the layouts `filedrop init` is tested on. Every person and company is synthetic
(fødselsnumre and organisation numbers with valid check digits, never real ones).

Run `python tests/exports.py` to write the shipped examples again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import openpyxl
from builders import EXAMPLES, national_id
from stdnum import luhn
from stdnum.no import orgnr

TRIPLETEX_EXAMPLE = "tripletex-apne-poster.xlsx"
VISMA_EXAMPLE = "visma-kundereskontro.csv"


def company_number(n: int) -> str:
    """The n-th synthetic organisation number with a valid check digit."""
    found = (f"9{k:08d}" for k in range(10**6) if orgnr.is_valid(f"9{k:08d}"))
    return next(number for i, number in enumerate(found) if i == n)


def kid(base: str) -> str:
    """A KID with a mod 10 check digit."""
    return base + luhn.calc_check_digit(base)


def lost_zero_person() -> str:
    """A synthetic fødselsnummer that starts with 0, as a spreadsheet loses it."""
    return next(national_id(n) for n in range(50) if national_id(n).startswith("0"))


PEOPLE = [  # (name as the ERP writes it, id, street, postnr, poststed, e-post, mobil)
    ("Nordmann, Kari", lost_zero_person(), "Storgata 1", "0150", "Oslo", "kari@example.no",
     "912 34 501"),
    ("Ola Johan Hansen", national_id(1), "Fjordveien 2", "7010", "Trondheim", "ola@example.no",
     "912 34 502"),
    ("Berg, Ingrid", national_id(2), "Bakken 3", "5003", "Bergen", None, "412 34 503"),
    ("Per Olsen", national_id(3), "Skolegata 4", "9008", "Tromsø", "per.olsen@example.no", None),
    ("Lien, Anne Marit", national_id(4), "Elvegata 5", "0455", "Oslo", "anne@example.no",
     "912 34 505"),
]  # fmt: skip
COMPANIES = [
    ("Bygg og Anlegg AS", company_number(0), "Industriveien 5", "5003", "Bergen",
     "post@bygg.example.no", "55 12 34 56"),
    ("Fjellstue Drift AS", company_number(1), "Fjellvegen 9", "2680", "Vågå",
     "faktura@fjellstue.example.no", None),
    ("Kaffebrenneriet Nord ANS", company_number(2), "Torget 7", "8006", "Bodø", None,
     "75 50 12 34"),
]  # fmt: skip


def _old(path: Path) -> Path:
    """Older than any stability window, so a run takes the file at once."""
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path


def write_tripletex_export(path: Path) -> Path:
    """An open-items report shaped like Tripletex's: a title, merged group headers over the
    header, full names in one `Kunde` column, one `Org.nr/Personnr` column (a personnummer and a
    postnr that lost their leading zero), the e-mail in a column with no header, real Excel dates
    mixed with text dates, amounts as numbers and as text, a blank row, a credit note and a `Sum`
    row with a formula."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Åpne poster"
    ws["A1"] = "Åpne kundeposter per 31.03.2024"
    ws.merge_cells("A1:H1")
    for cell, text, span in (
        ("A3", "Faktura", "A3:C3"),
        ("D3", "Kunde", "D3:H3"),
        ("J3", "Kontakt", "J3:K3"),
    ):
        ws[cell] = text
        ws.merge_cells(span)
    headers = ["Fakturanr", "Fakturadato", "Forfall", "Kunde", "Org.nr/Personnr", "Adresse",
               "Postnr", "Poststed", "Beløp", "Telefon"]  # fmt: skip
    for col, header in enumerate(headers, start=1):
        ws.cell(row=4, column=col, value=header)
    debtors = [*PEOPLE, *COMPANIES]
    rows: list[list[object] | None] = []
    for i in range(12):
        name, number, street, postnr, city, email, phone = debtors[i % len(debtors)]
        issued = dt.date(2024, 1, 5) + dt.timedelta(days=4 * i)
        due = issued + dt.timedelta(days=30)
        as_text = i % 3 == 1  # some dates and amounts typed as text, as exports mix them
        amount: object = 1250.5 + 375 * i
        if as_text:
            amount = f"{1250 + 375 * i:,}".replace(",", " ") + ",50"
        rows.append([
            str(24001 + i),
            issued.strftime("%d.%m.%Y") if as_text else issued,
            due.strftime("%d.%m.%Y") if as_text else due,
            name,
            int(number),  # a number cell: a leading zero is lost
            street,
            int(postnr) if postnr.startswith("0") else postnr,
            city,
            amount,
            phone,
            email,
        ])  # fmt: skip
        if i == 5:
            rows.append(None)  # a blank row in the middle
    credit = ["24013", dt.date(2024, 3, 1), dt.date(2024, 3, 31), COMPANIES[0][0],
              int(COMPANIES[0][1]), COMPANIES[0][2], COMPANIES[0][3], COMPANIES[0][4], -500,
              None, None]  # fmt: skip
    rows += [credit, None]
    first, last = 5, 5 + len(rows) - 2
    rows.append([None, None, None, "Sum", None, None, None, None, f"=SUM(I{first}:I{last})"])
    for r, values in enumerate(rows, start=5):
        for c, value in enumerate(values or [], start=1):
            if value is not None:
                cell = ws.cell(row=r, column=c, value=value)
                if isinstance(value, dt.date):
                    cell.number_format = "dd.mm.yyyy"
                elif isinstance(value, float | int) and c == 9:
                    cell.number_format = "# ##0.00"
    wb.save(path)
    return _old(path)


VISMA_HEADER = (
    "Kundenr;Kundenavn;Orgnr;Fødselsnr;Fakturanr;Fakturadato;Forfallsdato;Valuta;Beløp;"
    "Restbeløp;KID;Adresse;Postnr;Poststed;E-post;Mobil"
)


def write_visma_export(path: Path) -> Path:
    """A customer ledger (kundereskontro) shaped like Visma's: semicolons, Windows-1252, decimal
    comma with a space between thousands, dd.mm.yyyy dates, the organisation number and the
    fødselsnummer in two columns and no customer type, a partly paid invoice, a credit note and a
    `Totalt` line."""
    lines = [VISMA_HEADER]
    debtors = [*COMPANIES, *PEOPLE]
    total = 0.0
    for i in range(11):
        name, number, street, postnr, city, email, phone = debtors[i % len(debtors)]
        company = len(number) == 9
        issued = dt.date(2024, 2, 1) + dt.timedelta(days=3 * i)
        amount = 980 + 415 * i
        remaining = amount - 500 if i == 4 else amount  # partly paid
        total += remaining
        lines.append(
            ";".join([
                str(10100 + i % len(debtors)),
                name if company else " ".join(_first_and_last(name)),
                number if company else "",
                "" if company else number,
                str(70001 + i),
                issued.strftime("%d.%m.%Y"),
                (issued + dt.timedelta(days=14)).strftime("%d.%m.%Y"),
                "NOK",
                _norwegian_amount(amount),
                _norwegian_amount(remaining),
                kid(f"{10100 + i % len(debtors)}{70001 + i}"),
                street,
                postnr,
                city,
                email or "",
                phone or "",
            ])
        )  # fmt: skip
    name, number, street, postnr, city, email, _ = COMPANIES[1]
    lines.append(
        f"10101;{name};{number};;70012;01.03.2024;15.03.2024;NOK;-1 200,00;-1 200,00;;"
        f"{street};{postnr};{city};{email};"
    )
    total -= 1200
    lines.append(f";Totalt;;;;;;;;{_norwegian_amount(total)};;;;;;")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return _old(path)


def _first_and_last(name: str) -> tuple[str, str]:
    """``"Nordmann, Kari"`` or ``"Kari Nordmann"`` -> ``("Kari", "Nordmann")``."""
    if ", " in name:
        last, first = name.split(", ", 1)
        return first, last
    first, last = name.rsplit(" ", 1)
    return first, last


def _norwegian_amount(amount: float) -> str:
    """``12345.5`` -> ``12 345,50``."""
    whole, cents = f"{amount:,.2f}".split(".")
    return f"{whole.replace(',', ' ')},{cents}"


def write_english_export(path: Path) -> Path:
    """A comma-separated export with English headers, a customer-type column, first and last
    names in two columns, US dates (mm/dd/yyyy) and a decimal point."""
    rows = [
        "Invoice no,Invoice date,Due date,Customer type,First name,Last name,National ID,"
        "Org no,Email,Phone,Address,Zip,City,Amount,Currency"
    ]
    for i, (name, number, street, postnr, city, email, phone) in enumerate([*PEOPLE, *COMPANIES]):
        company = len(number) == 9
        first, last = _first_and_last(name)
        rows.append(
            ",".join([
                f"INV-{500 + i}",
                f"01/{10 + i:02d}/2024",
                f"02/{10 + i:02d}/2024",
                "Company" if company else "Person",
                "" if company else first,
                name if company else last,
                "" if company else number,
                number if company else "",
                email or "",
                (phone or "").replace(" ", ""),
                street,
                postnr,
                city,
                f"{1500 + 250 * i}.75",
                "NOK" if i % 2 else "EUR",
            ])
        )  # fmt: skip
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return _old(path)


def write_combined_id_export(path: Path) -> Path:
    """Norwegian headers with one id column for persons and companies ("Fødselsnr eller orgnr",
    found by its parts), full names, thousands as dots and a `Sum totalt` row."""
    rows = ["Faktura nr;Kundenavn;Fødselsnr eller orgnr;Fakturadato;Forfallsdato;Beløp;E-post"]
    for i, (name, number, *_rest) in enumerate([*COMPANIES, *PEOPLE]):
        email = _rest[3] or ""
        rows.append(
            f"{9100 + i};{name};{number};{5 + i:02d}.01.2024;{5 + i:02d}.02.2024;"
            f"{1 + i}.{250 + i:03d},00;{email}"
        )
    rows.append(";Sum totalt;;;;45.000,00;")
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    return _old(path)


def write_sep_line_export(path: Path, rows: Sequence[str] | None = None) -> Path:
    """A CSV as Excel saves it for other Excels: a `sep=;` first line above the header."""
    lines = ["sep=;", "Fakturanr;Kunde;Personnr;Forfall;Fakturadato;Beløp"]
    for i, (name, number, *_) in enumerate(PEOPLE):
        lines.append(f"{300 + i};{name};{number};28.02.2024;{1 + i:02d}.02.2024;{900 + i},00")
    path.write_text("\r\n".join([*lines, *(rows or [])]) + "\r\n", encoding="utf-8-sig")
    return _old(path)


if __name__ == "__main__":
    write_tripletex_export(EXAMPLES / TRIPLETEX_EXAMPLE)
    write_visma_export(EXAMPLES / VISMA_EXAMPLE)
    print(f"wrote {EXAMPLES / TRIPLETEX_EXAMPLE} and {EXAMPLES / VISMA_EXAMPLE}")
