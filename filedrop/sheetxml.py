"""A worksheet's data rows as SpreadsheetML, built a whole column at a time, and spliced into the
package xlsxwriter made for everything else.

xlsxwriter keeps every cell as an object, looks each string up in a shared-string table and
writes the XML a cell at a time: some 4 µs per cell, most of an outcome's cost. Here each column
is looked at once (which Python types it holds, whether any text needs escaping) and its cells
become XML strings in one comprehension; the rows are then joined in C. Text is written inline
(``t="inlineStr"``), so no shared-string table is built, and escaped exactly as xlsxwriter
escapes it (``&<>``, control characters as ``_xHHHH_``, ``xml:space="preserve"`` for leading or
trailing whitespace), so a cell reads back as the same text. Every cell keeps its ``r`` reference:
the schema makes it optional, but not every reader copes without it.

The XML is made and deflated a few thousand rows at a time, so memory stays flat however many
rows there are. Those chunks can also be deflated apart, and earlier (``deflated``: a run makes
them while it waits for its last polls), then joined into the package
(``write_segmented_package``): each ends with a sync flush, so they read as one deflate stream.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, repeat
from typing import IO, Any, NamedTuple

import pandas as pd
from xlsxwriter.utility import (
    _datetime_to_excel_datetime,
    xl_cell_to_rowcol,
    xl_col_to_name,
    xl_rowcol_to_cell,
)

# Excel's limit on one cell's text, in UTF-16 units; longer text is cut, as xlsxwriter cuts it.
MAX_TEXT = 32_767
# Rows made into XML, encoded and deflated at a time: large enough that per-chunk costs vanish,
# small enough that a chunk's strings stay a few megabytes.
CHUNK_ROWS = 4_096
# zlib level for the package: level 1 deflates an outcome sheet 3-4 times faster than the default
# 6, for a file some 25 % larger (7 MB instead of 6 MB for 50,000 rows).
COMPRESS_LEVEL = 1

# What Excel writes as _xHHHH_: control characters other than tab and line feed, the two
# non-characters, and a literal "_xHHHH_" (its underscore escaped, so it reads back as typed).
_ESCAPED_BY_EXCEL = re.compile(r"_x[0-9a-fA-F]{4}_|[\x00-\x08\x0b-\x1f\ufffe\uffff]")
_LEADING_SPACE, _TRAILING_SPACE = re.compile(r"^\s"), re.compile(r"\s$")
_DAY_ONE = dt.date(1899, 12, 31).toordinal()  # Excel's day 0
_NONE = type(None)
Piece = str | list[str]
"""Part of a column's cells: the same string for every row, or one string per row."""


@dataclass(frozen=True, kw_only=True)
class ColumnStyles:
    """Style (xf) indices for one column's cells, as xlsxwriter numbered them; 0 is no style.

    The rules are those of writing each cell with xlsxwriter: a cell without a format of its own
    takes its column's (``plain``); dates keep the column's number format, when the input gave
    it one, else take ``date`` (or ``datetime`` when they have a time of day).
    """

    plain: int
    """The column's own format (the input's number format), 0 if it has none."""
    text: int
    """Text cells."""
    date: int
    datetime: int
    time: int
    duration: int
    keeps_dates: bool
    """Whether the column's own format shows its dates (it came from the input)."""


def sheet_rows(
    columns: Sequence[list[Any]],
    rows_at: Sequence[int],
    styles: Sequence[ColumnStyles],
    *,
    first_col: int = 0,
) -> Iterator[bytes]:
    """The ``<row>`` elements for ``columns`` (one list per column, a value per row), in UTF-8,
    ``CHUNK_ROWS`` rows at a time.

    ``rows_at`` are the 0-based sheet rows, ascending; the first column is the sheet's
    ``first_col`` (0-based). Empty text, None, NaN and NaT leave their cell out, as an untouched
    cell.
    """
    for k in chunk_numbers(len(rows_at)):
        yield chunk_rows(
            [in_chunk(column, k) for column in columns],
            in_chunk(rows_at, k),
            styles,
            first_col=first_col,
        )


def chunk_numbers(n_rows: int) -> range:
    """The chunks ``sheet_rows`` makes of ``n_rows`` rows, by number."""
    return range(-(-n_rows // CHUNK_ROWS))


def in_chunk(values: Sequence[Any], k: int) -> Sequence[Any]:
    """The values of a column's rows in chunk ``k``."""
    return values[k * CHUNK_ROWS : (k + 1) * CHUNK_ROWS]


def chunk_rows(
    columns: Sequence[list[Any]],
    rows_at: Sequence[int],
    styles: Sequence[ColumnStyles],
    *,
    first_col: int = 0,
) -> bytes:
    """The ``<row>`` elements of one chunk of rows (``sheet_rows``), in UTF-8."""
    numbers = [str(r + 1) for r in rows_at]
    pieces: list[Piece] = ['<row r="', numbers, '">']
    for c, (column, style) in enumerate(zip(columns, styles, strict=True), start=first_col):
        pieces += column_pieces(column, letter=xl_col_to_name(c), rows=numbers, styles=style)
    pieces.append("</row>")
    return "".join(chain.from_iterable(zip(*_merged(pieces), strict=False))).encode()


def _merged(pieces: list[Piece]) -> list[Iterable[str]]:
    """``pieces`` with neighbouring constants made one: fewer strings to join per row."""
    merged: list[Iterable[str]] = []
    constant = ""
    for piece in pieces:
        if isinstance(piece, str):
            constant += piece
            continue
        if constant:
            merged.append(repeat(constant))
            constant = ""
        merged.append(piece)
    if constant:
        merged.append(repeat(constant))
    return merged


def column_pieces(
    values: list[Any], *, letter: str, rows: list[str], styles: ColumnStyles
) -> list[Piece]:
    """A column's cells as pieces, each a string for every row or a list of one per row; a
    row's cell (or nothing, for an empty one) is the concatenation of its pieces for it.

    ``rows`` are the row numbers. A column where every row has a cell of the same kind comes as
    constant parts and whole lists (the reference's row numbers, the values as text), so no
    Python code runs per cell; with empty cells among them, one string per cell is made in one
    comprehension; a column of mixed kinds goes a cell at a time.
    """
    kinds = set(map(type, values)) - {_NONE}
    ref = f'<c r="{letter}'
    if kinds == {str}:
        return _text_pieces(values, ref=ref, rows=rows, style=styles.text)
    if not kinds:
        return []
    if kinds <= {float, int} and all(map(math.isfinite, filter(_present, values))):
        shown = map(_number_text, values) if None in values else _number_texts(values)
        return _pieces(ref, rows, f'"{_style(styles.plain)}><v>', list(shown), "</v></c>")
    if kinds == {dt.date}:
        # Excel's serial day numbers in one comprehension: a call per cell would cost as much
        # as all the rest. Excel counts a 29 February 1900 that never was.
        leap = _DAY_ONE + 59
        days = [
            "" if v is None else str(o - _DAY_ONE + (o > leap))
            for v in values
            for o in (0 if v is None else v.toordinal(),)
        ]
        style = styles.plain if styles.keeps_dates else styles.date
        return _pieces(ref, rows, f'"{_style(style)}><v>', days, "</v></c>")
    return [[_any_cell(f"{ref}{n}", v, styles) for n, v in zip(rows, values, strict=True)]]


def _pieces(
    ref: str, rows: list[str], middle: str | list[str], contents: list[str], close: str
) -> list[Piece]:
    """Cells ``ref`` + row + ``middle`` + content + ``close``; none where the content is ''."""
    if all(contents):
        return [ref, rows, middle, contents, close]
    middles = repeat(middle) if isinstance(middle, str) else middle
    return [
        [
            f"{ref}{n}{m}{c}{close}" if c else ""
            for n, m, c in zip(rows, middles, contents, strict=False)
        ]
    ]


def _text_pieces(values: list[Any], *, ref: str, rows: list[str], style: int) -> list[Piece]:
    """Text cells, each escaping step done only when the column needs it."""
    texts: list[str] = [v or "" for v in values] if None in values else values
    joined = "".join(texts)
    if not joined:
        return []
    if len(joined) > MAX_TEXT // 2 and max(map(len, texts)) > MAX_TEXT // 2:
        texts = [_cut(t) for t in texts]
    # isprintable() is a fast first look (it also flags tabs, line feeds and some non-ASCII
    # spaces); only then the slower exact search.
    if ("_x" in joined or not joined.isprintable()) and _ESCAPED_BY_EXCEL.search(joined):
        texts = [_ESCAPED_BY_EXCEL.sub(_excel_escape, t) for t in texts]
    if "&" in joined or "<" in joined or ">" in joined:
        texts = [t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for t in texts]
    plain = f'"{_style(style)} t="inlineStr"><is><t>'
    if list(map(str.strip, texts)) == texts:  # no text starts or ends with whitespace
        return _pieces(ref, rows, plain, texts, "</t></is></c>")
    kept = f'"{_style(style)} t="inlineStr"><is><t xml:space="preserve">'
    middles = [
        kept if _LEADING_SPACE.search(t) or _TRAILING_SPACE.search(t) else plain for t in texts
    ]
    return _pieces(ref, rows, middles, texts, "</t></is></c>")


def _text_cell(ref: str, text: str, style: int) -> str:
    """One text cell (or '' for empty text); ``ref`` is ``<c r="A12``."""
    pieces = _text_pieces([text], ref=ref, rows=[""], style=style)
    return "".join(piece if isinstance(piece, str) else piece[0] for piece in pieces)


def _any_cell(ref: str, value: object, styles: ColumnStyles) -> str:
    """One cell of a mixed column: ``ref`` is ``<c r="A12``; the rules are the column's."""
    if value is None or value is pd.NaT or value is pd.NA:
        return ""
    if value.__class__ is str:
        return _text_cell(ref, value, styles.text)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return f'{ref}"{_style(styles.plain)} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return _number_cell(ref, value, styles)
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        return _moment_cell(ref, value, styles)
    return _text_cell(ref, str(value), styles.plain)


def _number_cell(ref: str, value: float, styles: ColumnStyles) -> str:
    """A number of any kind; NaN leaves the cell empty, infinity shows as text."""
    number = float(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):  # Excel has no infinity: shown as the text it is
        return _text_cell(ref, str(value), styles.plain)
    return f'{ref}"{_style(styles.plain)}><v>{_number_text(number)}</v></c>'


def _moment_cell(ref: str, value: dt.date | dt.time | dt.timedelta, styles: ColumnStyles) -> str:
    """A date, time or duration cell. Plain dates and datetimes keep the column's own format;
    a pd.Timestamp (or other subclass) never does, as it never did."""
    kind = value.__class__
    if kind is dt.datetime or kind is dt.date:
        if styles.keeps_dates:
            style = styles.plain
        elif kind is dt.datetime and value.time() != dt.time(0):  # type: ignore[union-attr]
            style = styles.datetime
        else:
            style = styles.date
    elif isinstance(value, dt.datetime):
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        style = styles.datetime if value.time() != dt.time(0) else styles.date
    elif isinstance(value, dt.date):
        style = styles.date
    elif isinstance(value, dt.time):
        style = styles.time
    else:
        style = styles.duration
    return _moment(ref, value, style)


def _moment(ref: str, value: dt.date | dt.time | dt.timedelta, style: int) -> str:
    """A date, time or duration as Excel's serial number, as xlsxwriter computes it (an aware
    time keeps its wall-clock reading)."""
    serial = _datetime_to_excel_datetime(value, False, True)
    return f'{ref}"{_style(style)}><v>{serial:.16G}</v></c>'


def _excel_escape(found: re.Match[str]) -> str:
    text = found.group(0)
    return f"_x005F{text}" if len(text) > 1 else f"_x{ord(text):04X}_"


def _cut(text: str) -> str:
    """``text`` cut to Excel's limit in UTF-16 units, never inside a character."""
    if len(text) <= MAX_TEXT // 2 or len(text.encode("utf-16-le", "surrogatepass")) <= 2 * MAX_TEXT:
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > MAX_TEXT:
            return text[:index]
    return text


def _style(index: int) -> str:
    return f' s="{index}"' if index else ""


def _present(value: object) -> bool:
    return value is not None


def _number_texts(numbers: Iterable[float]) -> list[str]:
    """Numbers as the shortest text that reads back as the same double, whole ones without
    '.0' (read back as integers, as before)."""
    return [t[:-2] if t[-2:] == ".0" else t for t in map(repr, map(float, numbers))]


def _number_text(number: float | None) -> str:
    return "" if number is None else _number_texts((number,))[0]


_DIMENSION = re.compile(rb'<dimension ref="([A-Z]+[0-9]+)(?::([A-Z]+[0-9]+))?"/>')


def write_package(
    skeleton: bytes,
    dest: IO[bytes],
    *,
    sheet: str,
    rows: Iterable[bytes],
    last_row: int,
    last_col: int,
) -> None:
    """Copy the xlsx package ``skeleton`` to ``dest``, with ``rows`` added at the end of
    ``sheet``'s ``<sheetData>`` (their row numbers follow those already there).

    ``last_row`` and ``last_col`` (0-based) are the last cell the added rows reach: the sheet's
    ``<dimension>`` is widened to it, as readers size the sheet from it.
    """
    with (
        zipfile.ZipFile(io.BytesIO(skeleton)) as source,
        zipfile.ZipFile(
            dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
        ) as package,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename != sheet:
                package.writestr(info, data, compresslevel=COMPRESS_LEVEL)
                continue
            head, tail = _split_sheet(data)
            head = _DIMENSION.sub(lambda found: _widen(found, last_row, last_col), head, count=1)
            with package.open(info.filename, "w") as stream:  # the package's level
                stream.write(head)
                _write_behind(stream, rows)
                stream.write(tail)


class Segment(NamedTuple):
    """Part of a zip entry's content, deflated on its own: a raw deflate stream ended by a sync
    flush, so segments made apart, one after another, are one valid stream (each refers back
    only into its own bytes); the CRC-32 and length of the bytes it holds."""

    data: bytes
    crc: int
    size: int


def deflated(content: bytes) -> Segment:
    """``content`` as a ``Segment``. zlib lets go of the interpreter lock meanwhile."""
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(content) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Segment(data, zlib.crc32(content), len(content))


def deflated_behind(chunks: Iterable[bytes]) -> list[Segment]:
    """Each chunk ``deflated`` on a thread of its own while the next is made (as
    ``_write_behind`` writes them), one chunk ahead at most."""
    segments: list[Segment] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="filedrop-deflate") as deflater:
        behind: Future[Segment] | None = None
        for chunk in chunks:
            if behind is not None:
                segments.append(behind.result())
            behind = deflater.submit(deflated, chunk)
        if behind is not None:
            segments.append(behind.result())
    return segments


# zlib's CRC-32 polynomial, reflected; x to the power of 2**n modulo it, for n = 0..31.
_CRC_POLY = 0xEDB88320


def _multiply_mod_poly(a: int, b: int) -> int:
    """``a`` times ``b`` modulo the CRC polynomial (reflected bit order, as zlib keeps it)."""
    product, bit = 0, 1 << 31
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return product


def _x_powers() -> list[int]:
    powers = [1 << 30]  # x**1
    for _ in range(31):
        powers.append(_multiply_mod_poly(powers[-1], powers[-1]))
    return powers


_X_TO_2_TO_N = _x_powers()


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of two byte strings one after the other, from each one's CRC-32 and the second
    one's length (zlib's crc32_combine, which Python's zlib does not offer): segments deflated
    apart, and at different times, make one zip entry whose CRC the zip needs."""
    power, n, k = 1 << 31, length2, 3  # x**0; a byte is 2**3 bits
    while n:
        if n & 1:
            power = _multiply_mod_poly(_X_TO_2_TO_N[k % 32], power)
        n >>= 1
        k += 1
    return _multiply_mod_poly(power, crc1) ^ crc2


#: The largest size or offset written without zip's 64-bit extensions: 2 GB, where zipfile
#: switches to them too, as some readers take those fields as signed.
_ZIP32_LIMIT = (1 << 31) - 1


class ZipTooLargeError(Exception):
    """The package would need zip's 64-bit extensions, which ``write_segmented_package`` does
    not write: the caller writes it by ``write_package`` instead."""


def write_segmented_package(
    skeleton: bytes,
    dest: IO[bytes],
    *,
    sheet: str,
    rows: Sequence[Segment],
    last_row: int,
    last_col: int,
) -> None:
    """``write_package``, with the rows already deflated (``rows``, in order): the package is
    written around them, so rows deflated while a run still waited for its last polls cost
    nothing at its end. Raises ``ZipTooLargeError`` (before writing anything) for a package past
    2 GB, which needs zip64.
    """
    entries: list[tuple[zipfile.ZipInfo, list[Segment]]] = []
    with zipfile.ZipFile(io.BytesIO(skeleton)) as source:
        for info in source.infolist():
            data = source.read(info)
            if info.filename != sheet:
                entries.append((info, [_finished(data)]))
                continue
            head, tail = _split_sheet(data)
            head = _DIMENSION.sub(lambda found: _widen(found, last_row, last_col), head, count=1)
            entries.append((info, [deflated(head), *rows, _finished(tail)]))
    if len(entries) > 0xFFFF:
        raise ZipTooLargeError
    central: list[bytes] = []
    offset = 0
    records: list[tuple[zipfile.ZipInfo, list[Segment], int, int, int]] = []
    for info, segments in entries:
        crc, size = segments[0].crc, segments[0].size
        for segment in segments[1:]:
            crc = crc32_combine(crc, segment.crc, segment.size)
            size += segment.size
        packed = sum(len(segment.data) for segment in segments)
        if max(size, packed, offset) >= _ZIP32_LIMIT:
            raise ZipTooLargeError
        records.append((info, segments, crc, size, packed))
        offset += 30 + len(_zip_name(info)) + packed
    if offset >= _ZIP32_LIMIT:
        raise ZipTooLargeError
    offset = 0
    for info, segments, crc, size, packed in records:
        name, flags = _zip_name(info), 0x800 if not info.filename.isascii() else 0
        date, time = _dos_stamp(info.date_time)
        fields = (20, flags, zipfile.ZIP_DEFLATED, time, date, crc, packed, size, len(name))
        dest.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + name)
        for segment in segments:
            dest.write(segment.data)
        made_by = info.create_version | info.create_system << 8
        # No extra field, comment, disk number or internal attributes.
        entry = (made_by, *fields, 0, 0, 0, 0, info.external_attr, offset)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, *entry) + name)
        offset += 30 + len(name) + packed
    directory = b"".join(central)
    dest.write(directory)
    count = len(central)
    dest.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), offset, 0))


def _finished(content: bytes) -> Segment:
    """A last segment: the stream's final block (a sync flush does not end it)."""
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(content) + compressor.flush()
    return Segment(data, zlib.crc32(content), len(content))


def _zip_name(info: zipfile.ZipInfo) -> bytes:
    return info.filename.encode("ascii" if info.filename.isascii() else "utf-8")


def _dos_stamp(moment: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    """A zip entry's date and time fields (MS-DOS format, two-second steps)."""
    year, month, day, hour, minute, second = moment
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


def _write_behind(stream: IO[bytes], chunks: Iterable[bytes]) -> None:
    """Write each chunk on a thread of its own while the next is made: zlib and the file write
    let go of the interpreter lock, so deflating a chunk (a quarter of an outcome's cost) runs on
    the other core beside the Python code making the next. One chunk ahead at most, so memory
    stays that of two chunks; what either side raises is raised here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="filedrop-deflate") as writer:
        written: Future[int] | None = None
        for chunk in chunks:
            if written is not None:
                written.result()
            written = writer.submit(stream.write, chunk)
        if written is not None:
            written.result()


def _split_sheet(xml: bytes) -> tuple[bytes, bytes]:
    """The sheet's XML before and after the place where more rows go."""
    end = xml.find(b"</sheetData>")
    if end >= 0:
        return xml[:end], xml[end:]
    empty = xml.find(b"<sheetData/>")
    if empty < 0:
        raise ValueError("the worksheet has no <sheetData>")
    return xml[:empty] + b"<sheetData>", b"</sheetData>" + xml[empty + len(b"<sheetData/>") :]


def _widen(found: re.Match[bytes], last_row: int, last_col: int) -> bytes:
    first = found.group(1).decode()
    end_row, end_col = xl_cell_to_rowcol((found.group(2) or found.group(1)).decode())
    last = xl_rowcol_to_cell(max(end_row, last_row), max(end_col, last_col))
    return f'<dimension ref="{first}:{last}"/>'.encode()
