"""Memory a big file takes: freed heap given back, and live data kept from the collector.

glibc keeps what is freed in its arenas for reuse, so after reading a big CSV (the parser's
buffers) or preparing its invoices (intermediate columns) the process stays at that step's
high-water mark for the rest of the file: tens of megabytes for 200,000 rows, counted by a
container's memory limit like any other. ``malloc_trim`` hands the free pages back; long-running
workers do the same (Dask's, for one). Where there is no glibc (musl, macOS) nothing is done.

The cyclic collector, for its part, would walk a file's millions of live objects again and again
while it is mapped and sent: ``no_cyclic_gc`` and ``frozen_for_gc`` keep it off them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import threading
from collections.abc import Callable, Iterator

__all__ = ["frozen_for_gc", "no_cyclic_gc", "release_freed_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


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


_PAUSED = _SharedSwitch(_pause_collector)
_FROZEN = _SharedSwitch(_freeze)


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
