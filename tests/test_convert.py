"""Conversions of whole columns: amounts, dates, ids, phones, emails, and one Field."""

from __future__ import annotations

import datetime as dt
import re
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stdnum.no import fodselsnummer, orgnr

from filedrop.mapping.convert import (
    PHONE_CACHE_SIZE,
    SPACES,
    api_timestamps,
    compact_id,
    date_format_to_strptime,
    dates_from_excel,
    has_more_than_two_decimals,
    is_email,
    is_fodselsnummer,
    is_kid,
    is_orgnr,
    marked_currencies,
    mask_id,
    numbers_from_excel,
    one_line_texts,
    outside_claim_years,
    parse_amounts,
    parse_dates,
    per_unique,
    phone_e164,
    phones_e164,
    shared_conversions,
    split_values,
    strip,
    typed_mask,
    visible,
    without_vat_marks,
    zero_pad,
)
from filedrop.mapping.fields import Issue, Source, evaluate
from filedrop.mapping.tree import Field
from filedrop.read.table import INVISIBLE, header_key

NORWEGIAN = {"decimal": ",", "thousands": "." + SPACES}
ENGLISH = {"decimal": ".", "thousands": ","}


def amounts(*texts: str, decimal: str, thousands: str) -> list[float]:
    return parse_amounts(
        pd.Series(texts, dtype=object), decimal=decimal, thousands=thousands
    ).tolist()


def dates(*texts: str, formats: tuple[str, ...]) -> list[str]:
    parsed = parse_dates(pd.Series(texts, dtype=object), formats=formats)
    return [str(d) for d in parsed]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 234,50", 1234.5),
        ("1.234,50", 1234.5),
        ("1\u00a0234,50", 1234.5),  # no-break space, as Excel and PDFs write it
        ("1\u202f234,50", 1234.5),  # narrow no-break space
        ("1\u2009234,50", 1234.5),  # thin space, from a typeset report
        ("1\u2007234,50", 1234.5),  # figure space, from a report turned from PDF into Excel
        ("12 345 678,90", 12345678.9),
        ("1234,5", 1234.5),
        ("4500", 4500.0),
        ("kr 1 234,50", 1234.5),
        ("1 234,50 kr", 1234.5),
        ("NOK 100,00", 100.0),
        ("1 234,-", 1234.0),
        ("-500,00", -500.0),
        ("\u2212500,00", -500.0),  # the minus sign Word puts in
        ("500,00-", -500.0),
        ("(500,00)", -500.0),
        ("+3,10", 3.1),
    ],
)
def test_amount_with_decimal_comma_reads_as_typed(text: str, expected: float) -> None:
    """Norwegian amounts: decimal comma, thousands by space, no-break space or dot, kr around."""
    assert amounts(text, **NORWEGIAN) == [expected]


@pytest.mark.parametrize(
    "text",
    ["1.5", "1,234.50", "12 34,50", "1 2345,00", "abc", "(500,00", "-500-", "1,2,3", "kr", "0x10"],
)
def test_amount_that_does_not_fit_the_settings_is_refused(text: str) -> None:
    """With a decimal comma, 1.5 is refused (not read as 15); bad grouping and junk too."""
    assert np.isnan(amounts(text, **NORWEGIAN)[0])


def test_currency_words_are_looked_for_at_the_two_ends_of_a_cell_only() -> None:
    """A word or sign glued before or after the amount is read and named; one inside is not.
    A cell of a million spaces between two letters is no amount, and costs no more than its
    length (a pattern tried at every position made it quadratic)."""
    cells = [
        "kr.100",
        "100kr",
        "€ 12",
        "12 £",
        "kr 100 USD",
        "10 kr 0",
        "a" + " " * 1_000_000 + "b",
    ]
    got = amounts(*cells, **NORWEGIAN)
    assert got[:5] == [100.0, 100.0, 12.0, 12.0, 100.0]
    assert np.isnan(got[5:]).all()
    marked = marked_currencies(np.array(cells, dtype=object)).tolist()
    assert marked == ["kr", "kr", "EUR", "GBP", "USD/kr", None, None]
    # A column of plain amounts is passed over in one look; one marked among them is still found.
    plain = ["100", "1 234,50", "", "7"]
    assert marked_currencies(np.array(plain, dtype=object)).tolist() == [None] * 4
    assert marked_currencies(np.array([*plain, "9 kr"], dtype=object)).tolist()[-1] == "kr"
    assert marked_currencies(np.array([*plain, "1\nkr"], dtype=object)).tolist()[-1] == "kr"


@settings(max_examples=300, deadline=None)
@example(texts=["1 234,50", "12", "0,1"], norwegian=True)  # plain: the one-pass reading
@example(texts=["1.234.567,891", "999"], norwegian=True)
@example(texts=["1,234.5", "3"], norwegian=False)
@given(
    texts=st.lists(
        st.text(alphabet="0123456789 .,\u00a0-+()kr\n", min_size=0, max_size=12), max_size=8
    ),
    norwegian=st.booleans(),
)
def test_a_column_of_amounts_reads_as_each_amount_alone(texts: list[str], norwegian: bool) -> None:
    """A column whose amounts are all plain is read in one pass; it gives, amount by amount,
    what the value-by-value reading gives (forced here by a last value that is no amount)."""
    settings_ = NORWEGIAN if norwegian else ENGLISH
    column = amounts(*texts, **settings_)
    one_by_one = amounts(*texts, "not an amount", **settings_)[:-1]
    assert np.array_equal(np.array(column), np.array(one_by_one), equal_nan=True)


def test_amount_with_decimal_point_reads_the_other_way_round() -> None:
    """With decimal point and comma thousands, 1,234.50 is 1234.5 and 1.234,50 is refused."""
    got = amounts("1,234.50", "1234.5", "1.234,50", "1 234,50", decimal=".", thousands=",")
    assert got[:2] == [1234.5, 1234.5]
    assert np.isnan(got[2:]).all()


def test_thousands_space_is_allowed_only_when_configured() -> None:
    """Without a thousands setting, 1 234,50 is not an amount."""
    assert np.isnan(amounts("1 234,50", decimal=",", thousands="")[0])
    assert amounts("1234,50", decimal=",", thousands="") == [1234.5]


def test_amount_digits_must_be_ascii() -> None:
    """Digits from other scripts are refused, not silently read as numbers."""
    assert np.isnan(amounts("١٢٣", **NORWEGIAN)[0])


@pytest.mark.parametrize(
    ("value", "more"), [(1.25, False), (0.1 + 0.2, False), (1.005, True), (1234567.891, True)]
)
def test_more_than_two_decimals(value: float, more: bool) -> None:
    """A fraction of an øre is flagged; floating-point noise is not."""
    assert has_more_than_two_decimals(np.array([value]))[0] == more


@pytest.mark.parametrize(
    ("text", "formats", "expected"),
    [
        ("15.01.2024", ("%d.%m.%Y",), "2024-01-15"),
        ("1.2.2024", ("%d.%m.%Y",), "2024-02-01"),
        ("15.01.24", ("%d.%m.%Y", "%d.%m.%y"), "2024-01-15"),
        ("15/01/2024", ("%d/%m/%Y",), "2024-01-15"),
        ("2024-01-15", ("%d.%m.%Y",), "2024-01-15"),  # ISO is always understood
        ("2024-01-15 00:00:00", ("%d.%m.%Y",), "2024-01-15"),
        ("45306", ("%d.%m.%Y",), "2024-01-15"),  # an Excel serial number exported as text
        # With the time of day an ERP exports a timestamp with: the day, the time left out.
        ("15.01.2024 00:00", ("%d.%m.%Y",), "2024-01-15"),
        ("15.01.2024 14:35:09", ("%d.%m.%Y",), "2024-01-15"),
        ("01/15/2024 9:05", ("%m/%d/%Y",), "2024-01-15"),
    ],
)
def test_dates_in_several_formats(text: str, formats: tuple[str, ...], expected: str) -> None:
    """Each accepted format, ISO, and Excel serial numbers give the same day."""
    assert dates(text, formats=formats) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        *("31.02.2024", "15.13.2024", "15.01.2024x", "15.01.24", "x"),
        *("15.01.2024 25:00", "15.01.2024 10:60", "31.02.2024 00:00", "nå 10:00"),
    ],
)
def test_impossible_or_unexpected_date_is_refused(text: str) -> None:
    """31.02.2024 does not exist; a two-digit year is refused unless dd.mm.yy is accepted."""
    assert dates(text, formats=("%d.%m.%Y",)) == ["NaT"]


def test_a_date_outside_any_claims_years_is_read_and_told_apart() -> None:
    """2204-01-15 is a date, read as one, so that the row's message can say what is wrong with
    it (``outside_claim_years``) rather than that it is no date in the expected format."""
    parsed = parse_dates(
        pd.Series(["2204-01-15", "01.03.1969", "15.01.2024"]), formats=("%d.%m.%Y",)
    )
    assert [str(d) for d in parsed] == ["2204-01-15", "1969-03-01", "2024-01-15"]
    assert outside_claim_years(parsed).tolist() == [True, True, False]
    assert not outside_claim_years(np.array(["NaT"], dtype="datetime64[D]")).any()


@pytest.mark.parametrize(
    ("user", "strptime"),
    [
        ("dd.mm.yyyy", "%d.%m.%Y"),
        ("d.m.yy", "%d.%m.%y"),
        ("yyyy-mm-dd", "%Y-%m-%d"),
        ("mm/dd/yyyy", "%m/%d/%Y"),
    ],
)
def test_user_date_format_becomes_strptime(user: str, strptime: str) -> None:
    """Date formats are written the way accountants write them."""
    assert date_format_to_strptime(user) == strptime


@pytest.mark.parametrize("user", ["dd.mm", "dd.dd.yyyy", "%d.%m.%Y", "dd.mm.åååå", "ddmmyyyy"])
def test_date_format_that_is_not_day_month_year_is_refused(user: str) -> None:
    """A format must have a day, a month and a year, with a separator between them."""
    with pytest.raises(ValueError):
        date_format_to_strptime(user)


def test_excel_dates_and_serials_are_taken_as_they_are() -> None:
    """Typed Excel cells need no format: dates, date-times and serial numbers."""
    values = pd.Series(
        [
            dt.date(2024, 1, 15),
            dt.datetime(2024, 1, 15, 13, 5),
            pd.Timestamp("2024-01-15"),
            45306.0,
            "15.01.2024",
        ],
        dtype=object,
    )
    assert [str(d) for d in dates_from_excel(values)] == ["2024-01-15"] * 4 + ["NaT"]


def test_a_serial_number_is_the_day_excel_shows() -> None:
    """Excel counts a 29.02.1900 that never was (its day 60): days 1 to 59 are a day later than
    a count from 30.12.1899 gives. Below 1 and past 31.12.9999 it shows no day (NaT); a 1904
    workbook counts from 01.01.1904 as day 0; a time of day (calamine's reading of a date cell
    holding a number below 1, in either count) is no day."""
    numbers = pd.Series([1, 59, 60, 61, 45306.0, 0, 0.5, -3, 2958465, 2958466], dtype=object)
    assert [str(d) for d in dates_from_excel(numbers)] == [
        "1900-01-01", "1900-02-28", "1900-02-28", "1900-03-01", "2024-01-15",
        "NaT", "NaT", "NaT", "9999-12-31", "NaT",
    ]  # fmt: skip
    in_1904 = pd.Series([0, 0.5, 1, 43844, -1, 2957003, 2957004, dt.time(0)], dtype=object)
    assert [str(d) for d in dates_from_excel(in_1904, date1904=True)] == [
        "1904-01-01", "1904-01-01", "1904-01-02", "2024-01-15", "NaT", "9999-12-31", "NaT",
        "NaT",
    ]  # fmt: skip


def test_a_workbook_cell_is_a_number_when_it_holds_one_and_no_truth_value() -> None:
    """Numbers of every kind a workbook reader gives (Python's and numpy's) read as floats;
    text, empty cells, dates and truth values (True is 1 to Python) are no numbers."""
    cells = pd.Series(
        [1.5, "12", None, True, False, 3, np.float32(2.5), np.int64(7), 10**20, float("nan"),
         dt.date(2024, 1, 2), -1, 1e308],
        dtype=object,
    )  # fmt: skip
    floats, typed = numbers_from_excel(cells)
    assert typed.tolist() == [
        True, False, False, False, False, True, True, True, True, True, False, True, True,
    ]  # fmt: skip
    assert floats[typed].tolist()[:-3] == [1.5, 3.0, 2.5, 7.0, 1e20]
    assert np.isnan(floats[typed][-3]) and floats[typed].tolist()[-2:] == [-1.0, 1e308]
    assert np.isnan(floats[~typed]).all()


def test_dates_are_sent_as_midnight_utc() -> None:
    """The API wants YYYY-MM-DDT00:00:00Z; a missing date stays missing."""
    days = np.array(["2024-01-15", "NaT"], dtype="datetime64[D]")
    assert api_timestamps(days).tolist() == ["2024-01-15T00:00:00Z", None]


def test_a_value_with_a_line_break_or_tab_is_made_one_line() -> None:
    """Each run of spaces, tabs and line breaks in it is one space; a value without any is left
    alone (double spaces too), and a column without any is the very same list."""
    values = [
        "c/o Hansen \n Storgata 12", "Oslo\u2028Sentrum", "Åse\tMarie", "Kari\r\nNordmann",
        "Storgata  12",
    ]  # fmt: skip
    assert one_line_texts(values) == [
        "c/o Hansen Storgata 12", "Oslo Sentrum", "Åse Marie", "Kari Nordmann", "Storgata  12",
    ]  # fmt: skip
    plain = ["Storgata 12", "Oslo"]
    assert one_line_texts(plain) is plain


def test_zero_pad_restores_leading_zeros_of_digits_only() -> None:
    """155 becomes 0155; longer values, non-digits and empty cells are left alone."""
    padded = zero_pad(pd.Series(["155", "0155", "12345", "A12", ""], dtype=object), width=4)
    assert padded.tolist() == ["0155", "0155", "12345", "A12", ""]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="0123456789 A\u0661\u00b2", max_size=6), max_size=12),
    st.integers(1, 8),
)
def test_zero_pad_pads_exactly_the_values_of_ascii_digits(values: list[str], width: int) -> None:
    """Only a value of ASCII digits (no other script's, no ², not empty) is padded, to the
    width: the rule ``[0-9]+`` states, whatever its length."""
    column = pd.Series(values, dtype=object)
    expected = [v.zfill(width) if re.fullmatch(r"[0-9]+", v) else v for v in values]
    assert zero_pad(column, width=width).tolist() == expected


def test_typed_mask_marks_numbers_and_dates_not_text_or_truth_values() -> None:
    """Numbers (numpy's too) and dates are typed, text, None and booleans are not."""
    cells = [1, 2.5, np.float64(3), np.int64(4), dt.date(2024, 1, 2), dt.datetime(2024, 1, 2)]
    cells += [pd.Timestamp("2024-01-02"), "5", None, True, np.bool_(False), ""]
    assert typed_mask(pd.Series(cells, dtype=object)).tolist() == [True] * 7 + [False] * 5


def test_one_cell_splits_into_several_values() -> None:
    """Emails separated by , ; or spaces become a list, empty parts dropped."""
    split = split_values(
        pd.Series(["a@x.no; b@y.no", "c@z.no", "", "d@x.no,,e@x.no "], dtype=object),
        separators=",; ",
    )
    assert split == [["a@x.no", "b@y.no"], ["c@z.no"], [], ["d@x.no", "e@x.no"]]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("kari.nordmann@example.com", True),
        ("ase.ødegård@example.no", True),
        ("post@sub.domain.example.no", True),
        ("kari.example.com", False),
        ("kari@example", False),
        ("kari@@example.no", False),
        ("kari nordmann@example.no", False),
        ("pal.saerheim(at)example.no", False),
    ],
)
def test_email_shape(text: str, ok: bool) -> None:
    """An email needs one @ and a dotted domain; spaces and (at) are not addresses."""
    assert is_email(pd.Series([text], dtype=object)).tolist() == [ok]


@pytest.mark.parametrize(
    "texts",
    [
        ["kari@example.no", "ola@example.no"],
        ["kari@example.no", "kari@example.no\nola@example.no"],  # two addresses in one cell
        ["kari@example.no\nola@example.no", "no address"],  # as many lines match as values
        ["kari@example.no", "ola@example.no\n", "per@example.no"],
        ["kari@example.no", ""],
        ["kari@example.no", "kari.example.com", "ola@example.no"],
        [],
    ],
)
def test_email_shape_of_a_column_is_each_value_s(texts: list[str]) -> None:
    """A column checked in one pass says, value by value, what each value checked alone says;
    a line break inside a value never lets it pass as two addresses."""
    alone = [is_email(pd.Series([text], dtype=object))[0] for text in texts]
    assert is_email(pd.Series(texts, dtype=object)).tolist() == alone


@pytest.mark.parametrize(
    ("text", "country", "expected"),
    [
        ("912 34 567", "NO", ("+4791234567", "NO")),
        ("+47 912 34 567", "NO", ("+4791234567", "NO")),
        ("0047 91234567", "NO", ("+4791234567", "NO")),
        ("+46 70 123 45 67", "NO", ("+46701234567", "SE")),
        ("+4791234567", None, ("+4791234567", "NO")),
        ("(+47) 22 12 34 56", "NO", ("+4722123456", "NO")),
        ("22.12.34.56", "NO", ("+4722123456", "NO")),  # a landline in dotted pairs
        ("22.12.3456", "NO", ("+4722123456", "NO")),  # 3456 is no year of an invoice
    ],
)
def test_phone_to_e164(text: str, country: str | None, expected: tuple[str, str]) -> None:
    """Phone numbers become E.164 with the country they belong to."""
    assert phone_e164(text, country) == expected


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("12 34", "NO"),
        ("91234567", None),
        ("phone", "NO"),
        ("31.02.2024", "NO"),  # a date, though +4731022024 would be a valid number
        ("31.12.24", "NO"),
        ("12/31/2024", "NO"),
        ("2024-03-15", "NO"),
        ("2024-03-15 10:30:00", "NO"),  # a workbook's date-time cell as filedrop shows it
    ],
)
def test_phone_that_is_not_a_number_is_refused(text: str, country: str | None) -> None:
    """Too short, or no country to read it with, or not digits, or a date: not a phone number,
    whether checked alone or in a column."""
    assert phone_e164(text, country) is None
    assert phones_e164([text], country) == [None]


def test_phone_cache_stays_within_its_bound() -> None:
    """A daemon that sees ever new numbers keeps at most PHONE_CACHE_SIZE of them."""
    phone_e164.cache_clear()
    for n in range(PHONE_CACHE_SIZE + 100):
        phone_e164(f"9{n:07d}", "NO")
    info = phone_e164.cache_info()
    assert (info.currsize, info.maxsize) == (PHONE_CACHE_SIZE, PHONE_CACHE_SIZE)
    assert phone_e164("90000000", "NO") == ("+4790000000", "NO")


@pytest.mark.parametrize(
    ("kid", "ok"),
    [
        ("1234567897", True),  # mod 10 (Luhn)
        ("1000004", True),  # mod 11 (its mod 10 digit would be 9)
        ("1000005-", True),  # mod 11 with check "-"
        ("1000003", False),  # neither mod 10 (9) nor mod 11 (4)
        ("1234567890", False),
        ("1", False),
        ("12345678901234567890123456", False),  # 26 digits
        ("12A4", False),
    ],
)
def test_kid_check_digit(kid: str, ok: bool) -> None:
    """A KID is 2-25 digits with a mod 10 or mod 11 check digit."""
    assert is_kid(pd.Series([kid], dtype=object)).tolist() == [ok]


def test_national_id_and_organisation_number_check_digits() -> None:
    """Fødselsnummer and D-number check digits and birth date; orgnr mod 11."""
    ids = pd.Series(
        ["15108695088", "55108695088", "15108695077", "1510869508", "988077917"], dtype=object
    )
    assert is_fodselsnummer(ids).tolist() == [True, False, False, False, False]
    assert is_fodselsnummer(pd.Series(["41018036736"], dtype=object)).tolist() == [True]  # D-number
    assert is_orgnr(pd.Series(["988077917", "988077918", "98807791"], dtype=object)).tolist() == [
        True,
        False,
        False,
    ]


def _with_check_digits(first_nine: str) -> str:
    """``first_nine`` and the two check digits that make it pass, where there are such."""
    k1 = fodselsnummer.calc_check_digit1(first_nine)
    k2 = fodselsnummer.calc_check_digit2(first_nine + k1[-1])
    return first_nine + k1[-1] + k2[-1]


_PARTS = st.tuples(
    st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 999)
).map(lambda p: f"{p[0]:02d}{p[1]:02d}{p[2]:02d}{p[3]:03d}")
_IDS = st.one_of(
    _PARTS.map(_with_check_digits),  # check digits right: the birth date decides
    st.text("0123456789", min_size=11, max_size=11),  # mostly wrong check digits
    st.text("0123456789 -/:a\u0661\u00b2", min_size=0, max_size=13),  # not 11 plain digits
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_IDS, max_size=40))
@example(
    [
        _with_check_digits(dt.date.today().strftime("%d%m%y") + "500"),  # born today
        _with_check_digits((dt.date.today() + dt.timedelta(days=1)).strftime("%d%m%y") + "500"),
        _with_check_digits("010154500"),  # 1854
        _with_check_digits("010153500"),  # individual 500 in 1953: no century
        _with_check_digits("290200499"),  # 29 February 1900: no such day
        _with_check_digits("290200999"),  # 29 February 2000
        _with_check_digits("310455499"),  # 31 April
        _with_check_digits("810190499"),  # an FH-number: no birth date
        _with_check_digits("714190499"),  # a D-number in an H-number's month
        _with_check_digits("010160600"),  # individual 600 in 1960: no century
        "15108695088",
        " 15108695088",
        "151086 95088",
    ]
)
def test_national_ids_and_organisation_numbers_are_judged_as_python_stdnum_judges_them(
    ids: list[str],
) -> None:
    """The column-at-once check of fødselsnumre and organisation numbers says what stdnum's
    ``is_valid`` says of each, value by value."""
    column = pd.Series(ids, dtype=object)
    assert is_fodselsnummer(column).tolist() == [fodselsnummer.is_valid(v) for v in ids]
    nine = pd.Series([v[:9] for v in ids], dtype=object)
    assert is_orgnr(nine).tolist() == [orgnr.is_valid(v) for v in nine]


def test_national_id_is_masked_after_the_birth_date() -> None:
    """Messages show the first six digits only."""
    assert mask_id("15108695088") == "151086*****"
    assert mask_id("1234") == "****"


# --- one Field over a whole table -----------------------------------------------------------------


def source(columns: dict[str, list[object]], *, excel: bool = False) -> Source:
    """A Source over these columns; for Excel, cells show numbers and dates the way read.py does."""
    headers = list(columns)
    values = pd.DataFrame(dict(enumerate(columns.values())), dtype=object)
    cells = values.map(_as_seen) if excel else values
    return Source(
        cells=cells,
        values=values if excel else None,
        headers=headers,
        positions={(h,): i for i, h in enumerate(headers)},
        decimal=",",
        thousands="." + SPACES,
        strptime_formats=("%d.%m.%Y",),
        date_formats=("dd.mm.yyyy",),
    )


def _as_seen(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d")
    return str(value)


def column(name: str, kind: str = "text", **options: object) -> Field:
    return Field(key=f"invoice.{name}", kind=kind, source="column", columns=(name,), **options)


def test_excel_numbers_are_not_reparsed_with_the_thousands_separator() -> None:
    """An Excel number 1.234 stays 1.234 even though "." groups thousands in text cells."""
    issues: list[Issue] = []
    got = evaluate(
        column("Beløp", "amount"), source({"Beløp": [1.234, 4500, "1.234,50"]}, excel=True), issues
    )
    assert got.vals.tolist() == [1.234, 4500.0, 1234.5]
    assert issues == []


def test_excel_dates_need_no_format_but_text_dates_do() -> None:
    """A real Excel date is taken as it is; a date typed as text follows the mapping's formats."""
    src = source({"Forfall": [dt.datetime(2024, 2, 15), "15.02.2024", "31.02.2024"]}, excel=True)
    issues: list[Issue] = []
    got = evaluate(column("Forfall", "date"), src, issues)
    assert got.vals.tolist()[:2] == ["2024-02-15T00:00:00Z"] * 2
    assert issues == [
        Issue(
            2,
            "date",
            "Forfall",
            "31.02.2024",
            'Forfall "31.02.2024" is not a date (expected dd.mm.yyyy)',
        )
    ]


def test_empty_and_dash_cells_are_empty_amounts() -> None:
    """An empty cell or a lone dash is no amount at all, not an error."""
    issues: list[Issue] = []
    got = evaluate(column("Gebyr", "amount"), source({"Gebyr": ["", "-", " ", "70,00"]}), issues)
    assert got.empty.tolist() == [True, True, True, False]
    assert issues == []


def test_value_map_ignores_case_and_names_unknown_values() -> None:
    """p and P both map; an unknown code is one issue listing the known ones."""
    f = column("Kundetype", value_map=(("P", "PRIVATE"), ("B", "COMPANY")))
    issues: list[Issue] = []
    got = evaluate(f, source({"Kundetype": ["P", "b", "X", ""]}), issues)
    assert got.vals.tolist() == ["PRIVATE", "COMPANY", "X", None]
    assert issues == [
        Issue(
            2,
            "value_map",
            "Kundetype",
            "X",
            'Kundetype "X" is not one of P, B (the values the mapping knows)',
        )
    ]


def test_default_fills_empty_cells_from_a_value_or_another_column() -> None:
    """A plain default is the value itself; a column default names that column in its messages."""
    fallback = column("Orgnr", "id")
    f = column("Fødselsnr", "id", pad=11, default=fallback)
    got = evaluate(
        f, source({"Fødselsnr": ["1018036736", "", ""], "Orgnr": ["", "988077917", ""]}), []
    )
    assert got.vals.tolist() == ["01018036736", "988077917", None]
    assert got.label.tolist() == ["Fødselsnr", "Orgnr", "Fødselsnr"]
    nok = Field(key="invoice.currency.default", kind="currency", source="constant", constant="NOK")
    got = evaluate(column("Valuta", "currency", default=nok), source({"Valuta": ["eur", ""]}), [])
    assert got.vals.tolist() == ["EUR", "NOK"]


def test_template_combines_columns_and_is_empty_when_they_all_are() -> None:
    """ "{Fakturanr}-{Kundenr}" joins trimmed cells; no value at all gives an empty field."""
    f = Field(
        key="invoice.uniqueSourceInvoiceId",
        kind="text",
        source="template",
        template="{Fakturanr}-{Kundenr}",
        placeholders=("Fakturanr", "Kundenr"),
    )
    got = evaluate(f, source({"Fakturanr": [" 1001", "", "1003"], "Kundenr": ["K1 ", "", ""]}), [])
    assert got.vals.tolist() == ["1001-K1", None, "1003-"]


def test_constant_is_checked_like_a_cell_on_every_row() -> None:
    """A constant currency that is not ISO 4217 is a problem on every row, naming the key."""
    f = Field(key="invoice.currency", kind="currency", source="constant", constant="NKO")
    issues: list[Issue] = []
    got = evaluate(f, source({"X": ["a", "b"]}), issues)
    assert got.vals.tolist() == ["NKO", "NKO"]
    assert [i.position for i in issues] == [0, 1]
    expected = "is not an ISO 4217 currency code (such as NOK or EUR)"
    assert issues[0].message == f'the mapping\'s invoice.currency "NKO" {expected}'


def test_emails_split_and_each_part_is_checked() -> None:
    """Two emails in one cell become two values; a bad part is named on its own."""
    f = column("E-post", "email", split=",; ")
    issues: list[Issue] = []
    got = evaluate(f, source({"E-post": ["a@x.no; b@y.no", "c@z.no", "d@x.no, nope"]}), issues)
    assert got.vals.tolist() == [["a@x.no", "b@y.no"], "c@z.no", ["d@x.no", "nope"]]
    assert issues == [Issue(2, "email", "E-post", "nope", 'E-post "nope" is not an email address')]


def test_phones_become_e164_and_a_bad_one_is_kept_as_typed() -> None:
    """A valid number is sent in E.164; a bad one is sent as typed if its rule lets the row go."""
    f = column("Mobil", "phone", split=",;/", country="NO")
    issues: list[Issue] = []
    got = evaluate(f, source({"Mobil": ["912 34 567", "12 34", ""]}), issues)
    assert got.vals.tolist() == ["+4791234567", "12 34", None]
    why = "numbers without a + country code are read as NO"
    assert issues == [
        Issue(1, "phone", "Mobil", "12 34", f'Mobil "12 34" is not a phone number ({why})')
    ]


def test_kid_and_currency_are_compacted_before_checking() -> None:
    """Spaces in a KID and lower-case currency codes are tidied, then checked."""
    issues: list[Issue] = []
    kid = evaluate(column("KID", "kid"), source({"KID": ["1234 5678 97", "1234567890"]}), issues)
    assert kid.vals.tolist() == ["1234567897", "1234567890"]
    assert [i[:2] for i in issues] == [(1, "kid")]


@settings(max_examples=200, deadline=None)
@example(cells=["#BUSY!", "12"], kind="amount")  # an Excel error: no value, an issue
@example(cells=["0E0", "12"], kind="kid")  # digits lost to scientific notation: the same
@given(
    st.lists(st.text(max_size=12), min_size=1, max_size=8),
    st.sampled_from(["amount", "date", "text", "email", "phone", "kid", "id", "currency"]),
)
def test_any_cell_text_gives_a_value_or_a_named_issue(cells: list[str], kind: str) -> None:
    """Whatever a cell holds, a row ends with a value, nothing, or an issue; never an exception."""
    issues: list[Issue] = []
    got = evaluate(
        column(
            "C",
            kind,
            country="NO" if kind == "phone" else None,
            split=",;" if kind in ("email", "phone") else "",
        ),
        source({"C": cells}),
        issues,
    )
    assert len(got.vals) == len(cells)
    # A bad value is sent as typed, for its rule to decide; only a cell that gives none (an
    # Excel error such as #N/A, an id Excel cut to "1E+19") has no value, and an issue says so.
    no_value = {issue.position for issue in issues if issue.gave_no_value}
    without_value = [
        pos
        for pos in range(len(cells))
        if not got.empty[pos] and got.vals[pos] is None and pos not in no_value
    ]
    assert without_value == []
    assert [(i.label, bool(i.message)) for i in issues] == [("C", True)] * len(issues)


def test_field_reads_only_its_column(tmp_path: Path) -> None:
    """Another column's content never leaks into a field."""
    got = evaluate(column("A"), source({"A": ["1"], "B": ["2"]}), [])
    assert got.vals.tolist() == ["1"]


@settings(max_examples=400, deadline=None)
@example(prefix="", digits="79123456", separators=[], country="NO")  # Svalbard shares +47
@example(prefix="47", digits="91234567", separators=[], country="NO")  # code without the +
@example(prefix="", digits="42345678", separators=[" "], country="NO")  # not a NO range
@example(prefix="+47", digits="0123", separators=[], country="NO")  # too short
@given(
    prefix=st.sampled_from(["", "+47", "+47 ", "0047", "(+47) ", "+45", "+46", "47", "0", "+"]),
    digits=st.text(alphabet="0123456789", min_size=0, max_size=12),
    separators=st.lists(st.sampled_from([" ", "-", ".", "\u00a0", ""]), min_size=0, max_size=3),
    country=st.sampled_from(["NO", "DK", "SE", "GB", "US"]),
)
def test_column_phone_check_agrees_with_libphonenumber(
    prefix: str, digits: str, separators: list[str], country: str
) -> None:
    """The vectorised fast path gives exactly what phonenumbers gives, number by number."""
    from filedrop.mapping.convert import phone_e164, phones_e164

    text = prefix + digits
    for k, sep in enumerate(separators):
        cut = 1 + 3 * k
        text = text[:cut] + sep + text[cut:]
    assert phones_e164([text], country) == [phone_e164(text, country)]


@settings(max_examples=300, deadline=None)
@example(numbers=["91234567", "41234567"], country="NO")  # all valid: the one-pass check
@example(numbers=["91234567", "42345678"], country="NO")  # one outside every range
@example(numbers=["91234567", "9123456"], country="NO")  # one a digit short
@example(numbers=["912 34 567", "-"], country="NO")  # punctuation alone
@example(numbers=["912 34 567", "9\x001234567"], country="NO")  # the column's separator
@example(numbers=["9\u0661\u0662\u0663\u0664\u0665\u0666\u0667"], country="NO")  # Arabic-Indic
@example(numbers=["9\uff11\uff12 \uff13\uff14 \uff15\uff16\uff17"], country="NO")  # fullwidth
@given(
    numbers=st.lists(
        st.one_of(
            st.text(alphabet="0123456789", min_size=1, max_size=12),
            # Written with spaces, dots, dashes, brackets; punctuation alone; a NUL.
            st.text(alphabet="0123456789 -.()\u00a0+\x00", min_size=0, max_size=12),
            st.sampled_from(["4", "9", "2", "79", "+47 4", "0047"]).flatmap(
                lambda head: st.text(alphabet="0123456789", min_size=6, max_size=8).map(
                    lambda tail: head + tail
                )
            ),
        ),
        max_size=8,
    ),
    country=st.sampled_from(["NO", "DK", "SE"]),
)
def test_column_phone_check_agrees_number_by_number(numbers: list[str], country: str) -> None:
    """A column checked in one pass (every number of the usual shape) gives, number by number,
    what each checked alone gives, valid or not."""
    from filedrop.mapping.convert import phone_e164, phones_e164

    assert phones_e164(numbers, country) == [phone_e164(text, country) for text in numbers]


def test_shared_conversions_convert_each_value_once_across_calls_of_one_kind() -> None:
    """The parts of a long file share what was converted: a value is converted once per kind."""
    converted: list[str] = []

    def lengths(uniques: pd.Series) -> np.ndarray:
        converted.extend(uniques.tolist())
        return np.array([len(v) for v in uniques], dtype=int)

    with shared_conversions():
        first = per_unique(pd.Series(["x", "yy", "x"]), lengths, kind="length")
        second = per_unique(pd.Series(["yy", "zzz", "yy"]), lengths, kind="length")
        other_kind = per_unique(pd.Series(["yy"]), lengths, kind="other")
        dates = parse_dates(pd.Series(["01.03.2024", "x"]), formats=["%d.%m.%Y"])
        again = parse_dates(pd.Series(["x", "01.03.2024"]), formats=["%d.%m.%Y"])
    assert (
        first.tolist() == [1, 2, 1] and second.tolist() == [2, 3, 2] and other_kind.tolist() == [2]
    )
    assert converted == ["x", "yy", "zzz", "yy"]
    assert again.tolist() == dates[::-1].tolist()
    per_unique(pd.Series(["x"]), lengths, kind="length")  # outside: nothing is remembered
    assert converted[-1] == "x" and len(converted) == 5


def test_invisible_characters_are_unicodes_format_characters() -> None:
    """Every format character this Python's Unicode knows is taken out, and nothing that is
    anything else (the list runs ahead of Python 3.11's Unicode 14 only where 15 added some)."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    taken = set(INVISIBLE.findall(every))
    kinds = {unicodedata.category(c) for c in taken}
    assert {c for c in every if unicodedata.category(c) == "Cf"} <= taken
    assert kinds <= {"Cf", "Cn"}


def test_invisible_characters_are_taken_out_of_values_and_headers() -> None:
    """Wherever they are, with the spaces around the value then trimmed; a column without any
    comes back as the very same object."""
    text = pd.Series(["\u200b 2403\u200b01 ", "\ufeffKari\u00ad", "Storgata 1"], dtype=object)
    assert strip(text).tolist() == ["240301", "Kari", "Storgata 1"]
    plain = pd.Series(["Åse", " Ola"], dtype=object)
    assert visible(plain) is plain
    assert header_key("Faktura\u200bnr\u2060") == header_key("Fakturanr")


@settings(max_examples=300, deadline=None)
@example(texts=["936153321", "NO936153321MVA"])  # one marked among plain ones
@example(texts=["١٢٣٤٥٦٧٨٩", "12 34"])  # digits of another script: not ids' digits
@given(st.lists(st.text(alphabet="0123456789 .-\u00a0NOnoMVAmva\n٣x", max_size=16), max_size=6))
def test_ids_are_compacted_and_unmarked_as_each_value_alone(texts: list[str]) -> None:
    """A column is tidied as each of its values would be alone, whether it holds anything to
    tidy (a regular expression per value) or not (the column looked at once)."""
    column = pd.Series(texts, dtype=object)
    compacted = [re.sub(r"[\s.\u00a0-]", "", t) for t in texts]
    assert compact_id(column).tolist() == compacted
    unmarked = [re.sub(r"(?i)^(?:NO)?([0-9]{9})(?:MVA)?$", r"\1", t) for t in compacted]
    assert without_vat_marks(pd.Series(compacted, dtype=object)).tolist() == unmarked
