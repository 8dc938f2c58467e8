"""Map and validate: a Table and a Mapping -> the invoices to send and every row's fate.

Each step is one job with explicit inputs and outputs, run in the order of ``prepare``: fields.py
converts every Field on every row, groups.py groups rows into invoices and finds repeated invoice
numbers, checks.py applies the rules; here their Issues become Problems and each invoice is sent,
INVALID or DUPLICATE. payload.py builds the JSON of those sent. Every row position ends in exactly
one place: an invoice's rows, or ``rejected``: the "never lose a row" promise.
"""

from __future__ import annotations

import datetime as dt
import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, NoReturn

import numpy as np
import pandas as pd

from filedrop.errors import ReadError
from filedrop.logs import joined
from filedrop.mapping.checks import (
    Payment,
    check_amount_currencies,
    check_claim_sums,
    check_claims,
    check_claims_within_amount,
    check_debtors,
    check_group_agreement,
    check_invoice,
    check_payments_taken_off,
    claim_lines,
)
from filedrop.mapping.convert import quoted, read_days, repeated, shared_conversions, shown
from filedrop.mapping.derive import derive_debtors
from filedrop.mapping.fields import (
    LOST_DIGITS_RULE,
    UNSAVED_RULE,
    Issue,
    MarksShown,
    Source,
    Values,
    decimals_shown,
    evaluate,
    evaluate_fields,
    longest_kids,
)
from filedrop.mapping.groups import (
    Groups,
    Level,
    find_duplicates,
    group_rows,
    levels,
    number_keys,
    repeated_lines,
)
from filedrop.mapping.loader import Mapping, payment_words, payments_unread
from filedrop.mapping.payload import (
    Columns,
    PreparedInvoice,
    claim_totals,
    columns,
    payloads,
)
from filedrop.mapping.skip import MovedHeaderError, skipped_rows
from filedrop.mapping.tree import Field, Node, walk_fields, with_defaults
from filedrop.memory import no_cyclic_gc, release_freed_memory
from filedrop.read import Table
from filedrop.read.table import UNSAVED_CURE, UNSAVED_FORMULA, column_letter
from filedrop.states import NOT_DUE_RULE, RowStatus, not_due_message

__all__ = [
    "DUPLICATE_RULES",
    "REPEAT_OF_INVALID_RULE",
    "Prepared",
    "PreparedInvoice",
    "Problem",
    "Rejection",
    "payloads",
    "prepare",
    "prepare_parts",
]

#: The rule of an invoice number given again after a row that is INVALID: that row was never
#: sent, so the repeat is no DUPLICATE of anything sent; it is INVALID too, until one is fixed.
REPEAT_OF_INVALID_RULE = "duplicate_of_invalid"
#: The rule of a row the same as an earlier one of its invoice where the invoice is not listed
#: whole again (``repeated_lines``): two equal claims or one listed twice cannot be told apart,
#: so the invoice is INVALID.
UNCLEAR_LINE_RULE = "unclear_line"
#: The rule of a row whose amount is one merged cell beside other rows too (``_merged_amounts``).
MERGED_AMOUNT_RULE = "merged_amount"
# Not configurable: sending a repeated invoice number, an empty row, a row without the value
# of a formula it holds, or an identifier whose digits Excel lost, is never right, and an
# invoice whose claims add up past any float cannot be sent at all.
_FIXED_RULES = (
    "duplicate",
    REPEAT_OF_INVALID_RULE,
    "empty_row",
    "amount_sum",
    UNSAVED_RULE,
    LOST_DIGITS_RULE,
    UNCLEAR_LINE_RULE,
    MERGED_AMOUNT_RULE,
)
#: The rule of a row that repeats an earlier one of its invoice exactly (``repeated_lines``):
#: left out of the invoice, DUPLICATE.
REPEATED_RULE = "repeated_line"
#: The rule of such a row when its invoice is INVALID: nothing of it was sent, so the copy is
#: INVALID with it, and said so wherever its row's problems are shown.
REPEATED_LINE_OF_INVALID_RULE = "repeated_line_of_invalid"
#: The rules that make their row DUPLICATE: an invoice number given again, a line given again.
DUPLICATE_RULES = ("duplicate", REPEATED_RULE)
#: The rule of what a CSV line with fewer fields than its header says beside its problems.
SHORT_LINE_RULE = "short_line"
#: The rules of a row that repeats another's invoice (DUPLICATE, or INVALID with it).
_REPEATS = (*DUPLICATE_RULES, REPEAT_OF_INVALID_RULE, REPEATED_LINE_OF_INVALID_RULE)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one value of one row, as the user will read it."""

    row: int  # the row number the user sees
    column: str | None
    value: str | None  # as typed; national ids masked
    message: str
    severity: Literal["error", "warning", "skipped"]
    rule: str
    position: int  # the row's 0-based position in the table

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


class Rejection(NamedTuple):
    """Why a row is not sent: INVALID, DUPLICATE or SKIPPED, and the sentence for its outcome."""

    status: RowStatus
    text: str


@dataclass
class Prepared:
    """What ``prepare`` decided for every row of one table."""

    table: Table
    mapping: Mapping
    invoices: list[PreparedInvoice]
    rejected: dict[int, Rejection]  # row position -> why it is not sent
    notes: dict[int, str]  # row position -> its warnings, for a row that is sent
    problems: list[Problem] = field(default_factory=list)
    # Invoice number -> its rows SKIPPED as not due yet (``skip.not_due``): one another file
    # already sent is said DUPLICATE of it instead, once the journal is asked.
    held: dict[str, list[int]] = field(default_factory=dict)

    def merge(self, part: Prepared) -> None:
        """Take in a later part of the same table (``prepare_parts``)."""
        self.invoices.extend(part.invoices)
        self.rejected.update(part.rejected)
        self.notes.update(part.notes)
        self.problems.extend(part.problems)
        for number, rows in part.held.items():
            self.held.setdefault(number, []).extend(rows)


#: Rows prepared at a time when the mapping groups none. Every field's converted values are
#: held only for the part being checked (some 12 MB for 20,000 rows), not for the whole file
#: at once: that was the peak of a long file's memory. Parts of 20,000 rows cost 4 % more CPU
#: than parts of 50,000, and each is prepared while the batches of the one before go out.
PART_ROWS = 20_000
#: The first part is smaller: the first batch leaves once it is checked (``prepare_parts``).
#: Its 20 batches of 100 take half a second to send, time enough for the next part; 10,000 rows
#: held a 50,000-row workbook's first POST back by a tenth of a second more.
FIRST_PART_ROWS = 2_000


def prepare(table: Table, mapping: Mapping, *, today: dt.date | None = None) -> Prepared:
    """Map every row, check every rule, group rows into invoices, and decide which are sent:
    ``prepare_parts``' parts, merged."""
    whole, later = prepare_parts(table, mapping, today=today)
    for part in later or ():
        whole.merge(part)
    return whole


def prepare_parts(
    table: Table, mapping: Mapping, *, today: dt.date | None = None
) -> tuple[Prepared, Iterator[Prepared] | None]:
    """``prepare``'s result a part at a time: the first part, which raises what stops the file
    (a mapping that does not fit, a formula without its result), and the later ones as they are
    asked for (None when there are none), each naming its rows by their position in the table.

    A file longer than ``FIRST_PART_ROWS`` whose mapping groups no rows is done in parts: the
    first of ``FIRST_PART_ROWS`` rows, the rest of ``PART_ROWS``, each with Columns of its own.
    Which rows are left out and which repeat an invoice number is decided over the whole file
    first, and so is each KID column's longest KID, so the parts together are what one go
    would give: the same invoices, rejections, notes and problems. The later parts may be
    asked for on another thread than the first, one thread at a time.

    ``today`` is the day an invoice must be overdue on to be sent (``skip.not_due``): the
    computer's date when None, taken once for the whole file.
    """
    today = today or dt.date.today()
    if table.unsaved:
        _refuse_unsaved_rows(table, mapping)
    if mapping.group_by or len(table) <= FIRST_PART_ROWS:
        return _prepare(table, mapping, invalid=set(), today=today), None
    conversions: dict[Hashable, dict[object, object]] = {}
    with shared_conversions(conversions):
        src = _source(table, mapping)
        number = mapping.invoice.get_field("invoiceNumber")
        numbers = evaluate_fields([number], src)[0][id(number)] if number is not None else None
        fates, _ = _row_fates(table, mapping, src, numbers)
        read = _fields(mapping.invoice, mapping.debtors, mapping.claims)
        kids, decimals = longest_kids(read, src), decimals_shown(read, src)
        del src, numbers
    starts = [0, *range(FIRST_PART_ROWS, len(table), PART_ROWS)]
    invalid: set[int] = set()  # the rows found INVALID so far: parts are prepared in order
    repeats_in: dict[int, list[Issue]] = defaultdict(list)
    for issue in fates.repeats:
        repeats_in[bisect_right(starts, issue.position) - 1].append(issue)

    def part(k: int) -> Prepared:
        start, stop = starts[k], starts[k + 1] if k + 1 < len(starts) else len(table)
        own = _RowFates(
            fates.blank[start:stop],
            fates.skip_why[start:stop],
            fates.duplicate_of[start:stop],
            [issue._replace(position=issue.position - start) for issue in repeats_in.pop(k, [])],
            fates.repeat_of[start:stop],
            {row - start: names for row, names in fates.differs.items() if start <= row < stop},
            {row - start: paid for row, paid in fates.paid.items() if start <= row < stop},
        )
        # Each part inside a with of its own: a with spanning a yield would be left on
        # whichever thread asks for the next part.
        with shared_conversions(conversions):
            done = _prepare(
                table.part(start, stop),
                mapping,
                offset=start,
                fates=own,
                kids=kids,
                decimals=decimals,
                invalid=invalid,
                today=today,
            )
        return Prepared(
            table,
            mapping,
            invoices=done.invoices,
            rejected={start + row: why for row, why in done.rejected.items()},
            notes={start + row: note for row, note in done.notes.items()},
            problems=[replace(p, position=start + p.position) for p in done.problems],
            held={number: [start + r for r in rows] for number, rows in done.held.items()},
        )

    return part(0), (part(k) for k in range(1, len(starts)))


def _refuse_unsaved_rows(table: Table, mapping: Mapping) -> None:
    """Refuse a workbook where rows of nothing but formulas whose results were never saved lie
    in the columns the mapping reads: they read as empty rows, and would be left out without a
    word. Elsewhere each such cell makes its row INVALID (`fields.evaluate`), or, in the
    ``group.by`` column, the file an ERROR (`_refuse_unsaved_keys`)."""
    read = set(mapping.resolve_columns(table.headers, file_name=table.path.name).values())
    lost: list[tuple[int, int]] = []  # (row, column): the first such cell of each column
    for column in read & set(table.unsaved):
        rows = table.unsaved[column]
        outside = rows[~np.isin(rows, table.row_numbers)]
        if len(outside):
            lost.append((int(outside[0]), column))
    if lost:
        row, column = min(lost)
        _refuse_unsaved(table, row, column, "the row reads as empty and would be left out")


def _refuse_unsaved_keys(table: Table, mapping: Mapping, src: Source, left_out: np.ndarray) -> None:
    """Refuse a workbook whose ``group.by`` cell, on a row that is not skipped, is a formula
    whose result was never saved: the line would make an invoice of its own, and its invoice
    would go for less."""
    found = src.unsaved_in(src.positions[mapping.group_by]) if mapping.group_by else None
    if found is None:
        return
    rows = found[0][~left_out[found[0]]]
    if len(rows):
        column = src.positions[mapping.group_by]
        why = "which invoice the line belongs to cannot be told"
        _refuse_unsaved(table, int(table.row_numbers[rows[0]]), column, why)


def _refuse_unsaved(table: Table, row: int, column: int, why: str) -> NoReturn:
    formula = table.formulas.get((row, column), "=…")
    raise ReadError(
        str(table.path),
        f"row {row}: {table.headers[column] or column_letter(column)} holds the formula "
        f"{quoted(formula)}, {UNSAVED_FORMULA}: {why}; {UNSAVED_CURE}",
    )


class _RowFates(NamedTuple):
    """What is decided about rows over the whole table: the blank rows, why each row is skipped
    (or None), each invoice's earlier one with the same number (-1: none) and the Issues that
    say so, with those of rows no skip rule could tell (a formula with no saved result). Without
    grouping, an invoice is a row, so a part of the table takes a slice."""

    blank: np.ndarray
    skip_why: np.ndarray  # also the sentence of a row that repeats another exactly (``repeated``)
    duplicate_of: np.ndarray
    repeats: list[Issue]
    repeat_of: np.ndarray  # the earlier row of its invoice a row repeats whole (-1: none)
    # A repeated number's first row -> the columns it differs in (``_differing_repeats``).
    differs: dict[int, list[str]]
    # The row an invoice is sent from -> a payment one of its rows shows (``_payments_shown``).
    paid: dict[int, Payment]


def _prepare(
    table: Table,
    mapping: Mapping,
    *,
    offset: int = 0,
    fates: _RowFates | None = None,
    kids: dict[tuple[str, ...], tuple[int, int]] | None = None,
    decimals: dict[tuple[str, ...], MarksShown] | None = None,
    invalid: set[int],
    today: dt.date,
) -> Prepared:
    """``prepare`` in one go; a part of a table gives its ``offset`` in it, and its rows' fates,
    longest KIDs (``longest_kids``) and amount columns' decimal marks (``decimals_shown``) as
    found over the whole table. ``invalid`` holds the invoices found INVALID in earlier parts
    (by their first row's position in the table), and takes in this part's."""
    src = _source(table, mapping, kids, decimals)
    rows, issues = evaluate_fields(_fields(mapping.invoice, mapping.debtors, mapping.claims), src)
    derive_debtors(mapping, rows, src, issues)
    number = mapping.invoice.get_field("invoiceNumber")
    if fates is None:
        numbers = rows[id(number)] if number is not None else None
        fates, groups = _row_fates(table, mapping, src, numbers)
    else:
        groups = group_rows(table, mapping, src.positions, _left_out(fates.blank, fates.skip_why))
    level = levels(rows, groups, _fields(mapping.invoice, mapping.debtors))
    lines = claim_lines(mapping, rows, groups)
    issues += check_invoice(mapping, level, groups.count, from_csv=table.info.kind == "csv")
    issues += check_debtors(mapping, level, groups)
    issues += check_group_agreement(mapping, rows, groups, table.row_numbers)
    issues += check_claims(mapping, rows, lines)
    issues += check_amount_currencies(mapping, level, rows, groups, lines)
    issues += check_claims_within_amount(mapping, level, rows, groups, lines)
    issues += check_payments_taken_off(mapping, level, rows, groups, lines, payments=fates.paid)
    sums = claim_totals(mapping, rows, lines, groups.gid, groups.count)
    issues += check_claim_sums(mapping, sums, rows, groups)
    issues += fates.repeats
    if number is not None:
        dates = [mapping.invoice.get_field(k) for k in ("invoiceDate", "dueDate")]
        dated = [rows[id(f)] for f in dates if f is not None and id(f) in rows]
        issues = _said_once_without_number(issues, rows[id(number)], dated, fates)
    built = columns(
        mapping,
        group_values={key: lv.values for key, lv in level.items()},
        row_values=rows,
        claim_rows=lines,
        gid=groups.gid,
        members=groups.members,
        first=groups.first,
        claim_sums=sums,
        offset=offset,
    )
    problems = _problems(issues, fates, table, mapping)
    number_level = level[id(number)] if number is not None else None
    not_due = _not_due_yet(mapping, level, today)
    # Every field's values on every row, and the trimmed texts, are in ``built`` as far as
    # building needs them: let them go before the invoices are made, not after.
    del rows, level, lines, src, issues
    release_freed_memory()
    return _decide(
        table,
        mapping,
        problems=problems,
        groups=groups,
        number=number_level,
        duplicate_of=fates.duplicate_of,
        repeat_of=fates.repeat_of,
        differs=fates.differs,
        columns=built,
        offset=offset,
        invalid=invalid,
        not_due=not_due,
        today=today,
    )


def _source(
    table: Table,
    mapping: Mapping,
    kids: dict[tuple[str, ...], tuple[int, int]] | None = None,
    decimals: dict[tuple[str, ...], MarksShown] | None = None,
) -> Source:
    return Source(
        cells=table.cells,
        values=table.values if table.info.kind == "excel" else None,
        headers=table.headers,
        positions=mapping.resolve_columns(table.headers, file_name=table.path.name),
        decimal=mapping.decimal,
        thousands=mapping.thousands,
        strptime_formats=mapping.strptime_formats,
        date_formats=mapping.date_formats,
        unsaved=table.unsaved,
        formulas=table.formulas,
        notes=table.notes,
        row_numbers=table.row_numbers,
        kid_longest=kids or {},
        decimals_shown=decimals or {},
        date1904=table.info.date1904,
    )


def _row_fates(
    table: Table, mapping: Mapping, src: Source, numbers: Values | None
) -> tuple[_RowFates, Groups]:
    """The rows left out (blank, or skipped by a rule), the groups of the others, and which of
    those repeat an invoice number: all that depends on the invoice numbers (``numbers``, each
    row's) and the skip rules alone."""
    blank = _blank_rows(table)
    unknown: list[Issue] = []  # a skip rule's cell that is a formula with no saved result
    credits = np.zeros(len(table), dtype=bool)
    try:
        skip_why = skipped_rows(mapping, src, numbers, unknown, credits)
    except MovedHeaderError as exc:
        raise ReadError(str(table.path), str(exc)) from None
    skip_why[blank] = None  # an empty row is reported as such
    credits &= ~np.equal(skip_why, None)
    repeat_of = np.full(len(table), -1)
    lines = repeated_lines(table, mapping, src.positions, _left_out(blank, skip_why))
    for row, earlier in lines.repeats.items():
        repeat_of[row] = earlier
        skip_why[row] = (
            f"the row repeats row {table.row_numbers[earlier]} exactly, every cell the same: "
            "a line of the invoice listed twice, sent once"
        )
    unknown += [
        Issue(
            row,
            UNCLEAR_LINE_RULE,
            None,
            None,
            f"the row is the same as row {table.row_numbers[earlier]} in every cell, while "
            "other lines of the invoice are not given twice: two equal claims (two fees of "
            "70) cannot be told from a line listed twice, and filedrop does not guess: make "
            "them one line (one fee of 140), or delete the repeat",
        )
        for row, earlier in lines.unclear.items()
    ]
    left_out = _left_out(blank, skip_why)
    if table.unsaved:
        _refuse_unsaved_keys(table, mapping, src, left_out)
    groups = group_rows(table, mapping, src.positions, left_out)
    if table.merged_down:
        unknown += _merged_amounts(table, mapping, src, groups, left_out)
    number_level = groups.level(numbers) if numbers is not None else None
    duplicate_of, repeats = find_duplicates(table, number_level, groups, left_out)
    # Each row's invoice number as repeats are compared (zeros in front aside), for the rows
    # left out that carry an invoice's number: a credit note's, a payment's.
    keys = (
        number_keys(pd.Series(numbers.vals, dtype=object).where(~numbers.empty, None)).tolist()
        if numbers is not None
        else None
    )
    paid = _payments_shown(
        table,
        mapping,
        src,
        groups=groups,
        duplicate_of=duplicate_of,
        blank=blank,
        skip_why=skip_why,
        keys=keys,
        number_level=number_level,
        credits=credits,
    )
    differs = _differing_repeats(table, mapping, src, groups, duplicate_of)
    if numbers is not None and keys is not None and number_level is not None and credits.any():
        unknown += _credited_invoices(table, numbers, number_level, skip_why, credits, keys=keys)
    fates = _RowFates(blank, skip_why, duplicate_of, repeats + unknown, repeat_of, differs, paid)
    return fates, groups


def _not_due_yet(
    mapping: Mapping, level: dict[int, Level], today: dt.date
) -> dict[int, tuple[int, str]]:
    """The invoices whose due date is ``today`` or later (the built-in ``skip.not_due``): each
    with the row its due date is on, and that due date's column and cell as a message shows
    it. Until the due date has passed, an invoice is not owed, and a debtor who still has days
    to pay would get a collection letter. Judged on the invoice's own due date, as it would be
    sent, once nothing else stops it (``_decide``)."""
    due = mapping.invoice.get_field("dueDate")
    if not mapping.skip_not_due or due is None:
        return {}
    values, at = level[id(due)].values, level[id(due)].at  # values: one per invoice
    if values.number is None:
        return {}
    held = np.flatnonzero(values.number >= np.datetime64(today, "D"))  # never NaT: no date
    out: dict[int, tuple[int, str]] = {}
    for g in held.tolist():
        day, text = f"{values.number[g].astype(dt.date):%d.%m.%Y}", str(values.text[g])
        read_as = "" if text == day else f" ({day})"
        out[g] = (int(at[g]), f"{values.label[g]} {quoted(text)}{read_as}")
    return out


def _merged_amounts(
    table: Table, mapping: Mapping, src: Source, groups: Groups, left_out: np.ndarray
) -> list[Issue]:
    """The rows whose amount is one merged cell shown beside other rows as well: filled into
    each (``Table.merged_down``), it went with two invoices in full (found by a hostile
    review: 6 000 claimed where the sheet showed 3 000), or as a claim of each line of one.
    An invoice's own amount merged over its own lines is its amount, shown once."""
    per_line = {
        pos for item in mapping.claims.items for pos in _columns_read(item, src, kind="amount")
    }
    per_invoice = {
        pos
        for node in (mapping.invoice, mapping.debtors)
        for pos in _columns_read(node, src, kind="amount")
    }
    issues: list[Issue] = []
    for pos in sorted((per_line | per_invoice) & set(table.merged_down)):
        for first, last in table.merged_down[pos]:
            at = np.flatnonzero(
                (table.row_numbers >= first) & (table.row_numbers <= last) & ~left_out
            )
            invoices = len(set(groups.gid[at].tolist()))
            if len(at) < 2 or (pos not in per_line and invoices < 2):
                continue
            cells = f"{table.letter(pos)}{first}:{table.letter(pos)}{last}"
            beside = f"{invoices} invoices" if invoices > 1 else f"{len(at)} lines of one invoice"
            each = "each invoice" if invoices > 1 else "each line"
            value = str(table.cells[pos].iat[int(at[0])])
            # Said once for each invoice, on its first row there: it makes the whole invoice
            # INVALID, and its message names every row's problem.
            firsts = np.unique(groups.gid[at], return_index=True)[1]
            issues += [
                Issue(
                    int(row),
                    MERGED_AMOUNT_RULE,
                    table.headers[pos],
                    value,
                    f"{table.headers[pos]} {quoted(value)} is one merged cell ({cells}) beside "
                    f"{beside}, and would be sent in full with {each}; give each row its own "
                    "amount",
                )
                for row in at[firsts].tolist()
            ]
    return issues


def _columns_read(node: Node, src: Source, *, kind: str) -> set[int]:
    """The columns ``node``'s Fields of ``kind`` read, their defaults' too: an amount read
    through a default alone went unchecked, and a merged one was sent in full with each
    invoice (found by a review)."""
    return {
        src.positions[f.columns]
        for top in walk_fields(node)
        if top.kind == kind
        for f in with_defaults(top)
        if f.source == "column" and f.columns in src.positions
    }


def _differing_repeats(
    table: Table, mapping: Mapping, src: Source, groups: Groups, duplicate_of: np.ndarray
) -> dict[int, list[str]]:
    """The repeats of an invoice number (by their first row) that hold other values than the
    first row in a column the mapping reads (another amount, another debtor), with those
    columns. The invoice number's own column is not compared: zeros in front may differ."""
    if not (duplicate_of >= 0).any():
        return {}
    number = mapping.invoice.get_field("invoiceNumber")
    key = src.positions.get(number.columns) if number is not None else None
    read = sorted(
        {src.positions[names] for _, names, _ in mapping.field_refs if names in src.positions}
        - {key}
    )
    later = np.flatnonzero(duplicate_of >= 0)
    rows, firsts = groups.first[later], groups.first[duplicate_of[later]]
    dates = _read_as_dates_alone(mapping, src)
    differs: dict[int, list[str]] = defaultdict(list)
    for pos in read:
        cells = table.cells[pos].to_numpy(dtype=object)
        pairs = zip(cells[rows], cells[firsts], strict=True)
        other = np.array([_as_written(a) != _as_written(b) for a, b in pairs], dtype=bool)
        if pos in dates and other.any():
            # One day written two ways the mapping reads (15.03.24 and 2024-03-15, 45366, with
            # its time of day) is one value: "other values in Forfallsdato" said otherwise.
            here, there = (_days_at(src, pos, at[other]) for at in (rows, firsts))
            other[np.flatnonzero(other)[here == there]] = False  # NaT is never equal
        for row in rows[other].tolist():
            differs[row].append(table.headers[pos])
    return differs


def _read_as_dates_alone(mapping: Mapping, src: Source) -> set[int]:
    """The columns only date Fields read: one whose text a text Field or a template also reads
    (a date with its time of day, kept in a reference) sends another value when written
    otherwise."""
    readers: dict[int, set[str]] = defaultdict(set)  # column -> the kinds of Field reading it
    for node in (mapping.invoice, mapping.debtors, mapping.claims):
        for top in walk_fields(node):
            for f in with_defaults(top):
                if f.source == "column" and f.columns in src.positions:
                    readers[src.positions[f.columns]].add(top.kind)
                for name in f.placeholders:
                    if (name,) in src.positions:
                        readers[src.positions[(name,)]].add("template")
    return {pos for pos, kinds in readers.items() if kinds == {"date"}}


def _days_at(src: Source, pos: int, at: np.ndarray) -> np.ndarray:
    """The days column ``pos`` holds on rows ``at``, as its date Field reads them."""
    typed = None if src.values is None else src.values[pos].iloc[at]
    days, _ = read_days(
        src.cells[pos].iloc[at], typed, formats=src.strptime_formats, date1904=src.date1904
    )
    return days


#: What tells one way of writing a value from another, not one value from another: spaces,
#: zeros in front of a group of digits (01.03.2024, 1.3.2024), decimals of zeros (4500,00).
_SPACES_RUN = re.compile(r"\s+")
_ZEROS_IN_FRONT = re.compile(r"(?<![0-9])0+(?=[0-9])")
_ZERO_DECIMALS = re.compile(r"[.,]0+$")


def _as_written(cell: object) -> str:
    """A cell as compared for a repeated invoice number: only another value counts as other,
    not another way of writing it ("4 500,00" and "4500", "01.03.2024" and "1.3.2024", "Oslo"
    and "OSLO"), or the message would call one invoice's two exports two invoices."""
    text = _SPACES_RUN.sub("", str(cell)).casefold()
    return _ZERO_DECIMALS.sub("", _ZEROS_IN_FRONT.sub("", text))


def _with_differences(p: Problem, differs: dict[int, list[str]], groups: Groups) -> Problem:
    """A repeated invoice number's problem, naming the columns it differs from the first row in
    (``_differing_repeats``): a second invoice under that number, or a second line of the
    invoice, was DUPLICATE with no word of what it held, and the run said all was well. It
    stays DUPLICATE (the number went once), for the user to see what was not sent. It says
    nothing of how the invoice went: that row may not go either (sent from an earlier file, or
    INVALID), and its own message says so. It gives no advice: renumbered, a second export of
    one invoice would go twice."""
    names = differs.get(int(groups.first[groups.gid[p.position]]))
    if p.rule != "duplicate" or not names:
        return p
    return replace(
        p,
        message=f"{p.message}, with other values in {joined(names)}: this row is not sent, and "
        "that row says what became of the invoice",
    )


def _said_once_without_number(
    issues: list[Issue], number: Values, dates: list[Values], fates: _RowFates
) -> list[Issue]:
    """A row with no invoice number and no dates (``dates``: the invoice and due date, per
    row), and other required values missing too (an export's count line, or a subtotal no rule
    skips) said in one sentence, not one per value: "Fakturanr is empty; Beløp is empty; ..."
    told the user five things of a row that is no invoice at all. A row with its dates is an
    invoice that lost its number, and is told so. It stays INVALID either way: a row that lost
    its values is never left out silently."""
    left_out = fates.blank | ~np.equal(fates.skip_why, None)
    unnumbered = number.empty & ~left_out
    for date in dates:
        unnumbered &= date.empty
    if not unnumbered.any():
        return issues
    missing: dict[int, list[Issue]] = defaultdict(list)
    for issue in issues:
        if issue.rule == "required" and unnumbered[issue.position]:
            missing[issue.position].append(issue)
    told = {row: said for row, said in missing.items() if len(said) >= 3}
    if not told:
        return issues
    out = [issue for issue in issues if issue.rule != "required" or issue.position not in told]
    for row, said in told.items():
        others = list(
            dict.fromkeys(i.label for i in said if i.label and i.label != number.label[row])
        )
        out.append(
            Issue(
                row,
                "required",
                number.label[row],
                None,
                f"{number.label[row]} is empty, and so are {joined(others)}: the row reads as no "
                "invoice (a line of the export's own, such as a count or a subtotal?); delete such "
                "rows in the export, or leave them out with a [skip] rule on a column that marks "
                "them",
            )
        )
    return out


def _credited_invoices(
    table: Table,
    numbers: Values,
    level: Level,
    skip_why: np.ndarray,
    credits: np.ndarray,
    *,
    keys: list[object],
) -> list[Issue]:
    """Rule ``amount``: an invoice the file sends whose number a credit note or payment left out
    of the file (``credits``) also has, zeros in front aside (as for repeated numbers). Left
    out, it was not subtracted and the invoice went for its whole amount, its debt perhaps
    already cancelled: refused, as filedrop does not net them. One Issue on each such invoice's
    row with the number (``level``: per invoice; ``numbers``: per row, ``keys`` their keys),
    naming the credit's."""
    credit_at: dict[object, int] = {}
    for row in np.flatnonzero(credits).tolist():
        if keys[row] is not None:
            credit_at.setdefault(keys[row], row)
    issues = []
    for row in level.at.tolist():
        credit = credit_at.get(keys[row]) if keys[row] is not None else None
        if credit is None or skip_why[row] is not None:
            continue
        number = numbers.vals[row]
        issues.append(
            Issue(
                row,
                "amount",
                numbers.label[row],
                numbers.text[row],
                f"invoice number {shown(str(number))} is also on row "
                f"{table.row_numbers[credit]}, a credit note or payment left out "
                f"({skip_why[credit]}): the invoice would go for its whole amount, that line not "
                "subtracted; export the amount still owed, or remove the line if it is on "
                "another invoice",
            )
        )
    return issues


def _payments_shown(
    table: Table,
    mapping: Mapping,
    src: Source,
    *,
    groups: Groups,
    duplicate_of: np.ndarray,
    blank: np.ndarray,
    skip_why: np.ndarray,
    keys: list[object] | None,
    number_level: Level | None,
    credits: np.ndarray,
) -> dict[int, Payment]:
    """The invoices whose rows show something paid on them, in a column of what was paid that
    no amount field reads (``payments_unread``), by the row each is sent from, with the largest
    payment shown (lines and repeats often repeat the same total): ``check_payments_taken_off``
    refuses those whose claims do not take it off. A cell that is empty, zero however written
    ("kr -", "0,00") or a plain no ("Nei", "Ikke betalt") shows none; any other (an amount,
    "Ja", a date, "Nei, 500") does, and so does a formula whose result was never saved.

    Decided over the whole file, before any part is sent: a row that repeats an earlier row's
    invoice number (DUPLICATE) shows it for the invoice sent from that row, which may be in an
    earlier part, and so does a row a skip rule left out that carries the number of an invoice
    the file sends (a ledger's line of a payment, "Innbetaling"), in a paid column or, below
    zero, where its amount is read (``_payment_lines``; not the ``credits``, which
    ``_credited_invoices`` refuses). Blank rows show nothing."""
    sent_by_number = _sent_by_number(keys, number_level, skip_why)
    found: dict[int, Payment] = {}
    if keys is not None:
        left_out = ~np.equal(skip_why, None) & ~credits
        found = _payment_lines(
            table, mapping, src, left_out=left_out, keys=keys, sent_by_number=sent_by_number
        )
    rows_of = table.row_numbers
    for at in payments_unread(mapping, table.headers):
        header = table.headers[at]
        paid = Field(key="match.unread", kind="amount", source="column", columns=(header,))
        unsaved: list[Issue] = []
        v = evaluate(paid, replace(src, positions={**src.positions, (header,): at}), unsaved)
        with np.errstate(invalid="ignore"):
            nothing = v.empty | (np.abs(v.number) < 0.005)  # 1e-09, a sum's residue, is 0
        rest = np.flatnonzero(~nothing)  # the texts of only these need looking at
        texts = pd.Series(v.text[rest], dtype=object)
        nothing[rest] = _says_nothing_paid(texts)
        said = {issue.position: issue for issue in unsaved if issue.rule == UNSAVED_RULE}
        nothing[list(said)] = False
        numbers = np.isfinite(v.number).any()  # a number anywhere, 0 too: a column of amounts
        if (
            not said
            and not numbers
            and _names_payments_only(header)
            and _says_nothing_of_payments(texts, nothing[rest])
        ):
            continue
        for row in np.flatnonzero(~nothing & ~blank).tolist():
            if skip_why[row] is None:
                group = groups.gid[row]
                first = duplicate_of[group] if duplicate_of[group] >= 0 else group
                sent = int(groups.first[first])
            elif keys is not None and keys[row] is not None and keys[row] in sent_by_number:
                sent = sent_by_number[keys[row]]
            else:
                continue
            if sent == row:
                elsewhere = ""
            elif skip_why[row] is None and groups.gid[row] == groups.gid[sent]:
                elsewhere = f"on row {rows_of[row]}, a line of this invoice, "
            else:
                elsewhere = f"on row {rows_of[row]}, which carries its invoice number, "
            # An amount past any float's range (a cell of 200,000 digits) is no amount read.
            amount = v.number[row] if np.isfinite(v.number[row]) else np.nan
            payment = Payment(header, v.label[row], v.text[row], amount, said.get(row),
                              elsewhere)  # fmt: skip
            before = found.get(sent)
            if before is None or _weighs_more(payment, before):
                found[sent] = payment
    return found


def _payment_lines(
    table: Table,
    mapping: Mapping,
    src: Source,
    *,
    left_out: np.ndarray,
    keys: list[object],
    sent_by_number: dict[object, int],
) -> dict[int, Payment]:
    """The lines ``left_out`` by a skip rule that carry the number of an invoice the file sends
    (``sent_by_number``: the row it is sent from, by number key) and an amount below zero where
    the invoice's amount or a claim's is read: a ledger's payments ("Innbetaling" skipped by
    its type), added up per invoice. Judged as a payment shown (``check_payments_taken_off``):
    the invoice's claims must owe no more than its amount less those lines, as they do when
    read from what is still owed; one line of 1 000 and one of -400 went for 1 000 (a hostile
    review, helper-138), and -300 and -400 were judged by the larger (helper-143)."""
    rows = [
        r
        for r in np.flatnonzero(left_out).tolist()
        if keys[r] is not None and keys[r] in sent_by_number
    ]
    found: dict[int, Payment] = {}
    if not rows:
        return found
    columns = {f.columns: f for f in mapping.money_fields if f.source == "column"}
    for f in columns.values():
        v = evaluate(f, src, [])  # a cell that is no amount is reported by the checks
        lines: dict[int, list[int]] = {}
        for row in rows:
            if not v.empty[row] and v.number[row] < 0:
                lines.setdefault(sent_by_number[keys[row]], []).append(row)
        for sent, paid in lines.items():
            # Each line is a payment of its own: they add up (helper-143: -300 and -400 on one
            # invoice were judged by the 400 alone, and 600 went where 300 was owed).
            at = [int(table.row_numbers[r]) for r in paid]
            named = f"row {at[0]}" if len(at) == 1 else f"rows {_listed(at)}"
            shown_cells = [v.text[r] for r in paid[:_LINES_SHOWN]]
            if len(paid) > _LINES_SHOWN:
                shown_cells.append(f"{len(paid) - _LINES_SHOWN:,} more")
            carry = "carries" if len(at) == 1 else "carry"
            payment = Payment(
                f.columns[0],
                v.label[paid[0]],
                " + ".join(shown_cells),
                -float(sum(v.number[r] for r in paid)),
                None,
                f"on {named}, which {carry} its invoice number, ",
                line=named,
            )
            if sent not in found or _weighs_more(payment, found[sent]):
                found[sent] = payment
    return found


#: The most lines of a ledger's payments a message names one by one: an invoice with
#: thousands of them gets one sentence, not a page.
_LINES_SHOWN = 5


def _listed(numbers: list[int]) -> str:
    """Row numbers as a sentence lists them: "3, 4 and 6"; "3, 4, 5, 6, 7 and 995 more"."""
    if len(numbers) > _LINES_SHOWN:
        head = ", ".join(map(str, numbers[:_LINES_SHOWN]))
        return f"{head} and {len(numbers) - _LINES_SHOWN:,} more"
    return ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def _weighs_more(shown: Payment, before: Payment) -> bool:
    """Which payment an invoice is judged by: a formula without its result first (nothing can
    be told), then an amount over a text ("Ja" beside 1 000,00 on another column or line says
    less), then the larger amount, by its size (a payment shown negative is one reversed)."""
    if before.unsaved is not None or shown.unsaved is not None:
        return before.unsaved is None
    if np.isnan(before.paid) or np.isnan(shown.paid):
        return np.isnan(before.paid) and not np.isnan(shown.paid)
    return abs(shown.paid) > abs(before.paid)


def _sent_by_number(
    keys: list[object] | None, level: Level | None, skip_why: np.ndarray
) -> dict[object, int]:
    """The invoices the file sends by their number's key (``keys``, per row): the row each is
    sent from."""
    if keys is None or level is None:
        return {}
    sent: dict[object, int] = {}
    for row in level.at.tolist():
        if skip_why[row] is None and keys[row] is not None:
            sent.setdefault(keys[row], int(row))
    return sent


#: The words of a cell of a column of what was paid that says nothing was, every one of them
#: among these and the first a no ("Nei", "Ikke betalt", "Ingen innbetaling", "N/A", "USANN",
#: as Norwegian Excel writes FALSE); a digit anywhere ("Nei, 500", "Open 200") says otherwise.
_NO_WORDS = frozenset({"nei", "no", "n", "na", "false", "usann", "usant", "falsk", "falskt"})
_NO_WORDS |= {"ikke", "ikkje", "ingen", "ingenting", "none", "not", "nej", "null", "nil"}
_NO_WORDS |= {"nothing", "ubetalt", "unpaid", "åpen", "open"}
_NOTHING_PAID_WORDS = _NO_WORDS | {"betalt", "innbetalt", "paid", "payment", "innbetaling"}
_NOTHING_PAID_WORDS |= {"takk", "yet", "ennå", "enda", "a", "mottatt", "received"}
#: What is left of zero as a spreadsheet shows it once its marks are taken away: "kr -" (the
#: Norwegian accounting format's zero), "0,00 kr", "(0,00)", "0 %", "$0.00", "0.00" in a file
#: of decimal commas.
_ZERO_MARKS = re.compile(r"\b(?:kr|kroner|nok)\b|[\s,.()%$£€\-\u2013\u2014\u2212]")


#: The words of how an invoice is paid (AvtaleGiro, eFaktura, "Direct debit"): a column of
#: these alone, under a header such as "Betaling", says nothing of what was paid. Any other
#: word may mark a payment ("Oppgjort", "Closed", a tick), so only these make a column none.
_WAYS_OF_PAYING = frozenset({"avtalegiro", "autogiro", "efaktura", "ehf", "giro", "bankgiro"})
_WAYS_OF_PAYING |= {"kort", "card", "creditcard", "visa", "mastercard", "vipps", "klarna"}
_WAYS_OF_PAYING |= {"paypal", "kontant", "cash", "bank", "transfer", "bankoverføring"}
_WAYS_OF_PAYING |= {"overføring", "direct", "debit", "faktura", "invoice", "papir", "paper"}
_WAYS_OF_PAYING |= {"epost", "e", "mail", "email", "post", "sms", "nettbank", "online"}


#: The words of a header of payments that may be how, not what, an invoice was paid: under
#: "Betaling" or "Payment" a column may say AvtaleGiro; under "Betalt" or "Paid", "Kort" says
#: the invoice was paid by card.
_PAYMENT_NOUNS = frozenset({"betaling", "betalinger", "payment", "payments"})


def _names_payments_only(header: str) -> bool:
    """Whether ``header``'s words of payment are only nouns that may name how one is made."""
    said = payment_words(header)
    return bool(said) and said <= _PAYMENT_NOUNS


def _says_nothing_of_payments(texts: pd.Series, nothing: np.ndarray) -> bool:
    """Whether the texts of a column with no number in it (``nothing`` where they say nothing
    was paid) all say how an invoice is paid and nothing else (``_WAYS_OF_PAYING``: AvtaleGiro,
    eFaktura), under a header such as "Betaling". Such a column is not one of what was paid; one
    with any other word (a mark of a payment, "Oppgjort", a tick), a digit, a no or an Excel
    error in any cell is."""
    if nothing.any():
        return False
    words = texts.str.casefold().str.findall(r"[^\W\d_]+|[^\w\s]")
    return bool(words.map(lambda found: bool(found) and _WAYS_OF_PAYING.issuperset(found)).all())


def _says_nothing_paid(texts: pd.Series) -> np.ndarray:
    """Where a cell's text says nothing was paid: zero however written, or a plain no. An
    Excel error (#N/A where a lookup of the payments found none, #NULL!) never does: what was
    paid cannot be told."""
    folded = texts.str.casefold()
    zero = folded.str.replace(_ZERO_MARKS, "", regex=True).str.fullmatch("0*")
    words = folded.str.findall(r"[^\W\d_]+")
    no = (
        ~folded.str.contains(r"\d")
        & words.map(lambda w: bool(w) and w[0] in _NO_WORDS)
        & words.map(_NOTHING_PAID_WORDS.issuperset)
    )
    return ((zero | no) & ~folded.str.lstrip().str.startswith("#")).to_numpy(dtype=bool)


def _left_out(blank: np.ndarray, skip_why: np.ndarray) -> np.ndarray:
    """The rows that join no invoice and repeat none: blank or skipped."""
    return blank | ~np.equal(skip_why, None)


def _fields(*nodes: Node) -> list[Field]:
    return [f for node in nodes for f in walk_fields(node)]


def _blank_rows(table: Table) -> np.ndarray:
    """Rows with no cell at all (the reader drops empty rows; this is a backstop)."""
    blank = np.ones(len(table), dtype=bool)
    for pos in range(len(table.headers)):
        blank &= table.cells[pos].to_numpy(dtype=object) == ""
        if not blank.any():
            break
    return blank


def _problems(
    issues: list[Issue], fates: _RowFates, table: Table, mapping: Mapping
) -> list[Problem]:
    """Issues as the user reads them, by row, each once, without those whose rule is off."""
    blank, skip_why = fates.blank, fates.skip_why
    # An empty or skipped row says only that: its missing values are no news.
    skipped = ~np.equal(skip_why, None)
    kept = [issue for issue in issues if not (blank[issue.position] or skipped[issue.position])]
    kept += [
        Issue(int(i), "empty_row", "", None, "the row is empty") for i in np.flatnonzero(blank)
    ]
    kept += [
        Issue(int(i), REPEATED_RULE if fates.repeat_of[i] >= 0 else "skip", None, None, skip_why[i])
        for i in np.flatnonzero(skipped)
    ]
    out: list[Problem] = []
    seen: set[tuple[int, str, str | None, str | None]] = set()
    said: set[tuple[int, str]] = set()  # (row, message): a column read by a field and a template

    def severity_of(issue: Issue) -> str:
        if issue.rule in ("skip", REPEATED_RULE):
            return "skip"
        return "error" if issue.rule in _FIXED_RULES else mapping.severity(issue.rule)

    # A required value that is missing because its cell gave none (an Excel error, a formula
    # with no saved result) is no news when that cell's own error already refuses the row;
    # when that is only a warning, or off, "required" refuses it. Only that cause: any other
    # required problem of the cell ("holds one name only") is still said.
    refused = {(i.position, i.label) for i in kept if i.gave_no_value and severity_of(i) == "error"}
    for issue in kept:
        # One cell feeding two fields (Beløp: invoice and claim amount) is one problem.
        same = (issue.position, issue.rule, issue.label, issue.value)
        if (
            same in seen
            or (issue.position, issue.message) in said
            or (issue.rule == "required" and (issue.position, issue.label) in refused)
        ):
            continue
        seen.add(same)
        said.add((issue.position, issue.message))
        severity = severity_of(issue)
        if severity == "off":
            continue
        out.append(
            Problem(
                row=int(table.row_numbers[issue.position]),
                column=issue.label or None,
                value=issue.value,
                message=issue.message,
                severity="skipped"
                if severity == "skip"
                else "error"
                if severity == "error"
                else "warning",
                rule=issue.rule,
                position=issue.position,
            )
        )
    # A short line's own problems first, then why they may be there (stable sort).
    out = _short_lines(out, table.short_rows, of_lines=table.short_of_lines) + out
    out.sort(key=lambda p: p.position)  # stable: within a row, in the order the rules ran
    return out


def _short_lines(
    problems: list[Problem], short_rows: Mapping[int, tuple[int, int]], *, of_lines: bool
) -> list[Problem]:
    """For each CSV line with fewer fields than the header (or than most lines, ``of_lines``)
    that has problems, one saying so,
    an error: a value missing in the middle puts every value after it under the next column's
    name, and the problems read "Beløp "NOK" is not an amount" and "Kundetype "Åse" ...", five
    of them, none saying what is wrong. Even when they are only warnings (a street read as the
    phone number, the postcode as the street) the row is not sent: its values stand under the
    wrong columns. A short line without problems is sent (Excel leaves trailing empty fields out
    of some lines)."""
    if not short_rows:
        return []
    first: dict[int, Problem] = {}  # each short line's first problem, by position
    repeated = set()  # a DUPLICATE row is not sent whatever its line holds: nothing to correct
    for p in problems:
        if p.rule in _REPEATS:
            repeated.add(p.position)
        elif p.row in short_rows and p.severity != "skipped":
            first.setdefault(p.position, p)
    for position in repeated:
        first.pop(position, None)
    out = []
    for p in first.values():
        fields, width = short_rows[p.row]
        whose = (
            f"the {width} fields most lines have" if of_lines else f"the header's {width} fields"
        )
        out.append(
            Problem(
                row=p.row,
                column=None,
                value=None,
                message=(
                    f"the line has {fields} of {whose}: if the missing one "
                    "is not the last, the values after it stand under the wrong columns, which "
                    "may be what this row's other problems are; correct the line in the export"
                ),
                severity="error",
                rule=SHORT_LINE_RULE,
                position=p.position,
            )
        )
    return out


def _decide(
    table: Table,
    mapping: Mapping,
    *,
    problems: list[Problem],
    groups: Groups,
    number: Level | None,
    duplicate_of: np.ndarray,
    repeat_of: np.ndarray,
    differs: dict[int, list[str]],
    columns: Columns,
    offset: int,
    invalid: set[int],
    not_due: dict[int, tuple[int, str]],
    today: dt.date,
) -> Prepared:
    """Each group is sent, INVALID (an error on one of its rows), DUPLICATE, or SKIPPED.

    A group that would be sent but is not due yet on ``today`` (``not_due``: its due date's row,
    column and cell) is SKIPPED: what is wrong with an invoice, or that its number went before,
    is said first.

    A group whose number an earlier group has is DUPLICATE of it, unless that one is INVALID:
    then it was never sent, and the repeat is INVALID too (``_repeats_of_invalid``). ``invalid``
    carries the INVALID groups across parts, numbered as ``duplicate_of`` numbers them: a part's
    group ``g`` is ``offset + g`` (only ungrouped tables come in parts, a row a group). A line
    that repeats one of an INVALID invoice (``repeat_of``) is INVALID with it: nothing of that
    invoice was sent."""
    in_error = {int(groups.gid[p.position]) for p in problems if p.severity == "error"}
    invalid.update(offset + g for g in in_error if duplicate_of[g] < 0)
    problems = _repeats_of_invalid(problems, groups, duplicate_of, invalid)
    if differs:  # said only of a repeat that is DUPLICATE: that of an INVALID row is not sent
        problems = [_with_differences(p, differs, groups) for p in problems]
    errors: dict[int, list[Problem]] = defaultdict(list)
    warnings: dict[int, list[str]] = defaultdict(list)
    # Group -> why its row is left out (a skipped or repeated row is its own group).
    skipped: dict[int, Rejection] = {}
    for p in problems:
        if p.severity == "error":
            errors[int(groups.gid[p.position])].append(p)
        elif p.severity == "skipped":
            status = RowStatus.DUPLICATE if p.rule == REPEATED_RULE else RowStatus.SKIPPED
            skipped[int(groups.gid[p.position])] = Rejection(status, p.message)
        else:
            warnings[p.position].append(p.message)
    numbers = number.values.vals if number is not None else repeated("", groups.count)
    row_numbers = table.row_numbers
    rejected: dict[int, Rejection] = {}
    bad = duplicate_of >= 0
    bad[list(errors)] = True
    bad[list(skipped)] = True

    def listed_again(g: int) -> bool:
        """Whether group ``g`` is DUPLICATE: its number was sent by an earlier group, whatever
        else is wrong with it."""
        return duplicate_of[g] >= 0 and int(duplicate_of[g]) not in invalid

    # Copies of a line of an INVALID invoice, or of one held as not due yet (``holding``, which
    # nothing else stops): row -> what they are said to be instead, as nothing of that invoice
    # is sent. A copy of a line of a DUPLICATE invoice is DUPLICATE with it, though that invoice
    # has an error (the repeated number).
    holding = {g: why for g, why in not_due.items() if not bad[g]}
    copies: dict[int, Rejection] = {}
    for g in np.flatnonzero(bad).tolist():
        if g in skipped:
            (row,) = groups.members_of(g)
            earlier = int(repeat_of[row])
            of = int(groups.gid[earlier]) if earlier >= 0 else -1
            if (of in errors and not listed_again(of)) or of in holding:
                copies[row] = _copy_of(int(row_numbers[earlier]), invalid=of in errors)
            rejected[row] = copies.get(row, skipped[g])
            continue
        if listed_again(g):
            why = next(p.message for p in errors[g] if p.rule == "duplicate")
            rejected.update(
                dict.fromkeys(groups.members_of(g), Rejection(RowStatus.DUPLICATE, why))
            )
            continue
        for r in groups.members_of(g):
            own = int(row_numbers[r])
            # A repeated number is said on each of the invoice's rows: once is enough.
            text = "; ".join(
                p.message if p.row == own else str(p)
                for p in errors[g]
                if p.row == own or p.rule != REPEAT_OF_INVALID_RULE
            )
            rejected[r] = Rejection(RowStatus.INVALID, text)
    problems = _hold_not_due(
        holding, bad, today, groups=groups, row_numbers=row_numbers, rejected=rejected,
        problems=problems,
    )  # fmt: skip
    good = np.flatnonzero(~bad)
    with no_cyclic_gc():
        invoices = [
            PreparedInvoice(str(no), g, columns)
            for no, g in zip(numbers[good].tolist(), good.tolist(), strict=True)
        ]
    notes = {r: "; ".join(w) for r, w in warnings.items() if not bad[groups.gid[r]]}
    if copies:
        problems = [
            _as_copy(p, copies[p.position]) if p.position in copies else p for p in problems
        ]
    held = _held_numbers(holding, copies, numbers=numbers, groups=groups, repeat_of=repeat_of)
    return Prepared(table, mapping, invoices, rejected, notes, problems, held)


def _held_numbers(
    holding: dict[int, tuple[int, str]],
    copies: dict[int, Rejection],
    *,
    numbers: np.ndarray,
    groups: Groups,
    repeat_of: np.ndarray,
) -> dict[str, list[int]]:
    """``Prepared.held``: each invoice number held as not due yet, with its rows and the rows
    that copy one of its lines (the copies SKIPPED, not INVALID)."""
    held: defaultdict[str, list[int]] = defaultdict(list)
    for g in holding:
        held[str(numbers[g])].extend(groups.members_of(g))
    for row, copy in copies.items():
        if copy.status is RowStatus.SKIPPED:
            held[str(numbers[groups.gid[repeat_of[row]]])].append(row)
    return dict(held)


def _copy_of(row: int, *, invalid: bool) -> Rejection:
    """What a line that repeats ``row`` of an invoice not sent says: INVALID with an invalid
    one, SKIPPED with one not due yet."""
    same = f"the row repeats row {row} exactly, every cell the same, and that invoice is"
    if invalid:
        return Rejection(RowStatus.INVALID, f"{same} invalid: nothing of it was sent")
    return Rejection(
        RowStatus.SKIPPED, f"rule {NOT_DUE_RULE}: {same} not overdue yet: nothing of it is sent"
    )


def _as_copy(p: Problem, copy: Rejection) -> Problem:
    """The repeated line's own problem said as ``copy`` says it."""
    if p.rule != REPEATED_RULE:
        return p
    if copy.status is RowStatus.INVALID:
        return replace(p, message=copy.text, severity="error", rule=REPEATED_LINE_OF_INVALID_RULE)
    return replace(p, message=copy.text)


def _hold_not_due(
    not_due: dict[int, tuple[int, str]],
    bad: np.ndarray,
    today: dt.date,
    *,
    groups: Groups,
    row_numbers: np.ndarray,
    rejected: dict[int, Rejection],
    problems: list[Problem],
) -> list[Problem]:
    """Each invoice of ``not_due``, which nothing else stops, is SKIPPED, every row of it (and
    marked ``bad``, not sent); returns ``problems`` with a "skipped" one for each such row."""
    held: list[Problem] = []
    for g, (at, due) in not_due.items():
        bad[g] = True
        for r in groups.members_of(g):
            text = not_due_message(due if r == at else f"row {row_numbers[at]}: {due}", today)
            rejected[r] = Rejection(RowStatus.SKIPPED, text)
            held.append(Problem(int(row_numbers[r]), None, None, text, "skipped", "", r))
    # Stable: within a row, in the order the rules ran.
    return sorted([*problems, *held], key=lambda p: p.position) if held else problems


def _repeats_of_invalid(
    problems: list[Problem], groups: Groups, duplicate_of: np.ndarray, invalid: set[int]
) -> list[Problem]:
    """``problems`` with each repeated number whose first row is INVALID said as an error of
    its own: the first was never sent, so "already appears" is no reason to call the repeat
    sent. Which of the two is the invoice is the user's to say."""
    after_invalid = {
        g for g in np.flatnonzero(duplicate_of >= 0).tolist() if duplicate_of[g] in invalid
    }
    if not after_invalid:
        return problems
    # A number refused itself (digits Excel lost: "2,40302E+11") tells no invoice from another
    # that lost the same digits: the repeat says only what is wrong with its own number.
    refused_numbers = {
        (p.position, p.column)
        for p in problems
        if p.severity == "error" and p.rule != "duplicate" and p.column is not None
    }
    out: list[Problem] = []
    for p in problems:
        if p.rule != "duplicate" or int(groups.gid[p.position]) not in after_invalid:
            out.append(p)
        elif (p.position, p.column) not in refused_numbers:
            out.append(
                replace(
                    p,
                    message=f"{p.message}, which is invalid and not sent: correct that row, or "
                    "keep only one row with that number",
                    rule=REPEAT_OF_INVALID_RULE,
                )
            )
    return out
