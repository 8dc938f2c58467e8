"""The rules over converted values: required fields, amounts, dates in order, national ids.

Each check takes the converted values it needs and returns its Issues; none depends on another
having run. Invoice and debtor fields are checked once per invoice (``Level``), claim fields once
per claim line (row). Conversion failures (a date that is no date) are found earlier, in fields.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from filedrop.mapping.convert import (
    CURRENCIES,
    KRONE_CURRENCIES,
    SHORTENED,
    SPACES,
    has_more_than_two_decimals,
    is_fodselsnummer,
    is_orgnr,
    line_break,
    marked_currencies,
    mask_id,
    matching_lines,
    quoted,
    repeated,
    shown,
)
from filedrop.mapping.fields import CONTROL, DECIMALS_WRITTEN, MAX_AMOUNT_EXCLUSIVE, Issue, Values
from filedrop.mapping.groups import Groups, Level
from filedrop.mapping.loader import Mapping
from filedrop.mapping.tree import Field, Many, Obj, walk_fields

__all__ = [
    "Payment",
    "check_amount_currencies",
    "check_claim_sums",
    "check_claims",
    "check_claims_within_amount",
    "check_debtors",
    "check_group_agreement",
    "check_invoice",
    "check_payments_taken_off",
    "claim_lines",
    "there",
]


def check_invoice(
    mapping: Mapping, level: dict[int, Level], count: int, *, from_csv: bool = True
) -> list[Issue]:
    """Each of ``count`` invoices: required fields, a positive amount, due date not before issue.
    ``from_csv``: the table is a CSV's, whose cells hold the text a number format showed."""
    issues: list[Issue] = []
    invoice, everywhere = mapping.invoice, np.ones(count, dtype=bool)
    for name, node in invoice.fields:
        if isinstance(node, Field) and node.required and node.source != "sum_of_claims":
            why = f"the invoice needs {node.what or name}"
            issues += _required(level[id(node)], everywhere, why)
    number = invoice.get_field("invoiceNumber")
    if number is not None:
        lv = level[id(number)]
        texts = ["" if t is None else str(t) for t in lv.values.text.tolist()]
        issues += (
            _shortened_numbers(lv, texts)
            + _formatted_numbers(lv, texts, from_csv=from_csv)
            + _apostrophe_numbers(lv, texts)
            + _broken_numbers(lv, texts)
        )
    amount = invoice.get_field("originalInvoiceAmount")
    if amount is not None and amount.source != "sum_of_claims":
        issues += _amounts(level[id(amount)], everywhere)
    due, issued = invoice.get_field("dueDate"), invoice.get_field("invoiceDate")
    if due is None or issued is None:
        return issues
    d, i = level[id(due)], level[id(issued)]
    if d.values.number is None or i.values.number is None:
        return issues
    dv, iv = d.values, i.values
    for g in np.flatnonzero(dv.number < iv.number):  # NaT compares False
        message = (
            f"{dv.label[g]} {quoted(dv.text[g])} is before {iv.label[g]} {quoted(iv.text[g])}"
            " (the due date cannot be before the invoice date)"
        )
        issues.append(_issue(d.at[g], "due_date", dv, g, message))
    return issues


def check_debtors(mapping: Mapping, level: dict[int, Level], groups: Groups) -> list[Issue]:
    """Each invoice has a debtor; each debtor its required fields and a valid national id."""
    issues: list[Issue] = []
    debtors, count = mapping.debtors, groups.count
    any_debtor = np.zeros(count, dtype=bool)
    for item in debtors.items:
        assert isinstance(item, Obj)
        present = there(item, lambda f: level[id(f)].values, count)
        any_debtor |= present
        for name, node in item.fields:
            if isinstance(node, Field) and node.source == "from_id":
                issues += _type_unknown(level[id(node)], present)
            elif isinstance(node, Field) and node.required:
                issues += _required(level[id(node)], present, f"a debtor needs {node.what or name}")
        kind = item.get_field("type")
        types = repeated("", count)
        if kind is not None:
            types[:] = list(map(str.upper, map(str, level[id(kind)].values.vals)))
        private = present & (types == "PRIVATE")
        company = present & (types == "COMPANY")
        for name in ("firstname", "lastname"):
            f = item.get_field(name)
            if f is not None and f.name_part:
                issues += _one_name(level[id(f)], private)
                issues += _not_a_persons_name(level[id(f)], private)
            if f is not None:
                issues += _numbers_as_names(level[id(f)], private, company & (name == "lastname"))
                issues += _required(level[id(f)], private, f"a PRIVATE debtor needs {f.what}")
                continue
            why = f"the debtor is PRIVATE, but the mapping has no {item.key}.{name}"
            issues += [
                _issue(groups.first[g], "required", None, g, why, value=None)
                for g in np.flatnonzero(private)
            ]
        issues += _company_names(item, level, company, groups)
        ident = item.get_field("identificationNumber")
        if ident is not None:
            issues += _national_ids(level[id(ident)], types, present, key=ident.key)
        issues += _zip_codes(item, level)
    backed = [f for f in walk_fields(debtors.items[0]) if f.from_file]
    for g in np.flatnonzero(~any_debtor).tolist():
        # The columns as this invoice's row names them (a default's column where it stood in).
        # Each named once: a full name split into first and last names is one column.
        labels = ", ".join(
            list(dict.fromkeys(str(level[id(f)].values.label[g]) for f in backed))[:3]
        )
        why = f"{labels or 'the debtor columns'} are empty (the invoice needs a debtor)"
        issues.append(_issue(groups.first[g], "required", None, g, why, value=None))
    return issues


def _company_names(
    item: Obj, level: dict[int, Level], company: np.ndarray, groups: Groups
) -> list[Issue]:
    """A COMPANY debtor needs its name, which Amili takes as the last name (mappings/README.md):
    one without passed validate and then FAILED at the API ("Debtor company name is required",
    naming no column), the name typed in Fornavn or not at all."""
    last = item.get_field("lastname")
    if last is not None:
        return _required(level[id(last)], company, "a COMPANY debtor needs its name")
    why = (
        f"the debtor is COMPANY, but the mapping has no {item.key}.lastname, where Amili takes "
        "a company's name"
    )
    return [
        _issue(groups.first[g], "required", None, g, why, value=None)
        for g in np.flatnonzero(company)
    ]


#: What a country column says for Norway: its code, and its name as exports write it.
_NORWAY = frozenset({"NO", "NOR", "NORGE", "NOREG", "NORWAY"})
#: A Norwegian postal code: four digits, 0001 to 9999.
_NORWEGIAN_ZIP = re.compile(r"(?!0000)[0-9]{4}")


def _zip_codes(debtor: Obj, level: dict[int, Level]) -> list[Issue]:
    """Rule ``zip`` for each address of ``debtor`` (``_norwegian_zip_codes``)."""
    addresses = debtor.get("addresses")
    if not isinstance(addresses, Many):
        return []
    return [
        issue
        for address in addresses.items
        if isinstance(address, Obj)
        for issue in _norwegian_zip_codes(address, level)
    ]


def _norwegian_zip_codes(address: Obj, level: dict[int, Level]) -> list[Issue]:
    """Rule ``zip``: an address sent with countryCode NO (or a country column saying Norway
    otherwise: NOR, Norge) has a Norwegian postal code, four digits. "NO-0150", "5003 Bergen"
    or a German "12345" went out as Norwegian postal codes, and a collection letter to them
    goes astray; the debtor never hears of the claim."""
    zip_field, country_field = address.get_field("zipCode"), address.get_field("countryCode")
    if zip_field is None or country_field is None:
        return []
    zips, countries = level[id(zip_field)], level[id(country_field)].values
    v = zips.values
    # Per distinct value: a file's zip codes and countries repeat.
    codes, unique_codes = pd.factorize(pd.Series(v.vals, dtype=object))
    lands, unique_lands = pd.factorize(pd.Series(countries.vals, dtype=object))
    # Digits written with decimals ("5003.0") in a padded column are refused as such already
    # (rule text); in another, this is what says so.
    told = DECIMALS_WRITTEN if zip_field.pad else None
    good = np.array(
        [
            bool(_NORWEGIAN_ZIP.fullmatch(str(c)) or (told and told.match(str(c))))
            for c in unique_codes
        ]
        + [True]
    )
    norway = np.array([str(c).strip().upper() in _NORWAY for c in unique_lands] + [False])
    issues = []
    for g in np.flatnonzero(norway[lands] & ~good[codes]).tolist():  # -1 (None): the last
        issues.append(
            _issue(
                zips.at[g],
                "zip",
                v,
                g,
                f"{v.label[g]} {quoted(v.text[g])} is not a Norwegian postal code (4 digits), and "
                f"the address goes with countryCode {shown(str(countries.vals[g]))}; correct it "
                "in the export, or map countryCode from a column if the address is abroad",
            )
        )
    return issues


def check_claim_sums(
    mapping: Mapping, sums: np.ndarray | None, rows: dict[int, Values], groups: Groups
) -> list[Issue]:
    """An invoice whose amount is the sum of its claims (``sums``, from ``claim_totals``), and
    they add up to 14 whole digits or more: no JSON number holds that exactly to the øre, so it
    is never sent (``MAX_AMOUNT_EXCLUSIVE``)."""
    if sums is None:
        return []
    amounts = [rows[id(f)] for f in mapping.claim_amounts if f is not None]
    issues: list[Issue] = []
    with np.errstate(invalid="ignore"):
        too_large = np.abs(sums) >= MAX_AMOUNT_EXCLUSIVE  # NaN: a claim is no number, told apart
    for g in np.flatnonzero(too_large).tolist():
        first = int(groups.first[g])
        named = " + ".join(dict.fromkeys(str(v.label[first]) for v in amounts))
        why = f"the claims ({named}) add up to more than an amount can hold (the invoice's sum)"
        issues.append(Issue(first, "amount_sum", None, None, why))
    return issues


def check_claims_within_amount(
    mapping: Mapping,
    level: dict[int, Level],
    rows: dict[int, Values],
    groups: Groups,
    lines: list[np.ndarray],
) -> list[Issue]:
    """Rule ``amount``: an invoice's PRINCIPAL claims owe no more than the invoice's amount. A
    slip in either column (980,00 invoiced, 9 800,00 still owed), or a mapping that took the
    amount before VAT for the invoice's, sent the debtor to collection for more than was ever
    invoiced, and validate called the row valid. Fees and interest (another claim type) may
    add to it; an invoice whose amount is the sum of its claims has nothing to compare."""
    amount = mapping.invoice.get_field("originalInvoiceAmount")
    if amount is None or amount.source == "sum_of_claims" or id(amount) not in level:
        return []
    invoiced = level[id(amount)]
    if invoiced.values.number is None:
        return []
    owed, _, owing = _principal_claims(mapping, rows, groups, lines)
    # NaN: an amount that is no number; past the float's range (1e308, refused as too large):
    # both told by their own rule, with no numpy warning on the user's terminal.
    with np.errstate(invalid="ignore", over="ignore"):
        over = np.round(owed, 2) > np.round(invoiced.values.number, 2)
    issues: list[Issue] = []
    for g in np.flatnonzero(over).tolist():
        v = invoiced.values
        mine = [(c, r) for c, principal in owing for r in groups.members_of(g) if principal[r]]
        if len(mine) == 1:
            c, r = mine[0]
            said = f"{c.label[r]} {quoted(c.text[r])} is"
        else:
            named = ", ".join(dict.fromkeys(str(c.label[r]) for c, r in mine))
            said = f"the claims ({named}) add up to {owed[g]:.2f}, which is"
        why = (
            f"{said} more than {v.label[g]} {quoted(v.text[g])}, the invoice's amount: the "
            "debtor would be asked for more than was invoiced; correct it in the export (or, if "
            f"{v.label[g]} is not the invoice's whole amount, map originalInvoiceAmount from the "
            "column that is)"
        )
        issues.append(_issue(invoiced.at[g], "amount", v, g, why))
    return issues


def _principal_claims(
    mapping: Mapping, rows: dict[int, Values], groups: Groups, lines: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[tuple[Values, np.ndarray]]]:
    """Each invoice's PRINCIPAL claims added up (NaN where one is no number), its claims of
    every type that are numbers added up, and each claim's amounts with the rows where it is a
    PRINCIPAL one."""
    owed, every = np.zeros(groups.count), np.zeros(groups.count)
    owing: list[tuple[Values, np.ndarray]] = []
    for item, present in zip(mapping.claims.items, lines, strict=True):
        assert isinstance(item, Obj)
        claim, kind = item.get_field("remainingAmount"), item.get_field("type")
        if claim is None or rows[id(claim)].number is None:
            continue
        amounts = rows[id(claim)].number
        numbered = present & ~np.isnan(amounts)
        principal = numbered.copy()
        if kind is not None and kind.source == "constant":  # the usual: decided once
            principal &= str(kind.constant).strip().upper() == "PRINCIPAL"
        elif kind is not None:
            kinds = pd.Series(rows[id(kind)].vals, dtype=object).astype(str).str.strip()
            principal &= (kinds.str.upper() == "PRINCIPAL").to_numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            for total, where in ((owed, principal), (every, numbered)):
                at = np.flatnonzero(where)
                np.add.at(total, groups.gid[at], amounts[at])
        owing.append((rows[id(claim)], principal))
    return owed, every, owing


class Payment(NamedTuple):
    """What a row shows paid on its invoice, in a column of what was paid that no amount field
    reads (``loader.payments_unread``)."""

    header: str
    label: str
    text: str
    paid: float  # the cell as an amount; NaN for a text ("Ja", a date)
    unsaved: Issue | None  # a formula whose result was never saved
    elsewhere: str = ""  # where it shows, when not on the invoice's own row: "on row 5 …"
    #: The rows ("row 3", "rows 3 and 4") of lines a skip rule left out whose amounts below
    #: zero are the payment (a ledger's "Innbetaling"); "" for a column of what was paid.
    line: str = ""


def check_payments_taken_off(
    mapping: Mapping,
    level: dict[int, Level],
    rows: dict[int, Values],
    groups: Groups,
    lines: list[np.ndarray],
    *,
    payments: dict[int, Payment],
) -> list[Issue]:
    """Rule ``paid``: an invoice that shows a payment (``payments``, by the row it is sent
    from) that its PRINCIPAL claims (all its claims, where none is one) do not take off: they
    owe more than its amount less that payment, to the øre, and it would go to collection for
    what was paid. A payment written as a text ("Ja") is taken off by claims that owe anything
    less than the amount. An invoice whose amount is the sum of its claims, or no number,
    cannot show it: refused. A formula with no saved result in that column refuses its invoice
    with its own message, as in a column read."""
    if not payments:
        return []
    amount = mapping.invoice.get_field("originalInvoiceAmount")
    invoiced = level.get(id(amount)) if amount is not None else None
    whole = invoiced.values.number if invoiced is not None else None
    principal, claims, owing = _principal_claims(mapping, rows, groups, lines)
    any_principal = np.zeros(groups.count, dtype=bool)
    for _, where in owing:
        any_principal[groups.gid[np.flatnonzero(where)]] = True
    owed = np.where(any_principal, principal, claims)
    currency = mapping.invoice.get_field("currency")
    known_currency = currency is not None and id(currency) in level
    currencies = level[id(currency)].values.vals if known_currency else None
    issues: list[Issue] = []
    for at, paid in payments.items():
        if paid.unsaved is not None:
            message = paid.elsewhere + paid.unsaved.message
            issues.append(paid.unsaved._replace(position=at, message=message))
            continue
        g = groups.gid[at]
        left = (
            np.nan if whole is None else whole[g] - (0 if np.isnan(paid.paid) else abs(paid.paid))
        )
        said = _not_taken_off(
            paid,
            other=_paid_in_another_currency(paid, currencies, g),
            known=whole is not None and not np.isnan(whole[g]),
            owed=owed[g],
            left=left,
        )
        if said is None:
            continue
        shows, why = said
        issues.append(
            Issue(
                at,
                "paid",
                paid.label,
                paid.text,
                f"{paid.elsewhere}{shown(paid.label)} {quoted(paid.text)} {shows}, {why}, or "
                + (
                    f"remove {paid.line} if {'they are' if ' and ' in paid.line else 'it is'} "
                    "on another invoice"
                    if paid.line
                    else f"name {quoted(paid.header)} in [match] unread if it is not a payment "
                    "on this invoice"
                ),
            )
        )
    return issues


#: The way on for an invoice whose payment its claims do not take off.
_EXPORT_OWED = "export the amount still owed and read it as a claim's remainingAmount"


def _not_taken_off(
    paid: Payment, *, other: tuple[str, str] | None, known: bool, owed: float, left: float
) -> tuple[str, str] | None:
    """What a payment its invoice's claims do not take off shows, and why that stops the
    invoice; None where they take it off. ``other``: the payment's currency and the invoice's,
    where they differ; ``known``: whether the invoice's amount is a column's number; ``owed``:
    what its claims add up to; ``left``: its amount less the payment (NaN when not known). A
    payment written as a text ("Ja") is taken off by claims that owe anything less than the
    amount; a number that is no amount filedrop reads (a date, "1'000") never is."""
    text = np.isnan(paid.paid)
    error = text and paid.text.lstrip().startswith("#")  # #N/A, #DIV/0!: Excel's, no value
    if other is not None:
        return (
            f"is in {other[0]}, but the invoice's currency is {other[1]}",
            f"so what was paid on it cannot be taken off its amount: {_EXPORT_OWED}",
        )
    if text and not error and any(c.isdigit() for c in paid.text):
        return (
            "holds a number that filedrop cannot read as an amount paid (a date, or an amount "
            "written otherwise)",
            "so what was paid on it cannot be told: write the payment as the column's other "
            f"amounts are written, or {_EXPORT_OWED}",
        )
    with np.errstate(invalid="ignore"):
        owes, may_owe = np.round(owed, 2), np.round(left, 2)  # NaN: not known, never less
        if owes < may_owe if text else owes <= may_owe:
            return None
    if not known:
        why = (
            "but the invoice's amount is not read from a column, or is no number, so nothing "
            "tells whether its claims had it taken off: map originalInvoiceAmount from the "
            "column of the invoice's whole amount"
        )
    elif text:
        why = (
            "but its claims add up to its whole amount or more, so it would go to collection "
            f"for all of it: {_EXPORT_OWED}"
        )
    else:
        why = (
            f"but its claims add up to {owed:.2f}, more than its amount less that payment "
            f"({left:.2f}), so it would go to collection for what was paid: {_EXPORT_OWED}"
        )
    if error:
        shows = "is an Excel error, no value, so this invoice may have been paid"
    elif text:
        shows = 'is neither empty, 0 nor "Nei", so this invoice may have been paid'
    else:
        shows = "shows a payment on this invoice"
    return shows, why


def _paid_in_another_currency(
    paid: Payment, currencies: np.ndarray | None, g: int
) -> tuple[str, str] | None:
    """The currency a payment's cell names (else its column's header: "Innbetalt NOK") and its
    invoice's, where they differ ("EUR 1 000,00" on a NOK invoice: subtracted as kroner, the
    claim would go for some 10,000 kroner too much); "kr" fits NOK, SEK and DKK. None where
    neither names one, or the same."""
    if currencies is None or np.isnan(paid.paid):
        return None
    named = marked_currencies(np.array([paid.text], dtype=object))[0]
    if named is None:
        named = _header_currency(paid.header)
    currency = currencies[g]
    if named is None or not isinstance(currency, str) or currency not in CURRENCIES:
        return None
    if named == currency or (named == "kr" and currency in KRONE_CURRENCIES):
        return None
    return named, currency


def _header_currency(header: str) -> str | None:
    """The currency a header names as a word of its own: a code in capitals ("Innbetalt NOK",
    "Received (EUR)"; in small letters "nok" is a Norwegian word), or "kr"/"kroner"."""
    for word in re.findall(r"[^\W\d_]+", header):
        if word.casefold() in ("kr", "kroner"):
            return "kr"
        if len(word) == 3 and word.isupper() and word in CURRENCIES:
            return word
    return None


def check_amount_currencies(
    mapping: Mapping,
    level: dict[int, Level],
    rows: dict[int, Values],
    groups: Groups,
    lines: list[np.ndarray],
) -> list[Issue]:
    """An amount that names another currency than its invoice's ("USD 100" on a NOK invoice):
    only its number is sent, so it would be collected in the wrong currency. "kr" fits NOK, SEK
    and DKK; an invoice with no currency is reported by the required check."""
    currency = mapping.invoice.get_field("currency")
    if currency is None:
        return []
    per_invoice = level[id(currency)].values.vals
    issues: list[Issue] = []
    # The invoice's amount and its claim's are often one column, whose texts are one array:
    # each array is looked at once.
    marks: dict[int, np.ndarray] = {}
    amount = mapping.invoice.get_field("originalInvoiceAmount")
    if amount is not None and amount.source != "sum_of_claims":
        whole = np.ones(groups.count, bool)
        issues += _other_currency(level[id(amount)], per_invoice, whole, marks)
    everyrow = np.arange(len(groups.gid))
    for item, present in zip(mapping.claims.items, lines, strict=True):
        assert isinstance(item, Obj)
        f = item.get_field("remainingAmount")
        if f is not None:
            claim = Level(rows[id(f)], everyrow)
            issues += _other_currency(claim, per_invoice[groups.gid], present, marks)
    return issues


def _other_currency(
    lv: Level, currencies: np.ndarray, where: np.ndarray, marks: dict[int, np.ndarray]
) -> list[Issue]:
    """Where ``lv``'s amount names a currency that is not ``currencies``' (one per element);
    ``marks`` keeps each text array's ``marked_currencies``."""
    v, issues = lv.values, []
    marked = marks.get(id(v.text))
    if marked is None:
        marked = marks[id(v.text)] = marked_currencies(v.text)
    for g in np.flatnonzero(where & ~np.equal(marked, None)).tolist():
        named, currency = marked[g], currencies[g]
        # A currency that is none (Valuta "kr") is refused as such (rule currency): said
        # again here, it read "in kr, but the invoice's currency is KR", one cause twice.
        if not isinstance(currency, str) or named == currency or currency not in CURRENCIES:
            continue
        if named == "kr" and currency in KRONE_CURRENCIES:
            continue
        why = (
            f"{v.label[g]} {quoted(v.text[g])} is in {named}, but the invoice's currency is "
            f"{currency}; only the number would be sent, in {currency}"
        )
        issues.append(_issue(lv.at[g], "currency", v, g, why))
    return issues


#: The values the lines of one invoice must agree on: who the debtor is, the invoice's number
#: (when the lines are grouped by another column) and the currency its amounts are summed in.
#: Others may differ from line to line in real ledgers (a fee line with its own dates, an email
#: in other capitals); the first line's are sent, as documented.
_AGREED = frozenset({"identificationNumber", "customerNumber", "firstname", "lastname"})
_AGREED_INVOICE = frozenset({"invoiceNumber", "currency"})
_NAMES = frozenset({"firstname", "lastname"})
#: What ERPs print for nothing: dashes alone (-, --, –, —).
_NOTHING = re.compile(r"[-\u2013\u2014]+")


def _shown_id(text: str) -> str:
    """An id as a message shows it: a fødselsnummer masked, an organisation number (9 digits,
    public) whole."""
    return text if sum(char.isdigit() for char in text) == 9 else mask_id(text)


def _folded_name(name: object) -> str:
    """A name as compared: one spelling of each letter (NFC), spaces collapsed, capitals
    folded."""
    return unicodedata.normalize("NFC", " ".join(str(name).split())).casefold()


def check_group_agreement(
    mapping: Mapping, rows: dict[int, Values], groups: Groups, row_numbers: np.ndarray
) -> list[Issue]:
    """Lines grouped into one invoice (``[group] by``) that name another debtor (national id,
    customer number, name) or another currency: an Issue on each line whose value differs from
    the one its invoice takes.

    Taking the first line's and sending the others' claims on it would put another customer's
    line on this customer's collection case. Only values the lines give in the same column are
    compared (a line left empty, holding only dashes, or filled by a constant ``default``
    agrees with any; one filled from a default column is compared); names ignoring capitals,
    spacing and how their letters are encoded.
    """
    if groups.members is None:
        return []
    # By the names the objects give them: a full_name's parts are its firstname and lastname.
    agreed = [
        (name, node)
        for item in mapping.debtors.items
        if isinstance(item, Obj)
        for name, node in item.fields
        if name in _AGREED and isinstance(node, Field)
    ]
    agreed += [
        (name, node)
        for name, node in mapping.invoice.fields
        if name in _AGREED_INVOICE and isinstance(node, Field)
    ]
    issues: list[Issue] = []
    for name, node in agreed:
        v = rows[id(node)]
        if node.source != "column" or v.empty.all():
            continue
        at = groups.level(v).at[groups.gid]  # per row: the row its invoice's value comes from
        others = np.flatnonzero(~v.empty & (at != np.arange(len(at))))
        if node.default is None or node.default.source != "column":
            # A constant default (NOK where the cell is empty) says nothing about the line; a
            # default read from another column (Orgnr where Fødselsnr is empty) does.
            others = others[v.label[others] == v.label[at[others]]]
        others = others[[_NOTHING.fullmatch(t) is None for t in v.text[others].tolist()]]
        if not len(others):
            continue
        # Compared as converted ("90000000" and "+47 900 00 000" are one number), names folded.
        mine, theirs = v.vals[others], v.vals[at[others]]
        if name in _NAMES:
            mine, theirs = (np.array([_folded_name(x) for x in vals.tolist()], dtype=object)
                            for vals in (mine, theirs))  # fmt: skip
        for r in others[np.not_equal(mine, theirs)].tolist():
            first, own = v.text[at[r]], v.text[r]
            if node.kind == "id":
                first, own = _shown_id(first), _shown_id(own)
            issues.append(
                Issue(
                    r,
                    "group",
                    v.label[r],
                    own,
                    f"{v.label[r]} {quoted(own)} differs from row {row_numbers[at[r]]} of the same "
                    f"invoice ({quoted(first)}); the rows of one invoice must agree on it",
                )
            )
    return issues


def claim_lines(mapping: Mapping, rows: dict[int, Values], groups: Groups) -> list[np.ndarray]:
    """Per claim of the mapping, the rows that have that claim line (bool, one per row).

    A line with an empty or zero amount is left out; an invoice left with no line at all keeps
    its first row's first line, so the check says what is wrong with it.
    """
    n = len(groups.gid)
    claims = mapping.claims.items
    present: list[np.ndarray] = []
    for item, f in zip(claims, mapping.claim_amounts, strict=True):
        v = rows[id(f)] if f is not None else None
        if v is None or v.number is None:
            present.append(there(item, lambda f: rows[id(f)], n))
        else:
            with np.errstate(invalid="ignore"):
                present.append(~v.empty & (v.number != 0))
    any_claim = np.zeros(groups.count, dtype=bool)
    for p in present:
        np.logical_or.at(any_claim, groups.gid, p)
    present[0][groups.first[~any_claim]] = True
    return present


def check_claims(mapping: Mapping, rows: dict[int, Values], lines: list[np.ndarray]) -> list[Issue]:
    """Each claim line (``lines``, from ``claim_lines``): a positive amount, its required fields."""
    issues: list[Issue] = []
    for item, p in zip(mapping.claims.items, lines, strict=True):
        assert isinstance(item, Obj)
        everyrow = np.arange(len(p))
        f = item.get_field("remainingAmount")
        if f is not None:
            lv = Level(rows[id(f)], everyrow)
            issues += _required(lv, p, "the invoice needs a claim amount")
            issues += _amounts(lv, p & ~lv.values.empty)
        for name, node in item.fields:
            if isinstance(node, Field) and node.required and name != "remainingAmount":
                lv = Level(rows[id(node)], everyrow)
                issues += _required(lv, p, f"a claim needs {node.what or name}")
    return issues


def there(obj: Obj, values_of: Callable[[Field], Values], count: int) -> np.ndarray:
    """An object is there where any of its file-backed values is (constants alone: always)."""
    backed = [f for f in walk_fields(obj) if f.from_file]
    out = np.zeros(count, dtype=bool) if backed else np.ones(count, dtype=bool)
    for f in backed:
        out |= ~values_of(f).empty
    return out


def _shortened_numbers(lv: Level, texts: list[str]) -> list[Issue]:
    """Rule ``text``: invoice numbers (``texts``, as typed) in scientific notation
    (``SHORTENED``): another invoice may shorten to the same text, and then be held back as
    already sent. The whole column is searched at once; one without any costs a join and a
    search."""
    v = lv.values
    if SHORTENED.search("\n".join(texts)) is None:
        return []
    return [
        _issue(
            lv.at[g],
            "text",
            v,
            g,
            f"{v.label[g]} {quoted(text)} is a number Excel shortened to scientific "
            "notation, and its last digits are lost; format the column as text in Excel and "
            "export it again",
        )
        for g, text in enumerate(texts)
        if SHORTENED.match(text)
    ]


#: An invoice number written as a locale writes a number, not as the invoice reads: digits in
#: threes parted by a no-break, narrow no-break or thin space (what Norwegian Excel and
#: LibreOffice save of a column formatted # ##0), by commas (English settings, #,##0) or by
#: dots (German and Danish ones), a comma or dot throughout, the first group not led by a
#: zero, as no format writes it; or with decimals of zeros (0,00). A space typed between digits
#: is the number as it reads.
_SPACE_GROUPED, _MARK_GROUPED = (
    "|".join(rf"[1-9][0-9]{{0,2}}(?:{marks}[0-9]{{3}})+" for marks in kinds)
    for kinds in ([f"[{SPACES.replace(' ', '')}]"], [",", r"\."])
)
_GROUPED = f"{_SPACE_GROUPED}|{_MARK_GROUPED}"
_ZEROS = "[0-9]+[.,]0+"
_FORMATTED_NUMBER = re.compile(rf"^(?:{_GROUPED}|{_ZEROS})$", re.MULTILINE)
#: The same where a comma or dot between digits is no number format's: in a workbook, whose
#: cells hold numbers as numbers (a text cell reading 70.001 was typed so, or is an ERP's
#: series, and only one grouped by no-break spaces was a number's shown text pasted as it
#: looked), and in a CSV column that holds a number of four digits or more written without
#: them (``_UNGROUPED``), which the format would have grouped as well.
_SPACED_OR_ZEROS = re.compile(rf"^(?:{_SPACE_GROUPED}|{_ZEROS})$", re.MULTILINE)
_UNGROUPED = re.compile(r"^[0-9]{4,}$", re.MULTILINE)


def _formatted_numbers(lv: Level, texts: list[str], *, from_csv: bool) -> list[Issue]:
    """Rule ``text``: invoice numbers (``texts``, as typed) that a number format wrote
    (``_FORMATTED_NUMBER``): the workbook itself holds 240301, which goes out so, and the CSV
    Excel saves of it holds 240 301 or 240301,00, which went out as another number, a second
    case for the same invoice. Refused, not guessed at, as a number in scientific notation is.
    The whole column is searched at once."""
    v = lv.values
    joined = "\n".join(texts)
    by_marks = from_csv and _UNGROUPED.search(joined) is None
    formatted = _FORMATTED_NUMBER if by_marks else _SPACED_OR_ZEROS
    if formatted.search(joined) is None:
        return []
    grouped = _GROUPED if by_marks else _SPACE_GROUPED
    issues = []
    for g, text in enumerate(texts):
        if formatted.match(text) is None:
            continue
        ways = [
            way
            for way, pattern in (("with its digits grouped", grouped), ("with decimals", _ZEROS))
            if re.fullmatch(pattern, text)
        ]  # both for 70,000: seventy thousand in one locale, seventy in another
        what = " or ".join(ways)
        issues.append(
            _issue(
                lv.at[g],
                "text",
                v,
                g,
                f"{v.label[g]} {quoted(text)} is a number written {what} by its column's number "
                "format, not the invoice number as it reads; format the column as General or "
                "Text in Excel and export it again",
            )
        )
    return issues


def _apostrophe_numbers(lv: Level, texts: list[str]) -> list[Issue]:
    """Rule ``text``: an invoice number written with an apostrophe in front ('000782), the mark
    Excel takes, when typed, for "keep this as text" and never shows or saves. In a file it is
    an ERP's way to keep the zeros, and another export of the same invoice without it went out
    as a second number, a second case. Refused, not guessed at, as a number a format wrote is.
    The whole column is looked at once."""
    v = lv.values
    joined = "".join(texts)
    if not any(mark in joined for mark in _APOSTROPHES):
        return []
    return [
        _issue(
            lv.at[g],
            "text",
            v,
            g,
            f"{v.label[g]} {quoted(text)} begins with an apostrophe, the mark that tells Excel to "
            "keep a value as text, not part of the invoice number; remove it in the export",
        )
        for g, text in enumerate(texts)
        if text.startswith(_APOSTROPHES)
    ]


#: The apostrophe, and the curly ones a word processor's autocorrect makes of it when the
#: number was typed or pasted there (‘70001 went out beside 70001, a second case).
_APOSTROPHES = ("'", "\u2018", "\u2019")


def _broken_numbers(lv: Level, texts: list[str]) -> list[Issue]:
    """Rule ``text``: an invoice number with a line break or a tab inside it. One-line fields
    are made one line (tree.py ``Known.one_line``), but the number is what tells one invoice
    from another, in this file, in the journal and at Amili: "2403" and "01" on two lines, made
    "2403 01", would be held back as a duplicate of a real invoice 2403 01 (or a real one as a
    duplicate of it), so it is refused, not guessed at. The whole column is looked at once;
    one without any costs a join and five substring scans."""
    v = lv.values
    if line_break("".join(texts)) is None:
        return []
    issues = []
    for g, text in enumerate(texts):
        if (what := line_break(text)) is not None:
            why = (
                f"{v.label[g]} {quoted(text)} holds {what}, which an invoice number cannot have"
                " (filedrop does not guess which number was meant); remove it in the export"
            )
            issues.append(_issue(lv.at[g], "text", v, g, why))
    return issues


def _issue(
    pos: int, rule: str, v: Values | None, i: int, message: str, *, value: str | None = ""
) -> Issue:
    """An Issue at row ``pos`` about element ``i`` of ``v`` (its label, and its text unless
    ``value`` says what to show instead)."""
    label = v.label[i] if v is not None else None
    shown = v.text[i] if v is not None and value == "" else value
    return Issue(int(pos), rule, label, shown, message)


def _required(lv: Level, where: np.ndarray, why: str) -> list[Issue]:
    """An empty required value, and one whose cell gave none (an Excel error: a value that
    failed its check is still sent as typed if its rule lets the row go). The error is its own
    rule's issue too, but that rule may be a warning or off, and the invoice cannot go without
    the value (`prepare` drops this issue when the other one already refuses the row)."""
    v = lv.values
    issues = []
    for g in np.flatnonzero(where & v.missing()).tolist():
        if v.empty[g]:
            why_not = f"{v.label[g]} is empty ({why})"
        else:
            why_not = f"{v.label[g]} {quoted(v.text[g])} gives no value, and {why}"
        issues.append(_issue(lv.at[g], "required", v, g, why_not, value=None))
    return issues


def _type_unknown(lv: Level, where: np.ndarray) -> list[Issue]:
    """``type = { from_id = true }`` where the id's length tells no type."""
    v, issues = lv.values, []
    for g in np.flatnonzero(where & v.empty):
        if v.text[g]:
            why = (
                f"{v.label[g]} {quoted(mask_id(v.text[g]))} is neither an organisation number"
                " (9 digits)"
                " nor a fødselsnummer (11 digits), so the debtor type cannot be told"
            )
        else:
            why = f"{v.label[g]} is empty, so the debtor type cannot be told (a debtor needs one)"
        issues.append(_issue(lv.at[g], "required", v, g, why, value=None))
    return issues


def _one_name(lv: Level, where: np.ndarray) -> list[Issue]:
    """A full name of one word: a PRIVATE debtor needs a first and a last name."""
    v = lv.values
    why = (
        'holds one name only (a PRIVATE debtor needs a first and a last name: "Etternavn, Fornavn")'
    )
    # Reported with no value, so the "is empty" that follows for the same cell is a repeat, dropped.
    return [
        _issue(lv.at[g], "required", v, g, f"{v.label[g]} {quoted(v.text[g])} {why}", value=None)
        for g in np.flatnonzero(where & v.empty & (v.text != ""))
    ]


#: What, in a PRIVATE debtor's full name, is no part of a person's name: a "c/o" (the address's
#: part) or a company form at the end, in capitals (a company's name, under a person's number):
#: "Kari As" is a person's name. DA, SA, BA and KS are left out: a person's last name may be one
#: ("NGUYEN THI DA", "Lê Văn SA").
_CARE_OF = re.compile(r"(?im)(?:^|\s)c/o(?:\s|$)")
_COMPANY_FORM = re.compile(r"(?m)\s(AS|ASA|ANS|NUF|ENK|IKS)\.?$")


#: A name with a digit, of any script: in a person's name, a number written into it ("60001 -
#: Nordmann", "５０００２").
_WITH_DIGIT = re.compile(r"(?m)^.*\d")
#: A number of three digits or more and a dash with a space beside it, or a colon, before a
#: company's name ("10100 - Bygg og Anlegg AS", "10100: Bygg"), as an export glues the
#: customer number to it; "3M Norge AS", "1881 AS" and "365-Dager AS" are names.
_NUMBER_DASH = re.compile(
    r"(?m)^[0-9]{3,}(?:[^\S\n]+[-\u2013\u2014][^\S\n]*|[^\S\n]*[-\u2013\u2014][^\S\n]+"
    r"|[^\S\n]*:[^\S\n]*)[^\W\d_]"
)
#: A name without a letter of any script: a company's name has one ("3M Norge", "7-Eleven").
_NO_LETTER = re.compile(r"(?m)^(?:[^\w\n]|[\d_])*$")  # a line at a time: never across one


def _numbers_as_names(lv: Level, private: np.ndarray, company: np.ndarray) -> list[Issue]:
    """Rule ``text``: a name that is a number. A customer number column headed "Kunde" beside
    "Kundenavn" was read as the name, and the company Vinmonopolet AS went out as "50002"; a
    customer number glued to a person's name ("60001 - Nordmann, Kari") went out as the last
    name "60001 - Nordmann". A person's name holds no digit; a company's name holds a letter,
    and does not begin with a number and a dash ("10100 - Bygg og Anlegg AS"). Each kind of
    name is searched in one go (``matching_lines``): most columns have none."""
    v = lv.values
    texts = v.text.astype(object)
    found: list[tuple[int, str]] = []
    for rows, checks in (
        (private, ((_WITH_DIGIT, "holds digits, which a person's name does not"),)),
        (
            company,
            (
                (_NO_LETTER, "holds no letter, which a company's name has"),
                (_NUMBER_DASH, "begins with a number and a dash or colon"),
            ),
        ),
    ):
        at = np.flatnonzero(rows & (texts != ""))
        names = texts[at].tolist()
        for pattern, why in checks:
            found += [
                (int(at[k]), why)
                for k in matching_lines(pattern, names)
                # A control character is said of its own (rule text): the digit of an escape
                # sequence ("\x1b[1m") is none of the name's.
                if CONTROL.search(names[k]) is None
            ]
    return [
        _issue(
            lv.at[g],
            "text",
            v,
            g,
            f"{v.label[g]} {quoted(str(v.text[g]))} {why} (a customer number?); correct it in "
            "the export, or map the column that holds the name",
            value=None,
        )
        for g, why in sorted(found)
    ]


def _not_a_persons_name(lv: Level, where: np.ndarray) -> list[Issue]:
    """Rule ``text``: a PRIVATE debtor's full name that holds more than a person's name. Split
    as one, "Kari Nordmann c/o Ola Hansen" went out as first name "Kari Nordmann c/o Ola" and
    last name "Hansen", and "Kari Nordmann AS" (a company's name under a person's number) with
    the last name "AS": letters addressed to nobody."""
    v = lv.values
    named = np.flatnonzero(where & (v.text != "")).tolist()
    # One search of all the names first: most files hold neither.
    joined = "\n".join(str(v.text[g]) for g in named)
    if not (_CARE_OF.search(joined) or _COMPANY_FORM.search(joined)):
        return []
    issues = []
    for g in named:
        text = str(v.text[g])
        if _CARE_OF.search(text):
            why = "holds a c/o, which belongs to the address, not to a person's name; move it"
        elif form := _COMPANY_FORM.search(text):
            why = (
                f"ends in {form[1]}, a company's form, while the identification number is a "
                "person's; give the company's organisation number, or the person's name alone"
            )
        else:
            continue
        message = f"{v.label[g]} {quoted(text)} {why} in the export"
        issues.append(_issue(lv.at[g], "text", v, g, message, value=None))
    return issues


def _amounts(lv: Level, where: np.ndarray) -> list[Issue]:
    v = lv.values
    if v.number is None:
        return []
    with np.errstate(invalid="ignore"):
        not_positive = where & (v.number <= 0)
    why = "is not a positive amount (it must be more than 0)"
    too_precise = "has more than two decimals"
    issues = [
        _issue(lv.at[g], "amount", v, g, f"{v.label[g]} {quoted(v.text[g])} {why}")
        for g in np.flatnonzero(not_positive)
    ]
    issues += [
        _issue(lv.at[g], "amount", v, g, f"{v.label[g]} {quoted(v.text[g])} {too_precise}")
        for g in np.flatnonzero(where & ~not_positive & has_more_than_two_decimals(v.number))
    ]
    return issues


def _national_ids(lv: Level, types: np.ndarray, present: np.ndarray, *, key: str) -> list[Issue]:
    """A PRIVATE debtor needs a fødselsnummer or D-number, a COMPANY an organisation number.
    ``key`` is the id field's place in the mapping, for the cure of a lost leading zero."""
    issues: list[Issue] = []
    v = lv.values
    # A cell that gave no id (an Excel error, said by its own rule) has none to check: as a
    # missing value it read as "nan", or crashed the file.
    has = present & ~v.missing()
    ids = pd.Series(v.vals, dtype=object).where(has, "").astype(str)
    # Digits written with decimals ("1010039955.0") are refused as such already (rule text).
    if ids.str.contains(".", regex=False).any() or ids.str.contains(",", regex=False).any():
        has &= ~ids.str.match(DECIMALS_WRITTEN.pattern).to_numpy(dtype=bool)
    fnr, org = has & is_fodselsnummer(ids), has & is_orgnr(ids)
    length = ids.str.len().to_numpy()
    private, company = types == "PRIVATE", types == "COMPANY"
    other = ~private & ~company  # a type the API may add: judge by the length
    for g in np.flatnonzero(has & ~fnr & (private | (other & (length == 11)))):
        typed = "".join(c for c in v.text[g] if c.isdigit())
        padded = len(ids[g]) > len(typed) and ids[g].endswith(typed)
        # An organisation number is public: shown whole (pad never touches one).
        shown = v.text[g] if org[g] else mask_id(v.text[g])
        if org[g]:
            why = (
                "is an organisation number, but the debtor is PRIVATE (expected an 11-digit"
                " fødselsnummer or D-number)"
            )
        elif padded:
            # The mapping's pad put zeros in front: say so, or the message names a value
            # that is not the one checked.
            why = f"padded to {len(ids[g])} digits is not a valid fødselsnummer or D-number"
        else:
            why = (
                "is not a valid fødselsnummer or D-number (expected 11 digits with correct"
                " check digits)"
            )
            if len(ids[g]) == 10 and ids[g].isascii() and ids[g].isdigit():
                # Born on the 1st to the 9th: Excel, keeping the id as a number, dropped its 0.
                why += (
                    "; if a spreadsheet dropped its leading zero, add pad = 11 to "
                    f"{key} in the mapping"
                )
        issues.append(
            _issue(
                lv.at[g], "national_id", v, g, f"{v.label[g]} {quoted(shown)} {why}", value=shown
            )
        )
    for g in np.flatnonzero(has & ~org & (company | (other & (length == 9)))):
        shown = mask_id(v.text[g]) if fnr[g] or length[g] != 9 else v.text[g]
        why = (
            "is a fødselsnummer, but the debtor is COMPANY (expected a 9-digit organisation number)"
            if fnr[g]
            else "is not a valid organisation number (expected 9 digits with a correct check digit)"
        )
        issues.append(
            _issue(lv.at[g], "orgnr", v, g, f"{v.label[g]} {quoted(shown)} {why}", value=shown)
        )
    return issues
