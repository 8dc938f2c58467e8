"""Rows into invoices: which rows make one invoice, each invoice's values, and repeated numbers.

With ``[group] by`` the rows sharing a key are one invoice (principal, fee and interest lines);
without it each row is its own. Everything here is whole-column numpy work on group ids.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from filedrop.mapping.convert import shown, visible
from filedrop.mapping.fields import Issue, Values
from filedrop.mapping.loader import Mapping
from filedrop.mapping.tree import Field
from filedrop.read import Table

__all__ = [
    "Groups",
    "Level",
    "RepeatedLines",
    "find_duplicates",
    "group_rows",
    "levels",
    "repeated_lines",
    "zeros_in_front",
]


def zeros_in_front(number: str, other: str, *, saved_here: bool = False) -> str:
    """Why ``number`` and ``other``, which differ by zeros in front, are one invoice.

    A spreadsheet program drops every zero in front (000 becomes 0), so it is named as the
    cause only when one of the two has none left: 0781 and 000781 are not its doing (an ERP
    padding to another width), and saying so sent the user looking for a save that never
    happened. ``saved_here``: ``number`` is this export's and ``other`` an earlier file's, so
    only ``number`` having none says that this export was opened and saved.
    """
    same = "the same number but for zeros in front"
    if _padded(number) and _padded(other):
        return same
    if saved_here and not _padded(number):
        return f"{same}, which a spreadsheet program drops when it opens and saves an export"
    return f"{same}, which a spreadsheet program drops"


def _padded(number: str) -> bool:
    return len(number) > 1 and number.startswith("0")


@dataclass(frozen=True)
class Level:
    """A Field's values per invoice, from the first row of each group that has one (``at``)."""

    values: Values
    at: np.ndarray  # per group: the row position its value came from


@dataclass(frozen=True)
class Groups:
    """Which invoice (group) each row belongs to, in file order."""

    gid: np.ndarray  # per row: its group
    members: list[np.ndarray] | None  # per group: its rows; None when each row is its own invoice
    first: np.ndarray  # per group: its first row

    @property
    def count(self) -> int:
        return len(self.first)

    def members_of(self, g: int) -> tuple[int, ...]:
        """The rows (0-based positions) of group ``g``, in file order."""
        return (int(self.first[g]),) if self.members is None else tuple(self.members[g].tolist())

    def level(self, v: Values) -> Level:
        """Row values -> one value per group: the first non-empty one of its rows."""
        if self.members is None:
            return Level(values=v, at=self.first)
        at = self.first.copy()
        filled = np.flatnonzero(~v.empty)
        found, first = np.unique(self.gid[filled], return_index=True)
        at[found] = filled[first]
        number = None if v.number is None else v.number[at]
        return Level(Values(v.vals[at], v.text[at], v.label[at], number, v.empty[at]), at)


def group_rows(
    table: Table, mapping: Mapping, positions: dict[tuple[str, ...], int], blank: np.ndarray
) -> Groups:
    """Group rows by the mapping's ``group.by`` column; a row without a key is its own invoice."""
    n = len(table)
    if not mapping.group_by:
        return Groups(gid=np.arange(n), members=None, first=np.arange(n))
    key = _group_keys(table, mapping, positions)
    codes, _ = pd.factorize(key)
    alone = (key == "") | blank  # no key: a row of its own
    codes[alone] = codes.max(initial=0) + 1 + np.arange(int(alone.sum()))
    gid, _ = pd.factorize(codes)
    order = np.argsort(gid, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(gid[order])) + 1) if n else []
    first = np.array([m[0] for m in members], dtype=int) if members else gid
    return Groups(gid=gid, members=members, first=first)


def _group_keys(
    table: Table,
    mapping: Mapping,
    positions: dict[tuple[str, ...], int],
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's ``group.by`` key as it groups ("" for none), of ``rows`` (positions) or all."""
    key = table.cells[positions[mapping.group_by]]
    if rows is not None:
        key = key.iloc[rows]
    return np.array([v.strip() for v in visible(key).tolist()], dtype=object)


class RepeatedLines(NamedTuple):
    """Rows of a grouped table that are the same as an earlier row of their invoice in every
    cell, each with that row (positions): ``repeats`` are the invoice listed again, left out;
    ``unclear`` are lines that may be either (``repeated_lines``), which make the invoice
    INVALID."""

    repeats: dict[int, int]
    unclear: dict[int, int]


def repeated_lines(
    table: Table, mapping: Mapping, positions: dict[tuple[str, ...], int], left_out: np.ndarray
) -> RepeatedLines:
    """With ``[group] by``, the rows the same as an earlier row of their invoice, every cell.

    Two causes look alike, and guessing wrong harms either way. An invoice listed twice (two
    exports appended, however sorted) grouped into one invoice with every claim twice: the
    debtor was asked for twice the debt. An invoice with two equal lines (two reminder fees of
    70 on one day) lost one when every repeat was taken for the first cause, and went for 70
    less. Only when every line of the invoice is there the same number of times k (all lines
    twice, say) is it the invoice listed k times: each line is kept once and the copies are
    ``repeats``, DUPLICATE. A line given once beside one given twice cannot tell which cause it
    is (two fees, or a second export that added interest), and filedrop does not guess: those
    copies are ``unclear``, and the user makes the lines one or removes the repeat. Rows without
    a key are invoices of their own: a repeat of one is a repeat. Rows left out (blank, skipped)
    are no one's repeat.
    """
    found = RepeatedLines({}, {})
    if not mapping.group_by or not len(table):
        return found
    kept = np.flatnonzero(~left_out)
    cells = table.cells.iloc[kept]
    twice = cells.duplicated(keep=False).to_numpy()  # the rows that have a twin, first ones too
    if not twice.any():
        return found
    # Each line as a number, equal numbers for equal lines; a line without a twin has a
    # negative one of its own.
    line_of: dict[int, int] = {}
    ids: dict[tuple[str, ...], int] = {}
    for position, line in zip(
        kept[twice].tolist(), cells[twice].itertuples(index=False, name=None), strict=True
    ):
        line_of[position] = ids.setdefault(line, len(ids))
    keys = _group_keys(table, mapping, positions, kept)
    with_twins = set(keys[twice].tolist())
    members: dict[str, list[int]] = defaultdict(list)
    for position, key in zip(kept.tolist(), keys.tolist(), strict=True):
        if key in with_twins:
            members[key].append(position)
    for key, rows in members.items():
        lines = [line_of.get(row, -1 - row) for row in rows]
        if key == "":  # each row an invoice of its own: a repeat is the invoice again
            first: dict[int, int] = {}
            for row, line in zip(rows, lines, strict=True):
                if first.setdefault(line, row) != row:
                    found.repeats[row] = first[line]
        else:
            _invoice_repeats(rows, lines, found)
    return found


def _invoice_repeats(rows: list[int], lines: list[int], found: RepeatedLines) -> None:
    """``repeated_lines`` for the rows of one invoice (positions, in file order) and their
    lines' numbers."""
    seen: dict[int, list[int]] = defaultdict(list)  # line -> its rows so far
    for row, line in zip(rows, lines, strict=True):
        seen[line].append(row)
    times = math.gcd(*map(len, seen.values()))  # how many times the invoice is listed
    for at in seen.values():
        if times > 1:
            once = len(at) // times  # the line's rows in one listing of the invoice
            for k in range(once, len(at)):
                found.repeats[at[k]] = at[k % once]
        else:
            found.unclear.update(dict.fromkeys(at[1:], at[0]))


def levels(rows: dict[int, Values], groups: Groups, fields: list[Field]) -> dict[int, Level]:
    """Each of ``fields`` (invoice and debtor Fields) at invoice level, keyed by ``id(field)``."""
    return {id(f): groups.level(rows[id(f)]) for f in fields}


def number_keys(numbers: pd.Series) -> pd.Series:
    """Invoice numbers as one invoice's twins share them: 000777 and 777 are one invoice, as a
    spreadsheet program drops the zeros of some cells of a column it takes for numbers (the
    journal finds such twins across files: ``zero_twins``). Digits alone lose their zeros in
    front; anything else is itself. Twins differ by zeros in front, so one starts with a zero:
    most files have none, and are given back as they are."""
    if (
        pd.api.types.infer_dtype(numbers, skipna=True) == "string"
        and numbers.str.startswith("0", na=False).any()
    ):
        digits = numbers.str.fullmatch("[0-9]+").fillna(False).astype(bool)
        return numbers.where(~digits, numbers.str.lstrip("0"))
    return numbers


def find_duplicates(
    table: Table, number: Level | None, groups: Groups, blank: np.ndarray
) -> tuple[np.ndarray, list[Issue]]:
    """Per group, the earlier group with the same invoice number (-1: none), and their Issues.

    ``number`` is the invoice number per group; None when the mapping has none.
    """
    duplicate_of = np.full(groups.count, -1)
    if number is None or groups.count == 0:
        return duplicate_of, []
    v = number.values
    keys = number_keys(pd.Series(v.vals, dtype=object).where(~v.empty & ~blank[groups.first], None))
    codes, _ = pd.factorize(keys, use_na_sentinel=True)
    later = pd.Series(codes).duplicated().to_numpy() & (codes >= 0)
    issues: list[Issue] = []
    if later.any():
        first_group = {c: g for g, c in reversed(list(enumerate(codes.tolist())))}
        rows = table.row_numbers
        for g in np.flatnonzero(later):
            duplicate_of[g] = first = first_group[codes[g]]
            number = shown(str(v.vals[g]))
            if v.vals[first] != v.vals[g]:
                reason = zeros_in_front(str(v.vals[g]), str(v.vals[first]))
                number += f" (as {shown(str(v.vals[first]))}: {reason})"
            why = f"invoice number {number} already appears on row {rows[groups.first[first]]}"
            issues += [
                Issue(r, "duplicate", v.label[g], v.text[g], why) for r in groups.members_of(g)
            ]
    return duplicate_of, issues
