"""The digest for people: what filedrop did over a period, across files and inboxes, as an HTML page
and an xlsx workbook.

The journal says which files were worked on in the period (by their last change), at which target
and with which mapping; each file's own outcome gives the row-level detail (status, message,
amount, invoice number), so the digest shows exactly what the people who dropped the files see.

Amounts are read from the outcome's amount column, parsed with the mapping's number format: the
column the invoice's ``originalInvoiceAmount`` reads, or, when that is not a column or the mapping
groups several lines into one invoice (each line then carries its own part), the column the first
claim's ``remainingAmount`` reads. Amounts are summed as they are, whatever their currency. A file
whose mapping is not found in the configured mappings, or whose outcome cannot be read, is counted
from the journal without amounts or rows, and the digest says so.

A row needs a person when it is ``INVALID``, ``FAILED``, ``UNKNOWN`` or ``ERROR``, or ``NOT_SENT``
in a file first seen more than a day before the end of the period (a day is long enough for the
next runs to have sent it, had the cause passed by itself).

Every text from files and messages is shown with national ids masked and control characters
escaped; the HTML escapes it too, and the workbook writes it as text, never as a formula.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xlsxwriter

from filedrop.errors import ConfigError, FiledropError
from filedrop.inbox import ARCHIVE
from filedrop.journal import FileRecord, Journal
from filedrop.journal.rebuild import is_regular_file, no_journal_sentence
from filedrop.logs import mask_ids, printable
from filedrop.mapping import Mapping, load_mappings
from filedrop.mapping.convert import amounts_as_read
from filedrop.mapping.tree import Field, Obj
from filedrop.outcome import _STATUS_COLOURS, OUTCOME_COLUMNS, TOO_LARGE_TO_ADD_UP, written_stamp
from filedrop.read import ReadLimits, ReadOptions, Table, header_key, read_table
from filedrop.settings import Settings
from filedrop.states import ATTENTION_STATUSES, RowStatus, row_status_in

REPORT_PREFIX = "filedrop-report"
NOT_SENT_PATIENCE = dt.timedelta(days=1)
"""A row still ``NOT_SENT`` this long after its file was first seen needs a person."""
HTML_ROWS_PER_INBOX = 500
"""Rows that need a person listed per inbox on the page; the workbook lists them all."""

_STATUS_ORDER = {status.value: i for i, status in enumerate(RowStatus)}
# The outcome workbook's colours, so a status looks the same in the digest as in the outcome.
_COLOURS = {status.value: colours for status, colours in _STATUS_COLOURS.items()}


@dataclass(frozen=True, kw_only=True)
class Period:
    """From ``since`` (included) to ``until`` (excluded); aware datetimes."""

    since: dt.datetime
    until: dt.datetime

    @classmethod
    def from_options(
        cls, *, since: str | None, until: str | None, days: float | None, now: dt.datetime
    ) -> Period:
        """The period the options give: ``until`` (default ``now``) and ``since`` or ``days``
        before it (default one day). Times are ISO dates or date-times in local time."""
        if since and days is not None:
            raise ConfigError("give --since or --days, not both.")
        if days is not None and not (days > 0 and math.isfinite(days)):
            raise ConfigError(f"--days is {days:g}; give a number of days above 0, e.g. 7.")
        try:
            end = _parse_moment("--until", until) if until else now
            start = _parse_moment("--since", since) if since else end - dt.timedelta(days=days or 1)
            period = cls(since=start, until=end)
            period.stamp()  # both ends in local time, as the names and the page show them
        except (OverflowError, ValueError):
            raise ConfigError(
                "the period reaches outside the years 1 to 9999 (--since, --until or --days); "
                "give one within them, e.g. --days 7."
            ) from None
        if start >= end:
            raise ConfigError(
                f"the period starts at {_local_text(start)} and ends at {_local_text(end)}; "
                "give a --since before --until."
            )
        return period

    def stamp(self) -> str:
        """The period in a file name, local time: dates alone when both ends are midnights."""
        since, until = self.since.astimezone(), self.until.astimezone()
        midnights = all(t.time() == dt.time(0) for t in (since, until))
        pattern = "%Y-%m-%d" if midnights else "%Y-%m-%dT%H%M"
        return f"{since.strftime(pattern)}_{until.strftime(pattern)}"

    def text(self) -> str:
        return f"{_local_text(self.since)} to {_local_text(self.until)}"


def _parse_moment(option: str, text: str) -> dt.datetime:
    """``2024-03-01`` (midnight) or ``2024-03-01T07:00``, local time unless a zone is given."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f'{option} is "{text}"; give a date or a time as YYYY-MM-DD or YYYY-MM-DDTHH:MM '
            "(local time), e.g. 2024-03-01 or 2024-03-01T07:00."
        ) from None
    return moment.astimezone() if moment.tzinfo is None else moment


@dataclass(frozen=True, kw_only=True)
class StatusLine:
    """Rows of one status in one inbox: in how many files, how many rows, what amount.

    ``amount`` is the sum over the rows whose amount is known; None when none is.
    """

    status: str
    files: int
    rows: int
    amount: float | None


@dataclass(frozen=True, kw_only=True)
class FileLine:
    """One file worked on in the period."""

    name: str
    state: str
    mapping: str
    counts: dict[str, int]
    first_seen: dt.datetime
    last_change: dt.datetime
    outcome: str
    note: str = ""

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, kw_only=True)
class AttentionRow:
    """One row a person should look at; ``row`` is its row in the outcome (None for a file
    that could not be read at all)."""

    file: str
    row: int | None
    invoice_number: str
    status: str
    message: str


@dataclass(frozen=True, kw_only=True)
class InboxDigest:
    """One inbox folder at one target (environment and organisation)."""

    folder: str
    target: str
    statuses: tuple[StatusLine, ...]
    total: StatusLine
    files: tuple[FileLine, ...]
    attention: tuple[AttentionRow, ...]

    @property
    def sandbox(self) -> bool:
        return self.target.partition(":")[0] == "sandbox"


@dataclass(frozen=True, kw_only=True)
class Digest:
    """The whole report: every inbox with files in the period, and notes on what is missing."""

    period: Period
    made_at: dt.datetime
    journal: str
    inboxes: tuple[InboxDigest, ...]
    notes: tuple[str, ...] = ()


@dataclass
class _FileRows:
    """What one outcome says, row by row; ``amounts`` NaN where unknown."""

    statuses: list[str]
    amounts: list[float]
    attention: list[AttentionRow] = field(default_factory=list)


# --- building ---------------------------------------------------------------------------------


def build_digest(
    files: Iterable[FileRecord],
    *,
    period: Period,
    mappings: Sequence[Mapping],
    journal: str,
    limits: ReadLimits | None = None,
    made_at: dt.datetime | None = None,
    notes: Sequence[str] = (),
) -> Digest:
    """The digest of ``files`` (those the journal shows changed in ``period``).

    ``mappings`` are the configured ones, found by the name the journal recorded for each file;
    ``limits`` bound the reading of outcome files as they bound inputs.
    """
    by_name = {m.name: m for m in mappings}
    groups: dict[tuple[str, str], list[tuple[FileRecord, _FileRows | None, str]]] = {}
    records = sorted(files, key=lambda r: (r.name, r.id))  # easy to find by eye
    # A file replaced by a new version under its name: both records name one outcome, which
    # holds the later version's rows.
    latest = {record.outcome: record.id for record in records if record.outcome}
    for record in records:
        mapping = by_name.get(record.mapping) if record.mapping else None
        if (
            record.outcome
            and latest[record.outcome] != record.id
            and written_stamp(Path(record.outcome)) != record.outcome_written
        ):
            rows, note = None, _REPLACED_OUTCOME
        else:
            rows, note = _file_rows(record, mapping, period=period, limits=limits)
        if mapping is None and record.mapping and by_name and not note:
            note = (
                f'mapping "{record.mapping}" is not among the configured mappings: no amounts '
                "or invoice numbers"
            )
        elif record.mapping is None and rows is not None and not note:
            # A file the journal has from 'filedrop journal rebuild', which cannot tell which
            # mapping read it: the amounts and invoice numbers would be guesses.
            note = "the journal records no mapping for it (rebuilt): no amounts or invoice numbers"
        key = (str(_inbox_of(Path(record.path))), record.target)
        groups.setdefault(key, []).append((record, rows, note))
    inboxes = tuple(
        _inbox_digest(folder, target, entries)
        for (folder, target), entries in sorted(groups.items())
    )
    return Digest(
        period=period,
        made_at=made_at or dt.datetime.now(dt.UTC),
        journal=_shown(journal),
        inboxes=inboxes,
        notes=tuple(_shown(n) for n in notes),
    )


def _inbox_digest(
    folder: str, target: str, entries: list[tuple[FileRecord, _FileRows | None, str]]
) -> InboxDigest:
    files: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    amounts: dict[str, float] = {}
    lines, attention = [], []
    for record, detail, note in entries:
        counts = Counter(detail.statuses) if detail else Counter(record.counts)
        files.update(counts.keys())
        rows.update(counts)
        if detail:
            for status, amount in zip(detail.statuses, detail.amounts, strict=True):
                if not math.isnan(amount):
                    amounts[status] = amounts.get(status, 0.0) + amount
            attention.extend(detail.attention)
        elif record.counts.get(RowStatus.ERROR.value) and record.message:
            attention.append(_error_row(record))
        lines.append(
            FileLine(
                name=_shown(record.name),
                state=str(record.state),
                mapping=_shown(record.mapping or ""),
                counts={_shown(status): n for status, n in counts.items()},
                first_seen=_aware(record.created_at),
                last_change=_aware(record.updated_at),
                outcome=_shown(record.outcome or ""),
                note=_shown(note),
            )
        )
    statuses = tuple(
        StatusLine(
            status=_status_label(status),
            files=files[status],
            rows=rows[status],
            amount=amounts.get(status),
        )
        for status in sorted(rows, key=lambda s: (_STATUS_ORDER.get(s, len(_STATUS_ORDER)), s))
    )
    total = StatusLine(
        status="Total",
        files=len(entries),
        rows=rows.total(),
        amount=sum(amounts.values()) if amounts else None,
    )
    return InboxDigest(
        folder=_shown(folder),
        target=_shown(target),
        statuses=statuses,
        total=total,
        files=tuple(lines),
        attention=tuple(attention),
    )


_REPLACED_OUTCOME = "its outcome now holds a later version's rows; counts from the journal"


def _file_rows(
    record: FileRecord, mapping: Mapping | None, *, period: Period, limits: ReadLimits | None
) -> tuple[_FileRows | None, str]:
    """The rows of ``record``'s outcome, or None and why they are missing."""
    if not record.outcome:
        return None, "no outcome yet"
    outcome = Path(record.outcome)
    if os.path.lexists(outcome) and not is_regular_file(outcome):
        # Never read through a link, which may lead anywhere (a pipe or a device the reader
        # refuses itself, for every caller).
        return None, f"{_shown(outcome.name)} is not a regular file; counts from the journal"
    try:
        table = read_table(outcome, _outcome_options(mapping), limits=limits)
    except (FiledropError, OSError) as exc:
        return None, f"its outcome could not be read ({exc}); counts from the journal"
    first = _outcome_columns_at(table.headers)
    if first is None:
        return None, f"{outcome.name} has no outcome columns; counts from the journal"
    # As the rebuild reads them: a status typed over in another case is still that status.
    statuses = [
        known.value if (known := row_status_in(text)) else text.strip()
        for text in table.cells[first].tolist()
    ]
    messages = table.cells[first + 1].tolist()
    own = table.headers[:first]
    amounts: list[float] = [math.nan] * len(table)
    numbers: list[str] = [""] * len(table)
    if mapping is not None:
        amount_at = _column_of(_amount_field(mapping), own)
        if amount_at is not None:
            amounts = _amounts(table, amount_at, mapping).tolist()
        number_at = _column_of(mapping.invoice.get_field("invoiceNumber"), own)
        if number_at is not None:
            numbers = [_unquoted(s.strip()) for s in table.cells[number_at].tolist()]
    late_not_sent = _aware(record.created_at) <= period.until - NOT_SENT_PATIENCE
    attention = [
        AttentionRow(
            file=_shown(record.name),
            row=int(table.row_numbers[i]) if status != RowStatus.ERROR else None,
            invoice_number=_shown(numbers[i]),
            status=status,
            message=_shown(_unquoted(messages[i])),
        )
        for i, status in enumerate(statuses)
        if status in ATTENTION_STATUSES or (status == RowStatus.NOT_SENT and late_not_sent)
    ]
    return _FileRows(statuses=statuses, amounts=amounts, attention=attention), ""


def _outcome_options(mapping: Mapping | None) -> ReadOptions:
    """How to read an outcome: its data sheet is the first, its header holds the outcome columns,
    and a CSV one keeps the input's encoding and delimiter (which the mapping may force)."""
    if mapping is None:
        return ReadOptions(expected_headers=OUTCOME_COLUMNS)
    return replace(mapping.read, sheet=0, header_row=None, expected_headers=OUTCOME_COLUMNS)


def _amount_field(mapping: Mapping) -> Field | None:
    """The field whose column holds each row's amount (see the module docstring)."""
    invoice_amount = mapping.invoice.get_field("originalInvoiceAmount")
    if invoice_amount is not None and invoice_amount.source == "column" and not mapping.group_by:
        return invoice_amount
    for claim in mapping.claims.items:
        node = claim.get_field("remainingAmount") if isinstance(claim, Obj) else None
        if node is not None and node.source == "column":
            return node
    return None


def _outcome_columns_at(headers: Sequence[str]) -> int | None:
    """Where the outcome columns start among ``headers`` (a sandbox outcome has one more after
    them), or None when they are not there in order."""
    keys = [header_key(h) for h in headers]
    width = len(OUTCOME_COLUMNS)
    for start in range(len(keys) - width, -1, -1):
        if keys[start : start + width] == list(OUTCOME_COLUMNS):
            return start
    return None


def _column_of(source: Field | None, headers: Sequence[str]) -> int | None:
    """Where ``source``'s column (or one of its alternative names) is among ``headers``."""
    if source is None or source.source != "column":
        return None
    index = {header_key(h): i for i, h in reversed(list(enumerate(headers)))}
    return next((index[k] for k in map(header_key, source.columns) if k in index), None)


def _amounts(table: Table, at: int, mapping: Mapping) -> np.ndarray:
    """Each row's amount as the mapping reads it; NaN where it is not an amount."""
    return amounts_as_read(table, at, decimal=mapping.decimal, thousands=mapping.thousands)


def _error_row(record: FileRecord) -> AttentionRow:
    return AttentionRow(
        file=_shown(record.name),
        row=None,
        invoice_number="",
        status=RowStatus.ERROR.value,
        message=_shown(record.message or ""),
    )


def _inbox_of(path: Path) -> Path:
    """The inbox a file was dropped into: an archived one (a rebuilt journal records it where
    its outcome was found) belongs to the inbox above ``archive/``."""
    folder = path.parent
    return folder.parent if folder.name == ARCHIVE else folder


def _status_label(status: str) -> str:
    """A status as the Summary lists it: one filedrop writes, or one typed over in the outcome,
    marked, so that a cell reading "Total" is no second total."""
    if status in _STATUS_ORDER:
        return status
    return _shown(f"{status} (not a filedrop status)" if status else "(no status)")


def _unquoted(message: str) -> str:
    """A CSV outcome's message as the API or the check wrote it: the ``'`` that keeps a leading
    ``=``, ``+``, ``-`` or ``@`` from running as a formula is taken off again."""
    if len(message) > 1 and message[0] == "'" and message[1] in "=+-@\t\r":
        return message[1:]
    return message


def _shown(text: str) -> str:
    """User data as the digest shows it: national ids masked, control characters escaped."""
    return mask_ids(printable(text))


def _aware(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, dt.UTC)


def _local_text(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def make_report(settings: Settings, *, period: Period, out: Path) -> tuple[Digest, Path, Path]:
    """Build the digest of ``period`` from the journal and the outcomes ``settings`` lead to, and
    write it into ``out``; returns the digest, the HTML page and the workbook.

    A missing journal or mapping leaves a note in the digest rather than no digest: a daily job
    should still say that there was nothing to say.
    """
    notes: list[str] = []
    mappings: list[Mapping] = []
    if settings.mapping is None:
        notes.append(
            "No mapping is set (FILEDROP_MAPPING or mapping in the config file): amounts and "
            "invoice numbers are not shown."
        )
    else:
        try:
            mappings = load_mappings(settings.mapping)
        except FiledropError as exc:
            notes.append(
                f"The mappings could not be loaded ({exc}); amounts and invoice numbers "
                "are not shown."
            )
    path = settings.journal_path
    files: list[FileRecord] = []
    if path.exists():
        with Journal(path) as journal:
            files = journal.files_changed_between(
                since=period.since.timestamp(), until=period.until.timestamp()
            )
    else:
        inboxes = [inbox.inbox for inbox in settings.each_inbox() if inbox.inbox is not None]
        notes.append(
            no_journal_sentence(
                path, inboxes, settings.where("state"), limits=settings.read_limits()
            )
        )
    digest = build_digest(
        files,
        period=period,
        mappings=mappings,
        journal=str(path),
        limits=settings.read_limits(),
        notes=notes,
    )
    page, book = write_digest(digest, out=out)
    return digest, page, book


# --- writing ----------------------------------------------------------------------------------


def write_digest(digest: Digest, *, out: Path) -> tuple[Path, Path]:
    """Write ``filedrop-report-<period>.html`` and ``.xlsx`` into ``out``; returns both paths.

    Each is written under a hidden temporary name and renamed, so a mailer picking up the folder
    never sends half a report.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # A file of that name (or in its path) made this "unexpected error: [Errno 17]".
        why = (
            "is a file, not a folder"
            if isinstance(exc, FileExistsError | NotADirectoryError)
            else f"cannot be made ({exc.strerror or exc})"
        )
        raise ConfigError(f"--out {out} {why}; give the folder to write the report into.") from exc
    stem = f"{REPORT_PREFIX}-{digest.period.stamp()}"
    page, book = out / f"{stem}.html", out / f"{stem}.xlsx"
    _replace_with(page, lambda tmp: tmp.write_text(render_html(digest), encoding="utf-8"))
    _replace_with(book, lambda tmp: _write_xlsx(digest, tmp))
    return page, book


def _replace_with(dest: Path, write: Callable[[Path], object]) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        write(tmp)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _amount_text(amount: float | None) -> str:
    if amount is None:
        return ""
    if not math.isfinite(amount):
        return TOO_LARGE_TO_ADD_UP
    return f"{amount:,.2f}".replace(",", "\u202f")


_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 2em auto; max-width: 1100px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin: 1.8em 0 .2em; border-bottom: 2px solid #ddd; }
h3 { font-size: 1.05em; margin: 1.2em 0 .4em; }
.meta, .target { color: #555; margin: 0 0 .6em; }
.sandbox { background: #FFEB9C; color: #7F6000; font-weight: bold; padding: .3em .6em; }
table { border-collapse: collapse; margin: .3em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.when { white-space: nowrap; }
td.message { max-width: 40em; overflow-wrap: anywhere; }
tr.total td { font-weight: bold; }
.none { color: #006100; }
.note { color: #8A4500; }
"""


def render_html(digest: Digest) -> str:
    """One page, no scripts, no external assets: it opens the same in a browser or a mail."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>filedrop report {e(digest.period.text())}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>filedrop report</h1>",
        f'<p class="meta">{e(digest.period.text())} &middot; made {e(_local_text(digest.made_at))}'
        f" &middot; journal {e(digest.journal)}</p>",
    ]
    parts += [f'<p class="note">{e(note)}</p>' for note in digest.notes]
    if not digest.inboxes:
        parts.append("<p>No files were processed in this period.</p>")
    for inbox in digest.inboxes:
        parts.append(f"<h2>{e(inbox.folder)}</h2>")
        parts.append(f'<p class="target">target {e(inbox.target)}</p>')
        if inbox.sandbox:
            parts.append('<p class="sandbox">SANDBOX: nothing was sent to Amili.</p>')
        parts.append(_html_statuses(inbox))
        parts.append(_html_attention(inbox))
        parts.append(_html_files(inbox))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_status_cell(status: str) -> str:
    fill, text = _COLOURS.get(status, ("#ffffff", "#222222"))
    return f'<td style="background:{fill};color:{text}">{html.escape(status)}</td>'


def _html_statuses(inbox: InboxDigest) -> str:
    rows = [
        "<h3>Rows by status</h3>",
        "<table><tr><th>Status</th><th>Files</th><th>Rows</th><th>Amount</th></tr>",
    ]
    for line in inbox.statuses:
        rows.append(
            f"<tr>{_html_status_cell(line.status)}<td class=num>{line.files}</td>"
            f"<td class=num>{line.rows}</td><td class=num>{_amount_text(line.amount)}</td></tr>"
        )
    total = inbox.total
    rows.append(
        f'<tr class="total"><td>Total</td><td class=num>{total.files}</td>'
        f"<td class=num>{total.rows}</td><td class=num>{_amount_text(total.amount)}</td></tr>"
    )
    rows.append("</table>")
    return "\n".join(rows)


def _html_attention(inbox: InboxDigest) -> str:
    e = html.escape
    if not inbox.attention:
        return '<h3>Rows that need a person</h3><p class="none">None.</p>'
    shown = inbox.attention[:HTML_ROWS_PER_INBOX]
    rows = [
        f"<h3>Rows that need a person ({len(inbox.attention)})</h3>",
        "<table><tr><th>File</th><th>Row</th><th>Invoice number</th><th>Status</th>"
        "<th>Message</th></tr>",
    ]
    for item in shown:
        row = "" if item.row is None else str(item.row)
        rows.append(
            f"<tr><td>{e(item.file)}</td><td class=num>{row}</td>"
            f"<td>{e(item.invoice_number)}</td>{_html_status_cell(item.status)}"
            f'<td class="message">{e(item.message)}</td></tr>'
        )
    rows.append("</table>")
    if len(inbox.attention) > len(shown):
        rows.append(
            f'<p class="note">and {len(inbox.attention) - len(shown)} more: the xlsx report '
            "lists every one.</p>"
        )
    return "\n".join(rows)


def _html_files(inbox: InboxDigest) -> str:
    e = html.escape
    rows = [
        "<h3>Files</h3>",
        "<table><tr><th>File</th><th>State</th><th>Rows</th><th>First seen</th>"
        "<th>Last change</th><th>Mapping</th><th>Outcome</th></tr>",
    ]
    for line in inbox.files:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(line.counts.items())) or "-"
        note = f'<br><span class="note">{e(line.note)}</span>' if line.note else ""
        rows.append(
            f"<tr><td>{e(line.name)}{note}</td><td>{e(line.state)}</td><td>{e(counts)}</td>"
            f"<td class=when>{e(_local_text(line.first_seen))}</td>"
            f"<td class=when>{e(_local_text(line.last_change))}</td><td>{e(line.mapping)}</td>"
            f"<td>{e(line.outcome)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


class _Formats:
    """The workbook's cell formats, made once."""

    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self.bold = workbook.add_format({"bold": True})
        self.header = workbook.add_format({"bold": True, "bg_color": "#F2F2F2", "border": 1})
        self.money = workbook.add_format({"num_format": "#,##0.00"})
        self.money_bold = workbook.add_format({"num_format": "#,##0.00", "bold": True})
        self.when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        self.status = {
            status: workbook.add_format({"bg_color": fill, "font_color": text})
            for status, (fill, text) in _COLOURS.items()
        }


def _write_xlsx(digest: Digest, dest: Path) -> None:
    """Sheets ``Summary`` (statuses per inbox), ``Needs a person`` and ``Files``; every text
    cell is written as a string, never as a formula."""
    workbook = xlsxwriter.Workbook(
        str(dest),
        {
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "remove_timezone": True,
        },
    )
    formats = _Formats(workbook)
    _xlsx_summary(workbook.add_worksheet("Summary"), digest, formats)
    _xlsx_table(
        workbook.add_worksheet("Needs a person"),
        formats,
        columns=(
            ("Inbox", 30),
            ("Target", 24),
            ("File", 28),
            ("Row", 7),
            ("Invoice number", 16),
            ("Status", 12),
            ("Message", 80),
        ),
        rows=(
            (
                inbox.folder,
                inbox.target,
                item.file,
                item.row,
                item.invoice_number,
                item.status,
                item.message,
            )
            for inbox in digest.inboxes
            for item in inbox.attention
        ),
    )
    _xlsx_table(
        workbook.add_worksheet("Files"),
        formats,
        columns=(
            ("Inbox", 30),
            ("Target", 24),
            ("File", 28),
            ("State", 9),
            ("Rows", 7),
            ("Rows by status", 30),
            ("First seen", 17),
            ("Last change", 17),
            ("Mapping", 24),
            ("Outcome", 40),
            ("Note", 50),
        ),
        rows=(
            (
                inbox.folder,
                inbox.target,
                line.name,
                line.state,
                line.rows,
                ", ".join(f"{n} {s}" for s, n in sorted(line.counts.items())),
                line.first_seen.astimezone(),
                line.last_change.astimezone(),
                line.mapping,
                line.outcome,
                line.note,
            )
            for inbox in digest.inboxes
            for line in inbox.files
        ),
    )
    workbook.close()


def _xlsx_summary(sheet: Any, digest: Digest, formats: _Formats) -> None:
    """The period, then per inbox its statuses with files, rows and amounts, and a total."""
    sheet.set_column(0, 0, 28)
    sheet.set_column(1, 3, 14)
    sheet.write_string(0, 0, "filedrop report", formats.bold)
    facts = [("Period", digest.period.text()), ("Made", _local_text(digest.made_at))]
    facts.append(("Journal", digest.journal))
    for row, (label, value) in enumerate(facts, start=1):
        sheet.write_string(row, 0, label)
        sheet.write_string(row, 1, value)
    row = len(facts) + 1
    for note in digest.notes:
        sheet.write_string(row, 0, note)
        row += 1
    if not digest.inboxes:
        sheet.write_string(row + 1, 0, "No files were processed in this period.")
    for inbox in digest.inboxes:
        sheet.write_string(row + 1, 0, f"Inbox {inbox.folder}", formats.bold)
        sheet.write_string(row + 2, 0, f"target {inbox.target}")
        row += 3
        for col, label in enumerate(("Status", "Files", "Rows", "Amount")):
            sheet.write_string(row, col, label, formats.header)
        for line in (*inbox.statuses, inbox.total):
            row += 1
            total = line is inbox.total
            plain = formats.bold if total else None
            sheet.write_string(row, 0, line.status, plain or formats.status.get(line.status))
            sheet.write_number(row, 1, line.files, plain)
            sheet.write_number(row, 2, line.rows, plain)
            if line.amount is not None and not math.isfinite(line.amount):
                sheet.write_string(row, 3, TOO_LARGE_TO_ADD_UP, plain)
            elif line.amount is not None:
                sheet.write_number(
                    row, 3, line.amount, formats.money_bold if total else formats.money
                )
        row += 1


def _xlsx_table(
    sheet: Any,
    formats: _Formats,
    *,
    columns: Sequence[tuple[str, int]],
    rows: Iterable[Sequence[str | int | dt.datetime | None]],
) -> None:
    """A header with a filter, frozen, then the rows: text as text, a status coloured."""
    for col, (label, width) in enumerate(columns):
        sheet.write_string(0, col, label, formats.header)
        sheet.set_column(col, col, width)
    status_col = next((i for i, (label, _) in enumerate(columns) if label == "Status"), None)
    last = 0
    for last, cells in enumerate(rows, start=1):
        for col, value in enumerate(cells):
            if isinstance(value, str):
                sheet.write_string(
                    last, col, value, formats.status.get(value) if col == status_col else None
                )
            elif isinstance(value, dt.datetime):
                sheet.write_datetime(last, col, value, formats.when)
            elif value is not None:
                sheet.write_number(last, col, value)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(last, 1), len(columns) - 1)
