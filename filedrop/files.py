"""Files written whole or not at all, and made to outlast a power cut.

Kept apart from the outcome, whose module loads pandas, so that the sending marks, the journal
and the health check (a container's, run every few seconds) use them without that.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["sync_folder", "temp_path", "write_atomically"]


def write_atomically(dest: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Run ``write`` on a hidden temporary file beside ``dest``, fsync it, rename it to ``dest``.

    A failure names ``dest``, the file the user knows, not the temporary one (a full disk, or a
    folder in the outcome's place: "No space left on device (.../april.outcome.csv)")."""
    tmp = temp_path(dest)
    try:
        # O_EXCL: never write into someone else's file. Mode 0o666 minus the umask, like any
        # file the user makes, so colleagues on a shared folder can open it (mkstemp: 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
    sync_folder(dest.parent)  # the rename itself made durable


def sync_folder(folder: Path) -> None:
    """Make what was renamed or made in ``folder`` durable (Windows cannot open folders)."""
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path(dest: Path) -> Path:
    """A new hidden name beside ``dest`` to write it under (``.<name>.<18 hex>.tmp``).

    24 characters longer than the outcome's name: longer than any name archive/ may keep it
    under (``stamped_names``: 23 more at most), so ``check_outcome_name`` also tells, before
    anything is sent, that the outcome can be kept aside for a later version of its input."""
    return dest.with_name(f".{dest.name}.{secrets.token_hex(9)}.tmp")
