"""The Invoice-shaped tree a mapping's [invoice], [debtor] and [[claims]] tables parse into.

What filedrop knows about each Invoice field (``Known``), the small frozen nodes shaped like the
Invoice JSON (``Field``, ``Obj``, ``Many``) that the rest of the code walks, and ``TreeParser``,
which checks those tables key by key. Every refusal is one sentence naming the mapping file and
the key; mappings/README.md documents every option. The file-level sections ([match], [read],
[rules], [group]) are mapping.py's.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import phonenumbers

from filedrop.errors import MappingError

__all__ = [
    "AS_KINDS",
    "CLAIM_FIELDS",
    "DEBTOR_FIELDS",
    "DEBTOR_TYPES",
    "INVOICE_FIELDS",
    "OPTION_KEYS",
    "SOURCE_KEYS",
    "Field",
    "Known",
    "Many",
    "Node",
    "Obj",
    "TreeParser",
    "as_toml",
    "walk_fields",
    "with_defaults",
]

SOURCE_KEYS = ("column", "constant", "template", "sum_of_claims", "from_id")
OPTION_KEYS = ("names", "default", "map", "pad", "trim", "as", "split", "country", "required")
AS_KINDS = ("text", "amount", "date", "phone", "email")
# Separators that cannot occur inside one email address / one phone number.
_SPLIT_DEFAULT = {"email": ",; ", "phone": ",;/"}
# Kinds that are one line wherever they are: an address or a number over two lines is one
# ("a@x.no\nb@y.no" is two addresses, as "a@x.no b@y.no" is).
_ONE_LINE_KINDS = frozenset({"email", "phone"})


DEBTOR_TYPES = ("PRIVATE", "COMPANY")
"""The debtor types the checks know: each decides which national id is valid."""


@dataclass(frozen=True)
class Known:
    """What filedrop knows about one Invoice field: how to convert it, whether it must be there."""

    kind: str
    required: bool = False
    what: str = ""  # for "... is empty (the invoice needs <what>)"
    items: dict[str, Known] | None = None  # a list field: the fields of each item
    choices: str = ""  # the values it may take: "debtor_types" or "invoice_types" (a setting)
    # One line of a letter or a record (a name, an address line, a code): a line break or tab
    # inside it becomes a space (``Field.one_line``). Not a description, which may run over
    # several lines, nor the invoice number: made one line, two different numbers could become
    # one, and the second be held back as already sent.
    one_line: bool = False


INVOICE_FIELDS = {
    "type": Known(
        "text", required=True, what="an invoice type", choices="invoice_types", one_line=True
    ),
    "invoiceNumber": Known("text", required=True, what="an invoice number"),
    "originalInvoiceAmount": Known("amount", required=True, what="an amount"),
    "currency": Known("currency", required=True, what="a currency"),
    "invoiceDate": Known("date", required=True, what="an invoice date"),
    "dueDate": Known("date", required=True, what="a due date"),
    "uniqueSourceInvoiceId": Known("text", one_line=True),
    "description": Known("text"),
    "ocrReferenceNumber": Known("kid"),
}
DEBTOR_FIELDS = {
    "type": Known(
        "text", required=True, what="a debtor type", choices="debtor_types", one_line=True
    ),
    "firstname": Known("text", what="a first name", one_line=True),
    "lastname": Known("text", what="a last name", one_line=True),
    # Not an API field: one column holding the whole name, split into firstname and lastname.
    "full_name": Known("text", what="a name", one_line=True),
    "customerNumber": Known("text", one_line=True),
    "identificationNumber": Known("id"),
    "emails": Known("list", items={"value": Known("email", required=True, what="an address")}),
    "phoneNumbers": Known(
        "list",
        items={
            "value": Known("phone", required=True, what="a number"),
            "countryCode": Known("text", one_line=True),
        },
    ),
    "addresses": Known(
        "list",
        items={
            k: Known("text", one_line=True) for k in ("street", "city", "zipCode", "countryCode")
        },
    ),
}
CLAIM_FIELDS = {
    "type": Known("text", required=True, what="a claim type", one_line=True),
    "remainingAmount": Known("amount", required=True, what="a claim amount"),
    "description": Known("text"),
}
_SECTION_OF = {
    **dict.fromkeys(DEBTOR_FIELDS, "[debtor]"),
    **dict.fromkeys(CLAIM_FIELDS, "[[claims]]"),
    **dict.fromkeys(INVOICE_FIELDS, "[invoice]"),
}


@dataclass(frozen=True)
class Field:
    """Where one JSON value comes from and how it is converted."""

    key: str  # dotted mapping key, for messages: "invoice.dueDate"
    kind: str  # text amount date currency kid id email phone region
    source: str  # column template constant sum_of_claims
    columns: tuple[str, ...] = ()  # a column's header name, then its alternatives
    template: str = ""
    placeholders: tuple[str, ...] = ()
    constant: Any = None
    default: Field | None = None
    value_map: tuple[tuple[str, Any], ...] = ()  # (cell text, value); cells match ignoring case
    pad: int | None = None
    trim: bool = True
    split: str = ""
    country: str | None = None
    required: bool = False
    what: str = ""
    name_part: str = ""  # "first" or "last": this field is its part of a debtor's full_name
    one_line: bool = False  # with trim, a line break or tab inside becomes a space (Known.one_line)

    @property
    def from_file(self) -> bool:
        """Whether its value can differ per row (so an all-empty object can be left out)."""
        return self.source in ("column", "template") or bool(
            self.default and self.default.from_file
        )


@dataclass(frozen=True)
class Obj:
    """A JSON object: an invoice, a debtor, a claim, an address, a pass-through table."""

    key: str
    fields: tuple[tuple[str, Node], ...]

    def get(self, name: str) -> Node | None:
        return next((node for k, node in self.fields if k == name), None)

    def get_field(self, name: str) -> Field | None:
        """The Field called ``name``; None when there is none or it is an object or a list."""
        node = self.get(name)
        return node if isinstance(node, Field) else None


@dataclass(frozen=True)
class Many:
    """A JSON list: debtors, claims, emails, phone numbers, addresses."""

    key: str
    items: tuple[Node, ...]


Node = Field | Obj | Many


def walk_fields(node: Node) -> Iterator[Field]:
    """Every Field in a node tree, depth first."""
    if isinstance(node, Field):
        yield node
    else:
        for child in node.items if isinstance(node, Many) else (c for _, c in node.fields):
            yield from walk_fields(child)


def with_defaults(field: Field) -> Iterator[Field]:
    """``field``, then the Field of each ``default`` it falls back on: each reads the file too
    (``default = { column = ... }``), and a check that looks at the first alone misses it."""
    f: Field | None = field
    while f is not None:
        yield f
        f = f.default


def as_toml(value: object) -> str:
    """A mapping value as the user wrote it in TOML, for messages: what a message shows can be
    pasted back into the mapping, and a quote inside a text cannot hide where the text ends."""
    if isinstance(value, str):
        return _toml_text(value)
    if isinstance(value, list):  # as TOML writes it, not as Python does (['a'])
        return "[" + ", ".join(map(as_toml, value)) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_key(k)} = {as_toml(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    return str(value).lower() if isinstance(value, bool) else str(value)


#: What a TOML basic string must escape: the quote, the backslash and the control characters
#: (tab too, which TOML allows as it is but a message would show as blank space).
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_TOML_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_text(text: str) -> str:
    escaped = _TOML_ESCAPED.sub(
        lambda m: _TOML_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04X}"), text
    )
    return f'"{escaped}"'


def _toml_key(key: object) -> str:
    return key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else _toml_text(str(key))


def did_you_mean(name: str, options: list[str]) -> str:
    """`` (did you mean "X"?)`` for the option closest to ``name`` (a typo, a space), else ""."""
    close = difflib.get_close_matches(name.lower(), [o.lower() for o in options], n=1, cutoff=0.75)
    return next((f' (did you mean "{o}"?)' for o in options if close and o.lower() == close[0]), "")


def _not_a_choice(value: object, known: Known, choices: tuple[str, ...]) -> str:
    """Why a value is refused, and the values that would do."""
    if known.choices == "invoice_types":
        return (
            f"is {as_toml(value)}, which is not an invoice type filedrop knows"
            f" ({', '.join(choices)}); fix it, or add it to the setting FILEDROP_INVOICE_TYPES"
            " if Amili takes it."
        )
    return f"is {as_toml(value)}, which is not {known.what}; use {' or '.join(choices)}."


def _region_of(f: Field, key: str) -> Field:
    """The country of a phone number, read from the same cells as the number itself."""
    default = _region_of(f.default, f"{key}.default") if f.default else None
    return replace(f, kind="region", key=key, required=False, default=default)


class TreeParser:
    """Turns the Invoice tables of parsed TOML into nodes, refusing the first thing that is wrong.

    mapping.py's loader extends it with the file-level sections.
    """

    def __init__(self, path: Path, *, invoice_types: tuple[str, ...]) -> None:
        self.path = path
        # The values a field with ``Known.choices`` may take; invoice types come from a setting.
        self.choices = {"debtor_types": DEBTOR_TYPES, "invoice_types": invoice_types}

    def fail(self, key: str, detail: str) -> MappingError:
        return MappingError(str(self.path), f'key "{key}" {detail}')

    # --- typed values -----------------------------------------------------------------------------

    def table(
        self, key: str, value: object, allowed: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(
                key, f"must be a table (a [section] or {{ ... }}), not {as_toml(value)}."
            )
        for name in value if allowed is not None else ():
            if name not in allowed:
                hint = did_you_mean(name, list(allowed)) or f" (known: {', '.join(allowed)})"
                raise self.fail(f"{key}.{name}" if key else name, f"is not a known option{hint}.")
        return value

    def text(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be text in quotes, not {as_toml(value)}.")
        return value

    def texts(self, key: str, value: object) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise self.fail(key, f'must be a list of text, like ["a", "b"], not {as_toml(value)}.')
        if "" in values:
            raise self.fail(
                key,
                f'holds an empty text (""), which matches nothing; remove it from '
                f"{as_toml(value)}.",
            )
        return tuple(values)

    def whole(self, key: str, value: object, *, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(
                key, f"must be a whole number from {low} to {high}, not {as_toml(value)}."
            )
        return value

    def flag(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {as_toml(value)}.")
        return value

    # --- the Invoice tree -------------------------------------------------------------------------

    def obj(
        self,
        key: str,
        table: dict[str, Any],
        schema: dict[str, Known],
        *,
        phone: bool = False,
        short: bool = False,
    ) -> Obj:
        fields: list[tuple[str, Node]] = []
        for name, raw in table.items():
            # emails = "E-post" is short for [{ value = "E-post" }]; messages name what was written.
            sub = key if short and name == "value" else f"{key}.{name}"
            known = schema.get(name)
            if known is None:
                self.unknown(sub, name, schema)
                fields.append((name, self.passthrough(sub, raw)))
            elif known.items is not None:
                fields.append(
                    (name, self.many(sub, raw, known.items, phone=name == "phoneNumbers"))
                )
            else:
                fields.append((name, self.field(sub, raw, known=known)))
        names = {n for n, _ in fields}
        for name, known in schema.items():
            if known.required and name not in names:
                example = '"E-post"' if name == "value" else '"<column>"'
                why = f"is missing; the API needs {known.what} (e.g. {name} = {example})."
                raise self.fail(f"{key}.{name}", why)
        value = next((n for k, n in fields if k == "value"), None)
        if phone and "countryCode" not in names and isinstance(value, Field):
            fields.append(("countryCode", _region_of(value, f"{key}.countryCode")))
        if schema is DEBTOR_FIELDS:
            fields = self.debtor_fields(key, fields)
        return Obj(key=key, fields=tuple(fields))

    def debtor_fields(self, key: str, fields: list[tuple[str, Node]]) -> list[tuple[str, Node]]:
        """A debtor's ``full_name`` becomes its firstname and lastname; ``from_id`` needs an id."""
        names = {n for n, _ in fields}
        kind = next((n for k, n in fields if k == "type"), None)
        if (
            isinstance(kind, Field)
            and kind.source == "from_id"
            and "identificationNumber" not in names
        ):
            raise self.fail(
                f"{key}.type",
                "takes the type from identificationNumber, which the debtor does not have;"
                ' add identificationNumber = "<column>".',
            )
        full = next((n for k, n in fields if k == "full_name"), None)
        if not isinstance(full, Field):
            return fields
        both = [n for n in ("firstname", "lastname") if n in names]
        if both:
            raise self.fail(
                f"{key}.full_name",
                f"and {key}.{both[0]} cannot both be there; full_name fills firstname and"
                " lastname.",
            )
        out: list[tuple[str, Node]] = []
        for name, node in fields:
            if name != "full_name":
                out.append((name, node))
                continue
            out.append(("firstname", replace(full, name_part="first", what="a first name")))
            out.append(("lastname", replace(full, name_part="last", what="a last name")))
        return out

    def unknown(self, key: str, name: str, schema: dict[str, Known]) -> None:
        # Unknown fields go to the API as they are, so a typo of a known one must not slip through.
        hint = did_you_mean(name, list(schema))
        if hint:
            why = f"is not a field filedrop knows{hint}; unknown fields go to the API as they are."
            raise self.fail(key, why)
        if name in _SECTION_OF and schema in (INVOICE_FIELDS, DEBTOR_FIELDS, CLAIM_FIELDS):
            raise self.fail(key, f"belongs in {_SECTION_OF[name]}.")

    def objects(self, key: str, raw: object, schema: dict[str, Known]) -> Many:
        tables = raw if isinstance(raw, list) else [raw]
        if not tables:
            raise self.fail(key, "is an empty list; it needs at least one table.")
        keys = [key if len(tables) == 1 else f"{key}[{i + 1}]" for i in range(len(tables))]
        return Many(
            key,
            tuple(self.obj(k, self.table(k, t), schema) for k, t in zip(keys, tables, strict=True)),
        )

    def many(self, key: str, raw: object, schema: dict[str, Known], *, phone: bool) -> Many:
        elements = raw if isinstance(raw, list) else [raw]
        items: list[Node] = []
        for i, element in enumerate(elements):
            item_key = key if len(elements) == 1 else f"{key}[{i + 1}]"
            item, short = element, False
            if isinstance(element, str) or (
                isinstance(element, dict) and any(k in element for k in SOURCE_KEYS)
            ):
                if "value" not in schema:
                    raise self.fail(
                        item_key, f"must be a table of {', '.join(schema)}, not one column."
                    )
                item, short = {"value": element}, True
            table = self.table(item_key, item)
            items.append(self.obj(item_key, table, schema, phone=phone, short=short))
        return Many(key=key, items=tuple(items))

    def passthrough(self, key: str, raw: object) -> Node:
        if isinstance(raw, dict) and not any(k in raw for k in SOURCE_KEYS):
            options = [k for k in raw if k in OPTION_KEYS]
            if options:
                why = (
                    f'has "{options[0]}" but no column, constant or template to take a value from.'
                )
                raise self.fail(key, why)
            return self.obj(key, raw, {})
        if isinstance(raw, list) and raw and all(isinstance(e, str | dict) for e in raw):
            return Many(
                key, tuple(self.passthrough(f"{key}[{i + 1}]", e) for i, e in enumerate(raw))
            )
        return self.field(
            key, raw, known=Known("text"), in_list=key.endswith("]"), passthrough=True
        )

    def field(
        self,
        key: str,
        raw: object,
        *,
        known: Known,
        in_list: bool = False,
        passthrough: bool = False,
    ) -> Field:
        spec: dict[str, Any] = {"key": key, "kind": known.kind, "required": known.required}
        spec |= {"what": known.what, "split": _SPLIT_DEFAULT.get(known.kind, "")}
        spec["one_line"] = known.one_line or known.kind in _ONE_LINE_KINDS
        if isinstance(raw, str):
            return Field(**spec, source="column", columns=(raw,))
        if not isinstance(raw, dict):
            made = Field(**spec, source="constant", constant=self.constant(key, raw))
            self.known_values(made, known)
            return made
        self.table(key, raw, SOURCE_KEYS + OPTION_KEYS)
        sources = [k for k in SOURCE_KEYS if k in raw]
        if len(sources) != 1:
            which = " and ".join(sources) or "none"
            raise self.fail(key, f"needs exactly one of column, constant or template, not {which}.")
        spec["source"] = sources[0]
        if sources[0] == "from_id" and (
            known.choices != "debtor_types" or raw["from_id"] is not True
        ):
            raise self.fail(f"{key}.from_id", "only works as a debtor's type = { from_id = true }.")
        spec |= self.source(key, raw, sources[0])
        if "as" in raw:
            if not passthrough:
                raise self.fail(
                    f"{key}.as", "cannot be set for a field filedrop knows; it already converts it."
                )
            if raw["as"] not in AS_KINDS:
                raise self.fail(
                    f"{key}.as", f"is {as_toml(raw['as'])}; use one of {', '.join(AS_KINDS)}."
                )
            spec["kind"] = raw["as"]
            spec["one_line"] = spec["kind"] in _ONE_LINE_KINDS
        spec |= self.options(
            key,
            raw,
            kind=spec["kind"],
            in_list=in_list or known.kind in _SPLIT_DEFAULT,
            one_line=spec["one_line"],
        )
        made = Field(**spec)
        self.known_values(made, known)
        return made

    def known_values(self, f: Field, known: Known) -> None:
        """A constant, default or ``map`` value the checks do not know is refused now: sent, it
        would switch a check off or be refused by Amili."""
        if not known.choices:
            return
        choices = self.choices[known.choices]
        given: list[tuple[str, object]] = [(f"{f.key}.map.{k}", v) for k, v in f.value_map]
        if f.source == "constant":
            given.insert(0, (f.key, f.constant))
        default = f.default
        while default is not None:
            if default.source == "constant":
                given.append((default.key, default.constant))
            default = default.default
        for key, value in given:
            if value not in choices:
                raise self.fail(key, _not_a_choice(value, known, choices))

    def source(self, key: str, raw: dict[str, Any], source: str) -> dict[str, Any]:
        if "names" in raw and source != "column":
            raise self.fail(f"{key}.names", "only works together with column.")
        if source == "column":
            names = self.texts(f"{key}.names", raw.get("names", []))
            return {"columns": (self.text(f"{key}.column", raw["column"]), *names)}
        if source == "constant":
            return {"constant": self.constant(f"{key}.constant", raw["constant"])}
        if source == "template":
            return self.template(f"{key}.template", raw["template"])
        if source == "from_id":
            return {}
        if key != "invoice.originalInvoiceAmount" or raw["sum_of_claims"] is not True:
            why = "only works as invoice.originalInvoiceAmount = { sum_of_claims = true }."
            raise self.fail(f"{key}.sum_of_claims", why)
        return {}

    def options(
        self, key: str, raw: dict[str, Any], *, kind: str, in_list: bool, one_line: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "default" in raw:  # a plain value is the value itself, a table says where to find one
            default = raw["default"]
            if isinstance(default, dict):
                out["default"] = self.field(
                    f"{key}.default", default, known=Known(kind, one_line=one_line), in_list=in_list
                )
            else:
                value = self.constant(f"{key}.default", default)
                out["default"] = Field(
                    key=f"{key}.default", kind=kind, source="constant", constant=value
                )
        if "map" in raw:
            out["value_map"] = self.value_map(f"{key}.map", raw["map"])
        if "pad" in raw:
            out["pad"] = self.whole(f"{key}.pad", raw["pad"], low=1, high=64)
        for name in ("trim", "required"):
            if name in raw:
                out[name] = self.flag(f"{key}.{name}", raw[name])
        if "split" in raw:
            if not in_list:
                raise self.fail(
                    f"{key}.split", "only works for emails, phoneNumbers and other lists."
                )
            out["split"] = (
                raw["split"] if raw["split"] == "" else self.text(f"{key}.split", raw["split"])
            )
        if "country" in raw:
            country = str(raw["country"]).upper()
            if kind != "phone" or country not in phonenumbers.SUPPORTED_REGIONS:
                shown = as_toml(raw["country"])
                why = f'must be a country code such as "NO", for phone numbers only, not {shown}.'
                raise self.fail(f"{key}.country", why)
            out["country"] = country
        return out

    def constant(self, key: str, value: object) -> object:
        if isinstance(value, dt.time | dict):
            raise self.fail(
                key, f"must be text, a number, true/false or a date, not {as_toml(value)}."
            )
        return tuple(value) if isinstance(value, list) else value

    def template(self, key: str, value: object) -> dict[str, Any]:
        text = self.text(key, value)
        try:
            parts = [p for p in string.Formatter().parse(text) if p[1] is not None]
        except ValueError:
            raise self.fail(key, f"is {as_toml(text)}; write {{{{ or }}}} for a brace.") from None
        if any(not name.strip() or spec or conv for _, name, spec, conv in parts):
            raise self.fail(
                key, f'is {as_toml(text)}; write a column name in each {{ }}, like "{{Fakturanr}}".'
            )
        if not parts:
            raise self.fail(
                key, f"is {as_toml(text)} and names no column; use constant for a fixed value."
            )
        return {"template": text, "placeholders": tuple(dict.fromkeys(p[1] for p in parts))}

    def value_map(self, key: str, value: object) -> tuple[tuple[str, Any], ...]:
        table = self.table(key, value)
        if not table:
            raise self.fail(key, 'is empty; list the values, like { P = "PRIVATE" }.')
        seen: dict[str, str] = {}
        for k, v in table.items():
            if isinstance(v, dict | list | dt.date | dt.time):
                raise self.fail(
                    f"{key}.{k}", f"must be text, a number or true/false, not {as_toml(v)}."
                )
            norm = k.strip().casefold()
            if norm in seen:
                raise self.fail(
                    key, f'has both "{seen[norm]}" and "{k}", which match the same cells.'
                )
            seen[norm] = k
        return tuple((k.strip(), v) for k, v in table.items())
