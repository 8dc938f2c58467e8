"""Pure value conversions, one whole column at a time.

Every function takes text exactly as the user typed it (already trimmed) and returns the converted
values together with a mask of what could not be converted, so the caller can name each failure in
one sentence. Nothing here raises on bad cell text. Expensive checks (phone parsing, check digits)
run once per distinct value: export columns repeat a lot (dates, currencies, customers). Nothing
here knows about mappings: fields.py applies these to one mapping Field.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from functools import cache, lru_cache
from itertools import compress, repeat
from typing import NamedTuple, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import phonenumbers
from stdnum import luhn
from stdnum.no import fodselsnummer, orgnr

from filedrop.read.table import INVISIBLE, Table, zero_filled

__all__ = [
    "CURRENCIES",
    "EXCEL_DIGITS",
    "OUTSIDE_CLAIM_YEARS",
    "PHONE_CACHE_SIZE",
    "SERIAL_DAY",
    "SHORTENED",
    "SPACES",
    "WHITESPACE",
    "DecimalGrouping",
    "amount_example",
    "amount_pattern",
    "amounts_as_read",
    "api_timestamps",
    "compact_id",
    "date_format_to_strptime",
    "dates_from_excel",
    "day_part",
    "distinct_joined",
    "excel_days_said",
    "excel_numbers",
    "excel_shows",
    "grouping_shown_decimal",
    "has_more_than_two_decimals",
    "is_email",
    "is_fodselsnummer",
    "is_kid",
    "is_orgnr",
    "kid_ok",
    "line_break",
    "mask_id",
    "matching_lines",
    "numbers_from_excel",
    "one_line",
    "one_line_texts",
    "outside_claim_years",
    "parse_amounts",
    "parse_dates",
    "per_unique",
    "phone_e164",
    "phones_e164",
    "quoted",
    "read_days",
    "reads_as_date",
    "shown",
    "shows_decimal",
    "split_values",
    "strip",
    "swap_day_and_month",
    "thousands_like",
    "time_mask",
    "typed_mask",
    "visible",
    "zero_pad",
]

# Active ISO 4217 codes (2024 list, funds and precious metals left out). A code missing here makes a
# row INVALID, so err on the side of the full list. The sandbox checks invoices against this same
# list, so a currency filedrop lets through is never refused there.
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 - one code per word reads better than 170 quoted lines
)

PHONE_CACHE_SIZE = 16_384
"""Distinct phone numbers remembered (a few megabytes). Each file's numbers are checked once per
distinct value anyway, so this only spares work across files and fields."""

#: An Excel serial day number as text (46082 is 2026-03-01): the reader of dates takes it for a
#: date whatever the formats, and a draft looks past it.
SERIAL_DAY = re.compile(r"[0-9]{5}")
# Space, no-break space, narrow no-break space, thin space and figure space all group thousands
# in Norwegian exports (the thin space where a report was typeset, the figure space, a digit's
# width, where one was turned from PDF into a spreadsheet: it was refused as "not an amount"
# with an example that looked the same).
SPACES = " \u00a0\u202f\u2009\u2007"
# Every space Unicode has (the Zs, Zl and Zp characters: an ideographic or em space, a line
# separator), so a cell of nothing else is empty rather than a name of one space.
WHITESPACE = (
    " \t\r\n\u00a0\u202f\u2007\ufeff\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
)

# What breaks a line, or jumps along one, inside a cell: Excel's Alt+Enter (a line feed), a CSV's
# carriage return, Unicode's line and paragraph separators, and the tab. The other characters
# that may end a line (vertical tab, form feed, next line) are control characters, which rule
# ``text`` refuses (fields.py).
_LINE_BREAKS = "\t\n\r\u2028\u2029"
_LINE_BREAK = re.compile(f"[{_LINE_BREAKS}]")
_SPACE_RUN = re.compile(f"[{re.escape(WHITESPACE)}]+")

#: Currency words and signs that ERPs glue to amounts ("kr 1 234,50", "1 234,50 NOK", "€12"), and
#: the currency each names; "kr" is the krone or krona of Norway, Sweden or Denmark.
_AFFIX_CURRENCY = {
    **dict.fromkeys(("kr", "kr."), "kr"),
    **{code.lower(): code for code in ("NOK", "SEK", "DKK", "EUR", "USD", "GBP")},
    "€": "EUR",
    "$": "USD",
    "£": "GBP",
}
KRONE_CURRENCIES = frozenset({"NOK", "SEK", "DKK"})
_AFFIXES = "|".join(map(re.escape, sorted(_AFFIX_CURRENCY, key=len, reverse=True)))
_AFFIX_FIRST = re.compile(rf"(?:{_AFFIXES})", re.IGNORECASE)  # matched at the start only
_AFFIX_LAST = re.compile(rf"(?:{_AFFIXES})$", re.IGNORECASE)  # searched in the last few only
_LONGEST_AFFIX = max(map(len, _AFFIX_CURRENCY))


def _currency_affixes(value: str) -> tuple[str, list[str]]:
    """``value`` without the currency word or sign glued to its start and to its end, and the
    currencies they name. Looked for at the two ends alone: one pattern that tried a run of
    spaces then a word at every position took quadratic time (a cell of 20,000 spaces: 25 s)."""
    names = []
    if found := _AFFIX_FIRST.match(value):
        names.append(_AFFIX_CURRENCY[found.group().lower()])
        value = value[found.end() :].lstrip()
    tail = value[-_LONGEST_AFFIX:]
    if found := _AFFIX_LAST.search(tail):
        names.append(_AFFIX_CURRENCY[found.group().lower()])
        value = value[: len(value) - len(tail) + found.start()].rstrip()
    return value, names


_MINUS = "-\u2212\u2013"  # hyphen, minus sign, en dash (Excel and Word turn one into another)
_MINUS_CLASS = re.escape(_MINUS)
_EXCEL_EPOCH = np.datetime64("1899-12-30")
_EXCEL_EPOCH_1904 = np.datetime64("1904-01-01")
_LAST_EXCEL_SERIAL = 2_958_465  # 9999-12-31, the last day Excel shows
_LAST_EXCEL_DAY = np.datetime64("9999-12-31")
_DAYS_TO_1904 = 1462  # 01.01.1904 in the 1900 count: a 1904 workbook's day 0
# A date outside this window is a typo (2124 for 2024) or a number that is no date (a year
# typed as a number, 2024, reads as Excel's day 2024, in 1905), rather than a real invoice date:
# no claim from before 1970 is still owed, and none is due after 2099.
_FIRST_YEAR, _LAST_YEAR = 1970, 2099
#: Said of a date outside that window, after the day it reads as.
OUTSIDE_CLAIM_YEARS = (
    f"outside the years {_FIRST_YEAR} to {_LAST_YEAR} that a claim's dates fall in"
)

_DATE_TOKENS = {"dd": "%d", "d": "%d", "mm": "%m", "m": "%m", "yyyy": "%Y", "yy": "%y"}
_DATE_FORMAT = re.compile(r"(?:d{1,2}|m{1,2}|yyyy|yy)(?:[.\-/ ](?:d{1,2}|m{1,2}|yyyy|yy)){2}")
# ISO dates (and Excel date-times shown as text) are unambiguous, so they are always accepted.
_ISO_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")

# Email shape only: one @, a dotted domain, no spaces or list separators. The mailbox itself can
# only be checked by sending to it.
_EMAIL = r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[\w-]+\.)+[^\W\d_]{2,}"
_EMAIL_RE = re.compile(_EMAIL)
# Each line of a text, one address a line; no part of the pattern matches a line break.
_EMAIL_LINES = re.compile(rf"^{_EMAIL}$", re.MULTILINE)
_KID = re.compile(r"[0-9]{1,24}[0-9-]")


def strip(text: pd.Series) -> pd.Series:
    """Trim spaces, tabs and the no-break spaces Excel and PDFs leave around values, and take
    out the characters nobody can see (`INVISIBLE`), wherever they are.

    A column with nothing to trim (most of them) comes back as it is, not as a copy.
    """
    # A plain loop over str.strip is twice as fast as .str.strip on object columns; it returns
    # the very same string when there is nothing to trim.
    raw = text.tolist()
    values = _visible(raw)
    stripped = list(map(str.strip, values, repeat(WHITESPACE)))  # no bytecode per value
    if values is raw and all(map(operator.is_, stripped, raw)):
        return text
    return pd.Series(stripped, index=text.index, dtype=object)


def one_line(text: pd.Series) -> pd.Series:
    """``text`` (already trimmed) with each value that holds a line break or tab made one line
    (`one_line_texts`); itself when none holds one, as most columns."""
    values = text.tolist()
    lines = one_line_texts(values)
    return text if lines is values else pd.Series(lines, index=text.index, dtype=object)


def one_line_texts(values: list[str]) -> list[str]:
    """``values`` with each one that holds a line break or tab made one line: every run of
    spaces, tabs and line breaks in it becomes one space ("c/o Hansen" and "Storgata 12" on two
    lines become "c/o Hansen Storgata 12"). A name or an address line with a line break in it
    (Alt+Enter in Excel) printed as two lines of a collection letter. The very same list when
    none holds one: the column is joined once and looked through (``_holds_line_break``)."""
    if not _holds_line_break("".join(values)):
        return values
    return [_SPACE_RUN.sub(" ", v) if _LINE_BREAK.search(v) else v for v in values]


def line_break(value: str) -> str | None:
    """What breaks ``value``'s line, in words ("a line break", "a tab"); None when nothing.
    Fast on a whole column joined (``_holds_line_break``)."""
    found = _LINE_BREAK.search(value) if _holds_line_break(value) else None
    if found is None:
        return None
    return "a tab" if found[0] == "\t" else "a line break"


def _holds_line_break(text: str) -> bool:
    """Whether ``text`` holds a line break or tab: five substring scans, four times faster on a
    long text than one search for any of them."""
    return any(char in text for char in _LINE_BREAKS)


def visible(text: pd.Series) -> pd.Series:
    """``text`` without the characters nobody can see (`INVISIBLE`); itself when it has none."""
    values = text.tolist()
    cleaned = _visible(values)
    return text if cleaned is values else pd.Series(cleaned, index=text.index, dtype=object)


def _visible(values: list[str]) -> list[str]:
    """``values`` without invisible characters; the very same list when none holds one.

    Looked for in the whole column at once: a column of plain ASCII, or with none of them, costs
    one join and one search, not a call per cell.
    """
    joined = "".join(values)
    if joined.isascii() or INVISIBLE.search(joined) is None:
        return values
    return [INVISIBLE.sub("", v) for v in values]


#: Conversions already made, by kind, while ``shared_conversions`` is in force; None otherwise.
_SHARED: ContextVar[dict[Hashable, dict[object, object]] | None] = ContextVar(
    "shared_conversions", default=None
)
#: Values remembered per kind at most: a long file's distinct amounts would otherwise take more
#: memory than converting them again costs.
_SHARED_MAX = 200_000


@contextmanager
def shared_conversions(
    conversions: dict[Hashable, dict[object, object]] | None = None,
) -> Iterator[None]:
    """Within it, ``per_unique`` converts a value once for all calls of the same kind: a long
    file prepared in parts converts the national ids and amounts its parts share only once.
    Parts prepared one at a time, each inside its own ``with``, share ``conversions``: a with
    never spans a part, so the parts may be prepared on another thread than the first."""
    token = _SHARED.set({} if conversions is None else conversions)
    try:
        yield
    finally:
        _SHARED.reset(token)


def per_unique(
    text: pd.Series, convert: Callable[[pd.Series], np.ndarray], *, kind: Hashable = None
) -> np.ndarray:
    """Apply ``convert`` to each distinct value once and spread the result back to every row.

    ``kind`` names the conversion with whatever it depends on; with it, values converted before
    in ``shared_conversions`` are not converted again.
    """
    codes, found = pd.factorize(text)
    # As an array of objects: an Index of pandas' own string dtype (a column made ``str``) gives
    # its values one Python call each, eight times slower to go through.
    uniques = np.asarray(found, dtype=object)
    shared = _SHARED.get()
    if shared is None or kind is None:
        return np.asarray(convert(pd.Series(uniques, dtype=object)))[codes]
    seen = shared.setdefault(kind, {})
    known = np.fromiter(map(seen.__contains__, uniques), dtype=bool, count=len(uniques))
    fresh_values = uniques[~known]
    fresh = np.asarray(convert(pd.Series(fresh_values, dtype=object)))
    converted = np.empty(len(uniques), dtype=fresh.dtype)
    converted[~known] = fresh
    if known.any():
        converted[known] = [seen[u] for u in uniques[known]]
    if len(seen) < _SHARED_MAX:
        seen.update(zip(fresh_values.tolist(), fresh.tolist(), strict=True))
    return converted[codes]


def swap_day_and_month(user_format: str) -> str:
    """``dd/mm/yyyy`` -> ``mm/dd/yyyy`` and back: the format a date such as 03/04/2026 also
    fits (a format's letters are d, m and y alone)."""
    return "".join({"d": "m", "m": "d"}.get(c, c) for c in user_format)


def date_format_to_strptime(user_format: str) -> str:
    """``dd.mm.yyyy`` -> ``%d.%m.%Y``; ValueError for anything that is not day, month, year."""
    if not _DATE_FORMAT.fullmatch(user_format):
        raise ValueError(user_format)
    parts = re.split(r"([.\-/ ])", user_format)
    kinds = {_DATE_TOKENS[p][1].lower() for p in parts[::2]}
    if kinds != {"d", "m", "y"}:
        raise ValueError(user_format)
    return "".join(_DATE_TOKENS.get(p, p) for p in parts)


def amount_pattern(*, decimal: str, thousands: str) -> re.Pattern[str]:
    """The one shape an amount may have: optional sign or brackets, grouped digits, decimals.

    Thousands separators must sit between groups of exactly three digits, so with a decimal comma
    ``1.5`` is refused rather than read as 15.
    """
    seps = re.escape(thousands)
    whole = rf"[0-9]{{1,3}}(?:[{seps}][0-9]{{3}})+|[0-9]+" if thousands else r"[0-9]+"
    dec = re.escape(decimal)
    return re.compile(
        rf"(?P<open>\()?(?P<sign>[+{_MINUS_CLASS}])?\s*(?P<num>(?:{whole})(?:{dec}[0-9]+)?)"
        rf"(?:{dec}-)?\s*(?P<trail>[{_MINUS_CLASS}])?(?P<close>\))?"
    )


def _plain_amount(*, decimal: str, thousands: str) -> str:
    seps = re.escape(thousands)
    whole = rf"[0-9]{{1,3}}(?:[{seps}][0-9]{{3}})+|[0-9]+" if thousands else r"[0-9]+"
    return rf"(?:{whole})(?:{re.escape(decimal)}[0-9]+)?"


def amount_example(*, decimal: str, thousands: str) -> str:
    """How 1234.50 looks with these settings, for messages."""
    sep = thousands[0] if thousands else ""
    return f"1{sep}234{decimal}50"


def parse_amounts(text: pd.Series, *, decimal: str, thousands: str) -> np.ndarray:
    """Amount text -> float, NaN where it is not an amount. ``-`` alone counts as empty upstream."""
    pattern = amount_pattern(decimal=decimal, thousands=thousands)
    plain = re.compile(_plain_amount(decimal=decimal, thousands=thousands))
    plain_lines = re.compile(f"^{plain.pattern}$", re.MULTILINE)
    to_plain = str.maketrans({**dict.fromkeys(thousands), decimal: "."})

    def one(value: str) -> float:
        if plain.fullmatch(value):  # most cells: no sign, no currency, no brackets
            return float(value.translate(to_plain))
        bare = _currency_affixes(value)[0].strip(WHITESPACE)
        m = pattern.fullmatch(bare)
        if m is None:
            return np.nan
        opened, closed, sign, trail = m["open"], m["close"], m["sign"], m["trail"]
        # A lone bracket, or a sign both before and after, is a typo rather than an amount.
        if bool(opened) != bool(closed) or (sign and trail):
            return np.nan
        number = float(m["num"].translate(to_plain))
        negative = bool(opened) or bool(trail) or (sign is not None and sign != "+")
        return -number if negative else number

    def convert(uniques: pd.Series) -> np.ndarray:
        values = uniques.tolist()
        if values and _every_line_matches(plain_lines, values):
            # Every amount plain (no sign, currency or brackets): made numbers in one pass of
            # float over the column's text, its separators taken out at once.
            plain_texts = "\n".join(values).translate(to_plain).split("\n")
            return np.fromiter(map(float, plain_texts), dtype=float, count=len(values))
        return np.array([one(v) for v in values], dtype=float)

    return per_unique(text, convert, kind=("amount", decimal, thousands))


def thousands_like(text: pd.Series, *, decimal: str, thousands: str) -> np.ndarray:
    """True where an amount's digits are one to three (not starting with 0), the decimal mark,
    then exactly three: "12,500", "kr 3,000-". That is how a whole amount is written with the
    mark between thousands, so the digits alone cannot tell 12 500 from 12,50."""
    mark = re.escape(decimal)
    pattern = amount_pattern(decimal=decimal, thousands=thousands)
    shape = re.compile(rf"[1-9][0-9]{{0,2}}{mark}[0-9]{{3}}")
    candidates = re.compile(rf"{mark}[0-9]{{3}}(?![0-9])")

    def convert(uniques: pd.Series) -> np.ndarray:
        values = uniques.tolist()
        found = np.zeros(len(values), dtype=bool)
        if not candidates.search("\n".join(values)):
            return found  # the usual column: one search over all of it
        for i, value in enumerate(values):
            if candidates.search(value):
                m = pattern.fullmatch(_currency_affixes(value)[0].strip(WHITESPACE))
                found[i] = m is not None and shape.fullmatch(m["num"]) is not None
        return found

    return per_unique(text, convert, kind=("thousands-like", decimal, thousands))


def shows_decimal(
    text: pd.Series, *, decimal: str, thousands: str, joined: str | None = None
) -> bool:
    """Whether some amount in ``text`` shows its decimal mark to be one: followed by other than
    three digits ("12,5", "12,50"), or after a whole part no thousands group has (a leading 0,
    four digits or more: "0,500", "1250,000"), or after one grouped by the thousands separator
    ("1 250,000"). Then amounts like "12,500" beside it (``thousands_like``) are decimals too.
    ``joined``: ``distinct_joined(text)``, where the caller has it."""
    evidence = _decimal_evidence(decimal=decimal, thousands=thousands)
    return evidence.search(distinct_joined(text) if joined is None else joined) is not None


def distinct_joined(text: pd.Series) -> str:
    """The distinct texts of ``text``, a line each: a column searched in one go."""
    return "\n".join(v for v in pd.unique(text.to_numpy(dtype=object)) if isinstance(v, str))


def _decimal_evidence(*, decimal: str, thousands: str) -> re.Pattern[str]:
    """Where a text shows ``decimal`` to be a decimal mark (``shows_decimal``)."""
    mark = re.escape(decimal)
    grouped = rf"|[0-9]{{1,3}}(?:[{re.escape(thousands)}][0-9]{{3}})+" if thousands else ""
    return re.compile(
        rf"[0-9]{mark}(?:[0-9]{{1,2}}|[0-9]{{4,}})(?![0-9])"
        rf"|(?<![0-9])(?:0|[0-9]{{4,}}{grouped})?{mark}[0-9]"  # .50, as Oracle writes 0,50
    )


class DecimalGrouping(NamedTuple):
    """A thousands separator some amount shows to be a decimal mark (``grouping_shown_decimal``)."""

    mark: str
    at: int  # that amount's position


def grouping_shown_decimal(
    text: pd.Series, *, decimal: str, thousands: str, joined: str | None = None
) -> DecimalGrouping | None:
    """A point or comma the mapping reads between thousands that some amount in ``text``, read
    the other way, shows to be a decimal mark ("99.50", "0.5", "1250.00" where thousands are
    grouped by points), and the position of the first such amount; None when none does. Then
    "1.250" beside it may be 1,25 as well as 1250, and a thousand times the debt went out.
    ``joined``: as for ``shows_decimal``."""
    joined = distinct_joined(text) if joined is None else joined
    for mark in (m for m in thousands if m in ".," and m in joined):
        others = thousands.replace(mark, "")
        evidence = _decimal_evidence(decimal=mark, thousands=others)
        if evidence.search(joined) is None:
            continue  # the usual column: one search over its distinct amounts
        amount = amount_pattern(decimal=mark, thousands=others)
        # Decimals with no whole part: what amount_pattern reads has one.
        bare = re.compile(rf"[+{_MINUS_CLASS}]?\s*{re.escape(mark)}[0-9]+")
        # Each distinct amount once, in the order they first come: the first that shows it is
        # the first row's that does.
        cells = text.to_numpy(dtype=object)
        for value in pd.unique(cells):
            if not isinstance(value, str) or evidence.search(value) is None:
                continue
            number = _currency_affixes(value)[0].strip(WHITESPACE)
            m = amount.fullmatch(number)
            if (m is not None and evidence.search(m["num"])) or bare.fullmatch(number):
                return DecimalGrouping(mark, int(np.flatnonzero(cells == value)[0]))
    return None


#: A line that is empty or starts and ends with a digit: an amount naming no currency.
_DIGIT_ENDED_LINES = re.compile(r"^(?:[0-9](?:.*[0-9])?)?$", re.MULTILINE)


def marked_currencies(text: np.ndarray) -> np.ndarray:
    """The currency each amount's text names with a word or symbol glued to it ("USD 100",
    "€12", "1 234,50 kr": ``USD``, ``EUR``, ``kr``), None where it names none. The amount is sent
    as a number in the invoice's currency, so a different one here must not go unnoticed."""
    marked = np.full(len(text), None, dtype=object)
    values = text.tolist()
    if set(map(type, values)) <= {str} and _every_line_matches(_DIGIT_ENDED_LINES, values):
        return marked  # every amount starts and ends with a digit: one pass over the column
    # Most amounts start and end with a digit: only the others are looked at.
    for i in [i for i, v in enumerate(values) if v and not (v[0].isdigit() and v[-1].isdigit())]:
        if names := set(_currency_affixes(values[i])[1]):
            marked[i] = "/".join(sorted(names))  # "kr 100 USD" names two: no invoice's currency
    return marked


def has_more_than_two_decimals(amounts: np.ndarray) -> np.ndarray:
    """True where an amount has a fraction of an øre (NaN is fine: it is reported elsewhere)."""
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 is too large anyway
        cents = amounts * 100
        return np.abs(cents - np.round(cents)) > 1e-9 + np.abs(cents) * 1e-15


# A time of day after a date: "31.12.2024 00:00", "2024-12-31T14:35:00".
_TIME_AFTER = r"[ T](?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?$"
_WITH_TIME = r".+" + _TIME_AFTER.removesuffix("$")
_TIME_AFTER_A_DATE = re.compile(r"(?<=.)" + _TIME_AFTER)


def day_part(text: str) -> str:
    """``text`` without a time of day after its date (``31.12.2024 00:00`` -> ``31.12.2024``), as
    ``parse_dates`` reads it."""
    return _TIME_AFTER_A_DATE.sub("", text)


def parse_dates(text: pd.Series, *, formats: Iterable[str]) -> np.ndarray:
    """Date text -> datetime64[D], NaT where no format (nor an Excel serial number) fits.

    ``formats`` are strptime formats, tried in order; ISO dates and 5-digit Excel serial numbers
    (a date cell exported as its number) are always accepted, and so is a time of day after a
    date, which is left out. Any year is kept: ``outside_claim_years`` tells the unlikely ones.
    """
    strptime_formats = [*formats, *_ISO_FORMATS]

    def by_formats(uniques: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        out = np.full(len(uniques), np.datetime64("NaT"), dtype="datetime64[D]")
        todo = np.ones(len(uniques), dtype=bool)
        for fmt in strptime_formats:
            if not todo.any():
                break
            parsed = pd.to_datetime(uniques[todo], format=fmt, errors="coerce")
            found = parsed.notna().to_numpy()
            idx = np.flatnonzero(todo)[found]
            out[idx] = parsed[found].to_numpy().astype("datetime64[D]")
            todo[idx] = False
        return out, todo

    def convert(uniques: pd.Series) -> np.ndarray:
        out, todo = by_formats(uniques)
        # A date with its time of day, as ERPs export a timestamp ("31.12.2024 00:00"): the day
        # in a format given, the time left out (the API takes days).
        timed = todo.copy()
        if todo.any():
            timed[todo] = uniques[todo].str.fullmatch(_WITH_TIME).to_numpy(bool, na_value=False)
        if timed.any():
            days, undated = by_formats(uniques[timed].str.replace(_TIME_AFTER, "", regex=True))
            out[np.flatnonzero(timed)[~undated]] = days[~undated]
            todo[np.flatnonzero(timed)[~undated]] = False
        serial = todo & uniques.str.fullmatch(SERIAL_DAY).to_numpy(dtype=bool, na_value=False)
        if serial.any():
            days = uniques[serial].astype(int).to_numpy()
            out[serial] = _EXCEL_EPOCH + days.astype("timedelta64[D]")
        return out

    return per_unique(text, convert, kind=("date", *strptime_formats))


def dates_from_excel(values: pd.Series, *, date1904: bool = False) -> np.ndarray:
    """Typed Excel cells (dates, date-times, serial numbers) -> datetime64[D], NaT otherwise.

    ``date1904``: the workbook counts serial days from 1904 (calamine already reads its cells
    formatted as dates so; a number without that format is counted here). Any year is kept, as
    by ``parse_dates``; a number that is no day Excel shows is NaT (``excel_days_said``)."""
    # Each distinct cell is converted once: invoice and due dates repeat down a sheet. The key
    # holds the type, so 1, 1.0 and True (equal in Python) stay apart.
    seen: dict[tuple[type, object], np.datetime64] = {}
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    for i, value in enumerate(values.tolist()):
        key = (type(value), value)
        day = seen.get(key)
        if day is None:
            day = seen[key] = _excel_day(value, date1904=date1904)
        out[i] = day
    return out


def _excel_day(value: object, *, date1904: bool) -> np.datetime64:
    if isinstance(value, dt.date | pd.Timestamp):
        return np.datetime64(value.date() if isinstance(value, dt.datetime) else value, "D")
    # A serial beyond Excel's last day is no date: a number that large would not fit numpy's
    # day count (1e308 ended the whole file); NaN and infinity fail the test too.
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) <= _LAST_EXCEL_SERIAL
    ):
        return _serial_day(value, date1904=date1904)
    return np.datetime64("NaT", "D")


def _serial_day(value: float, *, date1904: bool) -> np.datetime64:
    """The day Excel shows for a number in a date column; NaT where it shows none."""
    days = int(value)
    if date1904:
        day = _EXCEL_EPOCH_1904 + np.timedelta64(days, "D")
        return day if value >= 0 and day <= _LAST_EXCEL_DAY else np.datetime64("NaT", "D")
    if value < 1:  # Excel shows no day for these (0 is "00.01.1900", a negative one ####)
        return np.datetime64("NaT", "D")
    # Excel counts a 29.02.1900 that never was, its day 60, so the days before it start a day
    # later than those after: 1 is 01.01.1900 (counted from 30.12.1899, it read as 31.12.1899).
    if days < 60:
        return _EXCEL_EPOCH + np.timedelta64(days + 1, "D")
    if days == 60:
        return np.datetime64("1900-02-28")  # as calamine reads a date cell holding that day
    return _EXCEL_EPOCH + np.timedelta64(days, "D")


def excel_days_said(*, date1904: bool) -> str:
    """Of a number in a date column that is no day Excel shows (0, -3, 3000000): the days it
    counts, so the user sees why."""
    first = "0 (01.01.1904)" if date1904 else "1 (01.01.1900)"
    last = _LAST_EXCEL_SERIAL - _DAYS_TO_1904 if date1904 else _LAST_EXCEL_SERIAL
    return (
        f"is a number that is no day: a date column counts days from {first} to {last} (31.12.9999)"
    )


def read_days(
    text: pd.Series, excel: pd.Series | None, *, formats: Iterable[str], date1904: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's day as a date Field reads it (NaT where none), and where it was a typed
    workbook cell (``excel``: the cells' typed values; None for a CSV): typed cells as
    ``dates_from_excel``, the others' text as ``parse_dates``. One reading for the Field and for
    the comparison of a repeated invoice number's rows, so that they cannot disagree."""
    days = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[D]")
    typed = np.zeros(len(text), dtype=bool)
    if excel is not None:
        typed = typed_mask(excel)
        days[typed] = dates_from_excel(excel[typed], date1904=date1904)
    days[~typed] = parse_dates(text[~typed], formats=formats)
    return days, typed


def outside_claim_years(dates: np.ndarray) -> np.ndarray:
    """True where a date (datetime64[D]; NaT is not) falls outside the years of any claim."""
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    return ~np.isnat(dates) & ((years < _FIRST_YEAR) | (years > _LAST_YEAR))


def api_timestamps(dates: np.ndarray) -> np.ndarray:
    """datetime64[D] -> "YYYY-MM-DDT00:00:00Z" (object array, None for NaT), as the API wants."""
    uniques, inverse = np.unique(dates, return_inverse=True)  # invoice dates repeat a lot
    text = np.char.add(np.datetime_as_string(uniques, unit="D"), "T00:00:00Z").astype(object)
    text[np.isnat(uniques)] = None
    return text[inverse.reshape(-1)]


#: What a workbook's cell holds when it holds a number (a truth value is none: ``_of_kinds``).
_NUMBER_KINDS = (int, float, np.number)


def numbers_from_excel(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Typed Excel cells -> (float array, mask of cells that were typed numbers).

    Which cells are numbers is decided per type the column holds (``_of_kinds``); the numbers
    are then taken out and converted by C loops, with no Python call per cell."""
    cells = values.tolist()
    typed = _of_kinds(cells, _NUMBER_KINDS)
    floats = np.full(len(cells), np.nan)
    floats[typed] = list(map(float, compress(cells, typed)))
    return floats, typed


def amounts_as_read(table: Table, at: int, *, decimal: str, thousands: str) -> np.ndarray:
    """Each cell of ``table``'s column ``at`` as an amount the way a mapping reads it: a
    workbook's number as it is, text in the mapping's notation; NaN where it is none. For
    totals only: the amounts sent are converted, and checked, field by field (fields.py)."""
    cells = table.cells[at]
    amounts = np.full(len(cells), np.nan)
    text = np.ones(len(cells), dtype=bool)
    if table.info.kind == "excel":
        numbers, typed = numbers_from_excel(table.values[at])
        amounts[typed] = numbers[typed]
        text = ~typed  # only these parsed: a column of numbers costs no parse
    if text.any():
        parsed = parse_amounts(strip(cells[text]), decimal=decimal, thousands=thousands)
        amounts[text] = parsed
    return amounts


#: The significant digits Excel keeps of a number: a whole number of more digits has lost the
#: rest (Excel shows 12345678901234567890 as 12345678901234600000).
EXCEL_DIGITS = 15
#: A number Excel shortened to scientific notation, as a CSV or a text cell keeps it
#: ("1,23457E+15"): the digits it lost cannot be told. Anchored per line, so a whole column
#: joined by line breaks is searched at once.
SHORTENED = re.compile(r"^[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+$", re.MULTILINE)


def excel_numbers(values: pd.Series) -> np.ndarray:
    """True where a workbook cell holds a number (not text, a date or a truth value): its
    leading zeros, and any digit past the 15th, were never kept."""
    return _cells_of(values, _NUMBER_KINDS)


def excel_shows(number: float) -> str:
    """A number of more than 15 digits as Excel shows it in full: its first 15 significant
    digits, then zeros, so the user recognises the cell and sees what was lost."""
    return format(Decimal(f"{number:.{EXCEL_DIGITS}g}"), "f")


def typed_mask(values: pd.Series) -> np.ndarray:
    """True where an Excel cell holds a number or a date rather than text."""
    return _cells_of(values, (*_NUMBER_KINDS, dt.date, pd.Timestamp))


def time_mask(values: pd.Series) -> np.ndarray:
    """True where an Excel cell holds a time of day alone (no date)."""
    return _cells_of(values, (dt.time,))


def _cells_of(values: pd.Series, kinds: tuple[type, ...]) -> np.ndarray:
    """True where a cell's value is one of ``kinds`` (a truth value never is)."""
    return _of_kinds(values.tolist(), kinds)


def _of_kinds(cells: list[object], kinds: tuple[type, ...]) -> np.ndarray:
    """True where a cell is one of ``kinds`` and no truth value: decided once per type the
    column holds (a few), then looked up per cell in C, not a Python call per cell."""
    types = list(map(type, cells))
    chosen = {t: issubclass(t, kinds) and not issubclass(t, bool) for t in set(types)}
    return np.fromiter(map(chosen.__getitem__, types), dtype=bool, count=len(types))


def zero_pad(text: pd.Series, *, width: int) -> pd.Series:
    """Restore leading zeros a spreadsheet dropped (``155`` -> ``0155``); only all-digit values."""
    return pd.Series(zero_filled(text.tolist(), width), index=text.index, dtype=object)


def is_email(text: pd.Series) -> np.ndarray:
    """True where the text has the shape of one email address."""
    values = text.tolist()
    if all(isinstance(v, str) for v in values) and _every_line_matches(_EMAIL_LINES, values):
        return np.ones(len(values), dtype=bool)
    # A plain loop over one compiled pattern: the pandas string accessor costs twice as much.
    return np.fromiter(
        (isinstance(v, str) and _EMAIL_RE.fullmatch(v) is not None for v in values),
        dtype=bool,
        count=len(text),
    )


def split_values(text: pd.Series, *, separators: str) -> list[list[str]]:
    """``"a@x.no; b@y.no"`` -> ``["a@x.no", "b@y.no"]`` per row; empty parts dropped."""
    pattern = re.compile(f"[{re.escape(separators)}]+")
    out: list[list[str]] = []
    for value in text.tolist():
        if pattern.search(value):
            out.append([p for p in (s.strip(WHITESPACE) for s in pattern.split(value)) if p])
        else:
            out.append([value] if value else [])
    return out


def _every_line_matches(lines: re.Pattern[str], values: list[str]) -> bool:
    """Whether every value matches ``lines`` (a pattern anchored ``^...$`` in MULTILINE mode),
    checked in one pass over the values a line each, counting the lines that match: the usual
    column costs one call, not one per value. A value holding a line break of its own would
    throw the count off, so then the answer is False and the caller checks one at a time."""
    joined = "\n".join(values)
    return joined.count("\n") == len(values) - 1 and lines.subn("", joined)[1] == len(values)


def matching_lines(lines: re.Pattern[str], values: list[str]) -> dict[int, re.Match[str]]:
    """The position of each value ``lines`` (anchored ``^`` in MULTILINE mode) matches at the
    start of, with its first match, searched in one pass over the values a line each: a column
    where none matches, the usual one, costs one search. A line break inside a value is read as
    a space."""
    if not values:
        return {}
    joined = "\n".join(values)
    if joined.count("\n") >= len(values):
        joined = "\n".join(v.replace("\n", " ") for v in values)
    found: dict[int, re.Match[str]] = {}
    row, at = 0, 0
    for m in lines.finditer(joined):
        row, at = row + joined.count("\n", at, m.start()), m.start()
        found.setdefault(row, m)
    return found


_PHONE_PUNCTUATION = re.compile(r"[\s\u00a0().-]")

# A date where a phone number should be: day and month (either order) and a year, with the same
# one of . - / between them, or a year first (the way a workbook's date cell reaches filedrop,
# "2024-02-29", also with a time). Its digits would otherwise be dialled: "31.02.2024" passed as
# +4731022024. An impossible day like 31.02 still reads as a date (a typo in a date is still no
# number to call); Norwegian numbers written in dotted pairs ("22.12.34.56") have four groups,
# and a last group of four digits that is not a year of 1900 to 2199 ("22.12.3456") is no date.
_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:(?:19|2[01])[0-9]{2}|[0-9]{2})"
_DATE_LINES = re.compile(
    rf"^(?:{_DAY}([./-]){_MONTH}\1{_YEAR}|{_MONTH}([./-]){_DAY}\2{_YEAR}"
    rf"|[0-9]{{4}}([./-]){_MONTH}\3{_DAY})(?:[ T][0-9]{{1,2}}:[0-9]{{2}}(?::[0-9]{{2}})?)?$",
    re.MULTILINE,
)


def reads_as_date(values: list[str]) -> np.ndarray:
    """True where a phone number's text reads as a date rather than a number (see
    ``_DATE_LINES``). The column is joined and searched once, and only when it holds a date's
    punctuation at all: one without a date (nearly all) costs no more than that."""
    dated = np.zeros(len(values), dtype=bool)
    joined = "\n".join(values)
    if any(mark in joined for mark in "./-") and _DATE_LINES.search(joined) is not None:
        dated[:] = [_DATE_LINES.fullmatch(value) is not None for value in values]
    return dated


@lru_cache(maxsize=PHONE_CACHE_SIZE)
def phone_e164(text: str, country: str | None) -> tuple[str, str] | None:
    """One phone number -> (E.164, its region), or None when it is not a valid number.

    Cached: the same customer's number repeats on every one of their invoices. The cache is
    bounded (``PHONE_CACHE_SIZE``, least recently used out first) because the daemon runs for
    months and sees every number of every file.
    """
    if _DATE_LINES.fullmatch(text):
        return None
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number) or country or ""


def phones_e164(parts: list[str], country: str | None) -> list[tuple[str, str] | None]:
    """Many phone numbers at once -> (E.164, region) or None each, as ``phone_e164`` decides.

    libphonenumber takes ~60 µs a number; a 200,000-row export with a number per customer spent
    most of its mapping time there. The usual shapes (national digits, or ``+<country code>``
    and digits, with spaces, dots, dashes or brackets between) are checked here as one column
    against the same library's own metadata for ``country``; anything else, or anything that
    does not match, still goes through ``phone_e164`` one by one. tests/test_convert.py checks
    the two agree on random input. A text that reads as a date is no number (``reads_as_date``).
    """
    dated = reads_as_date(parts)
    if dated.any():
        results = _phones_e164(parts, country)
        return [
            None if date else result for result, date in zip(results, dated.tolist(), strict=True)
        ]
    return _phones_e164(parts, country)


def _phones_e164(parts: list[str], country: str | None) -> list[tuple[str, str] | None]:
    """``phones_e164`` without the date check."""
    matcher = _national_matcher(country) if country else None
    if matcher is None or not parts:
        return [phone_e164(part, country) for part in parts]
    code, pattern, lines = matcher
    # ASCII digits only: ``\d`` and str.isdecimal also take other scripts' digits (Arabic-Indic,
    # fullwidth), which the patterns would pass as they are; libphonenumber turns them into
    # ASCII, so such a number takes the slow path.
    extract = re.compile(rf"^(?:\+{code})?([0-9]+)$")

    def national(part: str) -> str | None:
        if part.isascii() and part.isdecimal():  # digits only, as most exports write them
            return part
        found = extract.search(_PHONE_PUNCTUATION.sub("", part))
        return None if found is None else found[1]

    nationals = _plain_nationals(parts)
    if nationals is None:
        # Plain loops over compiled patterns: the pandas string accessor costs three times as much.
        nationals = [national(part) for part in parts]
    prefix = f"+{code}"
    usual = cast("list[str]", nationals) if None not in nationals else None
    if usual is not None and _every_line_matches(lines, usual):
        return [(prefix + number, country) for number in usual]
    return [
        (prefix + number, country)
        if number is not None and pattern.fullmatch(number)
        else phone_e164(part, country)
        for part, number in zip(parts, nationals, strict=True)
    ]


def _plain_nationals(parts: list[str]) -> list[str | None] | None:
    """Each number without its spaces, dots, dashes and brackets, the whole column in one
    substitution, when that leaves ASCII digits alone in every one ("912 34 567" as most
    exports write them); None otherwise (a + country code, letters, a value of punctuation
    alone), for the value-by-value reading."""
    joined = _PHONE_PUNCTUATION.sub("", "\x00".join(parts))
    if not (joined.isascii() and joined.replace("\x00", "").isdecimal()):
        return None
    cleaned = joined.split("\x00")
    if len(cleaned) != len(parts) or not all(cleaned):
        return None  # a value held the separator, or nothing but punctuation
    return cast("list[str | None]", cleaned)


@cache
def _national_matcher(country: str) -> tuple[int, re.Pattern[str], re.Pattern[str]] | None:
    """(country code, a regex that fully matches the valid national numbers of ``country``, the
    same regex matching each whole line of a text with one number a line).

    Built from libphonenumber's metadata the way its ``is_valid_number`` reads it: the general
    pattern and lengths, any number type's pattern and lengths, and the region's leading digits
    (which decide between regions sharing a code, such as NO and SJ). Only for a region that
    owns its code first and strips no national prefix; others get ``None`` (the slow path).
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(country)
    if metadata is None or metadata.national_prefix_for_parsing or metadata.national_prefix:
        return None
    code = metadata.country_code
    if phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())[:1] != (country,):
        return None

    def described(desc: phonenumbers.PhoneNumberDesc | None) -> str | None:
        if desc is None or not desc.national_number_pattern:
            return None
        lengths = "|".join(rf"\d{{{n}}}" for n in desc.possible_length or ())
        guard = rf"(?=(?:{lengths})$)" if lengths else ""
        return rf"{guard}(?:{desc.national_number_pattern})$"

    general = described(metadata.general_desc)
    kinds = [
        described(getattr(metadata, name))
        for name in (
            # The kinds most numbers are first: the first alternative that fits ends the match.
            "mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip",
            "personal_number", "pager", "uan", "voicemail",
        )
    ]  # fmt: skip
    kinds = [kind for kind in kinds if kind]
    if general is None or not kinds:
        return None
    leading = rf"(?=(?:{metadata.leading_digits}))" if metadata.leading_digits else ""
    valid = rf"{leading}(?={general})(?:{'|'.join(f'(?:{k})' for k in kinds)})"
    # In MULTILINE mode ``$`` (which the patterns use) also ends each line, and ``\d`` never
    # matches the line break, so a line matches exactly when the number on it does.
    return code, re.compile(valid), re.compile(rf"^(?:{valid})$", re.MULTILINE)


def same_everywhere(value: object, n: int, dtype: npt.DTypeLike = object) -> np.ndarray:
    """A read-only array of ``n`` times one ``value`` that takes no memory per row.

    For per-row columns that never change once made: a field's column label, a constant's value
    and text. A 200,000-row file has dozens of them; as real arrays they took 1.6 MB each.
    """
    one = np.empty(1, dtype=dtype)
    one[0] = value
    return np.broadcast_to(one, (n,))


def repeated(value: object, n: int) -> np.ndarray:
    """An object array of ``n`` references to one ``value``.

    ``np.full(n, "text", dtype=object)`` goes through a unicode array and makes ``n`` separate
    strings: 3.8 million of them (218 MB) for the per-row column labels of a 200,000-row file.
    """
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def compact_id(text: pd.Series) -> pd.Series:
    """Drop the spaces, dots and dashes people type into national ids and KIDs."""
    return _replaced(text, _ID_PUNCTUATION, _ID_PUNCTUATION, "")


def without_vat_marks(ids: pd.Series) -> pd.Series:
    """Organisation numbers as invoices print them for a VAT-registered company ("NO 936 153 321
    MVA", compacted by ``compact_id``), as the 9 digits they are."""
    return _replaced(ids, _VAT_MARKED, _VAT_MARK, r"\1")


_ID_PUNCTUATION = re.compile(r"[\s.\u00a0-]")
_VAT_MARKED = re.compile(r"(?i)^(?:NO)?([0-9]{9})(?:MVA)?$")
_VAT_MARK = re.compile(r"(?i)no|mva")


def _replaced(
    text: pd.Series, pattern: re.Pattern[str], sign: re.Pattern[str], by: str
) -> pd.Series:
    """``text`` with ``pattern`` replaced by ``by`` in each value; itself when the column joined
    shows no ``sign`` of it (a value holding none is left as it is): one search of the column,
    not a regular expression per value, for the ids of a 200,000-row file that mostly hold none."""
    values = text.tolist()
    if set(map(type, values)) <= {str}:
        joined = "".join(values)
        # Digits alone (the usual ids) hold no sign of anything: told without a search.
        if joined.isdigit() or sign.search(joined) is None:
            return text
    return text.str.replace(pattern, by, regex=True)


def is_fodselsnummer(values: pd.Series) -> np.ndarray:
    """Norwegian fødselsnummer or D-number with valid check digits and birth date."""
    return per_unique(
        values,
        lambda u: _judged(u, 11, _fodselsnummer_digits_ok, fodselsnummer.is_valid),
        kind="fnr",
    )


def is_orgnr(values: pd.Series) -> np.ndarray:
    """Norwegian organisation number (9 digits, mod 11)."""
    return per_unique(
        values, lambda u: _judged(u, 9, _orgnr_digits_ok, orgnr.is_valid), kind="orgnr"
    )


def _judged(
    values: pd.Series,
    length: int,
    digits_ok: Callable[[np.ndarray], np.ndarray],
    is_valid: Callable[[str], bool],
) -> np.ndarray:
    """Whether each value is valid, as python-stdnum's ``is_valid`` judges it: values of ASCII
    digits alone are judged a whole column at a time (by ``digits_ok`` when ``length`` long, else
    no such number), and only those with other characters (spaces stdnum takes out) by stdnum,
    one at a time. stdnum's call per value was the largest single cost of checking debtors."""
    texts = values.tolist()
    n = len(texts)
    plain = np.fromiter(map(str.isdigit, texts), bool, n) & np.fromiter(
        map(str.isascii, texts), bool, n
    )
    sized = np.flatnonzero(plain & (np.fromiter(map(len, texts), np.int64, n) == length))
    valid = np.zeros(n, dtype=bool)
    if len(sized):
        joined = "".join([texts[i] for i in sized.tolist()]).encode("ascii")
        digits = np.frombuffer(joined, dtype=np.uint8).reshape(-1, length) - ord("0")
        valid[sized] = digits_ok(digits.astype(np.int64))
    others = np.flatnonzero(~plain).tolist()
    valid[others] = [is_valid(texts[i]) for i in others]
    return valid


_FNR_WEIGHTS_1 = np.array([3, 7, 6, 1, 8, 9, 4, 5, 2])
_FNR_WEIGHTS_2 = np.array([5, 4, 3, 2, 7, 6, 5, 4, 3, 2])
_ORGNR_WEIGHTS = np.array([3, 2, 7, 6, 5, 4, 3, 2, 1])


def _fodselsnummer_digits_ok(digits: np.ndarray) -> np.ndarray:
    """Rows of 11 digits that are a fødselsnummer, D-number or H-number by stdnum's rules: both
    check digits, a birth century the individual number gives, a real date not in the future,
    and no FH-number (a day of 80 or more carries no birth date, which stdnum refuses)."""
    first = (11 - digits[:, :9] @ _FNR_WEIGHTS_1) % 11
    second = (11 - digits[:, :10] @ _FNR_WEIGHTS_2) % 11
    checked = (first == digits[:, 9]) & (second == digits[:, 10])
    day = digits[:, 0] * 10 + digits[:, 1]
    month = digits[:, 2] * 10 + digits[:, 3]
    year = digits[:, 4] * 10 + digits[:, 5]
    individual = digits[:, 6] * 100 + digits[:, 7] * 10 + digits[:, 8]
    fh_number = day >= 80
    day = np.where(day > 40, day - 40, day)  # D-number
    month = np.where(month > 40, month - 40, month)  # H-number
    century = np.select(
        [
            individual < 500,
            (individual < 750) & (year >= 54),
            year < 40,
            (individual >= 900) & (year >= 40),
        ],
        [1900, 1800, 2000, 1900],
        default=0,
    )
    real_month = (month >= 1) & (month <= 12)
    months = ((century + year - 1970) * 12 + np.where(real_month, month, 1) - 1).astype(
        "datetime64[M]"
    )
    first_day = months.astype("datetime64[D]")
    month_days = ((months + 1).astype("datetime64[D]") - first_day).astype(np.int64)
    real_date = real_month & (day >= 1) & (day <= month_days) & (century > 0)
    born = first_day + np.where(real_date, day - 1, 0).astype("timedelta64[D]")
    return checked & ~fh_number & real_date & (born <= np.datetime64(dt.date.today()))


def _orgnr_digits_ok(digits: np.ndarray) -> np.ndarray:
    """Rows of 9 digits whose weighted sum is a multiple of 11 (stdnum's check)."""
    return (digits @ _ORGNR_WEIGHTS) % 11 == 0


def is_kid(values: pd.Series) -> np.ndarray:
    """KID (Norwegian payment reference): 2-25 digits, last digit mod 10 (Luhn) or mod 11."""
    return per_unique(values, lambda u: np.array([kid_ok(v) for v in u], bool), kind="kid")


def kid_ok(kid: str) -> bool:
    """One KID (already compacted): 2-25 digits, a mod 10 (Luhn) or mod 11 check digit."""
    if not (2 <= len(kid) <= 25 and _KID.fullmatch(kid)):
        return False
    return (kid[-1] != "-" and luhn.is_valid(kid)) or _kid_mod11_ok(kid)


def _kid_mod11_ok(kid: str) -> bool:
    # python-stdnum has no KID module; this is the bank standard (weights 2..7 from the right,
    # remainder 10 is written "-").
    body, check = kid[:-1], kid[-1]
    total = sum(int(d) * (2 + i % 6) for i, d in enumerate(reversed(body)))
    digit = (11 - total % 11) % 11
    return check == ("-" if digit == 10 else str(digit))


#: The longest value a problem shows whole. A longer one (a note pasted into the amount column,
#: a hostile cell) is shown by its start and end, so that the sentence still ends in its reason
#: and fits the outcome's cell (a spreadsheet cell holds 32,767 characters). Three dots, not an
#: ellipsis, which a latin-1 outcome cannot hold.
SHOWN_MAX = 120


def shown(value: str) -> str:
    """A cell's value as a problem shows it: whole, or its start and end and its length."""
    text, length = _cut(value)
    return text + length


def quoted(value: str) -> str:
    """``shown``, in quotes (the length, when it is given, after them)."""
    text, length = _cut(value)
    return f'"{text}"{length}'


def _cut(value: str) -> tuple[str, str]:
    if len(value) <= SHOWN_MAX:
        return value, ""
    return f"{value[:60]}...{value[-30:]}", f" ({len(value):,} characters)"


def mask_id(value: str) -> str:
    """Hide a national id in messages and logs: the birth date stays, the personal part goes, and
    the length stays (``110663****``), so a lost leading zero shows."""
    return value[:6] + "*" * (len(value) - 6) if len(value) > 6 else "*" * len(value)
