"""Log lines for people (text) or for containers (JSON), with national ids masked.

Secrets and tokens never reach a log call in the first place (the client keeps them out); the
mask here is the second line of defence for national identity numbers that appear in values.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TextIO

import orjson

#: A UUID (a batch or organisation id, never personal), or a run of 10 or 11 digits standing alone:
#: a fødselsnummer or D-number, or one whose leading zero a spreadsheet dropped. UUIDs are matched
#: first so that their digit runs are left whole.
_UUID_OR_DIGITS = re.compile(
    r"(?i)(?<![0-9a-f-])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f-])"
    r"|(?<!\d)\d{10,11}(?!\d)"
)
_SHOWN_DIGITS = 6


def mask_ids(text: str, *, keep: Collection[str] = ()) -> str:
    """``11066312345`` -> ``110663*****``: the birth date stays to find the row, the personal
    part goes, and the length stays, so a lost leading zero (``110663****``) is visible.

    Organisation numbers (9 digits) are public and UUIDs are not personal: both stay whole. Ten
    digits are masked only when, with the lost zero put back, they start with a day and a month
    (so phone numbers such as 4791234567 and Unix times stay readable). Digits that are part of
    a value in ``keep`` stay whole: an invoice number the text is about (``1503247635``, a date
    and a sequence, is a common scheme) is what the user looks up, and no one's identity.
    """
    if not keep:
        return _UUID_OR_DIGITS.sub(_mask_match, text)
    return _UUID_OR_DIGITS.sub(
        lambda found: found[0] if any(found[0] in value for value in keep) else _mask_match(found),
        text,
    )


def _mask_match(match: re.Match[str]) -> str:
    digits = match[0]
    if "-" in digits or (len(digits) == 10 and not _starts_with_a_date("0" + digits)):
        return digits
    return digits[:_SHOWN_DIGITS] + "*" * (len(digits) - _SHOWN_DIGITS)


def _starts_with_a_date(national_id: str) -> bool:
    """Day 01-31 (D-numbers add 40) and month 01-12 (H-numbers add 40): roughly a birth date."""
    day, month = int(national_id[:2]) % 40, int(national_id[2:4]) % 40
    return 1 <= day <= 31 and 1 <= month <= 12


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that could change how it is displayed escaped.

    File names are data from whoever drops files: a newline in a name must not start a forged log
    line, an escape sequence must not recolour a terminal, a bidi override must not reverse what
    follows, and a byte that is not UTF-8 (kept by Python as a lone surrogate) must not crash a
    print. Newline, CR and tab become ``\\n``, ``\\r``, ``\\t``; the others ``\\xNN`` or
    ``\\uNNNN``, as ``repr`` writes them. Backslashes stay, so ordinary names read unchanged.
    """
    if text.isprintable():  # the common case: nothing to escape (space is printable)
        return text
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    # Cc control, Cf format (bidi overrides, zero-width), Cs lone surrogates (undecodable bytes),
    # Zl/Zp line and paragraph separators; other unprintables (unassigned code points) are shown.
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return char


class _TextFormatter(logging.Formatter):
    """One line per record: the message itself never holds a line break or control character
    (a name shown unescaped by mistake still cannot forge a line); a traceback keeps its lines.

    With ``name_inboxes`` (the config lists inboxes), a line about one inbox's work starts with
    ``inbox NAME:``, once: two clients' ``invoices.csv`` are told apart, as JSON lines tell them
    by their ``inbox`` field."""

    def __init__(self, fmt: str, datefmt: str, *, name_inboxes: bool) -> None:
        super().__init__(fmt, datefmt)
        self._name_inboxes = name_inboxes

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        escaped = logging.makeLogRecord(record.__dict__)
        escaped.message = printable(self._named(record))
        return mask_ids(super().formatMessage(escaped))

    def _named(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "fields", None)
        inbox = extra.get("inbox") if self._name_inboxes and isinstance(extra, Mapping) else None
        if inbox is None:
            return record.message
        prefix = f"inbox {inbox}: "
        return record.message if record.message.startswith(prefix) else prefix + record.message

    def formatException(self, ei: object) -> str:  # noqa: N802 (logging's name)
        return mask_ids(super().formatException(ei))  # type: ignore[arg-type]


def fields(event: str, **values: object) -> dict[str, Any]:
    """``extra=`` for a log call: what happened (``event``) and its facts (inbox, file, batch,
    counts, status...), which the JSON format writes as keys of their own beside the message.

    ``log.info("%s: claimed", name, extra=fields("file_claimed", inbox="acme", file=name))``.
    Values that are None are left out.
    """
    return {"fields": {"event": event, **{k: v for k, v in values.items() if v is not None}}}


def _clean(value: object) -> object:
    """A field's value as it may appear in a log line: names escaped, national ids masked."""
    if isinstance(value, str):
        return mask_ids(printable(value))
    if isinstance(value, Mapping):
        return {str(_clean(key)): _clean(item) for key, item in value.items()}
    if isinstance(value, bool | int | float) or value is None:
        return value
    return mask_ids(printable(str(value)))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the traceback if any, then the
    fields the call passed (``fields``), each escaped and masked like the message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_ids(record.getMessage()),
        }
        if record.exc_info:
            line["traceback"] = mask_ids(self.formatException(record.exc_info))
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                line.setdefault(str(key), _clean(value))  # never over time, level or message
        try:
            # orjson: a run writes a few lines a batch, and json.dumps took most of their cost.
            return orjson.dumps(line).decode("utf-8")
        except (orjson.JSONEncodeError, UnicodeDecodeError):  # a huge int, a lone surrogate
            return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def setup_logging(*, stream: TextIO, fmt: str, debug: bool, name_inboxes: bool = False) -> None:
    """Send filedrop's logs to ``stream``; INFO by default, DEBUG with ``--debug``.

    ``name_inboxes``: the config lists inboxes, so a text line about one names it."""
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _TextFormatter(
                "%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S", name_inboxes=name_inboxes
            )
        )
    # No line shows where a call was made or by which thread or process: not finding out saves
    # a frame walk and three lookups a record (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger("filedrop")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


def plural(count: int, singular: str, several: str | None = None) -> str:
    """``1 invoice``, ``2 invoices``, ``2 batches`` (``several`` when adding an s is wrong)."""
    return f"{count} {singular if count == 1 else several or singular + 's'}"


def joined(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: a list in a sentence."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
