"""README and --help match the code: every setting with its real default, examples that work."""

from __future__ import annotations

import re

import pytest
from builders import ROOT

from filedrop.cli import main
from filedrop.settings import SPECS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `filedrop ARGS --help` prints (argparse writes help to the real stdout)."""
    assert main([*args, "--help"], environ={}) == 0
    return capsys.readouterr().out


def _commands(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The commands `filedrop --help` lists."""
    listing = _help(capsys).split("positional arguments:\n", 1)[1].split("\noptions:")[0]
    return re.findall(r"^    (\w+)", listing, flags=re.M)


def _leaf_commands(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Each command that does something, as typed: ``journal`` is a group of actions."""
    return ["journal rebuild" if command == "journal" else command for command in _commands(capsys)]


def _configuration_table() -> dict[str, str]:
    """README's settings table: variable -> its default column."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(FILEDROP_[A-Z_]+)` \| .+? \| (.+) \|$", section, flags=re.M)
    return dict(rows)


def test_readme_settings_table_names_every_setting_with_its_real_default() -> None:
    """One README row per setting; where a setting has a default, the row gives exactly it."""
    table = _configuration_table()
    assert sorted(table) == sorted(spec.env for spec in SPECS)
    documented = {spec.env: table[spec.env] for spec in SPECS if spec.default is not None}
    assert documented == {spec.env: spec.default_text for spec in SPECS if spec.default is not None}


def test_flag_help_gives_the_real_default(capsys: pytest.CaptureFixture[str]) -> None:
    """`filedrop run --help` takes each flag's default from the settings, not from typed text."""
    text = " ".join(_help(capsys, "run").split())
    for spec in SPECS:
        if "run" in spec.flag_on and spec.default is not None:
            assert f"({spec.env}, default {spec.default_text})" in text


def test_the_commands_are_the_ones_documented(capsys: pytest.CaptureFixture[str]) -> None:
    """`filedrop --help` lists the eight commands README describes."""
    commands = _commands(capsys)
    assert commands == [
        "demo", "run", "watch", "validate", "init", "sandbox", "status", "resolve", "journal",
        "report",
    ]  # fmt: skip
    for command in _leaf_commands(capsys):
        assert f"filedrop {command}" in README


def test_every_command_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`filedrop COMMAND --help` ends with an "examples:" block that runs that command."""
    for command in _leaf_commands(capsys):
        examples = _help(capsys, *command.split()).split("\nexamples:\n", 1)[1]
        assert f"filedrop {command}" in examples.splitlines()[0]


def test_help_examples_use_real_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Every --option an example uses is one the command's help lists, so the help never lies."""
    for command in _leaf_commands(capsys):
        options, examples = _help(capsys, *command.split()).split("\nexamples:\n", 1)
        known = set(re.findall(r"(--[a-z][a-z0-9-]*)", options))
        for line in examples.splitlines():
            if f"filedrop {command}" not in line:
                continue
            invocation = line.split(f"filedrop {command}", 1)[1].split("  ")[0]
            for option in re.findall(r"(--[a-z][a-z0-9-]*)", invocation):
                assert option in known, f"{command}: an example uses unknown {option}"


def test_readme_gives_two_commands_and_ci_runs_the_second() -> None:
    """README's first command installs and runs the demo; .ci/run runs README's test command."""
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    assert "pip install -e '.[dev]'" in blocks[0]
    assert "filedrop demo" in blocks[0]
    test_command = blocks[1].strip()
    assert test_command == "python -m pytest"
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
