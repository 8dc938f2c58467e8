"""The column-mapping config: one TOML file per source layout.

A mapping says which files it takes, how to read them, and where every Invoice field comes from.
This module loads and checks a mapping file's own sections ([match], [read], [rules], [group]) and
picks the mapping that fits a dropped file; the Invoice sections parse into the tree of tree.py.
Every refusal is one sentence naming the mapping file and the key; mappings/README.md documents
every option.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import io
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from filedrop.errors import MappingError, ReadError
from filedrop.mapping.convert import (
    SPACES,
    date_format_to_strptime,
    quoted,
    shown,
    swap_day_and_month,
)
from filedrop.mapping.tree import (
    CLAIM_FIELDS,
    DEBTOR_FIELDS,
    INVOICE_FIELDS,
    Field,
    Known,
    Many,
    Obj,
    TreeParser,
    as_toml,
    did_you_mean,
    walk_fields,
    with_defaults,
)
from filedrop.read import DELIMITERS, ReadInfo, ReadOptions, Table, header_key
from filedrop.read.table import other_sheets
from filedrop.settings import DEFAULT_INVOICE_TYPES, NotUtf8Error, read_written_text

__all__ = [
    "BUILT_IN_SKIPS",
    "MAX_NESTING",
    "READ_KEYS",
    "RULES",
    "SEVERITIES",
    "TOP_KEYS",
    "TOTALS_WORDS",
    "Mapping",
    "SkipRule",
    "load_mapping",
    "load_mappings",
    "payment_words",
    "payments_unread",
    "select_mapping",
]

SEVERITIES = ("error", "warning", "off")
RULES = ("required", "amount", "date", "due_date", "currency", "national_id", "orgnr", "kid")
RULES += ("email", "phone", "value_map", "text", "group", "zip", "paid")
TOP_KEYS = ("name", "match", "read", "rules", "group", "skip", "invoice", "debtor", "debtors")
TOP_KEYS += ("claims",)
"""The keys a mapping file may have at its top level."""
READ_KEYS = ("sheet", "header_row", "encoding", "delimiter", "decimal", "thousands", "dates")
"""The keys of its [read] section."""

SKIP_KEYS = ("column", "names", "is", "at_most")
"""The keys of one rule of its [skip] section."""
TOTALS_WORDS = ("sum", "sum totalt", "sum total", "total", "totalt", "totalsum", "i alt")
TOTALS_WORDS += ("subtotal", "delsum", "grand total", "totals")
"""What a totals row says in one of its cells (case, spaces and a final colon ignored); the
built-in rule ``skip.totals`` looks for them."""

BUILT_IN_SKIPS = ("totals", "not_due")
"""The [skip] rules a mapping has without writing them: ``name = false`` turns one off (true
leaves it on), and a rule of one's own named ``totals`` replaces that one."""

MAX_NESTING = 20
"""Tables and lists inside each other, at most; the deepest real field is a handful."""


@dataclass(frozen=True)
class SkipRule:
    """One rule of [skip]: a row whose cell ``is`` one of some texts, or is an amount ``at_most``
    some number, is not an invoice."""

    name: str  # "skip.credit_notes", for messages
    field: Field  # where the cell comes from (kind "amount" for at_most)
    equals: tuple[str, ...] = ()  # casefolded; "" matches an empty cell
    at_most: float | None = None


@dataclass(frozen=True)
class Mapping:
    """One source layout, loaded from one TOML file."""

    name: str
    path: Path
    read: ReadOptions
    files: tuple[str, ...]  # file-name globs; () = any name
    headers: tuple[str, ...]  # headers a file must have
    decimal: str
    thousands: str  # every character that may group thousands
    date_formats: tuple[str, ...]  # as the user wrote them, for messages
    strptime_formats: tuple[str, ...]
    rules: dict[str, str] = field(hash=False)
    invoice: Obj
    debtors: Many
    claims: Many
    group_by: tuple[str, ...] = ()  # names of the column grouping rows; () = a row is an invoice
    skip: tuple[SkipRule, ...] = ()
    skip_totals: bool = True  # the built-in skip.totals rule (off with skip.totals = false)
    skip_not_due: bool = True  # the built-in skip.not_due rule (off with skip.not_due = false)
    unread: tuple[str, ...] = ()  # columns of what is owed it leaves unread on purpose
    text_sha256: str = ""
    """The hash of the mapping file's text: an ERROR found under other mappings is tried again."""

    def matches_name(self, file_path: Path) -> bool:
        """True when the file name fits one of ``match.files`` (any name when there are none)."""
        name = file_path.name.lower()
        return not self.files or any(fnmatch.fnmatchcase(name, g.lower()) for g in self.files)

    def severity(self, rule: str) -> str:
        """error, warning or off for one validation rule."""
        return self.rules.get(rule, "error")

    @cached_property
    def claim_amounts(self) -> tuple[Field | None, ...]:
        """Each claim line's ``remainingAmount`` Field (None for a line without one), in the
        mapping's order: what an invoice's claims add up to, and what makes a line there."""
        return tuple(
            item.get_field("remainingAmount") if isinstance(item, Obj) else None
            for item in self.claims.items
        )

    @cached_property
    def money_fields(self) -> tuple[Field, ...]:
        """The fields whose amounts go to collection: the invoice's originalInvoiceAmount and
        each claim's remainingAmount. A field of the user's own converted ``as = "amount"``
        only passes a number on; reading a column of what was paid or is owed, it takes
        nothing off what is collected."""
        invoiced = self.invoice.get_field("originalInvoiceAmount")
        claimed = (f for f in self.claim_amounts if f is not None)
        return (*([invoiced] if invoiced is not None else []), *claimed)

    @cached_property
    def column_refs(self) -> tuple[tuple[str, tuple[str, ...], str], ...]:
        """Every (key, header names, how) the mapping reads from a file, in mapping order."""
        refs = [("match.headers", (h,), "requires") for h in self.headers]
        if self.group_by:
            refs.append(("group.by", self.group_by, "groups by"))
        refs += [(rule.name, rule.field.columns, "names") for rule in self.skip]
        return (*refs, *self.field_refs)

    @cached_property
    def field_refs(self) -> tuple[tuple[str, tuple[str, ...], str], ...]:
        """The ``column_refs`` of the fields alone: the columns whose values go to Amili."""
        refs: list[tuple[str, tuple[str, ...], str]] = []
        for node in (self.invoice, self.debtors, self.claims):
            for f in (each for top in walk_fields(node) for each in with_defaults(top)):
                if f.source == "column":
                    refs.append((f.key, f.columns, "names"))
                refs += [(f.key, (p,), "uses in its template") for p in f.placeholders]
        return tuple(refs)

    def resolve_columns(self, headers: list[str], *, file_name: str) -> dict[tuple[str, ...], int]:
        """Header names -> column position; MappingError naming the first column the file lacks."""
        found = self._positions(headers)
        for key, names, how in self.column_refs:
            if names not in found:
                alts = "".join(f' (or "{n}")' for n in names[1:])
                listed = ", ".join(map(shown, filter(str.strip, headers))) or "none"
                fix = (
                    'fix the header or add the name to "names"'
                    if how == "names"
                    else "fix the header"
                )
                raise MappingError(
                    str(self.path),
                    f'key "{key}" {how} column "{names[0]}"{alts}, which {file_name} does not'
                    f" have (its headers: {listed}); {fix}{_constant_hint(key, names)}.",
                )
        return found

    def _positions(self, headers: list[str]) -> dict[tuple[str, ...], int]:
        index: dict[str, int] = {}
        for i, header in enumerate(headers):
            index.setdefault(header_key(header), i)  # a repeated header: the first one counts
        found = {}
        for _, names, _ in self.column_refs:
            pos = next((index[k] for k in map(header_key, names) if k in index), None)
            if pos is not None:
                found[names] = pos
        return found


def load_mappings(
    path: Path, *, invoice_types: tuple[str, ...] = DEFAULT_INVOICE_TYPES
) -> list[Mapping]:
    """A mapping file, or every ``*.toml`` in a folder (sorted by file name).

    ``invoice_types``: the invoice types a mapping may give (the setting ``invoice_types``).
    """
    if not path.is_dir():
        return [load_mapping(path, invoice_types=invoice_types)]
    files = sorted(path.glob("*.toml"))
    if not files:
        raise MappingError(
            str(path), "has no *.toml mapping files; add one (see mappings/README.md)."
        )
    return [load_mapping(f, invoice_types=invoice_types) for f in files]


def load_mapping(path: Path, *, invoice_types: tuple[str, ...] = DEFAULT_INVOICE_TYPES) -> Mapping:
    """Parse and check one mapping file; MappingError names the file and the key at fault."""
    try:
        text = read_written_text(path)
    except FileNotFoundError:
        raise MappingError(str(path), "does not exist.") from None
    except NotUtf8Error as exc:
        raise MappingError(str(path), f"{exc}.") from None
    except OSError as exc:
        raise MappingError(str(path), f"cannot be read ({exc}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(str(path), f"is not valid TOML: {exc}.") from None
    except RecursionError:  # inline tables or lists nested deeper than Python's stack
        raise MappingError(str(path), _too_deep(_deepest_line_key(text))) from None
    too_deep = _too_deep_key(data)
    if too_deep is not None:
        raise MappingError(str(path), _too_deep(too_deep))
    mapping = _Loader(path, invoice_types=invoice_types).mapping(data)
    return replace(mapping, text_sha256=hashlib.sha256(text.encode()).hexdigest())


def _too_deep(key: str) -> str:
    return (
        f'key "{key}" nests tables more than {MAX_NESTING} levels deep; a mapping needs only a few,'
        " like [debtor.addresses]."
    )


def _shown_key(parts: list[str]) -> str:
    """A dotted key for a message, cut short: the depth itself is the news, not every level."""
    return ".".join(parts[:4]) + ("…" if len(parts) > 4 else "")


def _too_deep_key(data: dict[str, Any]) -> str | None:
    """The first key nested deeper than MAX_NESTING tables or lists, or None.

    Walked with a stack, not recursion, so any depth TOML can parse is measured safely; the
    tree parser after it recurses once per level.
    """
    stack: list[tuple[list[str], object]] = [([], data)]
    while stack:
        parts, value = stack.pop()
        if len(parts) > MAX_NESTING:
            return _shown_key(parts)
        if isinstance(value, dict):
            stack += [([*parts, str(k)], v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [([*parts, f"[{i + 1}]"], v) for i, v in enumerate(value)]
    return None


_HEADER_LINE = re.compile(r"\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?")


def _deepest_line_key(text: str) -> str:
    """The key of the line that opens the most braces and brackets, under its [table].

    Only for the message when TOML itself gave up on the depth, so a rough reading will do.
    """
    table, key, most = "", "", -1
    for line in text.splitlines():
        header = _HEADER_LINE.fullmatch(line)
        if header:
            table = header.group(1).replace(" ", "")
            continue
        opened = line.count("{") + line.count("[")
        if "=" in line and opened > most:
            name = line.split("=", 1)[0].strip().strip('"')
            key, most = f"{table}.{name}" if table else name, opened
    return _shown_key(key.split(".")) if key else "(top level)"


#: Headers of a column of what is still owed on an invoice (case, spaces and punctuation
#: ignored): a mapping that reads the invoice's amount and leaves such a column unread would
#: take a partly paid invoice to collection for its whole amount. ``filedrop init`` places
#: them as the claim's remainingAmount.
OWED_HEADERS = (
    "Restbeløp", "Rest", "Utestående", "Åpent beløp", "Saldo", "Gjenstående",
    "Remaining", "Remaining amount", "Outstanding", "Balance", "Open amount", "Amount due",
    "Balance due",
)  # fmt: skip


def loose_key(text: str) -> str:
    """A header as the draft's synonyms are compared: case, spaces and punctuation ignored
    (Fakt. nr as Fakt nr), on top of what ``header_key`` ignores."""
    return re.sub(r"[\W_]+", "", header_key(text))


_OWED_KEYS = frozenset(map(loose_key, OWED_HEADERS))
#: A word of a longer header that says so ("Utestående beløp", "Restbeløp inkl. mva",
#: "Outstanding balance"), and phrases as ``loose_key`` writes them ("Åpent beløp NOK", "Rest
#: å betale"). "Saldo", "Balance" and "Rest" count only alone (``OWED_HEADERS``): beside other
#: words they are a customer's balance ("Saldo kunde", "Utgående saldo", "Balance forward") or
#: what is left of something else ("Rest løpetid").
_OWED_WORDS = frozenset(
    {"restbeløp", "restbelop", "utestående", "utestaende", "gjenstående", "gjenstaende"}
    | {"gjenstaaende", "ubetalt", "restanse", "restanser", "resterende", "skyldig", "restsaldo"}
    | {"gjenstår", "gjenstar", "outstanding", "remaining", "unpaid", "overdue", "owed"}
    | {"restbeløb", "restbelob", "remainder"}  # Danish, and e-conomic's "remainder"
)
_OWED_PHRASES = (
    "åpentbeløp", "apentbelop", "åpensaldo", "apensaldo", "åbetale", "tilbetaling",
    "forfaltbeløp", "åpenpost",
    "amountdue", "balancedue", "dueamount", "openamount", "amountopen", "openbalance",
    "nonpaid", "unpaid", "totaldue",
)  # fmt: skip
#: How a header may begin that says so in words written apart: "Rest beløp i NOK". Only at
#: its start: inside a key, "restbeløp" may end another word ("Interest beløp").
_OWED_KEY_STARTS = ("restbeløp", "restbelop", "restbeløb")
#: Words that make such a header say something else: days overdue ("Dager utestående"), a
#: date or time ("Saldo dato", "Outstanding since"), a count or quantity ("Remaining qty"), a
#: reference, a credit ("Rest kreditt"), orders, a term or a share ("Remaining %"), or a yes
#: or no ("isOverdue").
_NOT_OWED_WORDS = frozenset(
    {"dager", "dag", "days", "dato", "date", "since", "siden", "term", "løpetid", "antall"}
    | {"count", "qty", "quantity", "stk", "ref", "sheet", "nr", "no", "id", "kreditt"}
    | {"credit", "konto", "account", "order", "orders", "ordre", "lager", "stock", "prosent"}
    | {"percent", "type", "is"}
)


def owed_header(header: str) -> bool:
    """Whether ``header`` says its column holds what is still owed: one of ``OWED_HEADERS``, or
    one holding one of their telling words or phrases and nothing that makes it another thing."""
    key = loose_key(header)
    if "%" in header:  # a share of something, "Remaining %"
        return False
    if key in _OWED_KEYS:
        return True
    words = _words(header)
    owed = (
        not _OWED_WORDS.isdisjoint(words)
        or any(p in key for p in _OWED_PHRASES)
        or key.startswith(_OWED_KEY_STARTS)
    )
    return owed and _NOT_OWED_WORDS.isdisjoint(words)


def _owed_unread(
    mapping: Mapping, headers: list[str], found: dict[tuple[str, ...], int]
) -> str | None:
    """The first column of ``headers`` whose header says it holds what is still owed and that
    neither the invoice's amount nor a claim's reads (``_read_as_amounts``: not as the
    fallback of the invoice's amount) nor its ``match.unread`` names; None when there is
    none. Read into a text (a template's description) it is not what goes as the amount."""
    read = _read_as_amounts(mapping, headers, found)
    left = set(map(loose_key, mapping.unread))
    return next(
        (
            header
            for at, header in enumerate(headers)
            if owed_header(header) and at not in read and loose_key(header) not in left
        ),
        None,
    )


#: Words of a header of what was paid on an invoice ("Innbetalt", "Betalt beløp", "Amount
#: paid", "Sum betalinger", "Innbet."), after a name written in one word is split where
#: its capitals begin ("PaidToDate", "SumInnbetalt"). A header of what is still owed is never
#: one ("Rest å betale", "Ubetalt": ``owed_header`` is asked first).
_PAID_WORDS = frozenset(
    {"innbetalt", "innbetalte", "betalt", "betalte", "innbetaling", "innbetalinger", "innbet"}
    | {"delbetalt", "delbetaling", "delbetalinger", "betaling", "betalinger", "paid", "payment"}
    | {"payments", "innb"}
)
#: Words that say so in a header of their own, but for a currency ("Mottatt", "Mottatt NOK",
#: "Utlignet": a word that beside others says something else was received, "Ordre mottatt"),
#: and words written together with another ("Betaltbeløp", "Amount received", "Dekket beløp").
_PAID_ALONE = frozenset({"mottatt", "received", "receipts", "utlignet"})
_CURRENCY_WORDS = frozenset({"nok", "kr", "kroner", "sek", "dkk", "eur", "usd", "gbp", "valuta"})
_PAID_COMPOUNDS = (
    "betaltbeløp", "betaltbelop", "mottattbeløp", "mottattbelop", "amountreceived",
    "cashreceived", "receivedamount", "amountpaid", "paidamount", "totalpaid", "sumpaid",
    "paidtodate", "innbetalingsbeløp", "innbetalingsbelop", "betalingsbeløp", "betalingsbelop",
    "delinnbetaling", "suminnbetalt", "akonto", "utlignetbeløp", "utlignetbelop", "dekketbeløp",
    "dekketbelop", "appliedamount", "amountapplied", "settledamount", "amountsettled",
)  # fmt: skip
#: Words that make such a header say something else: when, how, by or to whom, on which
#: terms or in which currency it is paid ("Betalt dato", "Payment method", "Betalt av",
#: "Mottatt fra",
#: "Betalt til konto", "Payment terms", "Payment currency"); a status, a note, a reminder, an
#: agreement or whether it is allowed ("Payment status", "Delbetaling tillatt"); a count, a
#: share or a reference; a commission paid out ("CommissionPaid"); or that it was not ("Ikke
#: betalt").
_NOT_PAID_WORDS = frozenset(
    {"dato", "date", "dag", "dager", "days", "tid", "time", "kl", "when", "frist", "due"}
    | {"method", "metode", "måte", "mate", "via", "med", "with", "av", "by", "til", "to"}
    | {"terms", "betingelser", "currency", "valuta", "status", "note", "notes", "notat"}
    | {"remark", "merknad", "kommentar", "comment", "reminder", "purring", "purret", "address"}
    | {"adresse", "link", "lenke", "period", "periode", "schedule", "plan", "agreement"}
    | {"avtale", "bank", "konto", "account", "voucher", "bilag", "for", "allowed", "tillatt"}
    | {"enabled", "antall", "count", "number", "andel", "share", "prosent", "percent", "kid"}
    | {"ref", "referanse", "reference", "id", "nr", "no", "type", "ikke", "not", "kort", "card"}
    | {"fra", "from", "term", "means", "mode", "channel", "provider", "info", "text", "tekst"}
    | {"message", "melding", "instructions", "condition", "betingelse", "option", "form"}
    | {"solution", "recipient", "mottaker", "pct", "ratio", "out", "non", "un", "overdue"}
    | {"forfalt", "at", "commission", "provisjon"}
)
#: Phrases (as ``loose_key`` writes them) that say what was paid whatever their words: paid
#: until a day ("Paid to date", "Innbetalt pr. dato", "Betalt til nå", "Innbetalt til dags
#: dato"), on account ("Innbetalt a konto"), or in the invoice's currency (Fiken's
#: "totalPaidInCurrency").
_PAID_PHRASES = (
    "paidtodate", "prdato", "perdato", "tildato", "todate", "akonto", "onaccount",
    "paidincurrency", "tildagsdato", "tilnå", "pridag", "hittil",
)  # fmt: skip


def _words(header: str) -> set[str]:
    """A header's words, in small letters, a name in one word split at its capitals."""
    spaced = re.sub(r"(?<=[a-zæøå])(?=[A-ZÆØÅ])", " ", unicodedata.normalize("NFC", header))
    return set(re.split(r"[\W_]+", spaced.casefold())) - {""}


def payment_words(header: str) -> set[str]:
    """The words of ``header`` that speak of a payment (``_PAID_WORDS``): "Betalt", "Betaling"."""
    return _words(header) & _PAID_WORDS


def paid_header(header: str) -> bool:
    """Whether ``header`` says its column holds what was paid on an invoice: one of the words
    above and none that makes it another thing, or one of the phrases (and not one of what is
    still owed)."""
    if owed_header(header) or "%" in header or "#" in header:  # a share, a count
        return False
    words, key = _words(header), loose_key(header)
    said = (
        not _PAID_WORDS.isdisjoint(words)
        or (words & _PAID_ALONE and words - _CURRENCY_WORDS <= _PAID_ALONE)
        or any(p in key for p in _PAID_COMPOUNDS)
    )
    return said and (_NOT_PAID_WORDS.isdisjoint(words) or any(p in key for p in _PAID_PHRASES))


def _read_as_amounts(
    mapping: Mapping, headers: list[str], found: dict[tuple[str, ...], int]
) -> set[int]:
    """The columns ``mapping`` reads as amounts that go to collection (``money_fields``): each
    one's own column, and a default's unless the field's own column is the invoice's amount.
    A column of what is owed read only where the invoice's amount is empty (``{ column =
    "Beløp", default = { column = "Restbeløp" } }``) is not what goes: an invoice with an
    amount went for it whole. One read where another column of what is owed is empty
    ("Utest.", then "Restbeløp") is."""
    amount = mapping.invoice.get_field("originalInvoiceAmount")
    invoiced = found.get(amount.columns) if amount is not None else None
    read: set[int] = set()
    for top in mapping.money_fields:
        for f in with_defaults(top):
            if f.kind != "amount" or f.source != "column" or f.columns not in found:
                break
            read.add(found[f.columns])
            if found[top.columns] == invoiced:
                break
    return read


def payments_unread(mapping: Mapping, headers: list[str]) -> list[int]:
    """The columns of ``headers`` whose header says they hold what was paid on an invoice and
    that neither the invoice's amount nor a claim's reads (``money_fields``) nor its
    ``match.unread`` names. Where an invoice shows a payment there while its claims add up to
    its whole amount, nothing was taken off, and it would go to collection for all of it
    (``prepare`` refuses it). A text, a template, a field of the user's own (``as = "amount"``
    too) or a skip rule reading the column takes nothing off, and does not count."""
    found = mapping._positions(headers)
    read = {
        found[f.columns]
        for top in mapping.money_fields
        for f in with_defaults(top)
        if f.kind == "amount" and f.source == "column" and f.columns in found
    }
    left = set(map(loose_key, mapping.unread))
    return [
        at
        for at, header in enumerate(headers)
        if paid_header(header) and at not in read and loose_key(header) not in left
    ]


def select_mapping(
    mappings: list[Mapping],
    file_path: Path,
    read: Callable[[Path, ReadOptions], Table],
    *,
    ignore_names: bool = False,
) -> tuple[Mapping, Table]:
    """The first mapping whose file names and columns fit ``file_path``, and the file read with it.

    Reads at most once per distinct ``ReadOptions``. ``ignore_names`` skips the ``match.files``
    globs (for a mapping the user named on the command line). When no mapping fits, the
    MappingError names the file, each mapping tried and why it did not fit.
    """
    tables: dict[ReadOptions, Table | ReadError] = {}
    reasons: list[str] = []
    headers: list[str] | None = None
    info: ReadInfo | None = None  # of the last table read
    for mapping in mappings:
        label = mapping.path.name
        if not ignore_names and not mapping.matches_name(file_path):
            reasons.append(f"{label} takes only files named {', '.join(mapping.files)}")
            continue
        if mapping.read not in tables:
            try:
                tables[mapping.read] = read(file_path, mapping.read)
            except ReadError as exc:
                tables[mapping.read] = exc
        table = tables[mapping.read]
        if isinstance(table, ReadError):
            reasons.append(f"{label} cannot read it ({table.detail.rstrip('.')})")
            continue
        found = mapping._positions(table.headers)
        missing = next(
            ((k, names) for k, names, _ in mapping.column_refs if names not in found), None
        )
        if missing is None and (owed := _owed_unread(mapping, table.headers, found)):
            # A header is the file's: one of 200,000 characters is shown cut, as a cell is.
            reasons.append(
                f"{label} leaves column {quoted(owed)} unread, which holds what is still owed: "
                "its invoices would go to collection for their whole amount; read it (a claim's "
                f"remainingAmount = {quoted(owed)}), or name it in [match] unread if it is not "
                "what the debtor owes"
            )
            headers, info = table.headers, table.info
            continue
        if missing is None:
            _refuse_ambiguous_columns(mapping, table, found)
            return mapping, table
        headers, info = table.headers, table.info
        hint = _other_delimiter(mapping.read.delimiter, table, missing[1]) or _constant_hint(
            *missing, defaulted=_defaulted(mapping, missing[0])
        )
        # A header renamed a little in the ERP ("Forfall dato"), among those no field reads.
        used = set(found.values())
        unread = [h for i, h in enumerate(table.headers) if h.strip() and i not in used]
        close = did_you_mean(missing[1][0], unread)
        reasons.append(f'{label} needs column "{missing[1][0]}"{close} (key "{missing[0]}"){hint}')
    errors = [t for t in tables.values() if isinstance(t, ReadError)]
    if errors and headers is None:  # nothing could read it: that is the news
        raise errors[0]
    named = [h for h in (headers or []) if h.strip()]
    # A wide export must not make a message of tens of thousands of characters (an outcome cell
    # holds 32,767): the first headers say enough to see which layout it is.
    listed = ", ".join(map(shown, named[:_HEADERS_SHOWN]))  # and a long one cut
    if len(named) > _HEADERS_SHOWN:
        listed += f" and {len(named) - _HEADERS_SHOWN} more"
    tail = f" (the file's headers: {listed})" if headers is not None else ""
    others = other_sheets(info.sheets, info.sheet) if info and info.sheet else ""
    if others:  # the data may be on another sheet than the one read (the first, unless set)
        tail += (
            f'; that is sheet "{info.sheet}", and read.sheet in the mapping can name another: '
            f"{others}"
        )
    tried = "; ".join(reasons) or "there are no mappings"
    raise MappingError(str(file_path), f"no mapping fits this file: {tried}{tail}.")


# Keys whose values are codes (NOK, NOTICE, PRIVATE, NO): a bare text there is easily meant as
# the code itself, where the mapping reads a column of that name.
_CODE_KEYS = (".currency", ".type", ".countryCode")


def _constant_hint(key: str, names: tuple[str, ...], *, defaulted: bool = False) -> str:
    """How to write a fixed value, when a missing column's name looks like one; what a
    ``default`` does, for a column that has one (it was read as a fixed value for a column
    the file lacks)."""
    if defaulted:
        return "; its default fills the column's empty cells, and the file has no such column"
    if not key.endswith(_CODE_KEYS) or len(names) != 1:
        return ""
    return f'; if "{names[0]}" is the value itself, write {{ constant = "{names[0]}" }}'


def _defaulted(mapping: Mapping, key: str) -> bool:
    """Whether the mapping's field ``key`` reads a column and has a default."""
    return any(
        f.key == key and f.source == "column" and f.default is not None
        for node in (mapping.invoice, mapping.debtors, mapping.claims)
        for f in walk_fields(node)
    )


def _shown_delimiter(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f'"{delimiter}"'


def _other_delimiter(delimiter: str | None, table: Table, names: tuple[str, ...]) -> str:
    """Why a CSV read with the mapping's delimiter lacks a column it has: its header line is
    separated by another one, so the column hides in one long header ('' when not)."""
    if delimiter is None or table.info.kind != "csv":
        return ""
    wanted = set(map(header_key, names))
    # The header line, unsplit, is the table's header or, below title lines the header row was
    # looked for among, the first cell of one of its first rows (a wide file's other cells are
    # not split for nothing).
    lines = [*table.headers, *(c for c in table.cells.iloc[:20, 0].tolist() if c)]
    for other in DELIMITERS:
        # Split as CSV: an export that quotes every field ("Kundenr","Beløp") is common.
        if other != delimiter and any(
            wanted & set(map(header_key, next(csv.reader([line], delimiter=other), [])))
            for line in lines
        ):
            return (
                f", but the file's header line is separated by {_shown_delimiter(other)}, not by "
                f"{_shown_delimiter(delimiter)} as read.delimiter says: remove read.delimiter to "
                "have it detected"
            )
    return ""


def _refuse_ambiguous_columns(
    mapping: Mapping, table: Table, found: dict[tuple[str, ...], int]
) -> None:
    """A column the mapping reads whose header the file has twice, with other values under the
    other: which holds what is to be sent is the user's to say (an old amount kept beside the
    new one, perhaps hidden in Excel), so the file is refused, naming both. Two columns that
    hold the same values are one column twice, and the first is read."""
    positions: dict[str, list[int]] = {}
    for i, header in enumerate(table.headers):
        positions.setdefault(header_key(header), []).append(i)
    for key, names, _ in mapping.column_refs:
        if key == "match.headers":
            continue  # only there to be present: its values are not read
        first, *others = positions[header_key(table.headers[found[names]])]
        for other in others:
            differ = (table.cells[first] != table.cells[other]).to_numpy()
            if differ.any():
                row = table.row_numbers[int(differ.argmax())]
                raise ReadError(
                    str(table.path),
                    f"columns {table.letter(first)} and {table.letter(other)} are both headed "
                    f'"{table.headers[first]}", which key "{key}" reads, and hold different '
                    f"values (the first on row {row}); rename or delete the one not to be sent, "
                    "then drop the file again",
                )


#: How many of a file's headers a "no mapping fits" message lists.
_HEADERS_SHOWN = 20


class _Loader(TreeParser):
    """Turns parsed TOML into a Mapping, refusing the first thing that is wrong.

    The file-level sections are checked here; TreeParser checks the Invoice tables.
    """

    def mapping(self, data: dict[str, Any]) -> Mapping:
        self.table("", data, TOP_KEYS)
        match = self.table("match", data.get("match", {}), ("files", "headers", "unread"))
        read = self.table("read", data.get("read", {}), READ_KEYS)
        rules = self.table("rules", data.get("rules", {}), RULES)
        for rule, severity in rules.items():
            if severity not in SEVERITIES:
                raise self.fail(
                    f"rules.{rule}", f'is {as_toml(severity)}; use "error", "warning" or "off".'
                )
        group = self.table("group", data.get("group", {}), ("by",))
        skip = self.table("skip", data.get("skip", {}))
        if "debtor" in data and "debtors" in data:
            raise self.fail(
                "debtors", "and [debtor] cannot both be there; use [debtor] for one debtor."
            )
        dkey = "debtors" if "debtors" in data else "debtor"
        for key, what in (
            (dkey, "debtor (add [debtor] with type = ...)"),
            ("claims", "claim (add [[claims]])"),
        ):
            if key not in data:
                raise self.fail(key, f"is missing; every invoice needs a {what}.")
        decimal, thousands = self.numbers(read)
        formats = self.texts("read.dates", read.get("dates", ["yyyy-mm-dd"]))
        both = next((f for f in formats if f != swap_day_and_month(f) in formats), None)
        if both is not None:
            raise self.fail(
                "read.dates",
                f'lists both "{both}" and "{swap_day_and_month(both)}": a date whose day is 12 '
                "or less would be read by whichever is listed first, the other's dates by the "
                "other; keep the one the export writes.",
            )
        options = ReadOptions(
            sheet=self.sheet(read.get("sheet", 1)),
            header_row=self.whole("read.header_row", read["header_row"], low=1, high=10**6)
            if "header_row" in read
            else None,
            encoding=self.encoding(read.get("encoding")),
            delimiter=self.delimiter(read.get("delimiter")),
        )
        mapping = Mapping(
            name=self.text("name", data.get("name", self.path.stem)),
            path=self.path,
            read=options,
            files=self.texts("match.files", match.get("files", [])),
            headers=self.texts("match.headers", match.get("headers", [])),
            decimal=decimal,
            thousands=thousands,
            date_formats=formats,
            strptime_formats=tuple(self.date_format(f) for f in formats),
            rules=dict(rules),
            invoice=self.obj(
                "invoice", self.table("invoice", data.get("invoice", {})), INVOICE_FIELDS
            ),
            debtors=self.objects(dkey, data[dkey], DEBTOR_FIELDS),
            claims=self.objects("claims", data["claims"], CLAIM_FIELDS),
            group_by=self.texts("group.by", group["by"]) if "by" in group else (),
            skip=tuple(
                self.skip_rule(name, rule)
                for name, rule in skip.items()
                if not (name in BUILT_IN_SKIPS and isinstance(rule, bool))
            ),
            skip_totals=skip.get("totals", True) is True,
            skip_not_due=self.not_due(skip.get("not_due", True)),
            unread=self.texts("match.unread", match.get("unread", [])),
        )
        expected = tuple(dict.fromkeys(n for _, names, _ in mapping.column_refs for n in names))
        return replace(mapping, read=replace(options, expected_headers=expected))

    def not_due(self, raw: object) -> bool:
        """Whether the built-in ``skip.not_due`` is on: it judges an invoice, after its checks,
        by its own due date, which no rule of one's own can do."""
        if not isinstance(raw, bool):
            raise self.fail(
                "skip.not_due",
                f"is {as_toml(raw)}; it is built in and on: write not_due = false to send "
                "invoices before they fall due, and give a rule of your own another name.",
            )
        return raw

    def skip_rule(self, name: str, raw: object) -> SkipRule:
        key = f"skip.{name}"
        if isinstance(raw, bool) and name not in BUILT_IN_SKIPS:
            raise self.fail(
                key, "can be false only for the built-in rules skip.totals and skip.not_due."
            )
        rule = self.table(key, raw, SKIP_KEYS)
        tests = [k for k in ("is", "at_most") if k in rule]
        if "column" not in rule or len(tests) != 1:
            raise self.fail(
                key,
                'needs a column and one of "is" or "at_most", like { column = "Fakturanr",'
                ' is = ["", "Sum"] }.',
            )
        at_most = rule.get("at_most")
        source = {k: rule[k] for k in ("column", "names") if k in rule}
        known = Known("amount" if at_most is not None else "text")
        column = self.field(key, source, known=known)
        if at_most is None:
            texts = [rule["is"]] if isinstance(rule["is"], str) else rule["is"]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                given = as_toml(rule["is"])
                raise self.fail(
                    f"{key}.is",
                    f'must be text or a list of text ("" for an empty cell), not {given}.',
                )
            return SkipRule(key, column, equals=tuple(t.strip().casefold() for t in texts))
        if not isinstance(at_most, int | float) or isinstance(at_most, bool):
            raise self.fail(f"{key}.at_most", f"must be a number, like 0, not {as_toml(at_most)}.")
        return SkipRule(key, column, at_most=float(at_most))

    def numbers(self, read: dict[str, Any]) -> tuple[str, str]:
        decimal = read.get("decimal", ".")
        if decimal not in (".", ","):
            raise self.fail("read.decimal", f'must be "," or ".", not {as_toml(decimal)}.')
        thousands = "".join(self.texts("read.thousands", read.get("thousands", [" "])))
        if decimal in thousands:
            raise self.fail("read.thousands", f'cannot contain the decimal separator "{decimal}".')
        return decimal, thousands + SPACES if " " in thousands else thousands

    def date_format(self, user_format: str) -> str:
        try:
            return date_format_to_strptime(user_format)
        except ValueError:
            raise self.fail(
                "read.dates",
                f'has "{user_format}", which is not a date format (use dd, mm, yyyy or yy with'
                ' . - / or a space between them, like "dd.mm.yyyy").',
            ) from None

    def sheet(self, value: object) -> str | int:
        if isinstance(value, str) and value:
            return value
        return self.whole("read.sheet", value, low=1, high=1000) - 1  # users count from 1

    def encoding(self, value: object) -> str | None:
        if value is None:
            return None
        try:
            name = codecs.lookup(self.text("read.encoding", value)).name
        except LookupError:
            why = f'is {as_toml(value)}, which is not an encoding (try "utf-8" or "cp1252").'
            raise self.fail("read.encoding", why) from None
        try:  # "hex" and "base64" are codecs too, but they do not make text
            io.TextIOWrapper(io.BytesIO(), encoding=name)
        except LookupError:
            why = f'is {as_toml(value)}, which is not a text encoding (try "utf-8" or "cp1252").'
            raise self.fail("read.encoding", why) from None
        return name

    def delimiter(self, value: object) -> str | None:
        text = {"tab": "\t", "\\t": "\t"}.get(str(value).lower(), value)
        if value is not None and (not isinstance(text, str) or len(text) != 1):
            why = f'must be one character such as ";" or "," or "tab", not {as_toml(value)}.'
            raise self.fail("read.delimiter", why)
        return text
