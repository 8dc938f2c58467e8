"""Parse a workbook in a child process with a memory limit, so native code cannot end the run.

calamine is native code: a runaway allocation there aborts the whole interpreter, which no
``except`` can catch. The child is forked from a small server process (multiprocessing's
"forkserver", which has the readers imported once and no threads, so forking it is safe and
quick), caps its own address space, parses, and sends the ``Table`` back pickled. A child that dies
or runs out of memory becomes a ``ReadError`` for that file alone.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
from dataclasses import dataclass, replace
from datetime import date
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pandas as pd

from filedrop.errors import ReadError
from filedrop.read.excel import read_excel
from filedrop.read.limits import ReadLimits
from filedrop.read.table import ReadOptions, Table, column_frame

__all__ = ["read_excel_isolated", "start_reader"]

_CONTEXT = multiprocessing.get_context("forkserver")
# "__main__" too: the server imports it once, rather than every child (as multiprocessing does)
_CONTEXT.set_forkserver_preload(["__main__", "filedrop.read.excel"])


def start_reader() -> None:
    """Start the reader's server now, so that its imports (about half a second of CPU) overlap
    whatever comes before the first workbook instead of delaying it; idempotent."""
    forkserver.ensure_running()


def read_excel_isolated(path: Path, options: ReadOptions, limits: ReadLimits) -> Table:
    """``read_excel`` in a child capped at ``limits.max_read_memory_bytes`` of address space."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(
        target=_child,
        args=(sender, path, options, limits.max_read_memory_bytes),
        name="filedrop-read",
        daemon=True,
    )
    child.start()
    sender.close()
    try:
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
        return _unpack(result)
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
    """Cap this process's address space, read, and send (True, Table) or (False, exception)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    try:
        answer: tuple[bool, object] = (True, _pack(read_excel(path, options)))
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


# Pickling a Table's columns cell by cell costs more than reading the workbook in the child, so
# the common columns travel in bulk: text as one string, dates as day numbers, and a typed column
# that is just its text column with None for "" as a marker.
_SEPARATOR = "\x00"
_Column = tuple[str, object]


@dataclass(frozen=True)
class _Packed:
    """A ``Table`` in the form that crosses the pipe quickly."""

    table: Table  # with empty frames; the columns travel below
    cells: list[_Column]
    values: list[_Column]


def _pack(table: Table) -> _Packed:
    cells = [_pack_column(table.cells[i].to_numpy()) for i in table.cells.columns]
    values = []
    for i in table.values.columns:
        typed, text = table.values[i].to_numpy(), table.cells[i].to_numpy()
        if cells[i][0] == "text" and _is_text_or_none(typed) and _blank_is_none(typed, text):
            values.append(("as-cells", None))
        else:
            values.append(_pack_column(typed))
    return _Packed(replace(table, cells=pd.DataFrame(), values=pd.DataFrame()), cells, values)


def _unpack(packed: _Packed) -> Table:
    cells = [_unpack_column(column) for column in packed.cells]
    values = [
        np.where(text == "", None, text) if kind == "as-cells" else _unpack_column((kind, data))
        for text, (kind, data) in zip(cells, packed.values, strict=True)
    ]
    keep = np.ones(len(packed.table.row_numbers), dtype=bool)
    return replace(packed.table, cells=column_frame(cells, keep), values=column_frame(values, keep))


def _pack_column(column: np.ndarray) -> _Column:
    kinds = set(map(type, column))
    if kinds <= {str}:
        joined = _SEPARATOR.join(column)
        if joined.count(_SEPARATOR) == max(len(column) - 1, 0):
            return ("text", (joined, len(column)))
    if kinds <= {date, type(None)} and len(kinds - {type(None)}) == 1:
        ordinals = np.fromiter(
            (0 if d is None else d.toordinal() for d in column), dtype=np.int64, count=len(column)
        )
        return ("dates", ordinals)
    return ("objects", column)


def _unpack_column(column: _Column) -> np.ndarray:
    kind, data = column
    if kind == "text":
        joined, length = data  # type: ignore[misc]
        out = np.empty(length, dtype=object)
        if length:
            out[:] = joined.split(_SEPARATOR)
        return out
    if kind == "dates":
        out = np.empty(len(data), dtype=object)  # type: ignore[arg-type]
        out[:] = [None if n == 0 else date.fromordinal(n) for n in data.tolist()]  # type: ignore[union-attr]
        return out
    return data  # type: ignore[return-value]


def _is_text_or_none(column: np.ndarray) -> bool:
    return set(map(type, column)) <= {str, type(None)}


def _blank_is_none(typed: np.ndarray, text: np.ndarray) -> bool:
    """Whether ``typed`` is ``text`` with None where ``text`` is "" (the reader's rule)."""
    return bool((np.where(text == "", None, text) == typed).all())
