"""Memory a big file takes: freed heap given back, and live data kept from the collector.

glibc keeps what is freed in its arenas for reuse, so after reading a big CSV (the parser's
buffers) or preparing its invoices (intermediate columns) the process stays at that step's
high-water mark for the rest of the file: tens of megabytes for 200,000 rows, counted by a
container's memory limit like any other. ``malloc_trim`` hands the free pages back; long-running
workers do the same (Dask's, for one). Where there is no glibc (musl, macOS) nothing is done.

The cyclic collector, for its part, would walk a file's millions of live objects again and again
while it is mapped and sent: ``no_cyclic_gc`` and ``frozen_for_gc`` keep it off them. And the
threads that wait on sockets get the interpreter's lock sooner while one computes beside them
(``quick_switches``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import sys
import threading
from collections.abc import Callable, Iterator, Mapping

__all__ = [
    "few_malloc_arenas",
    "frozen_for_gc",
    "no_cyclic_gc",
    "quick_switches",
    "release_freed_memory",
]


@functools.cache
def _libc_function(name: str, *argtypes: type) -> Callable[..., int] | None:
    """A function of glibc's, or None where there is none (musl, macOS)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function


def _malloc_trim() -> Callable[[int], int] | None:
    return _libc_function("malloc_trim", ctypes.c_size_t)


#: glibc's mallopt parameter for the most arenas malloc keeps (malloc.h).
_M_ARENA_MAX = -8
#: One arena: the threads run Python code one at a time, under the interpreter's lock, so they
#: seldom wait for each other's malloc; what runs outside it (SQLite, TLS, zlib, numpy) mostly
#: works in buffers it already has.
MALLOC_ARENAS = 1


def few_malloc_arenas(environ: Mapping[str, str]) -> bool:
    """Have glibc's malloc keep at most ``MALLOC_ARENAS`` arenas, unless ``MALLOC_ARENA_MAX`` or
    ``GLIBC_TUNABLES`` says how many; False then, and where it cannot (no glibc).

    By default a thread that allocates while another does gets an arena of its own, up to
    eight per core, and what is freed in one arena serves only that arena's threads. A long
    file's later parts are prepared on a thread of their own while its batches go out; freed,
    their memory stayed in that thread's arena, and the outcome's columns took fresh memory
    beside it: a 200,000-row CSV peaked at 298-304 MB, at 288 MB with two arenas and at 283 MB
    with one. Call it before threads start.
    """
    if "MALLOC_ARENA_MAX" in environ or "arena_max" in environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = _libc_function("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1


def release_freed_memory() -> bool:
    """Return freed heap pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class _SharedSwitch:
    """A process-wide switch the threads share: the first one in turns it on, and only the last
    one out turns it off again (a plain save-and-restore would let a second file that came in
    while the first had it on leave it on for good)."""

    def __init__(self, switch_on: Callable[[], Callable[[], object]]) -> None:
        self._switch_on = switch_on  # returns what switches it off again
        self._switch_off: Callable[[], object] = lambda: None
        self._inside = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._switch_off = self._switch_on()
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    self._switch_off()


def _pause_collector() -> Callable[[], object]:
    was_enabled = gc.isenabled()
    gc.disable()
    return gc.enable if was_enabled else lambda: None


def _freeze() -> Callable[[], object]:
    gc.freeze()
    return gc.unfreeze


def _switch_often() -> Callable[[], object]:
    was = sys.getswitchinterval()
    sys.setswitchinterval(QUICK_SWITCH_S)
    return lambda: sys.setswitchinterval(was)


_PAUSED = _SharedSwitch(_pause_collector)
_FROZEN = _SharedSwitch(_freeze)
_QUICK = _SharedSwitch(_switch_often)

#: How long a thread that computes keeps the interpreter's lock from one that waits, while
#: ``quick_switches`` is held (Python's default is 5 ms).
QUICK_SWITCH_S = 0.0005


def quick_switches() -> contextlib.AbstractContextManager[None]:
    """Hand the interpreter's lock over every half millisecond, not every 5, while a thread
    computes beside threads that wait on sockets and the journal.

    A thread back from a socket waits for the lock until the one computing gives it up: a
    posting thread does so a dozen times a batch, so while a long file's later part was
    prepared beside them, batches went out at two thirds of their rate (the 200,000-row CSV's
    POSTs took 2.6 s longer). Held only while such a part is prepared: switching that often
    the whole run costs CPU for nothing.
    """
    return _QUICK.held()


def no_cyclic_gc() -> contextlib.AbstractContextManager[None]:
    """Pause the cyclic garbage collector while the JSON is built.

    That makes millions of small dicts and lists, none of them cyclic; the collector would rescan
    all of them again and again (over a third of the time for 200,000 rows). A caller that goes
    on using the dicts (to encode them) holds its own pause until they are gone: the collections
    put off meanwhile would otherwise scan them all. Only switched back on if it was on.
    """
    return _PAUSED.held()


def frozen_for_gc() -> contextlib.AbstractContextManager[None]:
    """Keep every object alive now out of the cyclic collector's scans while a file is sent.

    A file's table and prepared invoices are a million or so objects that live until its
    outcome is written, and each full collection while the batches go out would walk all of
    them again (over a second of CPU for 200,000 rows), to find only the little cyclic garbage
    of the requests. Frozen, they are still freed by reference counting as usual; the last one
    out unfreezes, so cycles among them are collected again afterwards.
    """
    return _FROZEN.held()
