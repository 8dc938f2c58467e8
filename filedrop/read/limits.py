"""How big a file may be before it is read, and the cheap look at a workbook that decides it.

calamine allocates a sheet's whole used range at once and runs in this process: a 5 KB workbook
with one cell at XFD1048576 asks for 512 GiB and aborts the interpreter, and a zip bomb inflates to
gigabytes. So a workbook is inspected without parsing it: the file's size, each zip entry's
real inflated size (inflated here in chunks, never trusting the header), the chosen sheet's used
range and how many of its rows hold cells. Beyond a limit, a ``ReadError`` says which one. The
inspection runs before calamine does in this process, or while the reader's memory-capped child
parses (``isolated``), which it stops when it refuses the file.
"""

from __future__ import annotations

import html
import io
import re
import struct
import zipfile
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from filedrop.errors import ReadError
from filedrop.read.table import open_input

__all__ = ["ReadLimits", "SheetMarks", "check_file_size", "inspect_workbook"]


@dataclass(frozen=True, kw_only=True)
class ReadLimits:
    """Limits on what is read; the defaults take a 1,000,000-row by 50-column export.

    These defaults are the settings' defaults (``Settings`` takes them from here).
    """

    max_file_bytes: int = 1_000_000_000
    """A larger file is not read at all."""
    max_inflated_bytes: int = 4_000_000_000
    """All the parts of a workbook together, once inflated."""
    max_inflation_ratio: int = 100
    """A part may inflate to at most this many times its compressed size (real exports: ~10)."""
    max_rows: int = 1_048_576
    """Last row of the sheet's used range (Excel's own maximum by default)."""
    max_columns: int = 1_000
    """Last column of the sheet's used range (Excel's maximum is 16,384, column XFD)."""
    max_read_memory_bytes: int = 16_000_000_000
    """Address space of the child process that parses a workbook."""
    max_read_s: float = 600.0
    """How long that child may run, from its start (50,000 rows take about a second here, so
    1,000,000 some 20 s): one still running then, stuck in native code, say, is stopped, not
    waited for; an answer it already gave is taken."""
    read_in_subprocess: bool = True
    """Parse workbooks in a child process, so a crash or runaway allocation there is one file's
    error instead of the end of the run."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Where each limit was set (``--max-rows``, a variable, a config key), for messages."""

    def where(self, name: str) -> str:
        """How a message names the limit ``name``: where it was set, else its variable."""
        return self.sources.get(name) or f"FILEDROP_{name.upper()}"


# A sheet whose used range spans this many rows, less than 1 in SPARSE_RATIO of them holding any
# cell, is refused: the reader would spend memory on every empty row (a stray cell at A1048576
# costs 800 MB), and such a range is a stray cell far below the data, not an export.
SPARSE_MIN_ROWS = 100_000
SPARSE_RATIO = 100

_CHUNK = 1 << 20
_HEAD_BYTES = 64 * 1024
_TAIL_BYTES = 4096
_LOCAL_HEADER = struct.Struct("<4s22xHH")
_DIMENSION = re.compile(
    rb"<(?:\w+:)?dimension\s+ref=\"([A-Za-z$]*)(\d*)(?::\$?([A-Za-z]+)\$?(\d+))?\""
)
_ROW_NUMBER = re.compile(rb"<(?:\w+:)?row\b[^>]*?\sr=\"(\d+)\"")
# A cell of type "e" (an error), its formula if any, and the error as Excel shows it. A tag's
# attributes are read as "no < or >, at most _TAG bytes" (real ones take a few dozen): every try
# then ends at the next "<", so the search is linear however the bytes are crafted. With "[^>]*",
# a sheet of "<c " and no ">" took each "<c" to the chunk's end: 120 KB of them took 17 s. A
# formula (at most 8,192 characters, 6 bytes each escaped) fits in the carry between chunks.
_TAG = rb"[^<>]{0,1024}"
_ERROR_CELL = re.compile(
    rb"<(?:\w+:)?c\b(" + _TAG + rb"?\bt=\"e\"" + _TAG + rb")>\s{0,64}"
    rb"(?:<(?:\w+:)?f\b" + _TAG + rb"?(?:/>|>[^<]{0,49152}</(?:\w+:)?f>)\s{0,64})?"
    rb"<(?:\w+:)?v>([^<]{1,64})</(?:\w+:)?v>"
)
# A formula with no saved result: after it, no <v>, or an empty one. Excel and LibreOffice save
# every result; programs that write formulas (openpyxl, many scripts) save none, and calamine
# reads such a cell as empty. An empty <v> after a text formula (t="str") is a result, the empty
# text, as Excel writes it. Searched from what ends a formula: a formula's text ends "f>" (</f>,
# </x:f>), and one sharing an earlier cell's text is <f t="shared" si="0"/>. Starting with text
# that only a formula has lets a sheet of formulas with their results be searched at the speed
# of a substring search; "<c" first took 0.6 s for 44 MB. Group 1 is set where the cell ends with
# no <v> at all.
_NO_RESULT_AFTER = (
    rb"\s{0,64}(?:<(?:\w+:)?v\b[^<>]{0,256}/>|<(?:\w+:)?v\b[^<>]{0,256}>\s{0,64}</(?:\w+:)?v>"
    rb"|(</(?:\w+:)?c>))"
)
# Its last attribute, whichever of the two it is, just before "/>": a run of attributes allowed
# there made a crafted sheet of si="1" cost 3 s a megabyte.
_SHARED_ENDS = (rb"si=\"\d{1,7}\"\s{0,8}/>", rb"t=\"shared\"\s{0,8}/>")
_UNSAVED_FORMULAS = tuple(re.compile(end + _NO_RESULT_AFTER) for end in (rb"f>", *_SHARED_ENDS))
# Every formula, saved result or not: for a workbook that asks to be calculated again when opened
# (xlsxwriter, which pandas writes with, saves 0 for each formula and says so in workbook.xml).
_EVERY_FORMULA = tuple(re.compile(end) for end in (rb"f>", *_SHARED_ENDS))
_CALCULATE_ON_OPEN = re.compile(rb"<(?:\w+:)?calcPr\b[^<>]{0,1024}?\bfullCalcOnLoad=\"(?:1|true)\"")
# An old Mac workbook counts its days from 1904: its serial numbers are four years and a day off
# those of every other workbook.
_DATE_1904 = re.compile(
    rb"<(?:\w+:)?workbookPr\b[^<>]{0,2048}?\bdate1904\s*=\s*(?:\"(?:1|true)\"|'(?:1|true)')"
)
_CELL_TAG = re.compile(rb"<(?:\w+:)?c\b(" + _TAG + rb")>\s{0,64}")
#: The farthest a cell's tag can start before the end of its formula: the tag, and a formula of
#: Excel's 8,192 characters at 6 bytes each when escaped.
_FORMULA_REACH = 2 * 1024 + 49_152 + 128
_TEXT_RESULT = re.compile(rb"\bt=\"str\"")
#: Formulas kept to show, at most, and the bytes of their text: every cell's place is kept (8
#: bytes each), its formula whole (messages cut it as they cut any value) only for the first
#: ones; the rest are shown as "=…".
_FORMULAS_KEPT = 10_000
_FORMULA_BYTES_KEPT = 4 * 1024 * 1024
_CELL_REF = re.compile(rb"\br=\"\$?([A-Z]{1,3})\$?(\d{1,7})\"")
_HIDDEN_ROW = re.compile(
    rb"<(?:\w+:)?row\b(?=" + _TAG + rb"?\bhidden=\"(?:1|true)\")" + _TAG + rb"?\sr=\"(\d{1,7})\""
)
_CARRY_BYTES = 64 * 1024
# A merged range, as a sheet lists them after its cells: <mergeCell ref="A5:A7"/>.
_MERGE_CELL = re.compile(
    rb"<(?:\w+:)?mergeCell\b" + _TAG + rb"?\bref=\""
    rb"\$?([A-Z]{1,3})\$?(\d{1,7}):\$?([A-Z]{1,3})\$?(\d{1,7})\""
)
#: Merged ranges kept of a sheet, at most: a report merges a few; a crafted sheet of millions
#: would cost memory for nothing. Those past this many are not filled in: their cells stay empty,
#: as calamine reads them, and a row missing a value there says so.
MERGED_KEPT = 100_000
_SHEET = re.compile(rb"<(?:\w+:)?sheet\b[^>]*>")
_ATTRIBUTE = re.compile(rb"([\w:]+)=\"([^\"]*)\"")
_RELATIONSHIP = re.compile(rb"<(?:\w+:)?Relationship\b[^>]*>")


def check_file_size(path: Path, limits: ReadLimits) -> None:
    """Refuse a file larger than ``max_file_bytes`` before a byte of it is read."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # the reader says why it cannot be read
    if size > limits.max_file_bytes:
        raise ReadError(
            str(path),
            f"the file is {size:,} bytes, more than {limits.max_file_bytes:,} "
            f"({limits.where('max_file_bytes')}); it is not read",
        )


def inspect_workbook(
    path: Path, sheet: str | int, limits: ReadLimits, data: bytes | None = None
) -> SheetMarks | None:
    """Refuse a workbook beyond ``limits`` without parsing it; xls and damaged files pass.

    Every zip entry is inflated in chunks up to what its header declares and the limits allow,
    so a lying header is caught as early as a bomb. ``sheet`` is the sheet that will be read;
    what its XML says that its values do not is returned (None for xls, or when not found).
    ``data``: the workbook's bytes as the reader has them (default: read ``path``), so that the
    marks belong to the very rows parsed.
    """
    where = str(path)
    marks: SheetMarks | None = None
    try:
        # A pipe or a device is refused, not waited for.
        handle: BinaryIO = open_input(path) if data is None else io.BytesIO(data)
    except OSError:
        return None
    with handle:
        if handle.read(4) != b"PK\x03\x04":
            return None  # xls (or not a workbook): the reader decides
        try:
            entries = zipfile.ZipFile(handle).infolist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None  # damaged: the reader says so
        workbook = _small_part(handle, {e.filename: e for e in entries}.get("xl/workbook.xml"))
        parts = _sheet_parts(handle, entries, workbook=workbook)
        chosen = _chosen_part(parts, sheet)
        calculate_on_open = _CALCULATE_ON_OPEN.search(workbook) is not None
        budget = limits.max_inflated_bytes
        for entry in entries:
            label = _label(entry.filename, parts)
            _check_declared(where, entry, label, budget, limits)
            scan = _SheetScan(every_formula=calculate_on_open) if entry.filename == chosen else None
            inflated = _inflate(handle, entry, cap=entry.file_size, scan=scan)
            if inflated is None:
                return None  # not inflatable here: the reader says it is damaged
            if inflated > entry.file_size:
                raise ReadError(
                    where,
                    f"{label} holds more than the {entry.file_size:,} bytes its zip header "
                    "declares; the file is damaged or crafted, so it is not read",
                )
            budget -= inflated
            if scan is not None:
                _check_range(where, parts[chosen], scan, limits)
                marks = SheetMarks(
                    scan.errors,
                    frozenset(scan.hidden_rows),
                    scan.unsaved_rows,
                    scan.unsaved_columns,
                    scan.formulas,
                    frozenset(scan.merged),
                    date1904=_DATE_1904.search(workbook) is not None,
                )
    return marks


def _check_declared(
    where: str, entry: zipfile.ZipInfo, label: str, budget: int, limits: ReadLimits
) -> None:
    if entry.file_size > budget:
        raise ReadError(
            where,
            f"{label} inflates to more than {limits.max_inflated_bytes:,} bytes "
            f"({limits.where('max_inflated_bytes')}); it is not read",
        )
    ratio = entry.file_size / max(entry.compress_size, 1)
    if entry.file_size > _CHUNK and ratio > limits.max_inflation_ratio:
        raise ReadError(
            where,
            f"{label} inflates {ratio:,.0f} times ({entry.compress_size:,} bytes to "
            f"{entry.file_size:,}), more than {limits.max_inflation_ratio} "
            f"({limits.where('max_inflation_ratio')}); it is not read",
        )


@dataclass(frozen=True)
class SheetMarks:
    """What a sheet's XML says that calamine's values do not: cells holding an Excel error
    (which calamine reads as empty), cells whose formula has no saved result (read as empty
    too, or as the 0 a writer put there) and hidden rows, all by their Excel row number."""

    errors: dict[tuple[int, int], str]  # (row, 0-based column) -> the error as Excel shows it
    hidden_rows: frozenset[int]
    # Cells whose formula has no saved result, each once: their rows and 0-based columns, side by
    # side; the formula as Excel shows it for the first `_FORMULAS_KEPT` of them.
    unsaved_rows: Sequence[int] = ()
    unsaved_columns: Sequence[int] = ()
    formulas: Mapping[tuple[int, int], str] = field(default_factory=dict)
    # Merged ranges, each (first row, first 0-based column, last row, last column); at most
    # ``MERGED_KEPT``.
    merged: frozenset[tuple[int, int, int, int]] = frozenset()
    # The workbook counts its serial days from 1904 (``workbookPr date1904``), not 1900.
    date1904: bool = False


@dataclass
class _SheetScan:
    """What the inflated sheet XML tells cheaply: its start, its end, rows holding cells, and
    the marks (`SheetMarks`) found on the way."""

    head: bytearray = field(default_factory=bytearray)
    tail: bytes = b""
    rows_with_cells: int = 0  # closing row tags: an empty row is written <row r="5"/>
    carry: bytes = b""  # the end of the last chunk, where a cell cut in two began
    errors: dict[tuple[int, int], str] = field(default_factory=dict)
    hidden_rows: set[int] = field(default_factory=set)
    every_formula: bool = False  # the workbook's results are to be calculated when opened
    unsaved_rows: array = field(default_factory=lambda: array("I"))
    unsaved_columns: array = field(default_factory=lambda: array("H"))
    formulas: dict[tuple[int, int], str] = field(default_factory=dict)
    formula_bytes: int = field(default=0, init=False)  # of the formulas kept
    merged: set[tuple[int, int, int, int]] = field(default_factory=set)

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < _HEAD_BYTES:
            self.head += chunk[: _HEAD_BYTES - len(self.head)]
        self._mark(self.carry + chunk)
        # Counted in the chunk as it is, plus one cut between two chunks: the 4 bytes either side
        # of the cut hold no whole "/row>" of their own, so nothing counts twice.
        self.rows_with_cells += chunk.count(b"/row>") + (self.tail[-4:] + chunk[:4]).count(b"/row>")
        if len(chunk) >= _TAIL_BYTES:
            self.tail = chunk[-_TAIL_BYTES:]
        else:
            self.tail = (self.tail + chunk)[-_TAIL_BYTES:]

    def _mark(self, window: bytes) -> None:
        """Error cells, unsaved formulas and hidden rows in ``window``; a sheet without any
        (nearly all) costs two substring searches a chunk, and the `_UNSAVED_FORMULAS` searches,
        as fast. A cell cut between two chunks is found whole in the next window, which starts
        with the last ``_CARRY_BYTES`` of this one."""
        if b't="e"' in window:
            for found in _ERROR_CELL.finditer(window):
                ref = _CELL_REF.search(found.group(1))
                if ref is not None:
                    column = _column_number(ref.group(1).decode("ascii")) - 1
                    code = found.group(2).decode("utf-8", "replace")
                    self.errors[int(ref.group(2)), column] = code
        if b'hidden="' in window:
            for found in _HIDDEN_ROW.finditer(window):
                self.hidden_rows.add(int(found.group(1)))
        if b"mergeCell " in window:  # a range found again in the carry is the same range
            for found in _MERGE_CELL.finditer(window):
                if len(self.merged) >= MERGED_KEPT:
                    break
                first_col, first_row, last_col, last_row = (g.decode() for g in found.groups())
                self.merged.add(
                    (
                        int(first_row),
                        _column_number(first_col) - 1,
                        int(last_row),
                        _column_number(last_col) - 1,
                    )
                )
        self._mark_unsaved(window)
        self.carry = window[-_CARRY_BYTES:]

    def _mark_unsaved(self, window: bytes) -> None:
        """Unsaved formulas in ``window``; one that ends in the carry was found in the window
        before, which held it whole."""
        seen = len(self.carry)
        for pattern in _EVERY_FORMULA if self.every_formula else _UNSAVED_FORMULAS:
            for found in pattern.finditer(window):
                if found.end() <= seen:
                    continue
                if pattern is _EVERY_FORMULA[0]:
                    tag = window.rfind(b"<", max(0, found.start() - 40), found.start())
                    if tag < 0 or window[tag + 1] != ord("/"):
                        continue  # a formula's start, <f>: its end is the one to find
                located = _formula_cell(window, found.start())
                if located is None:
                    continue  # not a cell's formula after all
                attributes, text = located
                if (
                    not self.every_formula
                    and found.group(1) is None
                    and _TEXT_RESULT.search(attributes)
                ):
                    continue  # an empty <v> after a text formula: its result is the empty text
                ref = _CELL_REF.search(attributes)
                if ref is None:
                    continue  # not to be placed; such writers give every cell its reference
                row, column = int(ref.group(2)), _column_number(ref.group(1).decode("ascii")) - 1
                self.unsaved_rows.append(row)
                self.unsaved_columns.append(min(column, 0xFFFF))
                size = text.stop - text.start
                if len(self.formulas) < _FORMULAS_KEPT and self.formula_bytes + size <= (
                    _FORMULA_BYTES_KEPT
                ):
                    self.formula_bytes += size
                    raw = html.unescape(window[text].decode("utf-8", "replace"))
                    self.formulas[row, column] = "=" + (raw or "…")


def _formula_cell(window: bytes, at: int) -> tuple[bytes, slice] | None:
    """The attributes of the cell whose formula ends at ``at`` and where in ``window`` its text
    is (empty when it shares another cell's), or None if no cell's formula ends there.

    A formula's text holds no "<" (XML writes it &lt;), so the formula's tag is the last "<"
    before its end (its closing tag's, then the one before); the cell's tag, the one before."""
    low = max(0, at - _FORMULA_REACH)
    tag = window.rfind(b"<", low, at)
    closing = tag if tag >= 0 and window[tag + 1 : tag + 2] == b"/" else -1
    if closing >= 0:
        tag = window.rfind(b"<", low, closing)  # from </f> back to <f>
    cell = window.rfind(b"<", low, tag) if tag > 0 else -1
    if cell < 0:
        return None
    found = _CELL_TAG.fullmatch(window, cell, tag)
    if found is None:
        return None
    start = window.find(b">", tag) + 1
    return found.group(1), slice(start, closing) if closing >= 0 else slice(start, start)


def _inflate(
    handle: BinaryIO, entry: zipfile.ZipInfo, *, cap: int, scan: _SheetScan | None
) -> int | None:
    """Bytes the entry really inflates to, counted up to ``cap`` + 1; None if it cannot be."""
    handle.seek(entry.header_offset)
    signature, name_len, extra_len = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        return None
    handle.seek(entry.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    if entry.compress_type == zipfile.ZIP_STORED:
        inflater = None
    elif entry.compress_type == zipfile.ZIP_DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    else:
        return None
    total = 0
    left = entry.compress_size
    pending = b""
    while total <= cap:
        if inflater is not None and inflater.eof:
            break
        if not pending:
            pending = handle.read(min(_CHUNK, left)) if left > 0 else b""
            left -= len(pending)
            if not pending:
                break
        if inflater is None:
            chunk, pending = pending, b""
        else:
            try:
                chunk = inflater.decompress(pending, min(_CHUNK, cap + 1 - total))
            except zlib.error:
                return None
            pending = inflater.unconsumed_tail
        total += len(chunk)
        if scan is not None:
            scan.feed(chunk)
    return total


def _check_range(where: str, sheet: str, scan: _SheetScan, limits: ReadLimits) -> None:
    """Refuse a used range beyond ``max_rows``/``max_columns``, or nearly all empty rows."""
    last_column, last_row, ref = 1, 1, ""
    found = _DIMENSION.search(bytes(scan.head))
    if found:
        ref = found.group(0).split(b'"')[1].decode("ascii", "replace")
        letters, digits = (found.group(3), found.group(4)) if found.group(3) else found.group(1, 2)
        last_column = _column_number(letters.decode("ascii").replace("$", ""))
        last_row = int(digits or 1)
    # The sheet's last rows are at its end, so the last row found there is its real last one.
    found_last = max((int(n) for n in _ROW_NUMBER.findall(scan.tail)), default=0)
    refused = _range_refused(last_row, scan, limits)
    if found_last and refused and not _range_refused(found_last, scan, limits):
        # Only the range the writing program recorded is too big: no cell is out there, so
        # there is nothing to delete, and any spreadsheet program writes the range anew.
        raise ReadError(
            where,
            f'the sheet "{sheet}" records its used range as {ref}, as far as row {last_row:,}, '
            f"but its last row is {found_last:,}; open it in Excel or LibreOffice and save it "
            "again, which records the range anew; it is not read",
        )
    last_row = max(last_row, found_last)  # the dimension may be missing or understate the rows
    ranged = f" (its used range is {ref})" if ref else ""
    if last_row > limits.max_rows:
        raise ReadError(
            where,
            f'the sheet "{sheet}" reaches row {last_row:,}{ranged}, more than '
            f"{limits.max_rows:,} ({limits.where('max_rows')}); it is not read",
        )
    if last_column > limits.max_columns:
        raise ReadError(
            where,
            f'the sheet "{sheet}" reaches column {_column_letters(last_column)} (column '
            f"{last_column:,}){ranged}, more than {limits.max_columns:,} "
            f"({limits.where('max_columns')}); delete the far cells (Ctrl+End in Excel shows "
            "the last one) and save it again; it is not read",
        )
    if _range_refused(last_row, scan, limits):  # for its empty rows: the max is checked above
        raise ReadError(
            where,
            f'the sheet "{sheet}" reaches row {last_row:,}{ranged} but only '
            f"{scan.rows_with_cells:,} of its rows hold cells; delete the far cells (Ctrl+End "
            "in Excel shows the last one) and save it again; it is not read",
        )


def _range_refused(last_row: int, scan: _SheetScan, limits: ReadLimits) -> bool:
    """Whether a sheet reaching ``last_row`` is refused for its rows: past ``max_rows``, or
    nearly all of them empty."""
    return last_row > limits.max_rows or (
        last_row >= SPARSE_MIN_ROWS and scan.rows_with_cells * SPARSE_RATIO < last_row
    )


def _sheet_parts(
    handle: BinaryIO, entries: list[zipfile.ZipInfo], *, workbook: bytes | None = None
) -> dict[str, str]:
    """Zip entry name -> sheet name, from the workbook (read here unless given) and its
    relationships (small parts)."""
    by_name = {e.filename: e for e in entries}
    if workbook is None:
        workbook = _small_part(handle, by_name.get("xl/workbook.xml"))
    rels = _small_part(handle, by_name.get("xl/_rels/workbook.xml.rels"))
    targets: dict[bytes, str] = {}
    for tag in _RELATIONSHIP.findall(rels):
        attrs = dict(_ATTRIBUTE.findall(tag))
        target = attrs.get(b"Target", b"").decode("utf-8", "replace")
        targets[attrs.get(b"Id", b"")] = (
            target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        )
    parts: dict[str, str] = {}
    for tag in _SHEET.findall(workbook):
        attrs = {key.split(b":")[-1]: value for key, value in _ATTRIBUTE.findall(tag)}
        part = targets.get(attrs.get(b"id", b""))
        if part:
            parts[part] = _unescape(attrs.get(b"name", b"").decode("utf-8", "replace"))
    return parts


def _small_part(handle: BinaryIO, entry: zipfile.ZipInfo | None) -> bytes:
    """A part that is small in any real workbook, read up to 1 MB (the rest is not needed)."""
    if entry is None:
        return b""
    try:
        with zipfile.ZipFile(handle).open(entry) as part:
            return part.read(_CHUNK)
    except (zipfile.BadZipFile, OSError, ValueError, zlib.error, NotImplementedError):
        return b""


def _chosen_part(parts: dict[str, str], sheet: str | int) -> str | None:
    """The zip entry of the sheet that will be read, found as the reader finds it."""
    names = list(parts.values())
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        chosen = names[sheet] if 0 <= sheet < len(names) else None
    elif sheet in names:
        chosen = sheet
    else:
        folded = [n for n in names if n.casefold() == str(sheet).casefold()]
        chosen = folded[0] if len(folded) == 1 else None
    return next((part for part, name in parts.items() if name == chosen), None)


def _label(entry: str, parts: dict[str, str]) -> str:
    return f'the sheet "{parts[entry]}"' if entry in parts else f'the part "{entry}"'


def _unescape(text: str) -> str:
    for escaped, plain in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'")):
        text = text.replace(escaped, plain)
    return text.replace("&amp;", "&")


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return max(number, 1)


def _column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
