"""``python -m filedrop``, and the ``filedrop`` command: the command line, once it has loaded.

Kept apart from ``filedrop.cli`` so that a Ctrl-C while that loads (most of a start: pandas,
numpy) ends as one line and exit 130, as it does once the command runs, rather than as a
traceback: this module imports nothing of filedrop's until it is called.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def console() -> NoReturn:
    """Load the command line and run it (``cli.console``)."""
    try:
        from filedrop.cli import console as run
    except KeyboardInterrupt:
        sys.stderr.write("filedrop: interrupted.\n")  # as ``cli.main`` says it once loaded
        sys.stderr.flush()
        os._exit(130)
    run()


if __name__ == "__main__":
    console()
