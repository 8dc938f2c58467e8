"""Which files in the inbox are inputs, and when a file is whole enough to take.

Events from an observer are only hints; these functions look at the folder itself. Nothing here
reads a file's contents except ``content_hash`` (and the one-byte open check for readiness).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filedrop.read import INPUT_SUFFIXES

OUTCOME_SUFFIXES = (".outcome.xlsx", ".outcome.csv")

# First match wins: (reason logged, test on the name). Lock files come before "hidden file" so the
# log says what they are; the outcome writer's temporary files start with "." and are hidden.
_IGNORE_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("Excel lock file", lambda name: name.startswith("~$")),
    ("LibreOffice lock file", lambda name: name.startswith(".~lock.") and name.endswith("#")),
    ("macOS resource file", lambda name: name.startswith("._")),
    ("macOS folder settings", lambda name: name == ".DS_Store"),
    ("hidden file", lambda name: name.startswith(".")),
    ("Windows thumbnail cache", lambda name: name.lower() == "thumbs.db"),
    ("Windows folder settings", lambda name: name.lower() == "desktop.ini"),
    ("temporary file", lambda name: name.lower().endswith(".tmp")),
    ("partial upload", lambda name: name.lower().endswith((".part", ".filepart"))),
    ("partial download", lambda name: name.lower().endswith(".crdownload")),
    ("outcome file", lambda name: name.lower().endswith(OUTCOME_SUFFIXES)),
    ("not a spreadsheet", lambda name: not name.lower().endswith(INPUT_SUFFIXES)),
)
_HASH_CHUNK_BYTES = 1024 * 1024


def is_outcome_file(path: Path) -> bool:
    """True for ``<stem>.outcome.xlsx`` / ``<stem>.outcome.csv``: filedrop's own output."""
    return path.name.lower().endswith(OUTCOME_SUFFIXES)


def ignore_reason(path: Path) -> str | None:
    """Why ``path`` is not an input (a short phrase for the log), or None for a candidate.

    Decided by name alone, so it also works for a path that has just vanished; only a name that
    looks like an input costs one ``stat`` to rule out a folder named like a file.
    """
    reason = _reason_by_name(path.name)
    if reason is None and path.is_dir():
        return "sub-folder"
    return reason


def _reason_by_name(name: str) -> str | None:
    for reason, matches in _IGNORE_RULES:
        if matches(name):
            return reason
    return None


#: The folder inside the inbox where the journal lives by default.
STATE_FOLDER = ".filedrop"


def scan(inbox: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(candidates oldest first, ignored with their reason) among the inbox's direct children.

    Sub-folders (``archive/``, ``@eaDir``) are ignored, not entered. A file that vanishes during the
    scan (or a dangling link) is simply left out. Raises ``OSError`` when the inbox itself cannot be
    listed. Candidates are ordered by modification time, then name, so a burst is taken in order.
    """
    found: list[tuple[int, str, Path]] = []
    ignored: list[tuple[Path, str]] = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            if entry.name == STATE_FOLDER:
                continue  # filedrop's own journal folder: not worth a log line on every scan
            path = Path(entry.path)
            try:
                info = entry.stat()  # follows links, like opening the file would
            except FileNotFoundError:
                continue  # gone between listing and looking: nothing to do
            if stat.S_ISDIR(info.st_mode):
                reason: str | None = "sub-folder"
            elif not stat.S_ISREG(info.st_mode):
                reason = "not a regular file"
            else:
                reason = _reason_by_name(entry.name)
            if reason is None:
                found.append((info.st_mtime_ns, entry.name, path))
            else:
                ignored.append((path, reason))
    found.sort()
    ignored.sort()
    return [path for _, _, path in found], ignored


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (hex), read in 1 MiB chunks so big files use little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """What changes while a file is still being written."""

    size: int
    mtime_ns: int


def snapshot(path: Path) -> Snapshot | None:
    """Size and modification time of ``path`` now; None if it is gone."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Snapshot(size=info.st_size, mtime_ns=info.st_mtime_ns)


def _opens(path: Path) -> bool:
    """True if the file can be opened and read; Windows refuses while a writer holds it."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


class StabilityTracker:
    """Decides when a file is whole: non-empty, unchanged for a window, and openable.

    Close events and file age are not trusted (scanners and SMB clients open and close a file
    several times while writing it), so readiness is what repeated snapshots show.
    """

    def __init__(
        self, *, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        # path -> (last snapshot, clock time it was first seen with that snapshot)
        self._seen: dict[Path, tuple[Snapshot, float]] = {}

    def is_ready(self, path: Path) -> bool:
        """True once ``path`` is non-empty, unchanged for ``window_s`` seconds, and opens.

        The first call with a new size or mtime starts the window again; with ``window_s=0`` a
        non-empty file that opens is ready at once. A vanished file is forgotten.
        """
        path = Path(path)
        now = self._clock()
        current = snapshot(path)
        if current is None:
            self.forget(path)
            return False
        previous = self._seen.get(path)
        if previous is None or previous[0] != current:
            self._seen[path] = (current, now)
            since = now
        else:
            since = previous[1]
        if current.size == 0 or now - since < self.window_s:
            return False
        return _opens(path)

    def forget(self, path: Path) -> None:
        """Drop what is known about ``path`` (processed, or gone)."""
        self._seen.pop(Path(path), None)
