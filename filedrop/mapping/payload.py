"""Build the Invoice JSON of the invoices ``prepare`` lets go, column-wise down to one dict each.

The last local step: prepare.py has converted every Field for every row, grouped rows into
invoices and decided which invoices are sent (``PreparedInvoice``); ``payloads`` turns their
columns into the API's Invoice objects. Building makes millions of small dicts, so it is shaped for
speed: objects are built in batches that share which values are present, and the cyclic garbage
collector is paused meanwhile (``no_cyclic_gc``), safely when several files are prepared at once.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from filedrop.mapping.fields import Values
from filedrop.mapping.loader import Mapping
from filedrop.mapping.tree import Field, Many, Node, Obj, walk_fields

__all__ = ["Columns", "PreparedInvoice", "build_payloads", "no_cyclic_gc", "payloads"]


@dataclass(frozen=True)
class Columns:
    """What building needs from prepare: every Field's converted values and the invoice groups."""

    mapping: Mapping
    group_vals: dict[int, np.ndarray]  # id(invoice or debtor Field) -> each group's JSON value
    row_values: dict[int, Values]  # id(any Field) -> its Values on every row
    claim_rows: list[np.ndarray]  # per claim of the mapping: bool, the rows that have that line
    gid: np.ndarray  # each row's group (invoice), in file order
    members: list[np.ndarray] | None  # each group's rows; None when each row is its own invoice
    count: int  # how many groups


@dataclass(frozen=True, eq=False)
class PreparedInvoice:
    """One invoice ready to send, and the table rows (0-based positions) it came from.

    Its JSON is built when it is about to be sent (``payloads``), not held: 200,000 invoices'
    nested dicts would take most of a gigabyte, a batch's take a few hundred kilobytes.
    """

    invoice_number: str
    rows: tuple[int, ...]
    group: int
    columns: Columns = field(repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        """This invoice's JSON (for one invoice; use ``payloads`` for many at once)."""
        return payloads([self])[0]


def payloads(invoices: list[PreparedInvoice]) -> list[dict[str, Any]]:
    """The Invoice JSON of these invoices, in order, built together (whole columns at a time).

    They must come from one ``prepare`` call, as a batch does.
    """
    if not invoices:
        return []
    columns = invoices[0].columns
    if any(invoice.columns is not columns for invoice in invoices):
        raise ValueError("payloads() takes invoices of one prepare() call")
    with no_cyclic_gc():
        return build_payloads(columns, np.array([invoice.group for invoice in invoices]))


def build_payloads(cols: Columns, good: np.ndarray) -> list[dict[str, Any]]:
    """The Invoice JSON of each good group (``good``: their group ids), in that order."""
    if len(good) == 0:
        return []
    vals = dict(cols.group_vals)
    claims, totals = _claim_lists(cols, good)
    amount = cols.mapping.invoice.get_field("originalInvoiceAmount")
    if amount is not None and amount.source == "sum_of_claims":
        summed = np.full(cols.count, None, dtype=object)
        ok = ~np.isnan(totals)
        summed[ok] = np.round(totals[ok], 2).tolist()
        vals[id(amount)] = summed
    invoices = _materialize(cols.mapping.invoice, vals, good)
    debtors = _materialize(cols.mapping.debtors, vals, good)
    for invoice, debtor_list, claim_list in zip(invoices, debtors, claims, strict=True):
        invoice["debtors"] = debtor_list or []
        invoice["claims"] = claim_list
    return invoices


def _claim_lists(cols: Columns, good: np.ndarray) -> tuple[list[list[dict[str, Any]]], np.ndarray]:
    """Each good group's claims in row order, and the sum of their amounts."""
    members, gid = cols.members, cols.gid
    rows = good if members is None else np.concatenate([members[g] for g in good])
    vals = {key: v.vals for key, v in cols.row_values.items()}
    totals = np.zeros(cols.count)
    lines: list[tuple[np.ndarray, list[Any]]] = []
    for item, p in zip(cols.mapping.claims.items, cols.claim_rows, strict=True):
        keep = rows[p[rows]]
        lines.append((keep, _materialize(item, vals, keep)))
        amount = item.get_field("remainingAmount") if isinstance(item, Obj) else None
        if amount is not None and cols.row_values[id(amount)].number is not None:
            np.add.at(totals, gid[keep], cols.row_values[id(amount)].number[keep])
    slot = np.full(cols.count, -1)
    slot[good] = np.arange(len(good))
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(good))]
    order = np.concatenate([keep for keep, _ in lines])
    built = [c for _, claims in lines for c in claims]
    if members is not None or len(lines) > 1:  # row order, then the mapping's order
        sort = np.argsort(order, kind="stable")
        order, built = order[sort], [built[k] for k in sort.tolist()]
    for s, claim in zip(slot[gid[order]].tolist(), built, strict=True):
        out[s].append(claim)
    return out, totals


@dataclass
class _GcPause:
    """Who is inside ``no_cyclic_gc`` now, process-wide (the collector is process-wide too)."""

    inside: int = 0
    was_enabled: bool = False  # the collector's state when the first one came in
    lock: threading.Lock = field(default_factory=threading.Lock)


_GC_PAUSE = _GcPause()


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the JSON is built.

    That makes millions of small dicts and lists, none of them cyclic; the collector would rescan
    all of them again and again (over a third of the time for 200,000 rows). The collector is one
    switch for the whole process and the watcher prepares files in threads, so the first one in
    switches it off and only the last one out switches it back on (and only if it was on): with a
    plain save-and-restore, a second file that started while the first had it off would leave it
    off for good.
    """
    pause = _GC_PAUSE
    with pause.lock:
        if pause.inside == 0:
            pause.was_enabled = gc.isenabled()
            gc.disable()
        pause.inside += 1
    try:
        yield
    finally:
        with pause.lock:
            pause.inside -= 1
            if pause.inside == 0 and pause.was_enabled:
                gc.enable()


def _materialize(node: Node, vals: dict[int, np.ndarray], idx: np.ndarray) -> list[Any]:
    """``node``'s JSON value at each index in ``idx`` (None where the object is not there).

    Rows are built in batches that share which values are present, so each dict is made by one
    ``dict(zip(...))`` with no per-value tests.
    """
    if isinstance(node, Field):
        return vals[id(node)][idx].tolist()
    if isinstance(node, Many):
        columns = [_materialize(item, vals, idx) for item in node.items]
        if len(columns) == 1:  # the usual case, kept to one cheap step per row
            return [None if v is None else v if type(v) is list else [v] for v in columns[0]]
        return [_flatten(row) for row in zip(*columns, strict=False)]
    n, names = len(idx), [name for name, _ in node.fields]
    if not names:
        return [{} for _ in range(n)]
    columns = [_objects(_materialize(child, vals, idx)) for _, child in node.fields]
    there = np.array([~np.equal(c, None) for c in columns])
    backed = [j for j, (_, c) in enumerate(node.fields) if any(f.from_file for f in walk_fields(c))]
    keep = there[backed].any(axis=0) if backed else np.ones(n, dtype=bool)
    out: list[Any] = [None] * n
    split = [j for j, (_, c) in enumerate(node.fields) if isinstance(c, Field) and c.split]
    for j in split:  # a cell that held several emails: one object per email
        for i in np.flatnonzero(keep).tolist():
            if isinstance(columns[j][i], list):
                out[i], keep[i] = _expand(names, [c[i] for c in columns]), False
    pattern = np.zeros(n, dtype=np.int64)
    for j in range(len(columns)):
        pattern |= there[j].astype(np.int64) << j
    for p in np.unique(pattern[keep]).tolist():
        at = np.flatnonzero(keep & (pattern == p))
        chosen = [j for j in range(len(columns)) if p >> j & 1]
        keys = [names[j] for j in chosen]
        built = _dicts(keys, [columns[j][at].tolist() for j in chosen])
        if len(at) == n:
            return built
        for i, d in zip(at.tolist(), built, strict=False):
            out[i] = d
    return out


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


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array, even when the values are lists (numpy would make a 2-d array)."""
    return np.fromiter(values, dtype=object, count=len(values))


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
