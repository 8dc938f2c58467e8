"""Read: a CSV or Excel file -> a ``Table`` of cells exactly as the user sees them.

``delimited`` reads CSV (encoding, delimiter and header detection) and picks the reader by file
type; ``workbook`` parses workbooks and ``excel`` makes their tables; ``table`` holds what both
return, including what was detected, so ``filedrop validate`` can say it. Nothing here knows of
invoices or HTTP.

The names from ``delimited`` are imported on first use: the process that parses workbooks imports
this package too, and so does the command line before it begins reading a workbook ahead; neither
needs numpy or pandas, which ``delimited`` brings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from filedrop.read.limits import ReadLimits
from filedrop.read.table import (
    CSV_SUFFIXES,
    EMPTY_FILE,
    EXCEL_SUFFIXES,
    HEADER_SEARCH_ROWS,
    INPUT_SUFFIXES,
    ReadInfo,
    ReadOptions,
    Table,
    header_key,
)

if TYPE_CHECKING:
    from filedrop.read.delimited import DELIMITERS, read_table

__all__ = [
    "CSV_SUFFIXES",
    "DELIMITERS",
    "EMPTY_FILE",
    "EXCEL_SUFFIXES",
    "HEADER_SEARCH_ROWS",
    "INPUT_SUFFIXES",
    "ReadInfo",
    "ReadLimits",
    "ReadOptions",
    "Table",
    "header_key",
    "read_table",
]

_FROM_DELIMITED = frozenset({"DELIMITERS", "read_table"})


def __getattr__(name: str) -> object:
    """The names from ``delimited``, imported when first asked for."""
    if name in _FROM_DELIMITED:
        from filedrop.read import delimited

        return getattr(delimited, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
