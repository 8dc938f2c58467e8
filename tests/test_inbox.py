"""Which inbox files are inputs, in what order, and when a file is whole enough to take."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import FakeTime

from filedrop.inbox import (
    UNREAD_SPREADSHEET,
    UNRECORDABLE_NAME,
    NotRegularFileError,
    Readiness,
    Snapshot,
    StabilityTracker,
    content_hash,
    ignore_reason,
    is_outcome_file,
    scan,
    snapshot,
    unended_last_line,
    why_left,
)


def touch(path: Path, data: bytes = b"Nr;Navn\n1;Kari\n", *, mtime_s: float | None = None) -> Path:
    path.write_bytes(data)
    if mtime_s is not None:
        os.utime(path, (mtime_s, mtime_s))
    return path


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("~$fakturaer.xlsx", "Excel lock file"),
        (".~lock.fakturaer.xlsx#", "LibreOffice lock file"),
        ("._fakturaer.csv", "macOS resource file"),
        (".DS_Store", "macOS folder settings"),
        (".fakturaer.csv", "hidden file"),
        (".fakturaer.outcome.xlsx.tmp-1234", "hidden file"),
        ("Thumbs.db", "Windows thumbnail cache"),
        ("desktop.ini", "Windows folder settings"),
        ("fakturaer.csv.tmp", "temporary file"),
        ("fakturaer.TMP", "temporary file"),
        ("fakturaer.csv.part", "partial upload"),
        ("fakturaer.csv.filepart", "partial upload"),
        ("fakturaer.xlsx.crdownload", "partial download"),
        ("fakturaer.outcome.xlsx", "outcome file"),
        ("fakturaer.Outcome.CSV", "outcome file"),
        ("fakturaer.ods", UNREAD_SPREADSHEET),
        ("Fakturaer.NUMBERS", UNREAD_SPREADSHEET),
        ("fakturaer.xlsb", UNREAD_SPREADSHEET),
        ("fakturaer.pdf", "not a spreadsheet"),
        ("fakturaer", "not a spreadsheet"),
        ("fakturaer.csv.bak", "not a spreadsheet"),
        (os.fsdecode(b"m\xe5ned.csv"), UNRECORDABLE_NAME),  # Latin-1 from an old SFTP client
        (os.fsdecode(b"m\xe5ned.pdf"), "not a spreadsheet"),
    ],
)
def test_ignore_patterns(name, reason):
    """Lock, temporary, partial, OS, outcome and other files each say why they are ignored."""
    assert ignore_reason(Path("/inbox") / name) == reason


@pytest.mark.parametrize(
    "name", ["fakturaer.csv", "FAKTURAER.CSV", "mars.xlsx", "Mars.XLSX", "makro.xlsm", "gammel.Xls"]
)
def test_input_suffixes_match_case_insensitively(tmp_path, name):
    """Any spelling of .csv, .xlsx, .xlsm and .xls is an input candidate."""
    assert ignore_reason(touch(tmp_path / name)) is None


def test_outcome_files_are_recognised():
    """Only <stem>.outcome.xlsx and <stem>.outcome.csv are outcome files."""
    assert is_outcome_file(Path("januar.outcome.xlsx"))
    assert is_outcome_file(Path("januar.OUTCOME.csv"))
    assert not is_outcome_file(Path("januar.xlsx"))
    assert not is_outcome_file(Path("outcome.xlsx"))


def test_scan_lists_candidates_oldest_first_and_names_what_it_ignores(tmp_path):
    """Candidates come oldest first (then by name); folders and junk are listed with a reason."""
    touch(tmp_path / "c.csv", mtime_s=3000)
    touch(tmp_path / "b.xlsx", mtime_s=1000)
    touch(tmp_path / "a.csv", mtime_s=2000)
    touch(tmp_path / "a2.csv", mtime_s=2000)
    touch(tmp_path / "~$b.xlsx")
    touch(tmp_path / "a.outcome.csv")
    (tmp_path / "archive").mkdir()
    touch(tmp_path / "archive" / "old.csv")
    (tmp_path / "folder.csv").mkdir()
    candidates, ignored = scan(tmp_path)
    assert [p.name for p in candidates] == ["b.xlsx", "a.csv", "a2.csv", "c.csv"]
    assert [(p.name, why) for p, why in ignored] == [
        ("a.outcome.csv", "outcome file"),
        ("archive", "sub-folder"),
        ("folder.csv", "sub-folder"),
        ("~$b.xlsx", "Excel lock file"),
    ]


def test_scan_of_an_empty_inbox_is_empty(tmp_path):
    """Nothing there, nothing found."""
    assert scan(tmp_path) == ([], [])


def test_scan_ignores_links_dangling_or_not_without_following_them(tmp_path):
    """A link is never an input, whether it leads to a file inside, outside, or nowhere."""
    here = touch(tmp_path / "here.csv")
    (tmp_path / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    (tmp_path / "twin.csv").symlink_to(here)
    assert scan(tmp_path) == (
        [here],
        [
            (tmp_path / "gone.csv", "symbolic link, never followed"),
            (tmp_path / "twin.csv", "symbolic link, never followed"),
        ],
    )
    assert ignore_reason(tmp_path / "twin.csv") == "symbolic link, never followed"


def test_scan_ignores_what_is_not_a_regular_file(tmp_path):
    """A named pipe called like a spreadsheet is not read (it would block the reader)."""
    os.mkfifo(tmp_path / "pipe.csv")
    assert scan(tmp_path) == ([], [(tmp_path / "pipe.csv", "not a regular file")])


def test_content_hash_is_stable_and_follows_content(tmp_path):
    """Same bytes, same hash (whatever the name); other bytes, another hash."""
    big = os.urandom(3 * 1024 * 1024 + 17)  # spans several 1 MiB chunks
    a = touch(tmp_path / "a.csv", big)
    b = touch(tmp_path / "b.csv", big)
    assert content_hash(a) == content_hash(a) == content_hash(b)
    assert len(content_hash(a)) == 64
    touch(b, big + b"x")
    assert content_hash(b) != content_hash(a)
    empty = touch(tmp_path / "e.csv", b"")
    assert content_hash(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_snapshot_is_none_for_a_missing_file(tmp_path):
    """A vanished file has no snapshot."""
    path = touch(tmp_path / "a.csv", b"12345", mtime_s=2000)
    assert snapshot(path) == Snapshot(size=5, mtime_ns=2000 * 10**9, inode=path.stat().st_ino)
    assert snapshot(tmp_path / "gone.csv") is None


def test_file_is_ready_only_after_the_window_unchanged(tmp_path):
    """Ready once size and mtime have not changed for the whole window."""
    clock = FakeTime(start=1000.0)
    tracker = StabilityTracker(window_s=5.0, clock=clock.clock)
    path = touch(tmp_path / "a.csv")
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 4.9
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 0.1
    assert tracker.readiness(path) is Readiness.READY


def test_a_growing_file_restarts_the_window(tmp_path):
    """Each change of size (an upload still going) starts the window again."""
    clock = FakeTime(start=1000.0)
    tracker = StabilityTracker(window_s=5.0, clock=clock.clock)
    path = touch(tmp_path / "a.csv", b"Nr;Navn\n", mtime_s=2000)
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 4
    touch(path, b"Nr;Navn\n1;Kari\n", mtime_s=2000)  # same mtime: the size alone tells
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 4
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 1
    assert tracker.readiness(path) is Readiness.READY


def test_a_touched_file_restarts_the_window(tmp_path):
    """A new mtime with the same size (rewritten in place) also starts the window again."""
    clock = FakeTime(start=1000.0)
    tracker = StabilityTracker(window_s=5.0, clock=clock.clock)
    path = touch(tmp_path / "a.csv", mtime_s=2000)
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 4
    os.utime(path, (2001, 2001))
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 4
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 1
    assert tracker.readiness(path) is Readiness.READY


def test_an_empty_file_is_never_ready(tmp_path):
    """Zero bytes is not a file yet, however long it waits."""
    clock = FakeTime(start=1000.0)
    tracker = StabilityTracker(window_s=5.0, clock=clock.clock)
    path = touch(tmp_path / "a.csv", b"")
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 3600
    assert tracker.readiness(path) is not Readiness.READY
    assert StabilityTracker(window_s=0, clock=clock.clock).readiness(path) is not Readiness.READY


def test_an_empty_file_unchanged_for_the_window_is_reported_empty(tmp_path):
    """Empty and stable is its own answer (the file gets an ERROR), never "ready" or forever
    "changing"; once bytes arrive the window starts again."""
    clock = FakeTime(start=1000.0)
    tracker = StabilityTracker(window_s=5, clock=clock.clock)
    path = touch(tmp_path / "e.csv", b"")
    assert tracker.readiness(path) is Readiness.CHANGING
    clock.sleep(5)
    assert tracker.readiness(path) is Readiness.EMPTY
    touch(path, b"a;b\n", mtime_s=2000)
    assert tracker.readiness(path) is Readiness.CHANGING
    clock.sleep(5)
    assert tracker.readiness(path) is Readiness.READY


def test_a_link_is_never_ready_nor_hashed(tmp_path):
    """A link where a file was is not read: no readiness, and hashing refuses it."""
    clock = FakeTime(start=1000.0)
    target = touch(tmp_path / "outside.toml", b'client_secret = "s3cr3t"\n')
    link = tmp_path / "config.csv"
    link.symlink_to(target)
    assert StabilityTracker(window_s=0, clock=clock.clock).readiness(link) is Readiness.CHANGING
    with pytest.raises(NotRegularFileError):
        content_hash(link)


def test_zero_window_is_ready_at_once(tmp_path):
    """With no window a non-empty file that opens is ready on first sight."""
    tracker = StabilityTracker(window_s=0, clock=FakeTime(start=1000.0).clock)
    assert tracker.readiness(touch(tmp_path / "a.csv")) is Readiness.READY


def test_something_that_does_not_open_is_not_ready(tmp_path):
    """Stable and non-empty is not enough: it must also open for reading (a folder does not)."""
    folder = tmp_path / "a.csv"
    folder.mkdir()
    touch(folder / "inside.csv")
    assert snapshot(folder) is not None
    assert (
        StabilityTracker(window_s=0, clock=FakeTime(start=1000.0).clock).readiness(folder)
        is not Readiness.READY
    )


def test_forget_and_vanish_start_over(tmp_path):
    """After forget, or after the file vanished and came back, the window starts again."""
    clock = FakeTime(start=1000.0)
    tracker = StabilityTracker(window_s=5.0, clock=clock.clock)
    path = touch(tmp_path / "a.csv", mtime_s=2000)
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 5
    tracker.forget(path)
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 5
    assert tracker.readiness(path) is Readiness.READY
    path.unlink()
    assert tracker.readiness(path) is not Readiness.READY
    touch(path, mtime_s=2000)
    assert tracker.readiness(path) is not Readiness.READY
    clock.now += 5
    assert tracker.readiness(path) is Readiness.READY


@pytest.mark.parametrize(
    ("name", "data", "age_s", "unended"),
    [
        ("cut.csv", b"Nr;Navn\n1;Ka", 0, True),
        ("cut.txt", b"Nr;Navn\n1;Ka", 0, True),
        ("whole.csv", b"Nr;Navn\n1;Kari\n", 0, False),
        ("crlf.csv", b"Nr;Navn\r\n1;Kari\r\n", 0, False),
        ("utf16.csv", "Nr;Navn\n1;Kari\n".encode("utf-16-le"), 0, False),
        ("dos.csv", b"Nr;Navn\r\n1;Kari\r\n\x1a", 0, False),
        ("settled.csv", b"Nr;Navn\n1;Ka", 61, False),
        ("ahead.csv", b"Nr;Navn\n1;Ka", -86_400, False),  # a time ahead of the clock
        ("book.xlsx", b"PK\x03\x04 cut", 0, False),
    ],
)
def test_a_last_line_with_no_line_ending_holds_a_fresh_delimited_file_back(
    tmp_path: Path, name: str, data: bytes, age_s: float, unended: bool
) -> None:
    """A delimited file whose last line has no line ending may be an upload paused mid-row:
    it is not ready, even past the stability window, until it has not changed for a minute.
    Every line ending counts (UTF-16's too); a workbook is never judged so."""
    path = touch(tmp_path / name, data)
    when = time.time() - age_s
    os.utime(path, (when, when))
    assert unended_last_line(path) is unended
    readiness = StabilityTracker(window_s=0).readiness(path)
    assert (readiness is Readiness.CHANGING) is unended
    if unended:
        assert why_left(path) == (
            "its last line has no line ending yet, as while it is uploaded; left for the next "
            "run, which takes it once it has not changed for 60 s"
        )
