"""Rows that are not invoices: a totals row, a credit note, a subtotal between groups, the header
repeated.

The mapping's ``[skip]`` rules and the built-in ``skip.totals`` say which rows to leave out; such a
row is SKIPPED with the rule that matched, is never sent and never counts as a problem.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NoReturn

import numpy as np

from filedrop.mapping.convert import matching_lines, quoted, strip
from filedrop.mapping.fields import UNSAVED_RULE, Issue, Source, Values, evaluate
from filedrop.mapping.loader import TOTALS_WORDS, Mapping, SkipRule
from filedrop.read import header_key

__all__ = ["MovedHeaderError", "skipped_rows"]

_TOTALS = frozenset(TOTALS_WORDS)
#: What begins a count line of an export ("Antall fakturaer: 3"), beside the totals words.
_COUNT_WORDS = ("antall", "count", "number of")
#: An invoice number that is a totals word, or begins with one or a count word ("rest": what
#: follows it), as a line of its own in the joined numbers (case does not matter).
#: A dot or dash, a space, then a word: "Sum. kunde 10001" (but not "TOTAL-F240301").
_DOTTED_WORD = re.compile(r"[.\-][^\S\n]+[^\W\d_]")
_TOTALS_LINE = re.compile(
    r"(?im)^[ \t]*(?:"
    + "|".join(re.escape(w) for w in sorted((*TOTALS_WORDS, *_COUNT_WORDS), key=len, reverse=True))
    + r")\b(?P<rest>[^\n]*)$"
)


class MovedHeaderError(Exception):
    """A row of the file's header names, in other columns than the header's: the sentence for
    the file's ERROR, less the file's name (``prepare`` adds it)."""


def skipped_rows(
    mapping: Mapping,
    src: Source,
    number: Values | None,
    unknown: list[Issue] | None = None,
    credits: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, why it is not an invoice (the sentence for its outcome), or None.

    ``number`` is each row's invoice number; the built-in rule needs it: a totals row has none
    (or the totals word in its place), so a real invoice is never taken for one. A rule cannot
    tell from a formula whose result was never saved: such a row is not skipped by it, and, if
    no other rule skips it, the Issue saying so goes to ``unknown`` (it is not sent: "Betalt"
    made by a formula was sent as unpaid). ``credits``, when given, is set True on each row an
    amount rule left out for an amount below zero: a credit note, which may be on an invoice
    the file sends (``prepare`` looks).
    """
    why = np.full(src.n, None, dtype=object)
    unsure: list[Issue] = []
    for rule in mapping.skip:
        own: list[Issue] = []
        v = evaluate(rule.field, src, own)  # a cell that is no amount is reported by the checks
        doubt = np.zeros(src.n, dtype=bool)
        for issue in own:
            if issue.rule == UNSAVED_RULE:
                doubt[issue.position] = True
                unsure.append(issue)
        taken = _matches(rule, v) & ~doubt & np.equal(why, None)
        if credits is not None and rule.at_most is not None:
            with np.errstate(invalid="ignore"):
                credits |= taken & (v.number < 0)
        for i in np.flatnonzero(taken).tolist():
            if rule.at_most is not None:
                what = f"{quoted(v.text[i])} is {rule.at_most:g} or less"
            else:
                what = f"is {quoted(v.text[i])}" if v.text[i] else "is empty"
            why[i] = f"rule {rule.name}: {v.label[i]} {what}"
    _notes(src, why)
    if number is not None:
        _repeated_header(src, number, why)
    if mapping.skip_totals and number is not None:
        _totals(src, number, why)
    if unknown is not None:
        unknown += [issue for issue in unsure if why[issue.position] is None]
    return why


def _matches(rule: SkipRule, v: Values) -> np.ndarray:
    """The rows whose cell the rule matches: an amount no larger than ``at_most``, or one of
    its texts (case ignored; "" an empty cell)."""
    if rule.at_most is not None:
        assert v.number is not None
        with np.errstate(invalid="ignore"):
            return ~v.empty & (v.number <= rule.at_most)
    folded = np.array([str(t).casefold() for t in v.text], dtype=object)
    hit = np.isin(folded, list(rule.equals)) & ~v.empty
    if "" in rule.equals:
        hit |= v.empty
    return hit


def _notes(src: Source, why: np.ndarray) -> None:
    """A row that is one merged range across the sheet, a heading between groups: a note, no
    invoice (``Table.notes``)."""
    if not src.notes or src.row_numbers is None:
        return
    at = np.flatnonzero(np.isin(src.row_numbers, list(src.notes)) & np.equal(why, None))
    for i in at.tolist():
        why[i] = f"a note across the row (merged cells {src.notes[int(src.row_numbers[i])]})"


def _repeated_header(src: Source, number: Values, why: np.ndarray) -> None:
    """A row that repeats the header, as exports do at the top of every printed page: its
    invoice number reads the column's own name, and each of its other cells its column's (or
    nothing). No invoice, and no problem either.

    A row of header names (at least half of its cells) in other places (two exports pasted
    into one file, the second with other columns or in another order) refuses the file: the
    rows below it would be read under the first header's columns, and each sent with one
    column's amount as another's.
    """
    # Compared as headers are (``header_key``): "FAKTURANR" or "Faktura nr" repeats a header
    # found as "Fakturanr".
    keys = {
        form
        for label in src.headers
        for form in (header_key(str(label)), unicodedata.normalize("NFD", header_key(str(label))))
        if form
    }
    named = _header_like(src, number, keys)
    named &= np.equal(why, None)
    for i in np.flatnonzero(named).tolist():
        cells = [str(src.cells[pos].iat[i]).strip() for pos in range(len(src.headers))]
        filled = [(cell, header) for cell, header in zip(cells, src.headers, strict=True) if cell]
        if all(header_key(cell) == header_key(header) for cell, header in filled):
            why[i] = "the row repeats the header"
            continue
        names = [(c, h) for c, h in filled if header_key(c) in keys]
        moved = [(c, h) for c, h in names if header_key(c) != header_key(h)]
        if moved and 2 * len(names) >= len(filled) >= 2:
            _refuse_moved_header(src, i, moved)


def _header_like(src: Source, number: Values, keys: set[str]) -> np.ndarray:
    """The rows that may be the header again, each to be compared in full: those whose
    invoice number names a header (as headers are compared, ``keys``), and those with two cells
    or more that read a header's name as the file spells it (or in capitals, or small)."""
    # The invoice number's cell of such a row holds a header's name, its own or, when the
    # columns moved, another's. First the whole column at once, whitespace out and case folded:
    # most files hold no header twice, and then no cell is looked at one by one.
    texts = number.text.tolist()
    try:
        joined = "\0".join(texts)
    except TypeError:  # a value that is no text, which no reader makes: taken as its text
        texts = list(map(str, texts))
        joined = "\0".join(texts)
    column = "".join(joined.split()).casefold()
    if any(key in column for key in keys):
        # Each cell alike, still without bytecode per cell.
        folded = map(str.casefold, map("".join, map(str.split, texts)))
        named = np.fromiter(map(keys.__contains__, folded), dtype=bool, count=len(texts))
    else:
        named = np.zeros(src.n, dtype=bool)
    # And a row of two cells or more that read a header's name as the file spells it (or in
    # capitals, or small): a second export whose invoice number's column is spelt otherwise
    # ("Fakturanummer") named no header there, and its rows went under the first's columns
    # (found by a review). A column at a time, by hash: 70 ms for 200,000 rows of 17.
    spelt = {
        form
        for label in src.headers
        if (header := str(label).strip())
        for form in (header, header.upper(), header.lower())
    }
    named_cells = np.zeros(src.n, dtype=np.int32)
    for pos in range(len(src.headers)):
        named_cells += src.cells[pos].isin(spelt).to_numpy(dtype=bool)
    return named | (named_cells >= 2)


def _refuse_moved_header(src: Source, i: int, moved: list[tuple[str, str]]) -> NoReturn:
    """Refuse the file at row ``i``, a header again whose ``moved`` names (cell, the header
    above it) stand in other columns."""
    row = f"row {src.row_numbers[i]}" if src.row_numbers is not None else f"row {i + 2}"
    shown = "; ".join(
        f"{quoted(cell)} stands under {quoted(header) if header else 'an unnamed column'}"
        for cell, header in moved[:3]
    ) + ("; …" if len(moved) > 3 else "")
    raise MovedHeaderError(
        f"{row} is a header again, with its columns in other places ({shown}): two exports "
        "were put into one file, and the rows below it would be read under the first "
        "header's columns; send each export as a file of its own"
    )


def _totals(src: Source, number: Values, why: np.ndarray) -> None:
    """The built-in rule: no invoice number (or a totals word as one), and a cell reading Sum,
    Total, Totalt, I alt …; or an invoice number that begins with one, or with a count, as an
    export's own lines do ("Sum kunde 10001", "Totalt for alle kunder", "Antall fakturaer: 3"),
    which no invoice's number does. The numbers are searched in one go: most files have none."""
    totals = np.zeros(len(why), dtype=bool)
    texts = list(map(str, number.text.tolist()))
    for row, m in matching_lines(_TOTALS_LINE, texts).items():
        if why[row] is not None:
            continue
        rest = m["rest"].rstrip(":").strip()
        if not rest:
            totals[row] = True  # the word alone: a totals row if a cell says so (below)
        elif m["rest"][:1].isspace() or m["rest"][:1] == ":" or _DOTTED_WORD.match(m["rest"]):
            # After a space or a colon ("Sum kunde 10001", "Sum 10001", "Antall: 3"), or a
            # dot or dash and a space before a word ("Sum. kunde 10001"): the export's own
            # line, a subtotal that would go as another invoice of the customer's. Joined by a
            # dash or a dot ("SUM-2024-001", "Total-17", "TOTAL-F240301") it is an invoice
            # numbering's, and the row is read as any other.
            why[row] = (
                f"rule skip.totals: {number.label[row]} {quoted(texts[row])} marks a totals row"
            )
    candidates = np.flatnonzero((number.empty | totals) & np.equal(why, None))
    if not len(candidates):
        return
    for pos in range(len(src.headers)):
        cells = strip(src.cells[pos].iloc[candidates]).tolist()
        for i, cell in zip(candidates.tolist(), cells, strict=True):
            if why[i] is None and cell.casefold().rstrip(":").strip() in _TOTALS:
                why[i] = f"rule skip.totals: {src.headers[pos]} {quoted(cell)} marks a totals row"
