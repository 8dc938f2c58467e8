"""Excel workbooks (xlsx, xlsm, xls) -> a `Table`, read with calamine.

Opening the workbook and picking the sheet, finding the header row below any title lines, and
rendering each cell as the text Excel shows (15 significant digits, dates as ISO dates), while
`Table.values` keeps the typed values for an Excel outcome. Every message names the file and sheet.

calamine gives values, not how they were shown, so `Table.layout` is read beside it: the title
rows above the header (from calamine's rows) and each column's number format, from the styles of
the first data rows in the sheet's XML (a bounded prefix, parsed as a stream) and the workbook's
``styles.xml``. A workbook whose formats cannot be read still reads; its outcome is just plainer.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError

import numpy as np
import python_calamine
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from filedrop.errors import ReadError
from filedrop.read.limits import _sheet_parts
from filedrop.read.table import (
    HEADER_SEARCH_ROWS,
    Layout,
    NumberFormat,
    ReadInfo,
    ReadOptions,
    Table,
    blank_rows,
    column_frame,
    find_header,
    name_blank_headers,
    read_input_bytes,
    trailing_width,
)

__all__ = ["Column", "ParsedSheet", "build_table", "parse_sheet", "read_excel"]


def read_excel(path: Path, options: ReadOptions) -> Table:
    """One sheet of an Excel workbook as a `Table`; `ReadError` says what is wrong."""
    return build_table(path, parse_sheet(path, options))


@dataclass(frozen=True)
class Column:
    """One data column as parsed, in the form cheapest to make, send and expand.

    ``kind`` says what ``data`` holds: "text" the cells (all ``str``, '' for empty); "floats"
    (numbers as float64, which cells are empty); "dates" (day numbers, 0 for empty); "objects"
    (the rendered text and the typed values, for columns mixing kinds).
    """

    kind: str
    data: object


@dataclass(frozen=True)
class ParsedSheet:
    """What the parse gives, before empty rows and trailing columns are cut (``build_table``).

    Plain arrays and lists only: it is made in the reader's child process, which has no pandas,
    and sent to the parent.
    """

    sheet_name: str
    header_row: int
    headers: list[str]  # as shown and stripped, the sheet's whole width
    columns: list[Column]
    n_rows: int
    titles: list[tuple[int, list[object]]]  # rows above the header: (row number, raw cells)
    formats: dict[int, NumberFormat]
    first_col: int


def parse_sheet(path: Path, options: ReadOptions) -> ParsedSheet:
    """Parse the chosen sheet with calamine, find its header, and classify each column."""
    where = str(path)
    sheet_name, rows, first_row, first_col, data = _load_sheet(path, options.sheet)
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
    del body
    columns = [_parse_column(grid[:, j]) for j in range(len(headers))]
    return ParsedSheet(
        sheet_name=sheet_name,
        header_row=header_row,
        headers=headers,
        columns=columns,
        n_rows=len(grid),
        titles=[(first_row + i, row) for i, row in enumerate(rows[:header_at])],
        formats=_number_formats(data, sheet_name, header_row=header_row, first_col=first_col),
        first_col=first_col,
    )


def build_table(path: Path, sheet: ParsedSheet) -> Table:
    """The `Table` of a parsed sheet: cells as text, typed values, empty rows and columns cut."""
    expanded = [_expand(column, sheet.n_rows) for column in sheet.columns]
    texts = [text for text, _ in expanded]
    width = trailing_width(sheet.headers, texts)
    headers = name_blank_headers(sheet.headers[:width])
    texts, typed = texts[:width], [values for _, values in expanded[:width]]
    keep = ~blank_rows(texts, sheet.n_rows)
    if not keep.any():
        raise ReadError(
            str(path),
            f'sheet "{sheet.sheet_name}" has a header on row {sheet.header_row} '
            "but no data rows below it",
        )
    first_data = sheet.header_row + 1
    return Table(
        path=path,
        headers=headers,
        cells=column_frame(texts, keep),
        values=column_frame(typed, keep),
        row_numbers=np.arange(first_data, first_data + sheet.n_rows, dtype=np.int64)[keep],
        info=ReadInfo(kind="excel", sheet=sheet.sheet_name, header_row=sheet.header_row),
        layout=Layout(
            titles=tuple(
                (number, tuple(None if c == "" else c for c in row[:width]))
                for number, row in sheet.titles
                if any(c != "" for c in row[:width])
            ),
            number_formats=tuple(sheet.formats.get(sheet.first_col + j) for j in range(width)),
        ),
    )


def _parse_column(raw: np.ndarray) -> Column:
    """Classify one column of calamine's cells; the common kinds keep compact data only."""
    kinds = set(map(type, raw))
    if kinds <= {str}:
        return Column("text", raw)
    blank = raw == ""  # calamine gives '' for an empty cell
    filled = raw[~blank] if blank.any() else raw
    filled_kinds = set(map(type, filled)) if len(filled) < len(raw) else kinds
    if filled_kinds == {float}:
        floats = np.zeros(len(raw), dtype=np.float64)
        floats[~blank] = filled.astype(np.float64)
        return Column("floats", (floats, blank))
    if filled_kinds == {dt.date}:  # exactly dates: datetimes show their time
        days = np.zeros(len(raw), dtype=np.int64)
        days[~blank] = np.fromiter(map(dt.date.toordinal, filled), np.int64, len(filled))
        return Column("dates", days)
    return Column("objects", (_render_column(raw), np.where(blank, None, raw)))


def _expand(column: Column, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(text as shown, typed values with None for empty) of one parsed column."""
    kind, data = column.kind, column.data
    if kind == "text":
        text = data  # type: ignore[assignment]
        return text, np.where(text == "", None, text)  # type: ignore[arg-type]
    if kind == "objects":
        return data  # type: ignore[return-value]
    text = np.full(n_rows, "", dtype=object)
    typed = np.empty(n_rows, dtype=object)
    if kind == "floats":
        floats, blank = data  # type: ignore[misc]
        filled = ~blank
        text[filled] = _render_floats(floats[filled])
        typed[filled] = floats[filled].tolist()
        return text, typed
    days: np.ndarray = data  # type: ignore[assignment]
    filled = days != 0
    # Each distinct day is made and rendered once: a date column repeats few days.
    distinct, where = np.unique(days[filled], return_inverse=True)
    dates = np.empty(len(distinct), dtype=object)
    dates[:] = [dt.date.fromordinal(n) for n in distinct.tolist()]
    shown = np.empty(len(distinct), dtype=object)
    shown[:] = [d.isoformat() for d in dates]
    text[filled] = shown[where]
    typed[filled] = dates[where]
    return text, typed


def _load_sheet(path: Path, wanted: str | int) -> tuple[str, list[list[object]], int, int, bytes]:
    """(sheet name, its rows from the first used one, that row's Excel number, the 0-based
    column of their first cell, the file's bytes)."""
    where = str(path)
    data = read_input_bytes(path)
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
    # to_python(skip_empty_area=True) begins at the first used cell, ``start`` (0-based).
    return sheet_name, rows, start[0] + 1, start[1], data


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
    found = find_header(rows[:HEADER_SEARCH_ROWS], options.expected_headers)
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
    """Many floats at once, each as ``_render_float`` shows it, without a Python call per cell
    for whole numbers (ids, whole amounts) and amounts in cents, the common cases."""
    floats = values.astype(np.float64)
    out = np.empty(len(floats), dtype=object)
    integral = (floats == np.trunc(floats)) & (np.abs(floats) < 1e16)
    out[integral] = floats[integral].astype(np.int64).astype(str)
    with np.errstate(invalid="ignore", over="ignore"):
        cents = np.rint(floats * 100)
        # The division is correctly rounded, like reading "12.34" is, so where it gives the value
        # back, that decimal is the shortest that does, which is what repr would write; below
        # 1e13 it has at most 15 digits, so nothing to round.
        in_cents = ~integral & (np.abs(floats) < 1e13) & (cents / 100 == floats)
    if in_cents.any():
        hundredths = np.abs(cents[in_cents]).astype(np.int64)
        whole, part = hundredths // 100, hundredths % 100
        decimals = np.where(
            part % 10 == 0, (part // 10).astype(str), np.strings.zfill(part.astype(str), 2)
        )
        shown = np.strings.add(np.strings.add(whole.astype(str), "."), decimals)
        out[in_cents] = np.where(floats[in_cents] < 0, np.strings.add("-", shown), shown)
    rest = ~integral & ~in_cents
    out[rest] = [_render_float(v) for v in floats[rest].tolist()]
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


# --- number formats --------------------------------------------------------------------------

_FORMAT_SAMPLE_ROWS = 20  # data rows below the header whose styles decide a column's format
_CELL_REF = re.compile(r"([A-Z]+)(\d*)")
# Cells whose value is a number, so their number format shows (text ignores it).
_NUMERIC_TYPES = frozenset({None, "n"})


def _number_formats(
    data: bytes, sheet: str, *, header_row: int, first_col: int
) -> dict[int, NumberFormat]:
    """0-based sheet column -> the number format most of its first numeric data cells use.

    Columns left General are absent. Only xlsx and xlsm (zip) workbooks have readable styles;
    anything unreadable gives no formats rather than an error, since the values are already read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = _sheet_parts(io.BytesIO(data), archive.infolist())
            part = next((p for p, name in parts.items() if name == sheet), None)
            if part is None:
                return {}
            with archive.open("xl/styles.xml") as styles:
                xf_formats = _xf_formats(styles)
            with archive.open(part) as sheet_xml:
                styles_by_col = _data_styles(sheet_xml, header_row=header_row)
    except (
        zipfile.BadZipFile,
        KeyError,
        OSError,
        ValueError,
        zlib.error,
        NotImplementedError,
        ParseError,
        DefusedXmlException,
    ):
        return {}
    formats: dict[int, NumberFormat] = {}
    for col, styles in styles_by_col.items():
        xf = styles.most_common(1)[0][0]
        if col >= first_col and 0 <= xf < len(xf_formats) and xf_formats[xf] not in (0, None):
            formats[col] = xf_formats[xf]
    return formats


def _xf_formats(styles: object) -> list[NumberFormat | None]:
    """Per cell style (``cellXfs`` index): its format code, a built-in format id, or None."""
    custom: dict[int, str] = {}
    xfs: list[NumberFormat | None] = []
    in_cell_xfs = False
    for event, element in iterparse(styles, events=("start", "end")):
        tag = element.tag.rpartition("}")[2]
        if event == "start":
            in_cell_xfs = in_cell_xfs or tag == "cellXfs"
            continue
        if tag == "numFmt":
            custom[_int(element.get("numFmtId"))] = element.get("formatCode") or ""
        elif tag == "xf" and in_cell_xfs:
            number = _int(element.get("numFmtId"))
            xfs.append(custom.get(number, number))
        elif tag == "cellXfs":
            break  # what follows (cell styles, fonts' use, colours) does not matter here
        element.clear()
    return xfs


def _data_styles(sheet_xml: object, *, header_row: int) -> dict[int, Counter[int]]:
    """0-based column -> how often each style index occurs among the numeric cells of the first
    data rows below ``header_row``; stops reading the sheet right after them."""
    last = header_row + _FORMAT_SAMPLE_ROWS
    found: dict[int, Counter[int]] = {}
    row_number = 0
    for row in _rows(sheet_xml):
        row_number = _int(row.get("r")) or row_number + 1
        if row_number > last:
            break
        if row_number > header_row:
            _count_styles(row, found)
        row.clear()
    return found


def _rows(sheet_xml: object) -> Iterator[object]:
    for _, element in iterparse(sheet_xml, events=("end",)):
        if element.tag.rpartition("}")[2] == "row":
            yield element


def _count_styles(row: object, found: dict[int, Counter[int]]) -> None:
    col = -1
    for cell in row:  # type: ignore[attr-defined]
        ref = _CELL_REF.match(cell.get("r") or "")
        col = _column_index(ref.group(1)) if ref else col + 1
        if cell.get("t") in _NUMERIC_TYPES and any(c.tag.endswith("}v") for c in cell):
            found.setdefault(col, Counter())[_int(cell.get("s"))] += 1


def _column_index(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number - 1


def _int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0
