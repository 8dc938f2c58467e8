"""Build the Invoice JSON of the invoices ``prepare`` lets go, column-wise down to one dict each.

The last local step: prepare.py has converted every Field for every row, grouped rows into
invoices and decided which invoices are sent (``PreparedInvoice``); ``payloads`` turns their
columns into the API's Invoice objects. Building makes millions of small dicts, so it is shaped for
speed: objects are built in batches that share which values are present, and the cyclic garbage
collector is paused meanwhile (``no_cyclic_gc``), safely when several files are prepared at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from filedrop.mapping.fields import TemplateColumn, TextColumn, Values
from filedrop.mapping.loader import Mapping
from filedrop.mapping.tree import Field, Many, Node, walk_fields
from filedrop.memory import no_cyclic_gc

__all__ = [
    "Columns",
    "PreparedInvoice",
    "build_payloads",
    "columns",
    "invoice_rows",
    "payloads",
]


@dataclass(frozen=True)
class _Shape:
    """Where one object (or list) of the mapping is there, and which of its values are, per row.

    Worked out once for all rows in ``columns``, so building a batch only looks these up.
    """

    there: np.ndarray  # bool: the object or list is not None
    names: tuple[str, ...] = ()  # an object's keys, in the mapping's order
    pattern: np.ndarray | None = None  # an object's present values: bit j for its j-th value
    several: np.ndarray | None = None  # bool: a split value holds a list (one object per value)


_Column = np.ndarray | TextColumn | TemplateColumn
"""A Field's JSON values: held, or (for text read as it is) read again from the cells."""


@dataclass(frozen=True, eq=False)  # the same object or not: arrays have no one truth value
class Columns:
    """What building needs from prepare and nothing more: every value's JSON, and which are there.

    Kept from prepare until the last batch is sent, so it holds only these arrays; the text, labels
    and masks prepare checked them with are gone with prepare.
    """

    mapping: Mapping
    group_vals: dict[int, _Column]  # id(invoice or debtor Field) -> each group's JSON value
    row_vals: dict[int, _Column]  # id(claim Field) -> each row's JSON value
    claim_rows: list[np.ndarray]  # per claim of the mapping: bool, the rows that have that line
    members: list[np.ndarray] | None  # each group's rows; None when each row is its own invoice
    first: np.ndarray  # each group's first row
    shapes: dict[int, _Shape]  # id(Obj or Many) -> where it and its values are there
    offset: int = 0  # the table position of row 0 here: a long file is prepared in parts


def columns(
    mapping: Mapping,
    *,
    group_values: dict[int, Values],
    row_values: dict[int, Values],
    claim_rows: list[np.ndarray],
    gid: np.ndarray,
    members: list[np.ndarray] | None,
    first: np.ndarray,
    claim_sums: np.ndarray | None = None,
    offset: int = 0,
) -> Columns:
    """The Columns of one prepared table: every object's shape worked out once.

    ``group_values`` are the invoice and debtor Fields per group, ``row_values`` every Field per
    row (both keyed by ``id(field)``); ``claim_sums`` each group's ``claim_totals`` when the
    invoice's amount is their sum.
    """
    group_vals = {key: v.vals for key, v in group_values.items()}
    claim_fields = [f for item in mapping.claims.items for f in walk_fields(item)]
    row_vals = {id(f): row_values[id(f)].vals for f in claim_fields}
    amount = mapping.invoice.get_field("originalInvoiceAmount")
    if amount is not None and claim_sums is not None:
        group_vals[id(amount)] = _rounded(claim_sums)
    shapes: dict[int, _Shape] = {}
    _shape(mapping.invoice, group_vals, len(first), shapes)
    _shape(mapping.debtors, group_vals, len(first), shapes)
    for item in mapping.claims.items:
        _shape(item, row_vals, len(gid), shapes)
    kept_group: dict[int, _Column] = {**group_vals}
    kept_group.update({k: v.lazy for k, v in group_values.items() if v.lazy is not None})
    kept_row: dict[int, _Column] = {**row_vals}
    kept_row.update(
        {id(f): row_values[id(f)].lazy for f in claim_fields if row_values[id(f)].lazy is not None}
    )
    return Columns(mapping, kept_group, kept_row, claim_rows, members, first, shapes, offset)


def _rounded(totals: np.ndarray) -> np.ndarray:
    """Sums as the invoice's amount, rounded to øre; None where one claim is not a number (or,
    on an invoice ``check_claim_sums`` made INVALID, where they add up past any float)."""
    summed = np.full(len(totals), None, dtype=object)
    ok = np.isfinite(totals)
    # Rounding multiplies by 100: a sum near the float's limit (a cell of 1e308, which
    # check_claim_sums refuses) would print numpy's overflow warning on the user's terminal.
    with np.errstate(over="ignore"):
        summed[ok] = np.round(totals[ok], 2).tolist()
    return summed


def claim_totals(
    mapping: Mapping,
    row_values: dict[int, Values],
    claim_rows: list[np.ndarray],
    gid: np.ndarray,
    count: int,
) -> np.ndarray | None:
    """Each group's claim amounts added up, as floats (NaN where one is not a number); None
    when the invoice's amount is not the sum of its claims.

    Added claim by claim of the mapping and row by row, the order the sum has always had, so the
    floats are the same to the last bit.
    """
    amount = mapping.invoice.get_field("originalInvoiceAmount")
    if amount is None or amount.source != "sum_of_claims":
        return None
    totals = np.zeros(count)
    for amount, present in zip(mapping.claim_amounts, claim_rows, strict=True):
        if amount is not None and row_values[id(amount)].number is not None:
            rows = np.flatnonzero(present)
            with np.errstate(over="ignore", invalid="ignore"):  # checked: check_claim_sums
                np.add.at(totals, gid[rows], row_values[id(amount)].number[rows])
    return totals


def _shape(
    node: Node, vals: dict[int, np.ndarray], size: int, shapes: dict[int, _Shape]
) -> np.ndarray:
    """Where ``node``'s value is not None on each of ``size`` rows; objects and lists noted in
    ``shapes``."""
    if isinstance(node, Field):
        return ~np.equal(vals[id(node)], None)
    if isinstance(node, Many):
        there = np.zeros(size, dtype=bool)
        for item in node.items:
            there |= _shape(item, vals, size, shapes)
        shapes[id(node)] = _Shape(there)
        return there
    names = tuple(name for name, _ in node.fields)
    if not names:
        shapes[id(node)] = _Shape(np.ones(size, dtype=bool))
        return shapes[id(node)].there
    present = [_shape(child, vals, size, shapes) for _, child in node.fields]
    backed = [j for j, (_, c) in enumerate(node.fields) if any(f.from_file for f in walk_fields(c))]
    keep = np.zeros(size, dtype=bool) if backed else np.ones(size, dtype=bool)
    for j in backed:
        keep |= present[j]
    several = None
    for _, child in node.fields:
        if isinstance(child, Field) and child.split:  # a cell that held several emails
            if several is None:
                several = np.zeros(size, dtype=bool)
            values = vals[id(child)].tolist()
            if list in set(map(type, values)):  # seldom: one look at the column first
                several[[i for i, v in enumerate(values) if type(v) is list]] = True
    if several is not None:
        several &= keep
    # One bit per value, in the smallest integers that hold them all (Python ints past 64).
    width = next(
        (
            t
            for t in (np.uint8, np.uint16, np.uint32, np.uint64)
            if len(present) <= np.iinfo(t).bits
        ),
        object,
    )
    pattern = np.zeros(size, dtype=width)
    for j, there in enumerate(present):
        pattern |= there.astype(width) << (j if width is object else width(j))
    shapes[id(node)] = _Shape(keep, names, pattern, several)
    return keep


class PreparedInvoice(NamedTuple):
    """One invoice ready to send, and the table rows it came from.

    Its JSON is built when it is about to be sent (``payloads``), not held: 200,000 invoices'
    nested dicts would take most of a gigabyte, a batch's take a few hundred kilobytes. A named
    tuple rather than a frozen dataclass: prepare makes one per invoice, in half the time.
    """

    invoice_number: str
    group: int
    columns: Columns

    def __repr__(self) -> str:  # without the columns, which are the whole file's
        return f"PreparedInvoice(invoice_number={self.invoice_number!r}, group={self.group})"

    @property
    def rows(self) -> tuple[int, ...]:
        """The table rows (0-based positions) of this invoice, in file order."""
        return tuple(invoice_rows([self])[0].tolist())

    @property
    def payload(self) -> dict[str, Any]:
        """This invoice's JSON (for one invoice; use ``payloads`` for many at once)."""
        return payloads([self])[0]


def invoice_rows(invoices: list[PreparedInvoice]) -> tuple[np.ndarray, np.ndarray]:
    """The table rows of these invoices one after the other, and how many rows each has: to
    spread per-invoice values over rows a whole column at a time."""
    parts = [_rows_of_run(cols, groups) for cols, groups in _runs(invoices)]
    if not parts:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    rows, sizes = zip(*parts, strict=True)
    return np.concatenate(rows), np.concatenate(sizes)


def _rows_of_run(cols: Columns, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if cols.members is None:
        return cols.first[groups].astype(np.intp) + cols.offset, np.ones(len(groups), np.intp)
    members = [cols.members[g] for g in groups.tolist()]
    sizes = np.fromiter(map(len, members), dtype=np.intp, count=len(members))
    return np.concatenate(members).astype(np.intp) + cols.offset, sizes


def _runs(invoices: list[PreparedInvoice]) -> list[tuple[Columns, np.ndarray]]:
    """The invoices as runs of one part each (its Columns, their group ids), in their order."""
    runs: list[tuple[Columns, np.ndarray]] = []
    start = 0
    for end in range(1, len(invoices) + 1):
        if end == len(invoices) or invoices[end].columns is not invoices[start].columns:
            groups = [invoice.group for invoice in invoices[start:end]]
            runs.append((invoices[start].columns, np.array(groups, dtype=np.intp)))
            start = end
    return runs


def payloads(invoices: list[PreparedInvoice]) -> list[dict[str, Any]]:
    """The Invoice JSON of these invoices, in order, built together (whole columns at a time)."""
    with no_cyclic_gc():
        return [built for cols, groups in _runs(invoices) for built in build_payloads(cols, groups)]


def build_payloads(cols: Columns, good: np.ndarray) -> list[dict[str, Any]]:
    """The Invoice JSON of each good group (``good``: their group ids), in that order.

    Only the batch's own rows are touched: the cost of a batch does not grow with the file.
    """
    if len(good) == 0:
        return []
    claims = _claim_lists(cols, good)
    invoices = _materialize(cols.mapping.invoice, cols.group_vals, cols.shapes, good)
    debtors = _materialize(cols.mapping.debtors, cols.group_vals, cols.shapes, good)
    for invoice, debtor_list, claim_list in zip(invoices, debtors, claims, strict=True):
        invoice["debtors"] = debtor_list or []
        invoice["claims"] = claim_list
    return invoices


def _claim_lists(cols: Columns, good: np.ndarray) -> list[list[dict[str, Any]]]:
    """Each good group's claims in row order (then the mapping's order)."""
    members = cols.members
    if members is None:
        rows, slot = good, np.arange(len(good))
    else:
        parts = [members[g] for g in good.tolist()]
        rows = np.concatenate(parts)
        slot = np.repeat(np.arange(len(good)), [len(part) for part in parts])
    lines: list[tuple[np.ndarray, np.ndarray, list[Any]]] = []
    for item, present in zip(cols.mapping.claims.items, cols.claim_rows, strict=True):
        has = present[rows]
        keep = rows[has]
        lines.append((keep, slot[has], _materialize(item, cols.row_vals, cols.shapes, keep)))
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(good))]
    if len(lines) == 1:
        order, slots, built = lines[0]
    else:
        order = np.concatenate([keep for keep, _, _ in lines])
        slots = np.concatenate([s for _, s, _ in lines])
        built = [c for _, _, claims in lines for c in claims]
    if members is not None or len(lines) > 1:  # row order, then the mapping's order
        sort = np.argsort(order, kind="stable")
        slots, built = slots[sort], [built[k] for k in sort.tolist()]
    for s, claim in zip(slots.tolist(), built, strict=True):
        out[s].append(claim)
    return out


def _materialize(
    node: Node, vals: dict[int, _Column], shapes: dict[int, _Shape], idx: np.ndarray
) -> list[Any]:
    """``node``'s JSON value at each index in ``idx`` (None where the object is not there).

    Rows that share which values are present are built together, so each dict is made by one
    dict display with no per-value tests; a batch's rows usually all share one.
    """
    if isinstance(node, Field):
        column = vals[id(node)]
        return column[idx].tolist() if isinstance(column, np.ndarray) else column.take(idx)
    if isinstance(node, Many):
        columns = [_materialize(item, vals, shapes, idx) for item in node.items]
        if len(columns) == 1:  # the usual case, kept to one cheap step per row
            return [None if v is None else v if type(v) is list else [v] for v in columns[0]]
        return [_flatten(row) for row in zip(*columns, strict=False)]
    n, shape = len(idx), shapes[id(node)]
    names = shape.names
    if not names:
        return [{} for _ in range(n)]
    assert shape.pattern is not None
    columns = [_materialize(child, vals, shapes, idx) for _, child in node.fields]
    keep = shape.there[idx]
    patterns = shape.pattern[idx].tolist()
    out: list[Any] = [None] * n
    if shape.several is not None:
        several = shape.several[idx]
        for i in np.flatnonzero(several).tolist():
            out[i] = _expand(list(names), [c[i] for c in columns])
        keep &= ~several
    if n and patterns.count(patterns[0]) == n and keep.all():
        chosen = _bits(patterns[0], len(names))
        return _dicts([names[j] for j in chosen], [columns[j] for j in chosen])
    at_pattern: dict[int, list[int]] = {}
    for i in np.flatnonzero(keep).tolist():
        at_pattern.setdefault(patterns[i], []).append(i)
    for p, at in at_pattern.items():
        chosen = _bits(p, len(names))
        built = _dicts([names[j] for j in chosen], [[columns[j][i] for i in at] for j in chosen])
        for i, d in zip(at, built, strict=False):
            out[i] = d
    return out


def _bits(pattern: int, width: int) -> list[int]:
    """The positions of the set bits of ``pattern``: the values an object has."""
    return [j for j in range(width) if pattern >> j & 1]


def _dicts(keys: list[str], columns: list[list[Any]]) -> list[dict[str, Any]]:
    """One dict per row; small objects (an email, a phone, a claim) by dict displays, twice as fast.

    zip(strict=True) would double the cost here; the columns have one length by construction.
    """
    rows = zip(*columns, strict=False)
    match keys:
        case [k]:
            return [{k: a} for a in columns[0]]
        case [k0, k1]:
            return [{k0: a, k1: b} for a, b in rows]
        case [k0, k1, k2]:
            return [{k0: a, k1: b, k2: c} for a, b, c in rows]
        case [k0, k1, k2, k3]:
            return [{k0: a, k1: b, k2: c, k3: d} for a, b, c, d in rows]
    return list(map(dict, map(zip, repeat(keys), rows)))


def _flatten(row: tuple[Any, ...]) -> list[Any] | None:
    items: list[Any] = []
    for value in row:
        if isinstance(value, list):
            items += value
        elif value is not None:
            items.append(value)
    return items or None


def _expand(names: list[str], row: list[Any]) -> list[dict[str, Any]]:
    """One object per value of a cell that held several (two emails -> two email objects)."""
    width = max(len(v) for v in row if isinstance(v, list))
    out = []
    for k in range(width):
        picked = [(v[k] if k < len(v) else None) if isinstance(v, list) else v for v in row]
        out.append({name: v for name, v in zip(names, picked, strict=True) if v is not None})
    return out
