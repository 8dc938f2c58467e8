"""filedrop: hand spreadsheets of overdue invoices to Amili's collection API, row by row.

The library behind the ``filedrop`` command; tests and other programs call it directly.
"""

from __future__ import annotations

import functools
import os

__all__ = ["__version__"]

# numpy's OpenBLAS starts a thread per core when numpy is imported, some 0.08 s of CPU on every
# run and every reader, for linear algebra filedrop never does. Set before anything imports
# numpy (this package is imported first); a value the user set stands.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def __getattr__(name: str) -> str:
    # ``__version__`` is looked up when first asked for: importlib.metadata costs some 40 ms of
    # CPU, which the workbook reader's server process, importing this package, never needs.
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("filedrop")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"
