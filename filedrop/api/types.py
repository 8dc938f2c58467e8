"""What the Amili client takes, returns and raises: credentials, the poll schedule, the typed
batch results read from the documented batch JSON, and the four errors.

The errors answer the one question the pipeline must ask after a POST fails: could Amili have
received these invoices? After `AuthError`, `ApiError` or `ApiUnavailable` certainly not; after
`AmbiguousSubmission` maybe. client.py holds the client that raises them and re-exports them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

from filedrop.errors import FiledropError
from filedrop.logs import printable

__all__ = [
    "KNOWN_STATUSES",
    "MIN_POLL_INTERVAL_S",
    "TERMINAL_STATUSES",
    "AmbiguousSubmission",
    "ApiError",
    "ApiUnavailable",
    "AuthError",
    "BatchResult",
    "Credentials",
    "FailedInvoice",
    "PollSchedule",
    "StillPending",
    "SucceededInvoice",
    "parse_batch",
]

TERMINAL_STATUSES = frozenset({"SUCCESS", "PARTIAL", "FAILED"})
#: Every batch status the API guide names; any other is polled on, with a warning.
KNOWN_STATUSES = TERMINAL_STATUSES | {"QUEUED"}
#: The shortest wait between two polls of one batch, whatever the settings say: a typo such as
#: poll_initial_s = 0.001 must not turn into a hundred GETs a second against Amili.
MIN_POLL_INTERVAL_S = 1.0


# ---------------------------------------------------------------------------------------- errors


class AuthError(FiledropError):
    """Amili refused the credentials, or a freshly issued token; nothing was processed."""

    def __init__(
        self, *, where: str, status: int, client_id: str, detail: str = "", urls: str = ""
    ) -> None:
        super().__init__(where, status)
        self.where = where
        self.status = status
        self.client_id = client_id
        self.detail = detail
        self.urls = urls

    def __str__(self) -> str:
        detail = f", {self.detail}" if self.detail else ""
        # A token URL of one Amili and an API of another is a likely cause worth naming.
        urls = f", and that both URLs belong to the same Amili: {self.urls}" if self.urls else ""
        # A refused poll comes after its batch went: only a refused request sends nothing.
        sent = "" if self.where.startswith("GET ") else " Nothing was sent."
        return (
            f"Amili refused the credentials of client id {self.client_id!r} "
            f"(HTTP {self.status} on {self.where}{detail}); check FILEDROP_CLIENT_ID and "
            f"FILEDROP_CLIENT_SECRET (or FILEDROP_CLIENT_SECRET_FILE){urls}.{sent}"
        )


class ApiError(FiledropError):
    """Amili answered with a definite HTTP error; the request was not processed."""

    def __init__(
        self, method: str, path: str, status: int, excerpt: str, *, urls: str = ""
    ) -> None:
        super().__init__(method, path, status, excerpt)
        self.method = method
        self.path = path
        self.status = status
        self.excerpt = excerpt
        self.urls = urls

    def __str__(self) -> str:
        body = f": {self.excerpt!r}" if self.excerpt else ""
        hint, suspects_url = _hint(self.status, self.path)
        if suspects_url and self.urls:
            hint = f"{hint}: {self.urls}"
        return (
            f"Amili answered {self.method} {self.path} with HTTP {self.status}{body}; "
            f"it did not process the request, {hint}."
        )


class ApiUnavailable(FiledropError):  # noqa: N818 - the name the pipeline uses
    """Amili could not be reached, or kept saying "later"; nothing was processed."""

    def __init__(self, *, where: str, reason: str, attempts: int) -> None:
        super().__init__(where, reason, attempts)
        self.where = where
        self.reason = reason
        self.attempts = attempts

    def __str__(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return (
            f"Amili was not available for {self.where} ({self.reason}) after {tries}; "
            "nothing was processed, so try again later."
        )


class AmbiguousSubmission(FiledropError):  # noqa: N818 - the name the pipeline uses
    """A POST may or may not have reached Amili; it is never resent automatically."""

    def __init__(self, *, method: str, path: str, reason: str) -> None:
        super().__init__(method, path, reason)
        self.method = method
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path}: {self.reason} after the request was sent, so whether "
            "Amili received it cannot be told; it was not resent."
        )


def _hint(status: int, path: str) -> tuple[str, bool]:
    """What to do about a definite HTTP error, as far as the status tells, and whether a wrong
    base URL is a likely cause."""
    if path.endswith("/token"):
        return "check the auth base URL (FILEDROP_ENV or FILEDROP_AUTH_URL)", True
    if status == 403:
        return "check that the client may use this organisation (FILEDROP_ORG_ID)", False
    if status == 404 and "/batches/" in path:
        return "Amili does not know this batch id", False
    if status in (404, 405):
        return (
            "check FILEDROP_ORG_ID and the API base URL (FILEDROP_ENV or FILEDROP_API_URL)",
            True,
        )
    if 300 <= status < 400:
        return "check the base URLs (FILEDROP_ENV, FILEDROP_AUTH_URL, FILEDROP_API_URL)", True
    return "fix what the answer names and send again", False


# ------------------------------------------------------------------------------------ data types


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Client id and secret issued by Amili; the secret never shows in repr or str."""

    client_id: str
    client_secret: str = field(repr=False)

    def __str__(self) -> str:
        return f"client id {self.client_id!r}"


@dataclass(frozen=True, kw_only=True)
class PollSchedule:
    """How long to wait between polls of a batch: ``initial_s`` doubling (``factor``) up to
    ``max_interval_s``, until ``timeout_s`` in all. The settings ``poll_*`` give the values
    (the guide's 1 s doubling to 30 s, for 5 min, by default).

    ``initial_s`` is the wait between the POST and the first poll; every wait after it, between
    two polls, is at least ``MIN_POLL_INTERVAL_S``."""

    initial_s: float
    max_interval_s: float
    timeout_s: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.factor >= 1 and self.max_interval_s > 0):
            msg = "poll schedule needs initial_s > 0, factor >= 1 and max_interval_s > 0"
            raise ValueError(msg)
        if not self.timeout_s >= 0:
            msg = "poll schedule needs timeout_s >= 0"
            raise ValueError(msg)

    def delays(self) -> Iterator[float]:
        """Waits before each poll (1, 2, 4, 8, 16, 30, 30 ...) while their sum <= timeout_s."""
        total_s = 0.0
        next_s = self.initial_s
        floor_s = 0.0  # before the first poll; between two polls, MIN_POLL_INTERVAL_S
        while True:
            delay_s = max(min(next_s, self.max_interval_s), floor_s)
            floor_s = MIN_POLL_INTERVAL_S
            if total_s + delay_s > self.timeout_s + 1e-9:
                return
            total_s += delay_s
            yield delay_s
            next_s *= self.factor


class SucceededInvoice(NamedTuple):
    """An invoice Amili turned into a collection case.

    A named tuple rather than a dataclass: a poll builds one per invoice (100 a batch), and a
    tuple is built in a third of the time a frozen dataclass takes. Its fields are in the order
    the journal records a success in (`Journal.batches_finished`), which takes it as it is.
    """

    invoice_number: str
    invoice_id: str
    case_id: str
    case_number: str


class FailedInvoice(NamedTuple):
    """An invoice Amili rejected, with its reasons as Amili words them."""

    invoice_number: str
    errors: tuple[str, ...]


@dataclass(frozen=True)
class BatchResult:
    """One reading of a batch; ``succeeded``/``failed`` are empty while it is QUEUED."""

    batch_id: str
    status: str
    created_at: str | None
    finished_at: str | None
    succeeded: tuple[SucceededInvoice, ...]
    failed: tuple[FailedInvoice, ...]

    @property
    def terminal(self) -> bool:
        """True once the batch is SUCCESS, PARTIAL or FAILED; any other status means poll again."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class StillPending:
    """`wait` gave up waiting, not on the batch: poll ``batch_id`` again later."""

    batch_id: str
    waited_s: float
    last: BatchResult | None
    failure: str | None = None
    """Why the last poll learnt nothing, when it failed (Amili unavailable, or it answered 404):
    then "still QUEUED" is not what Amili said."""


def _text(value: object) -> str:
    return value if type(value) is str else "" if value is None else str(value)


def _errors(value: object) -> tuple[str, ...]:
    """A failed invoice's errors as lines of text: the guide's list of strings, else what an
    answer of another shape says (one string, objects with a message), never its characters
    one by one. Control characters are escaped: an outcome CSV holding a NUL byte could not be
    read back by 'filedrop journal rebuild', and an escape sequence would reach a terminal."""
    items = [value] if isinstance(value, str | dict) else value or ()
    if not isinstance(items, list | tuple):
        items = [items]
    said = [
        item["message"] if isinstance(item, dict) and isinstance(item.get("message"), str) else item
        for item in items
    ]
    return tuple([printable(_text(item)) for item in said])


_SUCCEEDED_KEYS = ("invoiceNumber", "invoiceId", "caseId", "caseNumber")  # SucceededInvoice's
_succeeded_values = itemgetter(*_SUCCEEDED_KEYS)
_new_tuple = tuple.__new__


def _succeeded(items: Iterable[Any]) -> tuple[SucceededInvoice, ...]:
    """Each succeeded invoice of a batch answer, its fields as text.

    A poll reads 100 of them, 200,000 in a big file's run: the usual item, all four fields
    there as printable strings, is taken as it is, in one lookup and one test. Control
    characters are escaped, as in errors (``_errors``): a NUL byte in a case number made the
    outcome unreadable to a journal rebuild, and the invoices went out again.
    """
    out: list[SucceededInvoice] = []
    for item in items:
        try:
            values = _succeeded_values(item)
        except KeyError:
            values = tuple([item.get(key) for key in _SUCCEEDED_KEYS])
        number, invoice_id, case_id, case_number = values
        if not (
            type(invoice_id) is str
            and type(number) is str
            and type(case_id) is str
            and type(case_number) is str
            and (number + invoice_id + case_id + case_number).isprintable()
        ):
            values = tuple([printable(_text(value)) for value in values])
        out.append(_new_tuple(SucceededInvoice, values))
    return tuple(out)


def parse_batch(data: dict[str, Any]) -> BatchResult:
    """The ``data`` object of a batch answer as a `BatchResult`.

    Raises KeyError, TypeError or AttributeError when it is not the documented shape.
    """
    succeeded = _succeeded(data.get("succeeded") or ())
    failed = tuple(
        [
            FailedInvoice(_text(item.get("invoiceNumber")), _errors(item.get("errors")))
            for item in data.get("failed") or ()
        ]
    )
    status = data["status"]
    if not isinstance(status, str):
        raise TypeError(status)
    return BatchResult(
        batch_id=printable(_text(data["batchId"])),
        status=printable(status),
        created_at=data.get("createdAt"),
        finished_at=data.get("finishedAt"),
        succeeded=succeeded,
        failed=failed,
    )
