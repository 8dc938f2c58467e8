"""Excel workbooks (xlsx, xlsm, xls) -> a `Table`: the cells as the text Excel shows, typed values.

``workbook`` parses the sheet (in the reader's child process, see ``isolated``); here its columns
become text as Excel shows it (15 significant digits, dates as ISO dates, the leading zeros of a
format of zeros), while `Table.values`
keeps the typed values for an Excel outcome, and `Table.layout` the title rows above the header
and each column's number format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from filedrop.errors import ReadError
from filedrop.read.limits import SheetMarks
from filedrop.read.table import (
    UNSAVED_CURE,
    Layout,
    NumberFormat,
    ReadInfo,
    ReadOptions,
    Table,
    blank_rows,
    column_frame,
    column_letter,
    name_blank_headers,
    other_sheets,
    trailing_width,
    zero_filled,
    zero_padded_width,
)
from filedrop.read.workbook import (
    RENDERERS,
    Column,
    ParsedSheet,
    parse_sheet,
    render_float,
)

__all__ = ["build_table", "read_excel"]


def read_excel(
    path: Path, options: ReadOptions, marks: SheetMarks | None = None, data: bytes | None = None
) -> Table:
    """One sheet of an Excel workbook (``data``, default the bytes of ``path``) as a `Table`;
    `ReadError` says what is wrong."""
    return build_table(path, parse_sheet(path, options, data), marks)


def build_table(path: Path, sheet: ParsedSheet, marks: SheetMarks | None = None) -> Table:
    """The `Table` of a parsed sheet: cells as text, typed values, empty rows and columns cut.

    ``marks`` (from the sheet's XML) put each error cell's error where calamine left it empty,
    note the formulas whose results were never saved, and refuse a sheet whose hidden rows hold
    data."""
    own_zeros = [
        {
            row - sheet.header_row - 1: width
            for row, width in sheet.own_zeros.get(sheet.first_col + j, {}).items()
        }
        for j in range(len(sheet.columns))
    ]
    expanded = [
        _zeros_shown(*_expand(column, sheet.n_rows), sheet.formats.get(sheet.first_col + j), own)
        for j, (column, own) in enumerate(zip(sheet.columns, own_zeros, strict=True))
    ]
    if marks is not None and marks.errors:
        _put_errors(expanded, marks.errors, sheet)
    merged_down: dict[int, list[tuple[int, int]]] = {}
    if marks is not None and marks.merged:
        merged_down = _fill_merged(expanded, marks.merged, marks.hidden_rows, sheet)
    texts = [text for text, _ in expanded]
    width = trailing_width(sheet.headers, texts)
    headers = name_blank_headers(sheet.headers[:width], first=sheet.first_col)
    texts, typed = texts[:width], [values for _, values in expanded[:width]]
    keep = ~blank_rows(texts, sheet.n_rows)
    unsaved, formulas = _unsaved_cells(marks, sheet, width)
    if not keep.any() and unsaved:
        raise ReadError(
            str(path),
            f'sheet "{sheet.sheet_name}" has a header on row {sheet.header_row}, and below it '
            "nothing but formulas whose results Excel or LibreOffice never calculated and saved "
            f"(the file was written by another program; the first: "
            f"{_first_formula(unsaved, headers)}), so its rows read as empty; {UNSAVED_CURE}",
        )
    if not keep.any():
        others = other_sheets(sheet.sheets, sheet.sheet_name)
        raise ReadError(
            str(path),
            f'sheet "{sheet.sheet_name}" has a header on row {sheet.header_row} '
            "but no data rows below it"
            + (f"; read.sheet in the mapping can name another sheet: {others}" if others else ""),
        )
    first_data = sheet.header_row + 1
    row_numbers = np.arange(first_data, first_data + sheet.n_rows, dtype=np.int64)[keep]
    notes = _note_rows(texts, marks.merged, sheet) if marks is not None and marks.merged else {}
    if marks is not None and marks.hidden_rows:
        _refuse_hidden_rows(path, sheet.sheet_name, row_numbers, marks.hidden_rows)
    return Table(
        path=path,
        headers=headers,
        cells=column_frame(texts, keep),
        values=column_frame(typed, keep),
        row_numbers=row_numbers,
        info=ReadInfo(
            kind="excel",
            sheet=sheet.sheet_name,
            header_row=sheet.header_row,
            first_column=sheet.first_col,
            sheets=sheet.sheets,
            date1904=marks is not None and marks.date1904,
        ),
        layout=Layout(
            titles=tuple(
                (number, tuple(None if c == "" else c for c in row[:width]))
                for number, row in sheet.titles
                if any(c != "" for c in row[:width])
            ),
            number_formats=tuple(sheet.formats.get(sheet.first_col + j) for j in range(width)),
        ),
        unsaved=unsaved,
        formulas=formulas,
        notes=notes,
        merged_down={pos: tuple(ranges) for pos, ranges in merged_down.items() if pos < width},
        own_format_rows=_own_format_rows(own_zeros[:width], typed, keep, first_data),
    )


def _own_format_rows(
    own_zeros: list[dict[int, int]], typed: list[np.ndarray], keep: np.ndarray, first_data: int
) -> dict[int, np.ndarray]:
    """Per column, the row numbers of the numbers kept that their own cell's format shows
    (``own_zeros``: position -> its format's digits, for the cells formatted otherwise than
    their column): ``Table.own_format_rows``."""
    found: dict[int, np.ndarray] = {}
    for j, own in enumerate(own_zeros):
        at = sorted(
            i for i in own if 0 <= i < len(keep) and keep[i] and type(typed[j][i]) in (float, int)
        )
        if at:
            found[j] = np.asarray(at, dtype=np.int64) + first_data
    return found


def _put_errors(
    expanded: list[tuple[np.ndarray, np.ndarray]],
    errors: dict[tuple[int, int], str],
    sheet: ParsedSheet,
) -> None:
    """Each data cell holding an Excel error shows it (``#N/A``), as in Excel, instead of the
    empty cell calamine makes of it: a claim line whose amount is ``#N/A`` was dropped as empty,
    and its invoice sent for less."""
    first_data = sheet.header_row + 1
    for (row, column), code in errors.items():
        at, col = row - first_data, column - sheet.first_col
        if 0 <= at < sheet.n_rows and 0 <= col < len(expanded):
            text, typed = expanded[col]
            text[at] = typed[at] = code


def _fill_merged(
    expanded: list[tuple[np.ndarray, np.ndarray]],
    merged: frozenset[tuple[int, int, int, int]],
    hidden_rows: frozenset[int],
    sheet: ParsedSheet,
) -> dict[int, list[tuple[int, int]]]:
    """Every cell of a merged range below the header holds the range's value, as Excel shows
    it: an invoice number merged over its principal, fee and interest lines was on the first
    line alone, the others INVALID ("Invoice no is empty"), and the first sent without them.
    A range whose first cell is above the data (a title, a header over two columns) is left, and
    so are hidden rows, which show nothing (filled, an empty one would refuse the sheet for data
    it hides). Ranges never overlap in a workbook Excel wrote, so they fill each cell once at
    most: a crafted sheet's overlapping ranges stop when they have filled as many cells as the
    table has, rather than cost ranges times rows.

    Returns the ranges over two rows or more, by column (as ``Table.merged_down``): one amount
    shown once beside several rows is not each row's."""
    first_data = sheet.header_row + 1
    hidden = np.fromiter(hidden_rows, dtype=np.int64, count=len(hidden_rows)) - first_data
    budget = sheet.n_rows * len(expanded)
    down: dict[int, list[tuple[int, int]]] = {}
    for first_row, first_col, last_row, last_col in sorted(merged):
        top, left = first_row - first_data, first_col - sheet.first_col
        if not (0 <= top < sheet.n_rows and 0 <= left < len(expanded)):
            continue
        rows = np.arange(top, min(last_row - first_data, sheet.n_rows - 1) + 1)
        rows = rows[~np.isin(rows, hidden)] if len(hidden) else rows
        right = min(last_col - sheet.first_col, len(expanded) - 1)
        budget -= len(rows) * (right - left + 1)
        if budget < 0:
            break
        shown, value = expanded[left][0][top], expanded[left][1][top]
        for text, typed in expanded[left : right + 1]:
            text[rows] = shown
            typed[rows] = value
        if len(rows) > 1:
            for pos in range(left, right + 1):
                down.setdefault(pos, []).append((first_row, last_row))
    return down


#: The fewest columns a merged range of one row spans to be a note across it: a value merged
#: over two columns (a date over both date columns) is one of the row's values.
NOTE_MIN_COLUMNS = 3


def _note_rows(
    texts: list[np.ndarray], merged: frozenset[tuple[int, int, int, int]], sheet: ParsedSheet
) -> dict[int, str]:
    """Data rows that are one merged range and nothing else, such as a heading between groups
    ("Avdeling Bergen" across the sheet): their row numbers, and the range. ``_fill_merged``
    has put its text in each of its cells; read as an invoice, the row would fail on every
    column."""
    first_data = sheet.header_row + 1
    notes: dict[int, str] = {}
    for first_row, first_col, last_row, last_col in merged:
        top, left = first_row - first_data, first_col - sheet.first_col
        right = min(last_col - sheet.first_col, len(texts) - 1)
        if first_row != last_row or not 0 <= top < sheet.n_rows or left < 0:
            continue
        if right - left + 1 < NOTE_MIN_COLUMNS or texts[left][top] == "":
            continue
        if all(text[top] == "" for text in texts[:left] + texts[right + 1 :]):
            first, last = sheet.first_col + left, sheet.first_col + right
            notes[first_row] = f"{column_letter(first)}{first_row}:{column_letter(last)}{first_row}"
    return notes


def _unsaved_cells(
    marks: SheetMarks | None, sheet: ParsedSheet, width: int
) -> tuple[dict[int, np.ndarray], dict[tuple[int, int], str]]:
    """``Table.unsaved`` and ``Table.formulas``: per column of the table, the rows (Excel's
    numbers, ascending) below the header whose formula's result was never saved (a file written
    by a program, not saved by Excel or LibreOffice), and the formulas kept to show, by row and
    column of the table. calamine reads each such cell as empty, as it stays in the table; the
    mapping refuses the rows where it reads one."""
    if marks is None or not marks.unsaved_rows:
        return {}, {}
    rows = np.asarray(marks.unsaved_rows, dtype=np.int64)
    columns = np.asarray(marks.unsaved_columns, dtype=np.int64) - sheet.first_col
    inside = (rows > sheet.header_row) & (columns >= 0) & (columns < width)
    rows, columns = rows[inside], columns[inside]
    unsaved = {int(c): np.unique(rows[columns == c]) for c in np.unique(columns).tolist()}
    formulas = {(row, column - sheet.first_col): f for (row, column), f in marks.formulas.items()}
    return unsaved, formulas


def _first_formula(unsaved: dict[int, np.ndarray], headers: list[str]) -> str:
    """``Beløp on row 2``: where the first of them is, for a message."""
    row, column = min((int(rows[0]), column) for column, rows in unsaved.items())
    return f"{headers[column]} on row {row}"


def _refuse_hidden_rows(
    path: Path, sheet_name: str, row_numbers: np.ndarray, hidden: frozenset[int]
) -> None:
    """A sheet whose data rows are partly hidden (by a filter, or by hand) is not read: people
    filter an export down to the invoices to collect, and every row would be sent."""
    rows = sorted(set(row_numbers.tolist()) & hidden)
    if not rows:
        return
    shown = ", ".join(map(str, rows[:5])) + (
        f" and {len(rows) - 5:,} more" if len(rows) > 5 else ""
    )
    raise ReadError(
        str(path),
        f'sheet "{sheet_name}" hides row{"s" if len(rows) > 1 else ""} {shown} (by a filter, '
        "or by hand), and filedrop would send every row, shown or hidden; show all rows, "
        "delete those that are not to be sent, and save the file again",
    )


def _expand(column: Column, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(text as shown, typed values with None for empty) of one parsed column."""
    kind, data = column.kind, column.data
    if kind in ("text", "objects"):
        cells = np.empty(n_rows, dtype=object)
        if n_rows:
            cells[:] = data
        blank = cells == ""
        text = cells if kind == "text" else _render_column(cells)
        return text, np.where(blank, None, cells)
    text = np.full(n_rows, "", dtype=object)
    typed = np.empty(n_rows, dtype=object)
    if kind == "floats":
        numbers, empty = data  # type: ignore[misc]
        floats = np.frombuffer(numbers, dtype=np.float64)
        filled = np.frombuffer(empty, dtype=np.uint8) == 0
        text[filled] = _render_floats(floats[filled])
        typed[filled] = floats[filled].tolist()
        return text, typed
    days = np.frombuffer(data, dtype=np.int64)  # type: ignore[call-overload]
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


def _zeros_shown(
    text: np.ndarray,
    typed: np.ndarray,
    number_format: NumberFormat | None,
    own_zeros: Mapping[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(text, typed) with the column's whole numbers as a format of zeros shows them: 3351
    formatted ``0000000`` is ``0003351`` on screen and on paper, and in a CSV Excel saves of the
    sheet. The value holds no zeros, so without them an invoice number went out as 3351, and the
    same invoice from that CSV as 0003351: a second case. Text cells are shown as typed. A cell
    formatted otherwise than its column (``own_zeros``: position -> the digits its own format
    shows, 0 for none) is shown by its own format, as Excel shows it."""
    width = zero_padded_width(number_format)
    if width < 2 and not own_zeros:
        return text, typed
    by_width: dict[int, list[int]] = {}
    for i, value in enumerate(typed.tolist()):
        if type(value) in (float, int) and (shown := own_zeros.get(i, width)) >= 2:
            by_width.setdefault(shown, []).append(i)
    if by_width:
        text = text.copy()
        for shown, at in by_width.items():
            text[at] = zero_filled(text[at].tolist(), shown)
    return text, typed


def _render_floats(values: np.ndarray) -> np.ndarray:
    """Many floats at once, each as ``render_float`` shows it, with one Python call per cell
    only for the rare number of more than 15 digits."""
    floats = values.astype(np.float64)
    out = np.empty(len(floats), dtype=object)
    integral = (floats == np.trunc(floats)) & (np.abs(floats) < 1e16)
    out[integral] = list(map(str, floats[integral].astype(np.int64).tolist()))
    # repr is the shortest text that reads back as the same number: with at most 15 digits it is
    # what Excel shows, and only longer ones need rounding.
    rest = floats[~integral].tolist()
    shown = map(repr, rest)
    out[~integral] = [
        t if len(t) < 16 else render_float(v) for t, v in zip(shown, rest, strict=True)
    ]
    return out


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
            out[where] = list(map(RENDERERS.get(kind, str), col[where]))
    return out
