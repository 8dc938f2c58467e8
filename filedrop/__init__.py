"""filedrop: hand spreadsheets of overdue invoices to Amili's collection API, row by row.

The library behind the ``filedrop`` command; tests and other programs call it directly.
"""

from __future__ import annotations

import os

__all__ = ["__version__"]

# The release, here and nowhere else: pyproject.toml reads it from this line when the package is
# built. Looking it up in the installed metadata instead (importlib.metadata) cost every run some
# 30 ms of CPU before its first request, for the command line's --version and the User-Agent.
__version__ = "0.1.0"

# numpy's OpenBLAS starts a thread per core when numpy is imported, some 0.08 s of CPU on every
# run and every reader, for linear algebra filedrop never does. Set before anything imports
# numpy (this package is imported first); a value the user set stands.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
