"""Where the journal lives: one per user for every inbox, never on the drop share.

Anyone who can drop a file can delete what sits beside it, and a share's network filesystem
breaks SQLite's locking, so the default journal is in the user's state folder
(``$XDG_STATE_HOME/filedrop/journal.db``, else ``~/.local/state/filedrop/journal.db``). A SQLite
journal on a network filesystem is refused unless the operator says they know better, and a
journal left at the old default inside the inbox is taken over on first start, so an upgrade
never resends anything.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from filedrop.errors import ConfigError
from filedrop.journal.engines import PostgresLocation
from filedrop.journal.store import Journal
from filedrop.mounts import mount_of, parse_mountinfo, read_mountinfo

log = logging.getLogger("filedrop")

#: Where the journal lived before it moved out of the inbox: ``<inbox>/.filedrop/state.db``.
LEGACY_FOLDER, LEGACY_NAME = ".filedrop", "state.db"


def default_journal_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/filedrop/journal.db``, else ``~/.local/state/filedrop/journal.db``.

    ``environ`` is the environment the settings were read from; ``HOME`` comes from it too, so a
    caller with its own environment never lands in the real user's folder by accident.
    """
    state_home = environ.get("XDG_STATE_HOME", "")
    # The XDG rule: a relative value is invalid and ignored.
    if state_home and Path(state_home).is_absolute():
        return Path(state_home) / "filedrop" / "journal.db"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "state" / "filedrop" / "journal.db"


def legacy_journal_path(inbox: Path) -> Path:
    """Where the journal was kept before: inside the inbox."""
    return inbox / LEGACY_FOLDER / LEGACY_NAME


def _existing_folder(path: Path) -> Path:
    """The journal's folder, or its nearest ancestor that exists yet, with links resolved."""
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.resolve()


def refuse_network_journal(path: Path, *, allowed: bool, mountinfo: str | None = None) -> None:
    """Refuse a SQLite journal on a network filesystem, unless ``allowed``.

    ``mountinfo`` is the text of ``/proc/self/mountinfo`` (read from there by default; where it
    does not exist, as on macOS, nothing is checked).
    """
    if allowed:
        return
    if mountinfo is None and (mountinfo := read_mountinfo()) is None:
        return
    mount = mount_of(_existing_folder(path), parse_mountinfo(mountinfo))
    if mount is not None and mount.is_network:
        raise ConfigError(
            f"The journal {path} would be on a network filesystem ({mount.fs_type} mounted at "
            f"{mount.point}), where SQLite's locking is not safe; use PostgreSQL "
            "(FILEDROP_STATE=postgresql://user@host/db) or a local disk, or set "
            "FILEDROP_ALLOW_NETWORK_JOURNAL=true if you know this filesystem locks correctly. "
            "Nothing was sent."
        )


def take_over_legacy(path: Path, *, inbox: Path) -> None:
    """Move a journal found at the old default inside ``inbox`` to ``path``, once.

    The old journal is copied with ``VACUUM INTO`` (consistent, and across filesystems, since
    the inbox is often a share), the copy is put in place only if no journal is there yet, and
    the old file is then renamed ``state.db.moved``, so it is never taken twice. When both
    exist, which one holds the truth cannot be told: that is refused.
    """
    old = legacy_journal_path(inbox)
    if not old.is_file() or old.absolute() == path.absolute():
        return
    if path.exists():
        raise ConfigError(
            f"There are two journals, {old} (the old place, inside the inbox) and {path}, and "
            "filedrop will not guess which one knows what was sent: move the one that is not in "
            "use away, or point FILEDROP_STATE at the one to use. Nothing was sent."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _vacuum_into(old, copy)
        try:
            os.link(copy, path)  # never over a journal another process has just put there
        except FileExistsError:
            return  # another filedrop took it over at the same moment
    finally:
        copy.unlink(missing_ok=True)
    backup = old.with_name(f"{LEGACY_NAME}.moved")
    retire(old, backup)
    log.info("The journal moved from %s to %s (the old file is kept as %s)", old, path, backup)


def _vacuum_into(source: Path, dest: Path) -> None:
    """A consistent copy of the SQLite file ``source`` at ``dest``, written to disk."""
    try:
        db = sqlite3.connect(f"{source.absolute().as_uri()}?mode=rw", uri=True, timeout=30.0)
        try:
            db.execute("VACUUM INTO ?", (str(dest),))
        finally:
            db.close()
        with dest.open("rb+") as handle:
            os.fsync(handle.fileno())
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"The journal {source} cannot be copied to {dest.parent} ({exc}); check that it is "
            "readable and that the folder is writable. Nothing was sent."
        ) from exc


def retire(path: Path, backup: Path) -> None:
    """Rename the SQLite file ``path`` to ``backup`` once no process has it open.

    Opening and closing it checkpoints its write-ahead log into the file and removes the
    ``-wal`` and ``-shm`` files beside it; if they stay, another process still has it open, and
    renaming it from under that process would split what it writes from the file.
    """
    try:
        sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=30.0).close()
    except sqlite3.Error as exc:
        raise ConfigError(f"The journal {path} cannot be opened ({exc}).") from exc
    if path.with_name(f"{path.name}-wal").exists():
        raise ConfigError(
            f"The journal {path} is in use by another process; stop every filedrop using it, "
            "then try again. Nothing was sent."
        )
    path.replace(backup)


def open_journal(
    path: Path | PostgresLocation,
    *,
    inbox: Path | None,
    allow_network: bool,
    clock: Callable[[], float],
    mountinfo: str | None = None,
) -> Journal:
    """The journal at ``path``, after refusing a network filesystem and taking over an old one.

    Every command that opens the journal opens it here. ``inbox`` is where an old journal may
    wait (``None``: none is looked for); ``mountinfo`` is for tests (see
    ``refuse_network_journal``).
    """
    if isinstance(path, PostgresLocation):
        # A server's journal: no file to check. A journal left inside the inbox is not imported
        # into it; the outcomes beside the inputs still stop anything being sent twice, and
        # 'filedrop journal rebuild' reads them into the server's journal.
        return Journal(path, clock=clock)
    refuse_network_journal(path, allowed=allow_network, mountinfo=mountinfo)
    if inbox is not None:
        take_over_legacy(path, inbox=inbox)
    return Journal(path, clock=clock)
