"""Give the heap memory a big step freed back to the operating system.

glibc keeps what is freed in its arenas for reuse, so after reading a big CSV (the parser's
buffers) or preparing its invoices (intermediate columns) the process stays at that step's
high-water mark for the rest of the file: tens of megabytes for 200,000 rows, counted by a
container's memory limit like any other. ``malloc_trim`` hands the free pages back; long-running
workers do the same (Dask's, for one). Where there is no glibc (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["release_freed_memory"]


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
