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
from typing import TextIO

#: 11 digits standing alone: a fødselsnummer or D-number. Dates and amounts never have 11.
_NATIONAL_ID = re.compile(r"(?<!\d)(\d{6})\d{5}(?!\d)")


def mask_ids(text: str) -> str:
    """``12345678901`` -> ``123456*****``: enough to find the row, not enough to identify."""
    return _NATIONAL_ID.sub(r"\1*****", text)


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
    (a name shown unescaped by mistake still cannot forge a line); a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        escaped = logging.makeLogRecord(record.__dict__)
        escaped.message = printable(record.message)
        return mask_ids(super().formatMessage(escaped))

    def formatException(self, ei: object) -> str:  # noqa: N802 (logging's name)
        return mask_ids(super().formatException(ei))  # type: ignore[arg-type]


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_ids(record.getMessage()),
        }
        if record.exc_info:
            line["traceback"] = mask_ids(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def setup_logging(*, stream: TextIO, fmt: str, debug: bool) -> None:
    """Send filedrop's logs to ``stream``; INFO by default, DEBUG with ``--debug``."""
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("filedrop")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
