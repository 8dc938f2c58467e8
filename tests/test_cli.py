"""The command line: help with examples, the README's promises, one-sentence errors."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from builders import EXAMPLES, MAPPINGS, ROOT, filedrop

from filedrop.cli import build_parser, main

COMMANDS = ["demo", "run", "watch", "validate", "sandbox", "status", "resolve"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    """`filedrop COMMAND --help` exits 0 and shows at least one example invocation."""
    out = io.StringIO()
    code = main([command, "--help"], environ={}, stdout=out, stderr=io.StringIO())
    assert code == 0
    # argparse prints help to sys.stdout; build the text the same way it does.
    text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
    assert "examples:" in text
    assert f"filedrop {command}" in text


def test_help_examples_use_real_options() -> None:
    """Every --option an example uses exists on its command, so the help never lies."""
    parsers = build_parser()._subparsers._group_actions[0].choices
    for name, parser in parsers.items():
        known = {opt for action in parser._actions for opt in action.option_strings}
        for line in (parser.epilog or "").splitlines():
            if f"filedrop {name}" not in line:
                continue
            command = line.split("filedrop " + name, 1)[1].split("  ")[0]
            for option in re.findall(r"(--[a-z][a-z0-9-]*)", command):
                assert option in known, f"{name}: example uses unknown {option}"


def test_readme_gives_two_commands_and_ci_runs_the_second() -> None:
    """README's first command installs and runs the demo; .ci/run runs README's test command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    assert "pip install -e '.[dev]'" in blocks[0] and "filedrop demo" in blocks[0]
    test_command = blocks[1].strip()
    assert test_command == "python -m pytest"
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_documents_every_setting() -> None:
    """Every setting the code knows appears in README's configuration table."""
    from filedrop.settings import SPECS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [spec.env for spec in SPECS if spec.env not in readme]
    assert not missing, f"README does not document {missing}"


def test_demo_runs_on_the_embedded_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    """`filedrop demo` needs nothing but the checkout and shows mixed outcomes and their paths."""
    code, out, _ = filedrop("demo", environ={})
    assert code == 0
    assert "SANDBOX" in out
    for status in ("SUCCEEDED", "INVALID", "FAILED"):
        assert status in out
    outcomes = [
        Path(line.split("outcome: ", 1)[1]) for line in out.splitlines() if "outcome: " in line
    ]
    assert len(outcomes) == len([p for p in EXAMPLES.iterdir() if not p.name.startswith(".")])
    assert all(path.is_file() for path in outcomes)


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


def test_validate_unreadable_file_exits_2_with_one_sentence(tmp_path: Path) -> None:
    """An unreadable file is exit 2 and one line naming it, without a traceback."""
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"nope")
    _, _, err = filedrop("validate", str(broken), "--mapping", str(MAPPINGS), environ={}, expect=2)
    assert err.startswith("filedrop: ") and "broken.xlsx" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


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


def test_health_fails_without_a_daemon(tmp_path: Path) -> None:
    """`status --health` exits 1 with a reason when no watch daemon has beaten."""
    _, _, err = filedrop("status", "--health", "--inbox", str(tmp_path), environ={}, expect=1)
    assert "unhealthy" in err


def test_sandbox_command_serves_and_stops_on_sigterm() -> None:
    """`filedrop sandbox` answers /token on 127.0.0.1 and exits 0 on SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "filedrop", "sandbox", "--port", str(port), "--delay", "0"],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/token",
                    data=b"grant_type=client_credentials&client_id=a&client_secret=b",
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=2) as answer:
                    assert json.load(answer)["token_type"] == "Bearer"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0
        assert b"nothing reaches Amili" in err or b"Amili" in err
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
