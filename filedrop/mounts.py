"""What is mounted where: the journal is refused on a network filesystem, and an inbox on a
share that is not mounted is not taken for a folder whose files were all taken away.

Linux tells its mounts in ``/proc/self/mountinfo`` and the ones meant to be there in
``/etc/fstab``; where neither can be read (macOS), nothing is told, and nothing is refused.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

#: Filesystem types whose locking SQLite cannot trust; every FUSE type (``fuse.sshfs``, ...)
#: counts as well, since its locking is whatever the user-space driver makes of it.
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre"}
)

MOUNTINFO = Path("/proc/self/mountinfo")
FSTAB = Path("/etc/fstab")
#: Where an administrator's own systemd mount units live (fstab's are made from it at boot).
MOUNT_UNITS = Path("/etc/systemd/system")

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: where it is mounted and as what."""

    point: Path
    fs_type: str

    @property
    def is_network(self) -> bool:
        return self.fs_type in NETWORK_FS_TYPES or self.fs_type.split(".")[0] == "fuse"


def _unescaped(field: str) -> str:
    """A path field of mountinfo or fstab, which write a space and the like as octal (``\\040``)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts listed in ``mountinfo`` text (``man 5 proc``); malformed lines are skipped.

    Each line is ``id parent major:minor root mount-point options [optional...] - type source
    super-options``.
    """
    mounts = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or not tail:
            continue
        mounts.append(Mount(Path(_unescaped(fields[4])), tail[0]))
    return mounts


def parse_fstab(text: str) -> list[Path]:
    """The mount points ``fstab`` text lists (``man 5 fstab``: ``spec file type options ...``),
    swap and comments left out."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#") or fields[2] == "swap":
            continue
        if fields[1].startswith("/"):
            points.append(Path(_unescaped(fields[1])))
    return points


def unit_mount_point(text: str) -> Path | None:
    """Where a systemd mount unit's text mounts (its ``Where=``); None when it says nowhere."""
    where = None
    for line in text.splitlines():
        key, equals, value = line.strip().partition("=")
        if equals and key.strip() == "Where" and value.strip().startswith("/"):
            where = Path(value.strip())  # the last one counts, as in systemd
    return where


def _read_units(folder: Path) -> list[tuple[str, str]]:
    """Each ``*.mount`` unit in ``folder``: its name and text; none where it cannot be read."""
    try:
        units = sorted(folder.glob("*.mount"))
    except OSError:
        return []
    return [(unit.name, text) for unit in units if (text := _read(unit)) is not None]


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount holding ``path`` (absolute, resolved): the longest mount point containing it."""
    holding = [m for m in mounts if m.point == path or m.point in path.parents]
    return max(holding, key=lambda m: len(m.point.parts), default=None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_mountinfo() -> str | None:
    """This process's ``/proc/self/mountinfo``; None where there is none (macOS)."""
    return _read(MOUNTINFO)


class Missing(NamedTuple):
    """A mount point a folder should be under and is not mounted now."""

    point: Path
    why: str  # why it should be: "filedrop saw it mounted before", "/etc/fstab lists it", ...
    new: bool  # it was there (or not yet looked at) the last time: time to say so


class ShareWatch:
    """Whether the share a folder lies on is mounted now.

    A share that is not mounted leaves an empty folder where it was mounted: every file in it
    looks deleted. It is missing when the mount holding the folder now is not the deepest one
    seen holding it since this process started (a share unmounted while filedrop runs), nor one
    ``/etc/fstab`` or a systemd mount unit of the administrator's puts there (a share not mounted
    when it starts). Only this process's sight tells the first: a share already gone when a run
    starts, and listed nowhere, is not seen. ``mountinfo`` and ``fstab`` give those files' text
    (None where there is none), ``units`` each mount unit's name and text.
    """

    def __init__(
        self,
        folder: Path,
        *,
        mountinfo: Callable[[], str | None] = read_mountinfo,
        fstab: Callable[[], str | None] = lambda: _read(FSTAB),
        units: Callable[[], list[tuple[str, str]]] = lambda: _read_units(MOUNT_UNITS),
    ) -> None:
        self._folder = folder.absolute()
        self._mountinfo = mountinfo
        self._fstab = fstab
        self._units = units
        self._lock = threading.Lock()
        self._seen: Path | None = None  # the deepest mount point seen holding the folder
        self._missing: Path | None = None  # what the last caller was told is missing
        self._look()  # the mount holding the folder now is the first one seen

    def missing(self) -> Missing | None:
        """The mount point the folder should be under and is not mounted; None when the folder
        is on the deepest mount it should be on, or that cannot be told."""
        found = self._look()
        with self._lock:
            new = found is not None and found[0] != self._missing
            self._missing = None if found is None else found[0]
        return None if found is None else Missing(*found, new=new)

    def _look(self) -> tuple[Path, str] | None:
        """The mount point missing and why, the deepest seen noted."""
        text = self._mountinfo()
        if text is None:
            return None
        folder = self._folder.resolve()
        now = mount_of(folder, parse_mountinfo(text))
        if now is None:
            return None
        expected = [(_resolved(p), "/etc/fstab lists it") for p in parse_fstab(self._fstab() or "")]
        for name, text in self._units():
            if (point := unit_mount_point(text)) is not None:
                expected.append((_resolved(point), f"the systemd unit {name} mounts it"))
        with self._lock:
            if self._seen is not None:
                expected.append((self._seen, "filedrop saw it mounted before"))
            found = max(
                (
                    (point, why)
                    for point, why in expected
                    if (point == folder or point in folder.parents)
                    and len(point.parts) > len(now.point.parts)
                ),
                key=lambda pair: len(pair[0].parts),
                default=None,
            )
            if found is None and (
                self._seen is None or len(now.point.parts) > len(self._seen.parts)
            ):
                self._seen = now.point
        return found


def _resolved(point: Path) -> Path:
    """``point`` with the links in its folders followed (/mnt a link to /var/mnt). The mount
    point itself is not looked at: on a share whose server hangs, that look would hang too, and
    a share is mounted on a folder, never on a link."""
    try:
        return point.parent.resolve() / point.name
    except (OSError, RuntimeError):  # a loop of links: as written
        return point
