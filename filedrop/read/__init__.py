"""Read: a CSV or Excel file -> a ``Table`` of cells exactly as the user sees them.

``delimited`` reads CSV (encoding, delimiter and header detection) and picks the reader by file
type; ``excel`` reads workbooks; ``table`` holds what both return, including what was detected,
so ``filedrop validate`` can say it. Nothing here knows of invoices or HTTP.
"""

from filedrop.read.delimited import (
    CSV_SUFFIXES,
    DELIMITERS,
    EXCEL_SUFFIXES,
    INPUT_SUFFIXES,
    read_table,
)
from filedrop.read.limits import ReadLimits
from filedrop.read.table import (
    EMPTY_FILE,
    HEADER_SEARCH_ROWS,
    ReadInfo,
    ReadOptions,
    Table,
    header_key,
)

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
