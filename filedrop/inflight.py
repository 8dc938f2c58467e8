"""What a file being sent leaves in its inbox, so that a journal lost meanwhile cannot make
filedrop send it again.

An outcome file shows what was sent from its input, and ``journal/rebuild.py`` holds an inbox
back when an outcome shows more than the journal knows. But a run killed while it sends (a
container job past its deadline, a power cut) writes no outcome: if its journal is then lost as
well (a container whose journal was not on a volume of its own, a clean-up script), the next
run would find nothing to tell it the file's first batches went, and would send them again.

So before a file's first POST a small mark is written durably to
``<inbox>/.filedrop/sending/``: which journal is recording the sending, at which target, since
when. The outcome removes it; from then on the outcome is the evidence. A mark another journal
left, or one the journal does not know (``unknown_mark``), holds the inbox back, as an outcome
showing unknown sends does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from filedrop.inbox import STATE_FOLDER, open_regular
from filedrop.logs import printable
from filedrop.outcome import sync_folder, write_atomically

if TYPE_CHECKING:
    from filedrop.journal import Journal

__all__ = [
    "SendingMark",
    "clear_mark",
    "mark_path",
    "mark_sending",
    "sending_marks",
    "unknown_mark",
]

#: Where the marks lie, inside the inbox's own folder, which the scanner passes over unlogged.
SENDING_FOLDER = Path(STATE_FOLDER) / "sending"


@dataclass(frozen=True)
class SendingMark:
    """One file's mark: ``file`` is its name, None when the mark cannot be read."""

    path: Path
    file: str | None = None
    sha256: str | None = None
    journal: str | None = None
    target: str | None = None
    started_at: float | None = None

    def sentence(self, journal: object) -> str:
        """The one sentence a run says when this mark holds its inbox back; ``journal`` is where
        the journal in use is (a path or a PostgreSQL location)."""
        mark = printable(str(self.path))
        if self.file is None:
            return (
                f"the mark {mark}, which filedrop leaves while it sends a file, cannot be read, "
                f"so whether the journal {journal} knows what was sent cannot be told; nothing in "
                "this inbox is sent until the mark is looked at and deleted"
            )
        when = datetime.fromtimestamp(self.started_at or 0.0, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"{printable(self.file)}: filedrop began sending it at {when}, but the journal "
            f"{journal} does not know that (it is another journal, or an older copy of the one "
            "in use then) and no outcome of it was written, so what went cannot be told; "
            "nothing in this inbox is sent until FILEDROP_STATE points at the journal that was "
            "in use, or, if that is lost for good, Amili has said which of the file's invoices "
            f"arrived, they are taken out of it, and {mark} is deleted"
        )


def mark_path(source: Path, sha256: str) -> Path:
    """Where the mark of ``source`` with the content ``sha256`` lies: named by a hash of both,
    since a name may be long or hold any character, and a new version of a file may be sent
    while the old one's mark is still there."""
    key = os.fsencode(source.name) + b"\0" + sha256.encode()
    return source.parent / SENDING_FOLDER / f"{hashlib.sha256(key).hexdigest()[:32]}.json"


def mark_sending(source: Path, sha256: str, *, journal: str, target: str, now: float) -> None:
    """Write the mark of ``source`` (its content ``sha256``), durably, before anything of it
    is sent. Raises ``OSError`` naming the mark when it cannot be written: then nothing is
    sent."""
    dest = mark_path(source, sha256)
    facts = {"file": source.name, "sha256": sha256, "journal": journal, "target": target}
    text = json.dumps({**facts, "started_at": now}).encode()
    for last in (False, True):
        made = _make_folders(dest.parent)
        try:
            write_atomically(dest, lambda out: out.write(text))
        except FileNotFoundError:
            if last:
                raise
            continue  # another file's outcome took the emptied folder away in between
        for folder in made:  # a power cut must not take the new folders, and the mark, away
            sync_folder(folder.parent)
        return


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and the folders above it that are missing; returns those it made, the
    deepest first."""
    missing = [f for f in (folder, folder.parent) if not f.is_dir()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def clear_mark(source: Path, sha256: str) -> None:
    """Remove the mark of ``source`` (its content ``sha256``) once its outcome is written: the
    outcome tells from then on. One that cannot be removed only holds the inbox back if the
    journal is lost later."""
    mark = mark_path(source, sha256)
    with contextlib.suppress(OSError):
        mark.unlink(missing_ok=True)
        # No empty folders left behind in the inbox: the last mark takes its folder, and
        # filedrop's own, when nothing else is in them (a folder still in use is not empty).
        mark.parent.rmdir()
        mark.parent.parent.rmdir()


def unknown_mark(inbox: Path, journal: Journal, *, target: str) -> SendingMark | None:
    """A mark in ``inbox`` of a file sent to ``target`` that ``journal`` does not know it
    claimed: another journal's, or its own from after the copy it was put back from. None when
    there is none.

    A mark of another target does not count (a sandbox trial sends nothing real), nor one older
    than a journal started afresh on purpose (``journal rebuild --fresh``). One that cannot be
    read counts: better a question than an invoice sent twice.
    """
    found = sending_marks(inbox)
    fresh_at = journal.started_fresh_at() if found else None
    for path in found:
        mark = _read(path)
        if mark is None:
            continue  # its outcome was written meanwhile
        if mark.file is None:
            return mark
        if mark.target != target or (fresh_at is not None and (mark.started_at or 0.0) < fresh_at):
            continue
        if mark.journal == journal.identity() and journal.find_file(
            target=target, name=mark.file, sha256=mark.sha256 or ""
        ):
            continue  # the journal claimed it before the mark was written: it knows the rest
        return mark
    return None


def sending_marks(inbox: Path) -> list[Path]:
    """The marks lying in ``inbox``, by name; none when no mark was ever written there."""
    try:
        found = sorted((inbox / SENDING_FOLDER).iterdir())
    except OSError:
        return []  # never made (or not a folder)
    # Not the temporary file a killed writer left.
    return [path for path in found if path.suffix == ".json" and not path.name.startswith(".")]


def _read(path: Path) -> SendingMark | None:
    """The mark at ``path``; None when it vanished meanwhile (its outcome was written)."""
    try:
        with os.fdopen(open_regular(path), "rb") as handle:  # a link or a pipe is no mark
            raw = handle.read(64 * 1024)  # a mark is under 1 KiB: more is not one
    except FileNotFoundError:
        return None
    except OSError:
        return SendingMark(path)
    try:
        facts = json.loads(raw)
        texts = [facts[key] for key in ("file", "sha256", "journal", "target")]
        started_at = float(facts["started_at"])
        if not all(isinstance(text, str) for text in texts):
            raise TypeError(texts)
    except (ValueError, TypeError, KeyError):
        return SendingMark(path)
    return SendingMark(path, *texts, started_at=started_at)
