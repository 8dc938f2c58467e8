"""What every reader takes and returns (`ReadOptions`, `ReadInfo`, `Table`), and the header
detection and blank-row trimming shared by the CSV reader (read.py) and the Excel one (excel.py).

It knows nothing of invoices or HTTP. read.py re-exports the three types, so callers import them
from there.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# numpy and pandas are imported in the functions that use them: the workbook reader's process
# imports this module for the options and header detection, and imports neither.

__all__ = [
    "EMPTY_FILE",
    "HEADER_SEARCH_ROWS",
    "INVISIBLE",
    "INVISIBLE_CHARS",
    "Layout",
    "NumberFormat",
    "ReadInfo",
    "ReadOptions",
    "Table",
    "blank_rows",
    "column_frame",
    "column_letter",
    "find_header",
    "header_key",
    "name_blank_headers",
    "read_hashed_bytes",
    "read_input_bytes",
    "trailing_width",
    "zero_filled",
    "zero_padded_width",
]

#: What a file with no content is told, whoever finds it (a reader, or the pipeline before it).
CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
INPUT_SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES
"""Every file type filedrop reads, matched case-insensitively: the inbox takes exactly these."""

EMPTY_FILE = "the file is empty; export it again"


def read_input_bytes(path: Path) -> bytes:
    """The whole file, read once; a file that cannot be read is one ``ReadError`` sentence
    (a pipe or a device too: ``open_input``)."""
    from filedrop.errors import ReadError

    try:
        with open_input(path) as handle:
            return handle.read()
    except OSError as exc:
        raise ReadError(
            str(path), f"the file cannot be read ({exc.strerror or exc}); check that it exists"
        ) from exc


def read_hashed_bytes(path: Path, sha256: str | None) -> bytes:
    """``read_input_bytes``, holding them to ``sha256`` (the hash the journal took; None: any):
    a file rewritten in place after it was hashed is ``ReadAgainLaterError``, never its other rows
    read and recorded under that hash."""
    data = read_input_bytes(path)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        from filedrop.errors import ReadAgainLaterError

        raise ReadAgainLaterError(str(path), ReadAgainLaterError.REPLACED)
    return data


def open_input(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file (through a link or not).

    A pipe or a device is a ``ReadError``, whoever reads (a run, ``validate``, ``report``,
    ``journal rebuild``): opening a pipe waited for a writer, reading ``/dev/zero`` never
    ended. The open does not wait (``O_NONBLOCK``), and what it opened is looked at before a
    byte is read. A folder is ``IsADirectoryError``, as reading one is anywhere else."""
    from filedrop.errors import ReadError

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    handle = os.fdopen(fd, "rb")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        handle.close()
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise ReadError(
            str(path), "it is not a regular file (a pipe or a device), so it is not read"
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return handle


HEADER_SEARCH_ROWS = 30
"""Title lines above the header are looked for this far down."""


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How to read one source layout; ``None`` means detect it."""

    sheet: str | int = 0
    """Sheet name, or 0-based position (Excel only)."""
    header_row: int | None = None
    """1-based row (Excel) or line (CSV) number of the header, as the user sees it;
    None = detect."""
    encoding: str | None = None
    """CSV encoding; None = detect (UTF-8, UTF-8 with BOM, else cp1252)."""
    delimiter: str | None = None
    """CSV delimiter; None = detect among ``;`` ``,`` tab ``|``."""
    expected_headers: tuple[str, ...] = ()
    """Header names the mapping looks for; they help find the header row below title lines."""


@dataclass(frozen=True, kw_only=True)
class ReadInfo:
    """What the reader detected, so ``validate`` can say it."""

    kind: str  # "csv" or "excel"
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    header_row: int = 1
    first_column: int = 0  # 0-based, of the first header: 1 for a sheet whose data begins in B
    sheets: tuple[str, ...] = ()  # a workbook's visible sheets
    date1904: bool = False  # a workbook whose serial days count from 1904 (an old Mac one's)


NumberFormat = str | int
"""An Excel number format: its code (``# ##0.00``, ``dd.mm.yyyy``) or a built-in format's id."""


@dataclass(frozen=True, kw_only=True)
class Layout:
    """How an Excel sheet looked around its values (a CSV: its title lines), so its outcome can
    look the same."""

    titles: tuple[tuple[int, tuple[object, ...]], ...] = ()
    """The non-empty rows above the header: (1-based row number, its typed cells, None if empty;
    a CSV's fields as text)."""
    number_formats: tuple[NumberFormat | None, ...] = ()
    """Per column, the number format its data cells use; None (or missing) for General."""


#: What a formula whose result was never saved is (after "X holds the formula "=…", "), and the
#: cure: the reader and the mapping say it in the same words.
UNSAVED_FORMULA = (
    "whose result Excel or LibreOffice never calculated and saved (the file was written by "
    "another program), so it has no value"
)
UNSAVED_CURE = "open the file in Excel or LibreOffice and save it, then drop it again"


@dataclass(frozen=True, kw_only=True)
class Table:
    """One sheet of data rows, header separated, cells as text the user sees.

    ``cells`` has one column per input column, labelled 0..n-1 (headers may repeat or be blank),
    and one row per data row, every value a ``str`` ('' for an empty cell). ``values`` has the same
    shape with the original typed values (numbers, dates; None for empty) for writing an Excel
    outcome that keeps them; for CSV it is the same frame as ``cells``. ``row_numbers[i]`` is the
    row/line number the user sees for data row ``i``. ``layout`` is empty but for Excel input,
    and a CSV's lines above its header (``Layout.titles``).
    ``unsaved`` holds a workbook's formulas whose results were never saved, which read as empty
    cells: per column, their row numbers (ascending), for the mapping to refuse where it reads
    one; ``formulas`` shows some of them, by (row number, column); ``own_format_rows`` are
    the numbers shown by a format of their own.
    """

    path: Path
    headers: list[str]
    cells: pd.DataFrame
    values: pd.DataFrame
    row_numbers: np.ndarray
    info: ReadInfo
    layout: Layout = Layout()
    unsaved: Mapping[int, np.ndarray] = field(default_factory=dict)
    formulas: Mapping[tuple[int, int], str] = field(default_factory=dict)
    notes: Mapping[int, str] = field(default_factory=dict)
    """A workbook's rows that are one merged range across the sheet and nothing else (a heading
    between groups): row number -> the range, such as ``A7:H7``. No invoice."""
    merged_down: Mapping[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    """A workbook's merged ranges over two data rows or more, whose value each of their rows
    holds (``excel._fill_merged``): per column, their first and last row numbers."""
    own_format_rows: Mapping[int, np.ndarray] = field(default_factory=dict)
    """A workbook's numbers that their own cell's format of zeros shows otherwise than their
    column's (a General 1212 among cells formatted 000000, a 0003351 in a General column): per
    column, their row numbers (ascending). An xlsx outcome, whose cells take their column's
    format, writes them as the text shown."""
    short_rows: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    """A CSV's lines with fewer fields than its header, or than most lines where those plainly
    end elsewhere (``short_of_lines``): row number -> (its fields, the fields it is short of).
    Read as if the missing ones were empty at the end, which they may not be."""
    short_of_lines: bool = False
    """Whether ``short_rows`` count against the fields most lines have, not the header's: the
    lines end before or after the header's last delimiter."""

    def __len__(self) -> int:
        return len(self.cells)

    def letter(self, position: int) -> str:
        """The column's letter as Excel shows it (in a CSV, as it would)."""
        return column_letter(self.info.first_column + position)

    def part(self, start: int, stop: int) -> Table:
        """Data rows ``start`` to ``stop`` as a table of their own, numbered from 0 again (the
        row numbers the user sees stay theirs); the cells are shared, not copied."""
        cells = self.cells.iloc[start:stop].reset_index(drop=True)
        values = (
            cells
            if self.values is self.cells
            else self.values.iloc[start:stop].reset_index(drop=True)
        )
        return replace(self, cells=cells, values=values, row_numbers=self.row_numbers[start:stop])


# Cells that are numbers or dates written as text: a header row has none of them.
_NUMERIC_LOOKING = re.compile(r"[\s\d.,:/+\-%]+")


#: Unicode's format characters (category Cf, as of Unicode 15): zero-width spaces and joiners,
#: the soft hyphen, direction marks, embeddings, overrides and isolates, word joiners, the byte
#: order mark. None can be seen, so none is part of a value as a person reads it, and a value is
#: compared and sent without them: "2403<zero-width space>01" is invoice 240301, which, compared
#: as typed, would go out a second time under a number that looks the same.
INVISIBLE_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)  # as a character class's inside, for patterns that take them in with other characters
INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")


def header_key(name: str) -> str:
    """A header as compared everywhere: case, spaces, invisible characters and Unicode spelling
    (å as a + ring) ignored.

    The one comparison for finding the header row here and for matching the mapping's column
    names, so a header that is found is also matched, however the exporting program spelled it.
    """
    return "".join(INVISIBLE.sub("", unicodedata.normalize("NFC", name)).split()).casefold()


def find_header(rows: Sequence[Sequence[object]], expected: tuple[str, ...]) -> int | None:
    """Index of the header among ``rows`` (the first lines of a sheet), or None.

    The row with the most expected headers wins (at least two, or the only one asked for; the
    mapping may list alternative names, so not all need be there); failing that, the first row
    whose filled cells are all labels and at least half as many as the widest row has. Title lines
    ("Åpne fakturaer per 01.03.2024") fill one cell, so they lose.
    """
    filled = [[c for c in row if not (isinstance(c, str) and not c.strip())] for row in rows]
    if expected:
        wanted = {header_key(h) for h in expected if h.strip()}
        hits = [len(wanted & {header_key(c) for c in row if isinstance(c, str)}) for row in filled]
        best = max(hits, default=0)
        if wanted and best >= min(2, len(wanted)):
            return hits.index(best)
    widest = max((len(row) for row in filled), default=0)
    for i, row in enumerate(filled):
        if (
            row
            and 2 * len(row) >= widest
            and all(isinstance(c, str) and not _NUMERIC_LOOKING.fullmatch(c) for c in row)
        ):
            return i
    return None


def blank_rows(columns: Sequence[np.ndarray], n_rows: int) -> np.ndarray:
    """Mask of rows whose every cell is empty or spaces; cheap as most rows fail on column 0."""
    import numpy as np

    blank = np.ones(n_rows, dtype=bool)
    for col in columns:
        undecided = np.flatnonzero(blank & (col != ""))
        if undecided.size:
            blank[undecided] = np.fromiter(
                map(str.isspace, col[undecided]), dtype=bool, count=undecided.size
            )
        if not blank.any():
            break
    return blank


def column_frame(columns: Sequence[np.ndarray], keep: np.ndarray) -> pd.DataFrame:
    """Columns labelled 0..n-1, only the kept rows; object dtype, so no string inference cost."""
    import pandas as pd

    subset = not keep.all()
    return pd.DataFrame(
        {i: (c[keep] if subset else c) for i, c in enumerate(columns)}, dtype=object
    )


def trailing_width(headers: list[str], columns: Sequence[np.ndarray]) -> int:
    """Number of columns once empty trailing ones (blank header, no data) are cut."""
    width = len(headers)
    while width and not headers[width - 1] and not (columns[width - 1] != "").any():
        width -= 1
    return width


#: How many of a workbook's other sheets a message names, at most: a crafted workbook may hold
#: thousands, and the message ends up in an outcome's cell.
SHEETS_SHOWN = 20


def other_sheets(sheets: Sequence[str], read: str) -> str:
    """A workbook's visible sheets but the one read, quoted, for a message ('' when none): the
    data may be on one of them, which ``read.sheet`` in the mapping can name."""
    others = [f'"{name}"' for name in sheets if name != read]
    more = f" and {len(others) - SHEETS_SHOWN} more" if len(others) > SHEETS_SHOWN else ""
    return ", ".join(others[:SHEETS_SHOWN]) + more


def column_letter(position: int) -> str:
    """The column's letter as Excel shows it: 0 -> ``A``, 25 -> ``Z``, 26 -> ``AA``."""
    letters = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def name_blank_headers(headers: list[str], *, first: int = 0) -> list[str]:
    """Blank headers (a column under a merged group header, or simply unnamed) get the column's
    letter as Excel shows it, so a mapping can name the column and the outcome keeps its data
    under a name; ``first`` is the 0-based column of ``headers[0]`` (a sheet whose used range
    starts at column B has 1)."""
    return [header or column_letter(first + i) for i, header in enumerate(headers)]


_ZEROS_FORMAT = re.compile(r"0{2,}")


def zero_padded_width(number_format: NumberFormat | None) -> int:
    """The digits a number format of zeros alone makes Excel show (``0000000000``: 10, leading
    zeros included); 0 for any other format, which shows a whole number without them."""
    if isinstance(number_format, str) and _ZEROS_FORMAT.fullmatch(number_format):
        return len(number_format)
    return 0


def zero_filled(values: list[str], width: int) -> list[str]:
    """``values`` with the leading zeros of ``width`` digits put in front of each all-digit one
    shorter (``155`` -> ``0155``): what a spreadsheet dropped, or a number format of zeros shows.
    Only a value shorter than the width can take a zero: found by length in one pass."""
    import numpy as np

    short = np.flatnonzero(np.fromiter(map(len, values), np.int64, len(values)) < width)
    filled = list(values)
    for i in short.tolist():
        if values[i].isascii() and values[i].isdigit():
            filled[i] = values[i].zfill(width)
    return filled
