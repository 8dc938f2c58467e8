"""CSV and Excel files -> a ``Table`` of cells exactly as the user sees them.

It knows nothing of invoices or HTTP. Every row keeps the number the user sees (Excel row number,
CSV line number) so that every message and the outcome can point back to it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
import python_calamine

from filedrop.errors import ReadError

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
CSV_SUFFIXES = (".csv",)
DELIMITERS = (";", "\t", ",", "|")
"""Candidates in order of preference when two fit equally well (Norwegian exports use ``;``)."""
HEADER_SEARCH_ROWS = 30
"""Title lines above the header are looked for this far down."""
_SNIFF_BYTES = 64 * 1024


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


@dataclass(frozen=True, kw_only=True)
class Table:
    """One sheet of data rows, header separated, cells as text the user sees.

    ``cells`` has one column per input column, labelled 0..n-1 (headers may repeat or be blank),
    and one row per data row, every value a ``str`` ('' for an empty cell). ``values`` has the same
    shape with the original typed values (numbers, dates; None for empty) for writing an Excel
    outcome that keeps them; for CSV it is the same frame as ``cells``. ``row_numbers[i]`` is the
    row/line number the user sees for data row ``i``.
    """

    path: Path
    headers: list[str]
    cells: pd.DataFrame
    values: pd.DataFrame
    row_numbers: np.ndarray
    info: ReadInfo
    extra: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cells)


def read_table(path: Path, options: ReadOptions | None = None) -> Table:
    """Read ``path`` (csv, xlsx, xlsm, xls) once into a ``Table``; ``ReadError`` says what is wrong.

    The bytes are read once; CSV is parsed by pandas (the csv module only for ragged files), Excel
    by calamine.
    """
    path = Path(path)
    options = options or ReadOptions()
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, options)
    if suffix in EXCEL_SUFFIXES:
        return _read_excel(path, options)
    raise ReadError(
        str(path),
        f'"{path.suffix or "(no extension)"}" is not a file type filedrop reads; '
        "save it as .csv, .xlsx, .xlsm or .xls",
    )


# --- shared ---------------------------------------------------------------------------------------

# Cells that are numbers or dates written as text: a header row has none of them.
_NUMERIC_LOOKING = re.compile(r"[\s\d.,:/+\-%]+")


def _squash(text: str) -> str:
    """Header text compared the way the mapping compares it: case and spaces ignored."""
    return "".join(text.split()).casefold()


def _find_header(rows: Sequence[Sequence[object]], expected: tuple[str, ...]) -> int | None:
    """Index of the header among ``rows`` (the first lines of a sheet), or None.

    The row with the most expected headers wins (at least two, or the only one asked for; the
    mapping may list alternative names, so not all need be there); failing that, the first row
    whose filled cells are all labels and at least half as many as the widest row has. Title lines
    ("Åpne fakturaer per 01.03.2024") fill one cell, so they lose.
    """
    filled = [[c for c in row if not (isinstance(c, str) and not c.strip())] for row in rows]
    if expected:
        wanted = {_squash(h) for h in expected if h.strip()}
        hits = [len(wanted & {_squash(c) for c in row if isinstance(c, str)}) for row in filled]
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


def _blank_rows(columns: Sequence[np.ndarray], n_rows: int) -> np.ndarray:
    """Mask of rows whose every cell is empty or spaces; cheap as most rows fail on column 0."""
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


def _frame(columns: Sequence[np.ndarray], keep: np.ndarray) -> pd.DataFrame:
    """Columns labelled 0..n-1, only the kept rows; object dtype, so no string inference cost."""
    subset = not keep.all()
    return pd.DataFrame(
        {i: (c[keep] if subset else c) for i, c in enumerate(columns)}, dtype=object
    )


def _trailing_width(headers: list[str], columns: Sequence[np.ndarray]) -> int:
    """Number of columns once empty trailing ones (blank header, no data) are cut."""
    width = len(headers)
    while width and not headers[width - 1] and not (columns[width - 1] != "").any():
        width -= 1
    return width


# --- CSV ------------------------------------------------------------------------------------------


def _read_csv(path: Path, options: ReadOptions) -> Table:
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(
            where, f"the file cannot be read ({exc.strerror or exc}); check that it exists"
        ) from exc
    if not data or data.isspace():
        raise ReadError(where, "the file is empty; export it again")
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ReadError(where, "the file is an Excel workbook named .csv; rename it to .xlsx")
    encoding, codec, data = _detect_encoding(where, data, options.encoding)
    if b"\x00" in data:
        raise ReadError(where, "the file is not text (it holds NUL bytes); export it as CSV again")
    if b"\r" in data and _LONE_CR.search(data):
        # Old Mac line ends: make them \n so that lines are counted as the user's editor does.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    sample = _sample_lines(data, codec)
    delimiter = _given_delimiter(where, options.delimiter) or _sniff_delimiter(sample)
    header_line = _csv_header_line(where, data, sample, delimiter, options)
    offset = 0
    for _ in range(header_line - 1):
        offset = data.index(b"\n", offset) + 1
    body = data[offset:] if offset else data
    line_end = body.find(b"\n")
    if not body[: line_end if line_end >= 0 else len(body)].strip():
        raise ReadError(where, f"line {header_line} is empty; header_row must name the header line")

    try:
        frame = pd.read_csv(
            io.BytesIO(body),  # bytes + encoding: pandas decodes faster than it reads a StringIO
            encoding=codec,
            sep=delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,  # blank lines stay records, so records map to lines cheaply
            engine="c",
        )
        columns = [frame[c].to_numpy(dtype=object) for c in frame.columns]
        starts = _record_lines(body, columns, len(frame), header_line)
    except UnicodeDecodeError as exc:
        raise _not_encoded(where, encoding, exc) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        # Ragged rows or odd quoting: the csv module says exactly which line is wrong.
        try:
            text = body.decode(codec)
        except UnicodeDecodeError as decode_exc:
            raise _not_encoded(where, encoding, decode_exc) from decode_exc
        columns, starts = _csv_fallback(where, text, delimiter, header_line)

    headers = [str(c[0]).strip() for c in columns]
    columns = [c[1:] for c in columns]
    starts = starts[1:]
    width = _trailing_width(headers, columns)
    headers, columns = headers[:width], columns[:width]
    keep = ~_blank_rows(columns, len(starts))
    if not keep.any():
        raise ReadError(
            where, f"the file has a header on line {header_line} but no data rows below it"
        )
    cells = _frame(columns, keep)
    return Table(
        path=path,
        headers=headers,
        cells=cells,
        values=cells,
        row_numbers=starts[keep],
        info=ReadInfo(kind="csv", encoding=encoding, delimiter=delimiter, header_row=header_line),
    )


_LONE_CR = re.compile(rb"\r(?!\n)")
# cp1252 leaves these five bytes undefined; a file with them is read as ISO-8859-1 instead.
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")


def _detect_encoding(where: str, data: bytes, wanted: str | None) -> tuple[str, str, bytes]:
    """(encoding to report, codec to parse with, bytes to parse): as set, else BOM, UTF-8, cp1252.

    Parsing needs an encoding where ``\\n`` and the delimiters are single ASCII bytes; UTF-16 is
    re-encoded as UTF-8 once to get one.
    """
    if wanted:
        return _given_encoding(where, data, wanted)
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8", data[len(codecs.BOM_UTF8) :]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export.
        return "utf-16", "utf-8", data.decode("utf-16", errors="replace").encode("utf-8")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        if any(b in data for b in _CP1252_UNDEFINED):
            return "latin-1", "latin-1", data
        return "cp1252", "cp1252", data
    return "utf-8", "utf-8", data


def _given_encoding(where: str, data: bytes, wanted: str) -> tuple[str, str, bytes]:
    """The mapping's encoding; a UTF-8 BOM is still dropped so the first header stays clean."""
    try:
        name = codecs.lookup(wanted).name
    except LookupError as exc:
        raise ReadError(where, f'encoding "{wanted}" is not known; use e.g. cp1252') from exc
    if name in ("utf-8", "utf-8-sig"):
        return wanted, "utf-8", data.removeprefix(codecs.BOM_UTF8)
    if '\n;,\t|"'.encode(name, errors="replace") == b'\n;,\t|"':
        return wanted, name, data
    try:
        return wanted, "utf-8", data.decode(name).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_encoded(where, wanted, exc) from exc


def _not_encoded(where: str, encoding: str, exc: UnicodeDecodeError) -> ReadError:
    return ReadError(
        where,
        f"the file is not valid {encoding} text ({exc.reason}); remove the encoding from the "
        "mapping to detect it, or set the right one",
    )


def _sample_lines(data: bytes, codec: str) -> list[str]:
    """The first whole lines (up to 64 KiB) for sniffing the delimiter and the header."""
    head = data[:_SNIFF_BYTES]
    lines = head.decode(codec, errors="replace").split("\n")
    if len(head) < len(data) and len(lines) > 1:
        lines.pop()  # cut mid-line
    return lines[: HEADER_SEARCH_ROWS * 2]


def _records(lines: list[str], delimiter: str) -> list[tuple[int, list[str]]]:
    """(1-based first line, fields) of each record in ``lines``, quotes respected."""
    reader = csv.reader(lines, delimiter=delimiter)
    out: list[tuple[int, list[str]]] = []
    prev = 0
    try:
        for fields in reader:
            out.append((prev + 1, fields))
            prev = reader.line_num
    except csv.Error:
        pass  # a sample cut inside quotes; what was read is enough to sniff
    return out


def _given_delimiter(where: str, delimiter: str | None) -> str | None:
    """The mapping's delimiter; "tab" and a typed backslash-t are accepted for a tab."""
    if delimiter in ("tab", "\\t"):
        return "\t"
    if delimiter is not None and len(delimiter) != 1:
        raise ReadError(where, f'delimiter "{delimiter}" must be one character, such as ";" or ","')
    return delimiter


def _sniff_delimiter(lines: list[str]) -> str:
    """The candidate that splits the most lines into the same number (>1) of fields.

    A decimal comma adds commas to data lines but not to the header, so ``,`` is inconsistent in
    a ``;`` file and loses; ties go to the more fields, then to ``;``.
    """
    best: tuple[int, int, int] = (0, 0, 0)
    chosen = ","
    for rank, delimiter in enumerate(DELIMITERS):
        counts = Counter(len(f) for _, f in _records(lines, delimiter) if f and any(f))
        fits = [(n_lines, n_fields) for n_fields, n_lines in counts.items() if n_fields > 1]
        if not fits:
            continue
        n_lines, n_fields = max(fits)
        score = (n_lines, n_fields, -rank)
        if score > best:
            best, chosen = score, delimiter
    return chosen


def _csv_header_line(
    where: str, data: bytes, sample: list[str], delimiter: str, options: ReadOptions
) -> int:
    """1-based physical line of the header: as set, else found below any title lines."""
    n_lines = _count_lines(data)
    if options.header_row is not None:
        if not 1 <= options.header_row <= n_lines:
            raise ReadError(
                where,
                f"header_row {options.header_row} is outside the file, which has {n_lines} lines",
            )
        return options.header_row
    records = _records(sample, delimiter)[:HEADER_SEARCH_ROWS]
    found = _find_header([f for _, f in records], options.expected_headers)
    if found is None:
        raise ReadError(
            where,
            f"no header row found in the first {HEADER_SEARCH_ROWS} lines (expected a line of "
            "column names); set header_row in the mapping",
        )
    return records[found][0]


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _record_lines(body: bytes, columns: list[np.ndarray], n_records: int, first: int) -> np.ndarray:
    """Physical line where each record starts; cheap unless a quoted cell holds a newline."""
    n_lines = _count_lines(body)
    starts = np.arange(first, first + n_records, dtype=np.int64)
    if n_lines == n_records:
        return starts  # every record is one line (blank lines are records too)
    # The missing lines are newlines inside quoted cells: find the few columns that hold them.
    missing = n_lines - n_records
    extra = np.zeros(n_records, dtype=np.int64)
    for col in columns:
        if missing <= 0:
            break
        if "\n" in "".join(col):
            counts = np.fromiter(map(str.count, col, repeat("\n")), dtype=np.int64, count=len(col))
            extra += counts
            missing -= int(counts.sum())
    starts[1:] += np.cumsum(extra)[:-1]
    return starts


def _csv_fallback(
    where: str, body: str, delimiter: str, first: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Parse with the csv module: slower, but tolerant of short rows and exact about lines.

    A quote never closed would make the rest of the file one cell and lose rows, so the strict
    parse that notices it goes first; other strictness complaints (``"x"y``) are let pass.
    """
    for strict in (True, False):
        reader = csv.reader(io.StringIO(body), delimiter=delimiter, strict=strict)
        rows: list[list[str]] = []
        starts: list[int] = []
        prev = 0
        try:
            for fields in reader:
                rows.append(fields)
                starts.append(first + prev)
                prev = reader.line_num
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise ReadError(
                    where,
                    f'line {first + prev} opens a quoted value (") that is never closed; '
                    "fix the quotes",
                ) from exc
            if not strict:
                raise ReadError(
                    where,
                    f"line {first + prev} cannot be read as CSV ({exc}); check its quotes",
                ) from exc
    width = len(rows[0])
    for i, fields in enumerate(rows):
        if len(fields) > width:
            if any(f.strip() for f in fields[width:]):
                raise ReadError(
                    where,
                    f"line {starts[i]} has {len(fields)} fields but the header (line {first}) has "
                    f"{width}; a value probably holds an unquoted {_delimiter_name(delimiter)}, "
                    "quote it or fix the line",
                )
            del fields[width:]
        elif len(fields) < width:
            fields.extend([""] * (width - len(fields)))
    grid = np.empty((len(rows), width), dtype=object)
    grid[:] = rows
    return [grid[:, j] for j in range(width)], np.asarray(starts, dtype=np.int64)


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ";": '";"', ",": '","', "|": '"|"'}.get(delimiter, repr(delimiter))


# --- Excel ----------------------------------------------------------------------------------------


def _read_excel(path: Path, options: ReadOptions) -> Table:
    where = str(path)
    sheet_name, rows, first_row = _load_sheet(path, options.sheet)
    header_at = _excel_header(where, sheet_name, rows, first_row, options)
    header_row = first_row + header_at

    headers = [_render(c).strip() for c in rows[header_at]]
    if not any(headers):
        raise ReadError(
            where,
            f'row {header_row} of sheet "{sheet_name}" is empty; header_row must name the headers',
        )
    body = rows[header_at + 1 :]
    grid = np.empty((len(body), len(headers)), dtype=object)
    if body:
        grid[:] = body  # calamine rows all have the sheet's width
    raw = [grid[:, j] for j in range(len(headers))]
    columns = [_render_column(col) for col in raw]
    width = _trailing_width(headers, columns)
    headers, columns, raw = headers[:width], columns[:width], raw[:width]
    keep = ~_blank_rows(columns, len(body))
    if not keep.any():
        raise ReadError(
            where,
            f'sheet "{sheet_name}" has a header on row {header_row} but no data rows below it',
        )
    # calamine gives '' for an empty cell; a new array, as all-text columns share it with ``cells``
    typed = [np.where(c == "", None, c) for c in raw]
    return Table(
        path=path,
        headers=headers,
        cells=_frame(columns, keep),
        values=_frame(typed, keep),
        row_numbers=np.arange(header_row + 1, header_row + 1 + len(body), dtype=np.int64)[keep],
        info=ReadInfo(kind="excel", sheet=sheet_name, header_row=header_row),
    )


def _load_sheet(path: Path, wanted: str | int) -> tuple[str, list[list[object]], int]:
    """(sheet name, its rows from the first used one, that row's Excel number)."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(
            where, f"the file cannot be read ({exc.strerror or exc}); check that it exists"
        ) from exc
    if not data:
        raise ReadError(where, "the file is empty (0 bytes); export it again")
    locked = "the file is password-protected; save a copy without a password"
    try:
        # From bytes, calamine tells xlsx from xls by content: an xlsx named .xls still opens.
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except python_calamine.PasswordError as exc:
        raise ReadError(where, locked) from exc
    except Exception as exc:  # calamine raises several unrelated types for damaged files
        raise ReadError(where, _unopenable(data[:4096])) from exc
    with workbook:
        sheet_name = _sheet_name(where, workbook.sheet_names, wanted)
        try:
            sheet = workbook.get_sheet_by_name(sheet_name)
            rows = sheet.to_python(skip_empty_area=True)
            start = sheet.start
        except python_calamine.PasswordError as exc:
            raise ReadError(where, locked) from exc
        except Exception as exc:
            raise ReadError(
                where, f'sheet "{sheet_name}" is damaged; open the file in Excel and save it again'
            ) from exc
    if not rows or start is None:
        raise ReadError(where, f'sheet "{sheet_name}" is empty; choose the sheet with the data')
    # to_python(skip_empty_area=True) begins at the first used row, ``start`` (0-based).
    return sheet_name, rows, start[0] + 1


def _excel_header(
    where: str, sheet_name: str, rows: list[list[object]], first_row: int, options: ReadOptions
) -> int:
    """Index into ``rows`` of the header: as set (an Excel row number), else found."""
    if options.header_row is not None:
        header_at = options.header_row - first_row
        if not 0 <= header_at < len(rows):
            raise ReadError(
                where,
                f'header_row {options.header_row} is outside the data of sheet "{sheet_name}", '
                f"which uses rows {first_row} to {first_row + len(rows) - 1}",
            )
        return header_at
    found = _find_header(rows[:HEADER_SEARCH_ROWS], options.expected_headers)
    if found is None:
        raise ReadError(
            where,
            f"no header row found in the first {HEADER_SEARCH_ROWS} rows of sheet "
            f'"{sheet_name}" (expected a row of column names); set header_row in the mapping',
        )
    return found


def _sheet_name(where: str, names: list[str], wanted: str | int) -> str:
    """The sheet asked for by name (exact, else ignoring case) or 0-based position."""
    listing = ", ".join(f'"{n}"' for n in names)
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if 0 <= wanted < len(names):
            return names[wanted]
        raise ReadError(
            where,
            f"there is no sheet at position {wanted} (counting from 0); the sheets are {listing}",
        )
    if wanted in names:
        return wanted
    folded = [n for n in names if n.casefold() == str(wanted).casefold()]
    if len(folded) == 1:
        return folded[0]
    raise ReadError(where, f'there is no sheet "{wanted}"; the sheets are {listing}')


def _unopenable(head: bytes) -> str:
    """Why calamine could not open a file, guessed from its first bytes (error path only)."""
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        # An encrypted xlsx is an OLE container holding an "EncryptedPackage".
        return "the file is password-protected or damaged; save a copy without a password"
    if head.lstrip().startswith(b"<"):
        return "the file is a web page (HTML), not a workbook; open it in Excel and save as .xlsx"
    if b"\x00" not in head:
        return "the file is text, not an Excel workbook; if it is CSV, rename it to .csv"
    return (
        "the file is not a readable Excel workbook (damaged, or not Excel); open and save it again"
    )


def _render_float(value: float) -> str:
    """A number as Excel shows it: 15 significant digits, integral ones without ".0"."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    text = repr(value)
    if len(text) < 16:  # at most 15 digits: nothing to round (the common case, and fast)
        return text
    rounded = float(f"{value:.15g}")  # 4500.499999999999 from a formula shows as 4500.5
    if rounded.is_integer() and abs(rounded) < 1e16:
        return str(int(rounded))
    return repr(rounded)


def _render_floats(values: np.ndarray) -> np.ndarray:
    """Many floats at once: integral ones (ids, whole amounts) in one vectorised step."""
    floats = values.astype(np.float64)
    integral = (floats == np.trunc(floats)) & (np.abs(floats) < 1e16)
    out = np.empty(len(floats), dtype=object)
    out[integral] = floats[integral].astype(np.int64).astype(str)
    out[~integral] = [_render_float(v) for v in floats[~integral].tolist()]
    return out


def _render_datetime(value: dt.datetime) -> str:
    if value.hour == value.minute == value.second == 0:
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _render_timedelta(value: dt.timedelta) -> str:
    minutes, seconds = divmod(int(value.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


_RENDERERS: dict[type, Callable[[object], str]] = {
    str: lambda v: v,  # type: ignore[dict-item]
    float: _render_float,  # type: ignore[dict-item]
    int: str,
    bool: lambda v: "TRUE" if v else "FALSE",
    dt.date: dt.date.isoformat,  # type: ignore[dict-item]
    dt.datetime: _render_datetime,  # type: ignore[dict-item]
    dt.time: dt.time.isoformat,  # type: ignore[dict-item]
    dt.timedelta: _render_timedelta,  # type: ignore[dict-item]
}


def _render(value: object) -> str:
    return _RENDERERS.get(type(value), str)(value)


def _render_column(col: np.ndarray) -> np.ndarray:
    """Cells of one column as text, one type at a time; all-text columns pass as they are."""
    kinds = set(map(type, col))
    if kinds <= {str}:
        return col
    out = col.copy()
    kind_of = np.fromiter(map(type, col), dtype=object, count=len(col)) if len(kinds) > 1 else None
    for kind in kinds - {str}:
        where = slice(None) if kind_of is None else kind_of == kind
        if kind is float:
            out[where] = _render_floats(col[where])
        else:
            out[where] = list(map(_RENDERERS.get(kind, str), col[where]))
    return out
