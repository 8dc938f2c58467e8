"""Where the journal lives: the user's, never on a network filesystem, taken over from the inbox."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from builders import erp_row, filedrop, mountinfo, run_env, write_erp_csv

from filedrop.errors import ConfigError
from filedrop.journal.location import open_journal
from filedrop.sandbox import Sandbox


@pytest.mark.parametrize("fs_type", ["nfs4", "cifs", "smb3", "fuse.sshfs", "fuse"])
def test_a_sqlite_journal_on_a_network_filesystem_is_refused(tmp_path: Path, fs_type: str) -> None:
    """One sentence naming the journal and the mount, pointing to PostgreSQL; nothing opened."""
    share = tmp_path / "share"
    share.mkdir()
    journal = share / "filedrop" / "journal.db"
    with pytest.raises(ConfigError) as refused:
        open_journal(
            journal,
            inbox=None,
            allow_network=False,
            clock=lambda: 0.0,
            mountinfo=mountinfo((str(share.resolve()), fs_type)),
        )
    assert str(refused.value) == (
        f"The journal {journal} would be on a network filesystem ({fs_type} mounted at "
        f"{share.resolve()}), where SQLite's locking is not safe; use PostgreSQL "
        "(FILEDROP_STATE=postgresql://user@host/db) or a local disk, or set "
        "FILEDROP_ALLOW_NETWORK_JOURNAL=true if you know this filesystem locks correctly. "
        "Nothing was sent."
    )
    assert not journal.exists()


def test_the_longest_mount_point_decides(tmp_path: Path) -> None:
    """A local disk mounted inside a share holds the journal: it is not refused."""
    local = tmp_path / "share" / "local"
    local.mkdir(parents=True)
    text = mountinfo((str((tmp_path / "share").resolve()), "nfs"), (str(local.resolve()), "xfs"))
    with open_journal(
        local / "journal.db", inbox=None, allow_network=False, clock=lambda: 0.0, mountinfo=text
    ) as journal:
        assert journal.path.exists()


def test_allow_network_journal_overrides_the_refusal(tmp_path: Path) -> None:
    """FILEDROP_ALLOW_NETWORK_JOURNAL=true: the operator knows their filesystem."""
    text = mountinfo((str(tmp_path.resolve()), "nfs4"))
    with open_journal(
        tmp_path / "journal.db", inbox=None, allow_network=True, clock=lambda: 0.0, mountinfo=text
    ) as journal:
        assert journal.path.exists()


def test_an_upgrade_takes_the_inbox_journal_over_and_sends_nothing(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Run with the journal in the inbox (the old default); upgrade; run: nothing is sent."""
    write_erp_csv(inbox / "u.csv", [erp_row("8001"), erp_row("8002")])
    old = inbox / ".filedrop" / "state.db"
    filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_STATE=str(old)))
    new_env = run_env(inbox, sandbox.url, XDG_STATE_HOME=str(tmp_path / "state"))
    del new_env["FILEDROP_STATE"]

    _, out, err = filedrop("run", environ=new_env)
    journal = tmp_path / "state" / "filedrop" / "journal.db"
    moved = [line.split(" INFO    ")[-1] for line in err.splitlines() if "moved" in line]
    assert moved == [
        f"The journal moved from {old} to {journal} (the old file is kept as {old}.moved)"
    ]
    assert out.splitlines()[-1] == "u.csv: skipped (already processed)"
    assert sandbox.counters().invoices_received == 2
    assert sorted(p.name for p in old.parent.iterdir()) == ["state.db.moved"]
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*) FROM invoices").fetchone() == (2,)
    _, status, _ = filedrop("status", environ=new_env)
    assert status.splitlines()[0] == f"Journal: {journal}"


def test_two_journals_are_refused_rather_than_guessed(inbox: Path, sandbox: Sandbox) -> None:
    """A journal in the inbox and one at FILEDROP_STATE: one sentence, exit 2, nothing sent."""
    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "t.csv", [erp_row("8101")])
    old = inbox / ".filedrop" / "state.db"
    filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_STATE=str(old)))
    sqlite3.connect(env["FILEDROP_STATE"]).close()  # another journal at the new place

    _, _, err = filedrop("run", environ=env, expect=2)
    assert err.splitlines()[-1] == (
        f"filedrop: There are two journals, {old} (the old place, inside the inbox) and "
        f"{env['FILEDROP_STATE']}, and filedrop will not guess which one knows what was sent: "
        "move the one that is not in use away, or point FILEDROP_STATE at the one to use. "
        "Nothing was sent."
    )
    assert sandbox.counters().invoices_received == 1


def test_the_demo_keeps_its_journal_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`filedrop demo` never touches the user's journal."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the demo's own folder
    (tmp_path / "tmp").mkdir()
    filedrop("demo", environ={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert not (tmp_path / "state").exists()
    # Beside it, multiprocessing's folder for the reader's server, if the demo started it.
    [demo] = (tmp_path / "tmp").glob("filedrop-demo-*")
    assert (demo / "journal.db").is_file()


def test_a_journal_setting_naming_a_folder_says_so(inbox: Path, sandbox: Sandbox) -> None:
    """FILEDROP_STATE=/srv/state (a folder): SQLite says only "unable to open database file";
    the sentence names the folder and the file it should name instead, and nothing is sent."""
    folder = inbox.parent / "state"
    folder.mkdir()
    write_erp_csv(inbox / "t.csv", [erp_row("8101")])
    _, _, err = filedrop(
        "run", environ=run_env(inbox, sandbox.url, FILEDROP_STATE=str(folder)), expect=2
    )
    assert err.splitlines()[-1] == (
        f"filedrop: The journal {folder} is a folder, not a file: point the state setting "
        "(FILEDROP_STATE, --state, or state in the config file) at the journal's file, such as "
        f"{folder / 'journal.db'}, or move the folder away."
    )
    assert sandbox.counters().invoices_received == 0
