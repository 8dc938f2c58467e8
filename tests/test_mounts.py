"""What is mounted where: mountinfo and fstab read, and a share that is not mounted told apart
from a folder whose files were taken away."""

from __future__ import annotations

from pathlib import Path

from builders import mountinfo

from filedrop.mounts import (
    Missing,
    ShareWatch,
    mount_of,
    parse_fstab,
    parse_mountinfo,
    unit_mount_point,
)


def test_mount_points_with_spaces_are_read() -> None:
    """mountinfo escapes a space as \\040; the mount point is the folder's real name."""
    mounts = parse_mountinfo(mountinfo(("/mnt/Felles\\040disk", "cifs")))
    assert mount_of(Path("/mnt/Felles disk/inbox"), mounts).fs_type == "cifs"
    assert mount_of(Path("/mnt/Felles"), mounts).fs_type == "ext4"


def test_fstab_lists_its_mount_points_without_swap_or_comments() -> None:
    text = (
        "# /etc/fstab: static file system information.\n"
        "UUID=1234 / ext4 errors=remount-ro 0 1\n"
        "UUID=5678 none swap sw 0 0\n"
        "//srv/Felles\\040disk /mnt/Felles\\040disk cifs credentials=/root/.smb,noauto 0 0\n"
        "srv:/export /srv/inbox nfs4 defaults 0 0\n"
        "\n"
    )
    assert parse_fstab(text) == [Path("/"), Path("/mnt/Felles disk"), Path("/srv/inbox")]


def test_a_share_unmounted_under_a_running_filedrop_is_missing_until_it_is_back(
    tmp_path: Path,
) -> None:
    """Mounted when the watch began, then not: the folder is on the root filesystem now, and
    the share is named missing, with why, as news the first time only; mounted again, it is
    not, and a second outage is news again. A folder never on a share is never missing."""
    inbox = (tmp_path / "share").resolve()
    inbox.mkdir()
    mounted = [True]

    def current() -> str:
        return mountinfo((str(inbox), "nfs4")) if mounted[0] else mountinfo()

    watch = ShareWatch(inbox, mountinfo=current, fstab=lambda: None, units=list)
    assert watch.missing() is None
    mounted[0] = False
    assert watch.missing() == Missing(inbox, "filedrop saw it mounted before", new=True)
    assert watch.missing() == Missing(inbox, "filedrop saw it mounted before", new=False)
    mounted[0] = True
    assert watch.missing() is None
    mounted[0] = False
    assert watch.missing() == Missing(inbox, "filedrop saw it mounted before", new=True)
    local = ShareWatch(tmp_path, mountinfo=mountinfo, fstab=lambda: None, units=list)
    assert local.missing() is None


def test_a_share_fstab_mounts_above_the_inbox_is_missing_when_filedrop_starts_without_it(
    tmp_path: Path,
) -> None:
    """Not mounted when filedrop starts, the share /etc/fstab puts above the inbox is missing
    from the start, and found once it is mounted; /proc/self/mountinfo unreadable (not Linux):
    nothing can be told, so nothing is missing."""
    share = (tmp_path / "share").resolve()
    inbox = share / "inbox"
    inbox.mkdir(parents=True)
    fstab = f"srv:/export {share} nfs4 defaults 0 0\n"
    mounted = [False]

    def current() -> str:
        return mountinfo((str(share), "nfs4")) if mounted[0] else mountinfo()

    watch = ShareWatch(inbox, mountinfo=current, fstab=lambda: fstab, units=list)
    assert watch.missing()[:2] == (share, "/etc/fstab lists it")
    mounted[0] = True
    assert watch.missing() is None
    assert (
        ShareWatch(inbox, mountinfo=lambda: None, fstab=lambda: fstab, units=list).missing() is None
    )


def test_a_share_fstab_mounts_through_a_link_is_missing_where_the_link_leads(
    tmp_path: Path,
) -> None:
    """/etc/fstab names /mnt/share where /mnt is a link to /var/mnt (as on Fedora CoreOS): the
    share is mounted, and missing, at /var/mnt/share, where the inbox resolves to."""
    real = (tmp_path / "var-mnt").resolve()
    (real / "share").mkdir(parents=True)
    (tmp_path / "mnt").symlink_to(real)
    fstab = f"srv:/export {tmp_path / 'mnt' / 'share'} nfs4 defaults 0 0\n"
    watch = ShareWatch(
        tmp_path / "mnt" / "share", mountinfo=mountinfo, fstab=lambda: fstab, units=list
    )
    assert watch.missing()[:2] == (real / "share", "/etc/fstab lists it")
    mounted = ShareWatch(
        tmp_path / "mnt" / "share",
        mountinfo=lambda: mountinfo((str(real / "share"), "nfs4")),
        fstab=lambda: fstab,
        units=list,
    )
    assert mounted.missing() is None


def test_a_share_a_systemd_unit_mounts_is_missing_when_it_is_not_mounted(tmp_path: Path) -> None:
    """An administrator's mount unit (/etc/systemd/system/*.mount) says where a share belongs as
    fstab does, and the warning names the unit; its Where= is read as systemd reads it."""
    share = (tmp_path / "share").resolve()
    share.mkdir()
    unit = (
        f"[Unit]\nDescription=Felles\n\n[Mount]\nWhat=//srv/felles\n Where = {share}\nType=cifs\n"
    )
    watch = ShareWatch(
        share, mountinfo=mountinfo, fstab=lambda: None, units=lambda: [("srv-share.mount", unit)]
    )
    assert watch.missing()[:2] == (share, "the systemd unit srv-share.mount mounts it")
    assert unit_mount_point("[Mount]\nWhere=/a\nWhere=/b\n") == Path("/b")
    assert unit_mount_point("[Mount]\n# Where=/a\nWhat=x\n") is None
