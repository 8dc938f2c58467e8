"""Draft a mapping from one sample export, for ``filedrop init``.

The file is read with the same reader (and detection) as every run. Each field of the invoice is
proposed from the file's headers through one table of Norwegian and English synonyms (``SYNONYMS``),
and failing that from what a column's values look like; the read settings come from the values
(decimal comma, thousands separators, date formats), and the rows that are not invoices (a totals
row, credit notes) get a skip rule. Every line of the draft says how sure it is, and what it could
not place is left as a commented question. Nothing here knows of HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd

from filedrop.errors import HiddenSheetError
from filedrop.logs import printable
from filedrop.mapping.convert import (
    CURRENCIES,
    SERIAL_DAY,
    compact_id,
    date_format_to_strptime,
    day_part,
    is_email,
    is_fodselsnummer,
    is_orgnr,
    parse_amounts,
    phone_e164,
    shown,
    shows_decimal,
    strip,
    swap_day_and_month,
    thousands_like,
)
from filedrop.mapping.loader import (
    OWED_HEADERS,
    TOTALS_WORDS,
    loose_key,
    owed_header,
    paid_header,
)
from filedrop.read import ReadOptions, Table

__all__ = ["SYNONYMS", "Draft", "draft_mapping"]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "invoiceNumber": (
        "Fakturanr", "Fakturanummer", "Faktura nr", "Fakt nr", "Fakturanr.", "Bilagsnr",
        "Invoice no", "Invoice number", "Invoice nr", "Invoice #", "Invoice", "Faktura",
    ),
    "invoiceDate": (
        "Fakturadato", "Bilagsdato", "Dato", "Utstedt", "Invoice date", "Date", "Issue date",
    ),
    "dueDate": ("Forfall", "Forfallsdato", "Forfallsdag", "Forf dato", "Due date", "Due"),
    "originalInvoiceAmount": (
        "Beløp", "Fakturabeløp", "Opprinnelig beløp", "Totalbeløp", "Amount", "Invoice amount",
        "Original amount", "Total amount",
    ),
    "remainingAmount": OWED_HEADERS,
    "currency": ("Valuta", "Valutakode", "Currency", "Currency code"),
    "ocrReferenceNumber": ("KID", "KID nr", "KID nummer", "OCR", "OCR reference"),
    "description": ("Tekst", "Beskrivelse", "Fakturatekst", "Description", "Text"),
    "customerNumber": (
        "Kundenr", "Kundenummer", "Kunde nr", "Kundeid", "Customer no", "Customer number",
        "Customer id", "Debitornr",
    ),
    "full_name": ("Kundenavn", "Navn", "Kunde", "Debitor", "Customer name", "Name", "Customer"),
    "firstname": ("Fornavn", "First name", "Given name"),
    "lastname": ("Etternavn", "Last name", "Surname", "Family name"),
    "company_name": ("Firmanavn", "Bedriftsnavn", "Selskapsnavn", "Company name"),
    "debtor_type": ("Kundetype", "Type kunde", "Customer type", "Debtor type"),
    "id": (
        "Org.nr/Personnr", "Orgnr/Personnr", "Personnr/Orgnr", "Orgnr/Fnr", "Fnr/Orgnr",
        "Fødselsnr/Orgnr", "Orgnr/Fødselsnr", "Org.nr/Fødselsnr", "ID nummer", "Id number",
        "Identification number",
    ),
    "person_id": (
        "Fødselsnr", "Fødselsnummer", "Personnr", "Personnummer", "Fnr", "National id",
        "National identity number", "SSN",
    ),
    "org_id": (
        "Orgnr", "Org nr", "Organisasjonsnummer", "Foretaksnr", "Org no", "Organisation number",
        "Organization number", "Company number",
    ),
    "emails": ("E-post", "Epost", "E-postadresse", "Email", "E-mail", "Mail"),
    "phoneNumbers": ("Mobil", "Mobilnr", "Telefon", "Tlf", "Telefonnr", "Phone", "Mobile"),
    "street": ("Adresse", "Gateadresse", "Postadresse", "Adresse 1", "Address", "Street"),
    "zipCode": ("Postnr", "Postnummer", "Zip", "Zip code", "Postcode", "Postal code"),
    "city": ("Poststed", "Sted", "By", "City", "Town"),
}  # fmt: skip
"""The one table of header words: each field the draft can place, and the headers that mean it
(upper/lower case, spaces and punctuation ignored). Order matters where one header could mean two
fields: the first field listed takes it."""

DEBTOR_TYPE_WORDS: dict[str, tuple[str, ...]] = {
    "PRIVATE": ("p", "privat", "person", "privatperson", "private", "individual", "forbruker"),
    "COMPANY": ("b", "c", "f", "bedrift", "firma", "foretak", "company", "business", "org"),
}
"""What a customer-type column says for each debtor type."""

DATE_FORMATS = (
    "dd.mm.yyyy", "dd.mm.yy", "dd/mm/yyyy", "dd/mm/yy", "dd-mm-yyyy", "dd-mm-yy", "mm/dd/yyyy",
)  # fmt: skip
"""The date formats the draft recognises, Norwegian ones first (``dd/mm`` wins a tie)."""
NUMBER_STYLES = ((",", " "), (",", " ."), (".", " "), (".", " ,"))
"""(decimal, thousands) pairs tried on amounts typed as text, Norwegian first."""

CREDIT_NOTE_WORDS = (
    "kreditnota", "kredittnota", "kreditnotaer", "kreditering", "kreditert", "credit note",
    "credit memo", "creditnote",
)  # fmt: skip
"""What a document-type column says of a credit note, as ERPs write it (compared as totals
words are: ``_folded``)."""

FEE_WORDS = (
    "purregebyr", "gebyr", "rentenota", "rentefaktura", "renter", "rente",
    "forsinkelsesrente", "morarente", "reminder fee", "late fee", "fee", "interest",
    "interest note",
)  # fmt: skip
"""What a document-type column says of a reminder fee or an interest note, an ERP's document
of its own beside the invoice it is charged on (compared as ``CREDIT_NOTE_WORDS`` are)."""

EXACT = "exact synonym"
_TOTALS = frozenset(TOTALS_WORDS)
_CREDIT_NOTES = frozenset(CREDIT_NOTE_WORDS)
_FEES = frozenset(FEE_WORDS)
#: A header naming a kind of row ("Bilagstype", "Type bilag", "Document type",
#: "Transaksjonsart", "Dokument"), as ``loose_key`` writes it: where fees and interest notes
#: are told apart from invoices.
_TYPE_HEADER = re.compile(r"type|art$|^dokument$|^bilag$")
#: An ISO date, or a workbook's date cell as it reads (its time midnight): a day, which needs
#: no date format, and what a column found to hold dates by its values holds, not a moment.
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}(?: 00:00:00)?")


@dataclass(frozen=True)
class Draft:
    """The drafted mapping (TOML text) and the questions it leaves for the user."""

    text: str
    questions: tuple[str, ...]


@dataclass(frozen=True)
class _Placed:
    """A field placed on a column, and how sure the draft is of it."""

    header: str
    how: str


@dataclass
class _Lines:
    """The draft, line by line, and the questions asked in it."""

    lines: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)

    def add(self, line: str = "", note: str = "") -> None:
        """A line with its note as a comment; a note alone is a comment line, neither a blank."""
        if line and note:
            self.lines.append(f"{line}  # {note}")
        else:
            self.lines.append(line or (f"# {note}" if note else ""))

    def ask(self, key: str, example: str, question: str) -> None:
        """A field left as a commented line, with the question that would settle it."""
        self.questions.append(question)
        self.lines.append(f"# {key} = {example}  # QUESTION: {question}")


def draft_mapping(
    path: Path, read: Callable[[Path, ReadOptions], Table], *, encoding: str | None = None
) -> Draft:
    """A commented mapping for files like ``path``, read with ``read`` (the usual reader).

    The header is found by the synonyms (below any title rows); every proposal is as sure as its
    comment says, and a field it cannot place is a question, never a guess left unmarked. A CSV
    is read in ``encoding`` when it is given (one filedrop will not guess), and the draft sets it.
    """
    synonyms = tuple(dict.fromkeys(name for names in SYNONYMS.values() for name in names))
    try:
        table = read(path, ReadOptions(encoding=encoding, expected_headers=synonyms))
    except HiddenSheetError as exc:
        if not exc.visible:
            raise
        # The draft is of the first sheet the user sees, and names it (``_Drafter.draft``).
        table = read(path, ReadOptions(sheet=exc.visible[0], expected_headers=synonyms))
        return _Drafter(table, sheet_named=True).draft()
    return _Drafter(table, encoding_given=encoding is not None).draft()


def _words(text: str) -> list[str]:
    """A header's words, compared as ``loose_key`` compares them."""
    return [w for w in re.split(r"[\W_]+", unicodedata.normalize("NFC", text).casefold()) if w]


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _folded(cell: str) -> str:
    """A cell as totals words are compared: case, spaces around and a final colon ignored."""
    return cell.casefold().strip().rstrip(":").strip()


def _shown(value: str) -> str:
    """A cell or header in a comment or question: on one line, cut as a problem shows a cell
    (``shown``), and escaped where it would change how it shows (``printable``). An escape
    sequence in a cell was written into the draft as it was, which made it no TOML, and onto
    the terminal."""
    return printable(shown(" ".join(value.split())))


class _Drafter:
    """Places the fields of one table, then writes the draft."""

    def __init__(
        self, table: Table, *, sheet_named: bool = False, encoding_given: bool = False
    ) -> None:
        self.table = table
        self.sheet_named = sheet_named  # the sheet read by name: the first one is hidden
        self.encoding_given = encoding_given  # init --encoding: the files are read so
        self.headers = table.headers
        self.placed: dict[str, _Placed] = {}
        self.used: set[str] = set()
        self.skipped_by: set[str] = set()  # columns only a [skip] rule reads: not left unused
        self._place_by_headers()
        self._place_by_values()
        self.decimal, self.thousands, self.number_note = self._number_style()

    # -- reading the table ---------------------------------------------------------------------

    def cells(self, header: str) -> pd.Series:
        """The column's cells as text, stripped (blank rows are already gone)."""
        return strip(self.table.cells[self.headers.index(header)])

    def texts(self, header: str) -> list[str]:
        """Its non-empty cells typed as text (in a workbook, real numbers and dates are not)."""
        pos = self.headers.index(header)
        if self.table.info.kind == "excel":
            values = self.table.values[pos].tolist()
            return [v.strip() for v in values if isinstance(v, str) and v.strip()]
        return [v for v in self.cells(header).tolist() if v]

    def row_number(self, position: int) -> int:
        return int(self.table.row_numbers[position])

    # -- placing fields ------------------------------------------------------------------------

    def _claim(self, key: str, header: str, how: str) -> None:
        self.placed[key] = _Placed(header, how)
        self.used.add(header)

    def _place_by_headers(self) -> None:
        """Exact synonyms first, over every header; then headers that contain a synonym."""
        exact = {
            loose_key(s): (key, rank)
            for key, names in reversed(SYNONYMS.items())
            for rank, s in reversed(list(enumerate(names)))
        }
        found = []  # (the synonym's rank among its field's, column, header, field, how)
        for at, header in enumerate(self.headers):
            key, rank = exact.get(loose_key(header), (None, 0))
            how = EXACT
            if key in _NAME_KEYS and self._numbers_only(header):
                # Kunde beside Kundenavn, Customer beside Customer name: a column of numbers
                # headed as the customer is the customer's number, and the name is the other's.
                # Sent as the name, "50002" went out as the company Vinmonopolet AS.
                key, how = "customerNumber", _NUMBERS
            if key is not None:
                found.append((rank, at, header, key, how))
        # Where two headers are synonyms of what is owed, the more telling one takes it,
        # whatever the columns' order: Restbeløp rather than Saldo. For another field the first
        # column does, and the draft asks: Kunde (a company) beside Navn (its contact person),
        # Faktura beside Bilagsnr, cannot be told apart by their headers.
        order = sorted(found, key=lambda f: (f[0] if f[3] == "remainingAmount" else 0, f[1]))
        for _, _, header, key, how in order:
            if key not in self.placed and header not in self.used:
                self._claim(key, header, how)
            elif header not in self.used and how == EXACT and key != "remainingAmount":
                self._ask_between(key, header)
        before_vat: list[tuple[str, tuple[str, str]]] = []
        for header in self.headers:
            if header in self.used or not header.strip():
                continue
            found = self._partial(header)
            if found is not None and found[0] in _AMOUNT_KEYS and _BEFORE_VAT.search(header):
                before_vat.append((header, found))
            elif found is not None and found[0] not in self.placed:
                self._claim(found[0], header, f"partial match: {found[1]}")
        # An amount before VAT only where the file has no other: "Beløp eks. mva", placed first,
        # was drafted as the invoice's amount beside "Beløp inkl. mva", the one the debtor owes.
        for header, (key, matched) in before_vat:
            if key not in self.placed:
                self._claim(key, header, f"partial match: {matched}, before VAT")

    def _numbers_only(self, header: str) -> bool:
        """Whether every filled cell of the column is a number (digits, spaces and dashes), a
        totals row's word aside: an export's "Sum" under Kunde made it a column of names."""
        cells = self.cells(header)
        filled = cells[cells.ne("") & ~cells.map(_folded).isin(_TOTALS)]
        return bool(len(filled)) and bool(filled.str.fullmatch(r"[0-9][0-9 \-]*").all())

    def _ask_between(self, key: str, other: str) -> None:
        """Ask which of the column placed as ``key`` and ``other``, headed as it too, holds it
        (the one placed stays drafted); ``other`` is then asked about here alone."""
        placed = self.placed[key]
        if placed.how != EXACT or not self.cells(other).ne("").any():
            return
        self.used.add(other)
        self.placed[key] = _Placed(
            placed.header,
            f"QUESTION: {_toml(placed.header)} and {_toml(other)} are both headed as it, and "
            "the first is drafted: which holds it?",
        )

    def _partial(self, header: str) -> tuple[str, str] | None:
        """(field, what matched) for a header holding a synonym as a word, or a long one inside
        it; the longest synonym wins. A header naming both an organisation number and a person's
        number ("Orgnr / Fnr") is the combined id."""
        parts = [p for p in re.split(r"/|\beller\b|\bor\b", header) if p.strip()]
        if len(parts) > 1:
            kinds = {self._partial(p)[0] for p in parts if self._partial(p) is not None}
            if {"person_id", "org_id"} <= kinds:
                return "id", "a fødselsnummer and an organisation number"
        words, whole = {loose_key(w) for w in _words(header)}, loose_key(header)
        best: tuple[str, str] | None = None
        for key, names in SYNONYMS.items():
            for name in names:
                s = loose_key(name)
                if (s in words or (len(s) >= 5 and s in whole)) and (
                    best is None or len(s) > len(loose_key(best[1]))
                ):
                    best = (key, name)
        if best is not None and best[0] == "remainingAmount" and not owed_header(header):
            # "Dager utestående" (days overdue) and "Balance sheet ref" hold a word of what is
            # owed: placed, 12 days went out as the claim of an invoice of 4 500.
            return None
        return None if best is None else (best[0], f'"{_shown(best[1])}"')

    def _place_by_values(self) -> None:
        """Columns no header placed, judged by their values: emails, phone numbers, national ids,
        currencies, dates and amounts, each only for a field still open."""
        for header in self.headers:
            if header in self.used:
                continue
            values = [v for v in self.cells(header).tolist() if v]
            if not values:
                continue
            for key, share in self._value_kinds(values):
                if key not in self.placed:
                    self._claim(key, header, f"guessed from values: {share}")
                    break

    def _value_kinds(self, values: list[str]) -> Iterable[tuple[str, str]]:
        """(field, evidence) for what every value of a column looks like, most specific first."""
        n = len(values)
        series = pd.Series(values, dtype=object)
        of = f"{n} of {n} cells"
        if is_email(series).all():
            yield "emails", f"{of} are email addresses"
        ids = compact_id(series)
        person = is_fodselsnummer(ids.where(ids.str.len() != 10, ids.str.zfill(11)))
        org = is_orgnr(ids)
        if (person | org).all():
            kind = "id" if person.any() and org.any() else "person_id" if person.any() else "org_id"
            yield kind, f"{of} are fødselsnumre or organisation numbers"
        if all(v.upper() in CURRENCIES for v in values):
            yield "currency", f"{of} are currency codes"
        if all(phone_e164(v, "NO") is not None for v in values):
            yield "phoneNumbers", f"{of} are phone numbers"
        # Plain dates only: a column of timestamps without a telling header is an order's or
        # an export's moment more often than the invoice's date, and taken for it, it made the
        # real invoice date the due date (a hostile review).
        if all(_ISO_DAY.fullmatch(v) or _reads_as_date(v) for v in values):
            yield from ((k, f"{of} are dates") for k in ("invoiceDate", "dueDate"))
        readable = any(
            not np.isnan(parse_amounts(series, decimal=d, thousands=t)).any()
            for d, t in NUMBER_STYLES
        )
        if readable and any(re.search(r"[,.]\d\d?$", v) for v in values):
            yield "originalInvoiceAmount", f"{of} are amounts with decimals"

    # -- read settings ---------------------------------------------------------------------------

    def _amount_texts(self) -> list[str]:
        keys = ("originalInvoiceAmount", "remainingAmount")
        return [t for k in keys if k in self.placed for t in self.texts(self.placed[k].header)]

    def _number_style(self) -> tuple[str, str, str]:
        """(decimal, thousands, why) for the amounts typed as text: the first style that reads
        them all (Norwegian first), or the one that reads the most."""
        texts = pd.Series(self._amount_texts(), dtype=object)
        if texts.empty:
            return ",", " ", "no amount is typed as text here; these settings are for files that do"
        misses = [
            int(np.isnan(parse_amounts(texts, decimal=d, thousands=t)).sum())
            for d, t in NUMBER_STYLES
        ]
        best = misses.index(min(misses))
        decimal, thousands = NUMBER_STYLES[best]
        if misses[best]:
            parsed = parse_amounts(texts, decimal=decimal, thousands=thousands)
            first = _shown(str(texts[np.isnan(parsed)].iloc[0]))
            if misses[best] == 1:
                return (
                    decimal,
                    thousands,
                    f'check: an amount typed as text, "{first}", does not fit',
                )
            some = f'{misses[best]} amounts typed as text, such as "{first}", do not fit'
            return decimal, thousands, f"check: {some}"
        notation = {"decimal": decimal, "thousands": thousands}
        unclear = texts[thousands_like(texts, **notation)]
        if len(unclear) and not shows_decimal(texts, **notation):
            # "12,500" reads as 12,5 with a decimal comma and as 12 500 with a comma between
            # thousands, and nothing else in these amounts tells which: a person must.
            return (
                decimal,
                thousands,
                f'QUESTION: amounts such as "{_shown(unclear.iloc[0])}" have three digits after '
                f'the "{decimal}", so they read as decimals or as whole amounts with "{decimal}" '
                "between thousands; if whole, set decimal and thousands the other way round",
            )
        return decimal, thousands, f"detected from {_count(len(texts), 'amount')} typed as text"

    def _dates(self) -> tuple[list[str], str]:
        """The date formats the date columns' text needs, and how they were found."""
        # A time of day after a date is left out, as validate reads it: an export of
        # timestamps ("01.03.2026 00:00") was asked about, and its every row INVALID. Not
        # after an Excel serial day, which validate reads only alone.
        written = [
            (t, day)
            for k in ("invoiceDate", "dueDate")
            if k in self.placed
            for t in self.texts(self.placed[k].header)
            if not SERIAL_DAY.fullmatch(t) and not _ISO_DAY.fullmatch(day := day_part(t))
        ]
        texts = [day for _, day in written]
        if not texts:
            return [], "only real Excel dates and ISO dates here: no format needed"
        formats = _date_formats(texts)
        unread = [t for t, day in written if not _reads_as_date(day, among=formats)]
        if unread:
            return formats, f'QUESTION: "{_shown(unread[0])}" fits none of the formats drafts know'
        for fmt in formats:
            read = [t for t in texts if _read_date(t, fmt) is not None]
            # Day first wins a tie, as in Norway: a US export, or one writing a two-digit
            # year first (25-01-15 for 15 January 2025), would be read wrongly, years off.
            others = [(swap_day_and_month(fmt), "no day after the 12th")]
            if "yyyy" not in fmt:  # dd-mm-yy backwards: a two-digit year first
                others.append((fmt[::-1], "a two-digit year may come first"))
            for other, why in others:
                if other == fmt or "." in fmt or not read:
                    continue
                if not all(_read_date(t, other) is not None for t in read):
                    continue
                drafted, asked = fmt, other
                if why.startswith("a two") and self._likelier(other, than=fmt, texts=read):
                    drafted, asked = other, fmt
                return [drafted if f == fmt else f for f in formats], (
                    f'QUESTION: every date such as "{_shown(read[0])}" reads as {drafted} and '
                    f"as {asked} ({why}): which is it?"
                )
        return formats, f"detected from {_count(len(texts), 'date')} typed as text"

    def _likelier(self, fmt: str, *, than: str, texts: list[str]) -> bool:
        """Whether the rows' dates read in ``fmt`` are likelier a claim's than read in ``than``:
        fewer that no claim has (``_unlikely``); as many, nearer today (25-01-03 due 25-02-03
        is January 2025 or January 2003, both 31 days: the recent one is the claim's)."""
        unlikely, other = self._unlikely(fmt), self._unlikely(than)
        if unlikely != other:
            return unlikely < other
        return _years_off(texts, fmt) < _years_off(texts, than)

    def _unlikely(self, fmt: str) -> int:
        """How many of the rows' dates, read in ``fmt``, no claim has: a date more than a month
        ahead of today, a due date before its invoice date or more than a year after it.
        25-01-15 read day first is 25 January 2015, due 25-02-14 on 25 February 2014; read year
        first, 15 January 2025, due 14 February: 30 days, as invoices are."""
        soon = dt.date.today() + dt.timedelta(days=31)
        columns = [self.placed[k].header for k in ("invoiceDate", "dueDate") if k in self.placed]
        rows = zip(
            *(map(_read_date, self.cells(h).tolist(), repeat(fmt)) for h in columns), strict=True
        )
        count = 0
        for dates in rows:
            count += sum(d is not None and d > soon for d in dates)
            if len(dates) == 2 and None not in dates:
                issued, due = dates
                count += not dt.timedelta(0) <= due - issued <= dt.timedelta(days=366)
        return count

    # -- writing the draft -------------------------------------------------------------------------

    def draft(self) -> Draft:
        out = _Lines()
        # Names are data (the file's, its sheet's): a control character in one must not end a
        # comment line of the draft.
        info, name = self.table.info, printable(self.table.path.name)
        where = (
            f'sheet "{printable(info.sheet)}"' if info.kind == "excel" else f"{info.encoding} text"
        )
        header = f"header on row {info.header_row}"
        out.add(note=f"Drafted by `filedrop init` from {name} ({where}, {header}).")
        out.add(note="Each line says how sure the draft is; lines marked QUESTION need an answer.")
        out.add(note=f"Check it with: filedrop validate {name} --mapping <this file>")
        out.add(note="Every option is explained in mappings/README.md.")
        out.add()
        out.add(f"name = {_toml(self.table.path.stem)}")
        out.add()
        out.add("[match]")
        out.add(
            f"files = [{_toml(_file_pattern(self.table.path))}]", "file names this mapping takes"
        )
        self._unread_owed(out)
        out.add()
        self._read_section(out)
        self._skip_section(out)
        self._invoice_section(out)
        self._debtor_section(out)
        self._claims_section(out)
        for header in self.headers:
            unused = header not in self.used and header not in self.skipped_by
            if unused and paid_header(header) and "remainingAmount" not in self.placed:
                out.questions.append(
                    f'column "{_shown(header)}" seems to hold what was paid on each invoice, '
                    "which no field reads: an invoice showing a payment is refused, as it would "
                    "go for its whole amount; export what is still owed and read it as the "
                    "claim's remainingAmount, or name the column in [match] unread if it is not "
                    "what was paid"
                )
            elif unused and self.cells(header).ne("").any():
                out.questions.append(
                    f'column "{_shown(header)}" is not used; which field holds it, if any?'
                )
        return Draft("\n".join(out.lines) + "\n", tuple(out.questions))

    def _unread_owed(self, out: _Lines) -> None:
        """A column whose header says it holds what is still owed but is not read as that
        ("Saldo" beside "Restbeløp", the one read): a mapping must read it or name it unread,
        or no file fits, the draft's own sample first."""
        owed = self.placed.get("remainingAmount")
        others = [h for h in self.headers if h not in self.used and owed_header(h)]
        if not others:
            return
        names = ", ".join(_toml(h) for h in others)
        if owed is not None:
            question = (
                f"{names} may also hold what is still owed, and {_toml(owed.header)} is read "
                "as that; if another is, read it as the claim's remainingAmount instead"
            )
        else:  # placed as another field, or not at all: its own file must fit the draft
            question = (
                f"{names} may hold what is still owed; if so, read it as the claim's "
                "remainingAmount instead of the invoice's amount"
            )
        self.used.update(others)
        out.questions.append(question)
        out.add(f"unread = [{names}]", f"QUESTION: {question}")

    def _read_section(self, out: _Lines) -> None:
        info = self.table.info
        out.add("[read]")
        if info.kind == "csv":
            encoding = _toml(info.encoding or "utf-8")
            if self.encoding_given:
                out.add(f"encoding = {encoding}", "as given to filedrop init")
            else:
                out.add(f"# encoding = {encoding}", "detected, and again for every file")
            delimiter = "tab" if info.delimiter == "\t" else info.delimiter or ";"
            out.add(f"delimiter = {_toml(delimiter)}", "detected")
        elif self.sheet_named:
            out.add(f"sheet = {_toml(info.sheet)}", "the first sheet is hidden in Excel")
        else:
            out.add(f"# sheet = {_toml(info.sheet or '1')}", "the sheet read; the first by default")
        if info.header_row != 1:
            out.add(
                f"# header_row = {info.header_row}",
                "found below the title rows, and found again in every file",
            )
        out.add(f"decimal = {_toml(self.decimal)}", self.number_note)
        if self.number_note.startswith("QUESTION"):
            out.questions.append(self.number_note.removeprefix("QUESTION: "))
        thousands = ", ".join(_toml(c) for c in self.thousands)
        out.add(f"thousands = [{thousands}]")
        formats, why = self._dates()
        if formats:
            out.add(f"dates = [{', '.join(map(_toml, formats))}]", why)
            if why.startswith("QUESTION"):
                out.questions.append(why.removeprefix("QUESTION: "))
        else:
            out.add(note=f"dates: {why}")
        out.add()

    def _skip_section(self, out: _Lines) -> None:
        """A rule for each kind of row that is not an invoice: the first totals row seen (the
        built-in rule takes it when it has no invoice number), and credit notes."""
        lines: list[tuple[str, str]] = []
        totals = self._totals_cells()
        number = self.placed.get("invoiceNumber")
        if totals:
            pos, header, cell = totals[0]
            own = "" if number is None else str(self.cells(number.header).iloc[pos])
            row = self.row_number(pos)
            if not own or _folded(own) in _TOTALS:
                lines.append(
                    (
                        "",
                        f'row {row} ({_shown(header)} "{_shown(cell)}") is a totals row:'
                        " the built-in rule skip.totals leaves it out",
                    )
                )
            else:
                lines.append(
                    (
                        f"totals_row = {{ column = {_toml(header)}, is = [{_toml(cell)}] }}",
                        f'row {row} reads "{_shown(cell)}" beside an invoice number',
                    )
                )
        amount = self.placed.get("originalInvoiceAmount") or self.placed.get("remainingAmount")
        left_out = {t[0] for t in totals}
        if amount is not None and (credit := self._at_most_zero(amount.header, left_out)):
            left_out.update(credit)
            lines.append(
                (
                    f"credit_notes = {{ column = {_toml(amount.header)}, at_most = 0 }}",
                    f"zero or negative amounts (row {self._rows(credit)}) are credit notes",
                )
            )
        # What is still owed, in a column of its own: an invoice paid since (0,00 left) is no
        # case, and its row, refused as no positive amount, made every run end in error.
        owed = self.placed.get("remainingAmount")
        if (
            owed is not None
            and owed.header != getattr(amount, "header", None)
            and (paid := self._at_most_zero(owed.header, left_out))
        ):
            lines.append(
                (
                    f"paid = {{ column = {_toml(owed.header)}, at_most = 0 }}",
                    f"nothing left to pay (row {self._rows(paid)}): a paid invoice is not sent",
                )
            )
        lines += self._credit_note_types()
        if lines:
            out.add("[skip]")
            for line, note in lines:
                out.add(line, note)
                if note.startswith("QUESTION: "):
                    out.questions.append(note.removeprefix("QUESTION: "))
            out.add()

    def _at_most_zero(self, header: str, left_out: set[int]) -> list[int]:
        """The rows (positions) whose amount in ``header`` is zero or less, but ``left_out``."""
        cells = self.cells(header)
        numbers = parse_amounts(cells, decimal=self.decimal, thousands=self.thousands)
        with np.errstate(invalid="ignore"):
            found = np.flatnonzero((numbers <= 0) & cells.ne("").to_numpy()).tolist()
        return [p for p in found if p not in left_out]

    def _rows(self, positions: list[int]) -> str:
        """The first three of these rows by number, for a note."""
        return ", ".join(str(self.row_number(p)) for p in positions[:3])

    def _credit_note_types(self) -> list[tuple[str, str]]:
        """A rule for the first column whose cells name credit notes ("Kreditnota" in
        Bilagstype): such a row's amount is often written without a minus, so no amount rule
        leaves it out, and a draft that left the column unused sent the credit note as a claim.
        And one for the first column headed as a type ("Bilagstype", "Linjetype") whose cells
        name reminder fees or interest notes ("Purregebyr", "Rentenota"): each went out as a case
        of its own for a principal of 35 kroner, which a fee is not. Only a type column: a
        description reading "Fee" is a consulting fee's invoice. Each search goes on alone, so
        a column of fees found first never hides the credit notes of another."""
        searches = (
            (_CREDIT_NOTES, "credit_notes_by_type", "{} names credit notes ({})", False),
            (
                _FEES,
                "fees_by_type",
                "QUESTION: {} names reminder fees or interest ({}), left out, as each would go "
                "as a principal of its own; add them to their invoice's claims if Amili is to "
                "collect them",
                True,
            ),
        )
        rules = []
        for words, name, note, typed in searches:
            rule = next(
                (
                    found
                    for header in self.headers
                    if not typed or _TYPE_HEADER.search(loose_key(header))
                    if (found := self._type_rule(header, words, name, note)) is not None
                ),
                None,
            )
            if rule is not None:
                rules.append(rule)
        return rules

    def _type_rule(
        self, header: str, words: frozenset[str], name: str, note: str
    ) -> tuple[str, str] | None:
        """``name = { column = header, is = [...] }`` for the cells of ``header`` that are one
        of ``words`` (compared as totals words are), and its ``note`` with the header and the
        rows filled in; None when none is."""
        cells = self.cells(header)
        said = cells[cells.map(_folded).isin(words).to_numpy()]
        if said.empty:
            return None
        texts = ", ".join(_toml(text) for text in dict.fromkeys(said.tolist()))
        self.skipped_by.add(header)
        return (
            f"{name} = {{ column = {_toml(header)}, is = [{texts}] }}",
            note.format(_shown(header), f"row {self._rows(said.index.tolist())}"),
        )

    def _totals_cells(self) -> list[tuple[int, str, str]]:
        """(row position, header, cell) of each cell reading Sum, Total, I alt …, by row."""
        found = []
        for header in self.headers:
            for pos, cell in enumerate(self.cells(header).tolist()):
                if cell and _folded(cell) in _TOTALS:
                    found.append((pos, header, cell))
        return sorted(found, key=lambda found_at: found_at[0])  # by row, columns in order

    def _column(self, out: _Lines, key: str, api_key: str, *, extra: str = "") -> bool:
        """``api_key = "<header>"`` with its sureness; False when the field was not placed."""
        placed = self.placed.get(key)
        if placed is None:
            return False
        value = f"{{ column = {_toml(placed.header)}{extra} }}" if extra else _toml(placed.header)
        if key in _AMOUNT_KEYS and _IN_ORE.search(placed.header):
            # Amounts are sent in kroner, and no mapping divides: placed, every claim went out a
            # hundred times too large.
            out.ask(
                api_key,
                value,
                f"{_shown(placed.header)} says its amounts are in øre, and filedrop sends kroner "
                "(a hundred times as much): export the amounts in kroner, or name such a column",
            )
            return True
        out.add(f"{api_key} = {value}", placed.how)
        if placed.how.startswith("QUESTION: "):
            out.questions.append(f"{api_key}: {placed.how.removeprefix('QUESTION: ')}")
        return True

    def _currency_map(self) -> str:
        """The currency column's extra settings: a default, and a map where it writes kroner as
        "kr" (Visma's Valuta), which is no currency code and refused every such row; a
        Norwegian export's kroner are NOK. Its codes map to themselves, as a map knows only
        what it lists."""
        cells = self.cells(self.placed["currency"].header)
        # One of each value whatever its case: a map's keys match cells so, and one listing
        # "kr" and "Kr" is refused.
        first: dict[str, str] = {}
        for value in cells.tolist():
            if value:
                first.setdefault(value.upper(), value)
        values = list(first.values())
        if not any(_folded(v).rstrip(".") == "kr" for v in values) or len(values) > _MAPPED_MAX:
            return ', default = "NOK"'
        pairs = {
            v: "NOK" if _folded(v).rstrip(".") == "kr" else v.upper()
            for v in values
            if _folded(v).rstrip(".") == "kr" or v.upper() in CURRENCIES
        }
        # And the currencies a Norwegian creditor bills in, so that a later file holding one
        # the sample did not is read as before the map.
        listed = {value.upper() for value in pairs}
        pairs |= {code: code for code in _USUAL_CURRENCIES if code not in listed}
        entries = ", ".join(f"{_toml(v)} = {_toml(code)}" for v, code in pairs.items())
        return f', map = {{ {entries} }}, default = "NOK"'

    def _invoice_section(self, out: _Lines) -> None:
        out.add("[invoice]")
        out.add(
            'type = { constant = "NOTICE" }',
            'every row a first notice; "PAYMENT_REMINDER" for reminders',
        )
        if not self._column(out, "invoiceNumber", "invoiceNumber"):
            out.ask("invoiceNumber", '"<column>"', "which column holds the invoice number?")
        amount = "originalInvoiceAmount"
        if not self._column(out, amount, amount) and not self._column(
            out, "remainingAmount", amount
        ):
            out.ask("originalInvoiceAmount", '"<column>"', "which column holds the invoice amount?")
        if "currency" in self.placed:
            self._column(out, "currency", "currency", extra=self._currency_map())
        else:
            out.add('currency = { constant = "NOK" }', "no currency column: every invoice in NOK")
        for key, what in (("invoiceDate", "invoice date"), ("dueDate", "due date")):
            if not self._column(out, key, key):
                out.ask(key, '"<column>"', f"which column holds the {what}?")
        if not self._column(out, "ocrReferenceNumber", "ocrReferenceNumber"):
            out.add('# ocrReferenceNumber = "<column>"', "no KID column found; optional")
        self._column(out, "description", "description")
        out.add()

    def _debtor_section(self, out: _Lines) -> None:
        out.add("[debtor]")
        self._debtor_type(out)
        company = self.placed.pop("company_name", None)
        split = "firstname" in self.placed and "lastname" in self.placed
        if company is not None and not split:  # drafted beside first and last names only
            self.used.discard(company.header)  # else asked about as any unused column
        if split:
            self._column(out, "firstname", "firstname")
            # Amili takes a company's name as its last name: a company's row, its Etternavn
            # empty and its name in Firmanavn, was drafted with no name and FAILED.
            named = "" if company is None else f", default = {{ column = {_toml(company.header)} }}"
            self._column(out, "lastname", "lastname", extra=named)
            if company is not None:
                out.add(note=f"a company's name from {_shown(company.header)}")
            if "full_name" in self.placed:
                self.used.discard(self.placed.pop("full_name").header)
        elif "full_name" in self.placed:
            self._column(out, "full_name", "full_name")
            out.add(note='a person\'s name is split ("Etternavn, Fornavn" or "Fornavn Etternavn")')
        else:
            out.ask("full_name", '"<column>"', "which column holds the customer's name?")
        self._column(out, "customerNumber", "customerNumber")
        self._identification(out)
        self._column(out, "emails", "emails")
        self._column(out, "phoneNumbers", "phoneNumbers", extra=', country = "NO"')
        address = [k for k in ("street", "zipCode", "city") if k in self.placed]
        if address:
            out.add()
            out.add("[debtor.addresses]")
            self._column(out, "street", "street")
            self._column(out, "zipCode", "zipCode", extra=", pad = 4")
            self._column(out, "city", "city")
            out.add('countryCode = { constant = "NO" }', "every address in Norway")
        out.add()

    def _debtor_type(self, out: _Lines) -> None:
        placed = self.placed.get("debtor_type")
        if placed is not None:
            seen = sorted({v for v in self.cells(placed.header).tolist() if v}, key=str.casefold)
            known = {w: t for t, words in DEBTOR_TYPE_WORDS.items() for w in words}
            pairs = [(v, known.get(v.casefold())) for v in seen]
            entries = ", ".join(f"{_toml(v)} = {_toml(t)}" for v, t in pairs if t)
            out.add(
                f"type = {{ column = {_toml(placed.header)}, map = {{ {entries} }} }}", placed.how
            )
            for value, kind in pairs:
                if kind is None:
                    out.questions.append(
                        f'{_shown(placed.header)} "{_shown(value)}": is that PRIVATE or COMPANY? '
                        "(add it to the map)"
                    )
            return
        if any(k in self.placed for k in ("id", "person_id", "org_id")):
            out.add("type = { from_id = true }", "no type column: 9 digits COMPANY, 11 PRIVATE")
            return
        out.ask(
            "type",
            '{ constant = "PRIVATE" }',
            "no column tells a person from a company; are they all PRIVATE, or all COMPANY?",
        )

    def _identification(self, out: _Lines) -> None:
        combined, person, org = (self.placed.get(k) for k in ("id", "person_id", "org_id"))
        if combined is not None:
            self._column(out, "id", "identificationNumber", extra=", pad = 11")
        elif person is not None and org is not None:
            out.add(
                f"identificationNumber = {{ column = {_toml(person.header)}, pad = 11, "
                f"default = {{ column = {_toml(org.header)} }} }}",
                f"{_shown(person.header)}: {person.how}; {_shown(org.header)}: {org.how}",
            )
        elif person is not None:
            self._column(out, "person_id", "identificationNumber", extra=", pad = 11")
        elif org is not None:
            self._column(out, "org_id", "identificationNumber")
        else:
            out.add('# identificationNumber = "<column>"', "no fødselsnummer or org.nr column")

    def _claims_section(self, out: _Lines) -> None:
        out.add("[[claims]]")
        out.add('type = { constant = "PRINCIPAL" }')
        remaining = "remainingAmount"
        if not self._column(out, remaining, remaining) and not self._column(
            out, "originalInvoiceAmount", remaining
        ):
            out.ask("remainingAmount", '"<column>"', "which column holds the amount still owed?")


_AMOUNT_KEYS = frozenset({"originalInvoiceAmount", "remainingAmount"})
#: The fields a person's or company's name goes to: a column of numbers is none of them.
_NAME_KEYS = frozenset({"full_name", "firstname", "lastname", "company_name"})
#: What a drafted currency map lists beside the sample's own values.
_USUAL_CURRENCIES = ("NOK", "SEK", "DKK", "EUR", "USD", "GBP")
#: The most distinct values a drafted map lists: a column of more is no code column.
_MAPPED_MAX = 10
#: Why a column headed as the customer was placed as the customer number.
_NUMBERS = "headed as the customer, and every cell a number: the customer number"
#: A header of an amount before VAT ("Beløp eks. mva", "Netto", "Amount excl. VAT").
_BEFORE_VAT = re.compile(r"\b(?:eks|ekskl|ex|excl|excluding|uten|netto|net)\b", re.IGNORECASE)
#: A header saying its amounts are in hundredths: "Beløp i øre", "Amount (cents)".
_IN_ORE = re.compile(r"(?<!\w)(?:øre|ore|cents?)(?!\w)", re.IGNORECASE)


def _date_formats(texts: Iterable[str], *, among: Iterable[str] = DATE_FORMATS) -> list[str]:
    """The fewest formats of ``among`` that read every text any of them reads (in ``among``'s
    order); [] if none reads any. A text none reads (a totals row's "Sum") does not cost the
    draft the formats of every date it reads."""
    candidates = list(among)
    fits: dict[str, set[int]] = {f: set() for f in candidates}
    texts = list(texts)
    for i, text in enumerate(texts):
        for fmt in candidates:
            if _read_date(text, fmt) is not None:
                fits[fmt].add(i)
    everything = set().union(*fits.values())
    if not everything:
        return []
    chosen = [f for f in candidates if fits[f]]
    for fmt in reversed(chosen):  # drop a format whose dates the others read, last ones first
        rest = [f for f in chosen if f != fmt]
        if rest and set().union(*(fits[f] for f in rest)) == everything:
            chosen = rest
    return chosen


@lru_cache(maxsize=1 << 16)
def _read_date(text: str, fmt: str) -> dt.date | None:
    """``text`` read in the draft's date format ``fmt`` (``dd.mm.yyyy``), None when it does not
    read so. Cached: a date column repeats its days, and the draft tries every row's text in
    several formats (a 20,000-row export took 15 s to draft, most of it in strptime)."""
    try:
        return dt.datetime.strptime(text, date_format_to_strptime(fmt)).date()
    except ValueError:
        return None


def _reads_as_date(text: str, *, among: Iterable[str] = DATE_FORMATS) -> bool:
    """Whether some format of ``among`` reads ``text`` (``_date_formats`` of it alone)."""
    return any(_read_date(text, fmt) is not None for fmt in among)


def _years_off(texts: list[str], fmt: str) -> int:
    """How many years from now the middle of ``texts`` read in ``fmt`` lies."""
    years = sorted(day.year for t in texts if (day := _read_date(t, fmt)) is not None)
    return abs(years[len(years) // 2] - dt.date.today().year)


def _file_pattern(path: Path) -> str:
    """``tripletex-2024-03.xlsx`` -> ``tripletex*.xlsx``: the name up to its first digit, so the
    next export fits too."""
    stem = re.split(r"\d", path.stem, maxsplit=1)[0]
    stem = re.sub(r"[-_ .]+$", "", stem) or path.stem
    return f"{stem}*{path.suffix.lower()}"
