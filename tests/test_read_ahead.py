"""A workbook parsed before the run asks for it (``read_ahead``): taken only for the very bytes the
journal hashed, for whichever sheet the mapping names, and stopped when nobody takes it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from builders import erp_row, filedrop, run_env, write_erp_workbook

from filedrop.errors import ReadAgainLaterError, ReadError
from filedrop.inbox import workbook_to_read_ahead
from filedrop.read import ReadLimits, ReadOptions, isolated, read_table
from filedrop.sandbox import Sandbox


@pytest.fixture(autouse=True)
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The files a reader child was started for, in order; no read begun ahead outlives a test."""
    paths: list[Path] = []
    start = isolated._start_child

    def counted(conn, path, options, limits, **how):  # type: ignore[no-untyped-def]
        paths.append(path)
        return start(conn, path, options, limits, **how)

    monkeypatch.setattr(isolated, "_start_child", counted)
    yield paths
    isolated.drop_read_ahead()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def workbook(path: Path, sheets: dict[str, list[list[object]]], *, hidden: str = "") -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
        if name == hidden:
            sheet.sheet_state = "hidden"
    book.save(path)
    return path


def cells(path: Path, options: ReadOptions | None = None, **read: object) -> list[list[str]]:
    table = read_table(path, options or ReadOptions(), limits=ReadLimits(), **read)  # type: ignore[arg-type]
    return [table.cells[i].tolist() for i in range(len(table.headers))]


def test_a_read_begun_ahead_is_taken_and_reads_as_a_plain_read(
    tmp_path: Path, started: list[Path]
) -> None:
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr", "Beløp"], ["1001", 10.5]]})
    isolated.read_ahead(path, ReadLimits())
    assert cells(path, sha256=sha256_of(path)) == [["1001"], ["10.5"]]
    assert started == [path]  # no second child: the one begun ahead answered
    assert cells(path) == [["1001"], ["10.5"]]  # a plain read, for comparison
    assert not isolated._ahead


def test_a_file_changed_after_its_read_began_is_read_again_as_it_is_now(
    tmp_path: Path, started: list[Path]
) -> None:
    """The child begun ahead parsed the old bytes; the journal hashed the new ones: the rows are
    the new ones', never the old parse's."""
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr"], ["OLD-1"]]})
    isolated.read_ahead(path, ReadLimits())
    time.sleep(1.5)  # the child has long parsed the old bytes and waits for its options
    workbook(tmp_path / "new.xlsx", {"Ark1": [["Fakturanr"], ["NEW-1"], ["NEW-2"]]})
    os.replace(tmp_path / "new.xlsx", path)
    assert cells(path, sha256=sha256_of(path)) == [["NEW-1", "NEW-2"]]
    assert started == [path, path]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
@pytest.mark.parametrize("in_child", [True, False])
def test_bytes_other_than_the_hashed_ones_are_read_again_later(
    tmp_path: Path, suffix: str, in_child: bool
) -> None:
    """Changed between the journal's hash and the read: the rows would not be the hashed file's,
    whichever reader reads them."""
    path = tmp_path / f"a{suffix}"
    if suffix == ".csv":
        path.write_text("Fakturanr\n1001\n")
    else:
        workbook(path, {"Ark1": [["Fakturanr"], ["1001"]]})
    limits = ReadLimits(read_in_subprocess=in_child)
    assert read_table(path, limits=limits, sha256=sha256_of(path)).headers == ["Fakturanr"]
    with pytest.raises(ReadAgainLaterError) as later:
        read_table(path, limits=limits, sha256="0" * 64)
    assert str(later.value) == (
        f"{path}: it changed while it was read; it is read again once it settles"
    )
    assert later.value.replaced


def test_a_stopping_filedrop_does_not_wait_for_the_reader(tmp_path: Path) -> None:
    """A stop gives the parse up, whatever the child is doing (a native parser stuck in its
    out-of-memory handler never answered, and the run waited through SIGTERM): the child is
    ended, and the file read again later, nothing recorded against it."""
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr"], ["1001"]]})
    stop = threading.Event()
    stop.set()
    isolated.read_ahead(path, ReadLimits())
    pid = isolated._ahead[0].child.pid
    with pytest.raises(ReadAgainLaterError) as later:
        read_table(path, limits=ReadLimits(), sha256=sha256_of(path), stop=stop)
    assert not later.value.replaced
    assert str(later.value) == (
        f"{path}: not read to the end: filedrop was stopping; the next run reads it"
    )
    assert _gone(pid)
    assert not isolated._ahead


@pytest.mark.parametrize("hidden_first", [False, True])
def test_the_sheet_the_mapping_names_is_read_though_the_first_was_loaded(
    tmp_path: Path, started: list[Path], hidden_first: bool
) -> None:
    """The child begun ahead loads the first sheet; options naming another have a fresh child
    read that one (memory enough for one sheet need not hold two). A first sheet that is hidden
    (refused when read by position) does not refuse the named one."""
    path = workbook(
        tmp_path / "a.xlsx",
        {"Forside": [["Rapport"]], "Fakturaer": [["Fakturanr"], ["1001"]]},
        hidden="Forside" if hidden_first else "",
    )
    isolated.read_ahead(path, ReadLimits())
    assert cells(path, ReadOptions(sheet="Fakturaer"), sha256=sha256_of(path)) == [["1001"]]
    assert started == [path, path]


def test_a_damaged_workbook_read_ahead_gets_the_plain_reads_sentence(
    tmp_path: Path, started: list[Path]
) -> None:
    path = tmp_path / "a.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    with pytest.raises(ReadError) as plain:
        cells(path)
    isolated.read_ahead(path, ReadLimits())
    with pytest.raises(ReadError) as ahead:
        cells(path, sha256=sha256_of(path))
    assert str(ahead.value) == str(plain.value)
    assert started == [path, path, path]  # the plain read, the one ahead, and its fresh one


def test_a_read_nobody_takes_is_stopped(tmp_path: Path) -> None:
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr"], ["1001"]]})
    isolated.read_ahead(path, ReadLimits())
    pid = isolated._ahead[0].child.pid
    isolated.drop_read_ahead(tmp_path / "other.xlsx")  # another file's: this one stays
    assert isolated._ahead
    isolated.drop_read_ahead(path)
    assert not isolated._ahead
    assert _gone(pid)


def test_a_reader_writes_no_core_file(tmp_path: Path) -> None:
    """A reader that ran out of memory at its cap died of SIGABRT, and where the shell allowed
    core files (``ulimit -c unlimited``) left the parsed sheet, invoice numbers and national
    ids, in a core file in the working folder. A reader allows itself none, whatever it was
    started with."""
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr"], ["1001"]]})
    allowed = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (allowed[1], allowed[1]))  # as large as allowed
    try:
        isolated.read_ahead(path, ReadLimits())
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, allowed)
    limits = Path(f"/proc/{isolated._ahead[0].child.pid}/limits")

    def core_sizes() -> list[str]:  # soft and hard
        line = next(line for line in limits.read_text().splitlines() if "core file" in line)
        return line.split()[4:6]

    deadline = time.monotonic() + 5  # set as the child begins
    while core_sizes() != ["0", "0"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert core_sizes() == ["0", "0"]


#: A read begun ahead by a single-threaded process, as the command line's is (forked), whose
#: child is slow to start, sent a Ctrl-C as it starts; then the read taken.
_CTRL_C_AS_THE_READER_STARTS = """
import hashlib, os, signal, sys, time
from pathlib import Path
from filedrop.read import ReadLimits, isolated, read_table
path = Path(sys.argv[1])
starts, start = [], isolated._start_child
isolated._start_child = lambda *a, **k: starts.append(1) or start(*a, **k)
isolated._die_with = lambda parent: time.sleep(1.0)  # before the child sets its handlers
isolated.read_ahead(path, ReadLimits())
os.kill(isolated._ahead[0].child.pid, signal.SIGINT)
digest = hashlib.sha256(path.read_bytes()).hexdigest()
print(read_table(path, limits=ReadLimits(), sha256=digest).headers, len(starts))
"""


def test_a_ctrl_c_as_a_forked_reader_starts_waits_for_its_own_handlers(tmp_path: Path) -> None:
    """Until a forked reader sets its own handlers it has the command line's: a Ctrl-C to the
    process group in that moment printed a KeyboardInterrupt's traceback into the terminal
    (from the reader's start, or as "Process filedrop-read:" from its code). Held until then,
    it is ignored, and the read begun goes on and is taken."""
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr"], ["1001"]]})
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_AS_THE_READER_STARTS, str(path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "['Fakturanr'] 1\n", "")


def _gone(pid: int | None, timeout_s: float = 5.0) -> bool:
    """Whether process ``pid`` ended (gone, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + timeout_s
    status = Path(f"/proc/{pid}/status")
    while time.monotonic() < deadline:
        try:
            if "\nState:\tZ" in status.read_text():
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_only_a_first_workbook_without_an_outcome_is_read_ahead(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    assert workbook_to_read_ahead(inbox) is None  # not there: the run says so
    inbox.mkdir()
    first = workbook(inbox / "b.xlsx", {"Ark1": [["Fakturanr"], ["1001"]]})
    later = inbox / "c.csv"
    later.write_text("Fakturanr\n1002\n")
    os.utime(first, (1_000_000_000, 1_000_000_000))
    assert workbook_to_read_ahead(inbox) == first
    (inbox / "b.outcome.xlsx").write_bytes(b"done before")
    assert workbook_to_read_ahead(inbox) is None  # most likely done before, and skipped
    (inbox / "b.outcome.xlsx").unlink()
    os.utime(later, (900_000_000, 900_000_000))
    assert workbook_to_read_ahead(inbox) is None  # the run takes the CSV first


def test_a_run_reads_its_first_workbook_ahead_and_a_second_run_does_not(
    inbox: Path, sandbox: Sandbox, started: list[Path]
) -> None:
    """Begun before the run's imports, the read is the one the run takes; the next run finds the
    outcome beside the file and parses nothing, and sends nothing again."""
    path = write_erp_workbook(inbox / "mars.xlsx", [erp_row("1001"), erp_row("1002")])
    os.utime(path, (1_000_000_000, 1_000_000_000))
    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url))
    assert "mars.xlsx: 2 SUCCEEDED" in out
    assert started == [path]
    filedrop("run", environ=run_env(inbox, sandbox.url))
    assert started == [path]
    assert sandbox.counters().invoices_received == 2


def test_the_command_line_reads_ahead_before_numpy_is_imported() -> None:
    """What runs before the read begins (the command line, its settings, the look at the inbox)
    imports no numpy or pandas: their tenth of a second and more would delay the parse."""
    code = (
        "import sys, filedrop.cli, filedrop.read.isolated; "
        "print(sorted({'numpy', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_reader_killed_from_outside_is_no_verdict_on_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM to the reader (a kill of the process group, an operator) is not the file's doing:
    read again later, never an ERROR kept against its bytes."""
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr"], ["1001"]]})
    start = isolated._start_child

    def killed(conn, path, options, limits, **how):  # type: ignore[no-untyped-def]
        child = start(conn, path, options, limits, **how)
        os.kill(child.pid, signal.SIGTERM)
        return child

    monkeypatch.setattr(isolated, "_start_child", killed)
    with pytest.raises(ReadAgainLaterError) as later:
        read_table(path, limits=ReadLimits(), sha256=sha256_of(path))
    assert str(later.value) == (
        f"{path}: not read to the end: its reader was stopped by SIGTERM from outside; "
        "it is read again"
    )
    assert not (later.value.replaced or later.value.stopped)


def test_a_single_threaded_command_line_forks_its_reader_and_a_threaded_one_does_not(
    tmp_path: Path,
) -> None:
    """Forked from the command line, the read begins without a server's interpreter to start;
    with a second thread about, forking could copy a lock held mid-use, so the server forks it.
    Either way the rows are the file's."""
    path = workbook(tmp_path / "a.xlsx", {"Ark1": [["Fakturanr", "Beløp"], ["1001", 10.5]]})
    code = (
        "import hashlib, sys, threading\n"
        "from pathlib import Path\n"
        "from filedrop.read import ReadLimits, ReadOptions, isolated, read_table\n"
        "path = Path(sys.argv[1])\n"
        "if sys.argv[2] == 'threaded':\n"
        "    done = threading.Event()\n"
        "    threading.Thread(target=done.wait).start()\n"
        "isolated.read_ahead(path, ReadLimits())\n"
        "print(type(isolated._ahead[0].child).__name__)\n"
        "table = read_table(path, ReadOptions(), limits=ReadLimits(),\n"
        "                   sha256=hashlib.sha256(path.read_bytes()).hexdigest())\n"
        "print([table.cells[i].tolist() for i in range(len(table.headers))])\n"
        "if sys.argv[2] == 'threaded':\n"
        "    done.set()\n"
    )
    answers = {
        how: subprocess.run(
            [sys.executable, "-c", code, str(path), how],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split("\n")[:2]
        for how in ("alone", "threaded")
    }
    assert answers == {
        "alone": ["ForkProcess", "[['1001'], ['10.5']]"],
        "threaded": ["_ReaderProcess", "[['1001'], ['10.5']]"],
    }


def _forked_children(pid: int) -> list[int]:
    """The processes ``pid`` forked that still run as copies of it (same command line), not
    the programs it ran (Linux's own lists)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(child) for child in listed.read_text().split()] if listed.exists() else []
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    copies = []
    for child in children:
        # A child may end between the listing and the read: its entry gone (FileNotFoundError),
        # or opened and then empty of a process (ProcessLookupError), which failed a CI run.
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if Path(f"/proc/{child}/cmdline").read_bytes() == own:
                copies.append(child)
    return copies


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}  # dead, whether or not anyone reaped it yet


def test_a_run_killed_outright_leaves_no_reader_parsing_for_nobody(
    inbox: Path, sandbox: Sandbox
) -> None:
    """SIGKILL (or the kernel's out-of-memory killer) ends ``filedrop run`` while its read begun
    ahead waits for options: the reader ends with it, and lets go of the run's output, which it
    had kept open (a pipe reading the run never ended). Forked, it held the run's own end of its
    pipe, so it waited for ever, holding the sheet's memory."""
    path = write_erp_workbook(inbox / "a.xlsx", [erp_row(str(1000 + i)) for i in range(2_000)])
    os.utime(path, (1_000_000_000, 1_000_000_000))
    run = subprocess.Popen(
        [sys.executable, "-m", "filedrop", "run"],
        env={**os.environ, **run_env(inbox, sandbox.url)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not (readers := _forked_children(run.pid)):
        assert run.poll() is None and time.monotonic() < deadline, "no read was begun ahead"
        time.sleep(0.002)
    run.kill()
    run.communicate(timeout=10)  # its output ends: nothing else holds it open
    deadline = time.monotonic() + 10
    while not all(_ended(pid) for pid in readers):
        assert time.monotonic() < deadline, f"the reader {readers} outlived its run"
        time.sleep(0.02)
    assert sandbox.counters().invoices_received == 0
