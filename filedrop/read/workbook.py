"""Parse one sheet of an Excel workbook (xlsx, xlsm, xls) with calamine, without numpy or pandas.

Opening the workbook and picking the sheet, finding the header row below any title lines, and
classifying each column so it crosses to the parent compactly (``ParsedSheet``); ``excel`` renders
the cells and makes the `Table`. This runs in the reader's child process (``isolated``), whose
server imports only this module's needs, so it costs little CPU to start. Every message names the
file and sheet.

calamine gives values, not how they were shown, so each column's number format is read beside it,
from the styles of the first data rows in the sheet's XML (a bounded prefix, parsed as a stream)
and the workbook's ``styles.xml``. A workbook whose formats cannot be read still reads; its
outcome is just plainer.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.etree.ElementTree import ParseError

import python_calamine
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from filedrop.errors import HiddenSheetError, ReadError
from filedrop.read.limits import _TAG, _sheet_parts
from filedrop.read.table import (
    HEADER_SEARCH_ROWS,
    NumberFormat,
    ReadOptions,
    column_letter,
    find_header,
    other_sheets,
    read_input_bytes,
    zero_padded_width,
)

__all__ = [
    "RENDERERS",
    "Column",
    "LoadedSheet",
    "ParsedSheet",
    "finish_sheet",
    "load_sheet",
    "parse_sheet",
    "render",
    "render_float",
]


@dataclass(frozen=True)
class Column:
    """One data column as parsed, in the form cheapest to make, send and expand.

    ``kind`` says what ``data`` holds: "text" the cells (all ``str``, '' for empty); "floats"
    (the numbers as an ``array("d")``, 0 where empty, and ``bytes`` with 1 for each empty cell);
    "dates" (day numbers as an ``array("q")``, 0 for empty); "objects" (the cells as calamine
    gave them, for columns mixing kinds, rendered by ``excel.build_table``).
    """

    kind: str
    data: object


@dataclass(frozen=True)
class ParsedSheet:
    """What the parse gives, before empty rows and trailing columns are cut (``build_table``).

    Built-in types only: it is made in the reader's child process, which imports neither numpy
    nor pandas, and is sent to the parent.
    """

    sheet_name: str
    header_row: int
    headers: list[str]  # as shown and stripped, the sheet's whole width
    columns: list[Column]
    n_rows: int
    titles: list[tuple[int, list[object]]]  # rows above the header: (row number, raw cells)
    formats: dict[int, NumberFormat]
    first_col: int
    sheets: tuple[str, ...] = ()  # the workbook's visible sheets, for messages
    #: Column -> {Excel row: the digits its cell's own format of zeros shows, 0 for none} for
    #: the numbers formatted otherwise than their column (``_own_zeros``).
    own_zeros: dict[int, dict[int, int]] = field(default_factory=dict)


def parse_sheet(path: Path, options: ReadOptions, data: bytes | None = None) -> ParsedSheet:
    """Parse the chosen sheet of ``data`` (default: the bytes of ``path``) with calamine, find
    its header, and classify each column."""
    if data is None:
        data = read_input_bytes(path)
    return finish_sheet(path, options, load_sheet(path, data, options.sheet))


@dataclass(frozen=True)
class LoadedSheet:
    """A sheet as calamine gave it, before the header is looked for: what a reader that began
    before the mapping's options were known (``isolated.read_ahead``) holds while it waits."""

    wanted: str | int  # the sheet asked for (``ReadOptions.sheet``)
    sheet_name: str
    rows: list[list[object]]  # from the first used row
    first_row: int  # that row's Excel number
    first_col: int  # 0-based column of their first cell
    data: bytes  # the file's bytes
    sheets: tuple[str, ...]  # the workbook's visible sheets


def finish_sheet(path: Path, options: ReadOptions, loaded: LoadedSheet) -> ParsedSheet:
    """Find the header of a loaded sheet as ``options`` say, and classify each column."""
    where = str(path)
    sheet_name, rows, first_row = loaded.sheet_name, loaded.rows, loaded.first_row
    first_col, data, sheets = loaded.first_col, loaded.data, loaded.sheets
    header_at = _excel_header(where, sheet_name, rows, first_row, options, sheets=sheets)
    header_row = first_row + header_at

    headers = [render(c).strip() for c in rows[header_at]]
    if not any(headers):
        raise ReadError(
            where,
            f'row {header_row} of sheet "{sheet_name}" is empty; header_row must name the headers',
        )
    body = rows[header_at + 1 :]
    # calamine rows all have the sheet's width
    cells = list(zip(*body, strict=True)) if body else [() for _ in headers]
    formats, own_zeros = _number_formats(
        data, sheet_name, header_row=header_row, first_col=first_col
    )
    return ParsedSheet(
        sheet_name=sheet_name,
        header_row=header_row,
        headers=headers,
        columns=[_parse_column(column) for column in cells],
        n_rows=len(cells[0]),
        titles=[(first_row + i, row) for i, row in enumerate(rows[:header_at])],
        formats=formats,
        first_col=first_col,
        sheets=sheets,
        own_zeros=own_zeros,
    )


def _parse_column(cells: Sequence[object]) -> Column:
    """Classify one column of calamine's cells ('' for empty); the common kinds travel compact."""
    kinds = set(map(type, cells))
    if kinds <= {str}:
        return Column("text", cells)
    filled = set(map(type, (c for c in cells if c != ""))) if str in kinds else kinds
    if filled == {float}:
        numbers = array("d", [0.0 if c == "" else c for c in cells])  # type: ignore[misc]
        return Column("floats", (numbers, bytes(c == "" for c in cells)))
    if filled == {dt.date}:  # exactly dates: datetimes show their time
        days = [0 if c == "" else c.toordinal() for c in cells]  # type: ignore[attr-defined]
        return Column("dates", array("q", days))
    return Column("objects", cells)


#: pyo3's panic when Python hands back no object, which for the values calamine makes means an
#: allocation failed: pyo3 consumes the MemoryError and panics with these words instead.
_PYTHON_GAVE_NULL = "PyObject pointer is null"


def load_sheet(path: Path, data: bytes, wanted: str | int) -> LoadedSheet:
    """Open the workbook ``data`` (the bytes of ``path``) and load the sheet ``wanted``."""
    where = str(path)
    if not data:
        raise ReadError(where, "the file is empty (0 bytes); export it again")
    locked = "the file is password-protected; save a copy without a password"
    try:
        # From bytes, calamine tells xlsx from xls by content: an xlsx named .xls still opens.
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except python_calamine.PasswordError as exc:
        raise ReadError(where, locked) from exc
    except MemoryError:
        raise  # memory, not the file: the reader's child says so with the limit's name
    except Exception as exc:  # calamine raises several unrelated types for damaged files
        raise ReadError(where, _unopenable(data[:4096])) from exc
    with workbook:
        sheet_name = _sheet_name(where, workbook.sheet_names, wanted)
        visible = tuple(
            s.name
            for s in workbook.sheets_metadata
            if s.visible == python_calamine.SheetVisibleEnum.Visible
        )
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            _refuse_hidden(where, workbook.sheets_metadata, sheet_name, wanted)
        try:
            sheet = workbook.get_sheet_by_name(sheet_name)
            rows = sheet.to_python(skip_empty_area=True)
            start = sheet.start
        except python_calamine.PasswordError as exc:
            raise ReadError(where, locked) from exc
        except MemoryError:
            raise
        except Exception as exc:
            raise _unloadable(where, sheet_name, data, exc) from exc
        except BaseException as exc:
            # calamine's Rust code panics on some values (a date cell of -1e308: "TimeDelta::
            # milliseconds out of bounds"), which pyo3 raises as a BaseException.
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            if str(exc) == _PYTHON_GAVE_NULL:
                raise MemoryError from exc
            found = _far_date(data, sheet_name)
            what = (
                f"cell {found[0]} holds {found[1]} as a date or time, far outside the years "
                "Excel shows"
                if found
                # Not found: the reader's own words are all there is to go on.
                else f"a value the reader cannot convert ({str(exc)[:200]}), such as a date far "
                "outside the years Excel shows"
            )
            raise ReadError(
                where,
                f'sheet "{sheet_name}": {what}; correct it in Excel and save the file again',
            ) from None
    if not rows or start is None:
        others = other_sheets(visible, sheet_name)
        raise ReadError(
            where,
            f'sheet "{sheet_name}" is empty; set read.sheet in the mapping to the sheet with '
            f"the data (the others: {others})"
            if others
            else f'sheet "{sheet_name}" is empty, and there is no other; export the data again',
        )
    # to_python(skip_empty_area=True) begins at the first used cell, ``start`` (0-based).
    return LoadedSheet(wanted, sheet_name, rows, start[0] + 1, start[1], data, visible)


def _unloadable(where: str, sheet_name: str, data: bytes, exc: Exception) -> ReadError:
    """Why calamine could not load a sheet: a duration longer than Python holds, by its cell,
    else damage (error path only)."""
    long = _long_duration(data, sheet_name) if isinstance(exc, OverflowError) else None
    if long is not None:
        return ReadError(
            where,
            f'sheet "{sheet_name}": cell {long[0]} holds {long[1]} as a duration, more than the '
            f"{_LONGEST_DURATION_DAYS:,} days the reader can hold; correct it in Excel and save "
            "the file again",
        )
    return ReadError(
        where, f'sheet "{sheet_name}" is damaged; open the file in Excel and save it again'
    )


def _excel_header(
    where: str,
    sheet_name: str,
    rows: list[list[object]],
    first_row: int,
    options: ReadOptions,
    *,
    sheets: tuple[str, ...],
) -> int:
    """Index into ``rows`` of the header: as set (an Excel row number), else found. ``sheets``:
    the workbook's visible sheets, the others of which the invoices may be on."""
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
        # A summary sheet first: header_row, the advice alone, could never find the invoices.
        others = other_sheets(sheets, sheet_name)
        cure = (
            f"if the invoices are on another sheet ({others}), set read.sheet in the mapping to "
            "it, else set header_row"
            if others
            else "set header_row in the mapping"
        )
        raise ReadError(
            where,
            f"no header row found in the first {HEADER_SEARCH_ROWS} rows of sheet "
            f'"{sheet_name}" (expected a row of column names); {cure}',
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
            f"there is no sheet {wanted + 1} (read.sheet counts from 1); the sheets are {listing}",
        )
    if wanted in names:
        return wanted
    folded = [n for n in names if n.casefold() == str(wanted).casefold()]
    if len(folded) == 1:
        return folded[0]
    raise ReadError(
        where, f'there is no sheet "{wanted}" (read.sheet in the mapping); the sheets are {listing}'
    )


def _refuse_hidden(where: str, sheets: list[Any], name: str, position: int) -> None:
    """A sheet chosen by its position that Excel hides is refused: an export's hidden first
    sheet (an old copy, a lookup list) is not what anyone sees as its data, and sending it
    would send what nobody looked at. Named in ``read.sheet``, it is read."""
    visible = [s.name for s in sheets if s.visible == python_calamine.SheetVisibleEnum.Visible]
    if name in visible:
        return
    shown = ", ".join(f'"{n}"' for n in visible) or "none"
    raise HiddenSheetError(
        where,
        f'sheet {position + 1}, "{name}", is hidden in Excel, so it is not read unless named; '
        f"set read.sheet in the mapping to the name of the sheet with the invoices (the visible "
        f"sheets: {shown}) and drop the file again",
        tuple(visible),
    )


# Built-in number formats that show dates or times (ECMA-376 18.8.30, with the East Asian ones).
_DATE_FORMAT_IDS = frozenset({*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)})
# The reader turns a date cell's number into milliseconds as a 64-bit integer, saturating; at
# the lowest one its Rust code panics ("TimeDelta::milliseconds out of bounds"). Higher numbers,
# however absurd, read.
_PANICKING_DATE = -(2**63) / 86_400_000
# A number cell's value that starts with a minus sign; the cell's own tag is looked for before it.
_NEGATIVE_VALUE = re.compile(rb"<v>(-(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)</v>")
# The last cell tag before a value is looked for this far back at most: a formula longer than
# that leaves its cell unnamed, and a sheet of values without tags costs no more than one look
# each.
_CELL_TAG_BEFORE = 4096
# The reader makes a duration cell's number of days a ``timedelta``, which holds this many.
_LONGEST_DURATION_DAYS = 999_999_999
# A value of ten or more digits before its point, or with a positive exponent: the only ones
# that may be longer than that.
_LONG_VALUE = re.compile(rb"<v>(-?(?:[0-9]{10,}\.?[0-9]*|[0-9]*\.?[0-9]+[eE]\+?[0-9]+))</v>")
# Built-in formats the reader takes as durations ([h]:mm:ss); custom ones have an elapsed part.
_DURATION_FORMAT_IDS = frozenset({46})
_ELAPSED = re.compile(r"\[(?:h+|m+|s+)\]", re.IGNORECASE)
_AFTER_CELL_NAME = frozenset(b" \t\r\n>/")
_CELL_ATTRIBUTES = re.compile(rb'\s([rst])="([^"]*)"')
_REFERENCE = re.compile(r"[A-Z]{1,3}[1-9][0-9]{0,6}")
# Quoted text; a character escaped, or one a space as wide as (_) or a fill (*) stands for; a
# bracketed colour, locale or condition (not elapsed hours, minutes or seconds).
_NOT_FORMAT = re.compile(r'"[^"]*"|[\\_*].|\[(?![hms]{1,2}\])[^\]]*\]', re.IGNORECASE)
_DATE_LETTERS = re.compile(r"[dmhys]", re.IGNORECASE)
_SCAN_CHUNK = 1 << 20
_SCAN_OVERLAP = 1 << 16  # more than one cell's tag, formula and value take


def _is_date_format(code: NumberFormat | None) -> bool:
    """Whether the reader takes a cell of this format as a date or a duration: as calamine
    decides it, by the letters of its first section (``_first_section``)."""
    if isinstance(code, int):
        return code in _DATE_FORMAT_IDS
    return code is not None and _DATE_LETTERS.search(_first_section(code)) is not None


def _is_duration_format(code: NumberFormat | None) -> bool:
    """Whether the reader takes a cell of this format as a duration: the built-in [h]:mm:ss, or
    an elapsed ``[h]``, ``[m]`` or ``[s]`` in its first section."""
    if isinstance(code, int):
        return code in _DURATION_FORMAT_IDS
    return code is not None and _ELAPSED.search(_first_section(code)) is not None


def _first_section(code: str) -> str:
    """A custom format's first section outside quotes, escapes and brackets, the elapsed
    ``[h]``, ``[m]`` and ``[s]`` kept: what calamine reads a format by."""
    return _NOT_FORMAT.sub("", code).split(";", 1)[0]


def _far_date(data: bytes, sheet: str) -> tuple[str, str] | None:
    """The first cell of ``sheet`` shown as a date whose number makes the reader panic, as
    (reference, value); None when none is found (error path only)."""
    return _first_cell(
        data, sheet, _is_date_format, _NEGATIVE_VALUE, lambda value: value <= _PANICKING_DATE
    )


def _long_duration(data: bytes, sheet: str) -> tuple[str, str] | None:
    """The first cell of ``sheet`` shown as a duration longer than Python's ``timedelta``
    holds (the reader's OverflowError), as (reference, value); None when none is found."""
    return _first_cell(
        data,
        sheet,
        _is_duration_format,
        _LONG_VALUE,
        lambda value: abs(value) > _LONGEST_DURATION_DAYS,
    )


def _first_cell(
    data: bytes,
    sheet: str,
    shown_as: Callable[[NumberFormat | None], bool],
    pattern: re.Pattern[bytes],
    too_far: Callable[[float], bool],
) -> tuple[str, str] | None:
    """The first cell of ``sheet`` in a format ``shown_as`` takes whose value ``pattern`` finds
    and ``too_far`` holds too far, as (reference, value); None when none is found.

    The sheet's XML is inflated a chunk at a time and searched for such values first, so a
    sheet of a million rows takes seconds, not the minutes a parse would (error path only)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            part = _sheet_part(archive, data, sheet)
            if part is None:
                return None
            with archive.open("xl/styles.xml") as styles:
                styled = {i for i, code in enumerate(_xf_formats(styles)) if shown_as(code)}
            with archive.open(part) as sheet_xml:
                window = b""
                while chunk := sheet_xml.read(_SCAN_CHUNK):
                    window = window[-_SCAN_OVERLAP:] + chunk
                    if found := _cell_of(window, styled, pattern, too_far):
                        return found
    except _UNREADABLE_PARTS:
        return None
    return None


def _cell_of(
    xml: bytes, styled: set[int], pattern: re.Pattern[bytes], too_far: Callable[[float], bool]
) -> tuple[str, str] | None:
    for value in pattern.finditer(xml):
        if not too_far(float(value[1])):
            continue
        tag = _cell_tag_before(xml, value.start())
        if tag is None:
            continue  # its cell's tag is not in sight
        attributes = {k.decode(): v.decode() for k, v in _CELL_ATTRIBUTES.findall(tag)}
        # A cell with no style is General, whatever the workbook's first style shows; one whose
        # reference is no cell's (a crafted file's) is not named.
        if (
            _REFERENCE.fullmatch(attributes.get("r", ""))
            and "s" in attributes
            and attributes.get("t", "n") == "n"
            and _int(attributes["s"]) in styled
        ):
            shown = value[1].decode()
            return attributes["r"], shown if len(shown) <= 30 else f"{shown[:27]}..."
    return None


def _cell_tag_before(xml: bytes, at: int) -> bytes | None:
    """The opening tag of the cell whose value is at ``at``; None when it is not an open cell
    tag within ``_CELL_TAG_BEFORE`` bytes (an empty cell's, or a closed one, is another's)."""
    low, end = max(0, at - _CELL_TAG_BEFORE), at
    while (start := xml.rfind(b"<c", low, end)) >= 0:
        if start + 2 < at and xml[start + 2] in _AFTER_CELL_NAME:
            close = xml.find(b">", start, at)
            if close < 0 or xml[close - 1] == ord("/") or xml.find(b"</c>", close, at) >= 0:
                return None
            return xml[start : close + 1]
        end = start  # <col, <cfRule …: look further back
    return None


def _unopenable(head: bytes) -> str:
    """Why calamine could not open a file, guessed from its first bytes (error path only)."""
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        # An encrypted xlsx is an OLE container holding an "EncryptedPackage".
        return "the file is password-protected or damaged; save a copy without a password"
    if head.lstrip().startswith(b"<"):
        return "the file is a web page (HTML), not a workbook; open it in Excel and save as .xlsx"
    if head.startswith(b"%PDF"):
        return "the file is a PDF document, not a workbook; export the invoices as .xlsx or .csv"
    if b"\x00" not in head:
        return "the file is text, not an Excel workbook; if it is CSV, rename it to .csv"
    if head.startswith(b"PK\x03\x04"):
        # A workbook is a zip whose index comes last: a copy or an upload still under way
        # reads as a damaged one, and is read again once it changes.
        return (
            "the workbook is cut short or damaged; one still being copied is read again once "
            "whole, else export it again"
        )
    return (
        "the file is not a readable Excel workbook (damaged, or not Excel); open and save it again"
    )


def render_float(value: float) -> str:
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


def _render_datetime(value: dt.datetime) -> str:
    if value.hour == value.minute == value.second == 0:
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _render_timedelta(value: dt.timedelta) -> str:
    minutes, seconds = divmod(int(value.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


RENDERERS: dict[type, Callable[[object], str]] = {
    str: lambda v: v,  # type: ignore[dict-item]
    float: render_float,  # type: ignore[dict-item]
    int: str,
    bool: lambda v: "TRUE" if v else "FALSE",
    dt.date: dt.date.isoformat,  # type: ignore[dict-item]
    dt.datetime: _render_datetime,  # type: ignore[dict-item]
    dt.time: dt.time.isoformat,  # type: ignore[dict-item]
    dt.timedelta: _render_timedelta,  # type: ignore[dict-item]
}


def render(value: object) -> str:
    """One cell as the text Excel shows."""
    return RENDERERS.get(type(value), str)(value)


# --- number formats --------------------------------------------------------------------------

_FORMAT_SAMPLE_ROWS = 20  # data rows below the header whose styles decide a column's format
# What reading a workbook's styles or sheet XML beside calamine may raise: a damaged or odd file,
# which then only goes without what that reading would have added.
_UNREADABLE_PARTS = (
    zipfile.BadZipFile,
    KeyError,
    OSError,
    ValueError,
    zlib.error,
    NotImplementedError,
    ParseError,
    DefusedXmlException,
)
_CELL_REF = re.compile(r"([A-Z]+)(\d*)")
# Cells whose value is a number, so their number format shows (text ignores it).
_NUMERIC_TYPES = frozenset({None, "n"})


def _number_formats(
    data: bytes, sheet: str, *, header_row: int, first_col: int
) -> tuple[dict[int, NumberFormat], dict[int, dict[int, int]]]:
    """(0-based sheet column -> the number format most of its first numeric data cells use,
    the cells whose own format of zeros is not their column's: ``_own_zeros``).

    Columns left General are absent. Only xlsx and xlsm (zip) workbooks have readable styles;
    anything unreadable gives no formats rather than an error, since the values are already read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            part = _sheet_part(archive, data, sheet)
            if part is None:
                return {}, {}
            with archive.open("xl/styles.xml") as styles:
                xf_formats = _xf_formats(styles)
            with archive.open(part) as sheet_xml:
                styles_by_col = _data_styles(sheet_xml, header_row=header_row)
            formats = _most_used_formats(styles_by_col, xf_formats, first_col=first_col)
            widths = {i: zero_padded_width(code) for i, code in enumerate(xf_formats)}
            if not any(width >= 2 for width in widths.values()):
                return formats, {}  # no cell shows zeros a value lacks: nearly every workbook
            with archive.open(part) as sheet_xml:
                own = _own_zeros(sheet_xml, formats, widths, header_row=header_row)
            return formats, own
    except _UNREADABLE_PARTS:
        return {}, {}


def _most_used_formats(
    styles_by_col: dict[int, Counter[int]],
    xf_formats: list[NumberFormat | None],
    *,
    first_col: int,
) -> dict[int, NumberFormat]:
    """Column -> the number format of the style its sampled cells use most, if not General."""
    formats: dict[int, NumberFormat] = {}
    for col, styles in styles_by_col.items():
        xf = styles.most_common(1)[0][0]
        if col >= first_col and 0 <= xf < len(xf_formats) and xf_formats[xf] not in (0, None):
            formats[col] = xf_formats[xf]
    return formats


def _own_zeros(
    sheet_xml: IO[bytes],
    formats: dict[int, NumberFormat],
    widths: dict[int, int],
    *,
    header_row: int,
) -> dict[int, dict[int, int]]:
    """Column -> {data row: the digits its number's own format of zeros shows, 0 for none}, for
    the cells whose format of zeros is not their column's (``widths``: style -> digits).

    A column's format is the one its first rows use most, but Excel pads each cell by its own:
    a General cell among cells formatted ``000000`` shows 1234, and a ``000000`` cell below
    twenty General ones shows 001234. Padded by the column, the invoice number sent was not
    the one the user reads, nor the one a CSV of the sheet holds (a second case, once that CSV
    came). The cells' tags alone are looked at, a chunk of the inflated XML at a time, and
    only in a workbook with a format of zeros: every cell of a column formatted so, and in the
    others the cells whose style, written right after the reference as Excel writes it, is one
    of zeros. A cell without its reference (some writers leave it out) keeps its column's."""
    column_width = {col: zero_padded_width(code) for col, code in formats.items()}
    cell_tag = re.compile(_own_zeros_tags(column_width, widths))
    found: dict[int, dict[int, int]] = {}

    def look(xml: bytes, end: int) -> None:
        for tag in cell_tag.finditer(xml, 0, end):
            letters, row, rest = (part for part in tag.groups() if part is not None)
            attributes = dict(_CELL_ATTRIBUTES.findall(rest))
            if int(row) <= header_row or attributes.get(b"t", b"n") != b"n":
                continue  # the header, or text: shown as typed anyway
            col = _column_index(letters.decode())
            width = widths.get(_int(attributes.get(b"s", b"").decode()), 0)
            if width != column_width.get(col, 0):
                found.setdefault(col, {})[int(row)] = width

    rest = b""
    while chunk := sheet_xml.read(_SCAN_CHUNK):
        window = rest + chunk
        cut = max(window.rfind(b"<"), 0)  # every tag before it is whole: a tag holds no "<"
        look(window, cut)
        rest = window[cut:]
    look(rest, len(rest))
    return found


def _own_zeros_tags(column_width: dict[int, int], widths: dict[int, int]) -> bytes:
    """The pattern of the cell tags ``_own_zeros`` looks at, each giving (column letters, row,
    the attributes after the reference): in a column formatted with zeros, every cell but those
    whose style, right after the reference, shows the column's zeros (nearly all, and nothing
    to do for them); in the others, the cells whose style is one of zeros. Attributes are
    bounded (``_TAG``), so text that holds "<c r=" without a ">" after it (in a comment) costs
    a bounded look per start, not a scan to the window's end."""
    tags = []
    padded = [col for col, width in column_width.items() if width >= 2]
    for col in padded:
        same = [str(i).encode() for i, width in widths.items() if width == column_width[col]]
        tags.append(
            rb'<c r="(' + column_letter(col).encode() + rb')([0-9]+)"'
            rb'(?! s="(?:' + b"|".join(same) + rb')"[\s/>])(' + _TAG + rb")>"
        )
    zero_styles = [str(i).encode() for i, width in widths.items() if width >= 2]
    others = b"|".join(column_letter(col).encode() for col in padded)
    tags.append(
        (rb'<c r="(?!(?:' + others + rb")[0-9])" if padded else rb'<c r="')
        + rb'([A-Z]+)([0-9]+)"( s="(?:'
        + b"|".join(zero_styles)
        + rb')"'
        + _TAG
        + rb")>"
    )
    return b"|".join(tags)


def _sheet_part(archive: zipfile.ZipFile, data: bytes, sheet: str) -> str | None:
    """The zip entry of the sheet named ``sheet`` (``data``: the workbook's bytes)."""
    parts = _sheet_parts(io.BytesIO(data), archive.infolist())
    return next((part for part, name in parts.items() if name == sheet), None)


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
