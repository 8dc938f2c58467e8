"""Metrics and probes: a real watch scraped over HTTP, a real run's metrics file, a real daemon.

The in-process tests run ``watch_inbox`` in a thread on a context built by ``open_context``, with
a ``MetricsServer`` on a free port of 127.0.0.1, and read what a scraper would read.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from builders import ORG_ID, config_head, erp_row, filedrop, run_env, write_erp_csv
from conftest import (
    FakeTime,
    sandbox_settings,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from filedrop.metrics import Metrics, MetricsServer, health_token_path
from filedrop.pipeline import Context, FileReport
from filedrop.runner import open_context
from filedrop.sandbox import Sandbox
from filedrop.settings import load_settings
from filedrop.watch import WatchOptions, watch_inbox, watch_through_outages

pytestmark = pytest.mark.timeout(60)


def get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from 127.0.0.1:``port``: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode("utf-8")
    finally:
        connection.close()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return scraped[(name, frozenset(labels.items()))]


class Daemon:
    """``watch_inbox`` in a thread, its metrics served on a free port."""

    def __init__(self, ctx: Context, metrics: Metrics, options: WatchOptions) -> None:
        self.ctx = ctx
        self.server = MetricsServer(metrics, host="127.0.0.1", port=0, setting="test")
        self.stop = threading.Event()
        self.reports: list[FileReport] = []
        self.thread = threading.Thread(
            target=watch_inbox,
            args=(ctx,),
            kwargs={"options": options, "stop": self.stop, "on_report": self.reports.append},
            daemon=True,
        )
        self.thread.start()

    def get(self, path: str) -> tuple[int, str]:
        return get(self.server.port, path)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


@pytest.fixture
def start_daemon(sandbox: Sandbox, inbox: Path) -> Iterator[Callable[..., Daemon]]:
    with ExitStack() as stack:
        started: list[Daemon] = []

        def start(**overrides: Any) -> Daemon:
            values: dict[str, Any] = {"rescan_s": 0.1, "heartbeat_s": 0.1}
            values.update(overrides)
            settings = sandbox_settings(inbox, sandbox.url, **values)
            metrics = Metrics()
            ctx = stack.enter_context(open_context(settings, metrics=metrics))
            daemon = Daemon(ctx, metrics, WatchOptions.from_settings(settings, tick_s=0.02))
            stack.callback(daemon.server.close)
            started.append(daemon)
            return daemon

        yield start
        for daemon in started:
            daemon.halt()


def test_a_processed_file_shows_in_the_metrics_by_inbox(
    start_daemon: Callable[..., Daemon], inbox: Path
) -> None:
    """After a file of two rows is done, /metrics says so exactly, labelled by the inbox only."""
    daemon = start_daemon()
    write_erp_csv(inbox / "mars.csv", [erp_row("1001"), erp_row("1002")])
    wait_until(lambda: daemon.reports, what="the file's report")
    status, text = daemon.get("/metrics")
    assert status == 200
    scraped = samples(text)
    assert value(scraped, "filedrop_rows_total", inbox="inbox", status="SUCCEEDED") == 2
    assert value(scraped, "filedrop_rows_total", inbox="inbox", status="FAILED") == 0
    assert value(scraped, "filedrop_files_total", inbox="inbox", result="done") == 1
    assert value(scraped, "filedrop_files_total", inbox="inbox", result="error") == 0
    assert value(scraped, "filedrop_batches_total", inbox="inbox", result="submitted") == 1
    assert value(scraped, "filedrop_batches_total", inbox="inbox", result="unknown") == 0
    assert value(scraped, "filedrop_post_duration_seconds_count", inbox="inbox") == 1
    assert value(scraped, "filedrop_poll_duration_seconds_count", inbox="inbox") == 1
    assert value(scraped, "filedrop_token_renewals_total", inbox="inbox") == 1
    assert value(scraped, "filedrop_unknown_batches", inbox="inbox") == 0
    assert value(scraped, "filedrop_rows_waiting", inbox="inbox", status="PENDING") == 0
    assert value(scraped, "filedrop_rows_waiting", inbox="inbox", status="NOT_SENT") == 0
    assert value(scraped, "filedrop_oldest_waiting_file_age_seconds", inbox="inbox") == 0
    assert value(scraped, "filedrop_last_successful_cycle_timestamp_seconds", inbox="inbox") > 0
    labels = {label for name, labelled in scraped for label, _ in labelled}
    assert labels <= {"inbox", "status", "result", "reason", "le"}
    # Neither the file's name nor an invoice number is a label value (a number may well turn
    # up among the sample values' digits, so those are not searched).
    label_values = {v for name, labelled in scraped for _, v in labelled}
    assert "mars" not in text
    assert not any("1001" in v for v in label_values)


def test_healthz_is_ok_while_the_loop_runs_and_fails_once_it_stopped(
    start_daemon: Callable[..., Daemon],
) -> None:
    """/healthz answers 200 while the loop beats, and 503 naming the inbox once it stopped."""
    daemon = start_daemon()
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    assert daemon.get("/healthz") == (200, "alive\n")
    assert daemon.get("/readyz") == (200, "ready\n")
    daemon.halt()
    assert daemon.get("/healthz") == (503, "inbox inbox: the watch loop has stopped\n")


def test_readyz_says_why_when_the_inbox_cannot_be_listed(
    start_daemon: Callable[..., Daemon], inbox: Path
) -> None:
    """An inbox that is gone makes /readyz 503 with the reason, and 200 again once it is back."""
    daemon = start_daemon()
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    inbox.rename(inbox.with_name("elsewhere"))
    answer = wait_until(lambda: (got := daemon.get("/readyz"))[0] == 503 and got, what="not ready")
    assert answer[1] == (
        f"inbox inbox: the inbox {inbox} cannot be listed (No such file or directory)\n"
    )
    assert daemon.get("/healthz")[0] == 200  # alive all the same: restarting would not help
    inbox.with_name("elsewhere").rename(inbox)
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready again")


def test_readyz_says_stopping_while_the_last_files_finish(
    start_daemon: Callable[..., Daemon], sandbox: Sandbox, inbox: Path
) -> None:
    """Told to stop while a POST is answered slowly, the daemon takes no new file but finishes
    that one: /readyz says so (503), where it answered "ready" until its port closed (from a
    hostile review); /healthz stays alive until the loop has stopped."""
    daemon = start_daemon()
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    sandbox.stall_next(3.0, route="invoices")
    write_erp_csv(inbox / "slow.csv", [erp_row("1101")])
    wait_until(lambda: sandbox.counters().posts, what="the POST")
    daemon.stop.set()
    answer = wait_until(lambda: (got := daemon.get("/readyz"))[0] == 503 and got, what="stopping")
    assert answer == (503, "inbox inbox: stopping: no new files are taken\n")
    assert daemon.get("/healthz") == (200, "alive\n")
    daemon.halt()
    # The POST was answered and recorded; its poll is the next start's (resumable).
    assert [report.path.name for report in daemon.reports] == ["slow.csv"]
    assert sandbox.counters().invoices_received == 1


def test_an_inbox_loop_begun_again_is_no_longer_stopping() -> None:
    """An inbox whose loop ended (a failure) and began again beats: it is neither stopping nor
    stopped, or /readyz would say "stopping" for good."""
    inbox = Metrics(clock=lambda: 1000.0).inbox("acme")
    inbox.loop_beat(next_within_s=60)
    inbox.loop_stopping()
    assert "inbox acme: stopping: no new files are taken" in inbox.readiness_problems(1000.0)
    inbox.loop_stopped()
    inbox.loop_beat(next_within_s=60)
    assert not [p for p in inbox.readiness_problems(1000.0) if "stop" in p or "running" in p]


def test_readiness_says_when_a_journal_write_waits(tmp_path: Path) -> None:
    """A journal another program holds locked keeps the daemon's heartbeat write waiting for
    the journal's busy timeout (30 s), and /readyz answered "ready" all that while. After 5 s
    of waiting it says so; the write's end ends it."""
    now = [1000.0]
    inbox = Metrics(clock=lambda: now[0]).inbox("acme")
    inbox.journal_written(None)
    inbox.journal_writing()
    now[0] += 4.0
    assert not [p for p in inbox.readiness_problems(now[0]) if "journal" in p]
    now[0] += 3.0
    assert (
        "inbox acme: the journal has not answered a write for 7 s (locked by another program, "
        "or a slow disk)" in inbox.readiness_problems(now[0])
    )
    inbox.journal_written(None)
    assert not [p for p in inbox.readiness_problems(now[0]) if "journal" in p]


def test_readyz_names_why_an_inbox_of_a_config_cannot_start(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """An inbox whose mapping is broken is retried on the outage backoff, and /readyz gave
    three reasons it never got to ("the journal has not been written yet", "the inbox has not
    been listed yet", "no access token obtained yet"), never the mapping. It names the mapping
    now; the good inbox is not named."""
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\n[invoice\n', encoding="utf-8")
    folders = {name: tmp_path / name for name in ("good", "mapped")}
    for folder in folders.values():
        folder.mkdir()
    with socket.socket() as probe:  # a free port, handed to the daemon's own server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "filedrop.toml"
    head = config_head(
        sandbox.url, tmp_path / "journal.db", metrics_port=port, metrics_host="127.0.0.1"
    )
    config.write_text(
        head
        + f"""
[[inbox]]
name = "good"
folder = "{folders["good"]}"

[[inbox]]
name = "mapped"
folder = "{folders["mapped"]}"
mapping = "{broken}"
retry_initial_s = 600
""",
        encoding="utf-8",
    )
    stop = threading.Event()
    daemon = threading.Thread(
        target=watch_through_outages,
        args=(load_settings(config_file=config, environ={}),),
        kwargs={"stop": stop},
    )
    daemon.start()

    def readyz() -> tuple[int, str]:
        try:
            return get(port, "/readyz")
        except ConnectionRefusedError:  # the daemon's server not listening yet
            return 0, ""

    try:
        answer = wait_until(
            lambda: (
                (got := readyz())[1].startswith("inbox mapped: cannot")
                and "good" not in got[1]
                and got
            ),
            what="only the broken inbox not ready",
        )
    finally:
        stop.set()
        daemon.join(timeout=30)
    (line,) = answer[1].splitlines()
    assert line.startswith(f"inbox mapped: cannot start: {broken}: ")
    assert line.endswith("; trying again in 600 s")


def test_readyz_says_why_when_the_journal_cannot_be_written(
    start_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal whose heartbeat write fails makes /readyz 503 with the database's reason.

    The failure is injected: the tests run as root, which no file permission stops.
    """
    daemon = start_daemon()
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready")

    def read_only(owner: str) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(daemon.ctx.journal, "beat", read_only)
    answer = wait_until(lambda: (got := daemon.get("/readyz"))[0] == 503 and got, what="not ready")
    assert answer[1] == (
        "inbox inbox: the journal cannot be written (attempt to write a readonly database)\n"
    )


def test_readyz_says_when_amili_cannot_be_reached_until_it_answers_again(
    start_daemon: Callable[..., Daemon], inbox: Path, sandbox: Sandbox
) -> None:
    """Every POST given up as Amili keeps failing makes /readyz 503 saying so, the token still
    valid: it answered "ready" for up to the hour a token lasts (found by a hostile review).
    Ready again once Amili answers; the file is sent then."""
    daemon = start_daemon(retry_initial_s=0.3)
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    sandbox.fail_next(503, count=1000, retry_after="0", route="invoices")
    write_erp_csv(inbox / "mars.csv", [erp_row("1001")])
    answer = wait_until(lambda: (got := daemon.get("/readyz"))[0] == 503 and got, what="not ready")
    assert answer[1].startswith(
        f"inbox inbox: Amili was not available for POST /collection/v1/orgs/{ORG_ID}/invoices "
        "(HTTP 503) after "
    )
    sandbox.clear_faults()
    wait_until(lambda: daemon.get("/readyz")[0] == 200, what="ready again")
    wait_until(lambda: sandbox.received_invoice_numbers() == ["1001"], what="mars.csv sent")


def test_readyz_says_why_when_no_token_can_be_obtained() -> None:
    """A refused token request, or a token run out, makes the inbox not ready, saying so."""
    fake = FakeTime(start=1000.0)
    metrics = Metrics(clock=fake.clock)
    inbox = metrics.inbox("acme")
    inbox.loop_beat(next_within_s=60)
    inbox.journal_written(None)
    inbox.inbox_listed(None)
    assert metrics.readiness_problems() == ["inbox acme: no access token obtained yet"]
    inbox.token_obtained(300.0)
    assert metrics.readiness_problems() == []
    inbox.token_failed("Amili refused the credentials of client test-client (HTTP 401).")
    assert metrics.readiness_problems() == [
        "inbox acme: no access token: "
        "Amili refused the credentials of client test-client (HTTP 401)"
    ]
    inbox.token_obtained(300.0)
    fake.now += 310
    inbox.loop_beat(next_within_s=60)
    assert metrics.readiness_problems() == [
        "inbox acme: the access token expired 10 s ago and no new one was obtained"
    ]


def test_healthz_fails_when_the_loop_stops_beating() -> None:
    """A loop that has not beaten within what it promised is not alive; one that starts is."""
    fake = FakeTime(start=1000.0)
    metrics = Metrics(clock=fake.clock)
    inbox = metrics.inbox("acme")
    assert metrics.liveness_problems() == []  # still starting
    inbox.loop_beat(next_within_s=60)
    fake.now += 60
    assert metrics.liveness_problems() == []
    fake.now += 1
    assert metrics.liveness_problems() == ["inbox acme: the watch loop has not moved for 61 s"]


def test_run_writes_its_metrics_file_atomically(sandbox: Sandbox, inbox: Path) -> None:
    """`run` with FILEDROP_METRICS_FILE replaces the file whole: one opened before still reads
    the old content, the new one parses, and no temporary file is left beside it."""
    folder = inbox.parent / "textfile"
    folder.mkdir()
    target = folder / "filedrop.prom"
    target.write_text("# an earlier run's\n", encoding="utf-8")
    write_erp_csv(inbox / "mars.csv", [erp_row("2001"), erp_row("2002"), erp_row("2003")])
    sandbox.fail_next(503, count=1, retry_after="0", route="invoices")
    with target.open(encoding="utf-8") as earlier:
        filedrop("run", environ=run_env(inbox, sandbox.url, FILEDROP_METRICS_FILE=str(target)))
        assert earlier.read() == "# an earlier run's\n"
    scraped = samples(target.read_text(encoding="utf-8"))
    assert value(scraped, "filedrop_rows_total", inbox="inbox", status="SUCCEEDED") == 3
    assert value(scraped, "filedrop_files_total", inbox="inbox", result="done") == 1
    assert value(scraped, "filedrop_retries_total", inbox="inbox", reason="http_503") == 1
    assert value(scraped, "filedrop_last_successful_cycle_timestamp_seconds", inbox="inbox") > 0
    assert sorted(path.name for path in folder.iterdir()) == ["filedrop.prom"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_the_daemon_serves_healthz_until_sigterm(sandbox: Sandbox, inbox: Path) -> None:
    """`filedrop watch --metrics-port` answers the container's health check (`filedrop status
    --health` with the same port) with exit 0 while it runs; after SIGTERM the daemon exits 0 and
    the check fails."""
    with MetricsServer(Metrics(), host="127.0.0.1", port=0, setting="probe") as probe:
        port = probe.port  # free now; closed again before the daemon binds it
    env = {**os.environ, **run_env(inbox, sandbox.url), "FILEDROP_METRICS_PORT": str(port)}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "filedrop", "watch"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    check = [sys.executable, "-m", "filedrop", "status", "--health"]
    try:
        wait_until(
            lambda: (
                subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0
            ),
            what="a healthy daemon",
        )
        wait_until(lambda: get(port, "/readyz") == (200, "ready\n"), what="a ready daemon")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    after = subprocess.run(check, env=env, capture_output=True, text=True, check=False)
    assert (after.returncode, after.stderr) == (
        1,
        f"filedrop: unhealthy: no filedrop watch serves health here "
        f"({health_token_path(port)} does not exist).\n",
    )


def test_health_is_never_read_from_another_containers_daemon(inbox: Path) -> None:
    """On a host network, 127.0.0.1:port may be another container's daemon: its 200 does not make
    this one healthy. The answer must carry the token this filesystem's own daemon wrote."""
    environ = {"FILEDROP_INBOX": str(inbox)}
    with MetricsServer(Metrics(), host="127.0.0.1", port=0, setting="test") as other:
        environ["FILEDROP_METRICS_PORT"] = str(other.port)
        metrics_alive(other)
        _, out, _ = filedrop("status", "--health", environ=environ)
        assert out == f"healthy: the watch daemon answers on port {other.port}\n"
        # This container never started a daemon: no token file of its own.
        health_token_path(other.port).unlink()
        _, _, err = filedrop("status", "--health", environ=environ, expect=1)
        assert err == (
            f"filedrop: unhealthy: no filedrop watch serves health here "
            f"({health_token_path(other.port)} does not exist).\n"
        )
        # A token of its own, but the answer comes from another daemon.
        health_token_path(other.port).write_text("this-containers-token", encoding="ascii")
        _, _, err = filedrop("status", "--health", environ=environ, expect=1)
        assert err == (
            f"filedrop: unhealthy: 127.0.0.1:{other.port} is served by another process, not this "
            "filedrop watch.\n"
        )


def test_a_link_at_the_health_tokens_name_is_replaced_not_written_through(
    inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token's name in the shared temporary folder is known in advance: a link another user
    put there (to a file of the daemon's user) had the token written through it, over that
    file. The token is a file of its own, which the health check reads; the file is untouched."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    with MetricsServer(Metrics(), host="127.0.0.1", port=0, setting="probe") as probe:
        port = probe.port  # free now; closed again before the daemon binds it
    victim = shared / "victim.txt"
    victim.write_text("kept as it was", encoding="ascii")
    health_token_path(port).symlink_to(victim)
    with MetricsServer(Metrics(), host="127.0.0.1", port=port, setting="test") as daemon:
        metrics_alive(daemon)
        assert not health_token_path(port).is_symlink()
        assert health_token_path(port).stat().st_mode & 0o777 == 0o644  # another user's check
        environ = {"FILEDROP_INBOX": str(inbox), "FILEDROP_METRICS_PORT": str(port)}
        _, out, _ = filedrop("status", "--health", environ=environ)
        assert out == f"healthy: the watch daemon answers on port {port}\n"
    assert victim.read_text(encoding="ascii") == "kept as it was"
    assert sorted(path.name for path in shared.iterdir()) == ["victim.txt"]


def test_a_token_that_cannot_be_put_in_place_is_said_so_and_what_is_there_is_kept(
    inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Something at the token's name that cannot be replaced (another user's file in a folder
    with the sticky bit; here a folder): the daemon runs on and warns, the health check says
    the token cannot be read rather than that it does not exist, and the daemon's stop leaves
    what is there as it was, where its removal raised at the end of the watch."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    with MetricsServer(Metrics(), host="127.0.0.1", port=0, setting="probe") as probe:
        port = probe.port  # free now; closed again before the daemon binds it
    (health_token_path(port) / "inside").mkdir(parents=True)
    with MetricsServer(Metrics(), host="127.0.0.1", port=port, setting="test") as daemon:
        metrics_alive(daemon)
        environ = {"FILEDROP_INBOX": str(inbox), "FILEDROP_METRICS_PORT": str(port)}
        _, _, err = filedrop("status", "--health", environ=environ, expect=1)
        assert err == (
            f"filedrop: unhealthy: {health_token_path(port)} cannot be read (Is a directory); "
            "run the check as the user the daemon runs as.\n"
        )
    assert f"cannot write {health_token_path(port)}" in caplog.text
    assert sorted(path.name for path in shared.iterdir()) == [health_token_path(port).name]
    assert (health_token_path(port) / "inside").is_dir()


def metrics_alive(server: MetricsServer) -> None:
    """Make ``server``'s daemon look alive: one inbox whose loop has just beaten."""
    server.metrics.inbox("acme").loop_beat(next_within_s=60)
