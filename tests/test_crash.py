"""Crashes: kill -9 a real `filedrop run` process, run again, and nothing is sent twice."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from builders import erp_row, filedrop, mountinfo, run_env, write_erp_csv, write_erp_workbook
from conftest import journal_file, sandbox_settings

from filedrop.inbox import outcome_path
from filedrop.inflight import sending_marks
from filedrop.mounts import ShareWatch
from filedrop.runner import open_context, settle_leftovers
from filedrop.sandbox import Sandbox, SandboxOptions

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")


def start_run(env: dict[str, str], *, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "filedrop", "run"],
        env={**os.environ, **env},
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def wait_for_journal(
    journal: Path, ready: Callable[[sqlite3.Connection], bool], *, timeout_s: float = 20.0
) -> None:
    """Poll the real journal file until ``ready`` holds (the child writes it as it goes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal.exists():
            try:
                with sqlite3.connect(journal, timeout=5) as db:
                    if ready(db):
                        return
            except sqlite3.OperationalError:
                pass  # the schema is not there yet
        time.sleep(0.02)
    raise AssertionError("the journal never reached the expected state")


def kill_9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def kill_9_with_batches_queued(process: subprocess.Popen[bytes], inbox: Path, batches: int) -> None:
    """Kill the run once the journal shows ``batches`` batches QUEUED, waiting for their end."""
    wait_for_journal(
        journal_file(inbox),
        lambda db: (
            db.execute("SELECT COUNT(*) FROM batches WHERE state = 'queued'").fetchone()[0]
            == batches
        ),
    )
    kill_9(process)


def wait_for_sandbox(check: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    """Poll the sandbox's counters until ``check`` holds (the child sends as it goes)."""
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


def backup_journal(inbox: Path, to: Path) -> None:
    """A copy of the inbox's journal as SQLite's backup API takes it (a nightly backup)."""
    with sqlite3.connect(journal_file(inbox)) as live, sqlite3.connect(to) as copy:
        live.backup(copy)


def first_batch_then_amili_down(sandbox: Sandbox, env: dict[str, str]) -> int:
    """A run whose first batch goes, after which Amili answers 503 until the run gives the rest
    up (NOT_SENT); returns its exit code. The API behaves again afterwards."""
    sandbox.stall_next(1.0, route="invoices")
    run = start_run(env)
    wait_for_sandbox(lambda: sandbox.counters().posts >= 1)
    sandbox.fail_next(503, count=1000, route="invoices", retry_after="0")
    run.communicate(timeout=60)
    sandbox.clear_faults()
    return run.returncode


def in_first_post(
    sandbox: Sandbox, inbox: Path, **extra: str
) -> tuple[dict[str, str], subprocess.Popen[bytes]]:
    """Run the inbox in batches of 2, one POST at a time, until the sandbox has its first POST
    (whose answer the caller has it hold back); returns the run's environment (``run_env``'s,
    with ``extra``) and the run."""
    env = run_env(
        inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_CONCURRENT_BATCHES="1", **extra
    )
    child = start_run(env)
    wait_for_sandbox(lambda: sandbox.counters().posts >= 1)
    return env, child


def kill_9_in_first_post(sandbox: Sandbox, inbox: Path, **extra: str) -> dict[str, str]:
    """``in_first_post``, then the run killed; returns its environment."""
    env, child = in_first_post(sandbox, inbox, **extra)
    kill_9(child)
    return env


def statuses(path: Path) -> list[str]:
    frame = pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    return list(frame["outcome_status"])


def test_kill_9_while_batches_are_queued_then_rerun_completes(tmp_path: Path) -> None:
    """Killed with every batch QUEUED: the rerun polls them, every row ends right, none resent."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "big.csv", [erp_row(str(10_000 + n)) for n in range(10)])
    with Sandbox(SandboxOptions(delay_s=(2.0, 2.0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2")
        kill_9_with_batches_queued(start_run(env), inbox, 5)
        assert not (inbox / "big.outcome.csv").exists()

        filedrop("run", environ=env)
        assert statuses(inbox / "big.outcome.csv") == ["SUCCEEDED"] * 10
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 10


def test_kill_9_during_a_post_leaves_unknown_rows_and_never_resends(tmp_path: Path) -> None:
    """Killed while a POST awaits its answer: the rerun cannot know, so UNKNOWN and no resend."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "mid.csv", [erp_row("20001"), erp_row("20002"), erp_row("20003")])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(30.0)  # the first POST is processed, its answer comes much later
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_CONCURRENT_BATCHES="1")
        child = start_run(env)
        wait_for_journal(
            journal_file(inbox),
            lambda db: (
                db.execute("SELECT COUNT(*) FROM batches WHERE state = 'posting'").fetchone()[0]
                >= 1
            ),
        )
        wait_for_sandbox(lambda: sandbox.counters().posts >= 1, timeout_s=10)
        kill_9(child)

        code, _, err = filedrop("run", environ=env, expect=1)
        assert code == 1
        assert (
            "mid.csv: batch #1 (2 invoices) was being posted when filedrop stopped, so whether "
            "Amili received it cannot be told; its rows are UNKNOWN and never sent again by "
            "themselves: check with Amili, then run 'filedrop resolve 1 --sent' or '--not-sent'"
        ) in err
        rows = statuses(inbox / "mid.outcome.csv")
        assert rows[:2] == ["UNKNOWN", "UNKNOWN"], rows
        assert rows[2] == "SUCCEEDED"
        assert sandbox.counters().invoice_numbers_repeated == ()
        _, out, _ = filedrop("status", environ=env)
        assert "UNKNOWN" in out


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_sigterm_during_a_post_records_it_and_leaves_the_rest_for_the_next_run(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """SIGTERM (a CronJob's pod evicted), or Ctrl-C, while a POST awaits its answer: the run
    waits for that answer and records it, sends nothing more, writes no outcome and exits 3; the
    next run sends the rest. No row UNKNOWN, as a kill -9 leaves it (and Ctrl-C did), and none
    sent twice."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "term.csv", [erp_row(str(21_001 + n)) for n in range(4)])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(2.0)  # the first POST is processed, its answer comes 2 s later
        env, child = in_first_post(sandbox, inbox)
        child.send_signal(stop)
        _, err = child.communicate(timeout=30)
        assert child.returncode == 3, err.decode()
        assert b"stopping: no new batch is sent" in err
        assert sandbox.counters().posts == 1
        assert not (inbox / "term.outcome.csv").exists()
        with sqlite3.connect(journal_file(inbox)) as db:
            assert db.execute("SELECT state FROM batches").fetchall() == [("queued",)]

        filedrop("run", environ=env)
        assert statuses(inbox / "term.outcome.csv") == ["SUCCEEDED"] * 4
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 4


def test_a_second_ctrl_c_ends_the_run_at_once(tmp_path: Path) -> None:
    """A first Ctrl-C waits for the POST on its way; a second one is the user's way out of that
    wait: the process ends at once (130), rather than when the stalled answer comes. The next
    run names the batch whose answer was not recorded, and sends nothing twice."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "twice.csv", [erp_row(str(21_051 + n)) for n in range(4)])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(8.0)  # the first POST is processed, its answer comes 8 s later
        env, child = in_first_post(sandbox, inbox)
        child.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert child.stderr is not None
        os.set_blocking(child.stderr.fileno(), False)
        told = child.stderr.read() or b""
        assert (
            b"filedrop: stopping once the work on its way is recorded; press Ctrl-C again to "
            b"stop at once (a batch on its way is then UNKNOWN, for 'filedrop resolve').\n"
        ) in told
        second = time.monotonic()
        child.send_signal(signal.SIGINT)
        os.set_blocking(child.stderr.fileno(), True)
        _, err = child.communicate(timeout=30)
        assert time.monotonic() - second < 4, err.decode()
        assert child.returncode == 130, err.decode()
        assert err.decode().endswith(
            "filedrop: interrupted again; stopped at once. The next run names any batch whose "
            "answer was not recorded.\n"
        )
        time.sleep(8)  # the stalled answer is given, so the sandbox's record is whole

        _, _, err = filedrop("run", environ=env, expect=1)
        assert "twice.csv: batch #1 (2 invoices) was being posted when filedrop stopped" in err
        assert statuses(inbox / "twice.outcome.csv") == ["UNKNOWN"] * 2 + ["SUCCEEDED"] * 2
        assert sandbox.counters().invoice_numbers_repeated == ()


def test_a_second_ctrl_c_leaves_no_folder_of_the_readers_server_behind(
    tmp_path: Path, short_temp: Path
) -> None:
    """Stopping at once skips the interpreter's teardown, and with it multiprocessing's, which
    removes the folder of the workbook reader's server's socket: each such stop left a pymp-*
    folder in the temporary folder. The second of two workbooks starts the server."""
    inbox, temp = tmp_path / "inbox", short_temp
    inbox.mkdir()
    write_erp_workbook(inbox / "a.xlsx", [erp_row(str(21_061 + n)) for n in range(4)])
    write_erp_workbook(inbox / "b.xlsx", [erp_row("21071")])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(3.0)
        _, child = in_first_post(sandbox, inbox, TMPDIR=str(temp))
        assert [path.name[:5] for path in temp.iterdir()] == ["pymp-"]
        child.send_signal(signal.SIGINT)
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        assert child.returncode == 130, err.decode()
        assert list(temp.iterdir()) == []
        time.sleep(3)  # the stalled answer is given before the sandbox stops


def test_sigterm_during_a_retry_wait_ends_the_run_at_once(tmp_path: Path) -> None:
    """SIGTERM while the run waits out a 503's 'Retry-After: 60': the wait ends at once (a
    container's grace period is often 30 s, and SIGKILL would leave the batch UNKNOWN), the
    batch is NOT_SENT, exit 3, and the next run sends it, once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "wait.csv", [erp_row("21101")])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.fail_next(503, count=1, retry_after="60")
        env = run_env(inbox, sandbox.url)
        child = start_run(env)
        wait_for_sandbox(lambda: sandbox.counters().posts >= 1, timeout_s=20)
        time.sleep(0.3)  # into the wait
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=50)
        assert time.monotonic() - signalled < 10, err.decode()
        assert child.returncode == 3, err.decode()
        assert b"not tried again, as filedrop is stopping" in err
        assert sandbox.counters().invoices_received == 0

        filedrop("run", environ=env)
        assert statuses(inbox / "wait.outcome.csv") == ["SUCCEEDED"]
        assert sandbox.counters().invoices_received == 1


@pytest.mark.parametrize("files", [1, 3])
def test_sigterm_during_the_stability_window_ends_the_run_at_once(
    tmp_path: Path, files: int
) -> None:
    """SIGTERM while a one-shot run waits to see whether a new file is still being written:
    the run ends at once and sends nothing; the files are left for the next run, which the exit
    code says (3, as for any work a stop leaves), in one line, and none is "still changing"."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "fresh.csv", [erp_row("21201")])
    for k in range(1, files):
        write_erp_csv(inbox / f"more{k}.csv", [erp_row(str(21201 + k))])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_STABILITY_S="60")
        child = subprocess.Popen(
            [sys.executable, "-m", "filedrop", "run"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(2.0)  # started, and waiting
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=70)
        assert time.monotonic() - signalled < 10, err.decode()
        which = b"fresh.csv" if files == 1 else b"3 files (such as fresh.csv)"
        left = which + b": left for the next run, as filedrop is stopping"
        assert err.count(b"left for the next run") == 1 and left in err, err.decode()
        assert b"still changing" not in err
        assert (child.returncode, out) == (
            3,
            b"Stopped before any file was taken; they are left for the next run.\n",
        )
        assert sandbox.counters().posts == 0


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def test_sigterm_while_a_run_loads_its_imports_ends_it_whole(tmp_path: Path) -> None:
    """A run takes SIGTERM before it loads pandas and the rest (most of its start): one sent as
    soon as it catches the signal, while it still loads, ends the run as a stop does (exit 3,
    the file left for the next run), not the process killed by the signal."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "early.csv", [erp_row("21301")])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        env = run_env(inbox, sandbox.url)
        child = subprocess.Popen(
            [sys.executable, "-m", "filedrop", "run"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not _catches_sigterm(child.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        maps = Path(f"/proc/{child.pid}/maps").read_text()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
        assert "pandas" not in maps, "SIGTERM was taken only after the imports"
        assert child.returncode == 3, err.decode()
        assert sandbox.counters().posts == 0


def test_two_processes_on_one_inbox_send_each_invoice_once(tmp_path: Path) -> None:
    """Two `filedrop run` processes started together on one journal never double-send."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for file_no in range(4):
        rows = [erp_row(str(30_000 + file_no * 100 + n)) for n in range(6)]
        write_erp_csv(inbox / f"f{file_no}.csv", rows)
    with Sandbox(SandboxOptions(delay_s=(0.1, 0.3))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2")
        children = [start_run(env) for _ in range(2)]
        try:
            for child in children:
                _, err = child.communicate(timeout=60)
                assert child.returncode == 0, err.decode()
        finally:  # never leave a run behind when one of them fails
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 24
        for file_no in range(4):
            assert statuses(inbox / f"f{file_no}.outcome.csv") == ["SUCCEEDED"] * 6


def _gone_outcome(path: Path) -> pd.DataFrame:
    if path.suffix == ".xlsx":
        return pd.read_excel(
            path, sheet_name="Outcome", engine="openpyxl", dtype=str, keep_default_na=False
        )
    return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)


@pytest.mark.parametrize("then", ["deleted", "replaced", "workbook deleted"])
def test_a_file_taken_away_after_a_kill_gets_the_outcome_of_what_was_sent_from_it(
    tmp_path: Path, then: str
) -> None:
    """Killed with its batches QUEUED, then deleted (or replaced by other rows): the next run
    learns how the batches ended and writes what was sent from the file into its outcome, one
    row per invoice, as the journal knows them; the file is 'gone' in status, no longer a
    claim of a process that died. The replacing version gets its own outcome, and that one goes
    to the archive. Nothing is sent twice."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    numbers = [str(10_100 + n) for n in range(6)]
    big = inbox / ("big.xlsx" if then == "workbook deleted" else "big.csv")
    if then == "workbook deleted":
        write_erp_workbook(big, [erp_row(number) for number in numbers])
    else:
        write_erp_csv(big, [erp_row(number) for number in numbers])
    with Sandbox(SandboxOptions(delay_s=(2.0, 2.0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2")
        kill_9_with_batches_queued(start_run(env), inbox, 3)
        if then == "replaced":
            write_erp_csv(big, [erp_row("10200")])
        else:
            big.unlink()

        _, out, err = filedrop("run", environ=env)
        gone = outcome_path(big)
        if then == "replaced":  # the new version's outcome is to come: this one is archived
            (gone,) = (inbox / "archive").glob("*-big.outcome.csv")
            assert statuses(inbox / "big.outcome.csv") == ["SUCCEEDED"]
        assert (
            f"{big.name}: moved, replaced or deleted while unfinished; 6 SUCCEEDED sent from it, "
            f"listed in {gone.relative_to(inbox)}; rows not listed there were never sent, and go "
            "when the same file is dropped again"
        ) in err
        outcome = _gone_outcome(gone)
        # Batch by batch as they were claimed, which four posting threads may do out of turn.
        assert sorted(outcome["outcome_invoice_number"]) == numbers
        assert set(outcome["outcome_status"]) == {"SUCCEEDED"}
        assert all(outcome["outcome_case_number"].str.startswith("CASE-"))
        assert sandbox.counters().invoice_numbers_repeated == ()
        _, out, _ = filedrop("status", environ=env)
        assert f"{big.name}  gone  6 SUCCEEDED" in out
        assert "Files being processed" not in out
        with sqlite3.connect(journal_file(inbox)) as db:
            assert db.execute("SELECT owner FROM files WHERE state = 'gone'").fetchall() == [
                (None,)
            ]


def test_a_file_deleted_after_a_kill_and_dropped_again_sends_only_what_was_never_sent(
    tmp_path: Path,
) -> None:
    """Killed while its first POST awaits the answer, the rest of the file never claimed; then
    deleted. The next run lists the UNKNOWN invoices in its outcome, which 'filedrop resolve'
    rewrites; the same file dropped again is taken up again (gone is not final): the rows of
    the resolved batch are not sent again, the rest go once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "mid.csv", [erp_row(str(20_101 + n)) for n in range(5)])
    kept = (inbox / "mid.csv").read_bytes()
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(30.0, route="invoices")
        env = kill_9_in_first_post(sandbox, inbox)
        (inbox / "mid.csv").unlink()

        _, out, _ = filedrop("run", environ=env, expect=1)  # UNKNOWN rows need a person
        assert "mid.csv: 2 UNKNOWN\n  gone: " in out
        assert f"  outcome: {inbox / 'mid.outcome.csv'}" in out
        outcome = _gone_outcome(inbox / "mid.outcome.csv")
        assert list(outcome["outcome_invoice_number"]) == ["20101", "20102"]
        assert list(outcome["outcome_status"]) == ["UNKNOWN", "UNKNOWN"]
        assert "filedrop resolve 1 --sent" in outcome["outcome_message"][0]

        _, out, _ = filedrop("resolve", "1", "--sent", environ=env)
        assert "mid.csv: 2 SUCCEEDED; outcome rewritten: " in out
        outcome = _gone_outcome(inbox / "mid.outcome.csv")
        assert list(outcome["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
        _, out, _ = filedrop("status", environ=env)
        assert "mid.csv  gone  2 SUCCEEDED" in out

        (inbox / "mid.csv").write_bytes(kept)
        filedrop("run", environ=env)
        assert statuses(inbox / "mid.outcome.csv") == ["SUCCEEDED"] * 5
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 5


def test_a_run_held_up_past_its_claim_learns_the_fate_of_the_batch_made_unknown(
    tmp_path: Path,
) -> None:
    """Run A is stopped (SIGSTOP: a frozen VM, a laptop asleep) while its first POST awaits the
    answer, past its claim's lease; run B takes the file over, makes that batch UNKNOWN and sends
    the rest. A wakes, and Amili's answer comes: the batch is known after all, queued with its
    id, so its rows end SUCCEEDED at the next run rather than UNKNOWN waiting for a person to
    look them up. A, no longer holding the file, sends nothing more from it and leaves B's
    outcome alone. Nothing is sent twice, and no batch is left UNKNOWN."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "held.csv", [erp_row(str(22_001 + n)) for n in range(4)])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(6.0, route="invoices")  # A's first POST is answered 6 s later
        env = run_env(
            inbox,
            sandbox.url,
            FILEDROP_BATCH_SIZE="2",
            FILEDROP_CONCURRENT_BATCHES="1",
            FILEDROP_CLAIM_STALE_S="1",
            FILEDROP_HEARTBEAT_S="0.2",
        )
        held = start_run(env, stdout=subprocess.PIPE)
        try:
            wait_for_sandbox(lambda: sandbox.counters().posts >= 1, timeout_s=20)
            held.send_signal(signal.SIGSTOP)
            time.sleep(1.5)  # past the lease
            _, _, err = filedrop("run", environ=env, expect=1)
            assert "batch #1 (2 invoices) was being posted when filedrop stopped" in err
            assert statuses(inbox / "held.outcome.csv") == ["UNKNOWN"] * 2 + ["SUCCEEDED"] * 2
        finally:
            held.send_signal(signal.SIGCONT)
        out_a, err_a = held.communicate(timeout=60)
        assert b"after another filedrop process had made it UNKNOWN" in err_a
        # It holds the file no more: it sends nothing else from it and writes no outcome. Its
        # summary said "the next run resumes it", and its exit code 1, while the other process
        # finished the file (a hostile review, helper-140): its part is over, and it says so.
        assert held.returncode == 0, err_a.decode()
        assert b"another filedrop process took this file over" in err_a
        assert b"held.csv: skipped (taken over by another filedrop process while this one " in out_a
        assert sandbox.counters().posts == 2
        # The file is left waiting on that batch: the next run polls it and rewrites the outcome.
        filedrop("run", environ=env)
        assert statuses(inbox / "held.outcome.csv") == ["SUCCEEDED"] * 4
        assert sandbox.counters().invoice_numbers_repeated == ()
        _, out, _ = filedrop("status", environ=env)
        assert "UNKNOWN" not in out


@pytest.mark.parametrize("gone", ["before the run", "while its batches were polled"])
def test_a_share_not_mounted_after_a_kill_is_not_taken_for_its_files_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, gone: str
) -> None:
    """Killed with its batches QUEUED, then its share not mounted (one /etc/fstab puts at the
    inbox, gone before the settling run; or one the settling run saw, gone while it polled the
    batches): the file is out of view, as if deleted. Settling writes no outcome into the empty
    mount point and leaves the file unfinished, saying why in one warning naming the mount
    point; mounted again, the next run finishes the file as after any kill, and nothing is
    sent twice."""
    inbox = (tmp_path / "share").resolve()
    inbox.mkdir()
    numbers = [str(10_300 + n) for n in range(6)]
    big = inbox / "big.csv"
    write_erp_csv(big, [erp_row(number) for number in numbers])
    hidden = tmp_path / "under-the-mount"
    hidden.mkdir()
    looks = 0

    def mounts() -> str:
        """The share mounted for the watch's first look and the settling's, gone after."""
        nonlocal looks
        looks += 1
        return mountinfo((str(inbox), "nfs4")) if looks <= 2 else mountinfo()

    if gone == "before the run":
        share = ShareWatch(
            inbox, mountinfo=mountinfo, fstab=lambda: f"srv:/x {inbox} nfs4 0 0", units=list
        )
        why = "/etc/fstab lists it"
    else:
        share = ShareWatch(inbox, mountinfo=mounts, fstab=lambda: None, units=list)
        why = "filedrop saw it mounted before"
    with Sandbox(SandboxOptions(delay_s=(2.0, 2.0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2")
        kill_9_with_batches_queued(start_run(env), inbox, 3)
        for entry in list(inbox.iterdir()):  # the share unmounted: its files out of view
            entry.rename(hidden / entry.name)

        caplog.set_level(logging.WARNING, logger="filedrop")
        with open_context(sandbox_settings(inbox, sandbox.url, batch_size=2)) as ctx:
            ctx.share = share
            assert settle_leftovers(ctx) == []
        assert list(inbox.iterdir()) == []
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert said == [
            f"{inbox}: {inbox} is not mounted, though {why}; files missing from the inbox are "
            "not taken for deleted until it is back"
        ]
        with sqlite3.connect(journal_file(inbox)) as db:
            assert db.execute("SELECT state FROM files").fetchall() == [("claimed",)]

        for entry in list(hidden.iterdir()):  # mounted again
            entry.rename(inbox / entry.name)
        filedrop("run", environ=env)
        assert statuses(outcome_path(big)) == ["SUCCEEDED"] * 6
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 6


def _lose_journal(inbox: Path, *, keep: Path | None = None) -> None:
    """The journal deleted (a clean-up script, a container's journal not on a volume), its
    write-ahead log too; with ``keep``, a copy taken first, as SQLite's backup API takes it."""
    journal = journal_file(inbox)
    if keep is not None:
        backup_journal(inbox, keep)
    for suffix in ("", "-wal", "-shm"):
        journal.with_name(journal.name + suffix).unlink(missing_ok=True)


def _retake_killed_after_a_backup(
    sandbox: Sandbox, inbox: Path, copy: Path
) -> tuple[dict[str, str], Path]:
    """The inbox's one file of 6 rows: its first batch goes, then Amili is down (exit 3, rows
    NOT_SENT); the journal is backed up to ``copy``; a re-take sends the next batch, which
    Amili takes, and is killed before the answer. Returns the run's environment and ``copy``."""
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_CONCURRENT_BATCHES="1")
    assert first_batch_then_amili_down(sandbox, env) == 3
    backup_journal(inbox, copy)
    sandbox.stall_next(30.0, route="invoices")
    again = start_run(env)
    wait_for_sandbox(lambda: sandbox.counters().invoices_received >= 4)
    kill_9(again)
    return env, copy


def _rebuilt_then_finished(
    inbox: Path, env: dict[str, str], sandbox: Sandbox, outcome: Path, *, rows: int
) -> None:
    """The journal lost and rebuilt from the outcomes: the next run is not held back, finishes
    the file (every row SUCCEEDED in ``outcome``) and sends nothing twice."""
    _lose_journal(inbox)
    filedrop("journal", "rebuild", environ=env)
    filedrop("run", environ=env)
    assert statuses(outcome) == ["SUCCEEDED"] * rows
    assert sandbox.counters().invoice_numbers_repeated == ()


def _held_back(err: str, inbox: Path, name: str) -> None:
    """The run said, in one sentence naming the file and its mark, why nothing was sent."""
    (mark,) = (inbox / ".filedrop" / "sending").iterdir()
    assert (
        f"{name}: the journal {journal_file(inbox)} does not know all that was sent from it "
        "(filedrop began sending it at "
        in err
        and f"{mark} is deleted" in err
    ), err


def test_a_journal_lost_after_a_kill_never_makes_the_next_run_send_again(
    tmp_path: Path,
) -> None:
    """Killed while its first POST awaits the answer, so no outcome was written; then the
    journal is lost too. The next run sends nothing (exit 2: setup), naming the file and the
    mark it left before that POST. With the journal back, the run finishes the file as after
    any kill, and its outcome takes the mark away."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "mid.csv", [erp_row(str(20_100 + n)) for n in range(5)])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        sandbox.stall_next(30.0)  # the first POST is taken, its answer comes much later
        env = kill_9_in_first_post(sandbox, inbox)
        _lose_journal(inbox, keep=tmp_path / "copy.db")

        _, said, _ = filedrop("status", environ=env, expect=1)
        (mark,) = (inbox / ".filedrop" / "sending").iterdir()
        assert said == (
            f"No journal at {journal_file(inbox)}, yet a file was being sent from the inbox "
            f"(filedrop's mark of it is {mark}, and no outcome shows what went): the journal was "
            "lost or moved; point FILEDROP_STATE at the journal in use, or see what 'filedrop "
            "run' says of that mark.\n"
        )
        _, out, err = filedrop("run", environ=env, expect=2)
        _held_back(err, inbox, "mid.csv")
        assert "mid.csv: skipped (not sent: the journal does not know all that was sent" in out
        assert not (inbox / "mid.outcome.csv").exists()
        assert sandbox.counters().posts == 1

        (tmp_path / "copy.db").replace(journal_file(inbox))  # FILEDROP_STATE's journal again
        filedrop("run", environ=env, expect=1)  # the POST it was killed in is UNKNOWN
        assert statuses(inbox / "mid.outcome.csv") == ["UNKNOWN"] * 2 + ["SUCCEEDED"] * 3
        assert not (inbox / ".filedrop").exists()
        assert sandbox.counters().invoice_numbers_repeated == ()


def test_a_journal_deleted_while_a_run_polls_holds_back_a_run_started_meanwhile(
    tmp_path: Path,
) -> None:
    """A run waits for its batches; its journal is deleted, and a second run starts before the
    first writes again (which would have put the journal back). The second run finds a new,
    empty journal, and the first one's mark: it sends nothing."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "slow.csv", [erp_row(str(20_200 + n)) for n in range(4)])
    with Sandbox(SandboxOptions(delay_s=(6.0, 6.0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_HEARTBEAT_S="30")
        first = start_run(env)
        try:
            wait_for_journal(
                journal_file(inbox),
                lambda db: (
                    db.execute("SELECT COUNT(*) FROM batches WHERE state = 'queued'").fetchone()[0]
                    == 2
                ),
            )
            _lose_journal(inbox)

            _, _, err = filedrop("run", environ=env, expect=2)
            _held_back(err, inbox, "slow.csv")
        finally:
            first.kill()
            first.wait(timeout=10)
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 4


def _killed_after_three_posts_and_copy_put_back(
    sandbox: Sandbox, inbox: Path, copy: Path
) -> dict[str, str]:
    """Run the inbox a batch of two at a time, copy its journal after the first POST, kill it
    after the third, and put the copy back in the lost journal's place; the run's settings."""
    sandbox.stall_next(1.0, count=10, route="invoices")
    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_CONCURRENT_BATCHES="1")
    child = start_run(env)
    wait_for_journal(
        journal_file(inbox),
        lambda db: db.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 1,
    )
    backup_journal(inbox, copy)
    wait_for_sandbox(lambda: sandbox.counters().posts >= 3)
    kill_9(child)
    _lose_journal(inbox)
    copy.replace(journal_file(inbox))
    return env


def test_a_journal_put_back_from_a_copy_taken_while_a_file_was_sent_holds_it_back(
    tmp_path: Path,
) -> None:
    """A copy of the journal taken after the file's first POST (a backup of a busy daemon), the
    run killed after its third, the copy put back: the copy knows the file and its first batch,
    not the two after it, which the mark names. Nothing is sent (it sent those two again)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "a.csv", [erp_row(str(30_100 + n)) for n in range(10)])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        env = _killed_after_three_posts_and_copy_put_back(sandbox, inbox, tmp_path / "c")

        _, _, err = filedrop("run", environ=env, expect=2)
        assert "a.csv: the journal " in err and "does not know all that was sent from it" in err
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().posts == 3


def test_a_gone_file_held_back_by_a_journal_put_back_is_told_once(tmp_path: Path) -> None:
    """As above, and the file deleted meanwhile: the run holds it back as gone and unclosed,
    and says so once, not once for each look at earlier batches a run takes."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "a.csv", [erp_row(str(30_200 + n)) for n in range(10)])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        env = _killed_after_three_posts_and_copy_put_back(sandbox, inbox, tmp_path / "c")
        (inbox / "a.csv").unlink()

        _, out, err = filedrop("run", environ=env, expect=2)
        held = "a.csv: moved, replaced or deleted while unfinished, and not closed"
        assert err.count(held) == 1, err
        assert out.count("a.csv") == 1, out
        assert sandbox.counters().posts == 3


def test_a_sandbox_trial_leaves_a_production_run_held_back(tmp_path: Path) -> None:
    """Production killed while sending and its journal lost: held back. A sandbox trial of the
    same file goes (it sends nothing real), and leaves production's mark as it was: production
    stays held back (the trial wrote over that mark, then took it away, and production sent the
    file again)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "p.csv", [erp_row(str(70_100 + n)) for n in range(6)])
    with (
        Sandbox(SandboxOptions(delay_s=(0, 0))).start() as production,
        Sandbox(SandboxOptions(delay_s=(0, 0))).start() as trial,
    ):
        production.stall_next(30.0, route="invoices")
        env = kill_9_in_first_post(production, inbox, FILEDROP_ENV="production")
        _lose_journal(inbox)
        filedrop("run", environ=env, expect=2)

        filedrop("run", environ=run_env(inbox, trial.url, FILEDROP_BATCH_SIZE="2"))
        assert trial.counters().invoices_received == 6

        _, out, _ = filedrop("run", environ=env, expect=2)
        assert "p.csv: skipped (not sent: the journal does not know all" in out
        assert production.counters().posts == 1


def test_a_run_that_only_polls_leaves_no_mark_to_hold_a_rebuilt_journal_back(
    tmp_path: Path,
) -> None:
    """An outcome with every row PENDING, then a run killed while it only polls them: it wrote
    no mark (it held the inbox back once the journal was lost and rebuilt from that outcome,
    which shows every row). Rebuilt, the next run finishes the file and sends nothing twice."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "g.csv", [erp_row(str(90_100 + n)) for n in range(4)])
    with Sandbox(SandboxOptions(delay_s=(3.0, 3.0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_POLL_TIMEOUT_S="0.5")
        filedrop("run", environ=env, expect=3)
        assert statuses(inbox / "g.outcome.csv") == ["PENDING"] * 4
        env["FILEDROP_POLL_TIMEOUT_S"] = "30"
        again = start_run(env)
        wait_for_journal(
            journal_file(inbox),
            lambda db: db.execute("SELECT owner FROM files").fetchone()[0] is not None,
        )
        time.sleep(0.5)  # polling
        kill_9(again)
        assert sending_marks(inbox) == []
        _rebuilt_then_finished(inbox, env, sandbox, inbox / "g.outcome.csv", rows=4)


def test_a_file_gone_after_more_went_than_its_outcome_shows_gets_the_journals_outcome(
    tmp_path: Path,
) -> None:
    """An outcome with rows NOT_SENT (Amili down); a re-take sends two of them and is killed;
    the file is deleted. Closed as gone, it keeps that outcome, which says those two were not
    sent, and lost the mark that said they were: a journal put back from a copy then sent them
    again. Now the journal's outcome is written beside it, in archive/, and that copy is held
    back by it."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = inbox / "f.csv"
    write_erp_csv(source, [erp_row(str(60_001 + n)) for n in range(6)])
    kept = source.read_bytes()
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        env, copy = _retake_killed_after_a_backup(sandbox, inbox, tmp_path / "copy.db")
        assert statuses(inbox / "f.outcome.csv") == ["SUCCEEDED"] * 2 + ["NOT_SENT"] * 4
        source.unlink()

        _, out, _ = filedrop("run", environ=env, expect=1)  # the batch it was killed in: UNKNOWN
        assert "f.csv: 2 NOT_SENT, 2 SUCCEEDED, 2 UNKNOWN\n  gone: " in out
        assert sending_marks(inbox) == []
        _lose_journal(inbox)
        copy.replace(journal_file(inbox))
        source.write_bytes(kept)
        filedrop("run", environ=env, expect=2)  # the journal's outcome in archive/ holds it back
        assert sandbox.counters().invoice_numbers_repeated == ()


def test_a_file_gone_while_its_mark_holds_the_inbox_back_is_not_closed(tmp_path: Path) -> None:
    """A re-take sends two rows more than the outcome shows and is killed; the journal is put
    back from a copy taken before it, so the mark holds the inbox back; the file is deleted.
    Closing it as gone wrote this journal's outcome, which calls those rows unsent, and took
    the mark away: the same file dropped again sent them twice. Now it is left as it was, the
    run says so (exit 2), and the mark goes on holding the inbox back."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = inbox / "f.csv"
    write_erp_csv(source, [erp_row(str(73_001 + n)) for n in range(6)])
    kept = source.read_bytes()
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        env, copy = _retake_killed_after_a_backup(sandbox, inbox, tmp_path / "copy.db")
        _lose_journal(inbox)
        copy.replace(journal_file(inbox))
        source.unlink()

        _, out, _ = filedrop("run", environ=env, expect=2)
        # Once, though the run looks at files gone both before and after the inbox's own.
        assert out.count("f.csv: skipped (moved, replaced or deleted while unfinished") == 1
        assert len(sending_marks(inbox)) == 1
        source.write_bytes(kept)
        filedrop("run", environ=env, expect=2)
        assert sandbox.counters().invoice_numbers_repeated == ()


def test_an_outcome_resolve_rewrites_takes_the_mark_away(tmp_path: Path) -> None:
    """Stopped (SIGTERM) while its first POST awaited the answer: the file is left waiting,
    with no outcome, its mark naming that batch. Resolved as sent, the outcome is written, and
    shows all the mark names, so the mark goes: it held a journal rebuilt from that very
    outcome back for ever."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "f.csv", [erp_row(str(74_001 + n)) for n in range(6)])
    with Sandbox(SandboxOptions(delay_s=(0.3, 0.3))).start() as sandbox:
        sandbox.stall_next(5.0, route="invoices")
        env = run_env(
            inbox, sandbox.url, FILEDROP_BATCH_SIZE="2", FILEDROP_CONCURRENT_BATCHES="1",
            FILEDROP_READ_TIMEOUT_S="1",
        )  # fmt: skip
        child = start_run(env)
        wait_for_sandbox(lambda: sandbox.counters().posts >= 1)
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=60)
        assert len(sending_marks(inbox)) == 1 and not (inbox / "f.outcome.csv").exists()
        filedrop("resolve", "1", "--sent", environ=env)
        assert (inbox / "f.outcome.csv").exists()
        assert sending_marks(inbox) == []
        _rebuilt_then_finished(inbox, env, sandbox, inbox / "f.outcome.csv", rows=6)


def test_a_file_that_cannot_be_read_after_a_kill_is_not_taken_for_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed with its batches QUEUED, then the file unreadable for a while (a permission
    changed, a share's hiccup): settling took it for gone, wrote its outcome from the journal
    and marked it so (found by a hostile review: the inbox made unreadable). It is left as it
    is; readable again, the next run finishes it, and nothing is sent twice. (Refused by hand:
    the tests run as root, whom no mode refuses.)"""
    from filedrop import runner as runner_module
    from filedrop.inbox import content_hash

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    big = write_erp_csv(inbox / "big.csv", [erp_row(str(10_400 + n)) for n in range(6)])

    def refused(path: Path) -> str:
        if path.name == big.name:
            raise PermissionError(13, "Permission denied", str(path))
        return content_hash(path)

    with Sandbox(SandboxOptions(delay_s=(2.0, 2.0))).start() as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2")
        kill_9_with_batches_queued(start_run(env), inbox, 3)
        monkeypatch.setattr(runner_module, "content_hash", refused)
        with open_context(sandbox_settings(inbox, sandbox.url, batch_size=2)) as ctx:
            assert settle_leftovers(ctx) == []
        assert not outcome_path(big).exists()
        with sqlite3.connect(journal_file(inbox)) as db:
            assert db.execute("SELECT state FROM files").fetchall() == [("claimed",)]
        monkeypatch.undo()
        filedrop("run", environ=env)
        assert statuses(outcome_path(big)) == ["SUCCEEDED"] * 6
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sandbox.counters().invoices_received == 6
