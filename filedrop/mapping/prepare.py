"""Map and validate: a Table and a Mapping -> the invoices to send and every row's fate.

The whole local job of issue 3 §3. Columns are converted whole (fields.py), then every rule is
checked column-wise here, rows are grouped into invoices and each group is sent, INVALID or
DUPLICATE; build.py then makes the JSON of those sent. Every row position ends in exactly one
place: an invoice's rows, or ``rejected`` (INVALID or DUPLICATE): the "never lose a row" promise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from filedrop.mapping.convert import (
    has_more_than_two_decimals,
    is_fodselsnummer,
    is_orgnr,
    mask_id,
    repeated,
)
from filedrop.mapping.fields import Issue, Source, Values, evaluate
from filedrop.mapping.loader import Mapping
from filedrop.mapping.payload import Columns, build_payloads, no_cyclic_gc
from filedrop.mapping.tree import Field, Node, Obj, walk_fields
from filedrop.read import Table
from filedrop.states import RowStatus

__all__ = ["Prepared", "PreparedInvoice", "Problem", "payloads", "prepare"]

# Not configurable: sending a repeated invoice number, or an empty row, is never right.
_FIXED_RULES = ("duplicate", "empty_row")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one value of one row, as the user will read it."""

    row: int  # the row number the user sees
    column: str | None
    value: str | None  # as typed; national ids masked
    message: str
    severity: Literal["error", "warning"]
    rule: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


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


@dataclass
class Prepared:
    """What ``prepare`` decided for every row of one table."""

    table: Table
    mapping: Mapping
    invoices: list[PreparedInvoice]
    rejected: dict[int, tuple[RowStatus, str]]
    notes: dict[int, str]
    problems: list[Problem] = field(default_factory=list)


def prepare(table: Table, mapping: Mapping) -> Prepared:
    """Map every row, check every rule, group rows into invoices, and build their JSON."""
    src = Source(
        cells=table.cells,
        values=table.values if table.info.kind == "excel" else None,
        headers=table.headers,
        positions=mapping.resolve_columns(table.headers, file_name=table.path.name),
        decimal=mapping.decimal,
        thousands=mapping.thousands,
        strptime_formats=mapping.strptime_formats,
        date_formats=mapping.date_formats,
    )
    run = _Run(table, mapping, src)
    run.check_invoice()
    run.check_debtors()
    run.check_claims()
    run.check_duplicates()
    return run.decide()


@dataclass
class _Level:
    """A Field's values per invoice, from the first row of each group that has one (``at``)."""

    values: Values
    at: np.ndarray


class _Run:
    """The state of one ``prepare``: converted columns, groups, and the issues found so far."""

    def __init__(self, table: Table, mapping: Mapping, src: Source) -> None:
        self.table, self.mapping, self.issues = table, mapping, list[Issue]()
        n = len(table)
        self.rows: dict[int, Values] = {}
        done: dict[Field, Values] = {}  # one column feeding two fields is converted once
        for f in self.fields(mapping.invoice, mapping.debtors, mapping.claims):
            same = replace(f, key=f.key if f.source == "constant" else "", required=False, what="")
            if same not in done:
                done[same] = evaluate(f, src, self.issues)
            self.rows[id(f)] = done[same]
        self.blank = np.ones(n, dtype=bool)  # the reader drops empty rows; this is a backstop
        for pos in range(len(table.headers)):
            self.blank &= (table.cells[pos] == "").to_numpy(dtype=bool)
            if not self.blank.any():
                break
        self.gid, self.members = self.group(src)
        self.first = np.array([m[0] for m in self.members], dtype=int) if self.members else self.gid
        self.count = len(self.first)
        self.level = {
            id(f): self.at_level(f) for f in self.fields(mapping.invoice, mapping.debtors)
        }
        self.present: list[np.ndarray] = []
        self.duplicate_of = np.full(self.count, -1)

    @staticmethod
    def fields(*nodes: Node) -> list[Field]:
        return [f for node in nodes for f in walk_fields(node)]

    def group(self, src: Source) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Group id per row, in file order; None for members when each row is its own invoice."""
        n = len(self.table)
        if not self.mapping.group_by:
            return np.arange(n), None
        key = self.table.cells[src.positions[self.mapping.group_by]]
        key = np.array([v.strip() for v in key.tolist()], dtype=object)
        codes, _ = pd.factorize(key)
        alone = (key == "") | self.blank  # no key: a row of its own
        codes[alone] = codes.max(initial=0) + 1 + np.arange(int(alone.sum()))
        gid, _ = pd.factorize(codes)
        order = np.argsort(gid, kind="stable")
        return gid, np.split(order, np.flatnonzero(np.diff(gid[order])) + 1) if n else []

    def at_level(self, f: Field) -> _Level:
        v = self.rows[id(f)]
        if self.members is None:
            return _Level(values=v, at=self.first)
        at = self.first.copy()
        filled = np.flatnonzero(~v.empty)
        found, first = np.unique(self.gid[filled], return_index=True)
        at[found] = filled[first]
        number = None if v.number is None else v.number[at]
        return _Level(Values(v.vals[at], v.text[at], v.label[at], number, v.empty[at]), at)

    def members_of(self, g: int) -> tuple[int, ...]:
        return (int(self.first[g]),) if self.members is None else tuple(self.members[g].tolist())

    def add(
        self, pos: int, rule: str, v: Values | None, i: int, message: str, *, value: str | None = ""
    ) -> None:
        label = v.label[i] if v is not None else None
        shown = v.text[i] if v is not None and value == "" else value
        self.issues.append((int(pos), rule, label, shown, message))

    # --- rules ------------------------------------------------------------------------------------

    def required(self, f: Field, lv: _Level, where: np.ndarray, why: str) -> None:
        v = lv.values
        for g in np.flatnonzero(where & v.empty):
            self.add(lv.at[g], "required", v, g, f"{v.label[g]} is empty ({why})", value=None)

    def amounts(self, lv: _Level, where: np.ndarray) -> None:
        v = lv.values
        if v.number is None:
            return
        with np.errstate(invalid="ignore"):
            not_positive = where & (v.number <= 0)
        for g in np.flatnonzero(not_positive):
            why = "is not a positive amount (it must be more than 0)"
            self.add(lv.at[g], "amount", v, g, f'{v.label[g]} "{v.text[g]}" {why}')
        for g in np.flatnonzero(where & ~not_positive & has_more_than_two_decimals(v.number)):
            self.add(
                lv.at[g], "amount", v, g, f'{v.label[g]} "{v.text[g]}" has more than two decimals'
            )

    def check_invoice(self) -> None:
        invoice, everywhere = self.mapping.invoice, np.ones(self.count, dtype=bool)
        for name, node in invoice.fields:
            if isinstance(node, Field) and node.required and node.source != "sum_of_claims":
                self.required(
                    node, self.level[id(node)], everywhere, f"the invoice needs {node.what or name}"
                )
        amount = invoice.get_field("originalInvoiceAmount")
        if amount is not None and amount.source != "sum_of_claims":
            self.amounts(self.level[id(amount)], everywhere)
        due, issued = invoice.get_field("dueDate"), invoice.get_field("invoiceDate")
        if due is None or issued is None:
            return
        d, i = self.level[id(due)], self.level[id(issued)]
        if d.values.number is None or i.values.number is None:
            return
        dv, iv = d.values, i.values
        for g in np.flatnonzero(dv.number < iv.number):  # NaT compares False
            message = (
                f'{dv.label[g]} "{dv.text[g]}" is before {iv.label[g]} "{iv.text[g]}"'
                " (the due date cannot be before the invoice date)"
            )
            self.add(d.at[g], "due_date", dv, g, message)

    def check_debtors(self) -> None:
        debtors = self.mapping.debtors
        any_debtor = np.zeros(self.count, dtype=bool)
        for item in debtors.items:
            assert isinstance(item, Obj)
            present = self.there(item, self.level_values, self.count)
            any_debtor |= present
            for name, node in item.fields:
                if isinstance(node, Field) and node.required:
                    self.required(
                        node, self.level[id(node)], present, f"a debtor needs {node.what or name}"
                    )
            kind = item.get_field("type")
            types = repeated("", self.count)
            if kind is not None:
                types[:] = [str(t).upper() for t in self.level[id(kind)].values.vals]
            private = present & (types == "PRIVATE")
            for name in ("firstname", "lastname"):
                f = item.get_field(name)
                if f is not None:
                    self.required(f, self.level[id(f)], private, f"a PRIVATE debtor needs {f.what}")
                    continue
                for g in np.flatnonzero(private):
                    why = f"the debtor is PRIVATE, but the mapping has no {item.key}.{name}"
                    self.add(self.first[g], "required", None, g, why, value=None)
            ident = item.get_field("identificationNumber")
            if ident is not None:
                self.national_ids(self.level[id(ident)], types, present)
        backed = [f for f in walk_fields(debtors.items[0]) if f.from_file]
        labels = (
            ", ".join(self.level[id(f)].values.label[0] for f in backed[:3]) if self.count else ""
        )
        for g in np.flatnonzero(~any_debtor):
            why = f"{labels or 'the debtor columns'} are empty (the invoice needs a debtor)"
            self.add(self.first[g], "required", None, g, why, value=None)

    def national_ids(self, lv: _Level, types: np.ndarray, present: np.ndarray) -> None:
        """A PRIVATE debtor needs a fødselsnummer or D-number, a COMPANY an organisation number."""
        v = lv.values
        has = present & ~v.empty
        ids = pd.Series(v.vals, dtype=object).where(has, "").astype(str)
        fnr, org = has & is_fodselsnummer(ids), has & is_orgnr(ids)
        length = ids.str.len().to_numpy()
        private, company = types == "PRIVATE", types == "COMPANY"
        other = ~private & ~company  # a type the API may add: judge by the length
        for g in np.flatnonzero(has & ~fnr & (private | (other & (length == 11)))):
            shown = v.text[g] if org[g] else mask_id(v.text[g])
            why = (
                "is an organisation number, but the debtor is PRIVATE (expected an 11-digit"
                " fødselsnummer or D-number)"
                if org[g]
                else "is not a valid fødselsnummer or D-number (expected 11 digits with correct"
                " check digits)"
            )
            self.add(lv.at[g], "national_id", v, g, f'{v.label[g]} "{shown}" {why}', value=shown)
        for g in np.flatnonzero(has & ~org & (company | (other & (length == 9)))):
            shown = mask_id(v.text[g]) if fnr[g] or length[g] != 9 else v.text[g]
            why = (
                "is a fødselsnummer, but the debtor is COMPANY (expected a 9-digit organisation"
                " number)"
                if fnr[g]
                else "is not a valid organisation number (expected 9 digits with a correct check"
                " digit)"
            )
            self.add(lv.at[g], "orgnr", v, g, f'{v.label[g]} "{shown}" {why}', value=shown)

    def level_values(self, f: Field) -> Values:
        return self.level[id(f)].values

    def row_values(self, f: Field) -> Values:
        return self.rows[id(f)]

    @staticmethod
    def there(obj: Obj, values_of: Any, count: int) -> np.ndarray:
        """An object is there where any of its file-backed values is (constants alone: always)."""
        backed = [f for f in walk_fields(obj) if f.from_file]
        out = np.zeros(count, dtype=bool) if backed else np.ones(count, dtype=bool)
        for f in backed:
            out |= ~values_of(f).empty
        return out

    def check_claims(self) -> None:
        """Which claim lines each row has: a line with an empty or zero amount is left out."""
        n, claims = len(self.table), self.mapping.claims.items
        amounts = [item.get_field("remainingAmount") for item in claims if isinstance(item, Obj)]
        for item, f in zip(claims, amounts, strict=True):
            v = self.rows[id(f)] if f is not None else None
            if v is None or v.number is None:
                self.present.append(self.there(item, self.row_values, n))
            else:
                with np.errstate(invalid="ignore"):
                    self.present.append(~v.empty & (v.number != 0))
        any_claim = np.zeros(self.count, dtype=bool)
        for p in self.present:
            np.logical_or.at(any_claim, self.gid, p)
        self.present[0][self.first[~any_claim]] = True  # none: keep the first, to say what is wrong
        everyrow = np.arange(n)
        for item, p, f in zip(claims, self.present, amounts, strict=True):
            if f is not None:
                lv = _Level(self.rows[id(f)], everyrow)
                self.required(f, lv, p, "the invoice needs a claim amount")
                self.amounts(lv, p & ~lv.values.empty)
            for name, node in item.fields:
                if isinstance(node, Field) and node.required and name != "remainingAmount":
                    self.required(
                        node,
                        _Level(self.rows[id(node)], everyrow),
                        p,
                        f"a claim needs {node.what or name}",
                    )

    def check_duplicates(self) -> None:
        """A group whose invoice number an earlier group has is a DUPLICATE of that group."""
        number = self.mapping.invoice.get_field("invoiceNumber")
        if number is None or self.count == 0:
            return
        v = self.level[id(number)].values
        keys = pd.Series(v.vals, dtype=object).where(~v.empty & ~self.blank[self.first], None)
        codes, _ = pd.factorize(keys, use_na_sentinel=True)
        later = pd.Series(codes).duplicated().to_numpy() & (codes >= 0)
        if later.any():
            first_group = {c: g for g, c in reversed(list(enumerate(codes.tolist())))}
            rows = self.table.row_numbers
            for g in np.flatnonzero(later):
                self.duplicate_of[g] = first = first_group[codes[g]]
                why = f"invoice number {v.vals[g]} already appears on row {rows[self.first[first]]}"
                for r in self.members_of(g):
                    self.add(r, "duplicate", v, g, why)

    # --- outcome ----------------------------------------------------------------------------------

    def problems(self) -> list[tuple[int, Problem]]:
        # An empty row says only that: its missing values are no news.
        issues = [issue for issue in self.issues if not self.blank[issue[0]]]
        issues += [
            (int(i), "empty_row", "", None, "the row is empty") for i in np.flatnonzero(self.blank)
        ]
        out: list[tuple[int, Problem]] = []
        seen: set[tuple[int, str, str, str | None]] = set()
        for pos, rule, label, value, message in issues:
            # One cell feeding two fields (Beløp: invoice and claim amount) is one problem.
            if (pos, rule, label, value) in seen:
                continue
            seen.add((pos, rule, label, value))
            severity = "error" if rule in _FIXED_RULES else self.mapping.severity(rule)
            if severity != "off":
                row = int(self.table.row_numbers[pos])
                kind: Literal["error", "warning"] = "error" if severity == "error" else "warning"
                out.append((pos, Problem(row, label or None, value, message, kind, rule)))
        out.sort(key=lambda item: item[0])  # stable: within a row, in the order the rules ran
        return out

    def decide(self) -> Prepared:
        """Each group is sent, INVALID (an error on one of its rows) or DUPLICATE."""
        problems = self.problems()
        errors: dict[int, list[Problem]] = defaultdict(list)
        warnings: dict[int, list[str]] = defaultdict(list)
        for pos, p in problems:
            if p.severity == "error":
                errors[int(self.gid[pos])].append(p)
            else:
                warnings[pos].append(p.message)
        number = self.mapping.invoice.get_field("invoiceNumber")
        numbers = self.level[id(number)].values.vals if number else repeated("", self.count)
        row_numbers = self.table.row_numbers
        rejected: dict[int, tuple[RowStatus, str]] = {}
        bad = self.duplicate_of >= 0
        bad[list(errors)] = True
        for g in np.flatnonzero(bad).tolist():
            if self.duplicate_of[g] >= 0:
                why = next(p.message for p in errors[g] if p.rule == "duplicate")
                rejected.update(dict.fromkeys(self.members_of(g), (RowStatus.DUPLICATE, why)))
                continue
            for r in self.members_of(g):
                own = int(row_numbers[r])
                text = "; ".join(p.message if p.row == own else str(p) for p in errors[g])
                rejected[r] = (RowStatus.INVALID, text)
        good = np.flatnonzero(~bad)
        columns = self.columns()
        with no_cyclic_gc():
            if self.members is None:
                members: list[tuple[int, ...]] = [(r,) for r in self.first[good].tolist()]
            else:
                members = [self.members_of(g) for g in good.tolist()]
            invoices = [
                PreparedInvoice(invoice_number=str(no), rows=m, group=g, columns=columns)
                for no, m, g in zip(numbers[good].tolist(), members, good.tolist(), strict=True)
            ]
        notes = {r: "; ".join(w) for r, w in warnings.items() if not bad[self.gid[r]]}
        return Prepared(
            self.table, self.mapping, invoices, rejected, notes, [p for _, p in problems]
        )

    def columns(self) -> Columns:
        """The converted columns and groups, for build.py."""
        return Columns(
            mapping=self.mapping,
            group_vals={key: lv.values.vals for key, lv in self.level.items()},
            row_values=self.rows,
            claim_rows=self.present,
            gid=self.gid,
            members=self.members,
            count=self.count,
        )
