"""How close `filedrop run` comes to what the API itself costs, and what it costs in CPU and
memory, against the obvious baselines, all measured in one run on this machine.

    python bench/bench.py                  # 50,000-row xlsx and 200,000-row CSV (~20 minutes)
    python bench/bench.py --million        # and a 1,000,000-row CSV (filedrop run alone)
    python bench/bench.py --profile        # and where filedrop's own time goes (py-spy)
    python bench/bench.py --latency-ms 0   # the sandbox answers at once (~10 minutes)
    python bench/bench.py --rows-xlsx 5000 --rows-csv 20000 --skip-openpyxl --skip-peer  # a look
    FILEDROP_CLIENT_ID=.. FILEDROP_CLIENT_SECRET=.. FILEDROP_ORG_ID=.. \\
        python bench/bench.py --url https://api.example [--auth-url https://auth.example]

Inputs are generated once into bench/out/ (17 columns, the norwegian-erp layout, all rows valid).
By default every client talks to `filedrop sandbox` with batches ending at their first poll,
answering each request after 90 ms (--latency-ms), served by bench/server.py in a process of its
own (a fresh one for each client, so none inherits another's batches); with --url, to that API
instead (the three clients then send the same invoice numbers, so use an environment that takes
repeats). The 90 ms are what the speed issue's own measurement implies: its API floors (12.2 s
for the 50,000-row xlsx, about 47 s for the 200,000-row CSV, 4 POSTs in flight) take about that
long per request; a sandbox answering at once (--latency-ms 0) has floors of 2 and 6 s here,
shorter than reading the file, which no client can send before it has read.

What it prints, for each file, and how each figure is taken:

- Baselines: ``pandas.read_excel(engine="openpyxl")`` of the xlsx (``--skip-openpyxl``: estimated
  as 11x calamine) and ``pandas.read_csv`` of the CSV, timed in this process.
- Peer: bench/peer.py, the plain pandas + requests script a developer would write instead (read,
  build the JSON, POST each batch in turn on one ``requests.Session``, poll every batch on the
  guide's schedule, write a status column with pandas), as its own process: wall time.
- API floor: bench/floor.py as its own process (one token, bodies encoded before the clock starts,
  4 POSTs in flight over keep-alive connections, each batch polled once 1 s after its POST): wall
  time from the first POST to the last batch result, and its own CPU meanwhile (``os.times``), per
  batch too: what the least a client does, a POST and a poll, costs on this host while the server
  shares it.
- filedrop run: a real ``python -m filedrop run`` on a one-file inbox. Wall time from its start to
  its exit. Own CPU is user + sys from ``os.wait4`` on the run process, which includes the children
  it waited for, plus any it left behind (the workbook reader's forkserver, reaped by the launcher
  as subreaper). Peak RSS is ``ru_maxrss``: the largest of those processes, not their sum. Every
  client is started by bench/launch.py, a small process, since a child forked by the bench itself
  would report the bench's own peak. The server's CPU is not in it (it is printed apart).
- Its CPU by thread: each thread's own CPU clock, read as the run exits (bench/threadcpu, put
  on the run's PYTHONPATH, records it; a function call per thread, nothing per request), summed
  by kind (the file's thread, the posting and polling pools, the thread preparing a long file's
  later parts, the main thread); what they leave of the own CPU is the workbook reader child's.
  Unlike the stage costs below, they add up to the run's own CPU, waiting included.
- Stages in the run: from the run's own JSON log (millisecond times): start-up until the file is
  claimed; read, map and validate until it knows what to send (a file of more than 10,000 rows:
  until its first batch was answered, as its later parts are prepared while the first batches go
  out); sending and polling until the last batch ended; the outcome until its log line; then the
  exit. Wall time, as the process lived it.
- Stage costs, in this process: the library's own calls timed in CPU seconds (this process and
  its children): ``read_table`` (a workbook parsed in this process, not in the run's child),
  ``prepare`` (map and validate), ``payloads`` and ``encode_invoices`` for every batch as the
  run makes its bodies (JSON), ``AmiliClient.create_invoices`` of those bodies and ``get_batch``
  against a fresh sandbox for a sample of batches, scaled to all batches (HTTP; not with --url), a
  journal loop on a fresh SQLite file (claim, submitted, finished for every batch, then every
  invoice read back, as the outcome does), and ``write_outcome`` of every row (outcome). Their sum
  beside the run's own CPU shows what start-up, threads and waiting add.
- HTTP economy, from the server's record of every request (bench/server.py; with --url from the
  run's log, and polls are not seen): tokens issued (1), invoice POSTs (ceil(invoices / batch
  size)), the shortest wait between a batch's POST and its first poll and between two polls of
  one batch (>= 1 s), and rows UNKNOWN in the run's outcome (0).
- Ratios against the targets, each marked met or NOT met: own CPU xlsx / openpyxl read (<= 0.30),
  200,000-row CSV own CPU (<= 8 s), wall / API floor for both files (<= 1.15), peak RSS (<= 250 MB
  xlsx, <= 300 MB CSV); with --million, the 1,000,000-row CSV's peak RSS (<= 1 GB) and own CPU
  (<= 5.5x the 200,000-row figure).
- With --profile, one more run of each file under ``py-spy record --format raw --gil`` (only the
  thread holding the interpreter lock is sampled, that is what runs Python code: without --gil,
  py-spy counted threads blocked in a socket or a lock wait as busy); prints the 15 functions
  with the most own samples and the share of samples in each stage (a sample belongs to the
  stage of the innermost frame that names one). The profiled run is slower than the timed one
  and is never used for the figures above.

The machine is shared (2 cores here): figures move by 10-20 % between runs. Compare figures from
one run, never across runs.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import xlsxwriter

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
MAPPING = ROOT / "mappings" / "norwegian-erp.toml"
ORG_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
HEADERS = [
    "Fakturanr", "Fakturadato", "Forfallsdato", "Beløp", "Valuta", "KID", "Kundenr", "Kundetype",
    "Fornavn", "Etternavn", "Fødselsnr", "Orgnr", "E-post", "Mobil", "Adresse", "Postnr",
    "Poststed",
]  # fmt: skip
FIRST = ["Åse", "Bjørn", "Kåre", "Sigrid", "Håkon", "Tone", "Jørgen", "Mari", "Øyvind", "Live"]
LAST = ["Kristiansen", "Ødegård", "Hølland", "Løvås", "Bråthen", "Ågesen", "Fjære", "Strøm"]
STAGES = ("read", "map and validate", "JSON", "HTTP", "journal", "outcome")
#: What each kind of thread of a run does (bench/threadcpu names them).
_THREAD_KINDS = {
    "filedrop-file": "file: read, JSON, results, outcome",
    "filedrop-post": "posting: claim, POST, record",
    "filedrop-poll": "polling: GET, parse",
    "prepare": "preparing later parts: map, validate",
    "main": "main: start-up, inbox, token",
    "filedrop-poller": "poll scheduler",
    "filedrop-deflate": "deflating the xlsx outcome",
}
HTTP_SAMPLE_BATCHES = 200
OPENPYXL_PER_CALAMINE = 11  # measured on this machine; only for --skip-openpyxl


def national_ids(count: int) -> list[str]:
    """Distinct synthetic fødselsnumre with valid check digits (python-stdnum computes them)."""
    from stdnum.no import fodselsnummer

    found: list[str] = []
    serial = 0
    while len(found) < count:
        serial += 1
        base = f"{1 + serial % 28:02d}{1 + (serial // 28) % 12:02d}8{serial % 10}{serial % 500:03d}"
        k1 = fodselsnummer.calc_check_digit1(base)
        if len(k1) != 1:
            continue
        candidate = base + k1 + fodselsnummer.calc_check_digit2(base + k1)
        if fodselsnummer.is_valid(candidate):
            found.append(candidate)
    return found


def rows(count: int) -> list[list[object]]:
    ids = national_ids(min(count, 5000))
    start = dt.date(2024, 1, 1)
    out: list[list[object]] = []
    for n in range(count):
        invoice_date = start + dt.timedelta(days=n % 300)
        out.append([
            f"B{n:07d}", invoice_date, invoice_date + dt.timedelta(days=14),
            round(100 + (n * 37) % 90_000 + (n % 100) / 100, 2), "NOK", "", str(10_000 + n % 9000),
            "P", FIRST[n % len(FIRST)], LAST[n % len(LAST)], ids[n % len(ids)], "",
            f"kunde{n}@example.no", f"9{n % 10_000_000:07d}", f"Storgata {n % 200 + 1}",
            f"{n % 9000 + 1000:04d}", "Oslo",
        ])  # fmt: skip
    return out


def write_xlsx(path: Path, count: int) -> None:
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = workbook.add_worksheet("Fakturaer")
    date_format = workbook.add_format({"num_format": "dd.mm.yyyy"})
    sheet.write_row(0, 0, HEADERS)
    for r, row in enumerate(rows(count), start=1):
        for c, value in enumerate(row):
            if isinstance(value, dt.date):
                sheet.write_datetime(r, c, dt.datetime.combine(value, dt.time()), date_format)
            elif isinstance(value, float):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, value)
    workbook.close()


def write_csv(path: Path, count: int) -> None:
    lines = [";".join(HEADERS)]
    for row in rows(count):
        cells = [
            v.strftime("%d.%m.%Y") if isinstance(v, dt.date)
            else f"{v:.2f}".replace(".", ",") if isinstance(v, float)
            else str(v)
            for v in row
        ]  # fmt: skip
        lines.append(";".join(cells))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))


# ------------------------------------------------------------------------------------ processes


@dataclass
class Usage:
    """What one child process cost: wall seconds, CPU seconds (user + sys, and sys alone), peak
    RSS in MB."""

    wall_s: float
    cpu_s: float
    peak_mb: float
    code: int
    started_at: float  # time.time() when it was started
    ended_at: float  # time.time() when it had ended: the log's clock, which may be stepped
    log: Path  # its stderr; its stdout is beside it, .out
    sys_s: float = 0.0  # the kernel's part of cpu_s: system calls, page faults, switches


def run_process(cmd: list[str], *, env: dict[str, str], log: Path) -> Usage:
    """Run ``cmd`` to its end through bench/launch.py, which measures it (see why there)."""
    report = log.with_suffix(".usage.json")
    launcher = [sys.executable, str(BENCH / "launch.py"), str(report), "--", *cmd]
    with log.open("w") as err, log.with_suffix(".out").open("w") as out:
        subprocess.run(launcher, env=env, stdout=out, stderr=err, cwd=ROOT, check=True)
    cost = json.loads(report.read_text())
    if cost["not_reaped"]:
        print(f"  (note: {cost['not_reaped']} process(es) left by {cmd[1:4]} not counted)")
    return Usage(
        cost["wall_s"],
        cost["cpu_s"],
        cost["peak_mb"],
        cost["code"],
        cost["started_at"],
        cost["ended_at"],
        log,
        cost["sys_s"],
    )


def cpu_now() -> float:
    """CPU seconds of this process and the children it has reaped."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ------------------------------------------------------------------------------------ the API


@dataclass
class Api:
    """Where a client sends, with what; ``record`` is the server's account once it stopped
    (None for a server not ours)."""

    auth_url: str
    api_url: str
    org_id: str
    client_id: str
    client_secret: str = field(repr=False)
    record: dict[str, Any] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FILEDROP_CLIENT_ID": self.client_id,
            "FILEDROP_CLIENT_SECRET": self.client_secret,
        }


@contextlib.contextmanager
def serving(args: argparse.Namespace, tag: str) -> Iterator[Api]:
    """A fresh sandbox process (bench/server.py) for one client, or the API given by --url."""
    if args.url:
        yield Api(
            auth_url=args.auth_url or args.url,
            api_url=args.url,
            org_id=os.environ["FILEDROP_ORG_ID"],
            client_id=os.environ["FILEDROP_CLIENT_ID"],
            client_secret=os.environ["FILEDROP_CLIENT_SECRET"],
        )
        return
    record = OUT / f"server-{tag}.json"
    record.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "server.py"), str(record), str(args.latency_ms / 1000)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        if not url.startswith("http"):
            raise SystemExit("bench/server.py did not start; run it by hand to see why")
        api = Api(url, url, ORG_ID, "bench", "bench-secret")
        yield api
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    api.record = json.loads(record.read_text())


@dataclass
class Economy:
    """The HTTP a client spent, as the server saw it."""

    tokens: int
    posts: int
    polls: int
    first_poll_s: float | None  # the shortest wait from a batch's POST to its first poll
    repoll_s: float | None  # the shortest wait between two polls of one batch
    server_cpu_s: float


def economy(record: dict[str, Any]) -> Economy:
    posted: dict[str, float] = {}
    polled: dict[str, list[float]] = {}
    tokens = posts = 0
    for at, method, target, _status, batch_id in record["requests"]:
        path = target.split("?")[0]
        if method == "POST" and path.endswith("/token"):
            tokens += 1
        elif method == "POST" and path.endswith("/invoices"):
            posts += 1
            if batch_id:
                posted[batch_id] = at
        elif method == "GET" and "/batches/" in path:
            polled.setdefault(path.rsplit("/", 1)[-1], []).append(at)
    firsts = [times[0] - posted[b] for b, times in polled.items() if b in posted]
    gaps = [
        later - earlier for times in polled.values() for earlier, later in itertools.pairwise(times)
    ]
    return Economy(
        tokens=tokens,
        posts=posts,
        polls=sum(len(times) for times in polled.values()),
        first_poll_s=min(firsts, default=None),
        repoll_s=min(gaps, default=None),
        server_cpu_s=record["cpu_s"],
    )


# ---------------------------------------------------------------------------------- the clients


def run_peer(source: Path, api: Api, args: argparse.Namespace) -> Usage:
    cmd = [
        sys.executable,
        str(BENCH / "peer.py"),
        str(source),
        "--auth-url",
        api.auth_url,
        "--api-url",
        api.api_url,
        "--org-id",
        api.org_id,
        "--batch-size",
        str(args.batch_size),
    ]
    usage = run_process(cmd, env=api.env(), log=OUT / f"peer-{source.stem}.log")
    if usage.code != 0:
        raise SystemExit(f"bench/peer.py exited {usage.code}; see {usage.log}")
    return usage


@dataclass(frozen=True)
class Floor:
    """The API floor's run: its wall time, and its own CPU while the clock ran."""

    wall_s: float
    cpu_s: float
    posts: int


def run_floor(bodies: Path, api: Api, args: argparse.Namespace) -> Floor:
    cmd = [
        sys.executable,
        str(BENCH / "floor.py"),
        str(bodies),
        "--auth-url",
        api.auth_url,
        "--api-url",
        api.api_url,
        "--org-id",
        api.org_id,
        "--in-flight",
        str(args.concurrent),
    ]
    usage = run_process(cmd, env=api.env(), log=OUT / f"floor-{bodies.stem}.log")
    if usage.code != 0:
        raise SystemExit(f"bench/floor.py exited {usage.code}; see {usage.log}")
    said = json.loads(usage.log.with_suffix(".out").read_text())
    return Floor(float(said["wall_s"]), float(said["cpu_s"]), int(said["posts"]))


@dataclass
class Run:
    """One ``filedrop run``: its usage, the phases its log shows, its rows by status."""

    usage: Usage
    phases: dict[str, float]
    statuses: dict[str, int]
    invoices: int  # what its log says it sent
    threads: dict[str, tuple[int, float]] = field(default_factory=dict)  # kind -> (n, CPU s)


def run_filedrop(
    source: Path,
    api: Api,
    args: argparse.Namespace,
    *,
    profile: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """``filedrop run`` on a one-file inbox in a real process (under py-spy with ``profile``);
    ``extra_env`` adds settings (``bench/journal.py`` points FILEDROP_STATE elsewhere)."""
    # Bytecode as an installed filedrop has it (pip compiles at install): a source checkout run
    # with PYTHONDONTWRITEBYTECODE set, as in containers, would compile every module on every
    # run, some 0.2 s of CPU no user pays. Nothing is done for modules already compiled.
    compileall.compile_dir(ROOT / "filedrop", quiet=1)
    inbox = OUT / f"inbox-{source.stem}"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    shutil.copy(source, inbox / source.name)
    old = time.time() - 3600
    os.utime(inbox / source.name, (old, old))
    threads = OUT / f"threads-{source.stem}.json"
    threads.unlink(missing_ok=True)
    # A fresh journal for every run: the user's own would remember the last run's invoices.
    journal = OUT / f"journal-{source.stem}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    env = {
        **api.env(),
        "FILEDROP_STATE": str(journal),
        "FILEDROP_ENV": "sandbox" if not args.url else os.environ.get("FILEDROP_ENV", "staging"),
        "FILEDROP_AUTH_URL": api.auth_url,
        "FILEDROP_API_URL": api.api_url,
        "FILEDROP_ORG_ID": api.org_id,
        "FILEDROP_INBOX": str(inbox),
        "FILEDROP_MAPPING": str(MAPPING),
        "FILEDROP_STABILITY_S": "0",
        "FILEDROP_BATCH_SIZE": str(args.batch_size),
        "FILEDROP_CONCURRENT_BATCHES": str(args.concurrent),
        "FILEDROP_LOG_FORMAT": "json",
        # Each thread's CPU, written as the run exits (bench/threadcpu/sitecustomize.py).
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(BENCH / "threadcpu"), os.environ.get("PYTHONPATH")])
        ),
        "BENCH_THREAD_CPU": str(threads),
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "filedrop", "run"]
    if profile is not None:
        spy = _py_spy()
        cmd = [spy, "record", "--format", "raw", "--gil", "-o", str(profile), "--", *cmd]
    kind = "profile" if profile is not None else "run"
    usage = run_process(cmd, env=env, log=OUT / f"{kind}-{source.stem}.log")
    if usage.code not in (0, 1):
        tail = usage.log.read_text(errors="replace").splitlines()[-5:]
        raise SystemExit(f"filedrop run exited {usage.code}:\n" + "\n".join(tail))
    run = read_run_log(usage)
    with contextlib.suppress(OSError, ValueError):
        run.threads = {
            kind: (entry["threads"], entry["cpu_s"])
            for kind, entry in json.loads(threads.read_text()).items()
        }
    return run


def read_run_log(usage: Usage) -> Run:
    """The run's phases, from the millisecond times of its JSON log lines."""
    marks: dict[str, float] = {}
    statuses: dict[str, int] = {}
    invoices = 0
    for line in usage.log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        at = dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
        message = entry["message"]
        if message.endswith(": claimed"):
            marks.setdefault("claimed", at)
        elif message.endswith(" to send") and (found := re.search(r"(\d+) invoices? in", message)):
            # A long file's later parts are prepared while its first batches go out: its
            # sending begins at its first batch, before this line.
            marks.setdefault("to send", at)
            invoices = int(found[1])
        elif ": submitted as " in message:
            marks.setdefault("to send", at)
        elif " ended " in message:
            marks["ended"] = at
        elif "; outcome " in message:
            marks["outcome"] = at
            counts = message.rsplit(": ", 1)[-1].split("; outcome ")[0]
            statuses = {status: int(rows) for rows, status in re.findall(r"(\d+) (\w+)", counts)}
    ended = usage.ended_at  # of the log's clock: a step of the clock mid-run cancels out
    order = ["claimed", "to send", "ended", "outcome"]
    names = [
        "start-up (imports, journal, scan, hash)",
        "read, map and validate (a long file's first part)",
        "send and poll (JSON, HTTP, journal, later parts)",
        "outcome (from the journal, then written)",
    ]
    phases: dict[str, float] = {}
    previous = usage.started_at
    for mark, name in zip(order, names, strict=True):
        if mark in marks:
            phases[name] = marks[mark] - previous
            previous = marks[mark]
    phases["exit"] = ended - previous
    return Run(usage, phases, statuses, invoices)


# ----------------------------------------------------------------------- stages, in this process


@dataclass
class Stages:
    """CPU seconds of each stage, done by the library's own calls in this process."""

    cpu_s: dict[str, float]
    invoices: int
    batches: int
    bodies: Path  # every batch's request body, one a line, for the floor


class CpuClock:
    """Adds up CPU seconds by stage."""

    def __init__(self) -> None:
        self.cpu_s: dict[str, float] = {}

    def timed(self, stage: str, work: Callable[[], Any]) -> Any:
        started = cpu_now()
        result = work()
        self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + cpu_now() - started
        return result


def measure_stages(source: Path, args: argparse.Namespace) -> Stages:
    from filedrop.mapping import load_mapping
    from filedrop.mapping.prepare import prepare
    from filedrop.pipeline import batch_body
    from filedrop.read import ReadLimits, read_table

    clock = CpuClock()
    mapping = load_mapping(MAPPING)
    # In this process: the run parses a workbook in a child of a server process, whose CPU no
    # clock of this process would see. The parsing is the same; only its trip back is left out.
    in_process = ReadLimits(read_in_subprocess=False)
    table = clock.timed("read", lambda: read_table(source, mapping.read, limits=in_process))
    prepared = clock.timed("map and validate", lambda: prepare(table, mapping))
    size = args.batch_size
    batches = [prepared.invoices[at : at + size] for at in range(0, len(prepared.invoices), size)]
    # Built and encoded as the run does before each POST: dicts made and gone unseen by the
    # cyclic collector.
    encoded = clock.timed("JSON", lambda: [batch_body(batch) for batch in batches])
    bodies = OUT / f"bodies-{source.stem}.jsonl"
    bodies.write_bytes(b"".join(body.body + b"\n" for body in encoded))

    stage_dir = OUT / "stage"
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)
    # The API's answers made up first: three uuid4 a row are a second of CPU for 200,000 rows.
    answers = [
        ((str(uuid.uuid4()), [(n, str(uuid.uuid4()), str(uuid.uuid4())) for n in numbers]))
        for numbers in ([invoice.invoice_number for invoice in batch] for batch in batches)
    ]
    clock.timed("journal", lambda: journal_loop(stage_dir / "state.db", source, answers))
    clock.timed("outcome", lambda: outcome_all_succeeded(table, mapping.name, stage_dir))
    if not args.url:
        sample = encoded[:HTTP_SAMPLE_BATCHES]
        with serving(args, f"stages-{source.stem}") as api:
            clock.timed("HTTP", lambda: post_and_poll(api, sample))
        clock.cpu_s["HTTP"] *= len(encoded) / max(1, len(sample))  # scaled to every batch
    invoices = sum(len(batch) for batch in batches)
    return Stages(clock.cpu_s, invoices, len(batches), bodies)


def journal_loop(
    db: Path, source: Path, answers: list[tuple[str, list[tuple[str, str, str]]]]
) -> None:
    """What the journal records of a file whose batches all succeed, then reads back.

    ``answers``: per batch, its batch id and (number, invoice id, case id) of each invoice.
    """
    from filedrop.journal import Journal, this_owner

    target = "sandbox:bench"
    with Journal(db) as journal:
        record = journal.claim_file(
            path=source, sha256=uuid.uuid4().hex, target=target, owner=this_owner(), stale_s=60
        )
        assert record is not None
        for batch_id, invoices in answers:
            batch_no, claimed = journal.claim_batch(
                file_id=record.id, target=target, invoice_numbers=[n for n, _, _ in invoices]
            )
            journal.batch_submitted(batch_no, batch_id=batch_id)
            wanted = set(claimed)
            journal.batch_finished(
                batch_no,
                api_status="SUCCESS",
                succeeded=[(n, i, c, f"C-{n}") for n, i, c in invoices if n in wanted],
                failed=[],
            )
        numbers = [n for _, invoices in answers for n, _, _ in invoices]
        for _ in journal.each_invoice(target=target, numbers=numbers):
            pass


def outcome_all_succeeded(table: Any, mapping_name: str, folder: Path) -> None:
    from filedrop.inbox import outcome_path
    from filedrop.outcome import OUTCOME_COLUMNS, OutcomeSummary, write_outcome

    rows = len(table)
    outcomes = pd.DataFrame(
        {name: ["SUCCEEDED" if name == "outcome_status" else ""] * rows for name in OUTCOME_COLUMNS}
    )
    now = dt.datetime.now(dt.UTC)
    summary = OutcomeSummary(
        source=table.path,
        environment="sandbox",
        mapping=mapping_name,
        started_at=now,
        finished_at=now,
    )
    write_outcome(table, outcomes, summary, dest=folder / outcome_path(table.path).name)


def post_and_poll(api: Api, bodies: list[Any]) -> None:
    """filedrop's own client, one batch after another: POST, then its (only) poll."""
    from filedrop.api.client import AmiliClient
    from filedrop.api.types import Credentials

    client = AmiliClient(
        auth_url=api.auth_url,
        api_url=api.api_url,
        credentials=Credentials(client_id=api.client_id, client_secret=api.client_secret),
        connect_timeout_s=10,
        read_timeout_s=60,
    )
    with client:
        client.authenticate()
        for body in bodies:
            client.get_batch(client.create_invoices(api.org_id, body))


# --------------------------------------------------------------------------------- the profile

#: A sample belongs to the stage of its innermost frame that matches one of these (file, function).
PROFILE_STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("outcome", re.compile(r"\((.*/)?filedrop/outcome\.py:|^_outcomes \(")),
    ("journal", re.compile(r"\((.*/)?filedrop/journal/")),
    (
        "JSON",
        re.compile(r"\((.*/)?(filedrop/mapping/payload\.py|json/encoder\.py|json/__init__\.py)"),
    ),
    (
        "HTTP",
        re.compile(
            r"\((.*/)?(filedrop/api/|requests/|urllib3/|http/client\.py|socket\.py|ssl\.py)"
        ),
    ),
    ("read", re.compile(r"\((.*/)?(filedrop/read/|python_calamine)")),
    ("map and validate", re.compile(r"\((.*/)?filedrop/mapping/")),
    ("start-up (imports)", re.compile(r"<frozen importlib")),
]


def summarise_profile(raw: Path, *, top: int = 15, rate_hz: int = 100) -> list[str]:
    """Top functions by own samples, and samples by stage, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = re.sub(r":\d+\)$", ")", frames[-1])  # one entry a function, not a line
        own[leaf] += count
        stage = next(
            (
                name
                for frame in reversed(frames)
                for name, pattern in PROFILE_STAGES
                if pattern.search(frame)
            ),
            "other",
        )
        by_stage[stage] += count
    if not total:
        return ["  (no samples: py-spy could not read the process)"]
    lines = [
        f"  {total} samples at {rate_hz} Hz: about {total / rate_hz:.1f} s holding the "
        "interpreter lock"
    ]
    lines.append("  by stage (innermost frame naming one):")
    for stage, count in by_stage.most_common():
        lines.append(f"    {stage:<38} {count / rate_hz:6.1f} s  {100 * count / total:5.1f} %")
    lines.append(f"  top {top} functions by own time:")
    for function, count in own.most_common(top):
        shown = re.sub(r"\(.*?(site-packages|lib/python3\.\d+|h14)/", "(", function)
        lines.append(f"    {count / rate_hz:6.2f} s {100 * count / total:5.1f} %  {shown}")
    return lines


# ------------------------------------------------------------------------------------ printing


def line(label: str, text: str) -> None:
    print(f"  {label:<46} {text}", flush=True)


def verdict(label: str, value: float, limit: float, unit: str = "") -> bool:
    met = value <= limit
    shown = f"{value:.2f}{unit}" if unit != " MB" else f"{value:.0f}{unit}"
    limit_shown = f"{limit:g}{unit}"
    line(label, f"{shown:>10}  target <= {limit_shown:<9} {'met' if met else 'NOT met'}")
    return met


def check(label: str, ok: bool, text: str) -> bool:
    line(label, f"{text:>10}  {'met' if ok else 'NOT met'}")
    return ok


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


@dataclass
class Figures:
    """Everything measured for one file."""

    name: str
    rows: int
    stages: Stages | None = None
    floor: Floor | None = None
    peer: Usage | None = None
    run: Run | None = None
    economy: Economy | None = None
    profile: list[str] = field(default_factory=list)


def bench_file(source: Path, rows: int, args: argparse.Namespace, *, full: bool) -> Figures:
    """Measure one file: stages, floor, peer and the run (``full``), or the run alone."""
    figures = Figures(source.name, rows)
    print(
        f"\n{source.name} ({rows:,} rows, batches of {args.batch_size}, "
        f"{args.concurrent} POSTs in flight):",
        flush=True,
    )
    if full:
        figures.stages = measure_stages(source, args)
        with serving(args, f"floor-{source.stem}") as api:
            floor = figures.floor = run_floor(figures.stages.bodies, api, args)
        # Its own CPU is what the least a client does costs here (a POST and a poll a batch,
        # nothing written down): the yardstick for filedrop's CPU a batch.
        line(
            "API floor (bench/floor.py)",
            f"{floor.wall_s:7.2f} s wall  {floor.cpu_s:6.2f} s own CPU "
            f"({1000 * floor.cpu_s / max(1, floor.posts):.2f} ms a batch)",
        )
        if not args.skip_peer:
            with serving(args, f"peer-{source.stem}") as api:
                figures.peer = run_peer(source, api, args)
            peer = figures.peer
            line(
                "peer: pandas + requests (bench/peer.py)",
                f"{peer.wall_s:7.2f} s wall  {peer.cpu_s:6.2f} s CPU  peak {peer.peak_mb:5.0f} MB",
            )
    with serving(args, f"run-{source.stem}") as api:
        figures.run = run_filedrop(source, api, args)
    if api.record is not None:
        figures.economy = economy(api.record)
    usage = figures.run.usage
    line(
        "filedrop run",
        f"{usage.wall_s:7.2f} s wall  {usage.cpu_s:6.2f} s own CPU ({usage.sys_s:.2f} s of it "
        f"system)  peak {usage.peak_mb:5.0f} MB",
    )
    if figures.economy:
        line("  (the server's CPU meanwhile)", f"{figures.economy.server_cpu_s:7.2f} s")
    if figures.run.threads:
        print("  its CPU by thread (each thread's own clock; the rest: its reader child's):")
        for kind, (count, cpu_s) in sorted(figures.run.threads.items(), key=lambda kv: -kv[1][1]):
            line(f"    {_THREAD_KINDS.get(kind, kind)}, {count}x", f"{cpu_s:7.2f} s")
        rest = usage.cpu_s - sum(cpu_s for _, cpu_s in figures.run.threads.values())
        line("    the rest: child processes", f"{max(rest, 0.0):7.2f} s")
    print("  stages in the run (its JSON log, wall):")
    for name, value in figures.run.phases.items():
        line(f"  {name}", f"{value:7.2f} s")
    if figures.stages:
        print("  stage costs in this process (library calls, CPU):")
        for stage in STAGES:
            value = figures.stages.cpu_s.get(stage)
            note = "" if stage != "HTTP" else f"  (sample of {HTTP_SAMPLE_BATCHES} batches, scaled)"
            line(
                f"  {stage}",
                "n/a (not against --url)" if value is None else f"{value:7.2f} s{note}",
            )
        total = sum(figures.stages.cpu_s.values())
        line("  sum of stages", f"{total:7.2f} s  (the run's own CPU: {usage.cpu_s:.2f} s)")
    if args.profile:
        raw = OUT / f"profile-{source.stem}.txt"
        with serving(args, f"profile-{source.stem}") as api:
            run_filedrop(source, api, args, profile=raw)
        figures.profile = summarise_profile(raw)
        print(f"  profile of a second run under py-spy ({raw.relative_to(ROOT)}):")
        for text in figures.profile:
            print(text)
    return figures


def economy_checks(figures: Figures, batch_size: int) -> bool:
    run = figures.run
    assert run is not None
    invoices = figures.stages.invoices if figures.stages else run.invoices
    wanted = math.ceil(invoices / batch_size)
    name = figures.name
    ok = True
    unknown = run.statuses.get("UNKNOWN", 0)
    eco = figures.economy
    if eco is None:  # not our server: the run's own account
        ok &= check(f"{name}: POSTs (run's log)", run.invoices == invoices, f"{run.invoices} inv")
    else:
        ok &= check(f"{name}: tokens issued", eco.tokens == 1, str(eco.tokens))
        ok &= check(
            f"{name}: POSTs = ceil({invoices}/{batch_size})",
            eco.posts == wanted,
            f"{eco.posts}/{wanted}",
        )
        first, again = eco.first_poll_s, eco.repoll_s
        ok &= check(
            f"{name}: POST -> first poll, shortest", first is None or first >= 1.0, seconds(first)
        )
        ok &= check(
            f"{name}: poll -> poll of a batch, shortest",
            again is None or again >= 1.0,
            seconds(again),
        )
    ok &= check(f"{name}: rows UNKNOWN", unknown == 0 and bool(run.statuses), str(unknown))
    return ok


def _py_spy() -> str:
    """The py-spy on PATH, else the one beside this Python (a virtualenv not activated)."""
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-xlsx", type=int, default=50_000)
    parser.add_argument("--rows-csv", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=4, help="POSTs in flight")
    parser.add_argument(
        "--skip-openpyxl",
        action="store_true",
        help=f"estimate openpyxl as {OPENPYXL_PER_CALAMINE}x calamine",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=90.0,
        help="the sandbox answers each request after this long, as an API across a network does "
        "(default 90, the speed issue's measured floors; 0 answers at once)",
    )
    parser.add_argument("--skip-peer", action="store_true", help="leave out the peer script")
    parser.add_argument("--million", action="store_true", help="also a 1,000,000-row CSV")
    parser.add_argument("--profile", action="store_true", help="also profile each run (py-spy)")
    parser.add_argument(
        "--url",
        help="API base URL (default: a local sandbox per client); "
        "credentials from FILEDROP_CLIENT_ID, _SECRET, FILEDROP_ORG_ID",
    )
    parser.add_argument("--auth-url", help="token base URL with --url (default: --url)")
    args = parser.parse_args()
    if args.profile and not Path(_py_spy()).exists():
        # Said before the minutes of generating and timing, not as a traceback after them.
        parser.error("--profile needs py-spy: pip install py-spy")
    OUT.mkdir(parents=True, exist_ok=True)
    xlsx = OUT / f"erp-{args.rows_xlsx}.xlsx"
    csv = OUT / f"erp-{args.rows_csv}.csv"
    million = OUT / "erp-1000000.csv"
    print(
        f"Inputs ({len(HEADERS)} columns, norwegian-erp layout) in {OUT.relative_to(ROOT)}; "
        f"API: {args.url or 'a fresh filedrop sandbox (bench/server.py, --delay 0) per client'}"
        + (
            ""
            if args.url
            else f", answering each request after {args.latency_ms:g} ms"
            if args.latency_ms
            else ", answering at once"
        )
    )
    for path, rows, write in [
        (xlsx, args.rows_xlsx, write_xlsx),
        (csv, args.rows_csv, write_csv),
    ] + ([(million, 1_000_000, write_csv)] if args.million else []):
        if not path.exists():
            started = time.perf_counter()
            write(path, rows)
            line(f"generated {path.name}", f"{time.perf_counter() - started:7.2f} s")

    openpyxl_s = baselines(xlsx, csv, args)
    results = [
        bench_file(xlsx, args.rows_xlsx, args, full=True),
        bench_file(csv, args.rows_csv, args, full=True),
    ]
    if args.million:
        results.append(bench_file(million, 1_000_000, args, full=False))

    print("\nHTTP economy (the server's record of each filedrop run):")
    checks = [economy_checks(figures, args.batch_size) for figures in results]
    met = targets(results, args, openpyxl_s=openpyxl_s) and all(checks)
    print(
        f"\n{'Every target met.' if met else 'Some targets NOT met.'} "
        "The machine is shared: figures move by 10-20 % between runs."
    )


def baselines(xlsx: Path, csv: Path, args: argparse.Namespace) -> float:
    """Time the two pandas reads; returns the openpyxl read's seconds (or its estimate)."""
    print("Baselines (this process):")

    def timed_read(label: str, work: Callable[[], object]) -> float:
        started = time.perf_counter()
        work()
        spent = time.perf_counter() - started
        line(label, f"{spent:7.2f} s")
        return spent

    if args.skip_openpyxl:
        calamine_s = timed_read(
            "pandas.read_excel(engine='calamine')", lambda: pd.read_excel(xlsx, engine="calamine")
        )
        openpyxl_s = OPENPYXL_PER_CALAMINE * calamine_s
        line("pandas.read_excel(engine='openpyxl'), estimated", f"{openpyxl_s:7.2f} s")
    else:
        openpyxl_s = timed_read(
            "pandas.read_excel(engine='openpyxl')", lambda: pd.read_excel(xlsx, engine="openpyxl")
        )
    timed_read("pandas.read_csv", lambda: pd.read_csv(csv, sep=";", encoding="cp1252"))
    return openpyxl_s


#: ``pandas.read_excel(engine="openpyxl")`` of the 50,000-row workbook on the speed issue's host.
_ISSUE_OPENPYXL_S = 14.0


def targets(results: list[Figures], args: argparse.Namespace, *, openpyxl_s: float) -> bool:
    """Print each ratio against its target; whether all are met."""
    print("\nTargets:")
    x, c = results[0], results[1]
    all_met = True
    assert x.run and c.run and x.floor and c.floor
    openpyxl_note = " (estimated)" if args.skip_openpyxl else ""
    all_met &= verdict(
        f"xlsx own CPU / openpyxl read{openpyxl_note}", x.run.usage.cpu_s / openpyxl_s, 0.30
    )
    all_met &= verdict(f"{c.rows:,}-row CSV own CPU", c.run.usage.cpu_s, 8.0, " s")
    if not args.skip_openpyxl and x.rows == 50_000:
        # The 8 s were set on the speed issue's host, where openpyxl read the workbook in 14.0 s;
        # pure Python like it, the run's CPU moves with the host. For scale only: the target is 8 s.
        scaled = 8.0 * openpyxl_s / _ISSUE_OPENPYXL_S
        line("  (those 8 s at this host's speed)", f"{scaled:8.2f} s  for scale, from openpyxl")
    all_met &= verdict("xlsx wall / API floor", x.run.usage.wall_s / x.floor.wall_s, 1.15)
    all_met &= verdict("CSV wall / API floor", c.run.usage.wall_s / c.floor.wall_s, 1.15)
    all_met &= verdict("xlsx peak RSS", x.run.usage.peak_mb, 250, " MB")
    all_met &= verdict("CSV peak RSS", c.run.usage.peak_mb, 300, " MB")
    if args.million:
        m = results[2]
        assert m.run
        all_met &= verdict("1,000,000-row CSV peak RSS", m.run.usage.peak_mb, 1024, " MB")
        all_met &= verdict(
            f"1,000,000-row CSV own CPU / {c.rows:,}-row",
            m.run.usage.cpu_s / c.run.usage.cpu_s,
            5.5,
        )
    for figures in (x, c):
        if figures.peer and figures.run:
            line(
                f"{figures.name}: peer wall / filedrop wall",
                f"{figures.peer.wall_s / figures.run.usage.wall_s:10.2f}  (for scale)",
            )
    return all_met


if __name__ == "__main__":
    main()
