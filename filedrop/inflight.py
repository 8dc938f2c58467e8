"""What a file being sent leaves in its inbox, so that a journal lost meanwhile cannot make
filedrop send it again.

An outcome file shows what was sent from its input, and ``journal/rebuild.py`` holds an inbox
back when an outcome shows more than the journal knows. But a run killed while it sends (a
container job past its deadline, a power cut) writes no outcome: if its journal is then lost as
well (a container whose journal was not on a volume of its own, a clean-up script), or put back
from a copy taken while the file was being sent (a nightly backup of a busy daemon), the next
run would find nothing to tell it which batches went, and would send them again.

So before a file's first POST a small mark is written durably to
``<inbox>/.filedrop/sending/``: which journal is recording the sending, at which target, since
when; then, before each POST, the journal's number of the batch about to go (a mark that names
none tells that nothing went). The outcome removes
it; from then on the outcome is the evidence. A mark whose journal is not the one in use, or
that names a batch the journal does not hold (``unknown_mark``), holds the inbox back, as an
outcome showing unknown sends does.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import json
import os
import stat
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from filedrop.errors import FiledropError
from filedrop.files import sync_folder, write_atomically
from filedrop.inbox import STATE_FOLDER, open_regular
from filedrop.logs import printable
from filedrop.states import BatchState

if TYPE_CHECKING:
    from filedrop.journal import Journal

__all__ = [
    "MarkFate",
    "MarkFolderError",
    "MarkHeldError",
    "Sending",
    "SendingMark",
    "clear_mark",
    "mark_of",
    "mark_path",
    "marks_or_their_folder",
    "sending_marks",
    "unknown_mark",
]

#: Where the marks lie, inside the inbox's own folder, which the scanner passes over unlogged.
SENDING_FOLDER = Path(STATE_FOLDER) / "sending"

#: The most a mark is read of: its first line is under 1 KiB, and each batch adds a few bytes (a
#: file of a million invoices in batches of 100 adds under 100 KiB).
_MARK_MAX_BYTES = 16 * 1024 * 1024


#: Past any time a mark was written at (the year 5138), and within what every platform shows.
_LAST_TIME = 1e11


class MarkFolderError(FiledropError):
    """The inbox's own folder, or its marks' folder, is a link or a file: nothing is sent."""


class MarkHeldError(FiledropError):
    """Another journal's mark of the file was found as this run was about to send its first
    batch: another process is sending it, and this one sends nothing more of it."""


@dataclass(frozen=True)
class SendingMark:
    """One file's mark as read: ``file`` is its name, None when the mark cannot be read (then
    ``path`` may be the folder that could not be listed)."""

    path: Path
    file: str | None = None
    sha256: str | None = None
    journal: str | None = None
    target: str | None = None
    started_at: float | None = None
    batches: frozenset[int] = frozenset()  # the journal's numbers of the batches it sent

    def sentence(self, journal: object) -> str:
        """The one sentence a run says when this mark holds its inbox back; ``journal`` is where
        the journal in use is (a path or a PostgreSQL location)."""
        mark = printable(str(self.path))
        if self.file is None:
            return (
                f"{mark}, filedrop's mark of a file it was sending, cannot be read, so whether "
                f"the journal {journal} knows all that was sent cannot be told; nothing in this "
                "inbox is sent until it is looked at and deleted"
            )
        when = datetime.fromtimestamp(self.started_at or 0.0, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"{printable(self.file)}: the journal {journal} does not know all that was sent "
            f"from it (filedrop began sending it at {when} with another journal, or with this "
            "one before it was put back from an older copy) and no outcome of it was written; "
            "nothing in this inbox is sent until FILEDROP_STATE points at the journal in use "
            "then, or, if that is lost for good, Amili has said which of the file's invoices "
            f"arrived, those are taken out of it, and {mark} is deleted"
        )

    def summary(self) -> str:
        """What a held-back file's line in the run's summary says (the log has the sentence)."""
        if self.file is None:
            mark = printable(str(self.path))
            return f"not sent: filedrop's mark {mark} cannot be read (see the log)"
        return (
            f"not sent: the journal does not know all that was sent from {printable(self.file)} "
            "(see the log); point FILEDROP_STATE at the journal in use then"
        )


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a link in a mark's place is never written through
#: Held while a mark's folders are made and the mark made in them, and while a cleared mark's
#: emptied folders are taken away: one file's outcome took away the folders another file of the
#: inbox had just made for its mark, twice in a row in a burst of files, and that file was RETRY
#: with an ERROR line for nothing. Other processes do not share it: the retry in
#: ``Sending._begin`` is what there is between them.
_FOLDERS_LOCK = threading.Lock()


def mark_path(source: Path, sha256: str, target: str) -> Path:
    """Where the mark of ``source`` with the content ``sha256``, sent to ``target``, lies: named
    by a hash of all three, since a name may be long or hold any character, a new version of a
    file may be sent while the old one's mark is still there, and a sandbox trial must not
    write over a production run's mark."""
    key = b"\0".join((os.fsencode(source.name), sha256.encode(), target.encode()))
    return source.parent / SENDING_FOLDER / f"{hashlib.sha256(key).hexdigest()[:32]}.json"


class Sending:
    """A file's mark while it is sent. ``before_post`` writes it at the first batch, then notes
    each batch's journal number, each on disk before its POST: a mark exists only where a batch
    was about to go, so one that names no batch tells that nothing went."""

    def __init__(
        self,
        source: Path,
        sha256: str,
        *,
        journal: str,
        target: str,
        now: float,
        fresh_at: float | None = None,
    ):
        self.path = mark_path(source, sha256, target)
        self._fresh_at = fresh_at  # ``journal rebuild --fresh``: older marks count for nothing
        self._target = target
        self._source = source
        facts = {"file": source.name, "sha256": sha256, "journal": journal, "target": target}
        self._head = (json.dumps({**facts, "started_at": now}) + "\n").encode()
        self._journal = journal
        self._ready = False
        # Held back at its first batch: every other batch of the file is, even once the marks
        # that held it are gone (the other process, held back by this one's, took its own).
        self._held_back: MarkHeldError | None = None
        self._lock = threading.Lock()  # the posting threads note their batches at once

    def before_post(self, batch: int) -> None:
        """Note the journal's number of the batch about to be POSTed, on disk before it goes.
        Raises ``MarkFolderError`` when the inbox's own folder or the marks' is a link or a
        file, ``OSError`` naming the mark when it cannot be written: the batch is not sent."""
        line = f"{batch}\n".encode()
        with self._lock:
            if self._held_back is not None:  # the file's other batches go no more than its first
                raise MarkHeldError(str(self._held_back))
            if not self._ready:
                try:
                    made = self._begin(line)
                    self._refuse_beside_another_journal(made)
                except MarkHeldError as exc:
                    self._held_back = exc
                    raise
                self._ready = True
                if made:
                    return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno == errno.ENOENT:  # written at the first batch: taken away since
                why = (
                    "filedrop's sending mark was taken away while the file was being sent (the "
                    "inbox moved or deleted, or the mark deleted)"
                )
            raise OSError(exc.errno, why, str(self.path)) from exc

    def _begin(self, first: bytes) -> bool:
        """Make the mark, durably, with its first line and the first batch's ``first`` at once,
        and only where no mark is: True when made. One this journal wrote before (a file
        resumed) is kept, to be added to: False.

        Two processes of one inbox with two journals (a replica whose journal was its own, not
        the shared one) both found no mark before their claims, and both sent every invoice:
        whichever makes the mark second finds the other's and raises ``MarkHeldError``. One
        that names no batch (its run was killed before the first) or is older than a journal
        started afresh counts for nothing, as for the run's check (``unknown_mark``)."""
        for last in (False, True):
            try:
                with _FOLDERS_LOCK:
                    made = _make_folders(self._source.parent)
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
            except FileNotFoundError:
                if last:
                    raise
                continue  # another file's outcome took the emptied folder away in between
            except FileExistsError:
                before = _read(self.path)
                if before is None and not last:
                    continue  # its outcome took it away in between: made anew
                if before is not None and before.file is not None:
                    if before.journal == self._journal:
                        return False
                    if not before.batches or (before.started_at or 0.0) < (self._fresh_at or 0):
                        write_atomically(self.path, lambda out: out.write(self._head + first))
                        return True
                raise MarkHeldError(self._held_by(before)) from None
            try:
                os.write(fd, self._head + first)  # a few hundred bytes: one write
                os.fsync(fd)
            finally:
                os.close(fd)
            for folder in (*made, self.path):  # a power cut must not take them away
                sync_folder(folder.parent)
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def _refuse_beside_another_journal(self, made: bool) -> None:
        """Raise ``MarkHeldError`` where, with this file's mark on disk, another journal's mark
        of another file of the inbox is found; the mark just ``made`` is taken away first, as
        its batch never went.

        Two runs with two journals, one sending a.csv and the other its copy b.csv, each made
        the mark of its own file, and every invoice went twice (a hostile review, helper-140).
        Each looks at the others' marks only once its own is on disk, so of two at once the
        later sees the earlier's; one that finished first left its outcome, written before its
        mark was taken away."""
        why: str | None = None
        for path in sending_marks(self._source.parent):
            other = _read(path) if path != self.path else None
            if (
                other is not None
                and other.file is not None
                and other.journal != self._journal
                and _fate(other, None, target=self._target, fresh_at=self._fresh_at)
                is MarkFate.UNKNOWN
            ):
                why = self._beside(other)
                break
        if why is None:
            return
        if made:
            with contextlib.suppress(OSError):
                self.path.unlink()
        raise MarkHeldError(why)

    def _beside(self, mark: SendingMark) -> str:
        when = datetime.fromtimestamp(mark.started_at or 0.0, UTC).strftime("%H:%M:%S UTC")
        return (
            f"another filedrop process, keeping another journal, began sending "
            f"{printable(mark.file or '')} from this inbox at {when} (its mark "
            f"{printable(str(mark.path))}), and this file may hold the same invoices under "
            "another name; nothing is sent from it here, as every process on one inbox must "
            "keep one journal: point their FILEDROP_STATE at the same one"
        )

    def _held_by(self, mark: SendingMark | None) -> str:
        where = printable(str(self.path))
        if mark is None or mark.file is None:
            return (
                f"filedrop's mark {where} of this file appeared as this run began sending it and "
                "cannot be read, so another process may be sending it; nothing more is sent "
                "from it here until that mark is looked at and deleted"
            )
        when = datetime.fromtimestamp(mark.started_at or 0.0, UTC).strftime("%H:%M:%S UTC")
        return (
            "another filedrop process, keeping another journal, began sending this file at "
            f"{when} (its mark {where}), as this one was about to; nothing more is sent from it "
            "here, as every process on one inbox must keep one journal: point their FILEDROP_STATE "
            "at the same one"
        )


class MarkFate(enum.Enum):
    """What a mark is to a journal: the one decision ``unknown_mark`` and ``mark_of`` share."""

    IGNORED = "ignored"  # none; naming no batch (nothing went); another target; before --fresh
    KNOWN = "known"  # the journal wrote it and holds every batch it names
    UNSENT = "unsent"  # as KNOWN, but every batch it names certainly never reached Amili
    UNKNOWN = "unknown"  # another journal's, one naming a batch it does not hold, or unreadable

    @property
    def shown_by_outcome(self) -> bool:
        """Whether an outcome written from the journal shows all the mark names (KNOWN or
        UNSENT), so that writing it takes the mark away."""
        return self in (MarkFate.KNOWN, MarkFate.UNSENT)


def _fate(
    mark: SendingMark | None, journal: Journal | None, *, target: str, fresh_at: float | None
) -> MarkFate:
    """What ``mark`` is to ``journal``; with none, whether it counts at all (UNKNOWN) or not."""
    if mark is None:
        return MarkFate.IGNORED
    if mark.file is None:
        return MarkFate.UNKNOWN  # better a question than an invoice sent twice
    if (
        not mark.batches  # killed before its first batch's line was on disk: nothing went
        or mark.target != target  # a sandbox trial sends nothing real
        or (fresh_at is not None and (mark.started_at or 0.0) < fresh_at)
    ):
        return MarkFate.IGNORED
    if journal is None or mark.journal != journal.identity():
        return MarkFate.UNKNOWN
    return _known_fate(journal, mark)


def mark_of(source: Path, sha256: str, target: str, journal: Journal) -> MarkFate:
    """What the mark of ``source`` (its content ``sha256``, for ``target``) is to ``journal``.
    A known one names batches that went since the file's last outcome (which took the mark
    away); an unknown one holds the inbox back and is never taken away by this journal."""
    mark = _read(mark_path(source, sha256, target))
    if mark is None:  # the usual case, asked of every file skipped: no look at the journal
        return MarkFate.IGNORED
    return _fate(mark, journal, target=target, fresh_at=journal.started_fresh_at())


def _make_folders(inbox: Path) -> list[Path]:
    """Make the inbox's own folder and the marks' in it where missing; returns those made, the
    deepest first. Never through a link: the inbox's own things stay in the inbox."""
    made: list[Path] = []
    for folder in (inbox / STATE_FOLDER, inbox / SENDING_FOLDER):
        try:
            folder.mkdir()
            made.insert(0, folder)
        except FileExistsError:
            mode = os.lstat(folder).st_mode
            if not stat.S_ISDIR(mode):
                what = "a symbolic link" if stat.S_ISLNK(mode) else "a file"
                raise MarkFolderError(
                    f"{printable(str(folder))} is {what}, not a folder filedrop may use: it keeps "
                    "its marks of the files it is sending there; move it away. Nothing was sent."
                ) from None
    return made


def clear_mark(source: Path, sha256: str, target: str, *, journal: str) -> None:
    """Remove the mark of ``source`` (its content ``sha256``, for ``target``) that ``journal``
    (its identity) wrote, once its outcome is written: the outcome tells from then on. One
    that cannot be removed only holds the inbox back if the journal is lost later. Another
    journal's is left: a run that found every invoice of a copy already sent took away the mark
    of the process sending that copy, which then stopped (helper-140)."""
    mark = mark_path(source, sha256, target)
    found = _read(mark)
    if found is not None:
        if found.journal != journal:
            return
        with contextlib.suppress(OSError):
            mark.unlink()
    # No empty folders left behind in the inbox: the last mark takes its folder, and filedrop's
    # own, when nothing else is in them (a folder still in use is not empty). Each step on its
    # own: a run killed between making the two folders left the first alone.
    with _FOLDERS_LOCK:
        for remove in (mark.parent.rmdir, mark.parent.parent.rmdir):
            with contextlib.suppress(OSError):
                remove()


def unknown_mark(
    inbox: Path, journal: Journal, *, target: str, of: str | None = None
) -> SendingMark | None:
    """A mark in ``inbox`` of a file sent to ``target`` that ``journal`` does not know all of:
    another journal's, or one naming a batch this journal does not hold (it was put back from a
    copy taken before); the one of the file named ``of``, if it is such a mark. None when there
    is none.

    A mark of another target does not count (a sandbox trial sends nothing real), nor one older
    than a journal started afresh on purpose (``journal rebuild --fresh``). One that cannot be
    read counts, and so does a marks' folder that cannot be listed: better a question than an
    invoice sent twice.
    """
    found = marks_or_their_folder(inbox)  # a folder that cannot be listed reads as no mark
    fresh_at = journal.started_fresh_at() if found else None
    unknown = []
    for path in found:
        mark = _read(path)
        if _fate(mark, journal, target=target, fresh_at=fresh_at) is not MarkFate.UNKNOWN:
            continue
        assert mark is not None
        if of is None or mark.file == of:
            return mark
        unknown.append(mark)
    return unknown[0] if unknown else None


def _known_fate(journal: Journal, mark: SendingMark) -> MarkFate:
    """KNOWN when ``journal`` holds the file the mark names and every batch it says went;
    UNSENT when each of those ended refused or not sent, so Amili holds nothing of them."""
    assert mark.file is not None and mark.target is not None
    record = journal.find_file(target=mark.target, name=mark.file, sha256=mark.sha256 or "")
    if record is None:
        return MarkFate.UNKNOWN
    states = {batch.id: batch.state for batch in journal.batches(file_id=record.id)}
    if not mark.batches <= states.keys():
        return MarkFate.UNKNOWN
    if all(states[batch] == BatchState.REJECTED for batch in mark.batches):
        return MarkFate.UNSENT
    return MarkFate.KNOWN


def sending_marks(inbox: Path) -> list[Path]:
    """The marks lying in ``inbox``, by name; none when no mark was ever written there (or its
    folder is a link or a file, where none is ever written). Raises ``OSError`` when the
    folder is there but cannot be listed."""
    folder = inbox / SENDING_FOLDER
    try:
        for each in (inbox / STATE_FOLDER, folder):
            if not stat.S_ISDIR(os.lstat(each).st_mode):
                return []
        found = sorted(folder.iterdir())
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise
    # Not the temporary file a killed writer left.
    return [path for path in found if path.suffix == ".json" and not path.name.startswith(".")]


def marks_or_their_folder(inbox: Path) -> list[Path]:
    """The sending marks in ``inbox``, or their folder when it cannot be listed: a folder that
    may hold marks no one can read counts as one."""
    try:
        return sending_marks(inbox)
    except OSError:
        return [inbox / SENDING_FOLDER]


#: A mark is made empty and then written (``Sending._begin``): a file of the same inbox looking
#: at the marks in between found it "cannot be read", which held back the whole inbox (a run
#: exited 2 for it; watch retried 10 s later). One that may be that (its first line not whole,
#: and changed within ``_MARK_YOUNG_S``) is read again, ``_MARK_READ_TRIES`` times at most,
#: ``_MARK_READ_PAUSE_S`` apart; any other counts as it reads at once, so a folder of junk
#: marks costs no waits.
_MARK_READ_TRIES = 5
_MARK_READ_PAUSE_S = 0.05
_MARK_YOUNG_S = 2.0


def _read(path: Path) -> SendingMark | None:
    """The mark at ``path``; None when it is not there (its outcome was written)."""
    for attempt in range(_MARK_READ_TRIES):
        if attempt:
            time.sleep(_MARK_READ_PAUSE_S)
        try:
            with os.fdopen(open_regular(path), "rb") as handle:  # a link or a pipe is no mark
                raw = handle.read(_MARK_MAX_BYTES)
                changed = os.fstat(handle.fileno()).st_mtime
        except FileNotFoundError:
            return None
        except OSError:
            return SendingMark(path)
        mark = _parsed(path, raw)
        if mark.file is not None or b"\n" in raw or time.time() - changed > _MARK_YOUNG_S:
            return mark
    return mark


def _parsed(path: Path, raw: bytes) -> SendingMark:
    """The mark ``raw`` (read from ``path``), or one that cannot be read."""
    head, _, rest = raw.partition(b"\n")
    try:
        facts = json.loads(head)
        texts = [facts[key] for key in ("file", "sha256", "journal", "target")]
        started_at = float(facts["started_at"])
        if not all(isinstance(text, str) for text in texts):
            raise TypeError(texts)
        if not 0 <= started_at < _LAST_TIME:  # not one filedrop wrote (NaN fails this too)
            raise ValueError(started_at)
        # Each batch a line; a last line cut short by a crash was never followed by its POST.
        lines = rest.split(b"\n")
        batches = frozenset(int(line) for line in lines[:-1])
    except (ValueError, TypeError, KeyError):
        return SendingMark(path)
    file, sha256, journal, target = texts
    # In small letters, as settings and the journal now keep an organisation id: a mark
    # written before, with one in capitals, is of the same organisation.
    return SendingMark(
        path, file, sha256, journal, target.lower(), started_at=started_at, batches=batches
    )
