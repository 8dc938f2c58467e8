"""`filedrop watch` and `filedrop run` on one inbox: whoever still runs finishes every file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from builders import erp_row, run_env, write_erp_csv
from conftest import journal_file, wait_until

from filedrop.sandbox import Sandbox, SandboxOptions

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX"),
    pytest.mark.timeout(90),
]


def start(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "filedrop", command],
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def journal_count(journal: Path, sql: str) -> int:
    """One number from the real journal file (0 while it or its schema is not there yet)."""
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(journal, timeout=5) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def statuses(path: Path) -> list[str]:
    """The outcome's row statuses, or none while it is missing."""
    if not path.exists():
        return []
    frame = pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)
    return list(frame["outcome_status"])


def test_files_two_runs_leave_waiting_are_finished_by_the_running_watch(tmp_path: Path) -> None:
    """Two runs started together beside a running watch exit 3 with their batches still QUEUED;
    watch, which met those files while the runs held them, finishes every one of them."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    journal = journal_file(inbox)
    log_path = tmp_path / "processes.log"
    numbers = {f"f{n:02d}": [str(40_000 + n * 10), str(40_001 + n * 10)] for n in range(20)}
    # Batches stay QUEUED until the sandbox's clock is moved on, so each run certainly leaves
    # its files WAITING.
    shift_s = [0.0]
    options = SandboxOptions(delay_s=(60.0, 60.0))
    with Sandbox(options, clock=lambda: time.time() + shift_s[0]) as sandbox:
        env = run_env(inbox, sandbox.url, FILEDROP_CONCURRENT_FILES="10")
        watch_env = {
            **env,
            "FILEDROP_STABILITY_S": "1",
            "FILEDROP_RESCAN_S": "0.5",
            "FILEDROP_RETRY_INITIAL_S": "0.5",
            "FILEDROP_RETRY_MAX_S": "1",
            "FILEDROP_HEARTBEAT_S": "0.5",
        }
        watch = start("watch", watch_env, log_path)
        try:
            wait_until(
                lambda: journal_count(journal, "SELECT COUNT(*) FROM replicas") == 1,
                timeout_s=20,
                what="the daemon's heartbeat",
            )
            paths = [
                write_erp_csv(inbox / f"{name}.csv", [erp_row(number) for number in pair])
                for name, pair in numbers.items()
            ]
            runs = [start("run", {**env, "FILEDROP_POLL_TIMEOUT_S": "4"}, log_path) for _ in (1, 2)]

            def runs_hold_every_file() -> bool:
                # Until then the files look freshly written to watch (same bytes, new mtime), so
                # that watch meets each file while a run holds it rather than claiming it first.
                for path in paths:
                    os.utime(path)
                sql = "SELECT COUNT(*) FROM batches WHERE state = 'queued'"
                return journal_count(journal, sql) == len(paths)

            wait_until(runs_hold_every_file, timeout_s=30, what="both runs to hold every file")
            codes = [run.wait(timeout=30) for run in runs]
            assert max(codes) == 3, log_path.read_text()
            assert set(codes) <= {0, 3}, log_path.read_text()  # a run that got no file has 0
            shift_s[0] = 120.0  # now the batches end

            def all_succeeded() -> bool:
                return all(
                    statuses(inbox / f"{name}.outcome.csv") == ["SUCCEEDED", "SUCCEEDED"]
                    for name in numbers
                )

            wait_until(all_succeeded, timeout_s=30, what="every outcome with only SUCCEEDED rows")
            assert watch.poll() is None, log_path.read_text()
        finally:
            watch.send_signal(signal.SIGTERM)
            try:
                code = watch.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watch.kill()
                watch.wait()
                pytest.fail(f"filedrop watch ignored SIGTERM; log:\n{log_path.read_text()}")
        assert code == 0, log_path.read_text()
        assert sandbox.counters().invoice_numbers_repeated == ()
        assert sorted(sandbox.received_invoice_numbers()) == sorted(
            number for pair in numbers.values() for number in pair
        )
    assert "Traceback" not in log_path.read_text()
