"""The per-invoice checks the sandbox applies before it opens a case, close to Amili's own.

`validate_invoice` answers in the wording of Amili's integration guide, so a mapping tried
against the sandbox fails the way it would at Amili. Where the guide is silent we chose (and tests
pin): a COMPANY debtor needs a name in ``name``, ``companyName`` or ``lastname`` (the guide only
shows PRIVATE debtors, and ERP exports often keep a company's name in the surname column); an
identification number is checked for shape only (Norway: 11 digits for a person, 9 for a company;
elsewhere 4-20 letters or digits), since the guide's own example number has no valid checksum.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from filedrop.mapping.convert import CURRENCIES  # the validator's list: the two cannot disagree
from filedrop.mapping.tree import DEBTOR_TYPES  # the checks' own list, likewise

__all__ = ["CURRENCIES", "DEBTOR_TYPES", "validate_invoice"]

_EMAIL = re.compile(r"^[^\s@]+@[^\s@.]+(\.[^\s@.]+)*\.[^\s@.]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{3,19}$")
_ID_NUMBER = re.compile(r"^[A-Za-z0-9]{4,20}$")


def validate_invoice(invoice: dict[str, Any]) -> list[str]:
    """Amili-style errors for one invoice, in the guide's wording; [] if it would be accepted."""
    errors = _invoice_field_errors(invoice)
    debtors = invoice.get("debtors")
    if not isinstance(debtors, list) or not debtors:
        errors.append("At least one debtor is required")
    else:
        for debtor in debtors:
            errors.extend(_debtor_errors(debtor))
    claims = invoice.get("claims")
    if not isinstance(claims, list) or not claims:
        errors.append("At least one claim is required")
    else:
        for claim in claims:
            if not isinstance(claim, dict) or not _positive(claim.get("remainingAmount")):
                errors.append("Claim remaining amount must be a positive number")
    return list(dict.fromkeys(errors))  # one of each, in order


def _invoice_field_errors(invoice: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    number = invoice.get("invoiceNumber")
    if number is None or (isinstance(number, str) and not number.strip()):
        errors.append("Invoice number is required")
    elif not isinstance(number, str):
        errors.append(f"Invoice number {_show(number)} must be a string")
    amount = invoice.get("originalInvoiceAmount")
    if amount is None:
        errors.append("Original invoice amount is required")
    elif not _positive(amount):
        errors.append("Original invoice amount must be a positive number")
    currency = invoice.get("currency")
    if currency in (None, ""):
        errors.append("Currency is required")
    elif currency not in CURRENCIES:
        errors.append(f"Currency {_show(currency)} is not an ISO 4217 currency code")
    for key, label in (("invoiceDate", "Invoice date"), ("dueDate", "Due date")):
        value = invoice.get(key)
        if value in (None, ""):
            errors.append(f"{label} is required")
        elif not _iso_date(value):
            errors.append(f"{label} {_show(value)} is not an ISO 8601 date")
    return errors


def _debtor_errors(debtor: object) -> list[str]:
    if not isinstance(debtor, dict):
        return ["Debtor must be an object"]
    errors: list[str] = []
    kind = debtor.get("type")
    if kind not in DEBTOR_TYPES:
        errors.append(f"Debtor type {_show(kind)} is not one of PRIVATE, COMPANY")
    if kind == "PRIVATE" and not _text(debtor.get("firstname")):
        errors.append("Debtor first name is required")
    if kind == "PRIVATE" and not _text(debtor.get("lastname")):
        errors.append("Debtor last name is required")
    company_name = (_text(debtor.get(key)) for key in ("name", "companyName", "lastname"))
    if kind == "COMPANY" and not any(company_name):
        errors.append("Debtor company name is required")
    addresses = debtor.get("addresses") or []
    addresses = addresses if isinstance(addresses, list) else [addresses]
    countries = [a.get("countryCode") if isinstance(a, dict) else a for a in addresses]
    id_number = debtor.get("identificationNumber")
    country = countries[0] if countries and countries[0] else "NO"
    if id_number not in (None, "") and not _id_number_ok(id_number, kind=kind, country=country):
        errors.append("Debtor identification number is invalid")  # never echo a national id
    errors.extend(_contact_errors(debtor))
    for code in countries:
        if code is not None and not (isinstance(code, str) and re.fullmatch(r"[A-Z]{2}", code)):
            errors.append(f"Address country code {_show(code)} is not ISO 3166 alpha-2")
    return errors


def _contact_errors(debtor: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for email in _values(debtor.get("emails")):
        if not isinstance(email, str) or not _EMAIL.match(email) or ".." in email:
            errors.append(f"Debtor email {_show(email)} is invalid")
    for phone in _values(debtor.get("phoneNumbers")):
        if not isinstance(phone, str) or not _PHONE.match(phone):
            errors.append(f"Debtor phone number {_show(phone)} is invalid")
    return errors


def _id_number_ok(value: object, *, kind: object, country: object) -> bool:
    if not isinstance(value, str):
        return False
    if country == "NO" and kind == "PRIVATE":
        return re.fullmatch(r"\d{11}", value) is not None
    if country == "NO" and kind == "COMPANY":
        return re.fullmatch(r"\d{9}", value) is not None
    return _ID_NUMBER.match(value) is not None


def _values(items: object) -> list[object]:
    """The ``value`` of each ``[{"value": ...}]`` entry (a bare entry is its own value)."""
    if items is None:
        return []
    if not isinstance(items, list):
        return [items]
    return [item.get("value") if isinstance(item, dict) else item for item in items]


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _iso_date(value: object) -> bool:
    if not isinstance(value, str) or not re.match(r"^\d{4}-?\d{2}-?\d{2}", value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)[:60]
