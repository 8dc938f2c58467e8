"""The ``filedrop`` command: arguments in, one library call, an exit code out.

One error boundary (``main``) turns every exception into one sentence and exit code 2 (a
``FiledropError`` into its own sentence); a traceback shows only with ``--debug``. The environment
and the output streams are parameters so tests run the CLI in-process.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from filedrop import __version__
from filedrop.errors import ConfigError, FiledropError, ReadError
from filedrop.logs import mask_ids, plural, printable, setup_logging
from filedrop.memory import few_malloc_arenas
from filedrop.settings import SPEC_BY_NAME, SPECS, Settings, load_settings
from filedrop.states import ExitCode, RowStatus

if TYPE_CHECKING:  # imported lazily at run time: `filedrop --help` should start fast
    from filedrop.journal import FileRecord, Journal
    from filedrop.journal.rebuild import RebuildReport
    from filedrop.metrics import Metrics
    from filedrop.progress import Progress
    from filedrop.runner import RunReport

Handler = Callable[[argparse.Namespace, "Io"], int]

#: Control characters, which a name taken from a dropped file must not carry into a file name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Io:
    """The process's surroundings, injected (``main(argv, environ, stdout, stderr)``), and the
    settings ``main`` resolved from them for this command."""

    def __init__(self, environ: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> None:
        self.environ = environ
        self.stdout = stdout
        self.stderr = stderr
        self.settings = Settings()

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout)


EPILOGS = {
    "demo": """examples:
  filedrop demo                   process copies of inbox-example/ on the embedded sandbox
  filedrop demo --keep-sandbox    then keep the sandbox running to try mappings by hand""",
    "run": """examples:
  FILEDROP_ENV=staging FILEDROP_INBOX=/data/inbox FILEDROP_MAPPING=mappings/ filedrop run
  filedrop run --config /etc/filedrop.toml --log-format json

exit codes: 0 every row SUCCEEDED, DUPLICATE or SKIPPED; 1 some row FAILED, INVALID or UNKNOWN, or a
file ERROR; 2 fix the setup: configuration, credentials, organisation, URL or batch size (not sent);
3 rows still PENDING, NOT_SENT while Amili was unavailable, or a file still being written, left
for the next run. The first of 2, 1, 3, 0 wins.

On SIGTERM, SIGHUP or Ctrl-C it sends no new batch, records the answers of the POSTs on their way,
and exits 3 with the rest left for the next run; a wait for Retry-After or for a file to settle
ends at once. A second Ctrl-C stops at once (exit 130; a POST on its way is then UNKNOWN).""",
    "watch": """examples:
  FILEDROP_ENV=production FILEDROP_INBOX=/inbox FILEDROP_MAPPING=/mappings filedrop watch
  filedrop watch --polling --stability-s 30     on an SMB/NFS share or a Docker Desktop mount
  filedrop watch --metrics-port 9100            serve /metrics, /healthz and /readyz

On SIGTERM, SIGINT or SIGHUP it stops taking files, lets in-flight work finish or leaves it
resumable in the journal, and exits 0 within 10 s; a second Ctrl-C stops it at once (exit
130). Probes for containers: /healthz (alive), /readyz (ready).""",
    "validate": """examples:
  filedrop validate inbox-example/faktura-mars.csv --mapping mappings/
  filedrop validate export.xlsx --mapping mappings/norwegian-erp.toml --json > invoices.json
  filedrop validate export.xlsx --config /etc/filedrop.toml --inbox acme   with acme's mapping

exit codes: 0 no row invalid (duplicates and skipped rows are not sent, as in run);
1 some row invalid; 2 unusable mapping or unreadable file.""",
    "init": """examples:
  filedrop init export.xlsx --out mappings/my-erp.toml   draft a mapping from a sample export
  filedrop init export.csv --out mappings/my-erp.toml --force   draft it again, over the old one
  filedrop init dos-export.csv --encoding cp865   an old DOS program's CSV, which is not guessed

It writes the draft (each field with how sure it is, questions where it could not tell), then
validates the file with it and prints what 'filedrop validate' prints, and the questions left.
exit codes: 0 the draft maps every row; 1 some row invalid or the draft needs answers first;
2 the file cannot be read, or --out exists (without --force).""",
    "sandbox": """examples:
  filedrop sandbox                              serve on http://127.0.0.1:8765
  filedrop sandbox --port 9000 --delay 0.5-3    batches stay QUEUED 0.5 to 3 s
  filedrop sandbox --rate-503 0.2 --rate-lost 0.05   practise the failure paths

then, in another shell (any client id and secret will do; the organisation id is a UUID):
  export FILEDROP_ENV=sandbox FILEDROP_CLIENT_ID=trial FILEDROP_CLIENT_SECRET=trial
  export FILEDROP_ORG_ID=3fa85f64-5717-4562-b3fc-2c963f66afa6
  FILEDROP_INBOX=my-inbox FILEDROP_MAPPING=mappings/ filedrop run""",
    "status": """examples:
  filedrop status --inbox /data/inbox
  filedrop status --health        exit 0 while a watch daemon's heartbeat is fresh
  filedrop status --config /etc/filedrop.toml --inbox acme   one of the config's [[inbox]] list""",
    "resolve": """examples:
  filedrop resolve 12 --sent        Amili has batch #12's invoices: never send them again
  filedrop resolve 12 --not-sent    Amili does not: the next run sends them
  filedrop resolve 3 4 7 --sent     several batches at once

Use it for batches 'filedrop status' lists as UNKNOWN, after checking with Amili for the invoice
numbers it lists. The outcome files of their inputs are rewritten at once. A batch whose file a
filedrop process is working on right now is left as it is, and said so (exit 1).""",
    "journal": """examples:
  filedrop journal rebuild --inbox /data/inbox     after the journal was lost or replaced
  filedrop journal rebuild --fresh                 start an empty journal on purpose""",
    "journal rebuild": """examples:
  filedrop journal rebuild --inbox /data/inbox
      read every outcome in the inbox and its archive/ back into the journal: SUCCEEDED,
      PENDING and UNKNOWN invoices are never sent again, PENDING batches are polled again,
      UNKNOWN batches keep the number their outcome's 'filedrop resolve N' advice names,
      and inputs still in the inbox are taken again by the next run (nothing sent twice)
  filedrop journal rebuild --config /etc/filedrop.toml
      the same for every inbox of the config, into the journal they share (--inbox NAME: one)
  filedrop journal rebuild --fresh
      keep the journal aside as a backup and start an empty one: every file is new again

A run refuses files whose outcome shows more than the journal knows (exit 2) until one of these.
Needs FILEDROP_ENV and FILEDROP_ORG_ID: invoice numbers are remembered per environment and
organisation. Exit codes: 0 rebuilt; 1 some outcome or row could not be read back, or a batch
had to take a new number (printed); 2 setup.""",
    "report": """examples:
  filedrop report                                the last 24 hours, into the current folder
  filedrop report --days 7 --out /srv/reports    the last week
  filedrop report --since 2024-03-01 --until 2024-04-01   March (local time)
  filedrop report --since 2024-03-04T07:00       from then until now

Writes filedrop-report-<period>.html (opens in any browser) and .xlsx: per inbox, files and rows
per status with amounts, and the rows that need a person (INVALID, FAILED, UNKNOWN, ERROR, and
NOT_SENT in a file first seen more than a day before the period's end). Mailing it is up to your
own tools, e.g. cron.""",
}


def _settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of the settings ``command`` reads, with help built from their definitions."""
    group = parser.add_argument_group(
        "settings (flag > FILEDROP_* environment > --config TOML > default)"
    )
    group.add_argument("--config", type=Path, help="TOML config file (FILEDROP_CONFIG)")
    for spec in SPECS:
        if command not in spec.flag_on:
            continue
        if spec.is_switch:
            group.add_argument(spec.flag, action="store_const", const="true", help=spec.help_text)
        else:
            group.add_argument(spec.flag, help=spec.help_text)


def build_parser() -> argparse.ArgumentParser:
    # --debug and --log-format work before or after the command (`filedrop run --debug`); SUPPRESS
    # keeps a subcommand's absent flag from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    common.add_argument(
        "--log-format",
        default=argparse.SUPPRESS,
        help=SPEC_BY_NAME["log_format"].help_text,
    )
    parser = argparse.ArgumentParser(
        prog="filedrop",
        description="Hand spreadsheets of overdue invoices to Amili, row by row.",
        epilog="Every command has --help with examples. Start with: filedrop demo",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"filedrop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, handler: Handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=EPILOGS.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        sub.set_defaults(handler=handler)
        return sub

    demo = command(
        "demo", "Run the whole job on the embedded sandbox: no credentials, no network.", _demo
    )
    demo.add_argument("--examples", type=Path, help="folder holding inbox-example/ and mappings/")
    demo.add_argument("--keep-sandbox", action="store_true", help="keep serving until Ctrl-C")

    run = command("run", "Process every ready file in the inbox once, then exit with a code.", _run)
    _settings_flags(run, "run")

    watch = command(
        "watch",
        "Process the backlog, then watch the inbox until SIGTERM, SIGINT or SIGHUP.",
        _watch,
    )
    _settings_flags(watch, "watch")

    validate = command(
        "validate",
        "Read, map and validate one file; print each row's problems; send nothing.",
        _validate,
    )
    validate.add_argument("file", type=Path, help="the CSV or Excel file")
    validate.add_argument("--json", action="store_true", help="print the invoice JSON to be sent")
    _settings_flags(validate, "validate")

    init = command(
        "init", "Draft a mapping from a sample export, then validate the export with it.", _init
    )
    init.add_argument("file", type=Path, help="a sample CSV or Excel export")
    init.add_argument(
        "--out", type=Path, help="where to write the mapping (default: FILE's name with .toml)"
    )
    init.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    init.add_argument(
        "--encoding",
        help="read a CSV in this encoding (cp1252, cp865, mac-roman...) when filedrop will not "
        "guess it; the draft sets it",
    )

    sandbox = command(
        "sandbox", "Serve a local imitation of Amili's API; nothing reaches Amili.", _sandbox
    )
    _sandbox_arguments(sandbox)

    status = command(
        "status", "Show what the journal knows: files, pending and unknown batches.", _status
    )
    _settings_flags(status, "status")
    status.add_argument(
        "--health",
        action="store_true",
        help=(
            "exit 0 if this host's watch daemon is alive: with a metrics port, its own /healthz "
            "answers; otherwise its heartbeat in the journal is fresh and every inbox readable"
        ),
    )

    resolve = command(
        "resolve",
        "Settle UNKNOWN batches after checking with Amili, and rewrite their outcomes.",
        _resolve,
    )
    _settings_flags(resolve, "resolve")
    _resolve_arguments(resolve)

    journal = command(
        "journal", "Look after the journal: rebuild it from the outcome files.", _journal_rebuild
    )
    actions = journal.add_subparsers(dest="action", required=True, metavar="ACTION")
    summary = (
        "Read the outcome files back into a journal that was lost, replaced or put back from an "
        "older copy."
    )
    rebuild = actions.add_parser(
        "rebuild",
        help=summary,
        description=summary,
        epilog=EPILOGS["journal rebuild"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    rebuild.set_defaults(handler=_journal_rebuild)
    _settings_flags(rebuild, "journal")
    rebuild.add_argument(
        "--fresh",
        action="store_true",
        help="start an empty journal on purpose, keeping the old one aside as a backup",
    )

    report = command(
        "report",
        "Write a digest of a period across files and inboxes, as HTML and xlsx.",
        _report,
    )
    _settings_flags(report, "report")
    report.add_argument(
        "--out",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="folder to write into (default: this one)",
    )
    report.add_argument("--until", metavar="WHEN", help="end: YYYY-MM-DD[THH:MM] (default: now)")
    start = report.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="WHEN", help="start: YYYY-MM-DD[THH:MM], local time")
    start.add_argument("--days", type=float, help="or the N days before the end (default: 1)")
    return parser


def _sandbox_arguments(sandbox: argparse.ArgumentParser) -> None:
    """The sandbox's own knobs: where it listens, how slow it is, which faults it injects."""
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=int, default=8765, help="port (0 = any free one)")
    sandbox.add_argument("--delay", default="0.5-3", help="seconds a batch stays QUEUED: N or A-B")
    sandbox.add_argument("--client-id", help="accept only this client id (default: any)")
    sandbox.add_argument("--client-secret", help="accept only this secret (default: any)")
    sandbox.add_argument("--token-lifetime", type=float, default=3600, help="token seconds")
    sandbox.add_argument("--rate-429", type=float, default=0.0, help="share of 429 answers")
    sandbox.add_argument("--rate-503", type=float, default=0.0, help="share of 503 answers")
    sandbox.add_argument(
        "--rate-lost",
        type=float,
        default=0.0,
        help="share of POSTs processed but never answered (the UNKNOWN case)",
    )
    sandbox.add_argument("--seed", type=int, help="random seed for repeatable runs")


def _resolve_arguments(resolve: argparse.ArgumentParser) -> None:
    """Which batches, and what Amili said of them."""
    resolve.add_argument(
        "batches",
        nargs="+",
        metavar="BATCH",
        help="journal number (#12) or API batch id, from 'status'; several at once",
    )
    verdict = resolve.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--sent", action="store_true", help="Amili has them: never send again")
    verdict.add_argument("--not-sent", action="store_true", help="Amili does not: send again")


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; returns the exit code (``ExitCode``).

    The one error boundary: whatever escapes a command becomes one sentence on stderr and exit
    code 2; the traceback is logged only with ``--debug``.
    """
    io = Io(os.environ if environ is None else environ, stdout or sys.stdout, stderr or sys.stderr)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage or help
        return int(exc.code or 0)
    args.debug = getattr(args, "debug", False)
    # Text until the settings say otherwise, so that a bad setting can still be reported.
    setup_logging(stream=io.stderr, fmt="text", debug=args.debug)
    try:
        io.settings = load_settings(
            flags=_flags(args), environ=io.environ, config_file=getattr(args, "config", None)
        )
        setup_logging(
            stream=io.stderr,
            fmt=io.settings.log_format,
            debug=args.debug,
            name_inboxes=bool(io.settings.inboxes),
        )
        return args.handler(args, io)
    except FiledropError as exc:
        return _fail(io, str(exc), debug=args.debug)
    except KeyboardInterrupt:
        print("filedrop: interrupted.", file=io.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `filedrop validate x.csv --json | head`: the reader had enough
        return ExitCode.OK
    except Exception as exc:  # a bug, or a case without its own sentence yet
        detail = mask_ids(" ".join(str(exc).split()))  # one line, whatever it was
        what = f"unexpected error: {detail}" if detail else "unexpected error"
        advice = "" if args.debug else "; run again with --debug to see where it happened"
        return _fail(io, f"{what.rstrip('.')}{advice}.", debug=args.debug)


def console() -> NoReturn:
    """The ``filedrop`` command (and ``python -m filedrop``): ``main``, then leave at once.

    When ``main`` returns, every outcome, journal write and metrics file is done and closed, so
    the logs and the two streams are flushed and the process ends without the interpreter's
    teardown, which freed a run's objects one at a time for nothing: 0.2-0.3 s of CPU after a
    50,000-row workbook. Tests and library callers use ``main``, which returns.
    """
    few_malloc_arenas(os.environ)  # before any thread: see why there
    code = main()
    logging.shutdown()
    _remove_readers_folder()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing to add
            stream.flush()
    os._exit(code)


def _remove_readers_folder() -> None:
    """Remove the folder multiprocessing made for the reader's server's socket (pymp-* in the
    temporary folder), for a process that leaves without the interpreter's teardown
    (``os._exit``), which removed it: every run that started the server left one behind.

    Only the folder: multiprocessing's own exit handler would also stop and wait for reader
    children, and a child forked just as a stop came can still be waiting on this process, so
    a second Ctrl-C hung instead of ending at once. The children die with this process, as
    they did. Its place is kept in multiprocessing's process config, which has no public name.
    """
    if (processes := sys.modules.get("multiprocessing.process")) is None:
        return
    folder = processes.current_process()._config.get("tempdir")
    if isinstance(folder, str):
        shutil.rmtree(folder, ignore_errors=True)


def _require_file(path: Path) -> None:
    """A ``ReadError`` unless ``path`` is a regular file, saying what it is instead."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ReadError(str(path), "no such file") from None
    except OSError as exc:
        raise ReadError(str(path), f"it cannot be opened ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ReadError(str(path), "it is a folder; name a CSV or Excel file in it")
    if not stat.S_ISREG(mode):
        raise ReadError(str(path), "it is not a regular file (a pipe, socket or device)")


def _fail(io: Io, sentence: str, *, debug: bool) -> int:
    """Print the sentence (after the traceback, with --debug) and exit with the setup code.

    Escaped here, the one error boundary: a sentence may name a file whose name holds a newline
    or an escape sequence, which must not forge a second line or recolour the terminal.
    """
    if debug:
        logging.getLogger("filedrop").exception("the traceback of the error below")
    print(f"filedrop: {printable(sentence)}", file=io.stderr)
    return ExitCode.SETUP


def _flags(args: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags to this command (other commands' options are not settings)."""
    flags: dict[str, object] = {
        spec.name: getattr(args, spec.name, None) for spec in SPECS if args.command in spec.flag_on
    }
    flags["log_format"] = getattr(args, "log_format", None)
    return flags


def _load(args: argparse.Namespace, io: Io) -> Settings:
    """The settings ``main`` resolved for this command (flag > env > TOML > default)."""
    return io.settings


def _run(args: argparse.Namespace, io: Io) -> int:
    # SIGTERM is taken before the imports, which are most of a start: one that came while they
    # loaded killed the process outright instead of ending the run early and whole.
    stop = threading.Event()
    with _stopped_by_sigterm(stop, io):
        return _run_until(stop, io)


def _run_until(stop: threading.Event, io: Io) -> int:
    from filedrop.read.isolated import drop_read_ahead

    _read_first_workbook_ahead(io.settings)  # before the imports below, which it overlaps
    try:
        return _run_settings(stop, io)
    finally:
        drop_read_ahead()  # not taken: the first file was skipped, or the run never began


def _read_first_workbook_ahead(settings: Settings) -> None:
    """Begin parsing the inbox's first file, if a workbook, in the reader's child now: its half
    a second to a second of calamine then overlaps the imports, the token and the journal's
    opening instead of following them (``read_ahead`` says how it stays safe)."""
    from filedrop.inbox import workbook_to_read_ahead
    from filedrop.read.isolated import read_ahead

    try:
        limits = settings.read_limits()
        if settings.inboxes or settings.inbox is None or not limits.read_in_subprocess:
            return
        if (path := workbook_to_read_ahead(settings.inbox)) is not None:
            read_ahead(path, limits)
    except Exception:
        # Only a head start: an inbox that cannot be listed, or a reader that cannot be
        # started, is the run's to find and say, as it would without it.
        return


def _run_settings(stop: threading.Event, io: Io) -> int:
    from filedrop.api.client import ApiUnavailable
    from filedrop.metrics import Metrics
    from filedrop.runner import open_context, run_inbox

    settings = io.settings
    metrics = Metrics()
    if settings.inboxes:
        try:
            return _run_inboxes(settings, io, metrics, stop)
        finally:
            _write_metrics(metrics, settings)
    try:
        with open_context(
            settings,
            progress=_progress_for(io, settings.log_format),
            metrics=metrics,
            stop=stop,
        ) as ctx:
            report = run_inbox(ctx)
    except ApiUnavailable as exc:
        # Not the setup's fault: nothing was sent, and the next run simply starts over.
        print(f"filedrop: {exc}", file=io.stderr)
        return ExitCode.UNFINISHED
    finally:
        _write_metrics(metrics, settings)
    _print_report(report, io, environment=settings.env or "custom")
    return report.exit_code


def _run_inboxes(settings: Settings, io: Io, metrics: Metrics, stop: threading.Event) -> int:
    """``run`` over the config's inboxes: each one's summary under its name, and one exit code
    for them all (the first of 2, 1, 3, 0 that any inbox has)."""
    from filedrop.runner import combined_exit_code, run_inboxes

    runs = run_inboxes(settings, metrics=metrics, stop=stop)
    for run in runs:
        inbox = run.settings
        io.say(mask_ids(f"Inbox {inbox.name} ({printable(str(inbox.inbox))}):"))
        if run.report is None:
            io.say(mask_ids(f"  not run: {run.failure}"))
            continue
        _print_report(run.report, io, environment=inbox.env or "custom", indent="  ")
    return combined_exit_code(run.exit_code for run in runs)


def _write_metrics(metrics: Metrics, settings: Settings) -> None:
    """The run's metrics for node_exporter's textfile collector, when a file is set; a failure
    to write them is logged, and leaves the run's exit code as it is."""
    from filedrop.metrics import write_textfile

    if settings.metrics_file is None:
        return
    try:
        write_textfile(metrics, settings.metrics_file)
    except OSError as exc:
        logging.getLogger("filedrop").error(
            "%s %s cannot be written (%s); check that its folder exists and is writable",
            settings.where("metrics_file"),
            settings.metrics_file,
            exc.strerror or exc,
        )


def _progress_for(io: Io, log_format: str) -> Progress | None:
    """A redrawn progress line for people at a terminal; plain log lines for everyone else."""
    from filedrop.progress import TerminalProgress

    if log_format == "text" and io.stderr.isatty():
        logging.getLogger("filedrop").setLevel(logging.WARNING)  # the line says it all
        return TerminalProgress(io.stderr)
    return None


def _watch(args: argparse.Namespace, io: Io) -> int:
    stop = threading.Event()
    with _stopped_by_sigterm(stop, io):  # before the imports, as for run
        from filedrop.watch import watch_through_outages

        watch_through_outages(_load(args, io), stop=stop)
    return ExitCode.OK


def _print_report(report: RunReport, io: Io, *, environment: str, indent: str = "") -> None:
    """One line per file, named once by its bare name; details indented below it (and all of
    it by ``indent``, under its inbox's name, when the config lists inboxes).

    Names and messages are shown with control characters escaped (a file name is the dropper's
    data, and must not add lines of its own to the summary) and national ids masked as in the
    logs (a name or a message may hold one).
    """
    from filedrop.inbox import why_left
    from filedrop.pipeline import Setback
    from filedrop.states import FileState

    def say(text: str) -> None:
        io.say(mask_ids(indent + text))

    # Files the run left alone, and why: those still being written, and spreadsheets it cannot read.
    left_alone = [f"{printable(path.name)}: {why_left(path)}" for path in report.changing] + [
        f"{printable(path.name)}: {why}" for path, why in report.unread
    ]
    if not report.files:
        if report.stopped_early:
            say("Stopped before any file was taken; they are left for the next run.")
        else:
            say("No files were ready in the inbox.")
        for line in left_alone:
            say(line)
        return
    if environment == "sandbox":
        say("SANDBOX run: nothing was sent to Amili.")
    for line in left_alone:
        say(line)
    for file in report.files:
        name = printable(file.path.name)
        message = printable(file.message) if file.message else None
        if file.state is FileState.SKIPPED:
            say(f"{name}: skipped ({message})")
            continue
        if not file.counts:
            # A setup problem is the user's to fix first: no run resumes the file before that.
            fixed_first = " once this is fixed" if file.setback is Setback.SETUP else ""
            say(f"{name}: not finished; the next run{fixed_first} resumes it")
            if message:
                say(f"  {message}")
            continue
        counts = ", ".join(f"{n} {s}" for s, n in sorted(file.counts.items()))
        say(f"{name}: {counts}")
        if message:
            say(f"  {message}")
        if file.outcome:
            say(f"  outcome: {printable(str(file.outcome))}")


def _demo(args: argparse.Namespace, io: Io) -> int:
    from filedrop.runner import (
        DEMO_ORG_ID,
        find_examples,
        open_context,
        prepare_demo_inbox,
        run_inbox,
    )
    from filedrop.sandbox import Sandbox, SandboxOptions
    from filedrop.settings import Settings

    examples, mappings = find_examples(args.examples)
    inbox = prepare_demo_inbox(examples)
    io.say(f"Demo inbox (copies of {examples}): {inbox}")
    with Sandbox(SandboxOptions(delay_s=(0.2, 1.0), seed=7)).start() as sandbox:
        io.say(f"Sandbox serving on {sandbox.url}; nothing reaches Amili.")
        settings = Settings(
            env="sandbox",
            auth_url=sandbox.url,
            api_url=sandbox.url,
            client_id="filedrop-demo",
            client_secret="demo-secret",  # noqa: S106 - the sandbox accepts any secret
            org_id=DEMO_ORG_ID,
            inbox=inbox,
            mapping=mappings,
            state=inbox.parent / "journal.db",  # the demo's own: never the user's real journal
            stability_s=0.0,
            batch_size=5,
            poll_initial_s=0.25,
        )
        with open_context(settings, progress=_progress_for(io, "text")) as ctx:
            report = run_inbox(ctx)
        _print_report(report, io, environment="sandbox")
        if args.keep_sandbox:
            io.say(f"Sandbox still serving on {sandbox.url}; Ctrl-C to stop.")
            _wait_for_signal()
    # The example drops hold broken rows on purpose; the demo succeeded if it got this far.
    return ExitCode.OK


def _validate(args: argparse.Namespace, io: Io) -> int:
    settings = _load(args, io)
    if len(settings.inboxes) == 1:  # --inbox NAME, or a config that lists one inbox
        settings = settings.inboxes[0]
    if settings.mapping is None:
        names = ", ".join(inbox.name for inbox in settings.inboxes)
        if settings.inboxes:
            problem = (
                f"pass --inbox NAME to use that inbox's mapping ({names}), or --mapping "
                "FILE_OR_FOLDER"
            )
        elif settings.inbox_name is not None:  # --inbox NAME chose one that has none
            problem = (
                f'inbox "{settings.name}" has none (a mapping key in its table or at the top '
                "of the config file); pass --mapping FILE_OR_FOLDER"
            )
        else:
            problem = (
                "pass --mapping FILE_OR_FOLDER or set FILEDROP_MAPPING (or mapping in the "
                "config file)"
            )
        raise ConfigError(f"No mapping given; {problem}.")
    return _validate_file(io, args.file, settings.mapping, settings, as_json=args.json)


def _validate_file(
    io: Io, file: Path, mapping_path: Path, settings: Settings, *, as_json: bool
) -> int:
    """Map and check ``file`` with the mapping(s) at ``mapping_path``; print the summary and
    every problem (or the invoice JSON); 1 when a row needs attention, else 0."""
    from filedrop.mapping import load_mappings, select_mapping
    from filedrop.mapping.prepare import (
        DUPLICATE_RULES,
        REPEAT_OF_INVALID_RULE,
        payloads,
        prepare,
    )
    from filedrop.read import read_table

    _require_file(file)
    # A mapping file named on the command line is meant for this file whatever its name;
    # its required headers are still checked.
    mapping, table = select_mapping(
        load_mappings(mapping_path, invoice_types=settings.invoice_types),
        file,
        partial(read_table, limits=settings.read_limits()),
        ignore_names=mapping_path.is_file(),
    )
    prepared = prepare(table, mapping)
    if as_json:
        json.dump(payloads(prepared.invoices), io.stdout, ensure_ascii=False, indent=2)
        io.say()
    else:
        info = table.info
        how = (
            f"{info.encoding}, delimiter {info.delimiter!r}"
            if info.kind == "csv"
            else f"sheet {info.sheet!r}"
        )
        by_status = Counter(status for status, _ in prepared.rejected.values())
        invalid, skipped = by_status[RowStatus.INVALID], by_status[RowStatus.SKIPPED]
        io.say(
            mask_ids(
                f"{printable(file.name)}: mapping {mapping.name}; {how}; "
                f"header on row {info.header_row}"
            )
        )
        io.say(
            f"{plural(len(table), 'row')}, {plural(len(prepared.invoices), 'invoice')} to send, "
            f"{plural(len(table) - len(prepared.rejected), 'row')} valid, {invalid} invalid, "
            f"{by_status[RowStatus.DUPLICATE]} duplicate"
            + (f", {skipped} skipped (not invoices to send)" if skipped else "")
        )
        for problem in prepared.problems:
            # A repeated number or line is said as what it makes its row; other problems of
            # that row keep their own severity.
            label = "duplicate" if problem.rule in DUPLICATE_RULES else problem.severity
            # A repeated invoice number is the subject of its line, shown whole, and so is a
            # KID: one that reads like a national id was masked in its own message, and the
            # user was asked to fix a value they could not see (found by a hostile review).
            subject = problem.rule in ("duplicate", REPEAT_OF_INVALID_RULE, "kid")
            keep = (problem.value,) if subject and problem.value else ()
            io.say(mask_ids(printable(f"  {label}: {problem}"), keep=keep))
    # As for run: a DUPLICATE row is not sent again and a SKIPPED one is no invoice, nothing to
    # look at; an INVALID row is.
    attention = any(status is RowStatus.INVALID for status, _ in prepared.rejected.values())
    return ExitCode.ATTENTION if attention else ExitCode.OK


def _init(args: argparse.Namespace, io: Io) -> int:
    """Write the draft, then validate the file with it as ``validate`` does."""
    from filedrop.errors import EncodingContradictedError, EncodingUnsureError, MappingError
    from filedrop.mapping.draft import draft_mapping
    from filedrop.read import read_table

    settings = _load(args, io)
    # The default name comes from the export's: no control character of it reaches a file name.
    out: Path = args.out or Path(_CONTROL.sub("_", args.file.with_suffix(".toml").name))
    if out.exists() and not args.force:
        raise ConfigError(f"{out} already exists; pass --force to overwrite it, or choose --out.")
    _require_file(args.file)
    encoding = None if args.encoding is None else _init_encoding(args.encoding, args.file)
    read = partial(read_table, limits=settings.read_limits())
    try:
        draft = draft_mapping(args.file, read, encoding=encoding)
    except EncodingUnsureError as exc:
        # There is no mapping yet to set the encoding in: init takes it. The command is shown as
        # it can be typed again: quoted where a shell needs it, with the --out given.
        likely, taken = exc.encodings
        again = shlex.join(
            ["filedrop", "init", str(args.file), *(["--out", str(out)] if args.out else [])]
        )
        raise ReadError(
            exc.path,
            f"{exc.finding}; names would reach Amili garbled, so no mapping is drafted from it. "
            f"To read it so: {printable(again)} --encoding {likely} (or --encoding {taken} if it "
            "was read right)",
        ) from None
    except EncodingContradictedError as exc:
        raise ReadError(
            exc.path,
            f"{exc.finding}, but --encoding {encoding} was given; leave --encoding out "
            "(filedrop tells the encodings apart)",
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(draft.text, encoding="utf-8")
    io.say(f"Wrote {printable(str(out))}. Validating {printable(args.file.name)} with it:")
    try:
        code = _validate_file(io, args.file, out, settings, as_json=False)
    except MappingError as exc:  # a required field the draft could not place
        io.say(f"  {exc}")
        code = ExitCode.ATTENTION
    if draft.questions:
        io.say(f"Questions left in {printable(str(out))}:")
        for question in draft.questions:
            io.say(mask_ids(f"  - {question}"))
    # The command as it can be typed: a name with a space in it is quoted for the shell.
    check = shlex.join(["filedrop", "validate", str(args.file), "--mapping", str(out)])
    io.say(f"Edit {printable(str(out))}, then check it: {printable(check)}")
    return code


def _init_encoding(given: str, file: Path) -> str:
    """``init --encoding``'s value by its codec's own name, which the draft writes: as typed,
    a control character in it broke the draft's first comment line."""
    from filedrop.read import CSV_SUFFIXES

    if file.suffix.lower() not in CSV_SUFFIXES:
        raise ConfigError(
            f"--encoding is for CSV files; {printable(file.name)} is a workbook, whose text says "
            "its own encoding. Leave --encoding out."
        )
    try:
        return codecs.lookup(given).name
    except LookupError:
        shown = printable(given if len(given) <= 40 else f"{given[:40]}…")
        raise ConfigError(
            f'--encoding "{shown}" is not an encoding filedrop knows; use e.g. cp1252, cp865 '
            "or mac-roman."
        ) from None


def _sandbox(args: argparse.Namespace, io: Io) -> int:
    from filedrop.sandbox import SandboxOptions, serve

    low, _, high = args.delay.partition("-")
    try:
        delay = (float(low), float(high or low))
    except ValueError:
        raise ConfigError(
            f'--delay is "{args.delay}"; give seconds as N or A-B, e.g. 0.5-3.'
        ) from None
    options = SandboxOptions(
        client_id=args.client_id,
        client_secret=args.client_secret,
        delay_s=delay,
        token_lifetime_s=args.token_lifetime,
        rate_429=args.rate_429,
        rate_503=args.rate_503,
        rate_lost_response=args.rate_lost,
        seed=args.seed,
    )
    stop = threading.Event()
    _on_signals(stop)
    try:
        serve(options, host=args.host, port=args.port, stop=stop)
    except OSError as exc:  # the socket could not be bound; serving itself raises nothing
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"{args.host}:{args.port} is already in use; stop what listens there or pick "
                "another --port (0 picks a free one)."
            ) from exc
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); check --host "
            "and --port."
        ) from exc
    return ExitCode.OK


def _status(args: argparse.Namespace, io: Io) -> int:
    from filedrop.journal import Journal

    settings = _load(args, io)
    path = settings.journal_path
    _take_over_legacy(settings)
    if args.health:
        return _health(settings, path, io)
    # A lost journal is what a script or a person must act on (exit 1); nothing processed yet
    # is not. Said first, then what the journal holds all the same: another inbox's batches
    # pending or UNKNOWN still need their person.
    lost = _lost_journal_sentence(settings)
    if lost:
        io.say(lost)
    if not path.exists():
        if not lost:
            io.say(f"No journal at {path} yet: nothing has been processed.")
        return ExitCode.ATTENTION if lost else ExitCode.OK
    # --inbox NAME (or a config listing one inbox): only that inbox's files and batches.
    only = settings.inboxes[0] if len(settings.inboxes) == 1 else None
    with Journal(path) as journal:
        io.say(f"Journal: {path}")
        if only is None:
            _say_files(
                journal,
                io,
                ids=None,
                stale_s=settings.claim_stale_s,
                inbox_of=_inbox_namer(settings),
            )
            counts = journal.status_counts()
            if counts:
                io.say("Invoices by status: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        else:
            folder = only.require_inbox().resolve()
            io.say(
                mask_ids(
                    f"Inbox {only.name}: {printable(str(folder))}, "
                    f"{only.env or 'no environment'}, organisation {only.org_id or '(not set)'}"
                )
            )
            from filedrop.inbox import recorded_in

            # The journal is every inbox's: this one's files are those recorded in its folder.
            in_inbox = recorded_in(folder)
            everything = journal.files_changed_between(since=0.0, until=math.inf)
            files = [f for f in everything if in_inbox(f.path)]
            _say_files(journal, io, ids={f.id for f in files}, stale_s=settings.claim_stale_s)
            rows: Counter[str] = Counter()
            for f in files:
                rows.update(f.counts)
            if rows:
                io.say("Rows by status: " + ", ".join(f"{n} {s}" for s, n in sorted(rows.items())))
        _say_replicas(journal, settings, io)
    return ExitCode.ATTENTION if lost else ExitCode.OK


def _lost_journal_sentence(settings: Settings) -> str | None:
    """What says the journal was lost, as a run would find it before sending: no journal at its
    place while an inbox holds outcomes; or an outcome in an inbox showing invoices sent that
    the journal does not know (``inbox_lost_journal_evidence``, which is what holds a run
    back). An inbox whose environment or organisation is not set cannot have its outcomes read
    against the journal: for it, a journal that holds no file beside its outcomes is taken as
    lost. None when nothing says so."""
    from filedrop.journal import Journal
    from filedrop.journal.rebuild import (
        inbox_lost_journal_evidence,
        journal_lost_sentence,
        lost_journal_message,
    )

    path, setting = settings.journal_path, settings.where("state")
    if not path.exists():
        return journal_lost_sentence(
            path, _inbox_folders(settings), setting, limits=settings.read_limits()
        )
    with Journal(path) as journal:
        empty = not journal.recent_files(limit=1) and journal.started_fresh_at() is None
        for inbox in settings.each_inbox():
            if inbox.inbox is None:
                continue
            try:
                target = inbox.require_target()
            except ConfigError:
                lost = empty and journal_lost_sentence(
                    path, [inbox.inbox], setting, empty=True, limits=inbox.read_limits()
                )
                if lost:
                    return lost
                continue
            try:
                found = inbox_lost_journal_evidence(
                    inbox.inbox, journal, target=target, limits=inbox.read_limits()
                )
            except (*journal.errors, OSError):
                continue  # an inbox that cannot be listed now: the run says what it finds
            if found is not None:
                return f"{lost_journal_message(*found, path)}."
    return None


def _inbox_folders(settings: Settings) -> list[Path]:
    return [inbox.inbox for inbox in settings.each_inbox() if inbox.inbox is not None]


def _inbox_namer(settings: Settings) -> Callable[[FileRecord], str] | None:
    """For a config listing several inboxes: the name of the inbox whose folder holds a
    recorded file (two clients' invoices.csv told apart), "" for none of them."""
    if len(settings.inboxes) < 2:
        return None
    return lambda record: inbox.name if (inbox := _inbox_of(record, settings)) else ""


def _say_files(
    journal: Journal,
    io: Io,
    *,
    ids: set[int] | None,
    stale_s: float,
    inbox_of: Callable[[FileRecord], str] | None = None,
) -> None:
    """The recent files and the batches still pending or UNKNOWN: of the files ``ids`` (one
    inbox's), or of every file, each named with its inbox by ``inbox_of`` when it is given.

    A batch written down before its POST whose process is gone (lease ``stale_s``) is not
    waiting for an answer: no answer will come, and the next start makes it UNKNOWN. It is
    listed with the UNKNOWN ones."""
    from filedrop.journal import owner_alive
    from filedrop.journal.store import REBUILT_BATCH
    from filedrop.states import UNFINISHED_BATCH_STATES, BatchState, orphan_message

    def shown(file_id: int) -> bool:
        return ids is None or file_id in ids

    limit = 20 if ids is None else len(ids) + 20
    files = [f for f in journal.recent_files(limit=limit) if shown(f.id)][:20]
    io.say("Recent files:" if files else "No files yet.")

    def named(record: FileRecord) -> str:
        inbox = inbox_of(record) if inbox_of is not None else ""
        return printable(f"{inbox}: {record.name}" if inbox else record.name)

    for f in files:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.updated_at))
        counts = ", ".join(f"{n} {s}" for s, n in sorted(f.counts.items())) or "-"
        io.say(mask_ids(f"  {when}  {named(f)}  {f.state}  {counts}"))
    queued = [b for b in journal.batches(states=UNFINISHED_BATCH_STATES) if shown(b.file_id)]
    unknown = [b for b in journal.batches(states=(BatchState.UNKNOWN,)) if shown(b.file_id)]
    # Each file's record read once (a few files' batches): its name, and whether its sender
    # lives. A batch written down before its POST whose sender is gone waits for no answer:
    # it is UNKNOWN already in all but name (the next start makes it so), and listed as such,
    # with its numbers to look up; among the pending ones, it read as if it were polled.
    senders: dict[int, FileRecord] = {}
    for b in queued:
        if b.file_id not in senders:
            senders[b.file_id] = journal.file(b.file_id)
    now = time.time()
    orphans = [
        b
        for b in queued
        if b.state is BatchState.POSTING
        and not owner_alive(
            senders[b.file_id].owner,
            heartbeat=senders[b.file_id].heartbeat,
            now=now,
            stale_s=stale_s,
        )
    ]
    queued = [b for b in queued if b not in orphans]
    unknown = sorted(orphans + unknown, key=lambda b: b.id)
    if queued:
        io.say("Batches still pending (polled again by the next run or by watch):")
        for b in queued:
            what = b.batch_id or "(not answered yet)"
            io.say(
                mask_ids(
                    f"  #{b.id}  {named(senders[b.file_id])}  {what}  "
                    f"{plural(b.invoice_count, 'invoice')}"
                )
            )
    if unknown:
        io.say("Batches whose fate is UNKNOWN (never resent by themselves):")
        for b in unknown:
            numbers = journal.unknown_invoice_numbers(b.id)
            name = named(journal.file(b.file_id))
            said = b.message or orphan_message(b.id)
            io.say(mask_ids(f"  #{b.id}  {name}  {printable(said)}".rstrip()))
            io.say(f"    invoice numbers to look up: {', '.join(numbers)}")
            if b.message == REBUILT_BATCH and any(number.isdigit() for number in numbers):
                # Read back from an outcome that Excel may have saved, dropping zeros in front:
                # Amili knows 0001001, the operator found no 1001 there, said --not-sent, and
                # the invoice went twice (found by a hostile review of operator flows).
                io.say(
                    "    (as an outcome read back shows them: a spreadsheet program that saved "
                    "it drops zeros in front of a number, so look each up with zeros in front "
                    "too, as the input file has it)"
                )
        if len(unknown) == 1:
            io.say(
                f"Check with Amili, then: filedrop resolve {unknown[0].id} --sent   (or --not-sent)"
            )
        else:
            # One verdict for all would invite a blanket --not-sent: each batch is its own question.
            both = " ".join(str(b.id) for b in unknown[:2])
            io.say(
                f"Check each batch with Amili, then settle it: filedrop resolve {unknown[0].id} "
                f"--sent   (or --not-sent); batches with the same answer may go together, as in "
                f"filedrop resolve {both} --sent"
            )


def _say_replicas(journal: Journal, settings: Settings, io: Io) -> None:
    """Which process (host:pid:token:namespace) holds which file, since when, and whether its
    lease runs."""
    from filedrop.journal import owner_alive
    from filedrop.watch import heartbeat_stale_s

    def when(stamp: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))

    now = time.time()
    replicas = journal.replicas()
    if replicas:
        io.say("Watch daemons (replicas):")
    # A daemon killed outright (SIGKILL, a lost node) never takes its row out: it is listed,
    # and said to be gone, as --health would judge it.
    stale_s = heartbeat_stale_s(settings.heartbeat_s)
    for owner, started, beat in replicas:
        line = f"  {owner}  since {when(started)}  last heartbeat {now - beat:.0f} s ago"
        if now - beat > stale_s:
            line += "  (gone: heartbeats stopped)"
        elif not owner_alive(owner, heartbeat=beat, now=now, stale_s=stale_s):
            line += "  (gone: no longer running)"
        io.say(line)
    claims = journal.claims()
    if claims:
        io.say("Files being processed:")
    for record in claims:
        lease = (
            "lease running"
            if owner_alive(
                record.owner, heartbeat=record.heartbeat, now=now, stale_s=settings.claim_stale_s
            )
            else "lease expired; the next process takes it over"
        )
        io.say(
            f"  {printable(record.name)}  held by {record.owner}  since "
            f"{when(record.updated_at)}  ({lease})"
        )


def _take_over_legacy(settings: Settings) -> None:
    """A journal left inside the inbox by an older filedrop moves to its place now."""
    from filedrop.journal.engines import PostgresLocation
    from filedrop.journal.location import take_over_legacy

    path = settings.journal_path
    if isinstance(path, PostgresLocation):
        return  # a server's journal is never at the old place; see open_journal
    for inbox in settings.each_inbox():
        if inbox.inbox is not None and inbox.inbox.is_dir():
            take_over_legacy(path, inbox=inbox.inbox)


def _health(settings: Settings, path: Path, io: Io) -> int:
    """Whether this host's (or this container's) watch daemon is alive.

    With a metrics port, the daemon itself is asked (its /healthz, answered with a token only
    this filesystem knows); otherwise its heartbeat in the journal is read.
    """
    from filedrop.journal import Journal, owner_alive
    from filedrop.watch import heartbeat_stale_s

    if settings.metrics_port:
        return _health_from_the_daemon(settings.metrics_port, io)

    for each in settings.each_inbox():
        inbox = each.require_inbox()
        if not os.access(inbox, os.R_OK | os.X_OK):
            print(f"filedrop: unhealthy: the inbox {inbox} is not readable.", file=io.stderr)
            return ExitCode.ATTENTION
    if not path.exists():
        print(
            f"filedrop: unhealthy: no journal at {path}; is filedrop watch running?", file=io.stderr
        )
        return ExitCode.ATTENTION
    with Journal(path) as journal:
        beats = journal.replicas()
    # Several replicas may share the journal: this host's daemon is the one asked about.
    here = [b for b in beats if b[0].partition(":")[0] == socket.gethostname()] or beats
    beat = (here[0][0], here[0][2]) if here else None
    # Several missed beats, or a daemon process that is gone, is unhealthy even if the journal
    # still holds a recent beat.
    now = time.time()
    stale_s = heartbeat_stale_s(settings.heartbeat_s)
    if beat is None:
        problem = (
            "no watch daemon has written a heartbeat to this journal; this check is for "
            "'filedrop watch' (a 'filedrop run' tells by its exit code)"
        )
    elif now - beat[1] > stale_s:
        problem = f"the watch daemon's last heartbeat was {now - beat[1]:.0f} s ago"
    elif not owner_alive(beat[0], heartbeat=beat[1], now=now, stale_s=stale_s):
        problem = f"the watch daemon {beat[0]} is no longer running"
    else:
        problem = None
    if problem is not None:
        print(f"filedrop: unhealthy: {problem}.", file=io.stderr)
        return ExitCode.ATTENTION
    assert beat is not None  # a missing beat is a problem above
    io.say(f"healthy: heartbeat {now - beat[1]:.0f} s ago from {beat[0]}")
    return ExitCode.OK


def _health_from_the_daemon(port: int, io: Io) -> int:
    """Ask the watch daemon of this filesystem (this container) on 127.0.0.1:``port``."""
    from filedrop.metrics import probe_health

    problem = probe_health(port)
    if problem is not None:
        print(f"filedrop: unhealthy: {problem}.", file=io.stderr)
        return ExitCode.ATTENTION
    io.say(f"healthy: the watch daemon answers on port {port}")
    return ExitCode.OK


def _resolve(args: argparse.Namespace, io: Io) -> int:
    """Settle every batch named, then rewrite the outcome of each file they came from."""
    from filedrop.journal import Journal, NotSettledError
    from filedrop.states import BatchState, FileState

    settings = _load(args, io)
    _take_over_legacy(settings)
    if not settings.journal_path.exists():
        raise ConfigError(f"No journal at {settings.journal_path}; check FILEDROP_STATE.")
    with Journal(settings.journal_path) as journal:
        # Every batch is checked before any is settled: a typo in the third number must not
        # leave the first two settled and the rest not.
        batches = []
        records: dict[int, FileRecord] = {}  # each batch's file, as it was checked
        for ref in dict.fromkeys(args.batches):
            batch = journal.find_batch(ref)
            if batch is None:
                named = ref if len(ref) <= 60 else f"{ref[:40]}... ({len(ref):,} characters)"
                raise ConfigError(
                    f"No batch \"{named}\" in {settings.journal_path}; 'filedrop status' lists "
                    "them."
                )
            if batch.state is BatchState.POSTING:
                # Its run may be waiting for the answer right now. One whose process is gone
                # never gets it: that is as UNKNOWN as the next run of its file would make it
                # (a run held back by a sending mark never does). Gone by its lease alone: a
                # process ID says nothing of a run in another container of the same host name,
                # and a batch released while its POST still goes would be sent twice.
                sender = journal.file(batch.file_id)
                lease_left = settings.claim_stale_s - (time.time() - (sender.heartbeat or 0.0))
                if _held_by_live_run(sender, settings) or (
                    sender.state is FileState.CLAIMED and lease_left > 0
                ):
                    raise ConfigError(
                        f"Batch #{batch.id} may still be on its way: the filedrop process "
                        "sending it ('filedrop status' lists the file) may be alive; resolve it "
                        f"once that has finished, or its lease has run out (in "
                        f"{max(lease_left, 0):.0f} s at most if it has stopped)."
                    )
            elif batch.state is not BatchState.UNKNOWN:
                raise ConfigError(
                    f"Batch #{batch.id} is {batch.state}, not UNKNOWN; nothing to resolve."
                )
            record = journal.file(batch.file_id)
            if settings.inboxes and _inbox_of(record, settings) is None:
                which = (
                    f"inbox {settings.inboxes[0].name}"
                    if len(settings.inboxes) == 1
                    else "any inbox of the config"
                )
                raise ConfigError(
                    f"Batch #{batch.id} is of {printable(record.name)} in "
                    f"{printable(str(Path(record.path).parent))}, which is not the folder of "
                    f"{which}; name its own inbox with --inbox."
                )
            records[batch.id] = record
            batches.append(batch)
        # Named twice ('#1' and '1', or by its API id too): settled once. Twice, the second
        # said it was settled meanwhile by another process, and the command exited 1.
        batches = list({batch.id: batch for batch in batches}.values())
        note = "checked with Amili: received" if args.sent else "checked with Amili: not received"
        verdict = "will never be sent again" if args.sent else "will be sent by the next run"
        settled = []
        for batch in batches:
            record = records[batch.id]
            if _held_by_live_run(record, settings):
                # Its run would write an outcome that does not know of the change, and could
                # end the file before the invoices released here are sent.
                io.say(
                    f"Batch #{batch.id}: not settled, as {printable(record.name)} is being "
                    "processed by a filedrop process right now; resolve it once that has "
                    "finished, or stop that process ('filedrop status' lists the file)."
                )
                continue
            try:
                # The claim seen, if any, is one whose run is gone: the journal checks that it
                # is still the only one when it writes.
                holder = record.owner if record.state is FileState.CLAIMED else None
                changed = journal.resolve_batch(batch.id, sent=args.sent, note=note, holder=holder)
            except NotSettledError as why:
                io.say(f"Batch #{batch.id}: not settled, as {why}.")
                continue
            settled.append(batch)
            told = verdict
            if not args.sent and (
                record.state is FileState.GONE or not os.path.lexists(record.path)
            ):  # no run takes a file up that is not there
                told = "will be sent once the same file is dropped again (it is gone)"
            io.say(f"Batch #{batch.id}: {plural(changed, 'invoice')} {told}.")
        for file_id in dict.fromkeys(batch.file_id for batch in settled):
            # One line naming the file, its path and its outcome's: each shown printable.
            io.say(mask_ids(printable(_rewrite_outcome(journal, file_id, settings))))
    return ExitCode.OK if len(settled) == len(batches) else ExitCode.ATTENTION


def _rewrite_outcome(journal: Journal, file_id: int, settings: Settings) -> str:
    """Rewrite one file's outcome after ``resolve``; what happened, as one line to print."""
    from filedrop.mapping import load_mappings
    from filedrop.pipeline import rewrite_outcome

    record = journal.file(file_id)
    # The next run of the file (the same bytes) resumes it and writes the outcome then.
    kept = "the journal keeps the change, and the next run of the file writes it"
    if _held_by_live_run(record, settings):
        # Taken up since it was settled: that run reads the change and writes the outcome.
        # One whose holder is gone is rewritten here, as any other file.
        return f"{record.name}: being processed now; that run writes its outcome."
    own = _inbox_of(record, settings) or settings
    if own.mapping is None:
        journal.leave_waiting(file_id)
        return (
            f"{record.name}: its outcome was not rewritten, since no mapping is set "
            f"(FILEDROP_MAPPING); {kept}."
        )
    try:
        mappings = load_mappings(own.mapping, invoice_types=own.invoice_types)
        rewritten = rewrite_outcome(
            record, journal, mappings, limits=own.read_limits(), inbox=own.name
        )
    except FiledropError as exc:
        journal.leave_waiting(file_id)
        return f"{record.name}: its outcome was not rewritten ({exc}); {kept}."
    if rewritten is None:
        return (
            f"{record.name}: the input {record.path} is gone or has changed, so its outcome "
            "was not rewritten; the journal keeps the change."
        )
    outcome, counts = rewritten
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{record.name}: {shown}; outcome rewritten: {outcome}"


def _held_by_live_run(record: FileRecord, settings: Settings) -> bool:
    """Whether a run that is still at work holds the file (``resolve`` leaves it to that run)."""
    from filedrop.journal import owner_alive
    from filedrop.states import FileState

    return record.state is FileState.CLAIMED and owner_alive(
        record.owner, heartbeat=record.heartbeat, now=time.time(), stale_s=settings.claim_stale_s
    )


def _inbox_of(record: FileRecord, settings: Settings) -> Settings | None:
    """The settings of the inbox, among those named here, whose folder holds ``record``."""
    from filedrop.inbox import in_folder

    for inbox in settings.each_inbox():
        if inbox.inbox is not None and in_folder(record.path, inbox.inbox.resolve()):
            return inbox
    return None


def _journal_rebuild(args: argparse.Namespace, io: Io) -> int:
    """Read the outcomes back into the journal, or (``--fresh``) start an empty one on purpose.

    Every inbox of a config is read back into the one journal they share (``--inbox NAME``:
    that one): the lost-journal message tells users of a config to run this, and it only asked
    for FILEDROP_INBOX."""
    from filedrop.inflight import unknown_mark
    from filedrop.journal.location import open_journal
    from filedrop.journal.rebuild import rebuild_journal

    settings = _load(args, io)
    inboxes = [
        (each, each.require_inbox(), each.require_target()) for each in settings.each_inbox()
    ]
    if args.fresh:
        return _start_fresh(settings, [folder for _, folder, _ in inboxes], io)
    _take_over_legacy(settings)
    path = settings.journal_path
    attention = False
    with open_journal(
        path, inbox=None, allow_network=settings.allow_network_journal, clock=time.time
    ) as journal:
        for each, folder, target in inboxes:
            report = rebuild_journal(
                journal, inbox=folder, target=target, limits=each.read_limits()
            )
            indent = ""
            if settings.inboxes:
                io.say(f"Inbox {each.name} ({printable(str(folder))}):")
                indent = "  "
            attention |= _say_rebuilt(report, path, io, indent=indent)
            # A rebuild reads outcomes, not marks: one still holding the inbox back is said
            # here, or the rebuild read as done and the next run was refused again (found by a
            # hostile review of operator flows).
            mark = unknown_mark(folder, journal, target=target)
            if mark is not None:
                io.say(indent + f"Still: {mark.sentence(path)}.")
                attention = True
    return ExitCode.ATTENTION if attention else ExitCode.OK


def _say_rebuilt(report: RebuildReport, path: Path, io: Io, *, indent: str) -> bool:
    """What one inbox's rebuild did; whether something needs a person."""

    def say(text: str) -> None:
        io.say(indent + text)

    say(
        f"Read {plural(report.outcomes, 'outcome file')} back into the journal {path}: "
        f"{report.files} files and {report.invoices} invoice numbers recorded; "
        f"{report.queued_batches} PENDING batches are polled again by the next run or watch, and "
        f"{report.unknown_batches} UNKNOWN batches wait for 'filedrop resolve'."
    )
    if report.taken_again:
        say(
            f"The next run takes again {plural(report.taken_again, 'file')} whose input is in "
            "the inbox (perhaps a newer version): nothing an outcome shows sent is sent again, "
            "anything new is, and every row gets its status."
        )
    if report.sandbox:
        say(
            f"{plural(report.sandbox, 'outcome')} of sandbox runs not read back: nothing in "
            "them went to Amili."
        )
    for unreadable in report.unreadable:
        say(mask_ids(f"  not read: {unreadable}"))
    for outcome, old, new in report.renumbered:
        say(
            f"{printable(outcome)} says to resolve its UNKNOWN rows as batch #{old}, but #{old} "
            f"is another batch in this journal: they are batch #{new} now, so run 'filedrop "
            f"resolve {new} --sent' or '--not-sent' for them, not {old}."
        )
    if report.rows_without_number:
        say(
            f"{report.rows_without_number} rows that were sent could not be rebuilt: their "
            "outcomes were written before filedrop recorded each row's invoice number in them "
            "(outcome_invoice_number), so a new file with those numbers would send them again; "
            "check them with Amili."
        )
    return bool(report.unreadable or report.rows_without_number or report.renumbered)


def _start_fresh(settings: Settings, folders: list[Path], io: Io) -> int:
    """Put the journal (and any left at the old place in an inbox) aside; start an empty one."""
    from filedrop.journal.engines import PostgresLocation
    from filedrop.journal.location import legacy_journal_path, open_journal, retire

    path = settings.journal_path
    if isinstance(path, PostgresLocation):
        raise ConfigError(
            f"journal rebuild --fresh keeps a SQLite journal aside as a backup; for {path}, "
            "back up and empty the database yourself (pg_dump, then drop its tables), "
            "then run 'filedrop journal rebuild'."
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for old in (path, *map(legacy_journal_path, folders)):
        if old.is_file():
            backup = old.with_name(f"{old.name}.before-fresh-{stamp}")
            retire(old, backup)
            io.say(f"The journal {old} is kept as {backup}.")
    with open_journal(
        path, inbox=None, allow_network=settings.allow_network_journal, clock=time.time
    ) as journal:
        journal.mark_started_fresh()
    shown = ", ".join(map(str, folders))
    io.say(
        f"Started an empty journal at {path}: the files in {shown} are processed again as new "
        "by the next run, and every invoice in them is sent again."
    )
    return ExitCode.OK


#: Signals that end a command early but whole. SIGHUP too: the terminal or SSH session a daemon
#: was started from closing killed it outright, and a POST on its way became UNKNOWN.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _on_signals(stop: threading.Event) -> None:
    for sig in (*_STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


@contextlib.contextmanager
def _stopped_by_sigterm(stop: threading.Event, io: Io) -> Iterator[None]:
    """SIGTERM (a CronJob's pod evicted, systemd stopping its unit), SIGHUP (its terminal
    closed) or a first Ctrl-C sets ``stop`` meanwhile: a run or a daemon then ends early but
    whole (the POSTs on their way are recorded, the rest resumes at the next run), instead of
    dying with batches whose fate nobody recorded. A second Ctrl-C ends the process at once;
    the first says so, with text logs (a line for a person at a terminal, not one among JSON
    logs)."""
    stderr = io.stderr
    hint = io.settings.log_format == "text"

    def first_interrupt(*_: object) -> None:
        # Ctrl-C stops as SIGTERM does: dying at once made a POST on its way UNKNOWN, for
        # 'filedrop resolve'. A second Ctrl-C is the way out of a wait the user will not sit out,
        # said at once, with what it costs.
        signal.signal(signal.SIGINT, second_interrupt)
        stop.set()
        if hint:
            _say_at_once(
                stderr,
                "filedrop: stopping once the work on its way is recorded; press Ctrl-C again to "
                "stop at once (a batch on its way is then UNKNOWN, for 'filedrop resolve').\n",
            )

    def second_interrupt(*_: object) -> NoReturn:
        # At once, as a kill would: raised as KeyboardInterrupt instead, it unwound through the
        # thread pools, whose exits wait for the POSTs on their way (30 s against a stalled
        # Amili). The journal is built to survive a kill: the next run names any batch whose
        # answer was not recorded, as UNKNOWN with the way to settle it.
        _say_at_once(
            stderr,
            "filedrop: interrupted again; stopped at once. The next run names any batch whose "
            "answer was not recorded.\n",
        )
        _remove_readers_folder()
        os._exit(ExitCode.INTERRUPTED)

    try:
        previous = [(sig, signal.signal(sig, lambda *_: stop.set())) for sig in _STOP_SIGNALS]
        previous.append((signal.SIGINT, signal.signal(signal.SIGINT, first_interrupt)))
    except ValueError:  # not the main thread (an embedding program): its signals are its own
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)


def _say_at_once(stream: TextIO, text: str) -> None:
    """Write ``text`` from a signal handler: straight to the descriptor, as the stream's own
    buffer may be held by the very frame the signal interrupted."""
    try:
        os.write(stream.fileno(), text.encode("utf-8", "replace"))
    except (OSError, ValueError, AttributeError):  # a stream without a descriptor (a test's)
        print(text, end="", file=stream)


def _wait_for_signal() -> None:
    stop = threading.Event()
    _on_signals(stop)
    stop.wait()


def _report(args: argparse.Namespace, io: Io) -> int:
    import datetime as dt

    from filedrop.logs import plural
    from filedrop.report import Period, make_report

    period = Period.from_options(
        since=args.since, until=args.until, days=args.days, now=dt.datetime.now(dt.UTC)
    )
    settings = _load(args, io)
    # A digest of nothing would read as "all clear" every day after a typo in the setting, or
    # after the journal was lost and a refused run opened an empty one.
    lost = _lost_journal_sentence(settings)
    if lost or not settings.journal_path.exists():
        raise ConfigError(
            lost
            or f"No journal at {settings.journal_path}; check {settings.where('state')} "
            "(filedrop run and watch write it)."
        )
    digest, page, book = make_report(settings, period=period, out=args.out)
    files = sum(len(inbox.files) for inbox in digest.inboxes)
    attention = sum(len(inbox.attention) for inbox in digest.inboxes)
    inboxes = plural(len(digest.inboxes), "inbox", "inboxes")
    needs = "row needs" if attention == 1 else "rows need"
    io.say(f"{period.text()}: {plural(files, 'file')} in {inboxes}, {attention} {needs} a person.")
    io.say(mask_ids(f"  {page}"))
    io.say(mask_ids(f"  {book}"))
    return ExitCode.OK
