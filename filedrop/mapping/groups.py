"""Rows into invoices: which rows make one invoice, each invoice's values, and repeated numbers.

With ``[group] by`` the rows sharing a key are one invoice (principal, fee and interest lines);
without it each row is its own. Everything here is whole-column numpy work on group ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from filedrop.mapping.convert import shown, visible
from filedrop.mapping.fields import Issue, Values
from filedrop.mapping.loader import Mapping
from filedrop.mapping.tree import Field
from filedrop.read import Table

__all__ = ["Groups", "Level", "find_duplicates", "group_rows", "levels", "repeated_lines"]


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
    key = table.cells[positions[mapping.group_by]]
    key = np.array([v.strip() for v in visible(key).tolist()], dtype=object)
    codes, _ = pd.factorize(key)
    alone = (key == "") | blank  # no key: a row of its own
    codes[alone] = codes.max(initial=0) + 1 + np.arange(int(alone.sum()))
    gid, _ = pd.factorize(codes)
    order = np.argsort(gid, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(gid[order])) + 1) if n else []
    first = np.array([m[0] for m in members], dtype=int) if members else gid
    return Groups(gid=gid, members=members, first=first)


def repeated_lines(table: Table, mapping: Mapping, left_out: np.ndarray) -> dict[int, int]:
    """With ``[group] by``, the rows that repeat an earlier row exactly, every cell the same, each
    with that row (positions): an invoice's lines listed twice, as two appended exports or a
    report of two periods have them. Grouped, they made one invoice with every claim twice, and
    the debtor was asked for twice the debt. Rows left out (blank, skipped) are no one's repeat."""
    if not mapping.group_by or not len(table):
        return {}
    kept = np.flatnonzero(~left_out)
    cells = table.cells.iloc[kept]
    twice = cells.duplicated(keep=False).to_numpy()  # the rows that have a twin, first ones too
    if not twice.any():
        return {}
    first_of: dict[tuple[str, ...], int] = {}
    found: dict[int, int] = {}
    for position, line in zip(
        kept[twice].tolist(), cells[twice].itertuples(index=False, name=None), strict=True
    ):
        earlier = first_of.setdefault(line, position)
        if earlier != position:
            found[position] = earlier
    return found


def levels(rows: dict[int, Values], groups: Groups, fields: list[Field]) -> dict[int, Level]:
    """Each of ``fields`` (invoice and debtor Fields) at invoice level, keyed by ``id(field)``."""
    return {id(f): groups.level(rows[id(f)]) for f in fields}


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
    keys = pd.Series(v.vals, dtype=object).where(~v.empty & ~blank[groups.first], None)
    codes, _ = pd.factorize(keys, use_na_sentinel=True)
    later = pd.Series(codes).duplicated().to_numpy() & (codes >= 0)
    issues: list[Issue] = []
    if later.any():
        first_group = {c: g for g, c in reversed(list(enumerate(codes.tolist())))}
        rows = table.row_numbers
        for g in np.flatnonzero(later):
            duplicate_of[g] = first = first_group[codes[g]]
            number = shown(str(v.vals[g]))
            why = f"invoice number {number} already appears on row {rows[groups.first[first]]}"
            issues += [
                Issue(r, "duplicate", v.label[g], v.text[g], why) for r in groups.members_of(g)
            ]
    return duplicate_of, issues
