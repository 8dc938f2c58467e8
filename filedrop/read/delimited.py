"""CSV and Excel files -> a ``Table`` of cells exactly as the user sees them.

It knows nothing of invoices or HTTP. Every row keeps the number the user sees (Excel row number,
CSV line number) so that every message and the outcome can point back to it. `read_table` picks
the reader by file type; this module reads CSV (encoding, delimiter and header detection), excel.py
reads workbooks, and table.py holds the types both return.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import threading
from collections import Counter
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

import numpy as np

from filedrop.errors import EncodingContradictedError, EncodingUnsureError, ReadError
from filedrop.read.excel import read_excel
from filedrop.read.isolated import read_excel_isolated
from filedrop.read.limits import ReadLimits, check_file_size, inspect_workbook
from filedrop.read.table import (
    CSV_SUFFIXES,
    EMPTY_FILE,
    EXCEL_SUFFIXES,
    HEADER_SEARCH_ROWS,
    INPUT_SUFFIXES,
    INVISIBLE,
    INVISIBLE_CHARS,
    Layout,
    ReadInfo,
    ReadOptions,
    Table,
    blank_rows,
    column_frame,
    find_header,
    name_blank_headers,
    read_hashed_bytes,
    trailing_width,
)

DELIMITERS = (";", "\t", ",", "|")
"""Candidates in order of preference when two fit equally well (Norwegian exports use ``;``)."""
SNIFF_BYTES = 64 * 1024


def read_table(
    path: Path,
    options: ReadOptions | None = None,
    *,
    limits: ReadLimits | None = None,
    sha256: str | None = None,
    stop: threading.Event | None = None,
) -> Table:
    """Read ``path`` (csv, xlsx, xlsm, xls) once into a ``Table``; ``ReadError`` says what is wrong.

    The bytes are read once; CSV is parsed by pandas (the csv module only for ragged files), Excel
    by calamine, in a child process unless ``limits`` say otherwise. A file beyond ``limits``
    (default: the settings' defaults) is refused before it is parsed, or, for a workbook parsed
    in the memory-capped child, while it is. ``sha256``, the hash the caller took of the file,
    holds every read to those bytes: other bytes are ``ReadAgainLaterError``. ``stop`` set gives up
    a workbook's parse in the child (``ReadAgainLaterError`` too).
    """
    path = Path(path)
    options = options or ReadOptions()
    limits = limits or ReadLimits()
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        check_file_size(path, limits)
        return _read_csv(path, options, limits, sha256)
    if suffix in EXCEL_SUFFIXES:
        check_file_size(path, limits)
        if limits.read_in_subprocess:
            # The child parses the bytes it read, this process scans the ones it read: each
            # is held to ``sha256``, so the marks are those of the rows parsed.
            return read_excel_isolated(
                path,
                options,
                limits,
                lambda: inspect_workbook(
                    path, options.sheet, limits, read_hashed_bytes(path, sha256)
                ),
                sha256=sha256,
                stop=stop,
            )
        data = read_hashed_bytes(path, sha256)
        return read_excel(path, options, inspect_workbook(path, options.sheet, limits, data), data)
    types = f"{', '.join(INPUT_SUFFIXES[:-1])} or {INPUT_SUFFIXES[-1]}"
    shown = path.suffix or "(no extension)"
    raise ReadError(str(path), f'"{shown}" is not a file type filedrop reads; save it as {types}')


# --- CSV ------------------------------------------------------------------------------------------


def _read_csv(path: Path, options: ReadOptions, limits: ReadLimits, sha256: str | None) -> Table:
    # Imported here: the process that parses workbooks imports this package, and needs no pandas.
    import pandas as pd

    where = str(path)
    encoding, codec, data = _text(where, read_hashed_bytes(path, sha256), options)
    sample = _sample_lines(data, codec)
    declared = _declared_delimiter(sample)
    delimiter = _given_delimiter(where, options.delimiter) or declared or _sniff_delimiter(sample)
    header_line = _csv_header_line(
        where, data, sample, delimiter, options, below_sep_line=declared is not None
    )
    offset = 0
    for _ in range(header_line - 1):
        offset = data.index(b"\n", offset) + 1
    body = data[offset:] if offset else data
    line_end = body.find(b"\n")
    header = body[: line_end if line_end >= 0 else len(body)]
    if not header.strip():
        raise ReadError(where, f"line {header_line} is empty; header_row must name the header line")
    _check_width(where, header, codec, delimiter, limits)

    n_lines = _count_lines(body)
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
        starts = _record_lines(columns, len(frame), header_line, n_lines)
        fields = _short_records(body, codec, delimiter, columns, starts - header_line)
    except UnicodeDecodeError as exc:
        raise _undecodable(
            where, body, codec=codec, encoding=encoding, first_line=header_line, options=options
        ) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        # Ragged rows or odd quoting: the csv module says exactly which line is wrong.
        try:
            text = body.decode(codec)
        except UnicodeDecodeError as decode_exc:
            raise _undecodable(
                where, body, codec=codec, encoding=encoding, first_line=header_line, options=options
            ) from decode_exc
        columns, starts, fields = _csv_fallback(where, text, delimiter, header_line)

    if n_lines > len(starts):  # some record spans lines
        _refuse_swallowed_lines(where, columns, starts, delimiter)
    # What a short line is measured against: the header line's own fields, an empty one at its
    # end too (a line that ends with the delimiter, as all of the file's do, has it as well),
    # unless most lines plainly end elsewhere (``_measured_by_lines``).
    fields_in_header = len(columns)
    headers = [str(c[0]).strip() for c in columns]
    columns = [c[1:] for c in columns]
    if b'="' in body:
        columns = [_text_formulas_unwrapped(column) for column in columns]
    starts = starts[1:]
    width = trailing_width(headers, columns)
    headers, columns = headers[:width], columns[:width]
    headers = name_blank_headers(headers)
    keep = ~blank_rows(columns, len(starts))
    if not keep.any():
        raise ReadError(
            where, f"the file has a header on line {header_line} but no data rows below it"
        )
    short, against = _measured_by_lines(fields, fields_in_header, keep, named=width)
    if not body.endswith(b"\n") and keep[-1]:
        lines = (int(starts[-1]), header_line + n_lines - 1)
        _refuse_cut_short(where, body, delimiter=delimiter, codec=codec, width=width, lines=lines)
    cells = column_frame(columns, keep)
    return Table(
        path=path,
        headers=headers,
        cells=cells,
        values=cells,
        row_numbers=starts[keep],
        info=ReadInfo(kind="csv", encoding=encoding, delimiter=delimiter, header_row=header_line),
        layout=Layout(titles=_titles(data[:offset], codec, delimiter)),
        short_rows={
            int(starts[k - 1]): (count, against) for k, count in short.items() if keep[k - 1]
        },
        short_of_lines=against != fields_in_header,
    )


def _measured_by_lines(
    fields: dict[int, int], fields_in_header: int, keep: np.ndarray, *, named: int
) -> tuple[dict[int, int], int]:
    """The records short of the width most data lines have, and that width, where they do not
    end as the header does: a header line ending in the delimiter above lines that do not (every
    line was counted a field short, and every row with a problem of its own held back as a short
    line), or lines ending in it below a header that does not (a line missing a value in the
    middle then had the header's count, and was sent with its values under the wrong columns).

    ``fields``: the records (by number, the header 0) whose number of fields is not the header's;
    ``named``: the columns kept (up to the last named one, or one of data). Only where it is
    plain: at least two lines, more than half of them, have that width, no line has more, and
    it leaves every named column. Otherwise the header's count stands, as where the lines end as
    the header does: a line missing a value in the middle is one field short of it.
    """
    kept = int(keep.sum())
    counts = Counter(count for k, count in fields.items() if keep[k - 1])
    if whole := kept - sum(counts.values()):
        counts[fields_in_header] = whole
    width, lines = counts.most_common(1)[0]
    plain = (
        width != fields_in_header
        and width >= named
        and lines >= 2
        and 2 * lines > kept
        # Where some lines end further on, a line missing a value in the middle and ending with
        # a delimiter more has the common count, and could not be told from a whole one.
        and max(counts) == width
    )
    if not plain:
        width = fields_in_header
    short = {k: count for k, count in fields.items() if count < width}
    if width > fields_in_header:  # a line of the header's count is short of these too
        short |= {
            k: fields_in_header for k in (np.flatnonzero(keep) + 1).tolist() if k not in fields
        }
    return short, width


def _short_records(
    body: bytes, codec: str, delimiter: str, columns: list[np.ndarray], lines: np.ndarray
) -> dict[int, int]:
    """Records (by number, the header 0) with fewer fields than the header, and how many each
    has. pandas fills a short record's missing fields with "" as if they were empty, so only
    records whose last field reads "" are looked at. One without a quote character has a field
    more than it has delimiters, counted on the bytes a few megabytes at a time; one with a
    quote (a quoted value may hold the delimiter, a quote inside an unquoted one is itself) is
    read with the csv module, as pandas read it. ``lines``: each record's first line, from 0."""
    candidates = np.flatnonzero(columns[-1] == "")
    candidates = candidates[candidates > 0]
    mark = delimiter.encode(codec)
    if not len(candidates) or len(mark) != 1:
        return {}
    data = np.frombuffer(body, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(data == ord("\n")) + 1))[lines]
    ends = np.append(starts[1:], len(body))
    counts = np.full(len(starts), len(columns), dtype=np.int64)
    quoted = np.zeros(len(starts), dtype=bool)
    step = max(1, len(starts) * _COUNTED_BYTES // max(1, len(body)))  # records at a time
    for a in range(0, len(starts), step):
        b = min(a + step, len(starts))
        piece = data[starts[a] : ends[b - 1]]
        bounds = np.append(starts[a:b], ends[b - 1]) - starts[a]
        counts[a:b] = np.diff(np.searchsorted(np.flatnonzero(piece == mark[0]), bounds)) + 1
        quoted[a:b] = np.diff(np.searchsorted(np.flatnonzero(piece == ord('"')), bounds)) > 0
    for k in candidates[quoted[candidates]].tolist():
        record = body[starts[k] : ends[k]].decode(codec, errors="replace")
        rows = csv.reader(io.StringIO(record), delimiter=delimiter)
        counts[k] = max(map(len, rows), default=0)
    short = candidates[counts[candidates] < len(columns)]
    return dict(zip(short.tolist(), counts[short].tolist(), strict=True))


#: How many bytes of a CSV ``_short_records`` looks at at once: its arrays stay a few times that.
_COUNTED_BYTES = 4 * 1024 * 1024


def _titles(above: bytes, codec: str, delimiter: str) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """The lines above the header that hold something (a report's title, Excel's ``sep=;``):
    (1-based line, its fields). The outcome writes them back, where it wrote empty lines."""
    if not above:
        return ()
    lines = above.decode(codec, "replace").splitlines()
    return tuple((line, tuple(fields)) for line, fields in _records(lines, delimiter) if fields)


def _refuse_cut_short(
    where: str, body: bytes, *, delimiter: str, codec: str, width: int, lines: tuple[int, int]
) -> None:
    """Refuse a file that ends inside its last row: no line end after it, and fewer fields
    than the header's ``width``. An upload stopped partway (an SFTP session dropped, resumed
    a minute later) leaves a file so, and once it sat unchanged as long as the inbox waits, the
    row went out with what it had: an amount of 1 where the row says 1 395,00. Nothing of the
    file is sent, as a grouped invoice's lines up to the cut would go without the rest of it;
    the file is taken again once it changes. The row is read whole, over ``lines`` (the one it
    begins on, the file's last): a quoted value over several lines is one field.
    """
    start, last_line = lines
    offset = len(body)
    for _ in range(last_line - start + 1):  # back over the row's own line ends, then one more
        offset = body.rindex(b"\n", 0, offset)
    row = body[offset + 1 :].decode(codec, "replace")
    fields = len(next(csv.reader(io.StringIO(row, newline=""), delimiter=delimiter), [""]))
    if fields < width:
        raise ReadError(
            where,
            f"line {start}: the file ends inside this row, {fields} of the header's {width} "
            "fields in and with no line end after it, as an upload stopped partway leaves a "
            "file, so nothing of it is sent; it is taken again once it changes (the upload "
            "done, or, if the file is whole, a line end added after its last line)",
        )


def _text_formulas_unwrapped(column: np.ndarray) -> np.ndarray:
    """Cells written ="000781", as ERPs export a number whose zeros Excel must keep, as the
    text Excel shows: 000781. Sent as they were, the invoice number was ="000781" itself, and
    a KID so wrapped failed its check."""
    import pandas as pd

    cells = pd.Series(column, dtype=object)
    wrapped = cells.str.fullmatch(r'="[^"]*"').to_numpy(dtype=bool)
    if not wrapped.any():
        return column
    column = column.copy()
    column[wrapped] = cells[wrapped].str.slice(2, -1).to_numpy(dtype=object)
    return column


_LONE_CR = re.compile(rb"\r(?!\n)")
# The fewest columns a file has for a value holding a row's worth of delimiters per line break
# to be taken for rows swallowed by a stray quote (``_refuse_swallowed_lines``).
_SWALLOW_MIN_COLUMNS = 5
# cp1252 leaves these five bytes undefined; a file with them is read as ISO-8859-1 instead.
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")


def _text(where: str, data: bytes, options: ReadOptions) -> tuple[str, str, bytes]:
    """(encoding to report, codec to parse with, bytes to parse) of a file that is CSV text,
    with lines ended by \\n where they were ended by a lone \\r; a ReadError for one that is
    not text (empty, a workbook, a PDF, NUL bytes) or not in one encoding."""
    data = _without_eof_mark(data)
    if (nothing := _no_values(data)) is not None:
        raise ReadError(where, nothing)
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ReadError(where, "the file is an Excel workbook named .csv; rename it to .xlsx")
    if data.startswith(b"%PDF"):
        raise ReadError(where, "the file is a PDF document, not CSV; export the invoices as CSV")
    encoding, codec, data = _detect_encoding(where, data, options.encoding)
    if b"\x00" in data:
        raise ReadError(where, _nul_bytes(data))
    return encoding, codec, _lines_ended_by_lf(data)


def _lines_ended_by_lf(data: bytes) -> bytes:
    """``data`` with old Mac line ends (a lone CR) made ``\\n``, so that lines are counted
    as the user's editor counts them; itself when it has none."""
    if b"\r" in data and _LONE_CR.search(data):
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


#: The byte-order marks a text file may begin with, and how the text after each is written.
_MARKED_TEXT = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: A character that is a value: none of white space, the characters nobody can see
#: (``INVISIBLE``), and the delimiters a line of empty fields is made of.
_A_VALUE = re.compile(rf"[^\s{re.escape(''.join(DELIMITERS))}{INVISIBLE_CHARS}]")
_ONLY_DELIMITERS = "the file holds only delimiters and line breaks, no values; export it again"


def _no_values(data: bytes) -> str | None:
    """Why ``data`` holds no value to read, after its byte-order mark if it has one: it is empty
    (white space and characters nobody can see) or holds delimiters besides; None when it holds
    a value, or is not text in its mark's encoding (told further on). A file of a mark alone
    (what some programs export for no rows), or of empty fields, was refused for having no
    header row in its first 30 lines: true, and it sent the user to the mapping. Only a file
    with no value near its start is read to its end here."""
    codec = "cp1252"  # no mark: the characters that tell are ASCII, or cp1252's own spaces
    for mark, marked in _MARKED_TEXT:
        if data.startswith(mark):
            data, codec = data[len(mark) :], marked
            break
    if _A_VALUE.search(data[:SNIFF_BYTES].decode(codec, errors="ignore")):
        return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        return None
    if _A_VALUE.search(text):
        return None
    return EMPTY_FILE if not INVISIBLE.sub("", text).strip() else _ONLY_DELIMITERS


def _without_eof_mark(data: bytes) -> bytes:
    """``data`` without DOS's end-of-file mark (Ctrl-Z, 0x1A), which old ERP exports write after
    the last line, once or more, a line end sometimes after it: otherwise a row of its own,
    INVALID, which nobody sees in the file. Taken off the bytes before they are decoded, as DOS
    appends one byte even to a UTF-16 file."""
    end = data.rstrip(b"\r\n")
    return end.rstrip(b"\x1a") if end.endswith(b"\x1a") else data


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
        try:
            return "utf-16", "utf-8", data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf16(where, data, exc) from exc
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        codec = "latin-1" if any(b in data for b in _CP1252_UNDEFINED) else "cp1252"
        _refuse_mixed(where, data, exc.start, codec)
        _refuse_lookalike_encoding(where, data)
        return codec, codec, data
    return "utf-8", "utf-8", data


def _nul_bytes(data: bytes) -> str:
    """Why a file holding NUL bytes is not read: UTF-16 text without its byte order mark (every
    other byte NUL in its first lines) can be read with the encoding set; anything else is no
    text."""
    head = data[:4096]
    for name, zeros in (("utf-16-le", head[1::2]), ("utf-16-be", head[0::2])):
        if len(zeros) > 8 and zeros.count(0) >= 0.9 * len(zeros):
            return (
                f"it looks like UTF-16 text without a byte order mark; set encoding = "
                f'"{name}" in the mapping\'s [read], or export it as UTF-8 CSV'
            )
    return "the file is not text (it holds NUL bytes); export it as CSV again"


# A UTF-8 letter of Latin-1's upper half (æ ø å é ö ...) is two bytes, C3 then one of 80-BF; read
# as Windows-1252 they show as "Ã" followed by a sign ("Ã¥" for å), which no real text holds.
_UTF8_LATIN_LETTER = re.compile(rb"\xc3[\x80-\xbf]")


def _line_at(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset`` as the user's editor numbers it, before the reader
    makes lone carriage returns (old Mac line ends) into ``\\n``: counting ``\\n`` alone
    named line 1 for every line of such a file."""
    before = data[:offset]
    lone_crs = len(_LONE_CR.findall(before)) if b"\r" in before else 0
    return before.count(b"\n") + lone_crs + 1


def _refuse_mixed(where: str, data: bytes, not_utf8_at: int, codec: str) -> None:
    """A file that is not UTF-8 (at byte ``not_utf8_at``) yet holds UTF-8 letters elsewhere mixes
    two encodings (lines pasted from another export): read either way (as ``codec``, the rest),
    some names would be sent garbled, so it is refused, naming a line of each."""
    found = _UTF8_LATIN_LETTER.search(data)
    if found is None:
        return
    utf8_line = _line_at(data, found.start())
    other_line = _line_at(data, not_utf8_at)
    letter = found.group().decode("utf-8")
    raise ReadError(
        where,
        f'line {utf8_line} holds "{found.group().decode(codec)}", which is "{letter}" '
        f"written as UTF-8, while the file is not UTF-8 (line {other_line}); names would reach "
        "Amili garbled, so it is not read: save the file in one encoding (UTF-8), or fix those "
        "names where they were typed, and drop it again",
    )


# Bytes that are a Norwegian letter in Mac Roman (old Mac programs' encoding) or a DOS code
# page (865, Norwegian; 850 has these letters at the same bytes), where Windows-1252 has a sign
# no name holds in that place. Mac's æ ø å are Windows-1252's ¾ ¿ Œ: ø and å after a small
# letter ("Bj\xbfrn", "Troms\xbf"), æ between letters ("½x¾" and "CŒUR" are Windows-1252's).
# DOS's æ ø å ä ö are its ‘ › † „ ”, between letters ("Bj\x9brn"), as Windows-1252 has them
# beside a word at most; ø and å also at a small word's end ("Troms\x9b", "Bl\x86"), where
# Windows-1252 would have a dagger or an angle quote stuck to a word ("Jones†", which the
# mapping's encoding = "cp1252" reads): a refusal that names its way out is the lesser harm
# than a city sent as "Troms›". Capitals: Mac's Ø is ¯ beside a letter, its Æ ®
# at a word's start ("\xaerlig"; among capitals it is Windows-1252's, "ACME®PRO"); Mac's Å and
# DOS's Ø and Å are bytes Windows-1252 has no character for. Mac's Å (0x81) is DOS's ü: at a
# word's start or among capitals it is Mac's Å, after a letter before a small one DOS's ü
# ("M\x81ller"), and so DOS's é after a letter ("Caf\x82") and ç between letters. DOS's Æ is ’,
# the apostrophe of "O’BRIEN", and is left out. Each alternative names the encoding it points to.
_LOOKALIKE_LETTER = re.compile(
    rb"(?P<mac>[A-Za-z]\xbe[a-z]|[a-z][\xbf\x8c]|[A-Za-z]\xaf|\xaf[A-Za-z]"
    rb"|(?<![A-Za-z])[\xae\x81][A-Za-z]|[A-Z]\x81[A-Z])"
    rb"|(?P<dos>[A-Za-z][\x91\x9b\x86\x84\x94][a-z]|[a-z][\x9b\x86](?![A-Za-z])"
    rb"|[A-Za-z][\x9d\x8f]|[\x9d\x8f][A-Za-z]"
    rb"|[A-Za-z]\x81[a-z]|[A-Za-z]\x82|[A-Za-z]\x87[a-z])"
)
_LOOKALIKE_ENCODINGS = {
    "mac": ("mac_roman", "mac-roman", "Mac Roman, the encoding of old Mac programs"),
    "dos": ("cp865", "cp865", "the Nordic DOS code page (865), an old DOS program's"),
}
# Windows-1252's own æ ø å inside a word as names have them ("Bjørn", "Øyvind", "ØSTBY",
# "BJØRN"): a file holding one is written in it, whatever else it holds. Only so, as the same
# bytes are signs or other letters in the DOS code pages ("4°C", "N°", "2µm", cp850's "São"),
# which let such a file through unlooked at; and ø or å ending a word after three small letters
# ("Tromsø", "Bodø"), which DOS would have as "Troms°" (its "n°" and "nr°" are shorter). A file
# with its æ ø å elsewhere only is looked at whole: this is a shortcut, not a verdict.
_CP1252_NORWEGIAN = re.compile(
    rb"[a-z][\xe5\xe6\xf8][a-z]|[A-Z][\xc5\xc6\xd8][A-Z]|(?<![A-Za-z])[\xc5\xc6\xd8][A-Za-z]"
    rb"|[a-z]{3}[\xe5\xf8](?![A-Za-z0-9])"
)


def _refuse_lookalike_encoding(where: str, data: bytes) -> None:
    """A file that is neither UTF-8 nor Windows-1252 but Mac Roman (an old Mac export) or a DOS
    code page reads, as Windows-1252, with ø as ¿ or › inside its names ("Bj¿rn", "Bj›rn"):
    the names would reach Amili garbled, so it is refused, naming a line
    (``EncodingUnsureError``), unless the file holds a Windows-1252 æ, ø or å inside a word
    (``_CP1252_NORWEGIAN``). The mapping's ``encoding`` reads it either way."""
    # A Norwegian Windows-1252 file has its first æ, ø or å within a few lines: asked first,
    # the scan of the whole file for other letters (0.45 s of 200,000 rows) is spared.
    if _CP1252_NORWEGIAN.search(data) is not None:
        return
    found = _LOOKALIKE_LETTER.search(data)
    if found is None or found.lastgroup is None:
        return
    other, name, what = _LOOKALIKE_ENCODINGS[found.lastgroup]
    word = _field_around(data, found.start())
    # Shown as Windows-1252 shows it; a byte it has no character for is shown as such.
    read_as = word.decode("cp1252", errors="replace")
    finding = (
        f'line {_line_at(data, found.start())} holds "{read_as}", which is '
        f'"{word.decode(other)}" in {what}'
    )
    raise EncodingUnsureError(
        where,
        f"{finding}; names would reach Amili garbled, so it is not read: save the file as UTF-8 "
        f'(or set encoding = "{name}" in the mapping\'s [read]; encoding = "cp1252" if '
        f'"{read_as}" is right) and drop it again',
        finding=finding,
        encodings=(name, "cp1252"),
    )


def _field_around(data: bytes, offset: int) -> bytes:
    """The value holding byte ``offset``, for a message: its line cut at the delimiters around
    it, and at 20 bytes either side of that byte (a line of megabytes is not copied)."""
    marks = (b"\n", b"\r", *(d.encode() for d in DELIMITERS))
    start = max(offset - 20, *(data.rfind(mark, 0, offset) + 1 for mark in marks))
    stop = min(offset + 20, *(at for mark in marks if (at := data.find(mark, offset)) >= 0))
    return data[start:stop].strip()


def _given_encoding(where: str, data: bytes, wanted: str) -> tuple[str, str, bytes]:
    """The mapping's encoding; a UTF-8 BOM is still dropped so the first header stays clean."""
    try:
        name = codecs.lookup(wanted).name
    except LookupError as exc:
        raise ReadError(where, f'encoding "{wanted}" is not known; use e.g. cp1252') from exc
    if name in ("utf-8", "utf-8-sig"):
        return wanted, "utf-8", data.removeprefix(codecs.BOM_UTF8)
    if not name.startswith(("utf-16", "utf-32")):
        _refuse_contradicted(where, data, wanted, name)
    if '\n;,\t|"'.encode(name, errors="replace") == b'\n;,\t|"':
        return wanted, name, data
    try:
        return wanted, "utf-8", data.decode(name).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_encoded(where, wanted, exc) from exc


# The first character of a UTF-8 file beyond ASCII: a lead byte and its continuation bytes.
_UTF8_CHARACTER = re.compile(rb"[\xc2-\xf4][\x80-\xbf]{1,3}")


def _refuse_contradicted(where: str, data: bytes, wanted: str, name: str) -> None:
    """A file whose bytes say they are Unicode text (a byte order mark, or letters beyond ASCII
    written as UTF-8) while the mapping sets another encoding: read as set, every æ, ø and å
    would reach Amili garbled ("Ã¥" for å), so it is refused, saying what the file is."""
    setting = f'the mapping sets encoding = "{wanted}"'
    fix = "remove the encoding from the mapping's [read] (filedrop tells the encodings apart)"
    for marks, what in (
        ((codecs.BOM_UTF8,), "UTF-8"),
        ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "UTF-16"),
    ):
        if data.startswith(marks):
            finding = f"the file is {what} text (it begins with a byte order mark)"
            raise EncodingContradictedError(
                where, f"{finding}, but {setting}; {fix}", finding=finding
            )
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return  # not UTF-8: the setting may well be right
    found = _UTF8_CHARACTER.search(data)
    if found is None:
        return
    line = _line_at(data, found.start())
    letter = found.group().decode("utf-8")
    garbled = found.group().decode(name, errors="replace")
    finding = f'the file is UTF-8 text (line {line} holds "{letter}")'
    raise EncodingContradictedError(
        where,
        f'{finding}, but {setting}, which would send "{garbled}" to Amili instead; {fix}',
        finding=finding,
    )


def _not_utf16(where: str, data: bytes, exc: UnicodeDecodeError) -> ReadError:
    """A UTF-16 file (by its byte order mark) with bytes that are no UTF-16 character: read
    anyway, a name went to Amili with a replacement sign (Bj\ufffdrn) and no word said."""
    before = data[: exc.start].decode("utf-16", errors="replace").encode()
    line = _line_at(before, len(before))
    return ReadError(
        where,
        f"line {line} holds bytes that are not UTF-16 text, though the file begins with UTF-16's "
        "byte order mark; a name there would reach Amili garbled, so it is not read: export "
        "the file again",
    )


def _undecodable(
    where: str, body: bytes, *, codec: str, encoding: str, first_line: int, options: ReadOptions
) -> ReadError:
    """Why ``body`` (from line ``first_line`` on) does not decode as ``codec``: a mapping's
    encoding that does not fit, or, detected by its byte order mark, a UTF-8 file with a line
    in another encoding (pasted from another export), naming that line."""
    try:
        body.decode(codec)
    except UnicodeDecodeError as exc:
        if options.encoding is not None:
            return _not_encoded(where, encoding, exc)
        line = first_line + body.count(b"\n", 0, exc.start)
        return ReadError(
            where,
            f"line {line} is not UTF-8 ({exc.reason}), though the file begins with UTF-8's byte "
            "order mark: it mixes two encodings (lines pasted from another export), and names "
            "would reach Amili garbled, so it is not read: save the file in one encoding (UTF-8) "
            "and drop it again",
        )
    return ReadError(where, f"the file is not valid {encoding} text; check its encoding")


def _not_encoded(where: str, encoding: str, exc: UnicodeDecodeError) -> ReadError:
    return ReadError(
        where,
        f"the file is not valid {encoding} text ({exc.reason}); remove the encoding from the "
        "mapping to detect it, or set the right one",
    )


def _sample_lines(data: bytes, codec: str) -> list[str]:
    """The first whole lines (up to 64 KiB) for sniffing the delimiter and the header."""
    head = data[:SNIFF_BYTES]
    lines = head.decode(codec, errors="replace").split("\n")
    if len(head) < len(data) and len(lines) > 1:
        lines.pop()  # cut mid-line
    return lines[: HEADER_SEARCH_ROWS * 2]


def guess_delimiter(head: bytes) -> str:
    """The delimiter a file seems to use, from its first bytes (``SNIFF_BYTES``), for the
    outcome of a file that could not be read.

    As the reader finds it: a ``sep=`` line naming one of ``DELIMITERS``, else the sniffed one
    (``,`` when none fits), lone carriage returns taken as line ends. The bytes are taken as
    Latin-1, UTF-16 after its BOM, and without their NUL bytes (UTF-16 or UTF-32 without a
    BOM): every delimiter is one ASCII character in each, whatever the file's real encoding or
    faults.
    """
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", errors="replace").encode("utf-8")
    head = _lines_ended_by_lf(head.removeprefix(codecs.BOM_UTF8).replace(b"\x00", b""))
    lines = _sample_lines(head, "latin-1")
    declared = _declared_delimiter(lines)
    return declared if declared in DELIMITERS else _sniff_delimiter(lines)


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


def _line_fields(lines: list[str], delimiter: str) -> Iterator[list[str]]:
    """Each line's fields, the line split alone (a quote it leaves open ends with it)."""
    for line in lines:
        try:
            yield next(csv.reader([line], delimiter=delimiter), [])
        except csv.Error:
            yield []


def _given_delimiter(where: str, delimiter: str | None) -> str | None:
    """The mapping's delimiter; "tab" and a typed backslash-t are accepted for a tab."""
    if delimiter in ("tab", "\\t"):
        return "\t"
    if delimiter is not None and len(delimiter) != 1:
        raise ReadError(where, f'delimiter "{delimiter}" must be one character, such as ";" or ","')
    return delimiter


_SEP_LINE = re.compile(r"sep=(.)\r?")


def _declared_delimiter(lines: list[str]) -> str | None:
    """The delimiter a first line ``sep=;`` declares (Excel writes and honours it), or None."""
    found = _SEP_LINE.fullmatch(lines[0]) if lines else None
    return found[1] if found else None


def _sniff_delimiter(lines: list[str]) -> str:
    """The candidate that splits the most lines into the same number (>1) of fields.

    A decimal comma adds commas to data lines but not to the header, so ``,`` is inconsistent in
    a ``;`` file and loses; ties go to the more fields, then to ``;``. Lines are counted two
    ways, and the better count stands: as records (a quoted cell may span lines) and each line
    on its own (a quote left open on one line, ``"Nordmann, Kari;...``, swallows every record
    after it, which would let ``,`` win by default).
    """
    best: tuple[int, int, int] = (0, 0, 0)
    chosen = ","
    for rank, delimiter in enumerate(DELIMITERS):
        fits = [
            (n_lines, n_fields)
            for fields in (
                (f for _, f in _records(lines, delimiter)),
                _line_fields(lines, delimiter),
            )
            for n_fields, n_lines in Counter(len(f) for f in fields if f and any(f)).items()
            if n_fields > 1
        ]
        if not fits:
            continue
        n_lines, n_fields = max(fits)
        score = (n_lines, n_fields, -rank)
        if score > best:
            best, chosen = score, delimiter
    return chosen


def _csv_header_line(
    where: str,
    data: bytes,
    sample: list[str],
    delimiter: str,
    options: ReadOptions,
    *,
    below_sep_line: bool,
) -> int:
    """1-based physical line of the header: as set, else found below any title lines (and below
    a ``sep=;`` line, which is never the header)."""
    n_lines = _count_lines(data)
    if options.header_row is not None:
        if not 1 <= options.header_row <= n_lines:
            raise ReadError(
                where,
                f"header_row {options.header_row} is outside the file, which has {n_lines} lines",
            )
        return options.header_row
    records = _records(sample, delimiter)[int(below_sep_line) : HEADER_SEARCH_ROWS]
    found = find_header([f for _, f in records], options.expected_headers)
    if found is None:
        raise ReadError(
            where,
            f"no header row found in the first {HEADER_SEARCH_ROWS} lines (expected a line of "
            "column names); set header_row in the mapping",
        )
    return records[found][0]


#: No spreadsheet holds more columns than Excel's 16,384: a wider line is not an export's.
_MOST_FIELDS = 16_384


def _check_width(where: str, header: bytes, codec: str, delimiter: str, limits: ReadLimits) -> None:
    """Refuse a header line naming more columns than ``max_columns``, or of more fields than
    any spreadsheet holds, before the parser makes a column of each: a 2 MB line of a million
    ``;`` took over a minute and a gigabyte. Empty fields at its end (Excel's used range drawn
    wide) count only against the second."""
    separator = delimiter.encode(codec)
    separators = header.count(separator)
    if separators < min(limits.max_columns, _MOST_FIELDS):
        return  # the usual: too few separators to be too wide, quoted or not
    # Split no further than twice the most fields a spreadsheet holds: a line of a hundred
    # million ';' would become as many strings (50 MB of them took 8 s and 600 MB).
    cut = len(header)
    if separators > 2 * _MOST_FIELDS:
        cut = 0
        for _ in range(2 * _MOST_FIELDS):
            cut = header.index(separator, cut) + len(separator)
    fields = next(csv.reader([header[:cut].decode(codec, "replace")], delimiter=delimiter))
    named = max((i + 1 for i, field in enumerate(fields) if field.strip()), default=0)
    if named > limits.max_columns:
        raise ReadError(
            where,
            f"its header line names {named:,} columns, more than {limits.max_columns:,} "
            f"({limits.where('max_columns')}); it is not read",
        )
    if len(fields) > _MOST_FIELDS:
        counted = separators + 1 if cut < len(header) else len(fields)
        raise ReadError(
            where,
            f"its header line has {counted:,} fields, more than any spreadsheet holds "
            f"({_MOST_FIELDS:,}); delete the empty columns at its end and save it again; it is "
            "not read",
        )


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _record_lines(
    columns: list[np.ndarray], n_records: int, first: int, n_lines: int
) -> np.ndarray:
    """Physical line where each record starts, of ``n_lines`` lines; cheap unless a quoted cell
    holds a newline."""
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


def _refuse_swallowed_lines(
    where: str, columns: list[np.ndarray], starts: np.ndarray, delimiter: str
) -> None:
    """Refuse a value that holds a whole row's worth of delimiters for each line break in it: a
    quote typed at the start of a value (``"Fjellstue Drift AS``) and a later one in the same
    column make every line between part of that value, with the field count still right. Those
    rows got no status and were never sent, and the first went out with the others' names, ids
    and emails as its debtor's last name. A real value over several lines (an address, a note)
    holds a few at most, and its lines are no rows of the file (``_holds_rows``); in a file of
    fewer than ``_SWALLOW_MIN_COLUMNS`` columns a value's own few could reach a row's worth, so
    such a file is read as it is. Called only when some record
    spans lines (the last one too: a quote closed on the file's last line swallows as well)."""
    width = len(columns)
    if width < _SWALLOW_MIN_COLUMNS:
        return
    for j, column in enumerate(columns):
        if "\n" not in "".join(column):
            continue
        for i, value in enumerate(column.tolist()):
            breaks = value.count("\n")
            if breaks and _holds_rows(value, breaks, delimiter, width):
                before = sum(columns[k][i].count("\n") for k in range(j))
                start = int(starts[i]) + before
                name = str(column[0]).strip() or f"column {j + 1}"
                raise ReadError(
                    where,
                    f'line {start}: the {name} value starts with a quote (") that is closed only '
                    f"on line {start + breaks}, so the rows up to there were read as that one "
                    "value; remove the stray quote and save or export the file again",
                )


def _holds_rows(value: str, breaks: int, delimiter: str, width: int) -> bool:
    """Whether ``value`` reads as rows swallowed whole: a row's worth of delimiters per line
    break, and each line between its first and its last exactly a row's worth (a row of the
    file, not a note's line that happens to hold many decimal commas)."""
    if value.count(delimiter) < breaks * (width - 1):
        return False
    return all(line.count(delimiter) == width - 1 for line in value.split("\n")[1:-1])


def _csv_fallback(
    where: str, body: str, delimiter: str, first: int
) -> tuple[list[np.ndarray], np.ndarray, dict[int, int]]:
    """Parse with the csv module: slower, but tolerant of short rows and exact about lines.
    Also the records with another number of fields than the header, and how many each has
    (fewer: ``_short_records``; more, the extra ones empty and dropped: ``_measured_by_lines``).

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
    counts: dict[int, int] = {}
    for i, fields in enumerate(rows):
        if len(fields) > width:
            if any(f.strip() for f in fields[width:]):
                raise ReadError(
                    where,
                    f"line {starts[i]} has {len(fields)} fields but the header (line {first}) has "
                    f"{width}; a value probably holds an unquoted {_delimiter_name(delimiter)}, "
                    "quote it or fix the line",
                )
            counts[i] = len(fields)
            del fields[width:]
        elif len(fields) < width:
            counts[i] = len(fields)
            fields.extend([""] * (width - len(fields)))
    grid = np.empty((len(rows), width), dtype=object)
    grid[:] = rows
    return [grid[:, j] for j in range(width)], np.asarray(starts, dtype=np.int64), counts


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ";": '";"', ",": '","', "|": '"|"'}.get(delimiter, repr(delimiter))
