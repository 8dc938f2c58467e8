"""Log lines for people (text) or for containers (JSON), with national ids masked.

Secrets and tokens never reach a log call in the first place (the client keeps them out); the
mask here is the second line of defence for national identity numbers that appear in values.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import TextIO

#: 11 digits standing alone: a fødselsnummer or D-number. Dates and amounts never have 11.
_NATIONAL_ID = re.compile(r"(?<!\d)(\d{6})\d{5}(?!\d)")


def mask_ids(text: str) -> str:
    """``12345678901`` -> ``123456*****``: enough to find the row, not enough to identify."""
    return _NATIONAL_ID.sub(r"\1*****", text)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_ids(super().format(record))


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
