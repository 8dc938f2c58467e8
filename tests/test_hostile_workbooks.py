"""Hostile workbooks get an ERROR outcome in one sentence, and never stop the run."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from builders import erp_row, filedrop, run_env, write_erp_csv, write_erp_workbook
from hostile import (
    bomb_workbook,
    far_cell_workbook,
    lying_header_workbook,
    overstated_range_workbook,
)

from filedrop.errors import ReadError
from filedrop.read.isolated import read_excel_isolated
from filedrop.read.limits import ReadLimits
from filedrop.read.table import ReadOptions
from filedrop.sandbox import Sandbox


def error_message(inbox: Path, name: str) -> str:
    """The one message of a workbook's ERROR outcome."""
    sheet = openpyxl.load_workbook(inbox / name).worksheets[0]
    header, row = (list(r) for r in sheet.iter_rows(min_row=1, max_row=2, values_only=True))
    assert row[header.index("outcome_status")] == "ERROR"
    return str(row[header.index("outcome_message")])


def test_workbooks_beyond_the_limits_get_one_sentence_and_the_good_file_is_sent(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The far cell, a stray cell at A1048576, a zip bomb and a lying header: each is refused
    unread with its reason, and the good file of the same run is sent."""
    far_cell_workbook(inbox / "far.xlsx", row=1_048_575, column=16_383)
    far_cell_workbook(inbox / "stray.xlsx", row=1_048_575, column=0)
    bomb_workbook(inbox / "bomb.xlsx", inflated_bytes=20_000_000)
    lying_header_workbook(inbox / "liar.xlsx", declared_bytes=1_000, inflated_bytes=2_000_000)
    write_erp_csv(inbox / "good.csv", [erp_row("7001")])
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)

    assert error_message(inbox, "far.outcome.xlsx") == (
        'far.xlsx: the sheet "Sheet1" reaches column XFD (column 16,384) (its used '
        "range is A1:XFD1048576), more than 1,000 (FILEDROP_MAX_COLUMNS); delete the far cells "
        "(Ctrl+End in Excel shows the last one) and save it again; it is not read"
    )
    assert error_message(inbox, "stray.outcome.xlsx") == (
        'stray.xlsx: the sheet "Sheet1" reaches row 1,048,576 (its used range is '
        "A1:Q1048576) but only 2 of its rows hold cells; delete the far cells (Ctrl+End in Excel "
        "shows the last one) and save it again; it is not read"
    )
    assert error_message(inbox, "bomb.outcome.xlsx") == (
        'bomb.xlsx: the sheet "Sheet1" inflates 296 times (67,585 bytes to '
        "19,989,407), more than 100 (FILEDROP_MAX_INFLATION_RATIO); it is not read"
    )
    assert error_message(inbox, "liar.outcome.xlsx") == (
        'liar.xlsx: the sheet "Sheet1" holds more than the 1,000 bytes its zip '
        "header declares; the file is damaged or crafted, so it is not read"
    )
    good = pd.read_csv(inbox / "good.outcome.csv", sep=";", encoding="cp1252", dtype=str)
    assert list(good["outcome_status"]) == ["SUCCEEDED"]
    assert sandbox.counters().invoices_received == 1


@pytest.mark.parametrize("ref", ["A1:Q1048576", "A1:XFD1048576"])
def test_a_used_range_recorded_past_the_last_row_is_told_as_such(
    inbox: Path, sandbox: Sandbox, ref: str
) -> None:
    """The program that wrote the workbook recorded its used range to the sheet's last row,
    though its cells end at row 2: the sentence says so, and asks for no far cell to be
    deleted (there is none), but for the file to be saved again."""
    overstated_range_workbook(inbox / "export.xlsx", ref=ref)
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    assert error_message(inbox, "export.outcome.xlsx") == (
        f'export.xlsx: the sheet "Sheet1" records its used range as {ref}, as far as row '
        "1,048,576, but its last row is 2; open it in Excel or LibreOffice and save it again, "
        "which records the range anew; it is not read"
    )


def test_a_bomb_beyond_the_inflated_bytes_limit_is_refused_unread(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Whatever its ratio, a sheet inflating past FILEDROP_MAX_INFLATED_BYTES is not read."""
    bomb_workbook(inbox / "bomb.xlsx", inflated_bytes=20_000_000)
    environ = run_env(
        inbox,
        sandbox.url,
        FILEDROP_MAX_INFLATED_BYTES="10000000",
        FILEDROP_MAX_INFLATION_RATIO="1000000",
    )
    filedrop("run", environ=environ, expect=1)
    assert error_message(inbox, "bomb.outcome.xlsx") == (
        'bomb.xlsx: the sheet "Sheet1" inflates to more than 10,000,000 bytes '
        "(FILEDROP_MAX_INFLATED_BYTES); it is not read"
    )


def test_a_reader_that_dies_in_its_child_process_is_that_files_error(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Limits raised so calamine asks for 2.6 GB under a 1 GB cap: the child aborts, the file is
    ERROR, the good file is sent, and a second run leaves the failed file alone."""
    far_cell_workbook(inbox / "wide.xlsx", row=4_999, column=16_383)
    write_erp_csv(inbox / "good.csv", [erp_row("7002")])
    environ = run_env(
        inbox,
        sandbox.url,
        FILEDROP_MAX_COLUMNS="16384",
        FILEDROP_MAX_READ_MEMORY_BYTES="1000000000",
    )
    filedrop("run", environ=environ, expect=1)
    assert error_message(inbox, "wide.outcome.xlsx") == (
        "wide.xlsx: the workbook could not be read within the memory limit of "
        "1,000,000,000 bytes (FILEDROP_MAX_READ_MEMORY_BYTES; the reader was stopped by "
        "SIGABRT); it is not read"
    )
    good = pd.read_csv(inbox / "good.outcome.csv", sep=";", encoding="cp1252", dtype=str)
    assert list(good["outcome_status"]) == ["SUCCEEDED"]

    (inbox / "wide.outcome.xlsx").unlink()
    filedrop("run", environ=environ, expect=0)
    assert not (inbox / "wide.outcome.xlsx").exists()  # not read again: its bytes are the same
    assert sandbox.counters().invoices_received == 1


#: The sentence of a workbook its reader could not read within the memory limit. A cap that
#: cuts the reader off while multiprocessing starts it, before its own code can answer, ends it
#: with code 1 (its MemoryError's traceback goes nowhere): where that falls among the caps
#: moves from run to run with the address space's layout.
_SHORT = re.compile(
    r"the workbook could not be read within the memory limit of [\d,]+ bytes "
    r"\(FILEDROP_MAX_READ_MEMORY_BYTES; the reader (ran out of memory|was stopped by "
    r"SIGABRT|exited with code 1)\); it is not read"
)

#: Reads a workbook under caps from the reader's own footprint upwards, a line each: "ok", or the
#: sentence it was refused with. The footprint is this process's once it imported what the
#: reader's server imports.
_CAP_SWEEP = """
import sys
import filedrop.read.isolated
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
from pathlib import Path
from filedrop.errors import FiledropError
from filedrop.read import ReadLimits, ReadOptions, read_table
for step in range(int(sys.argv[2])):
    limits = ReadLimits(max_read_memory_bytes=vm + step * 2**18)
    try:
        read_table(Path(sys.argv[1]), ReadOptions(), limits=limits)
        print("ok", flush=True)
    except FiledropError as exc:
        print(exc.detail, flush=True)
"""


def _sweep(script: str, path: Path, steps: int) -> list[str]:
    """What a cap sweep answered for ``path`` at each of its ``steps``, run as its own process
    with RUST_BACKTRACE=1 set, as on developers' machines (a reader that hangs or a Python
    error fails the test, with its end)."""
    sweep = subprocess.run(
        [sys.executable, "-c", script, str(path), str(steps)],
        env={**os.environ, "RUST_BACKTRACE": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    answers = sweep.stdout.splitlines()
    assert len(answers) == steps
    return answers


def test_a_workbook_short_of_memory_is_said_to_be_so_at_any_cap(tmp_path: Path) -> None:
    """Wherever the memory cap cuts calamine off (opening the file, loading the sheet, making
    Python's values of it) the sentence names the memory limit: pyo3's MemoryError read as a
    damaged workbook, and its panic on a value Python could not make as a value calamine cannot
    convert. With RUST_BACKTRACE=1 set, as on developers' machines, a panic under the cap hung
    the reader for good: printing the backtrace needs memory too."""
    path = write_erp_workbook(tmp_path / "w.xlsx", [erp_row(str(1000 + i)) for i in range(10_000)])
    answers = _sweep(_CAP_SWEEP, path, 120)  # 30 MB in steps of 256 KiB
    assert [a for a in answers if a != "ok" and not _SHORT.fullmatch(a)] == []
    assert answers[0] != "ok"
    assert answers[-1] == "ok"


#: The same through a read begun ahead, as ``filedrop run`` does for its first workbook: forked
#: from this process, so each cap counts from this process's footprint at that moment.
_AHEAD_CAP_SWEEP = """
import hashlib, sys
from pathlib import Path
from filedrop.errors import FiledropError
from filedrop.read import isolated
from filedrop.read.limits import ReadLimits
from filedrop.read import ReadOptions, read_table
path = Path(sys.argv[1])
digest = hashlib.sha256(path.read_bytes()).hexdigest()
for step in range(int(sys.argv[2])):
    vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
    limits = ReadLimits(max_read_memory_bytes=vm * 1024 + step * 2**19)
    isolated.read_ahead(path, limits)
    try:
        read_table(path, ReadOptions(), limits=limits, sha256=digest)
        print("ok", flush=True)
    except FiledropError as exc:
        print(exc.detail, flush=True)
"""


def test_a_read_begun_ahead_short_of_memory_is_read_again_or_said_to_be_so(
    tmp_path: Path,
) -> None:
    """A read begun ahead that runs out of memory while its options wait unread in its pipe
    ends with the connection reset, not closed: that was "Connection reset by peer" for the
    file on every run. Now a fresh reader reads it, or the memory limit is named."""
    path = write_erp_workbook(tmp_path / "w.xlsx", [erp_row(str(1000 + i)) for i in range(10_000)])
    answers = _sweep(_AHEAD_CAP_SWEEP, path, 60)  # 30 MB in steps of 512 KiB
    assert [a for a in answers if a != "ok" and not _SHORT.fullmatch(a)] == []
    assert answers[-1] == "ok"


def test_a_memory_limit_past_what_the_kernel_takes_is_no_limit(tmp_path: Path) -> None:
    """FILEDROP_MAX_READ_MEMORY_BYTES=9223372036854775808 (2**63) passed as a number, then
    setrlimit refused it in every reader: each workbook an ERROR "within the memory limit",
    and a traceback in the terminal. Past 2**63 - 1 no machine has the memory anyway."""
    from filedrop.read import read_table

    path = write_erp_workbook(tmp_path / "w.xlsx", [erp_row("1001")])
    limits = ReadLimits(max_read_memory_bytes=2**63)
    assert read_table(path, ReadOptions(), limits=limits).cells[0].tolist() == ["1001"]


def test_a_reader_taking_longer_than_its_time_is_stopped_and_the_file_refused(
    tmp_path: Path,
) -> None:
    """FILEDROP_MAX_READ_S: a reader stuck in native code (one hung on a lock for good) would
    hold the run, or one of the daemon's workers, for ever; past its time it is stopped, and the
    sentence names the setting. 10 ms is less than a 10,000-row sheet's parse (0.2 s)."""
    from filedrop.read import read_table
    from filedrop.settings import load_settings

    path = write_erp_workbook(tmp_path / "w.xlsx", [erp_row(str(1000 + i)) for i in range(10_000)])
    limits = load_settings(environ={"FILEDROP_MAX_READ_S": "0.01"}).read_limits()
    started = time.monotonic()
    with pytest.raises(ReadError) as refused:
        read_table(path, ReadOptions(), limits=limits)
    assert time.monotonic() - started < 5
    assert refused.value.detail == (
        "the workbook could not be read within 0.01 s (FILEDROP_MAX_READ_S); its reader was "
        "stopped; it is not read"
    )
    assert not multiprocessing.active_children()
    assert len(read_table(path, ReadOptions(), limits=ReadLimits()).cells[0]) == 10_000


def test_a_csv_header_of_a_million_fields_is_refused_unread(inbox: Path, sandbox: Sandbox) -> None:
    """A 2 MB CSV whose lines end in a million ';': refused before the parser makes a column of
    each (which took over a minute and a gigabyte), naming the limit; the good file is sent."""
    wide = "Fakturanr;Beløp" + ";" * 1_000_000
    (inbox / "wide.csv").write_text(f"{wide}\n1;100{';' * 1_000_000}\n", encoding="utf-8")
    write_erp_csv(inbox / "good.csv", [erp_row("7011")])
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=1)
    error = pd.read_csv(inbox / "wide.outcome.csv", sep=";", dtype=str, keep_default_na=False)
    assert list(error["outcome_status"]) == ["ERROR"]
    assert error["outcome_message"][0] == (
        "wide.csv: its header line has 1,000,002 fields, more than any spreadsheet holds "
        "(16,384); delete the empty columns at its end and save it again; it is not read"
    )
    assert sandbox.received_invoice_numbers() == ["7011"]


def test_a_date_the_reader_cannot_convert_is_one_sentence_not_a_rust_backtrace(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A date cell of -1e308 makes calamine's Rust code panic: the file is refused with a
    sentence saying so, not as "could not be read within the memory limit", and the panic's
    backtrace does not reach the terminal."""
    from filedrop.errors import ReadError
    from filedrop.read import read_table

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Fakturanr", "Fakturadato", "Beløp"])
    # Absurd, but read: a huge positive date, and a huge negative number shown as a number.
    sheet.append(["1", 1e300, -1e308])
    sheet.append(["2", -1e308, 100])
    for cell in ("B2", "B3"):
        sheet[cell].number_format = "dd.mm.yyyy"
    book.save(tmp_path / "f.xlsx")
    with pytest.raises(ReadError) as caught:
        read_table(tmp_path / "f.xlsx")
    assert caught.value.detail == (
        'sheet "Sheet": cell B3 holds -1e+308 as a date or time, far outside the years Excel '
        "shows; correct it in Excel and save the file again"
    )
    assert "memory" not in caught.value.detail
    assert "panicked" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("shown_as", "value"),
    [("[h]:mm:ss", 1e10), ("[mm]:ss", -1e10), ("[h]:mm", 1e300)],
    ids=["built-in hours", "custom minutes", "huge"],
)
def test_a_duration_longer_than_python_holds_is_named_not_called_damage(
    tmp_path: Path, shown_as: str, value: float
) -> None:
    """A duration cell ([h]:mm:ss, Excel's built-in 46, or a custom elapsed format) of 10
    billion days makes the reader's timedelta overflow: the file was "damaged"; now the cell
    and its value are named, as a far date's are."""
    from filedrop.read import read_table

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Fakturanr", "Varighet"])
    sheet.append(["1", 1.5])
    sheet.append(["2", value])
    for cell in ("B2", "B3"):
        sheet[cell].number_format = shown_as
    book.save(tmp_path / "f.xlsx")
    with pytest.raises(ReadError) as refused:
        read_table(tmp_path / "f.xlsx")
    shown = f"{value:.0f}" if abs(value) < 1e16 else f"{value:g}"
    assert refused.value.detail == (
        f'sheet "Sheet": cell B3 holds {shown} as a duration, more than the 999,999,999 days '
        "the reader can hold; correct it in Excel and save the file again"
    )


@pytest.mark.parametrize(
    ("cells", "named"),
    [
        # A tag broken over lines, after an empty cell of the same style: the value's own cell.
        ('<c r="A2" s="1"/><c\nr="B2" s="1"><v>-1e308</v></c>', "B2 holds -1e308"),
        # A formula longer than the look back: the cell is not named, the sentence still true.
        (f'<c r="B2" s="1"><f>{"1+" * 3000}1</f><v>-1e308</v></c>', None),
        # A value of 400 digits is shown cut, not whole.
        (f'<c r="B2" s="1"><v>-{"9" * 400}</v></c>', f"B2 holds -{'9' * 26}..."),
    ],
    ids=["tag over lines", "tag far back", "huge value"],
)
def test_the_cell_named_is_the_one_the_reader_cannot_convert(
    tmp_path: Path, cells: str, named: str | None
) -> None:
    """Sheet XML as other programs write it: the cell named is never another than the one that
    stopped the reader; when it cannot be told, the sentence gives the reader's own words."""
    from filedrop.errors import ReadError
    from filedrop.read import read_table

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Fakturanr", "Fakturadato"])
    sheet.append(["1", -1e308])
    sheet["B2"].number_format = "dd.mm.yyyy"
    book.save(tmp_path / "made.xlsx")
    with (
        zipfile.ZipFile(tmp_path / "made.xlsx") as made,
        zipfile.ZipFile(tmp_path / "f.xlsx", "w", zipfile.ZIP_DEFLATED) as crafted,
    ):
        for info in made.infolist():
            data = made.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                row = re.search(rb'<row r="2">.*?</row>', data)
                assert row is not None
                data = data.replace(row[0], f'<row r="2">{cells}</row>'.encode())
            crafted.writestr(info, data)
    with pytest.raises(ReadError) as caught:
        read_table(tmp_path / "f.xlsx")
    if named:
        assert f"cell {named} as a date or time" in caught.value.detail
    else:
        assert "a value the reader cannot convert (" in caught.value.detail
        assert "cell " not in caught.value.detail


@pytest.mark.parametrize(
    ("code", "is_date"),
    [
        (14, True),  # built-in d/m/yyyy
        (22, True),
        (0, False),
        (4, False),  # #,##0.00
        ("dd.mm.yyyy", True),
        ("[$-414]d. mmmm yyyy", True),  # a locale in brackets
        ("[h]:mm", True),  # elapsed hours
        ("yyyy-mm-dd hh:mm", True),
        ("0.00", False),
        ("[Red]0.00", False),  # a colour is no date
        ('#,##0 "kr"', False),
        ('"Dag" 0', False),  # quoted text
        ("0\\d", False),  # an escaped letter
        ("0_d", False),  # a space as wide as a "d"
        ("0;dd.mm.yyyy", False),  # only the first section decides
        (None, False),
    ],
)
def test_a_format_is_a_date_format_by_its_id_or_its_letters(code: object, is_date: bool) -> None:
    """Which cells the panic's search looks at: those shown as dates or times."""
    from filedrop.read.workbook import _is_date_format

    assert _is_date_format(code) is is_date  # type: ignore[arg-type]


def test_what_the_look_refuses_wins_over_the_childs_answer_and_the_child_is_stopped(
    tmp_path: Path,
) -> None:
    """The workbook's scan runs while the child parses: its refusal is the file's error, as if it
    had run first, even where the child would have refused the file for another reason, and no
    reader is left behind (a bomb's child must not go on inflating)."""
    far_cell_workbook(tmp_path / "far.xlsx", row=4_999, column=16_383)
    refused = ReadError(str(tmp_path / "far.xlsx"), "the look said no")
    children: list[str] = []

    def look() -> None:
        children.extend(child.name for child in multiprocessing.active_children())
        raise refused

    with pytest.raises(ReadError) as caught:
        # The child would refuse it too: no sheet has that name.
        read_excel_isolated(tmp_path / "far.xlsx", ReadOptions(sheet="Nope"), ReadLimits(), look)
    assert caught.value is refused
    assert children == ["filedrop-read"]  # the child was parsing while the look ran
    assert not multiprocessing.active_children()
