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

import io
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from pathlib import Path

from filedrop.errors import ReadError
from filedrop.read.limits import ReadLimits, SheetMarks
from filedrop.read.table import ReadOptions, Table
from filedrop.read.workbook import Column, ParsedSheet, parse_sheet

__all__ = ["read_excel_isolated", "start_reader"]

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
) -> Table:
    """``read_excel`` in a child capped at ``limits.max_read_memory_bytes`` of address space.

    ``inspect`` (the sheet's XML scan, ``inspect_workbook``) runs in this process while the child
    parses: two cores do both at once, where one after the other cost a 50,000-row workbook a
    third of a second more. What it refuses is refused as if it had run first: the child is
    stopped and its answer never looked at. A bomb it would have caught first costs no more than
    its own scan, since the child's memory is capped.
    """
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _ReaderProcess(
        target=_child,
        args=(sender, path, options, limits.max_read_memory_bytes),
        name="filedrop-read",
        daemon=True,
    )
    child.start()
    sender.close()
    try:
        marks = inspect()
        try:
            ok, result = receiver.recv()
        except EOFError:
            ok, result = False, None  # the child died before it could answer
        child.join()
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        receiver.close()
    exitcode = child.exitcode
    child.close()
    if ok:
        from filedrop.read.excel import build_table  # numpy: this process only

        return build_table(path, _unpack(result), marks)
    if isinstance(result, BaseException) and not isinstance(result, MemoryError):
        raise result
    raise ReadError(
        str(path),
        "the workbook could not be read within the memory limit of "
        f"{limits.max_read_memory_bytes:,} bytes ({limits.where('max_read_memory_bytes')}; "
        f"the reader {_ending(exitcode, ran_out=result is not None)}); it is not read",
    )


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


def _child(sender: Connection, path: Path, options: ReadOptions, memory_bytes: int) -> None:
    """Cap this process's address space, parse, and send (True, sheet) or (False, exception)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    # What the child has to say it sends back; native code's own printing (a Rust panic's
    # backtrace, which the answer already names) would land in the user's terminal or log.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        answer: tuple[bool, object] = (True, _pack(parse_sheet(path, options)))
    except MemoryError:
        answer = (False, MemoryError())
    except Exception as exc:  # sent back and raised in the parent, as if read there
        answer = (False, exc)
    try:
        sender.send(answer)
    except MemoryError:
        sender.send((False, MemoryError()))
    finally:
        sender.close()


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
