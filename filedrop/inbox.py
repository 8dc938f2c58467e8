"""Which files in the inbox are inputs, and when a file is whole enough to take.

Events from an observer are only hints; these functions look at the folder itself. Nothing here
reads a file's contents except ``hash_file`` (and the one-byte open check for readiness), and
nothing follows a symbolic link: only regular files directly in the inbox are inputs.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filedrop.read import CSV_SUFFIXES, EXCEL_SUFFIXES, INPUT_SUFFIXES

OUTCOME_SUFFIXES = (".outcome.xlsx", ".outcome.csv")

#: Why a spreadsheet of a kind filedrop does not read is left in the inbox: unlike the rest that
#: is ignored, it is most likely invoices dropped to be sent, so the run says so, and the log
#: warns.
# Without parentheses of its own: the watcher's log puts it in some ("x.ods: ignored (...)").
UNREAD_SPREADSHEET = (
    f"a spreadsheet filedrop does not read, as it reads {', '.join(INPUT_SUFFIXES[:-1])} and "
    f"{INPUT_SUFFIXES[-1]}; save it as .xlsx or .csv and drop it again"
)
#: Why a spreadsheet whose name is not UTF-8 is left in the inbox, said as for one not read: the
#: journal records names as text, and filedrop could neither record nor name it.
UNRECORDABLE_NAME = (
    "its name is not UTF-8 (bytes of another code page, such as Latin-1 from an old FTP or SFTP "
    "client), which the journal cannot record; rename it and drop it again"
)
# LibreOffice (flat too), Apple Numbers, Excel binary and template workbooks.
_UNREAD_SUFFIXES = (".ods", ".fods", ".numbers", ".xlsb", ".xltx", ".xltm", ".xlt")

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
    (UNREAD_SPREADSHEET, lambda name: name.lower().endswith(_UNREAD_SUFFIXES)),
    ("not a spreadsheet", lambda name: not name.lower().endswith(INPUT_SUFFIXES)),
    (UNRECORDABLE_NAME, lambda name: not _is_utf8(name)),
)
#: What is ignored but most likely invoices dropped to be sent: warned of, and listed in a run's
#: summary, rather than logged as information.
LEFT_FOR_A_PERSON = (UNREAD_SPREADSHEET, UNRECORDABLE_NAME)


def _is_utf8(name: str) -> bool:
    """Whether ``name`` holds no byte that UTF-8 could not decode (Python keeps each as a lone
    surrogate)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


_HASH_CHUNK_BYTES = 1024 * 1024


def outcome_path(source: Path) -> Path:
    """``<stem>.outcome.xlsx`` for ``.xlsx`` input, ``<stem>.outcome.csv`` for CSV, beside it.

    ``.xls`` and ``.xlsm`` input keep their whole name in front (``report.xls.outcome.xlsx``):
    otherwise ``report.xls`` and ``report.xlsx`` would share an outcome, and which one got the
    plain name would depend on the order they arrived in. So does a name whose stem ends in an
    input's suffix (``report.xlsm.xlsx.outcome.xlsx``): its plain outcome name would be that
    of ``report.xlsm``, and it would take over the outcome of one gone from the inbox, reading
    the day it says and writing over it.
    """
    suffix = source.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        kind = ".outcome.xlsx"
    elif suffix in CSV_SUFFIXES:
        kind = ".outcome.csv"
    else:
        raise ValueError(f"{source.name}: no outcome format for {source.suffix!r} files")
    whole = suffix in (".xls", ".xlsm") or source.stem.lower().endswith(INPUT_SUFFIXES)
    return source.with_name(f"{source.name if whole else source.stem}{kind}")


def is_outcome_file(path: Path) -> bool:
    """True for ``<stem>.outcome.xlsx`` / ``<stem>.outcome.csv``: filedrop's own output."""
    return path.name.lower().endswith(OUTCOME_SUFFIXES)


def ignore_reason(path: Path) -> str | None:
    """Why ``path`` is not an input (a short phrase for the log), or None for a candidate.

    What the entry is comes first (a link, a folder, a pipe), told by ``lstat`` so that a link
    is never followed; a path that has just vanished is judged by its name alone.
    """
    try:
        mode: int | None = path.lstat().st_mode
    except OSError:
        mode = None
    return _reason(path.name, mode)


def _reason(name: str, mode: int | None) -> str | None:
    """The entry's kind first (``mode`` from ``lstat``, None if unknown), then its name."""
    if mode is not None:
        if stat.S_ISLNK(mode):
            # A link could point anywhere the daemon's user may read (a config holding a
            # secret, another folder's spreadsheets): only files dropped here are inputs.
            return "symbolic link, never followed"
        if stat.S_ISDIR(mode):
            return "sub-folder"
        if not stat.S_ISREG(mode):
            return "not a regular file"  # a pipe would block the reader, a device never ends
    return _reason_by_name(name)


def _reason_by_name(name: str) -> str | None:
    for reason, matches in _IGNORE_RULES:
        if matches(name):
            return reason
    return None


#: The folder inside the inbox where the journal lives by default.
STATE_FOLDER = ".filedrop"


def scan(inbox: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(candidates oldest first, ignored with their reason) among the inbox's direct children.

    Sub-folders (``archive/``, ``@eaDir``) are ignored, not entered; links (dangling or not), pipes
    and devices are ignored, never followed or opened. A file that vanishes during the scan is
    simply left out. Raises ``OSError`` when the inbox itself cannot be listed. Candidates are
    ordered by modification time, then name, so a burst is taken in order.
    """
    found: list[tuple[int, str, Path]] = []
    ignored: list[tuple[Path, str]] = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            if entry.name == STATE_FOLDER:
                continue  # filedrop's own journal folder: not worth a log line on every scan
            path = Path(entry.path)
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone between listing and looking: nothing to do
            reason = _reason(entry.name, info.st_mode)
            if reason is None:
                found.append((info.st_mtime_ns, entry.name, path))
            else:
                ignored.append((path, reason))
    found.sort()
    ignored.sort()
    return [path for _, _, path in found], ignored


def workbook_to_read_ahead(inbox: Path) -> Path | None:
    """The file a run of ``inbox`` takes first, if it is a workbook worth parsing before the run
    asks for it (``isolated.read_ahead``): not one with an outcome beside it, which was most
    likely done before and is skipped. None too when the inbox cannot be listed (the run says
    why)."""
    try:
        candidates, _ = scan(inbox)
    except OSError:
        return None
    if not candidates or candidates[0].suffix.lower() not in EXCEL_SUFFIXES:
        return None
    first = candidates[0]
    return None if os.path.lexists(outcome_path(first)) else first


class NotRegularFileError(OSError):
    """The name no longer holds a regular file (a link or a pipe was put in its place)."""


@dataclass(frozen=True)
class HashedFile:
    """What was hashed: the bytes' SHA-256 (hex), their size, and which file held them."""

    sha256: str
    size: int
    identity: tuple[int, int]  # (device, inode)
    mtime_ns: int = 0  # its modification time when the hash began


#: What opening a file raises when it is no longer there as an input: gone, or a folder, a link
#: or a pipe in its place. Any other error (permissions, a share's hiccup) says nothing of
#: whether it is there.
NOT_THERE: tuple[type[OSError], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    NotRegularFileError,
)


def open_regular(path: Path) -> int:
    """A read-only descriptor on ``path`` if it is a regular file; never follows a link.

    ``O_NOFOLLOW`` refuses a link swapped in after the scan, ``O_NONBLOCK`` keeps a pipe from
    blocking the open; either raises ``NotRegularFileError``. A folder raises
    ``IsADirectoryError``, and other ``OSError``s (gone, permissions) pass through. The caller
    closes the descriptor.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW gives for a link
            raise NotRegularFileError(
                exc.errno, "a symbolic link, never followed", str(path)
            ) from exc
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):  # what opening a folder for reading says anywhere else
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)  # no effect on a regular file's reads, but say what we mean
    return fd


def hash_file(path: Path) -> HashedFile:
    """Hash ``path``'s bytes through one descriptor from ``open_regular``, 1 MiB at a time."""
    digest = hashlib.sha256()
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        size = 0
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return HashedFile(digest.hexdigest(), size, (info.st_dev, info.st_ino), info.st_mtime_ns)


def saved_over(path: Path, hashed: HashedFile) -> bool:
    """Whether a regular file with other bytes than ``hashed`` read stands at ``path`` now: a
    new version saved over it. The same file, size and time cost one ``lstat``; otherwise its
    bytes are hashed again (a file touched, or saved again unchanged, is not saved over). A file
    gone, moved away or replaced by a link is not a new version either."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return False
        if (
            (info.st_dev, info.st_ino) == hashed.identity
            and info.st_size == hashed.size
            and info.st_mtime_ns == hashed.mtime_ns
        ):
            return False
        return hash_file(path).sha256 != hashed.sha256
    except OSError:  # gone meanwhile, or a link or pipe put there (NotRegularFileError)
        return False


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (hex), read in 1 MiB chunks so big files use little memory."""
    return hash_file(path).sha256


def in_folder(path: Path | str, folder: Path) -> bool:
    """Whether ``path`` lies directly in ``folder`` (resolved: the inbox as the settings give
    it), however it was spelt when recorded; False when its folder cannot be resolved."""
    try:
        return Path(path).parent.resolve() == folder
    except OSError:
        return False


#: The folder of an inbox where done files and outcomes are kept (``FILEDROP_ARCHIVE``), and
#: outcomes of earlier versions of a file: never scanned for input.
ARCHIVE = "archive"
#: How ``archive/`` names what it keeps: ``20240301-120000-<name>``, or ``20240301-120000.2-<name>``
#: when that name was taken within the same second.
ARCHIVE_STAMP = re.compile(r"^\d{8}-\d{6}(?:\.\d{1,6})?-")


def archive_folder(inbox: Path) -> Path | None:
    """``inbox/archive``, made if need be; None when it cannot be a folder of this inbox: a
    symbolic link (never followed: it could lead anywhere the daemon may write), a file, or
    one that cannot be made."""
    archive = inbox / ARCHIVE
    try:
        archive.mkdir(exist_ok=True)
        if stat.S_ISDIR(archive.lstat().st_mode):
            return archive
    except OSError:
        pass
    return None


def stamped_names(folder: Path, *names: str) -> list[Path]:
    """``folder/20240301-120000-<name>`` for each name, one stamp for all (an original and its
    outcome keep theirs alike), none of them there yet: within one second a second keeping of
    those names gets ``20240301-120000.2-<name>``, so nothing kept is ever replaced."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    count = 1
    while True:
        prefix = stamp if count == 1 else f"{stamp}.{count}"
        kept = [folder / f"{prefix}-{name}" for name in names]
        if not any(os.path.lexists(path) for path in kept):
            return kept
        count += 1


def recorded_in(folder: Path) -> Callable[[Path | str], bool]:
    """``in_folder`` for many recorded paths: each recorded folder is resolved once (a journal
    holds thousands of files from a handful of folders, spelt as each run was given them)."""
    known: dict[str, bool] = {}

    def test(path: Path | str) -> bool:
        parent = str(Path(path).parent)
        if parent not in known:
            known[parent] = in_folder(path, folder)
        return known[parent]

    return test


def is_same_file(path: Path, identity: tuple[int, int]) -> bool:
    """Whether ``path`` is still the regular file ``identity`` names (not a link put there)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == identity


@dataclass(frozen=True)
class Snapshot:
    """What changes while a file is still being written, or when another file is put in its
    place: a replacement renamed over it with the same size and its source's time kept (as
    ``scp -p``, ``rsync -t`` and WinSCP upload) is another inode. Not the change time, which a
    chmod or a backup restoring access times moves too: the daemon read every such file again."""

    size: int
    mtime_ns: int
    inode: int


def snapshot(path: Path) -> Snapshot | None:
    """Size and modification time of ``path`` now; None if it is gone, a symbolic link, or
    cannot be looked at now (its folder made unreadable, a share's hiccup): each caller passes
    such a file by, and a later look takes it up. A refusal ended the daemon ("unexpected
    error", exit 2) with the file never taken."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return None  # a link put in a file's place is no input: as good as gone
    return Snapshot(size=info.st_size, mtime_ns=info.st_mtime_ns, inode=info.st_ino)


#: How long a delimited file whose last line has no line ending must stay unchanged before it
#: is taken: an upload that paused mid-row looks finished, and its cut last row would go out as
#: it stands ("211,03" cut to "2", an amount of 2). Most exports end their last line; one that
#: does not waits this long.
UNENDED_WAIT_S = 60.0


def unended_last_line(path: Path, *, now: float | None = None) -> bool:
    """Whether ``path``, a delimited file, ends without a line ending and changed less than
    ``UNENDED_WAIT_S`` ago (by its modification time): perhaps an upload paused mid-row."""
    if path.suffix.lower() in EXCEL_SUFFIXES:
        return False  # a workbook cut short does not open as one
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_size == 0:
                return False
            handle.seek(max(0, info.st_size - 4))
            tail = handle.read(4)
    except OSError:
        return False
    # UTF-16 ends a line with a NUL beside it; a DOS end-of-file mark may follow the last one.
    if tail.rstrip(b"\x00\x1a").endswith((b"\n", b"\r")):
        return False
    # A time ahead of the clock (a share's skew, a copy keeping a future time) would wait for
    # ever: such a file is judged by its line ending no longer.
    return 0 <= (time.time() if now is None else now) - info.st_mtime < UNENDED_WAIT_S


def _opens(path: Path) -> bool:
    """True if the file can be opened and read; Windows refuses while a writer holds it."""
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


def _denied(path: Path) -> bool:
    """Whether the file's permissions keep this process from reading it (not a writer's hold,
    which the permissions do not show)."""
    try:
        return not os.access(path, os.R_OK, follow_symlinks=False)
    except (OSError, NotImplementedError):
        return False


def why_left(path: Path) -> str:
    """Why a file not ready yet is left for the next run, in the words of the run's summary."""
    if unended_last_line(path):
        return (
            "its last line has no line ending yet, as while it is uploaded; left for the next "
            f"run, which takes it once it has not changed for {UNENDED_WAIT_S:g} s"
        )
    return "still being written; left for the next run"


class Readiness(enum.Enum):
    """What the stability tracker makes of a file."""

    CHANGING = "changing"
    """Gone, changed within the window, it does not open yet, or its last line has no line
    ending yet (``unended_last_line``)."""
    READY = "ready"
    """Non-empty, unchanged for the window, and it opens: take it."""
    EMPTY = "empty"
    """Empty and unchanged for the window: take it, to tell its owner so (once)."""


class StabilityTracker:
    """Decides when a file is whole: unchanged for a window, and openable; empty or not.

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

    def readiness(self, path: Path) -> Readiness:
        """``READY`` once ``path`` is non-empty, unchanged for ``window_s`` seconds, and opens;
        ``EMPTY`` once it has stayed empty that long; else ``CHANGING``.

        The first call with a new size or mtime starts the window again; with ``window_s=0`` a
        file is judged at once. A vanished file (or a link put in its place) is forgotten.
        """
        path = Path(path)
        now = self._clock()
        current = snapshot(path)
        if current is None:
            self.forget(path)
            return Readiness.CHANGING
        previous = self._seen.get(path)
        if previous is None or previous[0] != current:
            self._seen[path] = (current, now)
            since = now
        else:
            since = previous[1]
        if now - since < self.window_s or unended_last_line(path):
            return Readiness.CHANGING
        if not _opens(path) and not _denied(path):
            return Readiness.CHANGING  # held by its writer (Windows refuses to open it then)
        # One its permissions keep from being read goes on, to its ERROR naming them: left as
        # "still being written", it was never said, and every run exited 3 (a hostile review).
        return Readiness.EMPTY if current.size == 0 else Readiness.READY

    def forget(self, path: Path) -> None:
        """Drop what is known about ``path`` (processed, or gone)."""
        self._seen.pop(Path(path), None)
