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
rows there are.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import IO, Any

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
    columns: Sequence[list[Any]], rows_at: Sequence[int], styles: Sequence[ColumnStyles]
) -> Iterator[bytes]:
    """The ``<row>`` elements for ``columns`` (one list per column, a value per row), in UTF-8.

    ``rows_at`` are the 0-based sheet rows, ascending. Empty text, None, NaN and NaT leave their
    cell out, as an untouched cell.
    """
    letters = [xl_col_to_name(c) for c in range(len(columns))]
    for start in range(0, len(rows_at), CHUNK_ROWS):
        end = start + CHUNK_ROWS
        numbers = [str(r + 1) for r in rows_at[start:end]]
        cells = [
            column_cells(column[start:end], letter=letter, rows=numbers, styles=style)
            for column, letter, style in zip(columns, letters, styles, strict=True)
        ]
        opening = [f'<row r="{n}">' for n in numbers]
        yield "".join(chain.from_iterable(zip(opening, *cells, repeat("</row>")))).encode()


def column_cells(
    values: list[Any], *, letter: str, rows: Sequence[str], styles: ColumnStyles
) -> list[str]:
    """One ``<c>`` element per value ('' where the cell stays empty); ``rows`` are row numbers.

    A column of one kind (text, numbers or dates, with or without empty cells) is made in one
    comprehension; a column of mixed kinds goes a cell at a time.
    """
    kinds = set(map(type, values)) - {_NONE}
    if not kinds:
        return [""] * len(values)
    ref = f'<c r="{letter}'
    if kinds == {str}:
        return _text_cells(values, ref=ref, rows=rows, style=styles.text)
    if kinds <= {float, int} and all(map(math.isfinite, filter(_present, values))):
        s = _style(styles.plain)
        return [
            "" if v is None else f"{ref}{n}\"{s}><v>{v!r}</v></c>"
            for n, v in zip(rows, values, strict=True)
        ]
    if kinds == {dt.date}:
        s = _style(styles.plain if styles.keeps_dates else styles.date)
        return [
            "" if v is None else f'{ref}{n}"{s}><v>{_serial(v)}</v></c>'
            for n, v in zip(rows, values, strict=True)
        ]
    return [_any_cell(f"{ref}{n}", v, styles) for n, v in zip(rows, values, strict=True)]


def _text_cells(values: list[Any], *, ref: str, rows: Sequence[str], style: int) -> list[str]:
    """Text cells, each escaping step done only when the column needs it."""
    texts: list[str] = [v or "" for v in values] if None in values else values
    joined = "".join(texts)
    if len(joined) > MAX_TEXT // 2 and max(map(len, texts)) > MAX_TEXT // 2:
        texts = [_cut(t) for t in texts]
    # isprintable() is a fast first look (it also flags tabs, line feeds and some non-ASCII
    # spaces); only then the slower exact search.
    if ("_x" in joined or not joined.isprintable()) and _ESCAPED_BY_EXCEL.search(joined):
        texts = [_ESCAPED_BY_EXCEL.sub(_excel_escape, t) for t in texts]
    if "&" in joined or "<" in joined or ">" in joined:
        texts = [t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for t in texts]
    head = f'"{_style(style)} t="inlineStr"><is><t>'
    if list(map(str.strip, texts)) == texts:  # no text starts or ends with whitespace
        return [
            f"{ref}{n}{head}{t}</t></is></c>" if t else ""
            for n, t in zip(rows, texts, strict=True)
        ]
    kept = f'"{_style(style)} t="inlineStr"><is><t xml:space="preserve">'
    return [
        f"{ref}{n}{kept if _LEADING_SPACE.search(t) or _TRAILING_SPACE.search(t) else head}"
        f"{t}</t></is></c>"
        if t
        else ""
        for n, t in zip(rows, texts, strict=True)
    ]


def _any_cell(ref: str, value: object, styles: ColumnStyles) -> str:
    """One cell of a mixed column: ``ref`` is ``<c r="A12``; the rules are the column's."""
    kind = value.__class__
    if value is None or value is pd.NaT or value is pd.NA:
        return ""
    if kind is str:
        return _text_cells([value], ref=ref, rows=[""], style=styles.text)[0]
    if kind is bool:
        return f'{ref}"{_style(styles.plain)} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isnan(number):
            return ""
        if math.isinf(number):  # Excel has no infinity: shown as the text it is
            return _text_cells([str(value)], ref=ref, rows=[""], style=styles.plain)[0]
        shown = repr(value) if kind is int or kind is float else repr(number)
        return f'{ref}"{_style(styles.plain)}><v>{shown}</v></c>'
    if kind is dt.datetime:
        if styles.keeps_dates:
            style = styles.plain
        else:
            style = styles.datetime if value.time() != dt.time(0) else styles.date
        return _moment(ref, value, style)
    if kind is dt.date:
        return _moment(ref, value, styles.plain if styles.keeps_dates else styles.date)
    if isinstance(value, dt.datetime):  # pd.Timestamp and other subclasses: never the column's
        moment = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        return _moment(
            ref, moment, styles.datetime if moment.time() != dt.time(0) else styles.date
        )
    if isinstance(value, dt.date):
        return _moment(ref, value, styles.date)
    if isinstance(value, dt.time):
        return _moment(ref, value, styles.time)
    if isinstance(value, dt.timedelta):
        return _moment(ref, value, styles.duration)
    return _text_cells([str(value)], ref=ref, rows=[""], style=styles.plain)[0]


def _moment(ref: str, value: dt.date | dt.time | dt.timedelta, style: int) -> str:
    """A date, time or duration as Excel's serial number, as xlsxwriter computes it (an aware
    time keeps its wall-clock reading)."""
    serial = _datetime_to_excel_datetime(value, False, True)
    return f'{ref}"{_style(style)}><v>{serial:.16G}</v></c>'


def _serial(day: dt.date) -> int:
    """Excel's serial number of ``day``; Excel counts a 29 February 1900 that never was."""
    days = day.toordinal() - _DAY_ONE
    return days + 1 if days > 59 else days


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
                for chunk in rows:
                    stream.write(chunk)
                stream.write(tail)


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

