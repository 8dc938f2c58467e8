"""The outcome file: the user's own rows and columns, then one status per row, written atomically.

Excel input gets ``<stem>.outcome.xlsx``, made for people: coloured statuses, frozen header,
filter, a ``Summary`` sheet. CSV input gets ``<stem>.outcome.csv`` in the input's delimiter and
encoding, so whatever imported the original can import the outcome.

Formula injection (text that would start with ``=``, ``+``, ``-``, ``@`` shows as text):

- xlsx: every text cell is written as a string cell (``filedrop.sheetxml`` writes the data rows,
  xlsxwriter the rest, never guessing types from strings), so text is always text and nothing
  needs changing.
- CSV has no types; Excel decides when it opens the file. The outcome columns (API text, file
  names) get a leading ``'`` whenever they start with ``=``, ``+``, ``-``, ``@``, tab or CR. The
  original columns are the user's data and stay as they were, except cells Excel would run as a
  formula: those starting with ``=`` or ``@``, or with ``+``/``-`` followed by something that is
  not a number (``-100,50`` and ``+4722334455`` stay; ``-x`` and ``+47 22 33 44 55`` do not),
  also after leading tabs/CRs. A lone ``+`` or ``-`` stays. These get the same ``'`` prefix.

Atomic: the file is written under a hidden ``.<name>.<18 hex>.tmp`` in the same folder (the inbox
scanner ignores hidden and ``*.tmp`` names), fsynced, then renamed over the final name, so a
reader sees the old outcome or the new one, never half of one. A process killed mid-write leaves
its temporary file behind; ``remove_stray_temps`` clears those at the next start.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import errno
import io
import math
import os
import re
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import xlsxwriter
from xlsxwriter.exceptions import InvalidWorksheetName

from filedrop import sheetxml
from filedrop.files import temp_path, write_atomically
from filedrop.inbox import archive_folder, open_regular, outcome_path, stamped_names
from filedrop.mapping.convert import amounts_as_read
from filedrop.read import Table
from filedrop.read.table import Layout, NumberFormat
from filedrop.sheetxml import (
    ColumnStyles,
    Segment,
    ZipTooLargeError,
    chunk_numbers,
    chunk_rows,
    deflated_behind,
    in_chunk,
    sheet_rows,
    write_package,
    write_segmented_package,
)
from filedrop.states import RowStatus

OUTCOME_COLUMNS = (
    "outcome_status",
    "outcome_message",
    "outcome_invoice_id",
    "outcome_case_id",
    "outcome_case_number",
    "outcome_batch_id",
    "outcome_invoice_number",  # as sent: what 'filedrop journal rebuild' reads back
)

_SUMMARY_SHEET, _DEFAULT_SHEET = "Summary", "Outcome"
_SANDBOX_BANNER = "SANDBOX — nothing was sent to Amili"
# A sandbox outcome has one more column, after the outcome columns, saying so on every row: it
# shows in both formats wherever the eye lands, survives copying rows elsewhere, and unlike a
# first line it leaves CSV importable and every row on its own line number.
SANDBOX_COLUMN = "outcome_sandbox"
_SANDBOX_CELL = "SANDBOX: not sent"  # short: the column must not push the ids off the page
_SANDBOX_RED = "#C00000"
_XLSX_MAX_ROWS, _XLSX_MAX_COLS = 1_048_576, 16_384
# What write_atomically names its temporary files: "." + outcome name + "." + 18 hex + ".tmp"
# (8 hex before 2026-12: those a killed writer left are still its own).
_OWN_TEMP = re.compile(
    r"^\..+\.outcome\.(xlsx|csv)\.[0-9a-f]{8}(?:[0-9a-f]{10})?\.tmp$", re.IGNORECASE
)
_MIN_WIDTH, _MAX_WIDTH = 8, 60
# Longer messages run on over the empty id cells of their row (a row with a message seldom has
# ids), rather than push the ids off the printed page.
_MESSAGE_WIDTH = 50
# Built-in Excel number formats as codes, to estimate how wide their numbers show.
_BUILTIN_CODES: dict[int, str] = {
    1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%", 11: "0.00E+00",
    14: "dd.mm.yyyy", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "dd.mm.yyyy hh:mm",
}  # fmt: skip

# Fill and font per status, close to Excel's own Good/Bad/Neutral cell styles.
_STATUS_COLOURS: dict[RowStatus, tuple[str, str]] = {
    RowStatus.SUCCEEDED: ("#C6EFCE", "#006100"),
    RowStatus.FAILED: ("#FFC7CE", "#9C0006"),
    RowStatus.INVALID: ("#FFD8A8", "#8A4500"),
    RowStatus.DUPLICATE: ("#E7E6E6", "#3F3F3F"),
    RowStatus.PENDING: ("#FFEB9C", "#7F6000"),
    RowStatus.NOT_SENT: ("#DDEBF7", "#1F4E78"),  # blue: nothing wrong with the row, just not sent
    RowStatus.UNKNOWN: ("#FFD8A8", "#8A4500"),
    RowStatus.ERROR: ("#FFC7CE", "#9C0006"),
    RowStatus.SKIPPED: ("#F2F2F2", "#7F7F7F"),  # grey: not an invoice, nothing to do
}

# "+" or "-" then a plain number: digits, or groups of three after a separator (space, no-break
# space, point, comma), a decimal part, an exponent, a percent sign. "+47 22 33 44 55" is not one.
_SIGNED_NUMBER = re.compile(
    r"[+-](?:\d{1,3}(?:[ \u00a0.,]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?|[.,]\d+)(?:[eE][+-]?\d+)?%?"
)


@dataclass(frozen=True, kw_only=True)
class BatchLine:
    """One batch as the Summary sheet lists it."""

    batch_id: str | None
    invoices: int
    status: str
    submitted_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True, kw_only=True)
class OutcomeSummary:
    """What the Summary sheet says besides the counts, which come from the rows themselves."""

    source: Path
    environment: str
    mapping: str | None
    started_at: dt.datetime
    finished_at: dt.datetime
    batches: tuple[BatchLine, ...] = ()
    notes: tuple[str, ...] = ()
    amount_column: int | None = None
    """Position of the input column holding each row's amount (the one the mapping's invoice or
    claim amount reads): the Summary sums it per status, to check against the export's totals."""
    amount_notation: tuple[str, str] | None = None
    """(decimal, thousands) the mapping reads that column's text with, so amounts typed as text
    (``'1 625,50``) are summed too; None: only the cells that are numbers are."""

    @property
    def sandbox(self) -> bool:
        """Whether nothing was really sent: every outcome then says so."""
        return is_sandbox(self.environment)


def is_sandbox(environment: str) -> bool:
    """Whether the environment (``FILEDROP_ENV``) is the sandbox, where nothing is really sent."""
    return environment.strip().casefold() == "sandbox"


def outcome_paths(inputs: Iterable[Path]) -> dict[Path, Path | None]:
    """Each input's outcome path, distinct from every other's; None where none can be had.

    Names are compared without case, as SMB shares, macOS and Windows do: of ``Report.XLSX`` and
    ``report.xlsx`` side by side, the lower-case suffix keeps ``report.outcome.xlsx`` and the
    other gets its whole name in front (``Report.XLSX.outcome.xlsx``). An input whose outcome
    name is still shared after that gets None: it would overwrite another's.
    """
    inputs = list(dict.fromkeys(inputs))
    rivals: defaultdict[str, list[Path]] = defaultdict(list)
    for source in inputs:
        rivals[outcome_path(source).name.casefold()].append(source)
    chosen: dict[Path, Path] = {}
    for group in rivals.values():
        first = min(group, key=_claim_order)
        for source in group:
            plain = outcome_path(source)
            chosen[source] = (
                plain
                if source == first or plain.name.startswith(source.name)
                else plain.with_name(f"{source.name}{plain.name[len(source.stem) :]}")
            )
    holders = Counter(dest.name.casefold() for dest in chosen.values())
    return {
        source: dest if holders[dest.name.casefold()] == 1 else None
        for source, dest in chosen.items()
    }


def _claim_order(source: Path) -> tuple[bool, str]:
    """The usual lower-case suffix first, then the name: which of several keeps the plain name."""
    return (source.suffix not in (".xlsx", ".csv"), source.name)


def xlsx_fit_problem(table: Table) -> str | None:
    """Why ``table``'s rows and columns cannot fit an xlsx outcome, or None when they do.

    The outcome adds its columns to the sheet's own; Excel stops at 16,384 columns and
    1,048,576 rows. Asked before anything is sent, so such a file is refused whole.
    """
    if outcome_path(table.path).suffix != ".xlsx":
        return None
    columns = len(table.headers) + len(OUTCOME_COLUMNS)
    if columns > _XLSX_MAX_COLS:
        return (
            f"{len(table.headers)} columns leave no room for the {len(OUTCOME_COLUMNS)} outcome "
            f"columns in an xlsx outcome (at most {_XLSX_MAX_COLS:,}); remove the empty or "
            "unused columns, or save the sheet as CSV, and drop it again"
        )
    if len(table) >= _XLSX_MAX_ROWS:
        return (
            f"{len(table):,} rows and a header do not fit an xlsx outcome (at most "
            f"{_XLSX_MAX_ROWS:,} rows); split it into smaller files and drop them again"
        )
    return None


def written_stamp(path: Path) -> str | None:
    """What tells the outcome file now at ``path`` from any other there before or after: its
    device, inode, size and time. Each outcome is written under a new name and renamed into
    place, so each write is a new file. None when there is none."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def keep_aside(outcome: Path) -> Path:
    """Move ``outcome`` out of a new one's way, under a stamped name; returns where it went.

    To ``archive/`` beside it; where that cannot be a folder (a link, which is never followed,
    or a file), beside it in the inbox, where no scan takes it for an input either and
    'journal rebuild' reads it as the outcome of the name without the stamp. ``OSError`` when
    it cannot move: the caller sends nothing then.
    """
    folder = archive_folder(outcome.parent) or outcome.parent
    (kept,) = stamped_names(folder, outcome.name)
    outcome.replace(kept)
    return kept


def check_outcome_name(dest: Path) -> None:
    """Create and remove the temporary file an outcome is written under; ``OSError`` if it fails.

    Asked before anything is sent: a name too long for the folder (``ENAMETOOLONG``: the
    temporary name is 24 characters longer than the outcome's, more than a stamp in
    ``archive/`` adds) or a folder that refuses new
    files shows now, not after the invoices went out; so does a folder in the outcome's place.
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(dest.lstat().st_mode):  # a link is replaced by the outcome, as ever
            raise IsADirectoryError(errno.EISDIR, "a folder has the outcome's name", str(dest))
    tmp = temp_path(dest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    os.close(fd)
    tmp.unlink()


def is_own_temp(name: str) -> bool:
    """Whether ``name`` is one of the outcome writer's temporary files."""
    return _OWN_TEMP.match(name) is not None


def remove_stray_temps(folder: Path, *, older_than_s: float, now: float) -> list[str]:
    """Remove outcome temporary files left in ``folder`` by a process killed mid-write.

    Only this writer's own name pattern, only regular files directly in ``folder`` (a link is
    never followed, nor removed), and only those unchanged for ``older_than_s`` seconds before
    ``now`` (wall time): another process may be writing one right now. Returns the names removed;
    one that cannot be removed is left for the next start.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # an inbox that cannot be listed is reported by whoever scans it
    for entry in entries:
        if not is_own_temp(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < older_than_s:
                continue
            Path(entry.path).unlink()
        except OSError:
            continue
        removed.append(entry.name)
    return sorted(removed)


def own_columns_from(headers: Sequence[str]) -> int:
    """Where an earlier outcome's columns that end ``headers`` start (their length when there
    are none): an outcome corrected and dropped in again carries the last run's, which its new
    outcome replaces. They count only as filedrop writes them, in order from ``outcome_status``
    and ``outcome_message`` (an older version wrote fewer), with the sandbox's column last: an
    input's own column that merely shares a name is the input's, and kept."""
    names = [str(h).strip() for h in headers]
    end = len(names) - (1 if names[-1:] == [SANDBOX_COLUMN] else 0)
    for width in range(len(OUTCOME_COLUMNS), 1, -1):
        if end >= width and tuple(names[end - width : end]) == OUTCOME_COLUMNS[:width]:
            return end - width
    return len(names)


def earlier_outcome_problem(table: Table) -> str | None:
    """Why ``table`` cannot get an outcome of its own: an earlier outcome's columns
    (``outcome_status`` then ``outcome_message``) stand before columns of the input's, so its
    outcome would show two statuses on each row. None when they end the table, or are none."""
    names = [str(h).strip() for h in table.headers[: own_columns_from(table.headers)]]
    pair = list(OUTCOME_COLUMNS[:2])
    if not any(names[i : i + 2] == pair for i in range(len(names) - 1)):
        return None
    return (
        f"its columns {', '.join(pair)} came from an earlier outcome and stand before columns "
        "of its own; remove them (or move them to the end) and drop it again"
    )


def write_outcome(
    table: Table,
    outcomes: pd.DataFrame,
    summary: OutcomeSummary,
    *,
    dest: Path | None = None,
    ahead: RowsAhead | None = None,
) -> Path:
    """Write the outcome of ``table`` to ``dest`` (default: ``outcome_path``) and return its path.

    ``outcomes`` has one row per table row, in the same order, with the ``OUTCOME_COLUMNS`` as
    strings ('' where none). A length mismatch is a bug in the caller, so it raises ``ValueError``
    rather than writing an outcome that loses or invents rows. ``ahead``: an xlsx outcome's rows
    made before (``rows_ahead``); those whose outcome did not change since are taken as made.
    """
    name = table.path.name
    if len(outcomes) != len(table):
        raise ValueError(f"{name}: {len(outcomes)} outcome rows for {len(table)} data rows")
    missing = [column for column in OUTCOME_COLUMNS if column not in outcomes.columns]
    if missing:
        raise ValueError(f"{name}: outcomes lack the columns {', '.join(missing)}")
    results = [_as_texts(outcomes[column]) for column in OUTCOME_COLUMNS]
    dest = dest or outcome_path(table.path)
    if dest.suffix == ".xlsx":
        if problem := xlsx_fit_problem(table):
            # xlsxwriter would silently drop what does not fit: refuse rather than lose rows.
            # The pipeline asks first, so this is only a guard against a caller's slip.
            raise ValueError(f"{name}: {problem}")
        data = _XlsxData.of(table, results, sandbox=summary.sandbox)
        statuses = results[0]
        values = data.columns[: data.own_from]
        amount_at = summary.amount_column
        write = partial(
            _write_xlsx,
            data=data,
            layout=table.layout,
            summary=summary,
            amounts=None
            if amount_at is None or not 0 <= amount_at < data.own_from
            else _Amounts(
                label=table.headers[amount_at] or "Amount",
                number_format=_at(table.layout.number_formats, amount_at),
                sums=_sums_by_status(_row_amounts(table, amount_at, values, summary), statuses),
            ),
            batch_counts=_counts_by_batch(
                statuses, results[OUTCOME_COLUMNS.index("outcome_batch_id")]
            ),
            source=table,
            ahead=ahead,
        )
    else:
        # An earlier outcome dropped in again: its outcome columns give way to these.
        n_cols = own_columns_from(table.headers)
        headers = [*table.headers[:n_cols], *OUTCOME_COLUMNS]
        if summary.sandbox:
            headers.append(SANDBOX_COLUMN)
            results.append([_SANDBOX_CELL] * len(table))
        # The input's columns as they are (no copy): each is neutralised and quoted a chunk of
        # rows at a time as it is written.
        originals = [
            _CsvColumn(table.cells.iloc[:, i].to_numpy(), _neutral_original) for i in range(n_cols)
        ]
        write = partial(
            _write_csv,
            encoding=table.info.encoding or "utf-8",
            delimiter=table.info.delimiter or ",",
            headers=[*_neutralise_original(table.headers[:n_cols]), *headers[n_cols:]],
            columns=[*originals, *(_CsvColumn(column, _neutral_any) for column in results)],
            # Every input line keeps its number, so "row 11" in a message is line 11 here too.
            blank_before=_csv_blank_lines(table),
            titles=table.layout.titles,
        )
    write_atomically(dest, write)
    return dest


@dataclass(frozen=True)
class _XlsxData:
    """An xlsx outcome's data sheet as ``_write_xlsx`` takes it: the input's columns (values,
    and the text they show, for widths), then the outcome ones."""

    sheet_name: str
    headers: list[str]
    columns: list[list[Any]]
    texts: list[list[str]]
    own_from: int  # where the outcome columns begin
    header_at: int  # the header's 0-based sheet row
    rows_at: Sequence[int] | None  # each data row's 0-based sheet row (None: right below)
    first_col: int = 0  # the sheet column (0-based) of the first: the input's, where it began

    @classmethod
    def of(cls, table: Table, results: list[list[str]], *, sandbox: bool) -> _XlsxData:
        """``results``: the OUTCOME_COLUMNS' texts, a row each."""
        # An earlier outcome dropped in again: its outcome columns give way to these, never two.
        n_cols = own_columns_from(table.headers)
        headers = [*table.headers[:n_cols], *OUTCOME_COLUMNS]
        results = list(results)
        if sandbox:
            headers.append(SANDBOX_COLUMN)
            results.append([_SANDBOX_CELL] * len(table))
        excel = table.info.kind == "excel"
        values = [table.values.iloc[:, i].tolist() for i in range(n_cols)]
        shown = [table.cells.iloc[:, i].tolist() for i in range(n_cols)]
        _own_formats_as_shown(table, values, shown)
        # Each column on its own letter, as each row on its own number below: a sheet whose
        # data began in column C begins there here too, so a column a message names by its
        # letter is that column in the outcome (its leading empty columns are left empty).
        first_col = table.info.first_column if excel else 0
        if first_col + len(headers) > _XLSX_MAX_COLS:
            first_col = 0  # as far left as it fits (xlsx_fit_problem refuses what never does)
        return cls(
            sheet_name=table.info.sheet or _DEFAULT_SHEET,
            headers=headers[:_XLSX_MAX_COLS],
            columns=[*values, *results][:_XLSX_MAX_COLS],
            texts=[*shown, *results][:_XLSX_MAX_COLS],
            own_from=min(n_cols, _XLSX_MAX_COLS),
            # Each row on its own Excel row number (and the header on its own), so "row 11" in
            # a message is row 11 here too, title lines and dropped blank rows included.
            header_at=table.info.header_row - 1 if excel else 0,
            rows_at=[n - 1 for n in table.row_numbers.tolist()] if excel else None,
            first_col=first_col,
        )

    def sheet_rows_at(self) -> Sequence[int]:
        """Each data row's 0-based sheet row."""
        n_rows = len(self.columns[0])
        if self.rows_at is not None:
            return self.rows_at
        return range(self.header_at + 1, self.header_at + 1 + n_rows)


def _own_formats_as_shown(table: Table, values: list[list[Any]], shown: list[list[str]]) -> None:
    """The numbers their own cell's format showed otherwise than their column's, put in
    ``values`` as the text shown: every cell of the outcome takes its column's format, which
    would show a General 1212 among cells formatted 000000 as 001212, a number the user never
    saw and filedrop never sent."""
    for c, rows in table.own_format_rows.items():
        if c >= len(values):
            continue
        at = np.searchsorted(table.row_numbers, rows)
        ours = at < len(table.row_numbers)
        ours[ours] = table.row_numbers[at[ours]] == rows[ours]
        for k in at[ours].tolist():
            values[c][k] = shown[c][k]


def write_error_outcome(
    source: Path,
    message: str,
    summary: OutcomeSummary,
    *,
    dest: Path | None = None,
    delimiter: str | None = None,
) -> Path:
    """Write the outcome of a file that could not be read: one ``ERROR`` row saying why, to
    ``dest`` (default: ``outcome_path``).

    Columns are ``file`` then the ``OUTCOME_COLUMNS``. The CSV form is UTF-8 with a BOM, which
    Excel reads as such in any locale, delimited as the input is (``delimiter``, else as its
    first lines seem to be, else commas): Excel splits a CSV it opens at the locale's list
    separator, ``;`` in Norway, so a comma-separated outcome of a ``;`` export showed every
    cell in one.
    """
    dest = dest or outcome_path(source)
    headers = ["file", *OUTCOME_COLUMNS]
    blanks = [[""] for _ in OUTCOME_COLUMNS[2:]]
    columns = [[source.name], [RowStatus.ERROR.value], [message], *blanks]
    if summary.sandbox:
        headers.append(SANDBOX_COLUMN)
        columns.append([_SANDBOX_CELL])
    if dest.suffix == ".xlsx":
        data = _XlsxData(
            sheet_name=_DEFAULT_SHEET,
            headers=headers,
            columns=columns,
            texts=columns,
            own_from=1,
            header_at=0,
            rows_at=None,
        )
        write = partial(_write_xlsx, data=data, summary=summary)
    else:
        write = partial(
            _write_csv,
            encoding="utf-8-sig",
            delimiter=delimiter or _input_delimiter(source),
            headers=headers,
            columns=[_CsvColumn(column, _neutral_any) for column in columns],
        )
    write_atomically(dest, write)
    return dest


def _input_delimiter(source: Path) -> str:
    """The delimiter ``source``'s first lines use, read as the inbox reads (never through a
    link, never waiting on a pipe); a comma when it cannot be read."""
    from filedrop.read.delimited import SNIFF_BYTES, guess_delimiter

    try:
        with os.fdopen(open_regular(source), "rb") as file:
            head = file.read(SNIFF_BYTES)
    except OSError:
        return ","
    return guess_delimiter(head)


# --- CSV -------------------------------------------------------------------------------------


def _csv_blank_lines(table: Table) -> list[int]:
    """Per outcome line (the header, then each row), the empty lines to write before it: the
    input's title lines above the header and the blank lines the reader left out."""
    header = table.info.header_row
    starts = table.row_numbers.astype(np.int64)
    if not len(starts) or starts[-1] - header == len(starts):  # one line each, none between
        return [header - 1]
    spans = np.ones(len(table), dtype=np.int64)  # a quoted cell may hold line breaks
    for i in range(len(table.headers)):
        spans += table.cells[i].str.count("\n").to_numpy(dtype=np.int64)
    expected = np.concatenate(([header + 1], starts[:-1] + spans[:-1]))
    return [header - 1, *np.maximum(starts - expected, 0).tolist()]


@dataclass(frozen=True)
class _CsvColumn:
    """One column of a CSV outcome: its texts, and how a text that could start a formula in
    Excel is neutralised."""

    texts: Sequence[str]
    neutral: Callable[[str], str]


# What a cell must start with for Excel to take it as a formula; the neutralisers decide.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CELL_FORMULA_START = re.compile("\0[-=+@\t\r]")  # in a column's cells joined by NULs
# Rows made into text and encoded at a time: large enough that per-chunk costs vanish, small
# enough to keep memory flat.
_CSV_CHUNK_ROWS = 4_096


def _write_csv(
    fh: IO[bytes],
    *,
    encoding: str,
    delimiter: str,
    headers: Sequence[str],
    columns: Sequence[_CsvColumn],
    blank_before: Sequence[int] = (),
    titles: Sequence[tuple[int, Sequence[object]]] = (),
) -> None:
    """Header and rows; characters ``encoding`` cannot hold become ``?`` rather than a crash.

    ``blank_before``: empty lines before the header and before each row (none when empty).
    ``titles``: the input's lines above the header that held something, (line, fields), written
    back on their lines (a report's title, Excel's ``sep=;``) where the others are empty.
    Fields are quoted as the csv module quotes them (``QUOTE_MINIMAL``, CRLF line ends), but a
    column at a time: a column with no cell that needs quoting or neutralising (most of them)
    costs no Python code per cell, where the csv module costs ~1 s for 200,000 x 24.
    """
    encoder = codecs.getincrementalencoder(encoding)(errors="replace")  # one BOM, if any
    # A one-byte codec (cp1252, ISO-8859-x) encodes through a table, character by character.
    # Most characters of such a text are bytes of their own code, as Latin-1 writes them at
    # memory speed: a chunk with no other is copied at once (200,000 rows of cp1252: ~0.3 s).
    written_otherwise = _not_as_latin1(encoding)

    def encode(text: str) -> bytes:
        if written_otherwise is not None:
            with contextlib.suppress(UnicodeEncodeError):
                if not written_otherwise(data := text.encode("latin-1")):
                    return data
        return encoder.encode(text)

    gaps = list(blank_before) or [0]
    gaps_in: dict[int, list[tuple[int, int]]] = defaultdict(list)  # chunk -> (row, blank lines)
    for i, gap in enumerate(gaps[1:]):
        if gap:
            gaps_in[i // _CSV_CHUNK_ROWS].append((i, gap))
    header = io.StringIO()
    writer = csv.writer(header, delimiter=delimiter, lineterminator="\r\n")
    above = dict(titles)
    for line in range(1, gaps[0] + 1):
        writer.writerow(_neutralise_original([str(f) for f in above.get(line, ())]))
    writer.writerow(headers)
    fh.write(encoder.encode(header.getvalue()))
    n_rows = len(columns[0].texts) if columns else 0
    for start in range(0, n_rows, _CSV_CHUNK_ROWS):
        end = min(start + _CSV_CHUNK_ROWS, n_rows)
        fields = [
            _csv_fields(_as_list(column.texts[start:end]), delimiter, column.neutral)
            for column in columns
        ]
        lines = list(map(delimiter.join, zip(*fields, strict=True)))
        for i, gap in gaps_in[start // _CSV_CHUNK_ROWS]:
            lines[i - start] = "\r\n" * gap + lines[i - start]
        lines.append("")  # the last line's end
        fh.write(encode("\r\n".join(lines)))
    fh.write(encoder.encode("", final=True))


@cache
def _not_as_latin1(encoding: str) -> Callable[[bytes], bool] | None:
    """For a one-byte codec that writes every ASCII character as its own byte, whether Latin-1
    bytes hold one that this codec writes otherwise (cp1252: 0x80-0x9F, where it puts the euro
    sign and more); None for any other codec (UTF-8 is fast already; UTF-16 and ISO-2022 are
    not one byte a character, and a codec with state cannot be skipped).

    Those bytes are all translated to the first of them, which is then looked for: two passes
    at memory speed, where a pattern of the bytes took 0.46 s for a 200,000-row outcome."""

    def as_is(code: int) -> bool:
        try:
            return codecs.encode(chr(code), encoding) == bytes([code])
        except UnicodeError:
            return False

    try:
        one_byte = all(len(codecs.encode(ch, encoding, "replace")) == 1 for ch in "\u00f8\u306e")
    except (LookupError, UnicodeError):  # IDNA, say, which takes no "replace"
        return None
    if not one_byte or not all(map(as_is, range(128))):
        return None
    others = bytes(code for code in range(128, 256) if not as_is(code))
    if not others:
        return lambda _data: False
    marker = others[:1]
    table = bytes.maketrans(others, marker * len(others))
    return lambda data: marker in data.translate(table)


def _csv_fields(texts: list[str], delimiter: str, neutral: Callable[[str], str]) -> list[str]:
    """A column's cells as CSV fields: neutralised, and quoted where the csv module would.

    Whether any cell needs either is asked of the whole column at once (a cell starts where the
    joined text has a NUL before it; a NUL inside a cell only costs the careful way)."""
    joined = "\0".join(texts)
    if joined.startswith(_FORMULA_STARTS) or _CELL_FORMULA_START.search(joined):
        texts = list(map(neutral, texts))
    if delimiter in joined or '"' in joined or "\n" in joined or "\r" in joined:
        specials = {delimiter, '"', "\n", "\r"}
        texts = [
            f'"{text.replace(chr(34), chr(34) * 2)}"' if not specials.isdisjoint(text) else text
            for text in texts
        ]
    return texts


def _as_list(texts: Sequence[str]) -> list[str]:
    return texts.tolist() if isinstance(texts, np.ndarray) else list(texts)


def _neutralise_original(texts: Sequence[str]) -> list[str]:
    """Original columns: only what Excel would run as a formula changes (see module docstring)."""
    return list(map(_neutral_original, texts))


def _neutral_any(text: str) -> str:
    """One outcome cell: API text never starts a formula."""
    return f"'{text}" if text and text[0] in "=+-@\t\r" else text


def _neutral_original(text: str) -> str:
    """One original cell: only what Excel would run as a formula changes."""
    return f"'{text}" if text and text[0] in "=+-@\t\r" and _is_formula_like(text) else text


def _is_formula_like(text: str) -> bool:
    stripped = text.lstrip("\t\r")
    if stripped[:1] in ("=", "@"):
        return True
    if stripped[:1] in ("+", "-"):
        return len(stripped) > 1 and _SIGNED_NUMBER.fullmatch(stripped) is None
    return False


# --- xlsx ------------------------------------------------------------------------------------


_PLAIN = Layout()  # no title rows, every column General


@dataclass(frozen=True, kw_only=True)
class _Amounts:
    """The amount column's sums per row status, for the Summary sheet."""

    label: str
    number_format: NumberFormat | None
    sums: dict[str, float]


def _write_xlsx(
    fh: IO[bytes],
    *,
    data: _XlsxData,
    summary: OutcomeSummary,
    layout: Layout = _PLAIN,
    amounts: _Amounts | None = None,
    batch_counts: dict[str, Counter[str]] | None = None,
    source: Table | None = None,
    ahead: RowsAhead | None = None,
) -> None:
    """Data sheet first, then ``Summary``; ``data``'s headers and columns end with the outcome
    ones. ``layout`` gives the input's title rows and its columns' number formats, kept as they
    were. ``ahead``: rows already made of ``source`` (the table ``data`` is of), taken where
    still the same.
    """
    # xlsxwriter makes the package (styles, widths, header, titles, printing, Summary) without
    # the data rows, in memory; sheetxml then adds the rows, which it makes far faster.
    skeleton = io.BytesIO()
    workbook = xlsxwriter.Workbook(skeleton, _WORKBOOK_OPTIONS)
    headers, columns, header_at = data.headers, data.columns, data.header_at
    formats, column_formats, styles = _sheet_styles(workbook, headers, layout)
    sheet = _add_data_sheet(workbook, data.sheet_name)
    n_rows, last_col = len(columns[0]), len(headers) - 1
    status_col = headers.index(OUTCOME_COLUMNS[0])
    rows_at = data.sheet_rows_at()
    last_row = max(rows_at[-1] if n_rows else header_at, header_at + 1)
    made = ahead.still_made(source, data, styles) if ahead and source is not None else {}
    message_col = status_col + 1
    longest = _longest(data.texts, made)
    # From here on columns are the sheet's: the data's shifted by where the input's began.
    first = data.first_col
    for c, width in enumerate(_widths(headers, longest, layout.number_formats)):
        shown = min(width, _MESSAGE_WIDTH) if c == message_col else width
        sheet.set_column(c + first, c + first, shown, column_formats[c])
    _write_titles(sheet, layout.titles, formats, first_col=first)
    for c, header in enumerate(headers, start=first):
        if header:
            sheet.write_string(header_at, c, header, formats.header)
        else:
            sheet.write_blank(header_at, c, None, formats.header)
    status_col, last_col = status_col + first, last_col + first
    sheet.freeze_panes(header_at + 1, 0)
    sheet.autofilter(header_at, first, last_row, last_col)
    # Conditional formats, not per-cell styles: one rule per status covers every row, costs
    # nothing per cell, and follows the status if the user sorts or edits.
    for status, fmt in formats.status.items():
        rule = {"type": "cell", "criteria": "==", "value": f'"{status.value}"', "format": fmt}
        sheet.conditional_format(header_at + 1, status_col, last_row, status_col, rule)
    _set_printing(sheet, header_at=header_at, sandbox=summary.sandbox)
    if summary.sandbox:
        sheet.set_tab_color(_SANDBOX_RED)
        if header_at > 0:  # room above the header: the banner over the outcome columns too
            banner = (header_at - 1, status_col, header_at - 1, last_col)
            if status_col < last_col:
                sheet.merge_range(*banner, _SANDBOX_BANNER, formats.sandbox_cell)
            else:
                sheet.write_string(header_at - 1, status_col, _SANDBOX_BANNER, formats.sandbox_cell)
    _write_summary(
        workbook,
        summary,
        counts=Counter(columns[status_col]),
        formats=formats,
        amounts=amounts,
        batch_counts=batch_counts or {},
    )
    sheet.activate()
    workbook.close()
    package = {
        "skeleton": skeleton.getvalue(),
        "sheet": f"xl/worksheets/sheet{sheet.index + 1}.xml",
        "last_row": rows_at[-1] if n_rows else header_at,
        "last_col": last_col,
    }
    if made:
        remade = iter(
            deflated_behind(
                chunk_rows(_chunk_of(columns, k), in_chunk(rows_at, k), styles, first_col=first)
                for k in chunk_numbers(n_rows)
                if k not in made
            )
        )
        segments = [made[k].rows if k in made else next(remade) for k in chunk_numbers(n_rows)]
        try:
            write_segmented_package(dest=fh, rows=segments, **package)
            return
        except ZipTooLargeError:
            pass  # written whole below, with zip's 64-bit extensions
    write_package(dest=fh, rows=sheet_rows(columns, rows_at, styles, first_col=first), **package)


_WORKBOOK_OPTIONS = {
    "in_memory": True,
    # Never guess types from text: '=SUM(A1)' from the user stays text.
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    # Excel has no time zones: an aware time keeps its wall-clock reading.
    "remove_timezone": True,
}


def _sheet_styles(
    workbook: xlsxwriter.Workbook, headers: Sequence[str], layout: Layout
) -> tuple[_Formats, list[Any], list[ColumnStyles]]:
    """The outcome's formats, each data column's own (one per column, so a column shows its
    numbers and dates one way, as it did in the input), and the style indices its cells take.

    The indices are fixed here, before anything else asks for one, so they depend only on the
    headers and the layout: rows made ahead with them (``rows_ahead``) fit the final workbook.
    """
    formats = _Formats(workbook)
    # The cache shares a format between columns that use the same code.
    cache: dict[NumberFormat, Any] = {}
    column_formats = [
        cache.setdefault(code, workbook.add_format({"num_format": code}))
        if (code := _at(layout.number_formats, c)) is not None
        else None
        for c in range(len(headers))
    ]
    # Text takes its column's format, but for the sandbox column's: per cell, not for the column,
    # as a column format would paint the whole column red.
    text_formats = list(column_formats)
    if headers[-1] == SANDBOX_COLUMN:
        text_formats[-1] = formats.sandbox_cell
    return formats, column_formats, _column_styles(column_formats, text_formats, formats)


def _chunk_of(columns: Sequence[Sequence[Any]], k: int) -> list[Any]:
    """Each column's rows in chunk ``k`` (as ``sheet_rows`` cuts them)."""
    return [in_chunk(column, k) for column in columns]


#: The most cells (rows times columns) an xlsx outcome has its rows made ahead for: they are
#: held deflated until the outcome is written (10 MB for the bench's 50,000 rows of 17 columns
#: and the outcome's 8), and a workbook's million rows would add hundreds of megabytes to the
#: run's peak; larger ones are made at the end.
AHEAD_MAX_CELLS = 2_500_000


@dataclass(frozen=True)
class _MadeChunk:
    """One chunk of data rows made ahead: deflated, with what it was made from."""

    rows: Segment
    longest: list[int]  # each column's longest text in the chunk
    outcome: list[list[str]]  # the chunk's outcome columns (``_XlsxData.own_from`` on)


@dataclass(frozen=True)
class RowsAhead:
    """An xlsx outcome's data rows made and deflated before the outcome is written
    (``rows_ahead``): the chunks whose every row was settled then."""

    table: Table  # the input they were made of
    chunk_rows: int  # sheetxml.CHUNK_ROWS then
    styles: list[ColumnStyles]
    headers: list[str]
    chunks: dict[int, _MadeChunk]

    def still_made(
        self, table: Table, data: _XlsxData, styles: list[ColumnStyles]
    ) -> dict[int, _MadeChunk]:
        """The chunks that are what ``data`` (of ``table``) would make now: of the same table,
        cut the same way, with the same styles and headers, and every outcome value as it was
        (a row the journal changed since is made again)."""
        if (
            table is not self.table
            or self.chunk_rows != sheetxml.CHUNK_ROWS
            or styles != self.styles
            or data.headers != self.headers
        ):
            return {}
        outcome = data.columns[data.own_from :]
        return {
            k: chunk
            for k, chunk in self.chunks.items()
            if all(
                in_chunk(column, k) == before
                for column, before in zip(outcome, chunk.outcome, strict=True)
            )
        }


def rows_ahead(
    table: Table,
    outcomes: dict[str, np.ndarray],
    settled: np.ndarray,
    *,
    sandbox: bool,
) -> RowsAhead | None:
    """Make and deflate the data rows of ``table``'s xlsx outcome in every chunk of rows that
    are all ``settled`` (bool, a row each), from ``outcomes`` as they are now (the
    OUTCOME_COLUMNS, a row each): what ``write_outcome`` would make of them.

    Done while a run waits for its last polls, in which nothing else happens: the outcome is
    then mostly written before they end. None when no chunk is settled, the outcome would not
    fit a sheet, or it has more than ``AHEAD_MAX_CELLS`` cells.
    """
    n_rows = len(table)
    cells = n_rows * (len(table.headers) + len(OUTCOME_COLUMNS) + 1)
    if xlsx_fit_problem(table) or not n_rows or cells > AHEAD_MAX_CELLS:
        return None
    whole = [k for k in chunk_numbers(n_rows) if in_chunk(settled, k).all()]
    if not whole:
        return None
    results = [_as_texts(outcomes[name]) for name in OUTCOME_COLUMNS]
    data = _XlsxData.of(table, results, sandbox=sandbox)
    scratch = xlsxwriter.Workbook(io.BytesIO(), _WORKBOOK_OPTIONS)  # for the style indices only
    _, _, styles = _sheet_styles(scratch, data.headers, table.layout)
    rows_at, first = data.sheet_rows_at(), data.first_col
    segments = deflated_behind(
        chunk_rows(_chunk_of(data.columns, k), in_chunk(rows_at, k), styles, first_col=first)
        for k in whole
    )
    chunks = {
        k: _MadeChunk(
            rows=segment,
            longest=[max(map(len, column), default=0) for column in _chunk_of(data.texts, k)],
            outcome=_chunk_of(data.columns[data.own_from :], k),
        )
        for k, segment in zip(whole, segments, strict=True)
    }
    return RowsAhead(table, sheetxml.CHUNK_ROWS, styles, data.headers, chunks)


def _longest(texts: Sequence[Sequence[str]], made: dict[int, _MadeChunk]) -> list[int]:
    """Each column's longest text: of the chunks made ahead as they measured it, of the rest
    measured now."""
    if not made:
        return [max(map(len, column), default=0) for column in texts]
    n_rows = len(texts[0])
    longest = [0] * len(texts)
    for k in chunk_numbers(n_rows):
        lengths = (
            made[k].longest
            if k in made
            else [max(map(len, column), default=0) for column in _chunk_of(texts, k)]
        )
        longest = [max(pair) for pair in zip(longest, lengths, strict=True)]
    return longest


def _set_printing(sheet: Any, *, header_at: int, sandbox: bool) -> None:
    """Landscape, one page wide, the header row on every page, page numbers; a sandbox outcome
    carries its warning on every printed page."""
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)  # as wide as one page, as long as it takes
    sheet.repeat_rows(header_at)
    sheet.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    footer = "&L&A&RPage &P of &N"  # sheet name; page numbers
    sheet.set_footer(footer)
    if sandbox:
        # '&' starts a code in a page header, so the text must not hold one.
        sheet.set_header(f'&C&"-,Bold"&14&K{_SANDBOX_RED[1:]}{_SANDBOX_BANNER}')


def _write_titles(
    sheet: Any,
    titles: Sequence[tuple[int, Sequence[object]]],
    formats: _Formats,
    *,
    first_col: int,
) -> None:
    """The input's rows above the header, on their own row numbers and the data's columns
    (from ``first_col``), in bold as titles are."""
    for number, cells in titles:
        for c, value in enumerate(cells, start=first_col):
            if isinstance(value, str):
                if value:
                    sheet.write_string(number - 1, c, value, formats.bold)
            elif value is not None:
                _write_other(sheet, number - 1, c, value, formats)


def _add_data_sheet(workbook: xlsxwriter.Workbook, name: str) -> Any:
    """The source sheet's name if Excel allows it (and it is not ``Summary``), else ``Outcome``."""
    if name.casefold() != _SUMMARY_SHEET.casefold():
        try:
            return workbook.add_worksheet(name)
        except InvalidWorksheetName:
            pass
    return workbook.add_worksheet(_DEFAULT_SHEET)


def _column_styles(
    column_formats: Sequence[Any], text_formats: Sequence[Any], formats: _Formats
) -> list[ColumnStyles]:
    """Each column's style indices, fixed now so the styles sheet lists every one the rows use.

    Numbers and dates take their column's format (the input's); dates in a column without one
    get an ISO date, or date and time.
    """
    date, datetime = formats.date._get_xf_index(), formats.datetime._get_xf_index()
    time, duration = formats.time._get_xf_index(), formats.duration._get_xf_index()
    return [
        ColumnStyles(
            plain=0 if own is None else own._get_xf_index(),
            text=0 if text is None else text._get_xf_index(),
            date=date,
            datetime=datetime,
            time=time,
            duration=duration,
            keeps_dates=own is not None,
        )
        for own, text in zip(column_formats, text_formats, strict=True)
    ]


def _write_other(sheet: Any, row: int, col: int, value: object, formats: _Formats) -> None:
    """The rare types: booleans, NaN/NaT (left empty), numpy scalars, dates, times, durations."""
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif value is pd.NaT or value is pd.NA or _is_nan(value):
        return
    elif isinstance(value, float) and math.isinf(value):
        sheet.write_string(row, col, str(value))
    elif isinstance(value, int | float):
        sheet.write_number(row, col, float(value))
    elif isinstance(value, dt.datetime):  # pd.Timestamp and other subclasses
        moment = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        fmt = formats.datetime if moment.time() != dt.time(0) else formats.date
        sheet.write_datetime(row, col, moment, fmt)
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, col, value, formats.date)
    elif isinstance(value, dt.time):
        sheet.write_datetime(row, col, value, formats.time)
    elif isinstance(value, dt.timedelta):
        sheet.write_datetime(row, col, value, formats.duration)
    elif text := str(value):
        sheet.write_string(row, col, text)


def _widths(
    headers: Sequence[str],
    longest_texts: Sequence[int],
    number_formats: Sequence[NumberFormat | None],
) -> list[int]:
    """Column widths in characters: the header (plus its filter button) and the longest cell
    (``longest_texts``, a column each).

    Every cell counts, so no id is cut (measuring text is cheap: ~1 ms per 50,000 cells). A
    column with a number format is as wide as its numbers show in it (``12 345,50`` is wider
    than the ``12345.5`` its cell text reads).
    """
    widths = []
    for c, (header, longest_text) in enumerate(zip(headers, longest_texts, strict=True)):
        code = _at(number_formats, c)
        longest = longest_text
        if code is not None and longest:
            longest = max(longest, _shown_width(code, longest))
        widths.append(min(max(len(header) + 3, longest + 1, _MIN_WIDTH), _MAX_WIDTH))
    return widths


def _shown_width(code: NumberFormat, digits: int) -> int:
    """How many characters a value of ``digits`` characters takes under format ``code``."""
    text = _BUILTIN_CODES.get(code, "") if isinstance(code, int) else code
    text = re.sub(r'"[^"]*"|\\.|\[[^]]*]|_.|\*.', "", text.split(";")[0])  # quoted, escapes
    if re.search(r"[dmyhs]", text, re.IGNORECASE) and "0" not in text:
        return len(text)  # a date or time: as long as its pattern
    decimals = len(text.partition(".")[2].rstrip("%")) if "." in text else 0
    grouped = "," in text or " " in text or "\u00a0" in text
    whole = digits  # the cell text's own digits bound the whole part
    return whole + decimals + 1 + (whole // 3 if grouped else 0)


class _Formats:
    """The few formats an outcome uses, made once per workbook."""

    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self.header = workbook.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2"})
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.time = workbook.add_format({"num_format": "hh:mm:ss"})
        self.duration = workbook.add_format({"num_format": "[h]:mm:ss"})
        self.bold = workbook.add_format({"bold": True})
        self.title = workbook.add_format({"bold": True, "font_size": 16})
        self.sandbox = workbook.add_format(
            {"bold": True, "font_size": 20, "font_color": "#FFFFFF", "bg_color": _SANDBOX_RED}
        )
        self.sandbox_cell = workbook.add_format(
            {"bold": True, "font_color": "#FFFFFF", "bg_color": _SANDBOX_RED}
        )
        self.status = {
            status: workbook.add_format({"bg_color": fill, "font_color": font})
            for status, (fill, font) in _STATUS_COLOURS.items()
        }
        self.amount = workbook.add_format({"num_format": "#,##0.00"})


# --- Summary sheet ---------------------------------------------------------------------------


def _write_summary(
    workbook: xlsxwriter.Workbook,
    summary: OutcomeSummary,
    *,
    counts: Counter[str],
    formats: _Formats,
    amounts: _Amounts | None = None,
    batch_counts: dict[str, Counter[str]] | None = None,
) -> None:
    """File, environment, timings, rows (and amounts) per status in a fixed order, batches,
    notes.

    Aware times are shown in the machine's local zone: the clock the user lives by.
    """
    sheet = workbook.add_worksheet(_SUMMARY_SHEET)
    longest_id = max((len(b.batch_id or "") for b in summary.batches), default=0)
    sheet.set_column(0, 0, max(24, longest_id + 2))  # batch ids whole
    sheet.fit_to_pages(1, 0)
    sheet.set_paper(9)  # A4
    sheet.set_column(1, 1, 40)
    sheet.set_column(2, 4 + len(RowStatus), 20)
    sheet.write_string(0, 0, "filedrop outcome", formats.title)
    row = 2
    if summary.sandbox:
        sheet.set_tab_color(_SANDBOX_RED)
        sheet.set_row(1, 30)
        sheet.merge_range(1, 0, 1, 4, _SANDBOX_BANNER, formats.sandbox)
        row = 3
    facts: list[tuple[str, str | dt.datetime]] = [
        ("File", summary.source.name),
        ("Folder", str(summary.source.parent)),
        ("Mapping", summary.mapping or "(none)"),
        ("Environment", summary.environment.upper() if summary.sandbox else summary.environment),
        ("Started", _local(summary.started_at)),
        ("Finished", _local(summary.finished_at)),
        ("Duration", _duration_text(summary.finished_at - summary.started_at)),
    ]
    for label, value in facts:
        sheet.write_string(row, 0, label, formats.bold)
        if isinstance(value, dt.datetime):
            sheet.write_datetime(row, 1, value, formats.datetime)
        else:
            sheet.write_string(row, 1, value)
        row += 1
    row += 1
    sheet.write_string(row, 0, "Status", formats.header)
    sheet.write_string(row, 1, "Rows", formats.header)
    amount_format = formats.amount
    if amounts is not None:
        # The sum of the numbers in that column, as Excel's own SUM counts them (text is not
        # counted), so it can be checked against the export's totals row.
        sheet.write_string(row, 2, f"Sum of {amounts.label}", formats.header)
        if amounts.number_format is not None:
            amount_format = workbook.add_format({"num_format": amounts.number_format})
    for status in RowStatus:  # always every status, in the same order: easy to compare files
        row += 1
        sheet.write_string(row, 0, status.value, formats.status[status])
        sheet.write_number(row, 1, counts.get(status.value, 0))
        if amounts is not None:
            _write_sum(sheet, row, 2, amounts.sums.get(status.value, 0.0), amount_format)
    row += 1
    sheet.write_string(row, 0, "Rows total", formats.bold)
    sheet.write_number(row, 1, counts.total(), formats.bold)
    if amounts is not None:
        _write_sum(sheet, row, 2, _sum(amounts.sums.values()), amount_format)
    row = _write_batches(sheet, row + 2, summary.batches, batch_counts or {}, formats)
    if summary.notes:
        sheet.write_string(row + 1, 0, "Notes", formats.header)
        for offset, note in enumerate(summary.notes, start=2):
            sheet.write_string(row + offset, 0, note)


_BATCH_COLUMNS = ("Batch", "Invoices", "Status", "Submitted", "Finished")


def _write_batches(
    sheet: Any,
    row: int,
    batches: Sequence[BatchLine],
    counts: dict[str, Counter[str]],
    formats: _Formats,
) -> int:
    """The batches table from ``row`` on, each batch's rows per status after its own columns;
    returns the next free row."""
    seen = set().union(*counts.values()) if counts else set()
    statuses = [status for status in RowStatus if status.value in seen]
    for col, label in enumerate((*_BATCH_COLUMNS, *(f"{s.value} rows" for s in statuses))):
        sheet.write_string(row, col, label, formats.header)
    if not batches:
        sheet.write_string(row + 1, 0, "(none)")
        return row + 2
    for batch in batches:
        row += 1
        sheet.write_string(row, 0, batch.batch_id or "(no batch id)")
        sheet.write_number(row, 1, batch.invoices)
        sheet.write_string(row, 2, batch.status)
        for col, moment in ((3, batch.submitted_at), (4, batch.finished_at)):
            if moment is not None:
                sheet.write_datetime(row, col, _local(moment), formats.datetime)
        mine = counts.get(batch.batch_id or "", Counter())
        for col, status in enumerate(statuses, start=len(_BATCH_COLUMNS)):
            sheet.write_number(row, col, mine.get(status.value, 0))
    return row + 1


def _row_amounts(
    table: Table, at: int, values: Sequence[list[Any]], summary: OutcomeSummary
) -> list[Any]:
    """Each row's amount for the Summary's sums: as the mapping reads the column, numbers and
    text alike, or, without its notation, the column's cells as written (numbers count)."""
    if summary.amount_notation is None:
        return values[at]
    decimal, thousands = summary.amount_notation
    return amounts_as_read(table, at, decimal=decimal, thousands=thousands).tolist()


def _sums_by_status(values: Sequence[Any], statuses: Sequence[str]) -> dict[str, float]:
    """Per row status, the sum of the numbers among ``values`` (text and dates are not counted)."""
    found: defaultdict[str, list[float]] = defaultdict(list)
    isfinite = math.isfinite
    for value, status in zip(values, statuses, strict=True):
        kind = value.__class__
        if (kind is float and isfinite(value)) or kind is int:
            found[status].append(value)
    return {status: _sum(numbers) for status, numbers in found.items()}


def _sum(numbers: Iterable[float]) -> float:
    """The exact sum (``math.fsum``), or infinity (or NaN) where it is past what a float holds:
    fsum raises then, and the outcome would not be written."""
    numbers = list(numbers)
    try:
        return math.fsum(numbers)
    except OverflowError:
        return sum(numbers, 0.0)


#: Where a sum of amounts is past what a float holds (Excel's SUM shows #NUM! there).
TOO_LARGE_TO_ADD_UP = "too large to add up"


def _write_sum(sheet: Any, row: int, col: int, total: float, number_format: Any) -> None:
    """A Summary sum: a number, or ``TOO_LARGE_TO_ADD_UP``."""
    if math.isfinite(total):
        sheet.write_number(row, col, total, number_format)
    else:
        sheet.write_string(row, col, TOO_LARGE_TO_ADD_UP)


def _counts_by_batch(statuses: Sequence[str], batch_ids: Sequence[str]) -> dict[str, Counter[str]]:
    """Per batch id, how many rows ended in each status (rows in no batch are left out)."""
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for status, batch_id in zip(statuses, batch_ids, strict=True):
        if batch_id:
            counts[batch_id][status] += 1
    return dict(counts)


def _at(items: Sequence[NumberFormat | None], index: int) -> NumberFormat | None:
    return items[index] if index < len(items) else None


def _local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone() if moment.tzinfo is not None else moment


def _duration_text(span: dt.timedelta) -> str:
    seconds = max(span.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _as_texts(column: pd.Series | np.ndarray) -> list[str]:
    """Outcome values as strings; None/NaN (a caller's slip) become '' rather than 'nan'."""
    values = column.tolist()
    if set(map(type, values)) <= {str}:  # the usual case, looked at once for the whole column
        return values
    return ["" if v is None or v is pd.NA or _is_nan(v) else str(v) for v in values]


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
