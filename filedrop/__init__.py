"""filedrop: hand spreadsheets of overdue invoices to Amili's collection API, row by row.

The library behind the ``filedrop`` command; tests and other programs call it directly.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("filedrop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
