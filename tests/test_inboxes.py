"""Many inboxes in one config: one daemon and one run serve them all, each inbox with its own
organisation and token, and one inbox's broken setup never stops the others."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from builders import config_head, erp_row, filedrop, write_erp_csv
from conftest import (
    MAPPINGS,
    ORG_ID,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    FakeTime,
    Logged,
    wait_until,
)

from filedrop.errors import ConfigError
from filedrop.pipeline import FileReport
from filedrop.runner import combined_exit_code, run_inboxes
from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.settings import load_settings
from filedrop.states import ExitCode, FileState
from filedrop.watch import watch_through_outages

pytestmark = pytest.mark.timeout(120)

OTHER_ORG_ID = "9b2e6a44-3c1d-4f7a-8e5b-0d6c2f1a7b93"

#: Each inbox's drops: file name -> invoice numbers (distinct across inboxes, so that a number
#: at the wrong organisation shows).
DROPS = {
    "acme": {"mars.csv": ["1001", "1002"], "april.csv": ["1003"]},
    "beta": {"faktura.csv": ["2001", "2002", "2003"], "mai.csv": ["2004"]},
    "gamma": {"juni.csv": ["3001"]},
}


@pytest.fixture
def strict_sandbox() -> Iterator[Sandbox]:
    """A sandbox that gives a token only for the test client's id and secret."""
    options = SandboxOptions(
        client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET, delay_s=(0, 0), seed=1
    )
    with Sandbox(options) as running:
        yield running


def drop_files(tmp_path: Path) -> dict[str, Path]:
    """Each inbox's folder, with its drops in it."""
    folders = {}
    for name, files in DROPS.items():
        folder = tmp_path / name
        folder.mkdir()
        for file, numbers in files.items():
            write_erp_csv(folder / file, [erp_row(number) for number in numbers])
        folders[name] = folder
    return folders


def write_config(tmp_path: Path, sandbox_url: str, folders: dict[str, Path]) -> Path:
    """Three inboxes on one sandbox: acme at one organisation (its secret in a file), beta at
    another, and gamma with credentials the sandbox refuses."""
    secret = tmp_path / "acme-secret"
    secret.write_text(TEST_CLIENT_SECRET + "\n", encoding="utf-8")
    config = tmp_path / "filedrop.toml"
    head = config_head(
        sandbox_url,
        tmp_path / "journal.db",
        org_id=None,
        client_secret=None,
        stability_s=0,
        poll_initial_s=0.05,
        poll_max_interval_s=0.2,
        poll_timeout_s=10,
    )
    config.write_text(
        head
        + f"""
[[inbox]]
name = "acme"
folder = "{folders["acme"]}"
org_id = "{ORG_ID}"
client_secret_file = "{secret}"

[[inbox]]
name = "beta"
folder = "{folders["beta"]}"
org_id = "{OTHER_ORG_ID}"
client_secret = "{TEST_CLIENT_SECRET}"

[[inbox]]
name = "gamma"
folder = "{folders["gamma"]}"
org_id = "{OTHER_ORG_ID}"
client_id = "gamma-client"
client_secret = "not-the-secret"
retry_initial_s = 600
""",
        encoding="utf-8",
    )
    return config


def outcome_statuses(path: Path) -> list[str]:
    outcome = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="cp1252")
    return list(outcome["outcome_status"])


def assert_good_inboxes_done(folders: dict[str, Path], sandbox: Sandbox) -> None:
    """Every file of acme and beta has an all-SUCCEEDED outcome, each invoice reached its own
    inbox's organisation once, and nothing of gamma was sent."""
    for name in ("acme", "beta"):
        for file, numbers in DROPS[name].items():
            outcome = folders[name] / file.replace(".csv", ".outcome.csv")
            assert outcome_statuses(outcome) == ["SUCCEEDED"] * len(numbers)
    assert not list(folders["gamma"].glob("*.outcome.*"))
    by_org = {org: sorted(numbers) for org, numbers in sandbox.received_by_org().items()}
    assert by_org == {
        ORG_ID: ["1001", "1002", "1003"],
        OTHER_ORG_ID: ["2001", "2002", "2003", "2004"],
    }
    assert sandbox.counters().invoice_numbers_repeated == ()


def gamma_refused(url: str) -> str:
    """The one sentence that reports gamma's refused credentials."""
    return (
        "Amili refused the credentials of client id 'gamma-client' (HTTP 401 on POST "
        f"{url}/token, invalid_client); check FILEDROP_CLIENT_ID and FILEDROP_CLIENT_SECRET (or "
        "FILEDROP_CLIENT_SECRET_FILE). Nothing was sent"
    )


class DoneFiles:
    """The files a daemon finished (DONE), in the order their reports came, from whichever
    thread reports them: pass it as ``on_report``."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self._lock = threading.Lock()

    def __call__(self, report: FileReport) -> None:
        with self._lock:
            if report.state is FileState.DONE:
                self.paths.append(report.path)

    def __len__(self) -> int:
        with self._lock:
            return len(self.paths)


def test_one_daemon_serves_three_inboxes_and_reports_the_one_with_wrong_credentials(
    tmp_path: Path, strict_sandbox: Sandbox, logged: Logged
) -> None:
    """One watch daemon, three inboxes, two organisations: every file of the two good inboxes
    done at its own organisation, the inbox with refused credentials logged and retried on the
    outage backoff, nothing sent twice."""
    folders = drop_files(tmp_path)
    settings = load_settings(
        config_file=write_config(tmp_path, strict_sandbox.url, folders), environ={}
    )
    stop = threading.Event()
    gamma_waits = threading.Event()
    done = DoneFiles()

    def pause(seconds: float) -> bool:
        gamma_waits.set()
        return stop.wait(seconds)

    daemon = threading.Thread(
        target=watch_through_outages,
        args=(settings,),
        kwargs={"stop": stop, "pause": pause, "on_report": done},
    )
    daemon.start()
    try:
        wait_until(lambda: len(done) == 4, what="the good inboxes' four files", timeout_s=60)
        assert gamma_waits.wait(timeout=60)
    finally:
        stop.set()
        daemon.join(timeout=30)
    assert not daemon.is_alive()
    assert sorted(path.name for path in done.paths) == [
        "april.csv",
        "faktura.csv",
        "mai.csv",
        "mars.csv",
    ]
    assert_good_inboxes_done(folders, strict_sandbox)
    refused = [m for m in logged.messages if m.startswith("inbox gamma: ")]
    assert refused == [f"inbox gamma: {gamma_refused(strict_sandbox.url)}; trying again in 600 s"]


def test_an_inbox_folder_replaced_by_a_link_to_another_inbox_takes_none_of_its_files(
    tmp_path: Path, strict_sandbox: Sandbox, logged: Logged
) -> None:
    """The config check refuses two inboxes of one folder at start. Replaced by a link to
    acme's folder while watch ran, beta's folder took acme's files and sent them again to
    beta's organisation, writing its outcomes over acme's. Now beta takes nothing while its
    folder leads there, and says so once; acme goes on; back to a folder of its own, beta
    takes its files again."""
    folders = drop_files(tmp_path)
    settings = load_settings(
        config_file=write_config(tmp_path, strict_sandbox.url, folders), environ={}
    )
    stop = threading.Event()
    done = DoneFiles()
    daemon = threading.Thread(
        target=watch_through_outages,
        args=(settings,),
        kwargs={"stop": stop, "pause": stop.wait, "on_report": done},
    )
    daemon.start()
    beta, kept = folders["beta"], tmp_path / "beta.kept"
    try:
        wait_until(lambda: len(done) == 4, what="the four files", timeout_s=30)
        beta.rename(kept)
        beta.symlink_to(folders["acme"], target_is_directory=True)
        wait_until(lambda: logged.count("the inbox folder ") == 1, what="the lent folder said")
        write_erp_csv(folders["acme"] / "juli.csv", [erp_row("1004")])
        wait_until(lambda: len(done) == 5, what="juli.csv by acme", timeout_s=30)
        time.sleep(1.0)  # beta's turns, that would have taken juli.csv and the others
        beta.unlink()
        kept.rename(beta)
        write_erp_csv(beta / "august.csv", [erp_row("2005")])
        wait_until(lambda: len(done) == 6, what="august.csv by beta", timeout_s=30)
    finally:
        stop.set()
        daemon.join(timeout=30)
    assert sorted(path.name for path in done.paths[4:]) == ["august.csv", "juli.csv"]
    by_org = {org: sorted(numbers) for org, numbers in strict_sandbox.received_by_org().items()}
    assert by_org == {
        ORG_ID: ["1001", "1002", "1003", "1004"],
        OTHER_ORG_ID: ["2001", "2002", "2003", "2004", "2005"],
    }
    assert strict_sandbox.counters().invoice_numbers_repeated == ()
    said = [m for m in logged.messages if m.startswith("the inbox folder ")]
    assert said[0] == (
        f'the inbox folder {beta} leads now to {folders["acme"]}, inbox "acme"\'s folder; no '
        "file of it is taken until it is a folder of this inbox's own again (it was replaced by "
        "a link while filedrop ran?)"
    )
    assert said[1] == f"the inbox folder {beta} is its own again; taking its files"


def test_each_inbox_counts_in_the_metrics_under_its_own_name(
    tmp_path: Path, strict_sandbox: Sandbox
) -> None:
    """`run` over three inboxes writes one metrics file in which each inbox's rows are labelled
    with the name the config gives it."""
    from prometheus_client.parser import text_string_to_metric_families

    folders = drop_files(tmp_path)
    config = write_config(tmp_path, strict_sandbox.url, folders)
    target = tmp_path / "filedrop.prom"
    filedrop(
        "run", "--config", str(config), environ={"FILEDROP_METRICS_FILE": str(target)}, expect=2
    )
    rows = {
        (sample.labels["inbox"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(target.read_text(encoding="utf-8"))
        for sample in family.samples
        if sample.name == "filedrop_rows_total" and sample.value
    }
    assert rows == {("acme", "SUCCEEDED"): 3.0, ("beta", "SUCCEEDED"): 4.0}


def test_run_finishes_the_good_inboxes_and_exits_2_for_the_one_with_wrong_credentials(
    tmp_path: Path, strict_sandbox: Sandbox
) -> None:
    """`filedrop run` over the same config: acme and beta done at their own organisations, gamma
    reported under its name, exit 2 (fix the setup); a second run sends nothing again."""
    folders = drop_files(tmp_path)
    config = write_config(tmp_path, strict_sandbox.url, folders)
    _, out, err = filedrop("run", "--config", str(config), environ={}, expect=2)
    gamma = f"  not run: {gamma_refused(strict_sandbox.url)}."
    assert out.splitlines() == [
        f"Inbox acme ({folders['acme']}):",
        "  SANDBOX run: nothing was sent to Amili.",
        "  april.csv: 1 SUCCEEDED",
        f"    outcome: {folders['acme'] / 'april.outcome.csv'}",
        "  mars.csv: 2 SUCCEEDED",
        f"    outcome: {folders['acme'] / 'mars.outcome.csv'}",
        f"Inbox beta ({folders['beta']}):",
        "  SANDBOX run: nothing was sent to Amili.",
        "  faktura.csv: 3 SUCCEEDED",
        f"    outcome: {folders['beta'] / 'faktura.outcome.csv'}",
        "  mai.csv: 1 SUCCEEDED",
        f"    outcome: {folders['beta'] / 'mai.outcome.csv'}",
        f"Inbox gamma ({folders['gamma']}):",
        gamma,
    ]
    assert f"ERROR   inbox gamma: {gamma_refused(strict_sandbox.url)}.\n" in err
    assert_good_inboxes_done(folders, strict_sandbox)

    _, again, _ = filedrop("run", "--config", str(config), environ={}, expect=2)
    assert again.splitlines()[2:4] == [
        "  april.csv: skipped (already processed)",
        "  mars.csv: skipped (already processed)",
    ]
    assert_good_inboxes_done(folders, strict_sandbox)


def one_export_in_two_inboxes(
    tmp_path: Path, url: str, numbers: list[str], **settings: object
) -> Path:
    """The same jan.csv (an invoice each of ``numbers``) in inboxes a and b of one organisation
    on the sandbox at ``url``; returns their config, with ``settings`` on top."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_erp_csv(tmp_path / name / "jan.csv", [erp_row(number) for number in numbers])
    config = tmp_path / "filedrop.toml"
    polls = {"poll_initial_s": 0.05, "poll_max_interval_s": 0.1}
    head = config_head(url, tmp_path / "journal.db", stability_s=0, **(polls | settings))
    inboxes = "".join(
        f'[[inbox]]\nname = "{name}"\nfolder = "{tmp_path / name}"\n' for name in ("a", "b")
    )
    config.write_text(head + inboxes, encoding="utf-8")
    return config


def test_one_export_in_two_inboxes_of_one_organisation_at_once_is_sent_from_one(
    tmp_path: Path,
) -> None:
    """Two inboxes of one organisation (one client, two SFTP users) get the same export at the
    same moment. Every inbox of a process is the same owner in the journal, whose claim lets an
    owner take its own back: both inboxes claimed the file, and one's outcome kept rows PENDING
    for good, credited with the other's batches. Now one sends it, and the other waits for it,
    then says where it went."""
    numbers = [str(7500 + k) for k in range(20)]
    rows = [erp_row(number) for number in numbers]
    with Sandbox(SandboxOptions(delay_s=(0.05, 0.05), seed=1)) as slow:
        config = one_export_in_two_inboxes(tmp_path, slow.url, numbers, batch_size=4)
        _, out, err = filedrop("run", "--config", str(config), environ={})
        assert sorted(slow.received_by_org()[ORG_ID]) == numbers
        assert slow.counters().invoice_numbers_repeated == ()
    outcomes = [path for name in ("a", "b") for path in (tmp_path / name).glob("*.outcome.*")]
    assert len(outcomes) == 1, out
    assert outcome_statuses(outcomes[0]) == ["SUCCEEDED"] * len(rows)
    said = f"already processed as {outcomes[0].parent / 'jan.csv'}; its outcome is {outcomes[0]}"
    assert f"jan.csv: skipped ({said})" in out
    warned = [line for line in err.splitlines() if "WARNING" in line]
    assert [line.split("WARNING", 1)[1].strip() for line in warned] == [
        f"inbox {'b' if outcomes[0].parent.name == 'a' else 'a'}: jan.csv: {said}; these very "
        "bytes were processed there, and nothing is sent again"
    ]


def test_an_export_waiting_in_one_inbox_is_left_to_it_by_a_copy_in_another(
    tmp_path: Path,
) -> None:
    """The first inbox's copy ends the run waiting for its batches. The journal lets anyone take
    up a file left waiting (one moved to another inbox is finished from there), and the second
    inbox's copy took it up while the first still held it: the record moved to the copy, and
    the first's outcome kept its rows PENDING for good. Now the copy leaves it to the first,
    which finishes it in the next run; the copy then says where it went."""
    numbers = [str(7600 + k) for k in range(6)]
    with Sandbox(SandboxOptions(delay_s=(2, 2), seed=1)) as slow:
        config = one_export_in_two_inboxes(
            tmp_path, slow.url, numbers, batch_size=3, poll_timeout_s=0.3
        )
        _, first, _ = filedrop("run", "--config", str(config), environ={}, expect=3)
        (outcome,) = [p for name in ("a", "b") for p in (tmp_path / name).glob("*.outcome.*")]
        assert outcome_statuses(outcome) == ["PENDING"] * len(numbers)
        sender, copy = outcome.parent, tmp_path / ("b" if outcome.parent.name == "a" else "a")
        assert (
            f"jan.csv: skipped (being sent from {sender / 'jan.csv'}, the same export, not "
            "finished there; a run of that folder's inbox finishes it and writes its outcome "
            "there)"
        ) in first
        # The copy's inbox alone: nothing of it went yet, so not 0.
        filedrop("run", "--config", str(config), "--inbox", copy.name, environ={}, expect=3)
        time.sleep(2)  # the batches end
        filedrop("run", "--config", str(config), environ={})
        assert outcome_statuses(outcome) == ["SUCCEEDED"] * len(numbers)
        assert not list(copy.glob("*.outcome.*"))
        _, third, _ = filedrop("run", "--config", str(config), environ={})
        assert f"jan.csv: skipped (already processed as {sender / 'jan.csv'}; " in third
        assert sorted(slow.received_by_org()[ORG_ID]) == numbers
        assert slow.counters().invoice_numbers_repeated == ()


def test_a_file_waiting_for_another_inbox_of_the_process_is_let_go_at_a_stop() -> None:
    """The second inbox waits while the first has the export in hand; a stop ends the wait
    with nothing taken, as a stop before a file is claimed does."""
    from filedrop.pipeline import _InHand

    in_hand, stop, key = _InHand(), threading.Event(), ("sandbox:org", "jan.csv", "ab12")
    with in_hand.one_at_a_time(key, stop) as first:
        assert first
        waited: list[bool] = []

        def second() -> None:
            with in_hand.one_at_a_time(key, stop) as ours:
                waited.append(ours)

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        assert waited == []  # still waiting for the first
        stop.set()
        thread.join(timeout=5)
        assert waited == [False]
    with in_hand.one_at_a_time(key, threading.Event()) as again:
        assert again  # the first let it go


def test_text_log_lines_about_a_file_name_its_inbox_once(
    tmp_path: Path, strict_sandbox: Sandbox
) -> None:
    """Two clients may both drop a ``mars.csv``: each text line about a file starts with its
    inbox's name, and a line that names the inbox already does not name it twice."""
    folders = drop_files(tmp_path)
    config = write_config(tmp_path, strict_sandbox.url, folders)
    _, _, err = filedrop("run", "--config", str(config), environ={}, expect=2)
    messages = [line.split(maxsplit=2)[2] for line in err.splitlines()]  # after time and level
    assert "inbox acme: mars.csv: claimed" in messages
    assert "inbox acme: mars.csv: 2 invoices in 1 batch to send" in messages
    assert "inbox beta: obtained an access token valid for 3600 s" in messages
    assert "inbox beta: faktura.csv: 3 SUCCEEDED; outcome faktura.outcome.csv" in messages
    assert f"inbox gamma: {gamma_refused(strict_sandbox.url)}." in messages
    assert not [m for m in messages if m.startswith(("mars.csv", "faktura.csv", "april.csv"))]
    assert not [m for m in messages if m.count("inbox acme: ") > 1]


def test_one_inbox_alone_exits_as_that_inbox_went(tmp_path: Path, strict_sandbox: Sandbox) -> None:
    """`run --inbox beta` processes beta alone, and exits 0: gamma's credentials are not its
    concern."""
    folders = drop_files(tmp_path)
    config = write_config(tmp_path, strict_sandbox.url, folders)
    _, out, _ = filedrop("run", "--config", str(config), "--inbox", "beta", environ={})
    assert out.splitlines()[0] == f"Inbox beta ({folders['beta']}):"
    by_org = {org: sorted(numbers) for org, numbers in strict_sandbox.received_by_org().items()}
    assert by_org == {OTHER_ORG_ID: ["2001", "2002", "2003", "2004"]}


def test_a_missing_folder_a_broken_mapping_and_an_unreachable_api_stop_only_their_inbox(
    tmp_path: Path, sandbox: Sandbox, logged: Logged
) -> None:
    """Each broken inbox gets its own sentence and code; the good one finishes all the same, and
    the run exits 2 (setup beats Amili being out of reach)."""
    good = tmp_path / "good"
    good.mkdir()
    write_erp_csv(good / "mars.csv", [erp_row("4001")])
    broken_mapping = tmp_path / "broken.toml"
    broken_mapping.write_text('name = "broken"\n[invoice\n', encoding="utf-8")
    mapped = tmp_path / "mapped"
    mapped.mkdir()
    closed = Sandbox()
    closed.start()
    closed.stop()  # a port where nothing listens
    unreachable = tmp_path / "unreachable"
    unreachable.mkdir()
    config = tmp_path / "filedrop.toml"
    head = config_head(sandbox.url, tmp_path / "journal.db", stability_s=0, poll_initial_s=0.05)
    config.write_text(
        head
        + f"""
[[inbox]]
name = "good"
folder = "{good}"

[[inbox]]
name = "missing"
folder = "{tmp_path / "nowhere"}"

[[inbox]]
name = "mapped"
folder = "{mapped}"
mapping = "{broken_mapping}"

[[inbox]]
name = "unreachable"
folder = "{unreachable}"
auth_url = "{closed.url}"
api_url = "{closed.url}"
""",
        encoding="utf-8",
    )
    time = FakeTime()
    runs = run_inboxes(
        load_settings(config_file=config, environ={}), clock=time.clock, sleep=time.sleep
    )
    by_name = {run.settings.name: run for run in runs}
    assert list(by_name) == ["good", "missing", "mapped", "unreachable"]
    assert by_name["good"].report is not None
    assert [f.counts for f in by_name["good"].report.files] == [{"SUCCEEDED": 1}]
    assert by_name["missing"].failure == (
        f'{config}: inbox "missing": folder {tmp_path / "nowhere"} is not a folder; create it or '
        "fix the path."
    )
    assert by_name["mapped"].failure is not None
    assert by_name["mapped"].failure.startswith(f"{broken_mapping}: ")
    # Each log line names its inbox once: the config error about "missing" names it already.
    assert by_name["missing"].failure in logged.messages
    assert f"inbox mapped: {by_name['mapped'].failure}" in logged.messages
    assert by_name["unreachable"].failure is not None
    assert by_name["unreachable"].failure.startswith("Amili was not available for POST ")
    assert [run.exit_code for run in runs] == [
        ExitCode.OK, ExitCode.SETUP, ExitCode.SETUP, ExitCode.UNFINISHED
    ]  # fmt: skip
    assert sandbox.received_by_org() == {ORG_ID: ["4001"]}


@pytest.mark.parametrize(
    ("codes", "combined"),
    [
        ([ExitCode.OK, ExitCode.UNFINISHED], ExitCode.UNFINISHED),
        ([ExitCode.UNFINISHED, ExitCode.ATTENTION], ExitCode.ATTENTION),
        ([ExitCode.ATTENTION, ExitCode.SETUP, ExitCode.OK], ExitCode.SETUP),
        ([ExitCode.OK, ExitCode.OK], ExitCode.OK),
    ],
)
def test_the_inboxes_exit_codes_combine_by_the_usual_precedence(
    codes: list[ExitCode], combined: ExitCode
) -> None:
    """Several inboxes' codes make one: the first of 2, 1, 3, 0 that any inbox has."""
    assert combined_exit_code(codes) == combined


# -- status and validate take --inbox NAME ------------------------------------------------------


def test_status_inbox_shows_only_that_inbox(tmp_path: Path, strict_sandbox: Sandbox) -> None:
    """`status --inbox beta` names beta, its folder and organisation, and lists only its files."""
    folders = drop_files(tmp_path)
    config = write_config(tmp_path, strict_sandbox.url, folders)
    filedrop("run", "--config", str(config), environ={}, expect=2)
    _, out, _ = filedrop("status", "--config", str(config), "--inbox", "beta", environ={})
    lines = out.splitlines()
    assert lines[:3] == [
        f"Journal: {tmp_path / 'journal.db'}",
        f"Inbox beta: {folders['beta']}, sandbox, organisation {OTHER_ORG_ID}",
        "Recent files:",
    ]
    assert sorted(line.split("  ")[2:] for line in lines[3:5]) == [
        ["faktura.csv", "done", "3 SUCCEEDED"],
        ["mai.csv", "done", "1 SUCCEEDED"],
    ]
    assert lines[5] == "Rows by status: 4 SUCCEEDED"


def test_status_of_a_config_names_each_files_inbox(tmp_path: Path, strict_sandbox: Sandbox) -> None:
    """`status --config` over every inbox: each file is named with its inbox, so two clients'
    files of one name are told apart."""
    folders = drop_files(tmp_path)
    write_erp_csv(folders["acme"] / "faktura.csv", [erp_row("1009")])  # beta has one too
    config = write_config(tmp_path, strict_sandbox.url, folders)
    filedrop("run", "--config", str(config), environ={}, expect=2)
    _, out, _ = filedrop("status", "--config", str(config), environ={})
    files = sorted(line.split("  ")[2] for line in out.splitlines() if line.startswith("  20"))
    assert files == [
        "acme: april.csv",
        "acme: faktura.csv",
        "acme: mars.csv",
        "beta: faktura.csv",
        "beta: mai.csv",
    ]


def test_an_unknown_inbox_name_is_one_sentence_listing_the_names(
    tmp_path: Path, strict_sandbox: Sandbox
) -> None:
    """`status --inbox nope` says which inboxes the config has."""
    config = write_config(tmp_path, strict_sandbox.url, drop_files(tmp_path))
    _, _, err = filedrop("status", "--config", str(config), "--inbox", "nope", environ={}, expect=2)
    assert err == (
        f'filedrop: --inbox is "nope", which names none of the inboxes in {config} '
        "(acme, beta, gamma).\n"
    )


def test_validate_inbox_takes_that_inbox_mapping(tmp_path: Path) -> None:
    """`validate --inbox NAME FILE` maps the file with that inbox's mapping, not the top level's."""
    own = tmp_path / "own.toml"
    own.write_text((MAPPINGS / "norwegian-erp.toml").read_text(encoding="utf-8"), encoding="utf-8")
    export = write_erp_csv(tmp_path / "eksport.csv", [erp_row("5001"), erp_row("5002")])
    config = tmp_path / "filedrop.toml"
    config.write_text(
        f"""\
mapping = "{tmp_path / "elsewhere"}"

[[inbox]]
name = "acme"
folder = "{tmp_path}"
mapping = "{own}"
""",
        encoding="utf-8",
    )
    _, out, _ = filedrop(
        "validate", str(export), "--config", str(config), "--inbox", "acme", environ={}
    )
    assert out.splitlines()[1] == "2 rows, 2 invoices to send, 2 rows valid, 0 invalid, 0 duplicate"
    assert out.startswith("eksport.csv: mapping ")


def test_validate_inbox_without_a_mapping_names_that_inbox(tmp_path: Path) -> None:
    """`validate --inbox acme` where acme has no mapping: the sentence names acme."""
    export = write_erp_csv(tmp_path / "eksport.csv", [erp_row("5001")])
    config = tmp_path / "filedrop.toml"
    config.write_text(f'[[inbox]]\nname = "acme"\nfolder = "{tmp_path}"\n', encoding="utf-8")
    _, _, err = filedrop(
        "validate", str(export), "--config", str(config), "--inbox", "acme", environ={}, expect=2
    )
    assert err == (
        'filedrop: No mapping given; inbox "acme" has none (a mapping key in its table or at the '
        "top of the config file); pass --mapping FILE_OR_FOLDER.\n"
    )


# -- the config's inbox tables ------------------------------------------------------------------


def test_an_inbox_takes_its_own_keys_then_the_environment_then_the_top_level_then_defaults(
    tmp_path: Path,
) -> None:
    """What an inbox table does not give comes from the top level as it resolves today
    (environment over the file's top-level key), then the default; a flag beats them all."""
    config = tmp_path / "filedrop.toml"
    config.write_text(
        f"""\
batch_size = 7
client_id = "from-file"
stability_s = 3

[[inbox]]
name = "acme"
folder = "{tmp_path / "acme"}"
batch_size = 3
client_id = "acme-client"

[[inbox]]
name = "beta"
folder = "{tmp_path / "beta"}"
""",
        encoding="utf-8",
    )
    settings = load_settings(config_file=config, environ={"FILEDROP_CLIENT_ID": "from-env"})
    acme, beta = settings.each_inbox()
    assert (acme.name, acme.inbox, acme.batch_size, acme.client_id) == (
        "acme", tmp_path / "acme", 3, "acme-client"
    )  # fmt: skip
    assert (beta.name, beta.inbox, beta.batch_size, beta.client_id) == (
        "beta", tmp_path / "beta", 7, "from-env"
    )  # fmt: skip
    assert (acme.stability_s, acme.concurrent_files) == (3.0, 2)
    assert acme.where("batch_size") == f'{config}: inbox "acme": batch_size'
    flagged = load_settings(flags={"batch_size": "9"}, config_file=config, environ={})
    assert [inbox.batch_size for inbox in flagged.each_inbox()] == [9, 9]


def test_a_config_without_inboxes_is_one_inbox_as_before(tmp_path: Path) -> None:
    """No [[inbox]] tables: the settings are the one inbox's, named "default"."""
    config = tmp_path / "filedrop.toml"
    config.write_text(f'inbox = "{tmp_path}"\nbatch_size = 5\n', encoding="utf-8")
    settings = load_settings(config_file=config, environ={})
    assert settings.inboxes == ()
    assert settings.each_inbox() == (settings,)
    assert (settings.name, settings.inbox, settings.batch_size) == ("default", tmp_path, 5)


@pytest.mark.parametrize(
    ("tables", "sentence"),
    [
        (
            '[[inbox]]\nname = "acme"\nbatch_siz = 3\n',
            'inbox "acme": key "batch_siz" is not a setting; did you mean batch_size?',
        ),
        (
            '[[inbox]]\nname = "acme"\nbatch_size = "many"\n',
            'inbox "acme": batch_size is "many", which is not valid: must be a whole number of 1 '
            "or more.",
        ),
        (
            '[[inbox]]\nname = "acme"\nstate = "/tmp/j.db"\n',
            'inbox "acme": key "state" is one setting for every inbox (one journal, one log); '
            "set it at the top level of the file.",
        ),
        (
            '[[inbox]]\nname = "acme"\ninbox = "/data/acme"\n',
            'inbox "acme": key "inbox" is not a setting of an inbox; its folder is its "folder".',
        ),
        (
            '[[inbox]]\nfolder = "/data/acme"\n',
            'inbox entry 1 has no "name"; give each inbox a name of its own.',
        ),
        (
            '[[inbox]]\nname = "acme corp"\n',
            'inbox entry 1: name is "acme corp", which is not a name; use letters, digits, '
            "'.', '_' and '-', starting with a letter or digit.",
        ),
        (
            '[[inbox]]\nname = "acme"\n[[inbox]]\nname = "acme"\n',
            'inbox "acme" is listed twice; give each inbox a name of its own.',
        ),
        (
            '[[inbox]]\nname = "a"\nfolder = "/data/x"\n'
            '[[inbox]]\nname = "b"\nfolder = "/data/x"\n',
            'inbox "b": folder /data/x is inbox "a"\'s folder too; give each inbox a folder of its '
            "own.",
        ),
        (
            '[inbox]\nname = "acme"\n',
            '[inbox] is one table; list inboxes as [[inbox]] tables, or give inbox = "FOLDER".',
        ),
    ],
    ids=[
        "unknown-key", "bad-value", "shared-key", "inbox-key", "no-name", "bad-name",
        "same-name", "same-folder", "single-table",
    ],
)  # fmt: skip
def test_a_bad_inbox_entry_is_one_sentence_naming_the_inbox_and_the_key(
    tmp_path: Path, tables: str, sentence: str
) -> None:
    """Each mistake in an [[inbox]] table is refused at load with one sentence that names the
    config file, the inbox and the key."""
    config = tmp_path / "filedrop.toml"
    config.write_text(tables, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(config_file=config, environ={})
    assert str(refused.value) == f"{config}: {sentence}"


def test_an_inbox_reaching_anothers_folder_by_a_link_or_dots_is_refused(tmp_path: Path) -> None:
    """Two inboxes of one folder, one named through a symbolic link or "..", each took every
    file there and sent it to its own organisation, one outcome written over the other; an
    inbox inside another's archive/ met files that inbox is done with. All refused at load."""
    shared = tmp_path / "shared"
    (shared / "archive" / "late").mkdir(parents=True)
    (tmp_path / "link").symlink_to(shared)
    config = tmp_path / "filedrop.toml"

    def refused(folder: Path) -> str:
        config.write_text(
            f'[[inbox]]\nname = "one"\nfolder = "{shared}"\n'
            f'[[inbox]]\nname = "two"\nfolder = "{folder}"\n',
            encoding="utf-8",
        )
        with pytest.raises(ConfigError) as error:
            load_settings(config_file=config, environ={})
        return str(error.value)

    for alias in (tmp_path / "link", tmp_path / "x" / ".." / "shared"):
        assert refused(alias) == (
            f'{config}: inbox "two": folder {alias} (it leads to {shared.resolve()}) is inbox '
            '"one"\'s folder too; give each inbox a folder of its own.'
        )
    assert refused(tmp_path / "link" / "archive" / "late") == (
        f'{config}: inbox "two"\'s folder is inside inbox "one"\'s archive/ folder, where "one" '
        "keeps what it is done with; give each inbox a folder of its own, outside the others' "
        "archives."
    )


def test_journal_rebuild_reads_every_inbox_of_a_config_back(
    tmp_path: Path, strict_sandbox: Sandbox
) -> None:
    """The journal of a config's inboxes is lost: the run refuses and says to run 'filedrop
    journal rebuild', which asked for FILEDROP_INBOX and could not be run with the config. It
    now reads every inbox's outcomes back (or the one --inbox names), and nothing is resent."""
    folders = drop_files(tmp_path)
    config = write_config(tmp_path, strict_sandbox.url, folders)
    filedrop("run", "--config", str(config), environ={}, expect=2)  # gamma's credentials
    (tmp_path / "journal.db").rename(tmp_path / "journal.db.lost")
    write_erp_csv(folders["acme"] / "new.csv", [erp_row("1001"), erp_row("1009")])
    _, _, err = filedrop("run", "--config", str(config), environ={}, expect=2)
    assert "filedrop journal rebuild" in err

    _, out, _ = filedrop("journal", "rebuild", "--config", str(config), environ={})
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("Inbox ")] == [
        f"Inbox {name} ({folders[name]}):" for name in ("acme", "beta", "gamma")
    ]
    assert lines[1].startswith("  Read 2 outcome files back into the journal")
    assert "3 invoice numbers recorded" in lines[1]
    _, out, _ = filedrop(
        "journal", "rebuild", "--config", str(config), "--inbox", "beta", environ={}
    )
    assert out.splitlines()[0] == f"Inbox beta ({folders['beta']}):"

    filedrop("run", "--config", str(config), environ={}, expect=2)
    assert outcome_statuses(folders["acme"] / "new.outcome.csv") == ["DUPLICATE", "SUCCEEDED"]
    assert strict_sandbox.counters().invoice_numbers_repeated == ()


def test_a_mark_in_one_inbox_holds_back_the_inboxes_sharing_its_journal_and_target(
    tmp_path: Path, strict_sandbox: Sandbox
) -> None:
    """A file killed while sent from inbox a, the journal then lost: a copy of it dropped into
    inbox b, which shares a's journal and organisation, was sent again. Now b is held back
    too; c, at another organisation, is not (its invoice numbers are another namespace)."""
    folders = {name: tmp_path / name for name in ("a", "b", "c")}
    for folder in folders.values():
        folder.mkdir()
    marks = folders["a"] / ".filedrop" / "sending"
    marks.mkdir(parents=True)
    facts = {"file": "f.csv", "sha256": "00" * 32, "journal": "a-lost-one", "started_at": 0}
    (marks / "0123.json").write_text(
        json.dumps({**facts, "target": f"sandbox:{ORG_ID}"}) + "\n1\n", encoding="utf-8"
    )
    write_erp_csv(folders["b"] / "f.csv", [erp_row("4001")])
    write_erp_csv(folders["c"] / "g.csv", [erp_row("4002")])
    config = tmp_path / "filedrop.toml"
    config.write_text(
        config_head(
            strict_sandbox.url,
            tmp_path / "journal.db",
            org_id=None,
            stability_s=0,
            poll_initial_s=0.05,
            poll_timeout_s=10,
        )
        + "".join(
            f'\n[[inbox]]\nname = "{name}"\nfolder = "{folders[name]}"\norg_id = "{org}"\n'
            for name, org in (("a", ORG_ID), ("b", ORG_ID), ("c", OTHER_ORG_ID))
        ),
        encoding="utf-8",
    )
    _, out, _ = filedrop("run", "--config", str(config), environ={}, expect=2)
    assert "f.csv: skipped (not sent: the journal does not know all that was sent from f.csv" in out
    assert outcome_statuses(folders["c"] / "g.outcome.csv") == ["SUCCEEDED"]
    assert strict_sandbox.received_invoice_numbers() == ["4002"]
