"""The command line: its commands end to end, and every error as one sentence with exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytest
from builders import EXAMPLES, MAPPINGS, erp_row, filedrop, national_id, run_env, write_erp_csv
from conftest import ORG_ID, journal_file

from filedrop.sandbox import Sandbox, SandboxOptions


def test_demo_runs_on_the_embedded_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`filedrop demo` needs nothing but the checkout and shows mixed outcomes and their paths."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its folder is left for the user
    code, out, _ = filedrop("demo", environ={})
    assert code == 0
    assert "SANDBOX" in out
    files = {line.split(": ")[0]: line.split(": ")[1] for line in out.splitlines()[3::2]}
    assert files == {
        "apne-poster-mars.xlsx": "2 FAILED, 6 INVALID, 8 SUCCEEDED",
        "faktura-mars.csv": "1 DUPLICATE, 5 INVALID, 7 SUCCEEDED",
        "tripletex-apne-poster.xlsx": "2 SKIPPED, 12 SUCCEEDED",
        "visma-kundereskontro.csv": "2 SKIPPED, 11 SUCCEEDED",
    }
    outcomes = [
        Path(line.split("outcome: ", 1)[1]) for line in out.splitlines() if "outcome: " in line
    ]
    assert len(outcomes) == len([p for p in EXAMPLES.iterdir() if not p.name.startswith(".")])
    assert all(path.is_file() and path.is_relative_to(tmp_path) for path in outcomes)


def test_validate_prints_problems_and_sends_nothing() -> None:
    """`validate` names each broken row's column and value and exits 1; --json prints invoices."""
    source = EXAMPLES / "faktura-mars.csv"
    _, out, _ = filedrop("validate", str(source), "--mapping", str(MAPPINGS), environ={}, expect=1)
    assert 'Forfallsdato "31.02.2024" is not a date' in out
    assert "cp1252" in out
    _, out, _ = filedrop(
        "validate", str(source), "--mapping", str(MAPPINGS), "--json", environ={}, expect=1
    )
    invoices = json.loads(out)
    assert invoices and all("invoiceNumber" in invoice for invoice in invoices)


def test_validate_prints_a_cell_with_control_characters_escaped(tmp_path: Path) -> None:
    """A cell holding a terminal escape sequence is shown escaped: it cannot recolour or rewrite
    the terminal of whoever validates the file."""
    source = write_erp_csv(tmp_path / "hostile.csv", [erp_row("1\x1b[31m2\x07", amount="tolv")])
    _, out, _ = filedrop("validate", str(source), "--mapping", str(MAPPINGS), environ={}, expect=1)
    assert "\x1b" not in out and "\x07" not in out
    assert 'Beløp "tolv" is not an amount' in out and "1\\x1b[31m2\\x07" in out


def test_validate_shows_a_kid_that_reads_like_a_national_id_whole(tmp_path: Path) -> None:
    """A KID written with decimals whose digits read like a fødselsnummer was masked in its
    own message ("101007*****.0"): the user was asked to fix a value they could not see (found
    by a hostile review). A national id is still masked."""
    source = write_erp_csv(
        tmp_path / "kid.csv",
        [erp_row("1", KID="10100700011.0"), erp_row("2", Fødselsnr="10100712345")],
    )
    _, out, _ = filedrop("validate", str(source), "--mapping", str(MAPPINGS), environ={}, expect=1)
    assert 'KID "10100700011.0" is a number written with decimals' in out
    assert 'Fødselsnr "101007*****" is not a valid fødselsnummer' in out


def test_validate_unreadable_file_exits_2_with_one_sentence(tmp_path: Path) -> None:
    """An unreadable file is exit 2 and one line naming it, without a traceback."""
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"nope")
    _, _, err = filedrop("validate", str(broken), "--mapping", str(MAPPINGS), environ={}, expect=2)
    assert err.startswith("filedrop: ") and "broken.xlsx" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda path: None, "no such file"),
        (Path.mkdir, "it is a folder; name a CSV or Excel file in it"),
        (os.mkfifo, "it is not a regular file (a pipe, socket or device)"),
    ],
)
def test_validate_and_init_say_what_the_named_path_is_instead_of_a_file(
    tmp_path: Path, make: Callable[[Path], object], why: str
) -> None:
    """A folder or a pipe named on the command line is not called missing."""
    path = tmp_path / "x.csv"
    make(path)
    for command in (["validate", str(path), "--mapping", str(MAPPINGS)], ["init", str(path)]):
        _, _, err = filedrop(*command, environ={}, expect=2)
        assert err == f"filedrop: {path}: {why}\n"


def test_validate_reads_within_the_configured_limits(tmp_path: Path) -> None:
    """`validate` applies the read limits of the settings, not only their defaults."""
    from hostile import far_cell_workbook

    wide = far_cell_workbook(tmp_path / "wide.xlsx", row=3, column=40)
    args = ("validate", str(wide), "--mapping", str(MAPPINGS))
    _, _, err = filedrop(*args, environ={"FILEDROP_MAX_COLUMNS": "20"}, expect=2)
    assert err == (
        f'filedrop: {wide}: the sheet "Sheet1" reaches column AO (column 41) (its used range is '
        "A1:AO4), more than 20 (FILEDROP_MAX_COLUMNS); delete the far cells (Ctrl+End in Excel "
        "shows the last one) and save it again; it is not read\n"
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path: Path, where: str) -> None:
    """--debug, before or after the command, adds the traceback that normal output hides."""
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"nope")
    command = ["validate", str(broken), "--mapping", str(MAPPINGS)]
    args = ["--debug", *command] if where == "before" else [*command, "--debug"]
    _, _, err = filedrop(*args, environ={}, expect=2)
    assert "Traceback" in err


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    """--log-format json after the command: every log line parses as JSON with a message."""
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"nope")
    _, _, err = filedrop(
        "validate",
        str(broken),
        "--mapping",
        str(MAPPINGS),
        "--log-format",
        "json",
        "--debug",
        environ={},
        expect=2,
    )
    logged = [line for line in err.splitlines() if line.startswith("{")]
    assert logged and all("message" in json.loads(line) for line in logged)


def test_status_on_a_fresh_inbox_says_nothing_happened(tmp_path: Path) -> None:
    """`status` before any run explains that the journal is empty rather than failing."""
    _, out, _ = filedrop("status", "--inbox", str(tmp_path), environ={})
    assert "nothing has been processed" in out


def test_status_without_a_journal_beside_outcomes_says_it_was_lost(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The journal is gone but an outcome is there: status does not say nothing was processed,
    it says the journal was lost or moved and what to run with what (a rebuild needs the
    environment and organisation), and exits 1, as something to act on."""
    write_erp_csv(inbox / "a.csv", [erp_row("5501")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    journal_file(inbox).unlink()
    _, out, _ = filedrop("status", environ=env, expect=1)
    assert out == (
        f"No journal at {journal_file(inbox)}, yet the inbox holds 1 outcome file (such as "
        f"{inbox / 'a.outcome.csv'}), so files were processed: the journal was lost or moved; "
        "run 'filedrop journal rebuild' with the FILEDROP_ENV and FILEDROP_ORG_ID they were sent "
        "with, or point FILEDROP_STATE at the journal in use.\n"
    )
    _, _, err = filedrop("report", "--out", str(inbox.parent), environ=env, expect=2)
    assert err == f"filedrop: {out}"


def test_without_a_journal_only_an_outcome_showing_rows_sent_says_it_was_lost(
    inbox: Path, sandbox: Sandbox
) -> None:
    """No journal yet, and in the inbox only a stray file named like an outcome, or the outcome
    of a file none of whose rows went: status said the journal was lost (exit 1) and report
    refused, though a run takes the inbox and no rebuild could clear it. Neither shows anything
    sent; an outcome of rows sent still does."""
    env = run_env(inbox, sandbox.url)
    (inbox / "notes.outcome.csv").write_bytes(b"not an outcome\x00\xff")
    write_erp_csv(inbox / "bad.csv", [erp_row("5521", amount="abc")])
    filedrop("run", environ=env, expect=1)
    assert (inbox / "bad.outcome.csv").exists()
    journal_file(inbox).unlink()
    _, out, _ = filedrop("status", environ=env)
    assert out == f"No journal at {journal_file(inbox)} yet: nothing has been processed.\n"
    write_erp_csv(inbox / "good.csv", [erp_row("5522")])
    filedrop("run", environ=env, expect=1)  # a new journal: bad.csv is read again, good.csv sent
    journal_file(inbox).unlink()
    _, out, _ = filedrop("status", environ=env, expect=1)
    assert out.startswith(f"No journal at {journal_file(inbox)}, yet the inbox holds 1 outcome")
    assert f"(such as {inbox / 'good.outcome.csv'})" in out


def test_a_lost_journal_s_outcome_is_named_with_its_control_characters_escaped(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A name is data: an outcome named with an escape sequence reached the terminal as it was
    through status's and report's lost-journal sentence (a run's log line escaped it)."""
    name = "evil\x1b[2J\nFAKE.csv"
    write_erp_csv(inbox / name, [erp_row("5531")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    journal_file(inbox).write_bytes(b"")
    _, out, _ = filedrop("status", environ=env, expect=1)
    assert out.startswith("evil\\x1b[2J\\nFAKE.csv: its outcome ")
    assert "\x1b" not in out and out.count("\n") == 3
    _, _, err = filedrop("report", "--out", str(inbox.parent), environ=env, expect=2)
    assert "\x1b" not in err and err.count("\n") == 1


def test_status_says_the_journal_was_lost_as_a_run_finds_it(inbox: Path, sandbox: Sandbox) -> None:
    """A run refused for the lost journal opens (and so makes) an empty one, and so does a
    journal replaced by an empty file: status then said "no files yet", exit 0, and report gave
    an all-clear digest, while every run refused the inbox. Both now say what the run says.
    An outcome that cannot be read back (a stray file so named) shows nothing sent, for runs
    and for status alike: no alarm that no rebuild could clear."""
    write_erp_csv(inbox / "a.csv", [erp_row("5511")])
    env = run_env(inbox, sandbox.url)
    (inbox / "notes.outcome.csv").write_bytes(b"not an outcome\x00\xff")
    filedrop("run", environ=env)
    assert filedrop("status", environ=env)[0] == 0
    journal_file(inbox).unlink()
    write_erp_csv(inbox / "b.csv", [erp_row("5512")])
    filedrop("run", environ=env, expect=2)
    assert journal_file(inbox).exists()
    lost = (
        f"a.csv: its outcome {inbox / 'a.outcome.csv'} shows invoices sent that the journal "
        f"{journal_file(inbox)} does not know were sent, so the journal was lost, replaced or put "
        "back from an older copy; nothing in this inbox is sent until 'filedrop journal rebuild' "
        "has read the outcomes back into it (or FILEDROP_STATE points at the journal in use).\n"
    )
    # Said first, then what the journal holds all the same (here: nothing).
    said = f"{lost}Journal: {journal_file(inbox)}\nNo files yet.\n"
    assert filedrop("status", environ=env, expect=1)[1] == said
    _, _, err = filedrop("report", "--out", str(inbox.parent), environ=env, expect=2)
    assert err == f"filedrop: {lost}"
    journal_file(inbox).write_bytes(b"")
    assert filedrop("status", environ=env, expect=1)[1] == said
    assert sandbox.counters().invoices_received == 1


def test_status_says_which_listed_daemons_are_gone(inbox: Path, sandbox: Sandbox) -> None:
    """A daemon killed outright never takes its heartbeat row out of the journal: status still
    lists it, but says it is gone, whether its process is known dead or its beats stopped."""
    from filedrop.journal import Journal

    env = run_env(inbox, sandbox.url)
    write_erp_csv(inbox / "a.csv", [erp_row("5601")])
    filedrop("run", environ=env)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    now = time.time()
    with Journal(journal_file(inbox), clock=lambda: now - 3) as journal:
        journal.beat(f"{host}:{dead.pid}:dead")
    with Journal(journal_file(inbox), clock=lambda: now - 2) as journal:
        journal.beat(f"{host}:{os.getpid()}:here")
    with Journal(journal_file(inbox), clock=lambda: now - 600) as journal:
        journal.beat("node-b:1:silent")
    _, out, _ = filedrop("status", environ=env)
    listed = out.split("Watch daemons (replicas):\n", 1)[1].splitlines()[:3]
    assert [re.sub(r"since [-0-9: ]+ ", "since T ", line) for line in listed] == [
        f"  {host}:{os.getpid()}:here  since T last heartbeat 2 s ago",
        f"  {host}:{dead.pid}:dead  since T last heartbeat 3 s ago  (gone: no longer running)",
        "  node-b:1:silent  since T last heartbeat 600 s ago  (gone: heartbeats stopped)",
    ]


def test_health_fails_without_a_daemon(tmp_path: Path) -> None:
    """`status --health` exits 1 with a reason when no watch daemon has beaten."""
    _, _, err = filedrop("status", "--health", "--inbox", str(tmp_path), environ={}, expect=1)
    assert "unhealthy" in err


def test_health_after_runs_only_says_the_check_is_for_watch(inbox: Path, sandbox: Sandbox) -> None:
    """A journal that only `run` has written: unhealthy, saying why and what the check is for."""
    write_erp_csv(inbox / "a.csv", [erp_row("5401")])
    env = run_env(inbox, sandbox.url)
    filedrop("run", environ=env)
    _, _, err = filedrop("status", "--health", environ=env, expect=1)
    assert err == (
        "filedrop: unhealthy: no watch daemon has written a heartbeat to this journal; this check "
        "is for 'filedrop watch' (a 'filedrop run' tells by its exit code).\n"
    )


def test_sandbox_command_serves_and_stops_on_sigterm() -> None:
    """`filedrop sandbox` answers /token on 127.0.0.1 and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "filedrop", "sandbox", "--port", "0", "--delay", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        # Its first log line says where it listens, once the socket is bound.
        first = process.stderr.readline()
        url = re.search(r"listening on (http://\S+)", first)
        assert url is not None, first
        request = urllib.request.Request(
            f"{url[1]}/token",
            data=b"grant_type=client_credentials&client_id=a&client_secret=b",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["token_type"] == "Bearer"
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "nothing sent here reaches Amili" in first
        assert rest.splitlines()[-1].endswith("filedrop sandbox stopped")
    finally:
        if process.poll() is None:
            process.kill()


def test_validate_with_a_named_mapping_file_ignores_its_name_patterns(tmp_path: Path) -> None:
    """--mapping FILE applies to the file given, whatever it is called; headers still count."""
    renamed = tmp_path / "eksport fra ERP.xlsx"
    renamed.write_bytes((EXAMPLES / "apne-poster-mars.xlsx").read_bytes())
    _, out, _ = filedrop(
        "validate", str(renamed), "--mapping", str(MAPPINGS / "example.toml"), environ={}, expect=1
    )
    assert "31.02.2024" in out


@pytest.fixture
def restore_signal_handlers() -> Iterator[None]:
    """`filedrop sandbox` in-process installs SIGTERM/SIGINT handlers; put pytest's back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signal_handlers")
def test_sandbox_on_a_busy_port_is_one_sentence() -> None:
    """`filedrop sandbox --port N` with N taken: exit 2 and one sentence naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _, _, err = filedrop("sandbox", "--port", str(port), environ={}, expect=2)
    assert err == (
        f"filedrop: 127.0.0.1:{port} is already in use; stop what listens there or pick another "
        "--port (0 picks a free one).\n"
    )


@pytest.mark.parametrize("variable", ["FILEDROP_CONNECT_TIMEOUT_S", "FILEDROP_POLL_INITIAL_S"])
def test_a_zero_wait_is_refused_in_one_sentence(tmp_path: Path, variable: str) -> None:
    """A timeout or first poll wait of 0: exit 2 and one sentence naming the variable."""
    env = run_env(tmp_path, "http://127.0.0.1:9", **{variable: "0"})
    _, _, err = filedrop("run", environ=env, expect=2)
    assert err == f'filedrop: {variable} is "0", which is not valid: must be more than 0.\n'


def test_a_secret_file_that_is_not_utf8_stops_run_in_one_sentence(tmp_path: Path) -> None:
    """A secret file in UTF-16: exit 2 and one sentence naming the file; nothing was sent."""
    secret = tmp_path / "secret"
    secret.write_bytes("s3cr3t".encode("utf-16"))
    env = run_env(tmp_path, "http://127.0.0.1:9", FILEDROP_CLIENT_SECRET_FILE=str(secret))
    del env["FILEDROP_CLIENT_SECRET"]
    _, _, err = filedrop("run", environ=env, expect=2)
    assert err == (
        f"filedrop: FILEDROP_CLIENT_SECRET_FILE {secret} is not UTF-8 text; save the secret Amili "
        "issued as plain UTF-8 text. Nothing was sent.\n"
    )


def test_an_unknown_variable_stops_the_command_with_the_closest_name(tmp_path: Path) -> None:
    """FILEDROP_BATCHSIZE is a typo: exit 2 and the name that was probably meant."""
    _, _, err = filedrop(
        "status", "--inbox", str(tmp_path), environ={"FILEDROP_BATCHSIZE": "5"}, expect=2
    )
    assert (
        err == "filedrop: FILEDROP_BATCHSIZE is not a setting; did you mean FILEDROP_BATCH_SIZE?\n"
    )


def test_run_without_credentials_names_all_of_them_once(tmp_path: Path) -> None:
    """Several settings missing: one sentence names them all."""
    env = run_env(tmp_path, "http://127.0.0.1:9")
    for name in ("FILEDROP_ENV", "FILEDROP_CLIENT_ID", "FILEDROP_ORG_ID"):
        del env[name]
    _, _, err = filedrop("run", environ=env, expect=2)
    assert err == (
        "filedrop: FILEDROP_ENV, FILEDROP_CLIENT_ID and FILEDROP_ORG_ID are not set; set "
        "FILEDROP_ENV to sandbox, staging or production; FILEDROP_CLIENT_ID and FILEDROP_ORG_ID to "
        "the values Amili issued. Nothing was sent.\n"
    )


def test_environment_name_in_any_case_runs(tmp_path: Path, sandbox: Sandbox) -> None:
    """FILEDROP_ENV=Sandbox is the sandbox environment."""
    env = run_env(tmp_path, sandbox.url, FILEDROP_ENV="Sandbox")
    _, out, _ = filedrop("run", environ=env)
    assert out == "No files were ready in the inbox.\n"


def test_run_says_which_spreadsheets_it_does_not_read(tmp_path: Path, sandbox: Sandbox) -> None:
    """An .ods export in the inbox is most likely invoices to send: the run's summary says it is
    not read and what to do (it said only "No files were ready"); a PDF beside it is clutter."""
    (tmp_path / "mars.ods").write_bytes(b"PK\x03\x04")
    (tmp_path / "brev.pdf").write_bytes(b"%PDF-1.4")
    _, out, _ = filedrop("run", environ=run_env(tmp_path, sandbox.url))
    assert out == (
        "No files were ready in the inbox.\nmars.ods: a spreadsheet filedrop does not read, as "
        "it reads .csv, .xlsx, .xlsm and .xls; save it as .xlsx or .csv and drop it again\n"
    )


def test_a_spreadsheet_whose_name_is_not_utf8_is_said_not_taken_and_the_rest_go(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A name in Latin-1 bytes (an old FTP client) cannot be recorded in the journal: it was
    "unexpected error (UnicodeEncodeError(...)); the next run resumes it" at every run. Now the
    summary and the log say what to do, and the other file of the run is sent."""
    latin1 = tmp_path / os.fsdecode(b"m\xe5ned.csv")
    write_erp_csv(latin1, [erp_row("9301")])
    write_erp_csv(tmp_path / "april.csv", [erp_row("9302")])
    _, out, err = filedrop("run", environ=run_env(tmp_path, sandbox.url))
    said = (
        "m\\udce5ned.csv: its name is not UTF-8 (bytes of another code page, such as Latin-1 "
        "from an old FTP or SFTP client), which the journal cannot record; rename it and drop "
        "it again"
    )
    assert out.splitlines()[:3] == [
        "SANDBOX run: nothing was sent to Amili.",
        said,
        "april.csv: 1 SUCCEEDED",
    ]
    assert f"WARNING m\\udce5ned.csv: ignored ({said.partition(': ')[2]})" in err
    assert sandbox.counters().invoices_received == 1
    assert sorted(os.listdir(tmp_path)) == sorted(["april.csv", "april.outcome.csv", latin1.name])


def test_an_inbox_whose_path_is_not_utf8_is_refused_at_start(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """Every file of a Latin-1-named inbox failed as an "unexpected error", run after run."""
    inbox = tmp_path / os.fsdecode(b"innboks_\xf8")
    inbox.mkdir()
    write_erp_csv(inbox / "april.csv", [erp_row("9303")])
    _, _, err = filedrop("run", environ=run_env(inbox, sandbox.url), expect=2)
    assert err.splitlines()[-1] == (
        f"filedrop: FILEDROP_INBOX {tmp_path}/innboks_\\udcf8 is not UTF-8 (a folder named in "
        "another code page, such as Latin-1), and the journal records each file's path as UTF-8 "
        "text; rename the folder, or point the setting at a path in UTF-8. Nothing was sent."
    )
    assert sandbox.counters().invoices_received == 0


def test_a_refused_token_with_one_url_overridden_says_which_url_did_what(tmp_path: Path) -> None:
    """Only FILEDROP_AUTH_URL set: the refusal names the token URL and the API URL and why."""
    options = SandboxOptions(delay_s=(0, 0), client_id="test-client", client_secret="right")
    with Sandbox(options).start() as strict:
        env = run_env(tmp_path, strict.url, FILEDROP_CLIENT_SECRET="wrong")
        del env["FILEDROP_API_URL"]
        _, _, err = filedrop("run", environ=env, expect=2)
    assert err.endswith(
        ", and that both URLs belong to the same Amili: "
        f"token from {strict.url}/token (FILEDROP_AUTH_URL), "
        "API at http://127.0.0.1:8765 (from FILEDROP_ENV=sandbox). Nothing was sent.\n"
    )


def test_an_unknown_token_path_with_one_url_overridden_says_which_url_did_what(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A token URL that 404s, the API URL from FILEDROP_ENV: the message names both."""
    env = run_env(tmp_path, f"{sandbox.url}/wrong")
    del env["FILEDROP_API_URL"]
    _, _, err = filedrop("run", environ=env, expect=2)
    assert err == (
        "filedrop: Amili answered POST /wrong/token with HTTP 404: "
        '\'{"message": "No route for POST /wrong/token"}\'; it did not process the request, '
        "check the auth base URL (FILEDROP_ENV or FILEDROP_AUTH_URL): "
        f"token from {sandbox.url}/wrong/token (FILEDROP_AUTH_URL), "
        "API at http://127.0.0.1:8765 (from FILEDROP_ENV=sandbox).\n"
    )


def test_validate_takes_the_mapping_from_the_config_file(tmp_path: Path) -> None:
    """`mapping` in the TOML config is used by validate like any setting."""
    config = tmp_path / "filedrop.toml"
    config.write_text(f"mapping = {str(MAPPINGS)!r}\n", encoding="utf-8")
    _, out, _ = filedrop(
        "validate",
        str(EXAMPLES / "faktura-mars.csv"),
        "--config",
        str(config),
        environ={},
        expect=1,
    )
    assert out.splitlines()[0] == (
        "faktura-mars.csv: mapping Norwegian ERP export; cp1252, delimiter ';'; header on row 1"
    )


def test_log_format_from_the_config_file_is_used(tmp_path: Path) -> None:
    """`log_format = "json"` in the TOML config makes every log line JSON."""
    config = tmp_path / "filedrop.toml"
    config.write_text('log_format = "json"\n', encoding="utf-8")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"nope")
    _, _, err = filedrop(
        "validate",
        str(broken),
        "--mapping",
        str(MAPPINGS),
        "--debug",
        environ={"FILEDROP_CONFIG": str(config)},
        expect=2,
    )
    *logged, sentence = err.splitlines()
    assert [json.loads(line)["level"] for line in logged] == ["error"]
    assert sentence.startswith(f"filedrop: {broken}: ")


def _raise(exc: BaseException) -> Callable[..., NoReturn]:
    def raiser(*_: object, **__: object) -> NoReturn:
        raise exc

    return raiser


def test_an_unexpected_error_is_one_sentence_without_a_class_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug is exit 2 and one sentence with the advice to use --debug; national ids masked."""
    monkeypatch.setattr("filedrop.read.read_table", _raise(RuntimeError("no to 12345678901")))
    source = str(EXAMPLES / "faktura-mars.csv")
    _, _, err = filedrop("validate", source, "--mapping", str(MAPPINGS), environ={}, expect=2)
    assert err == (
        "filedrop: unexpected error: no to 123456*****; run again with --debug to see where it "
        "happened.\n"
    )


def test_an_unexpected_error_with_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --debug the same bug shows the traceback, then the sentence."""
    monkeypatch.setattr("filedrop.read.read_table", _raise(RuntimeError("boom")))
    source = str(EXAMPLES / "faktura-mars.csv")
    _, _, err = filedrop(
        "validate", source, "--mapping", str(MAPPINGS), "--debug", environ={}, expect=2
    )
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1] == "filedrop: unexpected error: boom."


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt is exit code 130 and one line, not a traceback."""
    monkeypatch.setattr("filedrop.read.read_table", _raise(KeyboardInterrupt()))
    source = str(EXAMPLES / "faktura-mars.csv")
    _, _, err = filedrop("validate", source, "--mapping", str(MAPPINGS), environ={}, expect=130)
    assert err == "filedrop: interrupted.\n"


# -- status and resolve: UNKNOWN batches are cheap to settle -----------------------------------


def outcome_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)


def _two_unknown_batches(inbox: Path, sandbox: Sandbox) -> dict[str, str]:
    """Two files whose POSTs were processed but never answered: batches #1 and #2 UNKNOWN."""
    write_erp_csv(inbox / "a.csv", [erp_row("5301"), erp_row("5302")])
    write_erp_csv(inbox / "b.csv", [erp_row("5303")])
    env = run_env(inbox, sandbox.url, FILEDROP_CONCURRENT_FILES="1")
    sandbox.lose_next_response(count=2)
    _, _, err = filedrop("run", environ=env, expect=1)
    # Said where it happens, naming the file, with the command that settles it, not only in the
    # outcome.
    for batch in (1, 2):
        assert (
            f"check with Amili, then run 'filedrop resolve {batch} --sent' or '--not-sent'" in err
        )
    assert re.search(r"\ba\.csv: batch #\d: POST ", err) and re.search(r"\bb\.csv: batch #\d", err)
    return env


def test_status_lists_each_unknown_batch_with_its_file_and_invoice_numbers(
    inbox: Path, sandbox: Sandbox
) -> None:
    """status names, for every UNKNOWN batch, the file and the invoice numbers to look up."""
    env = _two_unknown_batches(inbox, sandbox)
    _, out, _ = filedrop("status", environ=env)
    lines = out.splitlines()
    at = lines.index("Batches whose fate is UNKNOWN (never resent by themselves):")
    assert [line.split("  ")[1:3] for line in lines[at + 1 : at + 5 : 2]] == [
        ["#1", "a.csv"],
        ["#2", "b.csv"],
    ]
    assert lines[at + 2] == "    invoice numbers to look up: 5301, 5302"
    assert lines[at + 4] == "    invoice numbers to look up: 5303"
    assert lines[at + 5] == (
        "Check each batch with Amili, then settle it: filedrop resolve 1 --sent   (or "
        "--not-sent); batches with the same answer may go together, as in filedrop resolve 1 2 "
        "--sent"
    )


def test_status_tells_a_post_whose_sender_is_gone_from_one_awaiting_its_answer(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A batch written down before its POST is "not answered yet" while its process lives; once
    that process is gone no answer will come, and status lists it with the UNKNOWN ones, with
    its numbers to look up: among the pending ones it read as if it were polled (a hostile
    review of operator flows)."""
    from filedrop.journal import Journal

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    target = f"sandbox:{ORG_ID}"
    for name, owner in (
        ("alive.csv", f"{socket.gethostname()}:{os.getpid()}:live"),
        ("gone.csv", f"{socket.gethostname()}:{gone.stdout.strip()}:dead"),
        # Its process ID unknown here, its lease renewed just now: a run in another container
        # of the same host name, perhaps still posting.
        ("container.csv", f"{socket.gethostname()}:{gone.stdout.strip()}:other"),
    ):
        # The dead sender's lease ran out two minutes ago: it renewed it last then.
        at = time.time() - (120 if name == "gone.csv" else 0)
        with Journal(journal_file(inbox), clock=lambda at=at: at) as journal:
            record = journal.claim_file(
                path=inbox / name, sha256=name * 4, target=target, owner=owner, stale_s=60.0
            )
            assert record is not None
            journal.claim_batch(file_id=record.id, target=target, invoice_numbers=[name])
    _, out, _ = filedrop("status", environ=run_env(inbox, sandbox.url))
    # Each named with its file: "#2" alone left the user to find which file it was.
    assert "  #1  alive.csv  (not answered yet)  1 invoice" in out.splitlines()
    lines = out.splitlines()
    unknown = lines.index("Batches whose fate is UNKNOWN (never resent by themselves):")
    assert lines[unknown + 1 : unknown + 3] == [
        "  #2  gone.csv  filedrop stopped while sending batch #2, so whether Amili received it "
        "cannot be told; check with Amili, then run 'filedrop resolve 2 --sent' or '--not-sent'",
        "    invoice numbers to look up: gone.csv",
    ]
    assert lines.index("  #1  alive.csv  (not answered yet)  1 invoice") < unknown
    # What status says can be done: no run is needed first (a run held back by a sending mark
    # never makes the batch UNKNOWN). The live one is left to its run.
    _, _, err = filedrop("resolve", "1", "--sent", environ=run_env(inbox, sandbox.url), expect=2)
    assert err.splitlines()[-1].startswith(
        "filedrop: Batch #1 may still be on its way: the filedrop process sending it "
        "('filedrop status' lists the file) may be alive; resolve it once that has finished, "
        "or its lease has run out (in "
    )
    _, _, err = filedrop(
        "resolve", "3", "--not-sent", environ=run_env(inbox, sandbox.url), expect=2
    )
    assert "filedrop: Batch #3 may still be on its way" in err
    _, out, _ = filedrop("resolve", "2", "--sent", environ=run_env(inbox, sandbox.url))
    assert out.splitlines()[0] == "Batch #2: 1 invoice will never be sent again."
    with Journal(journal_file(inbox)) as journal:
        assert journal.status_counts() == {"SENDING": 2, "SUCCEEDED": 1}


def test_resolve_settles_several_batches_and_rewrites_their_outcomes(
    inbox: Path, sandbox: Sandbox
) -> None:
    """resolve 1 2 --sent: both settled, both outcomes rewritten, status counts no UNKNOWN."""
    env = _two_unknown_batches(inbox, sandbox)
    # Batch 1 named twice, as '#1' and '1': settled once (it was settled, then said to have
    # been settled meanwhile by another process, exit 1; found by a hostile review).
    _, out, _ = filedrop("resolve", "#1", "1", "2", "--sent", environ=env)
    assert out.splitlines() == [
        "Batch #1: 2 invoices will never be sent again.",
        "Batch #2: 1 invoice will never be sent again.",
        f"a.csv: 2 SUCCEEDED; outcome rewritten: {inbox / 'a.outcome.csv'}",
        f"b.csv: 1 SUCCEEDED; outcome rewritten: {inbox / 'b.outcome.csv'}",
    ]
    outcome = outcome_csv(inbox / "a.outcome.csv")
    assert list(outcome["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
    assert list(outcome["outcome_message"]) == ["checked with Amili: received"] * 2
    _, status, _ = filedrop("status", environ=env)
    assert "UNKNOWN" not in status
    assert status.splitlines()[-1] == "Invoices by status: 3 SUCCEEDED"


@pytest.mark.parametrize("case", ["holder lives", "holder gone", "holder and input gone"])
def test_resolve_waits_for_a_live_run_that_holds_the_file(
    inbox: Path, sandbox: Sandbox, case: str
) -> None:
    """A batch of a file a live run is working on is not settled (exit 1): that run would write
    an outcome without the change, and could end the file before released invoices are sent.
    A file whose run is gone is settled and rewritten as any other (or said gone, with its
    input), and is retry."""
    import sqlite3

    env = _two_unknown_batches(inbox, sandbox)
    written = (inbox / "a.outcome.csv").read_bytes()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = os.getpid() if case == "holder lives" else int(gone.stdout)
    with sqlite3.connect(journal_file(inbox)) as db:  # a run holds a.csv again
        db.execute(
            "UPDATE files SET state = 'claimed', owner = ?, heartbeat = ? WHERE name = 'a.csv'",
            (f"{socket.gethostname()}:{pid}:token", time.time()),
        )
    if case == "holder and input gone":
        (inbox / "a.csv").unlink()
    _, out, _ = filedrop(
        "resolve", "1", "--not-sent", environ=env, expect=1 if case == "holder lives" else 0
    )
    said = {
        "holder gone": f"a.csv: 2 NOT_SENT; outcome rewritten: {inbox / 'a.outcome.csv'}",
        "holder and input gone": f"a.csv: the input {inbox / 'a.csv'} is gone or has changed, "
        "so its outcome was not rewritten; the journal keeps the change.",
    }
    if case == "holder lives":
        assert out.splitlines() == [
            "Batch #1: not settled, as a.csv is being processed by a filedrop process right "
            "now; resolve it once that has finished, or stop that process ('filedrop status' "
            "lists the file)."
        ]
    else:
        verdict = (
            "once the same file is dropped again (it is gone)"
            if case == "holder and input gone"
            else "by the next run"
        )
        assert out.splitlines() == [f"Batch #1: 2 invoices will be sent {verdict}.", said[case]]
    if case != "holder gone":
        assert (inbox / "a.outcome.csv").read_bytes() == written
    with sqlite3.connect(journal_file(inbox)) as db:
        states = db.execute("SELECT state FROM files WHERE name = 'a.csv'").fetchall()
        invoices = db.execute(
            "SELECT status FROM invoices WHERE invoice_number = '5301'"
        ).fetchall()
    assert states == [("claimed" if case == "holder lives" else "retry",)]
    assert invoices == [("UNKNOWN" if case == "holder lives" else "NOT_SENT",)]


def test_resolve_settles_nothing_of_a_file_a_run_takes_up_while_it_checks(
    inbox: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run claims a.csv after resolve checked its batches and before it settles them: that
    batch is left as it was and said so (exit 1); the other file's batch is settled."""
    import sqlite3

    from filedrop.journal import Journal, this_owner

    env = _two_unknown_batches(inbox, sandbox)
    settle = Journal.resolve_batch

    def run_claims_first(self: Journal, batch: int, **kwargs: object) -> int | None:
        if batch == 1:
            with sqlite3.connect(journal_file(inbox)) as db:
                db.execute(
                    "UPDATE files SET state = 'claimed', owner = ?, heartbeat = ?"
                    " WHERE name = 'a.csv'",
                    (this_owner(), time.time()),
                )
        return settle(self, batch, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "resolve_batch", run_claims_first)
    _, out, _ = filedrop("resolve", "1", "2", "--sent", environ=env, expect=1)
    assert out.splitlines() == [
        "Batch #1: not settled, as a filedrop process took up its file just now; resolve it "
        "once that has finished.",
        "Batch #2: 1 invoice will never be sent again.",
        f"b.csv: 1 SUCCEEDED; outcome rewritten: {inbox / 'b.outcome.csv'}",
    ]


def test_resolve_leaves_a_file_to_a_run_that_takes_it_up_while_its_outcome_is_rewritten(
    inbox: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is settled and the file free, so a run may claim it while resolve reads the
    input again: the run keeps its claim (its own outcome comes after), never two at work."""
    import sqlite3

    from filedrop import pipeline
    from filedrop.journal import this_owner

    env = _two_unknown_batches(inbox, sandbox)
    rewrite = pipeline.rewrite_outcome

    def run_claims_first(record: object, *args: object, **kwargs: object) -> object:
        with sqlite3.connect(journal_file(inbox)) as db:
            db.execute(
                "UPDATE files SET state = 'claimed', owner = ?, heartbeat = ? WHERE name = 'a.csv'",
                (this_owner(), time.time()),
            )
        return rewrite(record, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "rewrite_outcome", run_claims_first)
    filedrop("resolve", "1", "--not-sent", environ=env)
    with sqlite3.connect(journal_file(inbox)) as db:
        claim = db.execute("SELECT state, owner FROM files WHERE name = 'a.csv'").fetchall()
    assert claim == [("claimed", this_owner())]


def test_resolve_with_the_input_gone_says_so_and_keeps_the_journal_change(
    inbox: Path, sandbox: Sandbox
) -> None:
    """The input was removed: the batch is settled, and the line says the outcome was not."""
    env = _two_unknown_batches(inbox, sandbox)
    (inbox / "b.csv").unlink()
    _, out, _ = filedrop("resolve", "2", "--not-sent", environ=env)
    assert out.splitlines() == [
        "Batch #2: 1 invoice will be sent once the same file is dropped again (it is gone).",
        f"b.csv: the input {inbox / 'b.csv'} is gone or has changed, so its outcome was not "
        "rewritten; the journal keeps the change.",
    ]
    _, status, _ = filedrop("status", environ=env)
    assert status.splitlines()[-1] == "Invoices by status: 1 NOT_SENT, 2 UNKNOWN"


def test_resolve_without_a_mapping_leaves_the_outcome_to_the_next_run_which_writes_it(
    inbox: Path, sandbox: Sandbox
) -> None:
    """No mapping set for resolve: the batch is settled, and the next run of the file (the same
    bytes) takes it up again and writes its outcome, sending nothing again."""
    env = _two_unknown_batches(inbox, sandbox)
    without_mapping = {k: v for k, v in env.items() if k != "FILEDROP_MAPPING"}
    _, out, _ = filedrop("resolve", "1", "--sent", environ=without_mapping)
    assert out.splitlines()[1] == (
        "a.csv: its outcome was not rewritten, since no mapping is set (FILEDROP_MAPPING); the "
        "journal keeps the change, and the next run of the file writes it."
    )
    filedrop("run", environ=env)  # b.csv, done and unchanged, is skipped
    assert list(outcome_csv(inbox / "a.outcome.csv")["outcome_status"]) == ["SUCCEEDED"] * 2
    assert sandbox.counters().invoice_numbers_repeated == ()


def test_resolve_with_an_inbox_settles_only_that_inbox_batches(
    inbox: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """--inbox names an inbox whose folder does not hold the batch's file: one sentence naming
    the file and its folder, exit 2, and nothing settled."""
    env = _two_unknown_batches(inbox, sandbox)
    other = tmp_path / "other"
    other.mkdir()
    config = tmp_path / "two.toml"
    config.write_text(
        f'state = "{journal_file(inbox)}"\n'
        f'[[inbox]]\nname = "here"\nfolder = "{inbox}"\nmapping = "{env["FILEDROP_MAPPING"]}"\n'
        f'[[inbox]]\nname = "there"\nfolder = "{other}"\nmapping = "{env["FILEDROP_MAPPING"]}"\n',
        encoding="utf-8",
    )
    environ = {k: v for k, v in env.items() if k not in ("FILEDROP_INBOX", "FILEDROP_MAPPING")}
    environ.pop("FILEDROP_STATE")
    args = ("resolve", "1", "--sent", "--config", str(config))
    _, _, err = filedrop(*args, "--inbox", "there", environ=environ, expect=2)
    assert err.splitlines()[-1] == (
        f"filedrop: Batch #1 is of a.csv in {inbox}, which is not the folder of inbox there; "
        "name its own inbox with --inbox."
    )
    _, out, _ = filedrop(*args, "--inbox", "here", environ=environ)
    assert out.splitlines()[1] == (
        f"a.csv: 2 SUCCEEDED; outcome rewritten: {inbox / 'a.outcome.csv'}"
    )


def test_resolve_checks_every_batch_before_settling_any(inbox: Path, sandbox: Sandbox) -> None:
    """A wrong number among several: one sentence, exit 2, and nothing settled."""
    env = _two_unknown_batches(inbox, sandbox)
    _, _, err = filedrop("resolve", "1", "9", "--sent", environ=env, expect=2)
    assert err.splitlines()[-1] == (
        f"filedrop: No batch \"9\" in {journal_file(inbox)}; 'filedrop status' lists them."
    )
    _, status, _ = filedrop("status", environ=env)
    assert status.splitlines()[-1] == "Invoices by status: 3 UNKNOWN"


def test_resolve_names_a_hostile_batch_reference_in_one_short_sentence(
    inbox: Path, sandbox: Sandbox
) -> None:
    """5,000 digits, an Arabic-Indic digit and a terminal escape: each is no batch, said in one
    short escaped sentence, not a crash."""
    env = _two_unknown_batches(inbox, sandbox)
    for ref, named in [
        ("9" * 5000, f"{'9' * 40}... (5,000 characters)"),
        ("\u0663", "\u0663"),
        ("\x1b[31m1", "\\x1b[31m1"),
    ]:
        _, _, err = filedrop("resolve", ref, "--sent", environ=env, expect=2)
        assert err.splitlines()[-1] == (
            f"filedrop: No batch \"{named}\" in {journal_file(inbox)}; 'filedrop status' lists "
            "them."
        )


def test_resolve_shows_a_file_named_with_control_characters_escaped(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A name holding a terminal escape and a bidi override: the line saying its outcome was
    rewritten shows them escaped, as status does, never as codes the terminal obeys."""
    name = "m\x1b[31mars\u202e.csv"
    write_erp_csv(inbox / name, [erp_row("5301")])
    env = run_env(inbox, sandbox.url)
    sandbox.lose_next_response(count=1)
    filedrop("run", environ=env, expect=1)
    _, out, _ = filedrop("resolve", "1", "--not-sent", environ=env)
    shown = "m\\x1b[31mars\\u202e"
    assert out.splitlines()[1] == (
        f"{shown}.csv: 1 NOT_SENT; outcome rewritten: {inbox}/{shown}.outcome.csv"
    )


def test_national_ids_are_masked_in_the_run_summary_validate_and_status(
    inbox: Path, sandbox: Sandbox
) -> None:
    """A file named after a person and a bad e-mail holding the id: masked to the real length
    wherever shown, while batch ids (UUIDs) stay whole."""
    person = national_id(3)
    masked = person[:6] + "*****"
    name = f"kunde-{person}.csv"
    source = write_erp_csv(
        inbox / name, [erp_row("5401"), erp_row("5402", **{"E-post": f"{person}(at)x.no"})]
    )
    env = run_env(inbox, sandbox.url)
    _, out, _ = filedrop("validate", str(source), environ=env, expect=1)
    assert out.splitlines()[0].startswith(f"kunde-{masked}.csv: mapping Norwegian ERP export; ")
    assert out.splitlines()[-1] == (
        f'  error: row 3: E-post "{masked}(at)x.no" is not an email address'
    )
    _, out, _ = filedrop("run", environ=env, expect=1)
    assert out.splitlines()[1] == f"kunde-{masked}.csv: 1 INVALID, 1 SUCCEEDED"
    assert person not in out
    _, status, _ = filedrop("status", environ=env)
    assert f"kunde-{masked}.csv  done  1 INVALID, 1 SUCCEEDED" in status
    assert person not in status


def test_validate_shows_a_repeated_ten_digit_invoice_number_whole(tmp_path: Path) -> None:
    """1503247635 (a date and a sequence) looks like a D-number to the mask; in the line saying
    it repeats, it is the number the user looks up, so it is shown whole. The line says
    duplicate, and validate exits 0, as run does for a DUPLICATE row (it said error, exit 1,
    while its help gives 1 for an invalid row)."""
    source = write_erp_csv(tmp_path / "f.csv", [erp_row("1503247635"), erp_row("1503247635")])
    _, out, _ = filedrop(
        "validate", str(source), environ=run_env(tmp_path, "http://127.0.0.1:9"), expect=0
    )
    assert out.splitlines()[-1] == (
        "  duplicate: row 3: invoice number 1503247635 already appears on row 2"
    )


def test_validate_says_duplicate_only_of_the_repeat_not_of_the_rows_other_problems(
    tmp_path: Path,
) -> None:
    """A repeated row with an empty amount too: the repeat is said as duplicate, the amount as
    the error it is (every problem of the row was labelled duplicate)."""
    source = write_erp_csv(tmp_path / "f.csv", [erp_row("2401"), erp_row("2401", Beløp="")])
    _, out, _ = filedrop(
        "validate", str(source), environ=run_env(tmp_path, "http://127.0.0.1:9"), expect=0
    )
    lines = [line for line in out.splitlines() if "row 3" in line]
    assert any(line.startswith("  duplicate: row 3: invoice number 2401") for line in lines)
    assert any(line.startswith("  error: row 3: Beløp") for line in lines), lines


def test_an_inbox_this_user_cannot_write_stops_run_in_one_sentence(tmp_path: Path) -> None:
    """As in a container whose bind-mounted inbox belongs to another user: exit 2 at start, one
    sentence naming the folder and the user, nothing sent. The folder is made immutable
    (chattr +i), which even root cannot write to."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_erp_csv(inbox / "a.csv", [erp_row("81001")])
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        subprocess.run(["chattr", "+i", str(inbox)], check=True)
        try:
            _, _, err = filedrop("run", environ=run_env(inbox, sandbox.url), expect=2)
        finally:
            subprocess.run(["chattr", "-i", str(inbox)], check=True)
        assert err == (
            f"filedrop: FILEDROP_INBOX {inbox} is not writable by this user (uid {os.getuid()}), "
            "and outcomes are written next to the inputs; give it that user or group (e.g. chown "
            f"{os.getuid()} {inbox}). Nothing was sent.\n"
        )
        assert sandbox.counters().posts == 0


def test_an_error_naming_a_file_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    """The error boundary escapes what it prints: a newline in a file's name cannot start a
    second, forged line on stderr."""
    source = tmp_path / "bad\nfiledrop: all good.xlsx"
    source.write_text("hello,world\n")
    code, _, err = filedrop(
        "validate",
        str(source),
        "--mapping",
        str(MAPPINGS / "norwegian-erp.toml"),
        environ={},
        expect=2,
    )
    assert code == 2
    assert err.splitlines() == [
        f"filedrop: {tmp_path}/bad\\nfiledrop: all good.xlsx: the file is text, not an Excel "
        "workbook; if it is CSV, rename it to .csv"
    ]


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_130() -> None:
    """A Ctrl-C in the first half second of a command, while pandas and the rest load, printed
    a traceback and exit 1. Here a real SIGINT arrives in the middle of that import."""
    code = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'filedrop.cli':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from filedrop.__main__ import console\n"
        "console()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "status"], check=False, capture_output=True, timeout=60
    )
    assert (done.returncode, done.stderr, done.stdout) == (130, b"filedrop: interrupted.\n", b"")


def test_the_command_leaves_at_once_with_everything_written_and_nothing_left_running(
    tmp_path: Path,
    short_temp: Path,
) -> None:
    """``python -m filedrop`` ends without the interpreter's teardown (``cli.console``): what it
    printed to a file or a pipe is whole, its exit code is main's, and the workbook reader's
    server process does not outlive it, nor the folder holding its socket (a cron job's runs
    left one each in /tmp). A reader that stops early (``| head``) is no error."""
    marker = f"filedrop-test-{os.getpid()}-{time.monotonic_ns()}"
    # Buffered, as the command's output is unless PYTHONUNBUFFERED says otherwise.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["LEFT_BEHIND_MARKER"] = marker
    env["TMPDIR"] = str(short_temp)
    workbook = EXAMPLES / "apne-poster-mars.xlsx"
    command = [sys.executable, "-m", "filedrop", "validate", str(workbook)]
    command += ["--mapping", str(MAPPINGS / "example.toml"), "--json"]
    with (tmp_path / "out.json").open("wb") as out:
        done = subprocess.run(
            command, check=False, env=env, stdout=out, stderr=subprocess.PIPE, timeout=60
        )
    assert done.returncode == 1, done.stderr  # the example has rows for a person to look at
    assert len(json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))) > 0
    head = subprocess.run(
        f"{subprocess.list2cmdline(command)} | head -c 1", shell=True, check=False, env=env,
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert head.stdout == b"[" and head.stderr == b""

    def still_running() -> list[str]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        return found

    deadline = time.monotonic() + 5
    while still_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert still_running() == []
    assert list(short_temp.iterdir()) == []


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("4", "4")])
def test_numpy_starts_no_blas_threads_unless_the_user_asks(
    given: str | None, expected: str
) -> None:
    """filedrop does no linear algebra: importing it keeps OpenBLAS from starting threads (CPU
    on every run), and leaves a value the user set as it is."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    script = (
        "import filedrop.cli, numpy, os\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    value, threads = done.stdout.split()
    assert value == expected
    if given is None:
        assert threads == "1"  # this process's own thread alone
