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
from multiprocessing.connection import Connection
from pathlib import Path

from filedrop.errors import ReadError
from filedrop.read.excel import read_excel
from filedrop.read.limits import ReadLimits
from filedrop.read.table import ReadOptions, Table

__all__ = ["read_excel_isolated"]

_CONTEXT = multiprocessing.get_context("forkserver")
# "__main__" too: the server imports it once, rather than every child (as multiprocessing does)
_CONTEXT.set_forkserver_preload(["__main__", "filedrop.read.excel"])


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
        return result
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
        answer: tuple[bool, object] = (True, read_excel(path, options))
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
