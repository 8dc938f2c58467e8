"""One mapping Field over a whole table: take each row's value, convert it, note each failure.

The first step of prepare.py: a Field (tree.py) says where a value comes from (a column, a
template, a constant, a default) and what it is; ``evaluate`` fetches it for every row and converts
it with the pure conversions of convert.py. Failures are Issues, not exceptions, so prepare.py can
name every bad cell of a file at once and decide their severity.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from filedrop.mapping.convert import (
    CURRENCIES,
    EXCEL_DIGITS,
    OUTSIDE_CLAIM_YEARS,
    SHORTENED,
    SPACES,
    WHITESPACE,
    amount_example,
    api_timestamps,
    compact_id,
    distinct_joined,
    excel_days_said,
    excel_numbers,
    excel_shows,
    grouping_shown_decimal,
    has_more_than_two_decimals,
    is_email,
    kid_ok,
    mask_id,
    numbers_from_excel,
    one_line,
    one_line_texts,
    outside_claim_years,
    parse_amounts,
    phones_e164,
    quoted,
    read_days,
    reads_as_date,
    repeated,
    same_everywhere,
    shows_decimal,
    split_values,
    strip,
    thousands_like,
    time_mask,
    visible,
    without_vat_marks,
    zero_pad,
)
from filedrop.mapping.tree import Field, with_defaults
from filedrop.read.table import UNSAVED_CURE, UNSAVED_FORMULA

__all__ = [
    "CONTROL",
    "Issue",
    "MarksShown",
    "Source",
    "TemplateColumn",
    "TextColumn",
    "Values",
    "decimals_shown",
    "evaluate",
    "evaluate_fields",
    "longest_kids",
]


class Issue(NamedTuple):
    """One value that failed a rule, before the mapping's rules decide how much it matters."""

    position: int  # 0-based row of the table
    rule: str  # a name from loader.RULES, or "duplicate" / "empty_row"
    label: str | None  # the column as the file names it; None when no one column is at fault
    value: str | None  # as typed (national ids masked); None when there is nothing to show
    message: str

    @property
    def gave_no_value(self) -> bool:
        """Whether the cell gave nothing to send (an Excel error, a formula without its result):
        a required field reading it is missing for this reason, which this issue says."""
        return self.rule in (UNSAVED_RULE, LOST_DIGITS_RULE) or (
            self.rule == "text" and self.value in EXCEL_ERRORS
        )


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
    # The last phone numbers checked, per country: a number's value and its countryCode are two
    # fields over the same cells, and checking 200,000 numbers once is enough.
    phones: dict[str | None, tuple[list[str], list[tuple[str, str] | None]]] = field(
        default_factory=dict, compare=False
    )
    # A workbook's formulas with no saved result (``Table.unsaved`` and ``formulas``), and the
    # row number of each row here, to find them by.
    unsaved: Mapping[int, np.ndarray] = field(default_factory=dict, compare=False)
    formulas: Mapping[tuple[int, int], str] = field(default_factory=dict, compare=False)
    notes: Mapping[int, str] = field(default_factory=dict, compare=False)  # ``Table.notes``
    row_numbers: np.ndarray | None = field(default=None, compare=False)
    # For a part of a long table: the longest valid KID of each KID column (by its ``columns``)
    # over the whole table, as (digits, its row number) (``longest_kids``), so a part judges
    # its short KIDs, and names the row to compare them with, as one go would.
    kid_longest: Mapping[tuple[str, ...], tuple[int, int]] = field(
        default_factory=dict, compare=False
    )
    # And what each amount column (by its ``columns``) shows of its marks (``decimals_shown``),
    # over the whole table: "12,500" is read as 12,5 only where the comma shows to be decimal.
    decimals_shown: Mapping[tuple[str, ...], MarksShown] = field(
        default_factory=dict, compare=False
    )
    date1904: bool = False  # the workbook's serial days count from 1904 (``ReadInfo``)

    @property
    def n(self) -> int:
        return len(self.cells)

    def phones_e164(self, parts: list[str], country: str | None) -> list[tuple[str, str] | None]:
        """``convert.phones_e164`` of ``parts``, remembered for the next field of the same cells."""
        seen = self.phones.get(country)
        if seen is not None and seen[0] == parts:
            return seen[1]
        results = phones_e164(parts, country)
        self.phones[country] = (parts, results)
        return results

    def unsaved_in(self, pos: int) -> tuple[np.ndarray, list[str]] | None:
        """The rows (positions here) where column ``pos`` holds a formula whose result was never
        saved, and those formulas; None where it holds none (any CSV, nearly every workbook)."""
        rows = self.unsaved.get(pos)
        if rows is None or self.row_numbers is None or not len(self.row_numbers):
            return None
        at = np.searchsorted(self.row_numbers, rows)
        inside = at < len(self.row_numbers)
        inside[inside] = self.row_numbers[at[inside]] == rows[inside]
        if not inside.any():
            return None
        shown = [self.formulas.get((row, pos), "=…") for row in rows[inside].tolist()]
        return at[inside], shown

    def stripped(self, pos: int) -> pd.Series:
        """Column ``pos`` trimmed, once: several fields and templates read the same column."""
        return self._trimmed(pos)[0]

    def blank(self, pos: int) -> np.ndarray:
        """Where column ``pos`` is empty once trimmed (do not write to it)."""
        return self._trimmed(pos)[1]

    def _trimmed(self, pos: int) -> tuple[pd.Series, np.ndarray]:
        if pos not in self.trimmed:
            text = strip(self.cells[pos])
            # numpy compares an object column with "" six times faster than pandas does.
            self.trimmed[pos] = (text, text.to_numpy(dtype=object) == "")
        return self.trimmed[pos]


class MarksShown(NamedTuple):
    """What an amount column's text shows of the mapping's marks (``decimals_shown``)."""

    decimal: bool  # some amount shows the decimal mark to be one (``convert.shows_decimal``)
    # A thousands separator some amount shows to be a decimal mark: (the mark, that amount's
    # row number, its text); None when none does (``convert.grouping_shown_decimal``).
    grouping: tuple[str, int, str] | None


class TextColumn(NamedTuple):
    """A text field's JSON values, read from its cells when a batch is built rather than held for
    every row: the cell's text, None where it is empty. Its text is usually the table's own
    column, so this costs nothing."""

    text: np.ndarray  # object: each row's text as sent; '' where the field is empty

    def take(self, idx: np.ndarray) -> list[Any]:
        return [text or None for text in self.text[idx].tolist()]


class TemplateColumn(NamedTuple):
    """A template field's JSON values, filled in when a batch is built: 200,000 filled-in texts
    held until the last batch is sent took 12 MB a template."""

    numbered: str  # the template with numbered placeholders, for str.format
    columns: tuple[np.ndarray, ...]  # each placeholder's trimmed cells
    all_empty: np.ndarray  # bool: every placeholder's cell is empty
    trim: bool
    one_line: bool = False  # with trim: made one line, as ``evaluate`` makes the field's text

    def texts(self, idx: np.ndarray | None = None) -> Iterator[str]:
        """The template filled in on the rows ``idx`` (on every row without), untrimmed."""
        columns = self.columns if idx is None else tuple(column[idx] for column in self.columns)
        return map(self.numbered.format, *(column.tolist() for column in columns))

    def take(self, idx: np.ndarray) -> list[Any]:
        filled = self.texts(idx)
        texts = [text.strip(WHITESPACE) for text in filled] if self.trim else list(filled)
        if self.trim and self.one_line:
            texts = one_line_texts(texts)
        return [
            None if blank or not text else text
            for text, blank in zip(texts, self.all_empty[idx].tolist(), strict=True)
        ]


@dataclass
class Values:
    """One Field converted for every row."""

    vals: np.ndarray  # object: the JSON value, None when absent, a list when a cell held several
    text: np.ndarray  # object: the trimmed text as typed ('' when empty), for messages
    label: np.ndarray  # object: the column the value came from, as the file names it
    number: np.ndarray | None  # floats for amounts, datetime64[D] for dates; NaN/NaT when none
    empty: np.ndarray  # bool: no value at all
    # ``vals`` made again from the cells when asked, for the values that are the cells' text;
    # what the JSON building keeps instead of ``vals``. None for any other.
    lazy: TextColumn | TemplateColumn | None = None

    # Only the Values ``evaluate`` is making are written to; once made, all of their arrays are
    # read-only, so text, labels and constants can share memory with the table and each other.

    def missing(self) -> np.ndarray:
        """Where there is no value to send: an empty cell, and one that gave none, an Excel
        error (not empty: its text is shown, and its own rule says what it is)."""
        return self.empty | np.equal(self.vals, None)

    @classmethod
    def absent(cls, n: int, label: str) -> Values:
        return cls(
            vals=same_everywhere(None, n),
            text=same_everywhere("", n),
            label=same_everywhere(label, n),
            number=None,
            empty=np.ones(n, dtype=bool),
        )


def evaluate_fields(fields: list[Field], src: Source) -> tuple[dict[int, Values], list[Issue]]:
    """Each field's Values on every row (keyed by ``id(field)``), and every failure in field order.

    One column feeding two fields (Beløp: invoice and claim amount) is converted once.
    """
    issues: list[Issue] = []
    values: dict[int, Values] = {}
    done: dict[Field, Values] = {}
    for f in fields:
        same = replace(f, key=f.key if f.source == "constant" else "", required=False, what="")
        if same not in done:
            done[same] = evaluate(f, src, issues)
        values[id(f)] = done[same]
    return values, issues


def longest_kids(fields: Iterable[Field], src: Source) -> dict[tuple[str, ...], tuple[int, int]]:
    """The longest valid KID of each KID column a field (or its default) reads, over all of
    ``src``, as (digits, the row number of the first that long): a long table prepared in parts
    compares each part's KIDs typed as numbers with the whole column's (``_dropped_zeros``), as
    one go would, not with its part's alone."""
    found: dict[tuple[str, ...], tuple[int, int]] = {}
    todo = [f for f in fields if f.kind == "kid"]
    while src.values is not None and todo:
        f = todo.pop()
        if f.default is not None:
            todo.append(f.default)
        if f.source != "column" or f.columns in found:
            continue
        issues: list[Issue] = []
        out = evaluate(replace(f, default=None), src, issues)
        ok = ~out.empty
        ok[[issue.position for issue in issues]] = False
        lengths = np.zeros(src.n, dtype=np.int64)
        lengths[ok] = [len(v) if isinstance(v, str) else 0 for v in out.vals[ok].tolist()]
        found[f.columns] = _first_longest(lengths, src)
    return found


def decimals_shown(fields: Iterable[Field], src: Source) -> dict[tuple[str, ...], MarksShown]:
    """For each amount column a field (or its default) reads: what its amounts typed as text in
    all of ``src`` show of the marks (``marks_shown``), so a long table prepared in parts reads
    "12,500" and "1.250" in every part as one go would."""
    found: dict[tuple[str, ...], MarksShown] = {}
    for f in (each for top in fields if top.kind == "amount" for each in with_defaults(top)):
        if f.source != "column" or f.columns in found:
            continue
        pos = src.positions[f.columns]
        text = src.cells[pos]  # untrimmed: spaces around an amount change nothing here
        typed = np.zeros(src.n, dtype=bool)
        if src.values is not None:
            typed = numbers_from_excel(src.values[pos])[1]
        found[f.columns] = marks_shown(text[~typed], np.flatnonzero(~typed), src)
    return found


def marks_shown(text: pd.Series, at: np.ndarray, src: Source) -> MarksShown:
    """What amounts typed as text (``text``, at the positions ``at`` of ``src``) show of the
    mapping's marks: whether the decimal mark is shown to be one, and which thousands separator,
    if any, is shown to be a decimal mark instead, and where."""
    notation = {"decimal": src.decimal, "thousands": src.thousands}
    joined = distinct_joined(text)
    decimal = shows_decimal(text, **notation, joined=joined)
    grouping = grouping_shown_decimal(text, **notation, joined=joined)
    if grouping is None:
        return MarksShown(decimal, None)
    pos = int(at[grouping.at])
    row = int(src.row_numbers[pos]) if src.row_numbers is not None else pos + 1
    evidence = str(text.iloc[grouping.at]).strip(WHITESPACE)
    return MarksShown(decimal, (grouping.mark, row, evidence))


def _first_longest(lengths: np.ndarray, src: Source) -> tuple[int, int]:
    """(digits, row number) of the first of the longest KIDs, ``lengths`` being each row's
    (0 for none); (0, 0) when there is none."""
    at = int(np.argmax(lengths)) if len(lengths) else 0
    if not len(lengths) or not lengths[at]:
        return 0, 0
    row = int(src.row_numbers[at]) if src.row_numbers is not None else at + 1
    return int(lengths[at]), row


# Sources whose values come from other fields: payload.py sums the claims, derive.py reads a
# debtor's type from its id.
_FILLED_LATER = {
    "sum_of_claims": "the sum of the claims",
    "from_id": "the debtor's identificationNumber",
}


def evaluate(f: Field, src: Source, issues: list[Issue]) -> Values:
    """Take ``f``'s value for every row and convert it; each failure becomes one Issue."""
    n = src.n
    excel: pd.Series | None = None
    template: TemplateColumn | None = None
    if f.source in _FILLED_LATER:
        return Values.absent(n, _FILLED_LATER[f.source])
    if f.source == "column":
        pos = src.positions[f.columns]
        cell, label = src.cells[pos], src.headers[pos] or f.columns[0]
        excel = src.values[pos] if src.values is not None else None
    elif f.source == "template":
        template = _template(f, src)
        cell, label = _fill(template), f.template
    elif isinstance(f.constant, str):
        if n > 1:  # the same text on every row: convert it once
            own: list[Issue] = []
            one = evaluate(f, replace(src, cells=src.cells.iloc[:1], trimmed={}, phones={}), own)
            issues += [issue._replace(position=pos) for issue in own for pos in range(n)]
            return _broadcast(one, n)
        cell, label = pd.Series(repeated(f.constant, n)), f"the mapping's {f.key}"
    else:
        return _typed_constant(f, n)
    text_of_column = f.trim and f.source == "column"
    text = _read_text(f, src, cell, pos if text_of_column else None)
    out = Values(
        vals=np.full(n, None, dtype=object),
        text=text.to_numpy(dtype=object),  # the trimmed column itself: never written to
        label=same_everywhere(label, n),
        number=None,
        empty=src.blank(pos).copy() if text_of_column else text.to_numpy(dtype=object) == "",
    )
    if f.kind in ("amount", "date"):
        out.empty |= (text == "-").to_numpy(dtype=bool)  # ERPs print "-" for nothing
    if src.unsaved:
        _unsaved(f, src, out, issues)
    todo = ~out.empty
    errors, controls = f.source == "column", f.kind in ("text", "id")
    if errors or controls:
        todo &= ~_not_data(text, todo, out, issues, errors=errors, controls=controls)
    todo &= ~_template_errors(f, src, todo, out, issues)
    todo = _identifiers(f, excel=excel, todo=todo, out=out, issues=issues)
    if f.value_map and f.source != "constant":
        todo, text = _apply_map(f, text, todo, out, issues)
    _convert(f, text, excel=excel, todo=todo, out=out, src=src, issues=issues)
    if f.default is not None and out.empty.any():
        _fill_default(f.default, out, src, issues)
    elif f.kind == "text" and not f.pad and not f.value_map:
        out.lazy = _as_read(f, out, template)
    return out


def _read_text(f: Field, src: Source, cell: pd.Series, column: int | None) -> pd.Series:
    """``cell`` as ``f`` reads it: trimmed (column ``column``'s, shared with the other fields
    that read it, when given), and made one line if ``f`` is a one-line field; with ``trim =
    false``, as typed but for the characters nobody can see."""
    if not f.trim:
        return visible(cell)
    text = src.stripped(column) if column is not None else strip(cell)
    return one_line(text) if f.one_line else text


def _as_read(f: Field, out: Values, template: TemplateColumn | None) -> TextColumn | TemplateColumn:
    """How to make ``out.vals`` again: it is the text (of the cell or the template) where any."""
    if template is None:  # a text field is empty exactly where its text is ''
        return TextColumn(out.text)
    return template._replace(trim=f.trim, one_line=f.one_line)


def _broadcast(one: Values, n: int) -> Values:
    """A one-row result (of a constant) repeated for every row."""

    def rep(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else same_everywhere(a[0], n, dtype=a.dtype)

    return Values(rep(one.vals), rep(one.text), rep(one.label), rep(one.number), rep(one.empty))


def _template(f: Field, src: Source) -> TemplateColumn:
    """``"{Fakturanr}-{Kundenr}"`` over the table: its numbered form and the cells it takes."""
    # The same template with numbered fields, so str.format fills a row in one C call.
    numbered = "".join(
        literal.replace("{", "{{").replace("}", "}}")
        + ("" if name is None else f"{{{f.placeholders.index(name)}}}")
        for literal, name, _, _ in string.Formatter().parse(f.template)
    )
    columns = tuple(
        src.stripped(src.positions[(name,)]).to_numpy(dtype=object) for name in f.placeholders
    )
    all_empty = np.ones(src.n, dtype=bool)
    for name in f.placeholders:
        all_empty &= src.blank(src.positions[(name,)])
    return TemplateColumn(numbered, columns, all_empty, trim=False)


def _fill(template: TemplateColumn) -> pd.Series:
    """The template filled in on every row; empty where every column in it is empty."""
    filled = pd.Series(list(template.texts()), dtype=object)
    return filled.where(~template.all_empty, "")


def _typed_constant(f: Field, n: int) -> Values:
    value = f.constant
    number = None
    if f.kind == "amount" and isinstance(value, int | float) and not isinstance(value, bool):
        number = same_everywhere(float(value), n, dtype=float)
    elif f.kind == "date" and isinstance(value, dt.date):
        day = value.date() if isinstance(value, dt.datetime) else value
        number = same_everywhere(np.datetime64(day, "D"), n, dtype="datetime64[D]")
        value = api_timestamps(number[:1])[0]
    elif isinstance(value, dt.date | dt.time):
        value = value.isoformat()
    elif isinstance(value, tuple):
        value = list(value)
    return Values(
        vals=same_everywhere(value, n),
        text=same_everywhere(str(f.constant), n),
        label=same_everywhere(f"the mapping's {f.key}", n),
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
        why = f"{out.label[i]} {quoted(value)} is not one of {shown} (the values the mapping knows)"
        issues.append(Issue(int(i), "value_map", out.label[i], value, why))
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
        _convert_list(f, text, todo, out, src=src, issues=issues)
        return
    if kind == "amount":
        _convert_amounts(
            text,
            excel=excel,
            todo=todo,
            out=out,
            src=src,
            issues=issues,
            shown=src.decimals_shown.get(f.columns) if f.source == "column" else None,
        )
        return
    if kind == "date":
        _convert_dates(text, excel, todo, out, src=src, issues=issues)
        return
    if kind == "text" and not f.pad:
        out.vals[todo] = text.to_numpy(dtype=object)[todo]
        return
    if kind in ("kid", "id") or (kind == "text" and f.pad):
        todo = todo & ~_written_with_decimals(f, text, todo, out, issues)
    codes, uniques = pd.factorize(text[todo])  # ids, zip codes and currencies repeat
    value = pd.Series(uniques, dtype=object)
    if kind in ("id", "kid"):
        value = compact_id(value)
        if kind == "id":
            value = without_vat_marks(value)
    elif kind == "currency":
        value = value.str.upper()
    if f.pad:
        value = _pad(value, f)
    converted = value.to_numpy(dtype=object)
    out.vals[todo] = converted[codes]
    if kind == "currency":
        bad = todo.copy()
        bad[todo] = ~value.isin(CURRENCIES).to_numpy(dtype=bool)[codes]
        _fail(bad, "currency", out, issues, "is not an ISO 4217 currency code (such as NOK or EUR)")
    elif kind == "kid":
        _check_kids(f, converted, codes, todo=todo, excel=excel, src=src, out=out, issues=issues)


def _check_kids(
    f: Field,
    converted: np.ndarray,
    codes: np.ndarray,
    *,
    todo: np.ndarray,
    excel: pd.Series | None,
    src: Source,
    out: Values,
    issues: list[Issue],
) -> None:
    """Rule ``kid`` on the KIDs as converted (``converted``, one per distinct cell; ``codes``:
    each row to do's)."""
    # Zeros alone pass both check digits, but no bank gives such a KID: it is an export's
    # way of writing "none" (00.00.0000), and a payment would never match it.
    zeros = np.array([not v.strip("0-") and "0" in v for v in converted], dtype=bool)[codes]
    ok = np.array([kid_ok(v) for v in converted], dtype=bool)[codes]
    bad, nothing = todo.copy(), todo.copy()
    bad[todo], nothing[todo] = ~ok & ~zeros, zeros
    _fail(
        bad, "kid", out, issues,
        "is not a valid KID (expected 2 to 25 digits ending in a mod 10 or mod 11 check digit)",
    )  # fmt: skip
    _fail(nothing, "kid", out, issues, "is only zeros, which is no KID; leave it empty if none")
    if excel is not None:
        valid = np.zeros(src.n, dtype=bool)
        valid[todo] = ok & ~zeros
        lengths = np.zeros(src.n, dtype=np.int64)
        lengths[todo] = np.fromiter(map(len, converted), np.int64, len(converted))[codes]
        numbers = excel_numbers(excel) & valid
        _dropped_zeros(
            f,
            numbers=numbers,
            valid=valid,
            lengths=lengths,
            longest=src.kid_longest.get(f.columns, (0, 0)),
            src=src,
            out=out,
            issues=issues,
        )


def _convert_amounts(
    text: pd.Series,
    *,
    excel: pd.Series | None,
    todo: np.ndarray,
    out: Values,
    src: Source,
    issues: list[Issue],
    shown: MarksShown | None = None,
) -> None:
    """Amounts: Excel's own numbers as they are, text parsed in the mapping's notation.

    Text like "12,500" under a decimal comma is refused unless some amount of the column shows
    the comma to be one (``shown``: over the whole table, for a part of one; else found in
    ``text``): an export of whole kroner with commas between thousands reads so too, and was
    sent a thousand times too small. And "1.250" read with a point between thousands is refused
    where another amount shows the point to be a decimal one ("99.50"): written so, it is 1,25
    kroner, and went out as 1250."""
    out.number = np.full(src.n, np.nan)
    typed = np.zeros(src.n, bool)
    if excel is not None:
        floats, typed = numbers_from_excel(excel)
        typed &= todo
        out.number[typed] = floats[typed]
        # A workbook's number is a binary fraction: =1.1*3 holds 3.3000000000000003, shown as
        # 3,30, and went out so. One within that noise of an øre is sent as the øre shown; a
        # real fraction of an øre stays as it is, for its rule to refuse.
        # (Only amounts that can be sent: rounding 1e308 overflows, and it is refused anyway.)
        with np.errstate(invalid="ignore"):
            sendable = np.abs(out.number) < MAX_AMOUNT_EXCLUSIVE
            to_ore = typed & sendable & ~has_more_than_two_decimals(out.number)
        out.number[to_ore] = np.round(out.number[to_ore], 2)
    rest = todo & ~typed
    out.number[rest] = parse_amounts(text[rest], decimal=src.decimal, thousands=src.thousands)
    notation = {"decimal": src.decimal, "thousands": src.thousands}
    if shown is None:
        shown = marks_shown(text[rest], np.flatnonzero(rest), src)
    unclear = np.zeros(src.n, dtype=bool)
    if not shown.decimal:
        unclear[rest] = thousands_like(text[rest], **notation)
    # An amount of 14 whole digits or more no longer fits a JSON number exactly to the øre (15
    # significant digits): it would be sent rounded, so it is never sent. Hundreds of digits
    # read as infinity.
    with np.errstate(invalid="ignore"):
        huge = todo & (np.abs(out.number) >= MAX_AMOUNT_EXCLUSIVE)
    read = todo & np.isfinite(out.number) & ~huge & ~unclear
    other_way = np.zeros(src.n, dtype=bool)
    if shown.grouping is not None:
        # Read, an amount holding the separator holds it between thousands; only one holding
        # it once and no decimal mark could be a decimal amount (1.250,00 and 1.250.000 not).
        separator, held = shown.grouping[0], text[rest]
        once = (held.str.count(re.escape(separator)) == 1) & ~held.str.contains(
            src.decimal, regex=False
        )
        other_way[rest] = once.to_numpy(bool)
        other_way &= read
    ok = read & ~other_way
    out.vals[ok] = out.number[ok]
    example = amount_example(decimal=src.decimal, thousands=src.thousands.strip(SPACES) or " ")
    not_read = todo & ~read & ~huge & ~unclear
    _fail(not_read, "amount", out, issues, f"is not an amount (expected e.g. {example})")
    _fail(huge, "amount", out, issues, "is too large to be an amount (at most 13 whole digits)")
    mark = {",": "comma", ".": "point"}.get(src.decimal, quoted(src.decimal))
    _fail(
        unclear,
        "amount",
        out,
        issues,
        f"has three digits after the decimal {mark}, as a whole amount has after a separator "
        f"between thousands, and no other amount in the column shows the {mark} to be a "
        f"decimal one: filedrop does not guess; have the export write two decimals ({example})",
    )
    if shown.grouping is not None:
        separator, row, evidence = shown.grouping
        name = {",": "comma", ".": "point"}[separator]
        _fail(
            other_way,
            "amount",
            out,
            issues,
            f"reads with a {name} between thousands, as [read] thousands says, but row {row} "
            f"({quoted(evidence)}) shows the {name} to be a decimal one, and then this amount "
            f"is another: filedrop does not guess; have the export write every amount one way "
            f"({example})",
        )


#: The least amount too large to send: every amount below it, to the øre, is one JSON number
#: exactly (15 significant digits).
MAX_AMOUNT_EXCLUSIVE = 1e13


#: Digits with a decimal separator and one or two zeros: what a column of numbers gives when a
#: program wrote it as floats (pandas writes 1234567897.0) or a number format showed decimals.
DECIMALS_WRITTEN = re.compile(r"^[0-9]+[.,]0{1,2}$", re.MULTILINE)


def _written_with_decimals(
    f: Field, text: pd.Series, todo: np.ndarray, out: Values, issues: list[Issue]
) -> np.ndarray:
    """Rule ``kid`` for a KID, ``text`` for an identification number and digits the mapping
    pads (a zip code, a customer number): the rows whose value is digits written with decimals,
    each an Issue. The decimal separator was dropped with the dots people type into a KID or a
    national id, so "1234567897.0" went out as the KID 12345678970, which may pass its check
    digit (a payment that never matches), "1010039955.0" as another person's valid fødselsnummer
    10100399550, and a zip code as "5003.0". Refused, not guessed at, as an invoice number so
    written is. One search of the column first: values with a dot or comma are rare there."""
    found = np.zeros(len(todo), dtype=bool)
    values = text[todo]
    if DECIMALS_WRITTEN.search("\n".join(map(str, values.tolist()))) is None:
        return found
    found[todo] = values.str.fullmatch(DECIMALS_WRITTEN.pattern, na=False).to_numpy(dtype=bool)
    what = {"kid": "the KID", "id": "the number"}.get(f.kind, "the value")
    why = (
        "is a number written with decimals (by a program or a number format that took the "
        f"column for numbers), not {what} as it reads; format the column as Text and export it "
        "again"
    )
    rule = "kid" if f.kind == "kid" else "text"
    for i in np.flatnonzero(found).tolist():
        typed, label = out.text[i], out.label[i]
        shown = mask_id(typed) if f.kind == "id" else typed  # a national id is never shown whole
        issues.append(Issue(i, rule, label, shown, f"{label} {quoted(shown)} {why}"))
        out.vals[i] = typed  # sent as typed if the rule lets the row go, as for any failure
    return found


def _pad(value: pd.Series, f: Field) -> pd.Series:
    """Leading zeros back, to ``f.pad`` digits.

    An identification number gets back only the one zero a fødselsnummer can lose (10 digits
    become 11): an organisation number (9 digits) has none to lose, and padding a shorter typo
    would only hide it behind zeros.
    """
    assert f.pad is not None
    padded = zero_pad(value, width=f.pad)
    if f.kind != "id":
        return padded
    return padded.where(value.str.len() == f.pad - 1, value)


#: The errors Excel shows in a cell instead of a value (a workbook's error cells read as these,
#: and a CSV saved from Excel holds them as text).
EXCEL_ERRORS = frozenset(
    {
        *("#N/A", "#REF!", "#DIV/0!", "#VALUE!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!"),
        *("#CALC!", "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"),
        *("#PYTHON!", "#EXTERNAL!"),
    }
)


#: Control characters other than tab, line feed and carriage return (C0, DEL and C1): nobody
#: types them, and a letter would print whatever its printer makes of them. They come from a
#: broken export (binary junk, or Windows-1252 text read as Latin-1).
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _not_data(
    text: pd.Series,
    todo: np.ndarray,
    out: Values,
    issues: list[Issue],
    *,
    errors: bool,
    controls: bool,
) -> np.ndarray:
    """Rule ``text``: one Issue per cell that shows an Excel error rather than a value (with
    ``errors``), or holds a control character, naming the first (with ``controls``). Returns
    the error cells, of which nothing else is said; a value with a control character is still
    converted, and sent as typed if the rule lets its row go.

    The column is joined once and searched: one with neither (nearly all) costs no more."""
    values = text.tolist()
    joined = "".join(values)
    errors = errors and "#" in joined
    controls = controls and CONTROL.search(joined) is not None
    found = np.zeros(len(values), dtype=bool)
    if not (errors or controls):
        return found
    for i in np.flatnonzero(todo).tolist():
        value = values[i]
        if errors and value in EXCEL_ERRORS:
            found[i] = True
            what = _EXCEL_ERROR_WHAT
        elif controls and (char := CONTROL.search(value)) is not None:
            what = (
                f"holds a control character (U+{ord(char[0]):04X}), which no letter can show; "
                "remove it in the export"
            )
        else:
            continue
        shown, label = out.text[i], out.label[i]
        issues.append(Issue(i, "text", label, shown, f"{label} {quoted(shown)} {what}"))
    return found


_EXCEL_ERROR_WHAT = "shows an Excel error, not a value; correct it in Excel and save the file again"


def _template_errors(
    f: Field, src: Source, todo: np.ndarray, out: Values, issues: list[Issue]
) -> np.ndarray:
    """Rule ``text`` for a template: a placeholder's cell showing an Excel error leaves the
    template nothing to fill in (``#N/A-240301`` is no invoice number). One Issue per such
    cell, naming its column, under the field's label (so a required field's "gives no value" for
    the same row is said only when this is not an error); returns the rows, left unconverted."""
    found = np.zeros(src.n, dtype=bool)
    for name in f.placeholders if f.source == "template" else ():
        pos = src.positions[(name,)]
        cells = src.stripped(pos)
        if "#" not in "".join(cells.tolist()):
            continue
        hit = cells.isin(EXCEL_ERRORS).to_numpy(dtype=bool) & todo
        found |= hit
        column = src.headers[pos] or name  # as the file spells it, as a field's message does
        for i in np.flatnonzero(hit).tolist():
            value = cells.iat[i]
            message = f"{column} {quoted(value)} {_EXCEL_ERROR_WHAT}"
            issues.append(Issue(i, "text", out.label[i], value, message))
    return found


#: The kinds of identifier: a KID, a national id or organisation number.
_IDENTIFIERS = ("kid", "id")
#: The invoice number is one too, whatever its kind: a number of 16 digits Excel kept 15 of
#: went out as another invoice's number, and the invoice it then equals was DUPLICATE, unsent.
_INVOICE_NUMBER = "invoice.invoiceNumber"

#: The rule of an identifier that has lost digits: not configurable, as the cell no longer
#: holds the identifier (another debtor's id, a KID no payment matches), whatever its check
#: digits say, and a warning would still send it.
LOST_DIGITS_RULE = "lost_digits"


def _identifiers(
    f: Field, *, excel: pd.Series | None, todo: np.ndarray, out: Values, issues: list[Issue]
) -> np.ndarray:
    """``todo`` for a KID or id without the cells that lost digits (``_lost_digits``); any
    other field's as it is. (The zeros a column's format shows in front of a number are in its
    text from the reader on.)"""
    if f.kind not in _IDENTIFIERS and f.key != _INVOICE_NUMBER:
        return todo
    numbers = excel_numbers(excel) if excel is not None else None
    # An invoice number in scientific notation is the invoice's own rule (checks.py).
    shortened = f.kind in _IDENTIFIERS
    lost = _lost_digits(
        f, excel=excel, numbers=numbers, todo=todo, out=out, issues=issues, shortened=shortened
    )
    return todo & ~lost


def _lost_digits(
    f: Field,
    *,
    excel: pd.Series | None,
    numbers: np.ndarray | None,
    todo: np.ndarray,
    out: Values,
    issues: list[Issue],
    shortened: bool = True,
) -> np.ndarray:
    """Rule ``lost_digits``: an identifier that is a workbook number of more than 15 digits
    (Excel keeps 15: 12345678901234567890 is 12345678901234600000), or (with ``shortened``)
    text Excel shortened to scientific notation (``1,23457E+19``, as a CSV saved from Excel
    holds it). One Issue each,
    naming the value as Excel shows it (a national id masked); returns those cells, which are
    left without a value. Compacted and sent as typed, such a cell went out as the KID or id
    ``123456789012346e+19``."""
    found, long = np.zeros(len(todo), dtype=bool), np.zeros(len(todo), dtype=bool)
    shown = out.text.copy()
    if numbers is not None and (numbers & todo).any():
        assert excel is not None
        at = np.flatnonzero(numbers & todo)
        with np.errstate(invalid="ignore"):
            size = np.abs(excel.to_numpy(dtype=object)[at].astype(float))
        at = at[np.isfinite(size) & (size >= 10.0**EXCEL_DIGITS)]
        if not shortened:  # the cells shown in scientific notation are said so by that rule
            at = at[[SHORTENED.fullmatch(out.text[i]) is None for i in at.tolist()]]
        found[at] = long[at] = True
        shown[at] = [excel_shows(float(excel.iat[i])) for i in at.tolist()]
    texts = out.text.tolist()
    joined = "\n".join(texts)
    # One search for the whole column, and none at all without an E (nearly every column).
    if shortened and ("e" in joined or "E" in joined) and SHORTENED.search(joined) is not None:
        found |= todo & np.fromiter(
            (SHORTENED.fullmatch(t) is not None for t in texts), dtype=bool, count=len(texts)
        )
    cure = "format the column as Text in Excel and type the value again"
    for i in np.flatnonzero(found).tolist():
        value, label = shown[i], out.label[i]
        if long[i]:
            digits = sum(map(str.isdigit, value))
            what = (
                f"is a number of {digits} digits, and Excel keeps only the first "
                f"{EXCEL_DIGITS} digits of a number, so the others are lost"
            )
        else:
            what = (
                "is a number Excel shortened to scientific notation, and its last digits are lost"
            )
        value = mask_id(value) if f.kind == "id" else value
        issues.append(
            Issue(i, LOST_DIGITS_RULE, label, value, f"{label} {quoted(value)} {what}; {cure}")
        )
    return found


def _dropped_zeros(
    f: Field,
    *,
    numbers: np.ndarray,
    valid: np.ndarray,
    lengths: np.ndarray,
    longest: tuple[int, int],
    src: Source,
    out: Values,
    issues: list[Issue],
) -> None:
    """Rule ``kid``: a valid KID typed as a number (``numbers``) with fewer digits than the
    longest valid KID of its column (``valid``, ``lengths``: each row's KID as converted).
    Excel drops a number's leading zeros, and zeros in front change neither check digit, so
    ``0012345674`` read as ``12345674`` passes both; only the column's other KIDs show that it
    is short. A part of a long file gives the ``longest`` of the whole file (``longest_kids``),
    as (digits, row number): the message names that row, as the one KID too long may be the
    mistake."""
    if not numbers.any():
        return
    digits, row = max(longest, _first_longest(np.where(valid, lengths, 0), src), key=lambda k: k[0])
    for i in np.flatnonzero(numbers & (lengths < digits)).tolist():
        value, label = out.text[i], out.label[i]
        why = (
            f"{label} {quoted(value)} is a number of {lengths[i]} digits, where the column's "
            f"longest KID (row {row}) has {digits}, and Excel drops the leading zeros of a "
            "number; format the column as Text in Excel and type the KIDs again, or add "
            f"pad = {digits} to {f.key} in the mapping if every KID has {digits} digits"
        )
        issues.append(Issue(i, "kid", label, value, why))


#: The rule of a value read from a formula whose result was never saved: not configurable, as
#: such a cell has no value to send, and sending the row without it is never right.
UNSAVED_RULE = "unsaved"


def _unsaved(f: Field, src: Source, out: Values, issues: list[Issue]) -> None:
    """One Issue per row whose cell (or a template's cell) holds a formula whose result was
    never saved; its value is taken as empty (it may read as the 0 a writer put there), and the
    row goes nowhere."""
    if f.source == "column":
        places = [(src.positions[f.columns], None)]
    elif f.source == "template":
        places = [(src.positions[(name,)], name) for name in f.placeholders]
    else:
        return
    for pos, placeholder in places:
        found = src.unsaved_in(pos)
        if found is None:
            continue
        rows, formulas = found
        out.empty[rows] = True  # not converted: a 0 put there would be "not a positive amount"
        # Filed under the field's label (a template's, for one), so that the field's "is empty"
        # for the same row is known as this; the message names the column as the file does.
        column = (src.headers[pos] or placeholder) if placeholder else None
        for i, formula in zip(rows.tolist(), formulas, strict=True):
            shown = column or out.label[i]
            issues.append(
                Issue(
                    i,
                    UNSAVED_RULE,
                    out.label[i],
                    formula,
                    f"{shown} holds the formula {quoted(formula)}, {UNSAVED_FORMULA}; "
                    f"{UNSAVED_CURE}",
                )
            )


def _fail(bad: np.ndarray, rule: str, out: Values, issues: list[Issue], what: str) -> None:
    """One Issue per failed row; the value is then sent as typed if the rule lets the row go."""
    for i in np.flatnonzero(bad):
        value = out.text[i]
        issues.append(
            Issue(int(i), rule, out.label[i], value, f"{out.label[i]} {quoted(value)} {what}")
        )
        if out.vals[i] is None:
            out.vals[i] = value


def _convert_dates(
    text: pd.Series,
    excel: pd.Series | None,
    todo: np.ndarray,
    out: Values,
    *,
    src: Source,
    issues: list[Issue],
) -> None:
    """Dates, from typed cells or text in the mapping's formats, and why each other is none.

    "is not a date (expected dd.mm.yyyy)" of a cell that showed 15.03.2124, or of a date cell
    that held 0, left the user looking for what was wrong with its format: each says what it is.
    """
    out.number = np.full(src.n, np.datetime64("NaT"), dtype="datetime64[D]")
    typed = np.zeros(src.n, bool)
    out.number[todo], typed[todo] = read_days(
        text[todo],
        None if excel is None else excel[todo],
        formats=src.strptime_formats,
        date1904=src.date1904,
    )
    unlikely = todo & outside_claim_years(out.number)
    if unlikely.any():
        as_read = np.datetime_as_string(out.number, unit="D")
        plain = unlikely & (text.to_numpy(dtype=object) == as_read)  # a cell showing 1900-01-01
        _fail(plain, "date", out, issues, f"is {OUTSIDE_CLAIM_YEARS}; correct it in the export")
        for day in np.unique(out.number[unlikely & ~plain]):
            said = f"reads as {day}, {OUTSIDE_CLAIM_YEARS}; correct it in the export"
            _fail(unlikely & ~plain & (out.number == day), "date", out, issues, said)
        out.number[unlikely] = np.datetime64("NaT")
    ok = todo & ~np.isnat(out.number)
    out.vals[ok] = api_timestamps(out.number[ok])
    undated = todo & ~ok & ~unlikely
    if excel is not None:
        # calamine gives a date cell holding a number below 1 (0, a negative one, a fraction of
        # a day) as the time of day alone ("00:00:00"); Excel shows it as no date at all.
        timed = undated & time_mask(excel)
        said = (
            # There it may be day 0, 01.01.1904, or a negative number: calamine tells neither.
            "is a date cell holding a number below 1, no day after 01.01.1904, "
            + OUTSIDE_CLAIM_YEARS
            if src.date1904
            else "is a time of day with no date (a date cell holding a number below 1 shows so)"
        )
        _fail(timed, "date", out, issues, f"{said}; correct it in the export")
        # A number outside the days Excel counts (0, -3, 3000000): the expected text formats
        # were no help for a cell that held no text.
        numbered = undated & typed
        said = excel_days_said(date1904=src.date1904)
        _fail(numbered, "date", out, issues, f"{said}; correct it in the export")
        undated &= ~timed & ~numbered
    shown = " or ".join(src.date_formats)
    _fail(undated, "date", out, issues, f"is not a date (expected {shown})")


def _convert_list(
    f: Field, text: pd.Series, todo: np.ndarray, out: Values, *, src: Source, issues: list[Issue]
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
        ok, converted = _check_parts(f, cells, src)
        values[:] = converted
        if f.kind != "region":
            bad = {j: [cells[j]] for j in np.flatnonzero(~ok).tolist()}
    else:
        parts = split_values(pd.Series(cells, dtype=object), separators=f.split)
        if f.kind != "email":
            # A date is one wrong value, not three numbers ("31/02/2024" split on its "/"), and
            # so is a number Excel shortened ("9,12345E+07" split on its comma).
            for j in np.flatnonzero(reads_as_date(cells)).tolist():
                parts[j] = [cells[j]]
            for j, cell in enumerate(cells):
                if SHORTENED.fullmatch(cell):
                    parts[j] = [cell]
        ok, converted = _check_parts(f, [p for cell in parts for p in cell], src)
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


def _check_parts(f: Field, parts: list[str], src: Source) -> tuple[np.ndarray, list[object]]:
    """(ok, value to send) for each email / phone number; a bad one is sent as typed."""
    if f.kind == "email":
        return is_email(pd.Series(parts, dtype=object)), list(parts)
    results = src.phones_e164(parts, f.country)
    ok = np.array([r is not None for r in results], dtype=bool)
    if f.kind == "phone":
        return ok, [r[0] if r else p for r, p in zip(results, parts, strict=True)]
    return np.ones(len(parts), bool), [r[1] if r else None for r in results]


def _bad_part(f: Field, i: int, part: str, out: Values, issues: list[Issue]) -> None:
    issues.append(Issue(i, f.kind, out.label[i], part, _list_message(f, out.label[i], part)))


def _list_message(f: Field, label: str, part: str) -> str:
    if f.kind == "email":
        return f"{label} {quoted(part)} is not an email address"
    if reads_as_date([part])[0]:
        return f"{label} {quoted(part)} is not a phone number (it reads as a date)"
    if SHORTENED.fullmatch(part):
        return (
            f"{label} {quoted(part)} is not a phone number (Excel shortened it to scientific "
            "notation, and its last digits are lost; format the column as Text in Excel and type "
            "the numbers again)"
        )
    if f.country:
        why = f"numbers without a + country code are read as {f.country}"
    else:
        why = "write it with + and the country code, or set country in the mapping"
    return f"{label} {quoted(part)} is not a phone number ({why})"


def _fill_default(default: Field, out: Values, src: Source, issues: list[Issue]) -> None:
    """Empty cells take the default: a fixed value, or another column's value."""
    own: list[Issue] = []
    alt = evaluate(default, src, own)
    wanted = out.empty.copy()
    take = out.empty & ~alt.empty
    out.vals[take] = alt.vals[take]
    out.text = np.where(take, alt.text, out.text)  # new arrays: the old ones may be shared
    out.label = np.where(take, alt.label, out.label)
    if alt.number is not None:
        if out.number is None:
            out.number = (
                np.full(src.n, np.nan)
                if alt.number.dtype.kind == "f"
                else np.full(src.n, np.datetime64("NaT"), dtype=alt.number.dtype)
            )
        out.number[take] = alt.number[take]
    out.empty &= ~take
    # A default that is a formula with no saved result was wanted, and is not there to take.
    issues += [
        issue
        for issue in own
        if take[issue.position] or (issue.rule == UNSAVED_RULE and wanted[issue.position])
    ]
