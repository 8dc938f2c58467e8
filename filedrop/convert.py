"""Pure value conversions, one whole column at a time.

Every function takes text exactly as the user typed it (already trimmed) and returns the converted
values together with a mask of what could not be converted, so the caller can name each failure in
one sentence. Nothing here raises on bad cell text. Expensive checks (phone parsing, check digits)
run once per distinct value: export columns repeat a lot (dates, currencies, customers).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import phonenumbers
from stdnum import luhn
from stdnum.no import fodselsnummer, orgnr

if TYPE_CHECKING:
    from filedrop.mapping import Field

# Active ISO 4217 codes (2024 list, funds and precious metals left out). A code missing here makes a
# row INVALID, so err on the side of the full list.
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

# Space, no-break space and narrow no-break space all group thousands in Norwegian exports.
SPACES = " \u00a0\u202f"
_WHITESPACE = " \t\r\n\u00a0\u202f\u2007\ufeff"

# Currency words and symbols that ERPs glue to amounts: "kr 1 234,50", "1 234,50 NOK", "€12".
_CURRENCY_AFFIX = re.compile(
    r"^(?:kr\.?|nok|sek|dkk|eur|usd|gbp|€|\$|£)\s*|\s*(?:kr\.?|nok|sek|dkk|eur|usd|gbp|€|\$|£)$",
    re.IGNORECASE,
)
_MINUS = "-\u2212\u2013"  # hyphen, minus sign, en dash (Excel and Word turn one into another)
_MINUS_CLASS = re.escape(_MINUS)
_EXCEL_EPOCH = np.datetime64("1899-12-30")
# A date outside this window is a typo (2204 for 2024) rather than a real invoice date.
_FIRST_YEAR, _LAST_YEAR = 1900, 2199

_DATE_TOKENS = {"dd": "%d", "d": "%d", "mm": "%m", "m": "%m", "yyyy": "%Y", "yy": "%y"}
_DATE_FORMAT = re.compile(r"(?:d{1,2}|m{1,2}|yyyy|yy)(?:[.\-/ ](?:d{1,2}|m{1,2}|yyyy|yy)){2}")
# ISO dates (and Excel date-times shown as text) are unambiguous, so they are always accepted.
_ISO_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")

# Email shape only: one @, a dotted domain, no spaces or list separators. The mailbox itself can
# only be checked by sending to it.
_EMAIL = r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[\w-]+\.)+[^\W\d_]{2,}"
_KID = re.compile(r"[0-9]{1,24}[0-9-]")


def strip(text: pd.Series) -> pd.Series:
    """Trim spaces, tabs and the no-break spaces Excel and PDFs leave around values."""
    # A plain loop over str.strip is twice as fast as .str.strip on object columns.
    stripped = [v.strip(_WHITESPACE) for v in text.tolist()]
    return pd.Series(stripped, index=text.index, dtype=object)


def per_unique(text: pd.Series, convert: Callable[[pd.Series], np.ndarray]) -> np.ndarray:
    """Apply ``convert`` to each distinct value once and spread the result back to every row."""
    codes, uniques = pd.factorize(text)
    converted = np.asarray(convert(pd.Series(uniques, dtype=object)))
    return converted[codes]


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
    to_plain = str.maketrans({**dict.fromkeys(thousands), decimal: "."})

    def one(value: str) -> float:
        if plain.fullmatch(value):  # most cells: no sign, no currency, no brackets
            return float(value.translate(to_plain))
        bare = _CURRENCY_AFFIX.sub("", value).strip(_WHITESPACE)
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

    return per_unique(text, lambda uniques: np.array([one(v) for v in uniques], dtype=float))


def has_more_than_two_decimals(amounts: np.ndarray) -> np.ndarray:
    """True where an amount has a fraction of an øre (NaN is fine: it is reported elsewhere)."""
    cents = amounts * 100
    with np.errstate(invalid="ignore"):
        return np.abs(cents - np.round(cents)) > 1e-9 + np.abs(cents) * 1e-15


def parse_dates(text: pd.Series, *, formats: Iterable[str]) -> np.ndarray:
    """Date text -> datetime64[D], NaT where no format (nor an Excel serial number) fits.

    ``formats`` are strptime formats, tried in order; ISO dates and 5-digit Excel serial numbers
    (a date cell exported as its number) are always accepted.
    """
    strptime_formats = [*formats, *_ISO_FORMATS]

    def convert(uniques: pd.Series) -> np.ndarray:
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
        serial = todo & uniques.str.fullmatch(r"[0-9]{5}").to_numpy(dtype=bool, na_value=False)
        if serial.any():
            days = uniques[serial].astype(int).to_numpy()
            out[serial] = _EXCEL_EPOCH + days.astype("timedelta64[D]")
        return _in_window(out)

    return per_unique(text, convert)


def dates_from_excel(values: pd.Series) -> np.ndarray:
    """Typed Excel cells (dates, date-times, serial numbers) -> datetime64[D], NaT otherwise."""
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    for i, value in enumerate(values.tolist()):
        if isinstance(value, dt.date | pd.Timestamp):
            out[i] = np.datetime64(value.date() if isinstance(value, dt.datetime) else value, "D")
        elif isinstance(value, int | float) and not isinstance(value, bool) and not np.isnan(value):
            out[i] = _EXCEL_EPOCH + np.timedelta64(int(value), "D")
    return _in_window(out)


def _in_window(dates: np.ndarray) -> np.ndarray:
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    with np.errstate(invalid="ignore"):
        dates[(years < _FIRST_YEAR) | (years > _LAST_YEAR)] = np.datetime64("NaT")
    return dates


def api_timestamps(dates: np.ndarray) -> np.ndarray:
    """datetime64[D] -> "YYYY-MM-DDT00:00:00Z" (object array, None for NaT), as the API wants."""
    uniques, inverse = np.unique(dates, return_inverse=True)  # invoice dates repeat a lot
    text = np.char.add(np.datetime_as_string(uniques, unit="D"), "T00:00:00Z").astype(object)
    text[np.isnat(uniques)] = None
    return text[inverse.reshape(-1)]


def numbers_from_excel(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Typed Excel cells -> (float array, mask of cells that were typed numbers)."""
    floats = np.full(len(values), np.nan)
    typed = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values.tolist()):
        if isinstance(value, int | float | np.number) and not isinstance(value, bool):
            floats[i], typed[i] = float(value), True
    return floats, typed


def typed_mask(values: pd.Series) -> np.ndarray:
    """True where an Excel cell holds a number or a date rather than text."""
    kinds = (int, float, np.number, dt.date, pd.Timestamp)
    return np.fromiter(
        (isinstance(v, kinds) and not isinstance(v, bool) for v in values.tolist()),
        dtype=bool,
        count=len(values),
    )


def zero_pad(text: pd.Series, *, width: int) -> pd.Series:
    """Restore leading zeros a spreadsheet dropped (``155`` -> ``0155``); only all-digit values."""
    digits = text.str.fullmatch(r"[0-9]+")
    return text.where(~digits, text.str.zfill(width))


def is_email(text: pd.Series) -> np.ndarray:
    """True where the text has the shape of one email address."""
    return text.str.fullmatch(_EMAIL).to_numpy(dtype=bool, na_value=False)


def split_values(text: pd.Series, *, separators: str) -> list[list[str]]:
    """``"a@x.no; b@y.no"`` -> ``["a@x.no", "b@y.no"]`` per row; empty parts dropped."""
    pattern = re.compile(f"[{re.escape(separators)}]+")
    out: list[list[str]] = []
    for value in text.tolist():
        if pattern.search(value):
            out.append([p for p in (s.strip(_WHITESPACE) for s in pattern.split(value)) if p])
        else:
            out.append([value] if value else [])
    return out


@cache
def phone_e164(text: str, country: str | None) -> tuple[str, str] | None:
    """One phone number -> (E.164, its region), or None when it is not a valid number.

    Cached: the same customer's number repeats on every one of their invoices.
    """
    try:
        number = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number) or country or ""


def compact_id(text: pd.Series) -> pd.Series:
    """Drop the spaces, dots and dashes people type into national ids and KIDs."""
    return text.str.replace(r"[\s.\u00a0-]", "", regex=True)


def is_fodselsnummer(values: pd.Series) -> np.ndarray:
    """Norwegian fødselsnummer or D-number with valid check digits and birth date."""
    return per_unique(values, lambda u: np.array([fodselsnummer.is_valid(v) for v in u], bool))


def is_orgnr(values: pd.Series) -> np.ndarray:
    """Norwegian organisation number (9 digits, mod 11)."""
    return per_unique(values, lambda u: np.array([orgnr.is_valid(v) for v in u], bool))


def is_kid(values: pd.Series) -> np.ndarray:
    """KID (Norwegian payment reference): 2-25 digits, last digit mod 10 (Luhn) or mod 11."""
    return per_unique(values, lambda u: np.array([_kid_ok(v) for v in u], bool))


def _kid_ok(kid: str) -> bool:
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


def mask_id(value: str) -> str:
    """Hide a national id in messages and logs: the birth date stays, the personal part goes."""
    return value[:6] + "*****" if len(value) > 6 else "*" * len(value)


# --- one mapping Field over a whole table -------------------------------------------------------

Issue = tuple[int, str, str, str | None, str]
"""(row position, rule, column label, value as typed, message) for one value that failed."""


@dataclass(frozen=True)
class Source:
    """What evaluating a Field needs from the table and the mapping's read settings."""

    cells: pd.DataFrame
    values: pd.DataFrame | None  # typed Excel cells; None for CSV
    headers: list[str]
    positions: dict[tuple[str, ...], int]  # header names -> column position
    decimal: str
    thousands: str
    strptime_formats: tuple[str, ...]
    date_formats: tuple[str, ...]  # as the user wrote them, for messages
    trimmed: dict[int, tuple[pd.Series, np.ndarray]] = field(default_factory=dict, compare=False)

    @property
    def n(self) -> int:
        return len(self.cells)

    def stripped(self, pos: int) -> pd.Series:
        """Column ``pos`` trimmed, once: several fields and templates read the same column."""
        return self._trimmed(pos)[0]

    def blank(self, pos: int) -> np.ndarray:
        """Where column ``pos`` is empty once trimmed (do not write to it)."""
        return self._trimmed(pos)[1]

    def _trimmed(self, pos: int) -> tuple[pd.Series, np.ndarray]:
        if pos not in self.trimmed:
            text = strip(self.cells[pos])
            self.trimmed[pos] = (text, (text == "").to_numpy(dtype=bool))
        return self.trimmed[pos]


@dataclass
class Values:
    """One Field converted for every row."""

    vals: np.ndarray  # object: the JSON value, None when absent, a list when a cell held several
    text: np.ndarray  # object: the trimmed text as typed ('' when empty), for messages
    label: np.ndarray  # object: the column the value came from, as the file names it
    number: np.ndarray | None  # floats for amounts, datetime64[D] for dates; NaN/NaT when none
    empty: np.ndarray  # bool: no value at all

    @classmethod
    def absent(cls, n: int, label: str) -> Values:
        return cls(
            vals=np.full(n, None, dtype=object),
            text=np.full(n, "", dtype=object),
            label=np.full(n, label, dtype=object),
            number=None,
            empty=np.ones(n, dtype=bool),
        )


def evaluate(f: Field, src: Source, issues: list[Issue]) -> Values:
    """Take ``f``'s value for every row and convert it; each failure becomes one Issue."""
    n = src.n
    excel: pd.Series | None = None
    if f.source == "sum_of_claims":
        return Values.absent(n, "the sum of the claims")
    if f.source == "column":
        pos = src.positions[f.columns]
        cell, label = src.cells[pos], src.headers[pos] or f.columns[0]
        excel = src.values[pos] if src.values is not None else None
    elif f.source == "template":
        cell, label = _fill_template(f, src), f.template
    elif isinstance(f.constant, str):
        if n > 1:  # the same text on every row: convert it once
            own: list[Issue] = []
            one = evaluate(f, replace(src, cells=src.cells.iloc[:1], trimmed={}), own)
            issues += [(pos, *issue[1:]) for issue in own for pos in range(n)]
            return _broadcast(one, n)
        cell, label = pd.Series(np.full(n, f.constant, dtype=object)), f"the mapping's {f.key}"
    else:
        return _typed_constant(f, n)
    text_of_column = f.trim and f.source == "column"
    if not f.trim:
        text = cell
    elif text_of_column:
        text = src.stripped(pos)
    else:
        text = strip(cell)
    out = Values(
        vals=np.full(n, None, dtype=object),
        text=text.to_numpy(dtype=object, copy=True),
        label=np.full(n, label, dtype=object),
        number=None,
        empty=src.blank(pos).copy()
        if text_of_column
        else (text == "").to_numpy(dtype=bool, copy=True),
    )
    if f.kind in ("amount", "date"):
        out.empty |= (text == "-").to_numpy(dtype=bool)  # ERPs print "-" for nothing
    todo = ~out.empty
    if f.value_map and f.source != "constant":
        todo, text = _apply_map(f, text, todo, out, issues)
    _convert(f, text, excel=excel, todo=todo, out=out, src=src, issues=issues)
    if f.default is not None and out.empty.any():
        _fill_default(f.default, out, src, issues)
    return out


def _broadcast(one: Values, n: int) -> Values:
    """A one-row result (of a constant) repeated for every row."""

    def rep(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.repeat(a, n)

    return Values(rep(one.vals), rep(one.text), rep(one.label), rep(one.number), rep(one.empty))


def _fill_template(f: Field, src: Source) -> pd.Series:
    """``"{Fakturanr}-{Kundenr}"`` for every row; empty when every column in it is empty."""
    columns = [src.stripped(src.positions[(name,)]).tolist() for name in f.placeholders]
    # The same template with numbered fields, so str.format fills a row in one C call.
    numbered = "".join(
        literal.replace("{", "{{").replace("}", "}}")
        + ("" if name is None else f"{{{f.placeholders.index(name)}}}")
        for literal, name, _, _ in string.Formatter().parse(f.template)
    )
    filled = pd.Series(list(map(numbered.format, *columns)), dtype=object)
    all_empty = np.ones(src.n, dtype=bool)
    for name in f.placeholders:
        all_empty &= src.blank(src.positions[(name,)])
    return filled.where(~all_empty, "")


def _typed_constant(f: Field, n: int) -> Values:
    value = f.constant
    number = None
    if f.kind == "amount" and isinstance(value, int | float) and not isinstance(value, bool):
        number = np.full(n, float(value))
    elif f.kind == "date" and isinstance(value, dt.date):
        day = value.date() if isinstance(value, dt.datetime) else value
        number = np.full(n, np.datetime64(day, "D"))
        value = api_timestamps(number[:1])[0]
    elif isinstance(value, dt.date | dt.time):
        value = value.isoformat()
    elif isinstance(value, tuple):
        value = list(value)
    vals = np.empty(n, dtype=object)
    vals[:] = [value] * n if isinstance(value, list) else value
    return Values(
        vals=vals,
        text=np.full(n, str(f.constant), dtype=object),
        label=np.full(n, f"the mapping's {f.key}", dtype=object),
        number=number,
        empty=np.zeros(n, dtype=bool),
    )


def _apply_map(
    f: Field, text: pd.Series, todo: np.ndarray, out: Values, issues: list[Issue]
) -> tuple[np.ndarray, pd.Series]:
    """Replace mapped cells; typed results are final, text results go on to conversion."""
    table = {k.casefold(): v for k, v in f.value_map}
    codes, uniques = pd.factorize(text[todo])  # a handful of codes on many rows
    missing = object()
    mapped_u = [table.get(u.casefold(), missing) for u in uniques]
    rows = np.flatnonzero(todo)
    found_u = np.array([m is not missing for m in mapped_u], dtype=bool)
    shown = ", ".join(k for k, _ in f.value_map)
    for i in rows[~found_u[codes]]:
        value = out.text[i]
        why = f'{out.label[i]} "{value}" is not one of {shown} (the values the mapping knows)'
        issues.append((int(i), "value_map", out.label[i], value, why))
        out.vals[i] = value
    as_text_u = np.array([isinstance(m, str) for m in mapped_u], dtype=bool)
    values_u = np.empty(len(mapped_u), dtype=object)
    values_u[:] = mapped_u
    final = rows[found_u[codes] & ~as_text_u[codes]]
    out.vals[final] = values_u[codes][found_u[codes] & ~as_text_u[codes]]
    again = rows[found_u[codes] & as_text_u[codes]]
    new_text = text.to_numpy(dtype=object, copy=True)
    new_text[again] = values_u[codes][found_u[codes] & as_text_u[codes]]
    next_todo = np.zeros(len(todo), dtype=bool)
    next_todo[again] = True
    return next_todo, pd.Series(new_text, index=text.index, dtype=object)


def _convert(
    f: Field,
    text: pd.Series,
    *,
    excel: pd.Series | None,
    todo: np.ndarray,
    out: Values,
    src: Source,
    issues: list[Issue],
) -> None:
    """Convert the cells still to do (``todo``) by the field's kind, one Issue per failure."""
    kind = f.kind
    if kind in ("email", "phone", "region"):
        _convert_list(f, text, todo, out, issues)
        return
    if kind == "amount":
        out.number = np.full(src.n, np.nan)
        typed = np.zeros(src.n, bool)
        if excel is not None:
            floats, typed = numbers_from_excel(excel)
            typed &= todo
            out.number[typed] = floats[typed]
        rest = todo & ~typed
        out.number[rest] = parse_amounts(text[rest], decimal=src.decimal, thousands=src.thousands)
        ok = todo & ~np.isnan(out.number)
        out.vals[ok] = out.number[ok]
        example = amount_example(decimal=src.decimal, thousands=src.thousands.strip(SPACES) or " ")
        _fail(todo & ~ok, "amount", out, issues, f"is not an amount (expected e.g. {example})")
        return
    if kind == "date":
        out.number = np.full(src.n, np.datetime64("NaT"), dtype="datetime64[D]")
        typed = np.zeros(src.n, bool)
        if excel is not None:
            typed = todo & typed_mask(excel)
            out.number[typed] = dates_from_excel(excel[typed])
        rest = todo & ~typed
        out.number[rest] = parse_dates(text[rest], formats=src.strptime_formats)
        ok = todo & ~np.isnat(out.number)
        out.vals[ok] = api_timestamps(out.number[ok])
        shown = " or ".join(src.date_formats)
        _fail(todo & ~ok, "date", out, issues, f"is not a date (expected {shown})")
        return
    if kind == "text" and not f.pad:
        out.vals[todo] = text.to_numpy(dtype=object)[todo]
        return
    codes, uniques = pd.factorize(text[todo])  # ids, zip codes and currencies repeat
    value = pd.Series(uniques, dtype=object)
    if kind in ("id", "kid"):
        value = compact_id(value)
    elif kind == "currency":
        value = value.str.upper()
    if f.pad:
        value = zero_pad(value, width=f.pad)
    converted = value.to_numpy(dtype=object)
    out.vals[todo] = converted[codes]
    if kind == "currency":
        bad = todo.copy()
        bad[todo] = ~value.isin(CURRENCIES).to_numpy(dtype=bool)[codes]
        _fail(bad, "currency", out, issues, "is not an ISO 4217 currency code (such as NOK or EUR)")
    elif kind == "kid":
        bad = todo.copy()
        bad[todo] = ~np.array([_kid_ok(v) for v in converted], dtype=bool)[codes]
        _fail(
            bad, "kid", out, issues,
            "is not a valid KID (expected 2 to 25 digits ending in a mod 10 or mod 11 check digit)",
        )  # fmt: skip


def _fail(bad: np.ndarray, rule: str, out: Values, issues: list[Issue], what: str) -> None:
    """One Issue per failed row; the value is then sent as typed if the rule lets the row go."""
    for i in np.flatnonzero(bad):
        value = out.text[i]
        issues.append((int(i), rule, out.label[i], value, f'{out.label[i]} "{value}" {what}'))
        if out.vals[i] is None:
            out.vals[i] = value


def _convert_list(
    f: Field, text: pd.Series, todo: np.ndarray, out: Values, issues: list[Issue]
) -> None:
    """Emails and phone numbers: split a cell into several, check each, keep the good ones' form.

    Everything runs once per distinct cell: a customer's number repeats on all their invoices.
    """
    rows = np.flatnonzero(todo)
    codes, uniques = pd.factorize(text[todo])
    cells = list(uniques)
    pattern = re.compile(f"[{re.escape(f.split)}]") if f.split else None
    values = np.empty(len(cells), dtype=object)
    bad: dict[int, list[str]] = {}
    if pattern is None or not pattern.search("\n".join(cells)):  # one value per cell: the usual
        ok, converted = _check_parts(f, cells)
        values[:] = converted
        if f.kind != "region":
            bad = {j: [cells[j]] for j in np.flatnonzero(~ok).tolist()}
    else:
        parts = split_values(pd.Series(cells, dtype=object), separators=f.split)
        ok, converted = _check_parts(f, [p for cell in parts for p in cell])
        k = 0
        for j, cell in enumerate(parts):
            kept = [v for v in converted[k : k + len(cell)] if v is not None]
            values[j] = None if not kept else kept[0] if len(kept) == 1 else kept
            if f.kind != "region" and not ok[k : k + len(cell)].all():
                bad[j] = [
                    p for p, good in zip(cell, ok[k : k + len(cell)], strict=True) if not good
                ]
            k += len(cell)
    out.vals[rows] = values[codes]
    out.empty[rows] = np.equal(values, None)[codes]
    if bad:
        has_bad = np.zeros(len(cells), dtype=bool)
        has_bad[list(bad)] = True
        for i, c in zip(rows[has_bad[codes]].tolist(), codes[has_bad[codes]].tolist(), strict=True):
            for part in bad[c]:
                _bad_part(f, i, part, out, issues)


def _check_parts(f: Field, parts: list[str]) -> tuple[np.ndarray, list[object]]:
    """(ok, value to send) for each email / phone number; a bad one is sent as typed."""
    if f.kind == "email":
        return is_email(pd.Series(parts, dtype=object)), list(parts)
    results = [phone_e164(p, f.country) for p in parts]
    ok = np.array([r is not None for r in results], dtype=bool)
    if f.kind == "phone":
        return ok, [r[0] if r else p for r, p in zip(results, parts, strict=True)]
    return np.ones(len(parts), bool), [r[1] if r else None for r in results]


def _bad_part(f: Field, i: int, part: str, out: Values, issues: list[Issue]) -> None:
    issues.append((i, f.kind, out.label[i], part, _list_message(f, out.label[i], part)))


def _list_message(f: Field, label: str, part: str) -> str:
    if f.kind == "email":
        return f'{label} "{part}" is not an email address'
    if f.country:
        why = f"numbers without a + country code are read as {f.country}"
    else:
        why = "write it with + and the country code, or set country in the mapping"
    return f'{label} "{part}" is not a phone number ({why})'


def _fill_default(default: Field, out: Values, src: Source, issues: list[Issue]) -> None:
    """Empty cells take the default: a fixed value, or another column's value."""
    own: list[Issue] = []
    alt = evaluate(default, src, own)
    take = out.empty & ~alt.empty
    out.vals[take] = alt.vals[take]
    out.text[take] = alt.text[take]
    out.label[take] = alt.label[take]
    if alt.number is not None:
        if out.number is None:
            out.number = (
                np.full(src.n, np.nan)
                if alt.number.dtype.kind == "f"
                else np.full(src.n, np.datetime64("NaT"), dtype=alt.number.dtype)
            )
        out.number[take] = alt.number[take]
    out.empty &= ~take
    issues += [issue for issue in own if take[issue[0]]]
