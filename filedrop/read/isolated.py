"""Parse a workbook in a child process with a memory limit, so native code cannot end the run.

calamine is native code: a runaway allocation there aborts the whole interpreter, which no
``except`` can catch. The child is forked from a small server process (multiprocessing's
"forkserver", which has this module imported once and no threads, so forking it is safe and
quick), caps its own address space, parses, and sends the parsed sheet back; this process makes
the ``Table`` of it. A child that dies or runs out of memory becomes a ``ReadError`` for that file
alone.

The server and the child import only what parsing needs (calamine), never numpy, pandas or the
command line: this module and everything it imports at its top stay free of them.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from multiprocessing.process import BaseProcess
from pathlib import Path

from filedrop.errors import ReadAgainLaterError, ReadError
from filedrop.read.limits import ReadLimits, SheetMarks
from filedrop.read.table import ReadOptions, Table, read_input_bytes
from filedrop.read.workbook import Column, LoadedSheet, ParsedSheet, finish_sheet, load_sheet

__all__ = [
    "drop_read_ahead",
    "read_ahead",
    "read_excel_isolated",
    "reading_ahead",
    "start_reader",
]

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


class _Popen(popen_forkserver.Popen):
    """Starts the child without the parent's ``__main__``.

    multiprocessing has a child run the parent's main script again (as ``__mp_main__``) when the
    program was started as a script, such as the ``filedrop`` command: that would import the
    whole command line into every reader. The child's work is all in this module, so main is left
    out of what the child is told to prepare; the rest is multiprocessing's own launch.
    """

    def _launch(self, process_obj: multiprocessing.process.BaseProcess) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)  # type: ignore[attr-defined]
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        # As multiprocessing does: a duplicate of the data pipe's write end is the sentinel of
        # this process that the child watches.
        parent_alive = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_alive, self.sentinel))
        with os.fdopen(w, "wb") as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _ReaderProcess(ForkServerProcess):
    """A forkserver process started by ``_Popen``."""

    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> _Popen:  # noqa: N802
        return _Popen(process_obj)


def start_reader() -> None:
    """Start the reader's server now, so that its imports (about a tenth of a second of CPU)
    overlap whatever comes before the first workbook instead of delaying it; idempotent."""
    forkserver.ensure_running()


def read_excel_isolated(
    path: Path,
    options: ReadOptions,
    limits: ReadLimits,
    inspect: Callable[[], SheetMarks | None] = lambda: None,
    *,
    sha256: str | None = None,
    stop: threading.Event | None = None,
) -> Table:
    """``read_excel`` in a child capped at ``limits.max_read_memory_bytes`` of address space.

    ``inspect`` (the sheet's XML scan, ``inspect_workbook``) runs in this process while the child
    parses: two cores do both at once, where one after the other cost a 50,000-row workbook a
    third of a second more. What it refuses is refused as if it had run first: the child is
    stopped and its answer never looked at. A bomb it would have caught first costs no more than
    its own scan, since the child's memory is capped.

    ``sha256`` is the hash of the bytes the caller means (the journal's): the child hashes the
    bytes it parsed, and a file that changed since is ``ReadAgainLaterError``, so the rows are
    always those of the hashed file. With it, a read of ``path`` begun ahead (``read_ahead``)
    is taken instead of starting one; one that parsed other bytes, or not the sheet
    ``options`` name, or failed, is replaced by a fresh child. ``stop`` set stops the child
    (``ReadAgainLaterError``): whatever the child does, a stopping filedrop does not wait.
    """
    ahead = _take_ahead(path, limits) if sha256 is not None else None
    if ahead is not None:
        child, receiver, started = ahead.child, ahead.conn, ahead.started
        with contextlib.suppress(OSError):
            receiver.send(options)  # a child that died meanwhile answers nothing: read again
    else:
        child, receiver = _started(path, options, limits)
        started = time.monotonic()
    try:
        marks = inspect()
    except BaseException:
        _end(child, receiver)
        raise
    ok, result, digest, exitcode = _answer(
        path, child, receiver, stop, limits=limits, started=started
    )
    if ahead is not None and (ok is None or digest != sha256):
        # Begun before the file was hashed, it parsed other bytes, or none; or it holds another
        # sheet, or failed (memory short of one sheet leaves none for another): as never begun.
        started = time.monotonic()
        ok, result, digest, exitcode = _answer(
            path, *_started(path, options, limits), stop, limits=limits, started=started
        )
    if sha256 is not None and digest is not None and digest != sha256:
        raise ReadAgainLaterError(str(path), ReadAgainLaterError.REPLACED)
    if ok is False and result is None and exitcode is not None and -exitcode in _FROM_OUTSIDE:
        # Sent to the reader (a kill of the process group, an operator): not the file's doing.
        signal_name = signal.Signals(-exitcode).name
        raise ReadAgainLaterError(str(path), ReadAgainLaterError.KILLED.format(signal_name))
    if ok:
        from filedrop.read.excel import build_table  # numpy: this process only

        return build_table(path, _unpack(result), marks)  # type: ignore[arg-type]
    if isinstance(result, BaseException) and not isinstance(result, MemoryError):
        raise result
    raise ReadError(
        str(path),
        "the workbook could not be read within the memory limit of "
        f"{limits.max_read_memory_bytes:,} bytes ({limits.where('max_read_memory_bytes')}; "
        f"the reader {_ending(exitcode, ran_out=result is not None)}); it is not read",
    )


#: The signals people send to stop a process; the ones a parse itself ends by (SIGKILL from the
#: kernel's out-of-memory killer, SIGABRT or SIGSEGV from native code) say something of the file.
_FROM_OUTSIDE = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})

#: How often a wait for the child looks whether filedrop is stopping.
_STOP_CHECK_S = 0.1


def _answer(
    path: Path,
    child: BaseProcess,
    receiver: Connection,
    stop: threading.Event | None,
    *,
    limits: ReadLimits,
    started: float,
) -> tuple[bool | None, object, str | None, int | None]:
    """The child's answer (ok, sheet or exception, digest) and how it ended, once it ends.

    Nothing here waits on the child alone: a stop ends the wait, and the child with it, and so
    does ``limits.max_read_s`` from the child's start, ``started`` (a reader stuck in native
    code would hold a run, or one of the daemon's workers, for good)."""
    deadline = started + limits.max_read_s
    try:
        # Stopping is looked at first: a stop set before is a stop too. An ended child reads
        # as an answer (EOF).
        while stop is None or not stop.is_set():
            if receiver.poll(min(_STOP_CHECK_S, max(deadline - time.monotonic(), 0))):
                break
            if time.monotonic() >= deadline:
                raise ReadError(
                    str(path),
                    f"the workbook could not be read within {limits.max_read_s:g} s "
                    f"({limits.where('max_read_s')}); its reader was stopped; it is not read",
                )
        else:
            raise ReadAgainLaterError(str(path), ReadAgainLaterError.STOPPED)
        try:
            ok, result, digest = receiver.recv()
        except (EOFError, OSError):
            # The child died before it could answer; one that died with options it had not
            # read yet (a read begun ahead) resets the connection rather than closing it.
            ok, result, digest = False, None, None
        child.join()
    finally:
        _end(child, receiver)
    exitcode = child.exitcode
    child.close()
    return ok, result, digest, exitcode


def _end(child: BaseProcess, receiver: Connection) -> None:
    """Stop ``child`` if it still runs, and close this process's end of its pipe."""
    if child.is_alive():
        child.kill()
        child.join()
    receiver.close()


def _started(
    path: Path, options: ReadOptions, limits: ReadLimits
) -> tuple[BaseProcess, Connection]:
    """A reader child of ``path`` with its options, and the end its answer comes on."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    return _start_child(sender, path, options, limits), receiver


def _start_child(
    conn: Connection,
    path: Path,
    options: ReadOptions | None,
    limits: ReadLimits,
    *,
    forked: bool = False,
    parents_end: int | None = None,
) -> BaseProcess:
    """A started reader child of ``path`` answering on ``conn`` (this process's end closed):
    ``forked`` from this very process, which closes its copy of ``parents_end`` (this
    process's end of a two-way pipe), else from the reader's server, which has none."""
    forking = forked and _FORK is not None
    make = _FORK.Process if forking else _ReaderProcess
    child = make(
        target=_child,
        args=(
            conn,
            path,
            options,
            limits.max_read_memory_bytes,
            parents_end if forking else None,
        ),
        name="filedrop-read",
        daemon=True,
    )
    if forking:
        # Held until the child has its own handlers (``_child``): meanwhile it has the command
        # line's, and a Ctrl-C reaching the process group printed a KeyboardInterrupt's
        # traceback from it, a SIGTERM only set its copy of the stop. Held, they wait for it.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_AT_FORK)
        try:
            child.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    else:
        child.start()
    conn.close()
    return child


#: The signals a forked child holds until it has its own handlers for them.
_HELD_AT_FORK = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@dataclass(frozen=True)
class _Ahead:
    """A reader child begun before anyone asked, waiting for the options on ``conn``."""

    path: Path
    memory_bytes: int
    child: BaseProcess
    conn: Connection
    started: float  # time.monotonic() when it began: FILEDROP_MAX_READ_S counts from then


#: A child forked from this process starts in a few milliseconds, where the reader's server
#: first has to start an interpreter and import the parser (a tenth of a second or more, all of
#: it before the parse of a run's first workbook). Forking is safe only while this process has
#: a single thread, as the command line has when it begins its read ahead.
_FORK = (
    multiprocessing.get_context("fork")
    if "fork" in multiprocessing.get_all_start_methods()
    else None
)

_ahead: list[_Ahead] = []  # at most one
_ahead_lock = threading.Lock()


def read_ahead(path: Path, limits: ReadLimits) -> None:
    """Begin parsing the workbook ``path`` now, before the run asks for it.

    ``filedrop run`` calls it for the inbox's first file before the rest of filedrop loads, so
    that calamine's parse (about a second for 50,000 rows) overlaps those imports, the token and
    the journal (half a second or more) instead of following them. The child loads the first
    sheet, then waits for the options of the mapping that reads the file (another sheet is loaded
    then). ``read_excel_isolated`` takes it only for the very bytes the journal hashed; a child
    nobody takes is stopped by ``drop_read_ahead``, or ends when this process does.
    """
    with _ahead_lock:
        if _ahead:
            return
        parent_end, child_end = _CONTEXT.Pipe(duplex=True)
        alone = threading.active_count() == 1
        child = _start_child(
            child_end, path, None, limits, forked=alone, parents_end=parent_end.fileno()
        )
        _ahead.append(
            _Ahead(path, limits.max_read_memory_bytes, child, parent_end, time.monotonic())
        )


def drop_read_ahead(path: Path | None = None) -> None:
    """Stop the read begun ahead of ``path`` (of any file without it) if nobody took it: a file
    skipped, or a run that ended before its first file, does not keep its parse in memory."""
    with _ahead_lock:
        dropped = [a for a in _ahead if path is None or a.path == path]
        for ahead in dropped:
            _ahead.remove(ahead)
    for ahead in dropped:
        ahead.conn.close()  # the child, waiting for its options, ends at once
        ahead.child.kill()
        ahead.child.join()
        ahead.child.close()


def reading_ahead(path: Path) -> bool:
    """Whether a read of ``path`` was begun ahead and not yet taken."""
    with _ahead_lock:
        return any(ahead.path == path for ahead in _ahead)


def _take_ahead(path: Path, limits: ReadLimits) -> _Ahead | None:
    with _ahead_lock:
        for ahead in _ahead:
            if ahead.path == path and ahead.memory_bytes == limits.max_read_memory_bytes:
                _ahead.remove(ahead)
                return ahead
    return None


def _ending(exitcode: int | None, *, ran_out: bool) -> str:
    """How the child ended, in words: out of memory, killed by a signal, or an exit code."""
    if ran_out:
        return "ran out of memory"
    if exitcode is not None and exitcode < 0:
        try:
            return f"was stopped by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was stopped by signal {-exitcode}"
    return f"exited with code {exitcode}"


def _child(
    conn: Connection,
    path: Path,
    options: ReadOptions | None,
    memory_bytes: int,
    parents_end: int | None = None,
) -> None:
    """Cap this process's address space, parse, and send (True, sheet) or (False, exception),
    each with the SHA-256 of the bytes parsed (None if none were read).

    Without ``options`` (a read begun ahead) the first sheet is loaded, then the options are
    awaited on ``conn`` (the parent closing it instead ends the child); unless that sheet
    loaded and is the one they name, the answer is (None, None, digest): read afresh.
    ``parents_end`` is the parent's end of that pipe, which a forked child holds a copy of.
    """
    parent = os.getppid()
    if parents_end is not None:
        # Held here too, the parent's end would never close when the parent dies: this child
        # waited for options (or to send its answer) for ever, holding the sheet's memory.
        os.close(parents_end)
    _die_with(parent)
    # What the child has to say it sends back; native code's own printing (a Rust panic's
    # backtrace, which the answer already names) would land in the user's terminal or log,
    # and a forked child holding the command's output open kept a pipe reading it from ending.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    # No core file: one that ran out of memory at its cap dies of SIGABRT (calamine's failed
    # allocation), and where the user's shell allows core files that wrote the parsed sheet,
    # invoice numbers and national ids, into the working folder, where nothing removed it.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    # A limit beyond what the kernel's type holds is no limit (setrlimit refused it).
    wanted = min(memory_bytes, _MOST_ADDRESS_SPACE)
    soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    # One parse, then the process ends: the cyclic collector would only walk the sheet's rows
    # again and again while they are turned into columns (0.16 s instead of 0.09 for 50,000
    # rows), to find next to no garbage, which the end frees anyway.
    gc.disable()
    # Ctrl-C and a terminal's hangup reach the whole process group: the parent decides what a
    # stop means for the file (it ends this child), so this child does not die of them first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # A child forked from the command line has its handlers: SIGTERM ends a reader, as ever.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_AT_FORK)  # a SIGTERM held ends it now
    # No Rust backtrace, whatever the user's environment says: printing one reads the library's
    # debug symbols into memory, and when the panic came from memory running out at the cap, that
    # allocation fails too, and Rust's handler for it waits for the lock the backtrace holds:
    # with RUST_BACKTRACE=1 a parse that ran out of memory hung instead of ending.
    os.environ["RUST_BACKTRACE"] = "0"
    digest = None
    answer: tuple[bool | None, object, str | None]
    try:
        data = read_input_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if options is None:
            loaded = _load(path, data, _GUESSED_SHEET)
            try:
                options = conn.recv()
            except EOFError:
                return  # not wanted
            if loaded is None or options.sheet != _GUESSED_SHEET:
                answer = (None, None, digest)
                loaded = None  # freed before the answer goes
            else:
                answer = (True, _pack(finish_sheet(path, options, loaded)), digest)
        else:
            loaded_sheet = load_sheet(path, data, options.sheet)
            answer = (True, _pack(finish_sheet(path, options, loaded_sheet)), digest)
    except MemoryError:
        answer = (False, MemoryError(), digest)
    except Exception as exc:  # sent back and raised in the parent, as if read there
        answer = (False, exc, digest)
    try:
        conn.send(answer)
    except MemoryError:
        conn.send((False, MemoryError(), digest))
    finally:
        conn.close()


#: The sheet a read begun ahead loads while it waits for the mapping's options: the default,
#: which most mappings keep.
_GUESSED_SHEET = ReadOptions().sheet

#: The largest address-space limit setrlimit takes (a signed 64-bit number).
_MOST_ADDRESS_SPACE = 2**63 - 1

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> None:
    """Have the kernel kill this child when ``parent`` (the process that started it) dies,
    where Linux can: a run killed outright (SIGKILL, the kernel's out-of-memory killer) leaves
    no reader parsing on for nobody. Elsewhere the closed pipe ends it at its next word."""
    import ctypes  # here, in the child: the command line reaches its read ahead sooner

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # died before the kernel was asked
        os._exit(0)


def _load(path: Path, data: bytes, wanted: str | int) -> LoadedSheet | None:
    """``load_sheet``, or None if it failed in any way: a read begun ahead that failed is done
    again by a fresh child, which says why, for the sheet the mapping names."""
    try:
        return load_sheet(path, data, wanted)
    except Exception:  # said by the fresh child
        return None


# Pickling a column of strings goes string by string; one joined string crosses the pipe several
# times faster. Numbers and dates already travel as arrays.
_SEPARATOR = "\x00"


def _pack(sheet: ParsedSheet) -> ParsedSheet:
    return replace(sheet, columns=[_pack_column(c) for c in sheet.columns])


def _unpack(sheet: ParsedSheet) -> ParsedSheet:
    return replace(sheet, columns=[_unpack_column(c) for c in sheet.columns])


def _pack_column(column: Column) -> Column:
    if column.kind != "text":
        return column
    cells: Sequence[str] = column.data  # type: ignore[assignment]
    joined = _SEPARATOR.join(cells)
    if joined.count(_SEPARATOR) != max(len(cells) - 1, 0):
        return column  # a cell holds the separator itself
    return Column("joined", (joined, len(cells)))


def _unpack_column(column: Column) -> Column:
    if column.kind != "joined":
        return column
    joined, length = column.data  # type: ignore[misc]
    return Column("text", joined.split(_SEPARATOR) if length else [])
