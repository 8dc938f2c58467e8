"""Debtor values that depend on another value of the same row.

Run between fields.py and the checks: a debtor's type read from the length of its id
(``type = { from_id = true }``), then a ``full_name`` split into firstname and lastname, which
needs that type because a company's name is never split. Nothing is refused here; a value that
cannot be worked out stays empty with its text, and checks.py says why.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from filedrop.mapping.fields import Issue, Source, Values, evaluate
from filedrop.mapping.loader import Mapping
from filedrop.mapping.tree import Field, Obj

__all__ = ["ID_LENGTH_TYPES", "derive_debtors", "split_full_names"]

ID_LENGTH_TYPES = {9: "COMPANY", 10: "PRIVATE", 11: "PRIVATE"}
"""Digits of an identification number -> the debtor type it shows: an organisation number has 9,
a fødselsnummer 11 (10 once a spreadsheet dropped its leading zero)."""


def derive_debtors(
    mapping: Mapping, rows: dict[int, Values], src: Source, issues: list[Issue]
) -> None:
    """Fill each debtor's type from its id and split its full name, in ``rows`` (by ``id(field)``).

    New Values replace the old ones: fields.py shares one Values between equal fields.
    """
    for item in mapping.debtors.items:
        assert isinstance(item, Obj)
        kind, ident = item.get_field("type"), item.get_field("identificationNumber")
        if kind is not None and kind.source == "from_id" and ident is not None:
            rows[id(kind)] = _type_from_id(kind, rows[id(ident)], src, issues)
        first, last = item.get_field("firstname"), item.get_field("lastname")
        if first is None or last is None or not first.name_part:
            continue
        n = src.n
        types = (
            np.array([str(t).upper() for t in rows[id(kind)].vals], dtype=object)
            if kind is not None
            else np.full(n, "", dtype=object)
        )
        rows[id(first)], rows[id(last)] = split_full_names(rows[id(first)], types)


def _type_from_id(kind: Field, ident: Values, src: Source, issues: list[Issue]) -> Values:
    """COMPANY for 9 digits, PRIVATE for 10 or 11; empty (with the id's text) otherwise."""
    lengths = np.array(
        [len(v) if isinstance(v, str) and v.isdigit() else 0 for v in ident.vals], dtype=int
    )
    vals = np.array([ID_LENGTH_TYPES.get(k) for k in lengths.tolist()], dtype=object)
    out = Values(
        vals=vals,
        text=ident.text,
        label=ident.label,
        number=None,
        empty=np.equal(vals, None),
    )
    if kind.default is not None and out.empty.any():
        # The default's own problems are said for the rows that needed it, and a cell of it that
        # gave no type (an Excel error) leaves the type unknown, which the checks say, rather
        # than sending the debtor without one.
        own: list[Issue] = []
        alt = evaluate(kind.default, src, own)
        wanted = out.empty.copy()
        take = wanted & ~alt.missing()
        out.vals[take] = alt.vals[take]
        out.empty &= ~take
        issues += [issue for issue in own if wanted[issue.position]]
    return out


def split_full_names(full: Values, types: np.ndarray) -> tuple[Values, Values]:
    """(firstname, lastname) from one column of whole names.

    A COMPANY's name is never split: all of it is the lastname, as Amili takes a company's name.
    Anyone else's is split: "Etternavn, Fornavn" at the comma, else "Fornavn [Mellomnavn]
    Etternavn" before the last word. One word alone leaves the first name empty, and the checks
    say so.
    """
    n = len(full.vals)
    first = np.full(n, None, dtype=object)
    last = np.full(n, None, dtype=object)
    # A cell that gave no name (an Excel error) has none to split: both parts are left without
    # a value, for the checks to say so, never the text "None".
    missing = full.missing()
    nothing = missing & ~full.empty
    for i in np.flatnonzero(~missing).tolist():
        name = str(full.vals[i])
        if types[i] == "COMPANY":
            last[i] = name
            continue
        if "," in name:
            surname, _, given = name.partition(",")
            surname, given = surname.strip(), given.strip()
        else:
            words = name.split() or [""]  # a name of spaces str.split knows: no name
            given, surname = " ".join(words[:-1]), words[-1]
        first[i], last[i] = given or None, surname or None
    return _part(full, first, nothing), _part(full, last, nothing)


def _part(full: Values, vals: np.ndarray, nothing: np.ndarray) -> Values:
    """A part of the name: empty where the name has no such part (one word has no first name),
    but not where the cell gave no name at all, which is not "one name only"."""
    return replace(
        full,
        vals=vals,
        lazy=None,
        empty=pd.isna(pd.Series(vals, dtype=object)).to_numpy(dtype=bool) & ~nothing,
    )
