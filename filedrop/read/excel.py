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

__all__ = ["read_excel"]


def read_excel(path: Path, options: ReadOptions) -> Table:
    """One sheet of an Excel workbook as a `Table`; `ReadError` says what is wrong."""
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
    raw = [grid[:, j] for j in range(len(headers))]
    columns = [_render_column(col) for col in raw]
    width = trailing_width(headers, columns)
    headers, columns, raw = headers[:width], columns[:width], raw[:width]
    headers = name_blank_headers(headers)
    keep = ~blank_rows(columns, len(body))
    if not keep.any():
        raise ReadError(
            where,
            f'sheet "{sheet_name}" has a header on row {header_row} but no data rows below it',
        )
    # calamine gives '' for an empty cell; a new array, as all-text columns share it with ``cells``
    typed = [np.where(c == "", None, c) for c in raw]
    formats = _number_formats(data, sheet_name, header_row=header_row, first_col=first_col)
    return Table(
        path=path,
        headers=headers,
        cells=column_frame(columns, keep),
        values=column_frame(typed, keep),
        row_numbers=np.arange(header_row + 1, header_row + 1 + len(body), dtype=np.int64)[keep],
        info=ReadInfo(kind="excel", sheet=sheet_name, header_row=header_row),
        layout=Layout(
            titles=tuple(
                (first_row + i, tuple(None if c == "" else c for c in row[:width]))
                for i, row in enumerate(rows[:header_at])
                if any(c != "" for c in row[:width])
            ),
            number_formats=tuple(formats.get(first_col + j) for j in range(width)),
        ),
    )


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
