"""Logs for machines: with --log-format json each line carries its facts as keys of its own."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from builders import erp_row, filedrop, run_env, write_erp_csv
from conftest import TEST_CLIENT_SECRET

from filedrop.logs import _JsonFormatter, _TextFormatter, fields
from filedrop.sandbox import Sandbox


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def by_event(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == event]


def without_time(line: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key != "time"}


def test_json_log_lines_carry_their_fields_and_no_secret(sandbox: Sandbox, inbox: Path) -> None:
    """A run's JSON lines name the event, inbox, file, batch, counts and status of each step,
    with the file name's control character escaped and no secret or token anywhere."""
    write_erp_csv(inbox / "mars\x1b.csv", [erp_row("3001"), erp_row("3002")])
    (inbox / "notes.txt").write_text("not an export\n", encoding="utf-8")
    sandbox.fail_next(503, count=1, retry_after="0", route="invoices")
    _, _, err = filedrop("run", "--log-format", "json", environ=run_env(inbox, sandbox.url))
    lines = json_lines(err)
    assert len(lines) == len(err.splitlines())  # every line is one JSON object
    claimed, done = by_event(lines, "file_claimed"), by_event(lines, "file_done")
    assert [without_time(line) for line in claimed] == [
        {
            "level": "info",
            "logger": "filedrop",
            "message": "mars\\x1b.csv: claimed",
            "event": "file_claimed",
            "inbox": "inbox",
            "file": "mars\\x1b.csv",
        }
    ]
    assert [(line["inbox"], line["file"], line["status"], line["counts"]) for line in done] == [
        ("inbox", "mars\\x1b.csv", "done", {"SUCCEEDED": 2})
    ]
    assert done[0]["outcome"] == "mars\\x1b.outcome.csv"
    [submitted] = by_event(lines, "batch_submitted")
    assert (submitted["inbox"], submitted["batch"], submitted["counts"]) == (
        "inbox",
        1,
        {"invoices": 2},
    )
    [ended] = by_event(lines, "batch_ended")
    assert (ended["batch"], ended["batch_id"], ended["status"], ended["counts"]) == (
        1,
        submitted["batch_id"],
        "SUCCESS",
        {"succeeded": 2, "failed": 0},
    )
    [retry] = by_event(lines, "retry")
    assert (retry["inbox"], retry["method"], retry["reason"], retry["attempt"]) == (
        "inbox",
        "POST",
        "http_503",
        2,
    )
    [ignored] = by_event(lines, "file_ignored")
    assert (ignored["inbox"], ignored["file"]) == ("inbox", "notes.txt")
    assert TEST_CLIENT_SECRET not in err
    for token in sandbox.issued_tokens():
        assert token not in err


def test_json_fields_are_escaped_and_masked_and_never_replace_the_message() -> None:
    """A field holding a national id is masked, a newline escaped, and a field named like a
    base key does not overwrite it."""
    record = logging.LogRecord("filedrop", logging.INFO, __file__, 1, "seen", (), None)
    record.__dict__.update(
        fields("file_seen", file="11066312345\nforged.csv", message="replaced?", rows=3)
    )
    line = json.loads(_JsonFormatter().format(record))
    assert without_time(line) == {
        "level": "info",
        "logger": "filedrop",
        "message": "seen",
        "event": "file_seen",
        "file": "110663*****\\nforged.csv",
        "rows": 3,
    }


def test_a_text_line_names_its_inbox_once_and_only_when_inboxes_are_listed() -> None:
    """With inboxes listed, a line about one starts with its name, unless it says it already;
    without, the line is as it was."""

    def line(message: str, *, name_inboxes: bool) -> str:
        record = logging.LogRecord("filedrop", logging.INFO, __file__, 1, message, (), None)
        record.__dict__.update(fields("file_seen", inbox="acme", file="mars.csv"))
        formatter = _TextFormatter("%(message)s", "%H:%M:%S", name_inboxes=name_inboxes)
        return formatter.format(record)

    assert line("mars.csv: seen", name_inboxes=True) == "inbox acme: mars.csv: seen"
    assert line("inbox acme: gone", name_inboxes=True) == "inbox acme: gone"
    assert line("inbox acmé: not this one", name_inboxes=True) == (
        "inbox acme: inbox acmé: not this one"
    )
    assert line("mars.csv: seen", name_inboxes=False) == "mars.csv: seen"
