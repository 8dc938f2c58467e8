"""Watch mode: a real observer on a real folder, a real sandbox, a real subprocess.

The in-process tests run ``watch_inbox`` in a thread with short windows and wait on its reports
with a deadline; the observer kind (inotify-style events, or polling) is a parameter wherever the
observer is what finds the file. Later drops are made only after the first rescan, with rescans
rare, so that they can only be found through the observer under test.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd
import pytest
from conftest import (
    ORG_ID,
    ROOT,
    FakeTime,
    Logged,
    drop_connections,
    journal_file,
    refuse_reading,
    sandbox_settings,
    wait_until,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from filedrop import watch as watch_module
from filedrop.inbox import content_hash
from filedrop.inflight import Sending
from filedrop.journal import Journal, this_owner
from filedrop.journal.engines import PostgresLocation
from filedrop.pipeline import Context, FileReport
from filedrop.runner import open_context
from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.states import FileState
from filedrop.watch import WatchOptions, watch_inbox, watch_through_outages

pytestmark = pytest.mark.timeout(120)

REPO = ROOT
T = TypeVar("T")

# A small layout of our own: no KIDs or national ids to get right, so any number can be made up.
MAPPING = """\
name = "watch test"

[match]
files = ["*.csv", "*.xlsx"]
headers = ["Invoice", "Amount"]

[read]
delimiter = ";"
dates = ["yyyy-mm-dd"]

[invoice]
type = { constant = "NOTICE" }
invoiceNumber = "Invoice"
originalInvoiceAmount = "Amount"
currency = { constant = "NOK" }
invoiceDate = "Date"
dueDate = "Due"

[debtor]
type = { constant = "PRIVATE" }
firstname = "First"
lastname = "Last"

[[claims]]
type = { constant = "PRINCIPAL" }
remainingAmount = "Amount"
"""
HEADER = "Invoice;Amount;Date;Due;First;Last\n"


def row(number: str) -> str:
    return f"{number};1250;2024-03-01;2024-03-15;Kari;Nordmann\n"


def csv_text(numbers: list[str]) -> str:
    return HEADER + "".join(row(number) for number in numbers)


def outcome_rows(path: Path) -> pd.DataFrame:
    """An outcome file as text cells (CSV in the input's ';' dialect, or the first Excel sheet)."""
    if path.suffix == ".xlsx":
        return pd.read_excel(
            path, sheet_name=0, dtype=str, keep_default_na=False, engine="calamine"
        )
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mappings" / "watch-test.toml"
    path.parent.mkdir()
    path.write_text(MAPPING, encoding="utf-8")
    return path


@pytest.fixture(params=[False, True], ids=["events", "polling"])
def polling(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Watcher:
    """``watch_inbox`` running in a thread, with the reports it hands out."""

    def __init__(self, ctx: Context, options: WatchOptions, logged: Logged) -> None:
        self.inbox = ctx.inbox
        self.ctx = ctx
        self.logged = logged
        self.stop = threading.Event()
        self.reports: list[FileReport] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(options,), daemon=True)

    def _run(self, options: WatchOptions) -> None:
        try:
            watch_inbox(self.ctx, options=options, stop=self.stop, on_report=self.reports.append)
        except BaseException as exc:  # shown by the test that waits, not lost in a thread
            self.error = exc

    def start(self) -> Watcher:
        """Start, and return once the first rescan is done (so the observer is running)."""
        (self.inbox / "desktop.ini").write_text("[.ShellClassInfo]\n", encoding="utf-8")
        self.thread.start()
        self.wait(lambda: self.logged.count("desktop.ini: ignored"), what="the first rescan")
        return self

    def wait(self, check: Callable[[], T], *, what: str, timeout_s: float = 20.0) -> T:
        def checked() -> T:
            if self.error is not None:
                raise AssertionError(f"watch_inbox raised {self.error!r}") from self.error
            return check()

        return wait_until(checked, timeout_s=timeout_s, what=what)

    def reports_for(self, name: str) -> list[FileReport]:
        return [report for report in list(self.reports) if report.path.name == name]

    def wait_for(self, *names: str, timeout_s: float = 20.0) -> dict[str, FileReport]:
        """The first report of each named file, once every one of them has one."""
        self.wait(
            lambda: all(self.reports_for(name) for name in names),
            what=f"reports for {', '.join(names)}",
            timeout_s=timeout_s,
        )
        return {name: self.reports_for(name)[0] for name in names}

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "watch_inbox did not return after stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def start_watch(
    sandbox: Sandbox, inbox: Path, mapping: Path, logged: Logged
) -> Iterator[Callable[..., Watcher]]:
    """Start a watcher on ``inbox`` against ``sandbox``: ``start_watch(polling=..., ...)``
    overrides settings; ``folder`` is the inbox setting if not ``inbox`` itself."""
    started: list[Watcher] = []
    with ExitStack() as stack:

        def start(*, folder: Path | None = None, **overrides: Any) -> Watcher:
            values: dict[str, Any] = {
                "stability_s": 0.3,
                "rescan_s": 3600.0,  # only the start-up scan: later drops must come by events
                "observer_poll_s": 0.1,
                "concurrent_files": 2,
                "mapping": mapping,
            }
            values.update(overrides)
            settings = sandbox_settings(folder or inbox, sandbox.url, **values)
            ctx = stack.enter_context(open_context(settings))
            watcher = Watcher(ctx, WatchOptions.from_settings(settings, tick_s=0.02), logged)
            started.append(watcher)
            return watcher.start()

        yield start
        for watcher in started:
            watcher.halt()  # a watcher that does not return after stop fails its test here


def assert_sent_once(sandbox: Sandbox, numbers: list[str]) -> None:
    """The sandbox got exactly these invoice numbers, each exactly once."""
    received = sandbox.received_invoice_numbers()
    assert sandbox.counters().invoice_numbers_repeated == ()
    assert sorted(received) == sorted(numbers)


# -- finding files, and taking them only when whole ---------------------------------------------


def test_slow_upload_in_place_is_processed_once_and_whole(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, polling: bool
) -> None:
    """A file written in place over ~4 s, a chunk every 0.35 s, waits out a 1 s stability window
    and is processed once with every row (any pick-up before the last chunk would show)."""
    watcher = start_watch(polling=polling, stability_s=1.0, rescan_s=0.1)
    numbers = [f"SLOW-{i:03d}" for i in range(24)]
    chunks = [HEADER + row(numbers[0]) + row(numbers[1])]
    chunks += [row(numbers[i]) + row(numbers[i + 1]) for i in range(2, len(numbers), 2)]
    path = watcher.inbox / "upload.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        for chunk in chunks:
            handle.write(chunk)
            handle.flush()
            time.sleep(0.35)
    report = watcher.wait_for("upload.csv")["upload.csv"]
    assert report.state is FileState.DONE
    assert report.counts == {"SUCCEEDED": len(numbers)}
    assert report.outcome is not None
    outcome = outcome_rows(report.outcome)
    assert list(outcome["Invoice"]) == numbers
    assert set(outcome["outcome_status"]) == {"SUCCEEDED"}
    assert_sent_once(sandbox, numbers)
    assert len(watcher.reports_for("upload.csv")) == 1


def test_an_upload_paused_inside_a_row_waits_for_its_last_line_to_end(
    start_watch: Callable[..., Watcher], sandbox: Sandbox
) -> None:
    """An upload that pauses inside its last row for longer than the stability window: that
    row went out cut as it stood ("Nordmann" as "Nord"; an amount 211,03 as 2). A last line
    with no line ending holds the file (for a minute at most), and the rest is taken whole."""
    watcher = start_watch(polling=False, stability_s=0.3, rescan_s=0.1)
    path = watcher.inbox / "paused.csv"
    whole = csv_text(["CUT-1", "CUT-2"])
    path.write_text(whole[:-5], encoding="utf-8")  # the upload stops inside "Nordmann"
    time.sleep(1.5)
    assert sandbox.received_invoice_numbers() == []
    with path.open("a", encoding="utf-8") as handle:
        handle.write(whole[-5:])
    report = watcher.wait_for("paused.csv")["paused.csv"]
    assert report.counts == {"SUCCEEDED": 2}
    assert report.outcome is not None
    assert list(outcome_rows(report.outcome)["Last"]) == ["Nordmann", "Nordmann"]
    assert_sent_once(sandbox, ["CUT-1", "CUT-2"])


def test_a_replacement_of_the_same_size_and_time_is_taken(
    start_watch: Callable[..., Watcher], sandbox: Sandbox
) -> None:
    """A corrected file uploaded under a temporary name, its source's time kept (scp -p, rsync
    -t, WinSCP), renamed over one already processed, the same size: size and time alone said
    nothing changed, and its rows were never sent while the daemon ran."""
    watcher = start_watch(polling=False, stability_s=0.3, rescan_s=0.1)
    path = watcher.inbox / "f.csv"
    path.write_text(csv_text(["OLD-1"]), encoding="utf-8")
    watcher.wait_for("f.csv")
    before = path.stat()
    path.chmod(0o600)  # what only moves its change time is no new file: not read again
    os.utime(path, ns=(before.st_atime_ns + 10**9, before.st_mtime_ns))
    time.sleep(1.0)
    assert len(watcher.reports_for("f.csv")) == 1
    part = watcher.inbox / ".f.csv.part"
    part.write_text(csv_text(["NEW-1"]), encoding="utf-8")
    os.utime(part, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(part, path)
    watcher.wait(lambda: len(watcher.reports_for("f.csv")) >= 2, what="the replacement")
    assert_sent_once(sandbox, ["OLD-1", "NEW-1"])


def test_content_written_while_a_file_is_processed_is_taken_again(
    start_watch: Callable[..., Watcher], sandbox: Sandbox
) -> None:
    """A re-export under the same name while the first is being processed is not lost: it is
    taken again once the first is done, and each version's invoices are sent once."""
    sandbox.options.delay_s = (1.0, 1.0)  # the first version's batch stays QUEUED a while
    watcher = start_watch(polling=False, stability_s=0.3, rescan_s=0.1)
    path = watcher.inbox / "again.csv"
    path.write_text(HEADER + row("FIRST-1"), encoding="utf-8")
    watcher.wait(lambda: "FIRST-1" in sandbox.received_invoice_numbers(), what="the first POST")
    path.write_text(HEADER + row("FIRST-1") + row("SECOND-2"), encoding="utf-8")
    watcher.wait(lambda: len(watcher.reports_for("again.csv")) >= 2, what="the second version")
    assert_sent_once(sandbox, ["FIRST-1", "SECOND-2"])
    statuses = list(outcome_rows(watcher.inbox / "again.outcome.csv")["outcome_status"])
    assert statuses == ["DUPLICATE", "SUCCEEDED"]


def test_a_file_waiting_on_queued_batches_never_holds_up_a_new_drop(
    start_watch: Callable[..., Watcher], sandbox: Sandbox
) -> None:
    """With one file slot, a file re-polled because its batch is still QUEUED does not make a
    newly dropped file wait: the new one is done first."""
    sandbox.options.delay_s = (4.0, 4.0)
    watcher = start_watch(concurrent_files=1, poll_timeout_s=2.0, retry_initial_s=0.2)
    (watcher.inbox / "slow.csv").write_text(HEADER + row("SLOW-1"), encoding="utf-8")
    watcher.wait(lambda: watcher.reports_for("slow.csv"), what="slow.csv waiting")
    assert watcher.reports_for("slow.csv")[0].state is FileState.WAITING
    sandbox.options.delay_s = (0.0, 0.0)
    (watcher.inbox / "new.csv").write_text(HEADER + row("NEW-1"), encoding="utf-8")
    watcher.wait(lambda: watcher.reports_for("new.csv"), what="new.csv", timeout_s=20)
    # Polls are at least a second apart, so slow.csv may need several rounds before it ends.
    watcher.wait(
        lambda: watcher.reports_for("slow.csv")[-1].counts == {"SUCCEEDED": 1},
        what="slow.csv done",
        timeout_s=20,
    )
    order = [report.path.name for report in watcher.reports]
    assert order.index("new.csv") < len(order) - 1 - order[::-1].index("slow.csv")
    assert_sent_once(sandbox, ["SLOW-1", "NEW-1"])


def test_a_daemon_carries_on_after_its_postgresql_journal_restarts(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, postgres_url: str
) -> None:
    """PostgreSQL restarts under a running daemon (every connection ended, as a restart or a
    failover ends them): the next file is still done, without restarting filedrop, and nothing
    is sent twice."""
    watcher = start_watch(state=PostgresLocation.parse(postgres_url), retry_initial_s=0.2)
    (watcher.inbox / "before.csv").write_text(HEADER + row("PG-1"), encoding="utf-8")
    watcher.wait_for("before.csv")
    assert drop_connections(postgres_url) >= 1
    (watcher.inbox / "after.csv").write_text(HEADER + row("PG-2"), encoding="utf-8")
    watcher.wait(
        lambda: [r.counts for r in watcher.reports_for("after.csv")][-1:] == [{"SUCCEEDED": 1}],
        what="after.csv done",
    )
    assert_sent_once(sandbox, ["PG-1", "PG-2"])


def test_a_daemon_whose_journal_folder_is_removed_puts_it_back(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, tmp_path: Path
) -> None:
    """The journal's folder is removed while the daemon runs (a clean-up script): the next file
    finds it put back from the open copy, and the journal the next start opens knows the
    invoices of both files (so a re-export would send neither again)."""
    state = tmp_path / "state" / "journal.db"
    watcher = start_watch(state=state)
    (watcher.inbox / "first.csv").write_text(HEADER + row("RM-1"), encoding="utf-8")
    watcher.wait_for("first.csv")
    shutil.rmtree(state.parent)
    (watcher.inbox / "second.csv").write_text(HEADER + row("RM-2"), encoding="utf-8")
    watcher.wait_for("second.csv")
    watcher.halt()
    with Journal(state) as journal:
        known = journal.invoices(target=watcher.ctx.target, numbers=["RM-1", "RM-2"])
    assert sorted(known) == ["RM-1", "RM-2"]
    assert_sent_once(sandbox, ["RM-1", "RM-2"])


def test_files_held_back_by_a_mark_are_taken_once_it_is_deleted(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, logged: Logged
) -> None:
    """Another journal's sending mark holds the inbox back: the daemon looks at the held files
    again, as deleting the mark (the operator's fix, once Amili said what arrived) changes no
    file; they were settled, and sent only after a restart."""
    watcher = start_watch(retry_initial_s=0.2, retry_max_s=0.4)
    marks = watcher.inbox / ".filedrop" / "sending"
    marks.mkdir(parents=True)
    facts = {"file": "old.csv", "sha256": "00" * 32, "journal": "an-other-journal"}
    mark = marks / "0123.json"
    head = json.dumps({**facts, "target": watcher.ctx.target, "started_at": 0})
    mark.write_text(f"{head}\n7\n")  # batch 7 of that journal went
    (watcher.inbox / "held.csv").write_text(HEADER + row("HB-1"), encoding="utf-8")
    held = watcher.wait_for("held.csv")["held.csv"]
    assert held.state is FileState.SKIPPED
    assert held.message == (
        "not sent: the journal does not know all that was sent from old.csv (see the log); "
        "point FILEDROP_STATE at the journal in use then"
    )
    assert sandbox.counters().posts == 0
    mark.unlink()
    watcher.wait(
        lambda: any(r.state is FileState.DONE for r in watcher.reports_for("held.csv")),
        what="held.csv sent once the mark is gone",
    )
    assert_sent_once(sandbox, ["HB-1"])
    assert logged.count("old.csv: the journal ") == 1  # said once, not at every look


def test_a_gone_file_held_back_by_its_mark_is_told_once(
    start_watch: Callable[..., Watcher], logged: Logged
) -> None:
    """A file deleted while unfinished, whose sending mark names a batch this journal does not
    hold: the daemon leaves it as it is at every rescan, and says why once, not at each."""
    watcher = start_watch(rescan_s=0.05)
    journal, target = watcher.ctx.journal, watcher.ctx.target
    source, sha256 = watcher.inbox / "april.csv", "cd" * 32
    record = journal.claim_file(
        path=source, sha256=sha256, target=target, owner=this_owner(), stale_s=60
    )
    assert record is not None
    batch, _ = journal.claim_batch(file_id=record.id, target=target, invoice_numbers=["GH-1"])
    sending = Sending(source, sha256, journal=journal.identity(), target=target, now=time.time())
    sending.before_post(batch)
    sending.before_post(batch + 1)  # sent by this journal before it was put back from a copy
    journal.batch_not_sent(batch, message="Amili down")
    journal.finish_file(record.id, state=FileState.RETRY, counts={}, mapping="m", outcome=None)
    held = "april.csv: moved, replaced or deleted while unfinished, and not closed"
    watcher.wait(lambda: logged.count(held) >= 1, what="the held-back file told")
    time.sleep(0.5)  # ten rescans, each finding it held back again
    assert logged.count(held) == 1
    assert journal.file(record.id).state is FileState.RETRY
    assert sending.path.exists()


@pytest.mark.parametrize("gone", ["removed", "moved away"])
def test_an_inbox_removed_and_made_again_is_watched_again_at_once(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, logged: Logged, gone: str
) -> None:
    """The inbox is removed, or renamed away, and made again (a share remounted): the observer
    on the old folder is replaced, so a file dropped into the new one is taken without waiting
    for a rescan (an hour away here)."""
    watcher = start_watch()
    if gone == "removed":
        shutil.rmtree(watcher.inbox)
    else:
        watcher.inbox.rename(watcher.inbox.with_name("inbox.old"))
    watcher.inbox.mkdir()
    watcher.wait(
        lambda: logged.count(f"the inbox {watcher.inbox} was removed or moved, and made again"),
        what="the observer replaced",
    )
    (watcher.inbox / "again.csv").write_text(HEADER + row("AGAIN-1"), encoding="utf-8")
    assert watcher.wait_for("again.csv", timeout_s=10)["again.csv"].counts == {"SUCCEEDED": 1}
    assert_sent_once(sandbox, ["AGAIN-1"])


@pytest.mark.parametrize("leaves", ["dies", "leaves it waiting"])
def test_a_file_another_process_holds_is_taken_up_once_that_process_lets_go(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, inbox: Path, leaves: str
) -> None:
    """A file claimed by another live process is skipped as being processed elsewhere, not
    settled; at a rescan after that process died or left it waiting, watch takes it up (its own
    retry timer is far off, so only the rescan can have found it)."""
    path = inbox / "held.csv"
    path.write_text(csv_text(["HELD-1"]), encoding="utf-8")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Journal(journal_file(inbox)) as journal:
            record = journal.claim_file(
                path=path,
                sha256=content_hash(path),
                target=f"sandbox:{ORG_ID}",
                owner=f"{socket.gethostname()}:{other.pid}",
                stale_s=900.0,
            )
            assert record is not None
            watcher = start_watch(rescan_s=0.2, retry_initial_s=3600.0, retry_max_s=3600.0)
            skipped = watcher.wait_for("held.csv")["held.csv"]
            assert (skipped.state, skipped.message) == (
                FileState.SKIPPED,
                f"being processed by another filedrop process ({socket.gethostname()}:{other.pid})",
            )
            if leaves == "dies":
                other.kill()
                other.wait(timeout=10)
            else:
                journal.finish_file(
                    record.id, state=FileState.WAITING, counts={}, mapping=None, outcome=None
                )
            watcher.wait(lambda: len(watcher.reports_for("held.csv")) == 2, what="held.csv again")
    finally:
        other.kill()
        other.wait(timeout=10)
    assert watcher.reports_for("held.csv")[1].counts == {"SUCCEEDED": 1}
    assert_sent_once(sandbox, ["HELD-1"])


def test_renames_into_and_inside_the_inbox_are_both_seen(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, polling: bool, tmp_path: Path
) -> None:
    """A file written elsewhere and renamed into the inbox, and a .part renamed to .csv inside
    it, are both found by the observer and processed; the .part itself is only logged."""
    watcher = start_watch(polling=polling)
    elsewhere = tmp_path / "staging"
    elsewhere.mkdir()
    (elsewhere / "moved.csv").write_text(csv_text(["MOVED-1", "MOVED-2"]), encoding="utf-8")
    partial = watcher.inbox / "parted.csv.part"
    partial.write_text(csv_text(["PART-1", "PART-2"]), encoding="utf-8")
    watcher.wait(lambda: watcher.logged.count("parted.csv.part: ignored"), what="the .part")
    os.rename(elsewhere / "moved.csv", watcher.inbox / "moved.csv")
    os.rename(partial, watcher.inbox / "parted.csv")
    reports = watcher.wait_for("moved.csv", "parted.csv")
    assert {name: report.counts for name, report in reports.items()} == {
        "moved.csv": {"SUCCEEDED": 2},
        "parted.csv": {"SUCCEEDED": 2},
    }
    assert_sent_once(sandbox, ["MOVED-1", "MOVED-2", "PART-1", "PART-2"])
    assert watcher.reports_for("parted.csv.part") == []


def test_lock_and_resource_files_are_ignored_and_logged_once(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, polling: bool
) -> None:
    """~$x.xlsx, .~lock.x.xlsx# and ._x.csv (holding good rows) get no outcome and send nothing,
    and each is logged as ignored exactly once, through repeated events and many rescans."""
    watcher = start_watch(polling=polling, rescan_s=0.05)
    junk = {
        "~$x.xlsx": csv_text(["LOCK-1"]),
        ".~lock.x.xlsx#": ",Kari Nordmann,host,01.03.2024 10:00,file:///home/kari;\n",
        "._x.csv": csv_text(["APPLE-1"]),
    }
    for name, text in junk.items():
        (watcher.inbox / name).write_text(text, encoding="utf-8")
    for name in junk:  # more events for the same names
        with (watcher.inbox / name).open("a", encoding="utf-8") as handle:
            handle.write("\n")
    (watcher.inbox / "real.csv").write_text(csv_text(["REAL-1"]), encoding="utf-8")
    watcher.wait_for("real.csv")
    for name in junk:
        assert watcher.logged.count(f"{name}: ignored (") == 1, name
        assert watcher.reports_for(name) == []
    outcomes = sorted(path.name for path in watcher.inbox.iterdir() if "outcome" in path.name)
    assert outcomes == ["real.outcome.csv"]
    assert_sent_once(sandbox, ["REAL-1"])


def test_burst_of_50_files_is_processed_each_once(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, polling: bool
) -> None:
    """Fifty files dropped at once: fifty outcomes, fifty numbers sent once each, one report per
    file, and rescans afterwards do not take any of them again."""
    watcher = start_watch(polling=polling, rescan_s=0.05, concurrent_files=4)
    names = [f"burst-{i:02d}.csv" for i in range(50)]
    for i, name in enumerate(names):
        (watcher.inbox / name).write_text(csv_text([f"BURST-{i:02d}"]), encoding="utf-8")
    reports = watcher.wait_for(*names, timeout_s=60)
    assert {report.state for report in reports.values()} == {FileState.DONE}
    # One more file, so that many rescans pass over the fifty before the counts are taken.
    (watcher.inbox / "after.csv").write_text(csv_text(["AFTER-1"]), encoding="utf-8")
    watcher.wait_for("after.csv")
    per_file = Counter(report.path.name for report in watcher.reports)
    assert {per_file[name] for name in names} == {1}
    assert all((watcher.inbox / name.replace(".csv", ".outcome.csv")).exists() for name in names)
    assert_sent_once(sandbox, [f"BURST-{i:02d}" for i in range(50)] + ["AFTER-1"])
    assert sandbox.counters().posts == 51


def test_a_file_that_cannot_be_looked_at_for_a_while_is_waited_out(
    start_watch: Callable[..., Watcher],
    sandbox: Sandbox,
    polling: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The inbox made unreadable (chmod 000 on a share, a permission changed) while a file
    waits in it: every look at the file is refused. The daemon ended with "unexpected error",
    exit 2, and the file was never taken (found by a hostile review). It keeps running, and
    takes the file once it can be looked at again. (Refused by hand: the tests run as root,
    whom no mode refuses.)"""
    watcher = start_watch(polling=polling, rescan_s=0.05)
    refused = threading.Event()
    refused.set()
    lstat = Path.lstat

    def denied(path: Path) -> os.stat_result:
        if refused.is_set() and path.name == "locked.csv":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return lstat(path)

    monkeypatch.setattr(Path, "lstat", denied)
    (watcher.inbox / "locked.csv").write_text(csv_text(["LOCKED-1"]), encoding="utf-8")
    time.sleep(0.5)  # several rescans and turns of the loop, each refused
    assert watcher.thread.is_alive() and watcher.error is None
    refused.clear()
    assert watcher.wait_for("locked.csv")["locked.csv"].counts == {"SUCCEEDED": 1}
    assert_sent_once(sandbox, ["LOCKED-1"])


def test_a_file_its_permissions_keep_from_being_read_is_said_and_taken_once_it_reads(
    start_watch: Callable[..., Watcher],
    sandbox: Sandbox,
    polling: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partner's upload whose mode lets the daemon's user not read it: it was taken for one
    still being written, for ever, and nothing said so (found by a hostile review). It gets its
    ERROR naming the cause, and is looked at again, as a chmod changes none of its bytes: once
    it reads, it is sent. (Refused by hand: the tests run as root, whom no mode refuses.)"""
    watcher = start_watch(polling=polling, rescan_s=0.05, retry_initial_s=0.2)
    refused = refuse_reading(monkeypatch, "private.csv")
    (watcher.inbox / "private.csv").write_text(csv_text(["PRIVATE-1"]), encoding="utf-8")
    first = watcher.wait_for("private.csv")["private.csv"]
    assert (first.state, first.counts) == (FileState.ERROR, {"ERROR": 1})
    assert first.message == (
        "private.csv: cannot be opened (Permission denied); check its permissions"
    )
    refused.clear()
    watcher.wait(
        lambda: [r.counts for r in watcher.reports_for("private.csv")][-1] == {"SUCCEEDED": 1},
        what="private.csv sent once it reads",
    )
    assert_sent_once(sandbox, ["PRIVATE-1"])


def test_a_post_left_without_its_answer_at_the_stop_is_said_with_what_to_do(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, polling: bool, logged: Logged
) -> None:
    """Stopped while a POST waits for an answer that comes after the shutdown's grace: the
    batch is UNKNOWN from the next start, and the daemon's last lines said only 'stopping'
    (found by a hostile review). It names the batch and what to do."""
    watcher = start_watch(polling=polling, shutdown_s=0.3)
    sandbox.stall_next(3.0, route="invoices")
    (watcher.inbox / "slow.csv").write_text(csv_text(["SLOW-1"]), encoding="utf-8")
    watcher.wait(lambda: sandbox.counters().posts >= 1, what="the POST on its way")
    watcher.halt()
    said = (
        "slow.csv: batch #1 (1 invoice) was still waiting for its answer as filedrop stopped, "
        "so whether Amili received it cannot be told; the next start makes it UNKNOWN: check "
        "with Amili, then run 'filedrop resolve 1 --sent' or '--not-sent'"
    )
    assert logged.count(said) == 1


def test_unreadable_file_gets_error_once_and_next_file_is_processed(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, polling: bool
) -> None:
    """A file that cannot be read gets one ERROR outcome naming it, is not retried by later
    rescans, and the file after it (one at a time) is still processed."""
    watcher = start_watch(polling=polling, rescan_s=0.05, concurrent_files=1)
    broken = watcher.inbox / "broken.xlsx"
    broken.write_text("this is not a workbook\n", encoding="utf-8")
    nxt = watcher.inbox / "next.csv"
    nxt.write_text(csv_text(["NEXT-1"]), encoding="utf-8")
    os.utime(broken, ns=(time.time_ns() - 10**9, time.time_ns() - 10**9))  # oldest goes first
    reports = watcher.wait_for("broken.xlsx", "next.csv")
    assert reports["broken.xlsx"].state is FileState.ERROR
    assert reports["broken.xlsx"].counts == {"ERROR": 1}
    error = outcome_rows(watcher.inbox / "broken.outcome.xlsx")
    assert list(error["outcome_status"]) == ["ERROR"]
    assert "broken.xlsx" in error["outcome_message"][0]
    assert reports["next.csv"].counts == {"SUCCEEDED": 1}
    (watcher.inbox / "later.csv").write_text(csv_text(["LATER-1"]), encoding="utf-8")
    watcher.wait_for("later.csv")
    assert len(watcher.reports_for("broken.xlsx")) == 1
    assert_sent_once(sandbox, ["NEXT-1", "LATER-1"])


def test_watch_over_a_hostile_folder_stays_up_and_takes_a_good_file(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, tmp_path: Path
) -> None:
    """Links (to a secret, to a good file outside, dangling), a pipe, a forged-log name, a name
    too long for its outcome, an empty file, a stray temporary file, a workbook with a cell at
    XFD1048576, a zip bomb and an .xls/.xlsx pair sharing a stem: none is sent or followed, each
    is answered once, and a good file dropped afterwards gets its outcome."""
    from hostile import bomb_workbook, far_cell_workbook

    inbox = tmp_path / "inbox"
    secret = tmp_path / "filedrop.toml"
    secret.write_text('client_secret = "s3cr3t"\n', encoding="utf-8")
    outside = tmp_path / "outside.csv"
    outside.write_text(csv_text(["OUTSIDE-1"]), encoding="utf-8")
    (inbox / "config.csv").symlink_to(secret)
    (inbox / "outside.csv").symlink_to(outside)
    (inbox / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    os.mkfifo(inbox / "pipe.csv")
    forged = "x\n12:00:00 INFO    a.csv: 999 SUCCEEDED\n.csv"
    (inbox / forged).write_text(csv_text(["FORGED-1"]), encoding="utf-8")
    too_long = "f" * 247 + ".csv"
    (inbox / too_long).write_text(csv_text(["LONG-1"]), encoding="utf-8")
    (inbox / "empty.csv").write_bytes(b"")
    stray = inbox / ".old.outcome.csv.0123abcd.tmp"
    stray.write_bytes(b"half an outco")
    os.utime(stray, (1_000_000_000, 1_000_000_000))
    far_cell_workbook(inbox / "report.xlsx", row=1_048_575, column=16_383)
    (inbox / "report.xls").write_bytes(b"not a workbook at all")
    bomb_workbook(inbox / "bomb.xlsx", inflated_bytes=20_000_000)
    watcher = start_watch(rescan_s=0.05, stability_s=0.1)
    workbooks = ("report.xlsx", "report.xls", "bomb.xlsx")
    reports = watcher.wait_for(forged, too_long, "empty.csv", *workbooks)
    for name in workbooks:
        assert reports[name].counts == {"ERROR": 1}
    assert reports["report.xlsx"].outcome == inbox / "report.outcome.xlsx"
    assert reports["report.xls"].outcome == inbox / "report.xls.outcome.xlsx"
    assert not stray.exists()
    assert reports[forged].counts == {"SUCCEEDED": 1}
    assert (reports[too_long].state, reports[too_long].outcome) == (FileState.ERROR, None)
    assert reports["empty.csv"].counts == {"ERROR": 1}
    (inbox / "good.csv").write_text(csv_text(["GOOD-1"]), encoding="utf-8")
    assert watcher.wait_for("good.csv")["good.csv"].counts == {"SUCCEEDED": 1}
    assert list(outcome_rows(inbox / "good.outcome.csv")["outcome_status"]) == ["SUCCEEDED"]
    assert watcher.thread.is_alive()
    for name in ("config.csv", "outside.csv", "dangling.csv"):
        assert watcher.logged.count(f"{name}: ignored (symbolic link, never followed)") == 1
    assert watcher.logged.count("pipe.csv: ignored (not a regular file)") == 1
    assert all("\n" not in message for message in watcher.logged.messages)
    assert not any("s3cr3t" in message for message in watcher.logged.messages)
    assert not (inbox / "config.outcome.csv").exists()
    for name in (forged, too_long, "empty.csv", *workbooks):
        assert len(watcher.reports_for(name)) == 1
    assert_sent_once(sandbox, ["FORGED-1", "GOOD-1"])


# -- staying alive ----------------------------------------------------------------------------


def dying_once(base: type[Any]) -> type[Any]:
    """An observer class whose first event kills its thread, as a bug in a handler would."""

    class DyingOnce(base):  # type: ignore[misc, valid-type]
        died: ClassVar[list[bool]] = []

        def dispatch_events(self, event_queue: Any) -> None:
            if not DyingOnce.died:
                DyingOnce.died.append(True)
                raise RuntimeError("a bug while handling an event")
            super().dispatch_events(event_queue)

    return DyingOnce


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_watching_goes_on_after_an_exception_kills_the_observer(
    start_watch: Callable[..., Watcher],
    sandbox: Sandbox,
    polling: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception while dispatching an event ends watchdog's observer thread; the daemon
    notices, starts a new observer, finds the file that triggered it, and sees later files."""
    monkeypatch.setattr(watch_module, "Observer", dying_once(Observer))
    monkeypatch.setattr(watch_module, "PollingObserver", dying_once(PollingObserver))
    watcher = start_watch(polling=polling)
    (watcher.inbox / "first.csv").write_text(csv_text(["FIRST-1"]), encoding="utf-8")
    watcher.wait(
        lambda: watcher.logged.count("the folder observer stopped"), what="the observer restart"
    )
    (watcher.inbox / "second.csv").write_text(csv_text(["SECOND-1"]), encoding="utf-8")
    reports = watcher.wait_for("first.csv", "second.csv")
    assert {report.state for report in reports.values()} == {FileState.DONE}
    assert_sent_once(sandbox, ["FIRST-1", "SECOND-1"])


class UnwatchableObserver(PollingObserver):
    """An observer that cannot start, as when the inotify watch limit is reached."""

    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_events_that_cannot_start_fall_back_to_polling(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the native observer cannot start (inotify limits), the daemon says so and polls."""
    monkeypatch.setattr(watch_module, "Observer", UnwatchableObserver)
    watcher = start_watch()
    assert watcher.logged.count(f"watching {watcher.inbox.resolve()} by polling instead") == 1
    (watcher.inbox / "polled.csv").write_text(csv_text(["POLLED-1"]), encoding="utf-8")
    assert watcher.wait_for("polled.csv")["polled.csv"].state is FileState.DONE
    assert_sent_once(sandbox, ["POLLED-1"])


def test_rescans_alone_find_files_when_no_observer_runs(
    start_watch: Callable[..., Watcher], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are only hints: with no observer at all, the periodic rescan still finds files."""
    monkeypatch.setattr(watch_module, "Observer", UnwatchableObserver)
    monkeypatch.setattr(watch_module, "PollingObserver", UnwatchableObserver)
    watcher = start_watch(rescan_s=0.1)
    assert watcher.logged.count(f"no folder observer for {watcher.inbox.resolve()}") == 1
    (watcher.inbox / "found.csv").write_text(csv_text(["FOUND-1"]), encoding="utf-8")
    assert watcher.wait_for("found.csv")["found.csv"].state is FileState.DONE
    assert_sent_once(sandbox, ["FOUND-1"])


def test_relative_inbox_path_still_gets_events(
    start_watch: Callable[..., Watcher],
    sandbox: Sandbox,
    inbox: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FILEDROP_INBOX=inbox (relative): files dropped after start are still found by events."""
    monkeypatch.chdir(inbox.parent)
    watcher = start_watch(folder=Path(inbox.name))
    (inbox / "rel.csv").write_text(csv_text(["REL-1"]), encoding="utf-8")
    assert watcher.wait_for("rel.csv")["rel.csv"].counts == {"SUCCEEDED": 1}
    assert_sent_once(sandbox, ["REL-1"])


# -- the real daemon: SIGTERM, restart, health --------------------------------------------------


def daemon_env(*, sandbox: Sandbox, inbox: Path, mapping: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FILEDROP_")}
    env.update(
        FILEDROP_ENV="sandbox",
        FILEDROP_AUTH_URL=sandbox.url,
        FILEDROP_API_URL=sandbox.url,
        FILEDROP_CLIENT_ID="watch-test",
        FILEDROP_CLIENT_SECRET="not-a-secret",
        FILEDROP_ORG_ID=ORG_ID,
        FILEDROP_INBOX=str(inbox),
        FILEDROP_MAPPING=str(mapping),
        FILEDROP_STATE=str(journal_file(inbox)),
        FILEDROP_STABILITY_S="0.2",
        FILEDROP_RESCAN_S="0.5",
        FILEDROP_POLL_INITIAL_S="0.05",
        FILEDROP_POLL_MAX_INTERVAL_S="0.2",
        **extra,
    )
    return env


def start_daemon(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "filedrop", "watch"],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def sigterm(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM, then the process must exit 0 within the 10 s the issue allows."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"filedrop watch ignored SIGTERM for 10 s; log:\n{log_path.read_text()}")
    assert code == 0, log_path.read_text()


def test_a_second_ctrl_c_ends_watch_at_once(tmp_path: Path, inbox: Path, mapping: Path) -> None:
    """As for run: a first Ctrl-C stops the daemon as SIGTERM does and says a second stops at
    once; the second ends it at once (130) rather than when a stalled POST's answer comes or its
    FILEDROP_SHUTDOWN_S runs out."""
    log_path = tmp_path / "watch.log"
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(20.0)
        env = daemon_env(sandbox=sandbox, inbox=inbox, mapping=mapping, FILEDROP_SHUTDOWN_S="30")
        daemon = start_daemon(env, log_path)
        try:
            (inbox / "stall.csv").write_text(csv_text(["CTRL-1"]), encoding="utf-8")
            wait_until(lambda: sandbox.counters().posts >= 1, timeout_s=30, what="the first POST")
            daemon.send_signal(signal.SIGINT)
            wait_until(
                lambda: "press Ctrl-C again to stop at once" in log_path.read_text(),
                timeout_s=10,
                what="the first Ctrl-C's hint",
            )
            second = time.monotonic()
            daemon.send_signal(signal.SIGINT)
            assert daemon.wait(timeout=10) == 130, log_path.read_text()
            assert time.monotonic() - second < 4
            assert log_path.read_text().endswith(
                "filedrop: interrupted again; stopped at once. The next run names any batch "
                "whose answer was not recorded.\n"
            )
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()


def first_heartbeat(inbox: Path) -> str:
    """The daemon's owner (host:pid:token), once its journal exists and it has beaten."""
    journal_path = journal_file(inbox)
    wait_until(journal_path.exists, timeout_s=30, what="the daemon's journal")
    with Journal(journal_path) as journal:
        [(owner, *_)] = wait_until(journal.replicas, timeout_s=30, what="the first heartbeat")
    return owner


def health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filedrop", "status", "--health"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_exits_0_and_restart_finishes_what_was_in_flight(
    tmp_path: Path, inbox: Path, mapping: Path
) -> None:
    """SIGTERM while three batches are QUEUED: exit 0 within 10 s, the file left waiting in the
    journal; a restart polls those batches, writes the outcome with every row final, and sends
    no number again."""
    shift_s = [0.0]  # the sandbox's clock: moved on so its batches end while no daemon runs
    options = SandboxOptions(delay_s=(60, 60), seed=3)
    numbers = [f"TERM-{i:02d}" for i in range(12)]
    (inbox / "inflight.csv").write_text(csv_text(numbers), encoding="utf-8")
    log_path = tmp_path / "daemon.log"
    with Sandbox(options, clock=lambda: time.time() + shift_s[0]) as sandbox:
        env = daemon_env(sandbox=sandbox, inbox=inbox, mapping=mapping, FILEDROP_BATCH_SIZE="4")
        first = start_daemon(env, log_path)
        try:
            wait_until(
                lambda: sandbox.counters().posts == 3 and sandbox.counters().polls >= 3,
                timeout_s=30,
                what="three batches submitted and seen QUEUED",
            )
        finally:
            sigterm(first, log_path)
        with Journal(journal_file(inbox)) as journal:
            assert len(journal.batches(states=("queued",))) == 3
            assert [f.state for f in journal.recent_files()] == [FileState.WAITING]

        shift_s[0] = 120.0
        second = start_daemon({**env, "FILEDROP_POLLING": "true"}, log_path)
        outcome = inbox / "inflight.outcome.csv"

        def final_rows() -> list[tuple[str, str]]:
            """(invoice, status) per row once the outcome exists and no row is PENDING."""
            if not outcome.exists():
                return []
            rows = outcome_rows(outcome)
            pairs = list(zip(rows["Invoice"], rows["outcome_status"], strict=True))
            return [] if any(status == "PENDING" for _, status in pairs) else pairs

        try:
            rows = wait_until(final_rows, timeout_s=30, what="the outcome with every row final")
        finally:
            sigterm(second, log_path)
        assert rows == [(number, "SUCCEEDED") for number in numbers]
        assert sandbox.counters().posts == 3
        assert_sent_once(sandbox, numbers)
    assert "Traceback" not in log_path.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_health_is_ok_while_the_daemon_runs_and_fails_once_its_heartbeat_is_stale(
    tmp_path: Path, inbox: Path, mapping: Path, sandbox: Sandbox
) -> None:
    """``filedrop status --health`` exits 0 while ``filedrop watch`` beats, and 1 once the last
    heartbeat is older than the staleness limit (an hour is simulated by back-dating it)."""
    env = daemon_env(sandbox=sandbox, inbox=inbox, mapping=mapping)
    log_path = tmp_path / "daemon.log"
    daemon = start_daemon(env, log_path)
    journal_path = journal_file(inbox)
    try:
        owner = first_heartbeat(inbox)
        ok = health(env)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("healthy: heartbeat")
    finally:
        sigterm(daemon, log_path)
    # Waiting out the staleness limit is no test, so the last beat is written again as it would
    # look an hour later with no daemon beating.
    with Journal(journal_path, clock=lambda: time.time() - 3600) as journal:
        journal.beat(owner)
    stale = health(env)
    assert stale.returncode == 1
    assert re.fullmatch(
        r"filedrop: unhealthy: the watch daemon's last heartbeat was 36\d\d s ago\.\n", stale.stderr
    )


# -- outages and health, timed by the settings ---------------------------------------------------


def test_an_api_outage_at_start_is_waited_out_on_the_retry_settings(
    inbox: Path, mapping: Path, sandbox: Sandbox, logged: Logged
) -> None:
    """Amili down when the daemon starts: it waits retry_initial_s, doubling up to retry_max_s,
    and tries again until told to stop, never giving up."""
    clock = FakeTime()
    sandbox.fail_next(503, count=1000, retry_after="0", route="token")
    settings = sandbox_settings(
        inbox, sandbox.url, mapping=mapping, retry_initial_s=5.0, retry_max_s=12.0
    )
    pauses: list[float] = []

    def pause(seconds: float) -> bool:
        pauses.append(seconds)
        return len(pauses) == 4  # told to stop during the fourth wait

    stop = threading.Event()
    watch_through_outages(settings, stop=stop, pause=pause, clock=clock.clock, sleep=clock.sleep)
    assert pauses == [5.0, 10.0, 12.0, 12.0]
    assert logged.count("Amili was not available for POST /token") == 4
    assert sandbox.counters().posts == 0


def test_a_stop_during_the_first_token_s_retries_ends_them(
    inbox: Path, mapping: Path, sandbox: Sandbox, logged: Logged
) -> None:
    """Amili down as the daemon starts, and SIGTERM a moment later: the daemon went through all
    of the token request's retries first (14 s, past the 10 s a container waits before its
    kill; found by a hostile review), where `run` gives them up. It gives them up too."""
    sandbox.fail_next(503, count=1000, retry_after="1", route="token")
    settings = sandbox_settings(inbox, sandbox.url, mapping=mapping, retry_initial_s=60.0)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    watch_through_outages(settings, stop=stop)
    assert sandbox.counters().token_requests == 1
    assert (
        logged.count(
            "Amili was not available for POST /token (HTTP 503; not tried again, as filedrop is "
            "stopping) after 1 attempt; nothing was processed, so try again later; stopping"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("heartbeat_s", "healthy"),
    [("10", True), ("1", False)],
    ids=["ten-second-beat", "one-second-beat"],
)
def test_health_allows_six_missed_heartbeats_of_the_configured_interval(
    inbox: Path, heartbeat_s: str, healthy: bool
) -> None:
    """A beat 30 s old from a live daemon is healthy with a 10 s heartbeat (limit 60 s) and
    stale with a 1 s heartbeat (limit 6 s): the limit follows FILEDROP_HEARTBEAT_S."""
    from builders import filedrop

    with Journal(journal_file(inbox), clock=lambda: time.time() - 30) as journal:
        journal.beat(this_owner())  # this test's own process: alive
    env = {
        "FILEDROP_INBOX": str(inbox),
        "FILEDROP_STATE": str(journal_file(inbox)),
        "FILEDROP_HEARTBEAT_S": heartbeat_s,
    }
    code, out, err = filedrop("status", "--health", environ=env, expect=None)
    if healthy:
        assert (code, err) == (0, "")
        assert re.fullmatch(r"healthy: heartbeat 3\d s ago from \S+\n", out)
    else:
        assert (code, out) == (1, "")
        assert re.fullmatch(
            r"filedrop: unhealthy: the watch daemon's last heartbeat was 3\d s ago\.\n", err
        )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX")
def test_sighup_stops_the_daemon_as_sigterm_does(
    tmp_path: Path, inbox: Path, mapping: Path, sandbox: Sandbox
) -> None:
    """The terminal or SSH session a daemon was started from closes: SIGHUP killed it outright
    (a POST on its way became UNKNOWN). It now stops whole, as for SIGTERM: exit 0, and its
    heartbeat taken out of the journal as a clean stop does."""
    env = daemon_env(sandbox=sandbox, inbox=inbox, mapping=mapping)
    log_path = tmp_path / "daemon.log"
    daemon = start_daemon(env, log_path)
    try:
        first_heartbeat(inbox)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait(timeout=10) == 0, log_path.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    with Journal(journal_file(inbox)) as journal:
        assert journal.replicas() == []
    assert "Traceback" not in log_path.read_text()


def test_settling_with_the_journal_failing_says_so_in_one_line(
    make_context: Callable[..., Context], postgres_url: str, logged: Logged
) -> None:
    """The journal's connection ended by its server (a restart): the rescan's settling of
    earlier batches says in one line that the journal failed and why, as the heartbeat does,
    rather than a traceback under a sentence that names no cause, at every rescan."""
    ctx = make_context(state=PostgresLocation(postgres_url))
    ctx.journal.beat(ctx.owner)  # the connection is open
    assert drop_connections(postgres_url) >= 1
    watch_module._settle_in_background(ctx, None).join(timeout=20)
    said = [m for m in logged.messages if "settl" in m]
    assert len(said) == 1
    assert said[0].startswith("cannot settle earlier batches: the journal failed (")
    assert said[0].endswith("); trying again at the next rescan")
