"""From settings to a finished run: build the client, journal and context, then process the inbox.

``run_inbox`` is what ``filedrop run`` does and what ``filedrop demo`` does on the sandbox; the CLI
only turns its report into words and an exit code. Here too: several files at once, each behind
one guard (``process_guarded``), and the batches earlier runs left behind (``settle_leftovers``),
which the watch daemon uses as well.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filedrop.api.client import AmiliClient, BatchResult, Credentials, PollSchedule
from filedrop.errors import ConfigError, FiledropError
from filedrop.inbox import content_hash, scan
from filedrop.journal import CLAIM_STALE_S, Journal, owner_alive
from filedrop.mapping import load_mappings
from filedrop.pipeline import (
    Context,
    FileReport,
    orphan_message,
    process_file,
    record_result,
)
from filedrop.progress import Progress
from filedrop.settings import Settings
from filedrop.states import RowStatus

log = logging.getLogger("filedrop")

#: The organisation id the demo and the sandbox examples use (the API guide's example).
DEMO_ORG_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def poll_schedule(settings: Settings) -> PollSchedule:
    return PollSchedule(
        initial_s=settings.poll_initial_s,
        max_interval_s=settings.poll_max_interval_s,
        timeout_s=settings.poll_timeout_s,
    )


def make_client(settings: Settings) -> AmiliClient:
    """The API client for these settings; every setting it needs must already be checked."""
    auth_url, api_url = settings.urls()
    return AmiliClient(
        auth_url=auth_url,
        api_url=api_url,
        credentials=Credentials(
            client_id=settings.client_id or "", client_secret=settings.secret()
        ),
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        url_origins=settings.url_origins(),
    )


@contextmanager
def open_context(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> Iterator[Context]:
    """Check the settings, the mappings and the credentials, then yield a ready ``Context``.

    Everything that can make a run useless is checked here, before anything is sent: a missing
    setting or a broken mapping is a ``ConfigError``/``MappingError``; refused credentials are an
    ``AuthError`` (all exit 2).
    """
    settings.require_for_sending()
    assert settings.mapping is not None  # checked by require_for_sending
    mappings = load_mappings(settings.mapping)
    client = make_client(settings)
    try:
        client.authenticate()
        journal = Journal(settings.journal_path)
    except BaseException:
        client.close()
        raise
    ctx = Context(
        client=client,
        journal=journal,
        mappings=mappings,
        environment=settings.env or "custom",
        org_id=settings.org_id or "",
        batch_size=settings.batch_size,
        concurrent_batches=settings.concurrent_batches,
        schedule=poll_schedule(settings),
        archive=settings.archive,
        stop=stop or threading.Event(),
        progress=progress or Progress(),
    )
    try:
        yield ctx
    finally:
        ctx.progress.close()
        ctx.close()
        journal.close()
        client.close()


def run_inbox(settings: Settings, ctx: Context) -> RunReport:
    """Process every ready file in the inbox once, waiting for its batches (``filedrop run``)."""
    inbox = settings.require_inbox()
    candidates, ignored = scan(inbox)
    for path, reason in ignored:
        log.info("%s: ignored (%s)", path.name, reason)
    ready, changing = ready_files(candidates, stability_s=settings.stability_s)
    for path in changing:
        log.info("%s: still changing; left for the next run", path.name)
    report = process_files(ready, ctx, concurrent_files=settings.concurrent_files)
    settle_leftovers(ctx)
    return report


def find_examples(start: Path | None = None) -> tuple[Path, Path]:
    """The ``inbox-example`` and ``mappings`` folders that ship with filedrop (for the demo)."""
    candidates = [start] if start else []
    candidates += [Path(__file__).resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if (root / "inbox-example").is_dir() and (root / "mappings").is_dir():
            return root / "inbox-example", root / "mappings"
    raise ConfigError(
        "The demo needs the inbox-example/ and mappings/ folders from the filedrop source tree; "
        "run it from a checkout (or pass --examples DIR)."
    )


def prepare_demo_inbox(examples: Path) -> Path:
    """Copy the example drops into a fresh folder, so the demo never touches the originals."""
    work = Path(tempfile.mkdtemp(prefix="filedrop-demo-"))
    inbox = work / "inbox"
    inbox.mkdir()
    for path in sorted(examples.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, inbox / path.name)
    return inbox


# -- many files, and what earlier runs left behind -------------------------------------------


@dataclass(frozen=True)
class RunReport:
    """Every file a run touched."""

    files: list[FileReport]

    @property
    def statuses(self) -> set[RowStatus]:
        return set().union(*(report.statuses for report in self.files)) if self.files else set()


def ready_files(
    candidates: list[Path],
    *,
    stability_s: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[Path], list[Path]]:
    """Split candidates into (ready, still changing) for a one-shot run.

    A file untouched for the stability window is ready at once; a younger one is watched for one
    window and taken only if its size and modification time did not move.
    """
    ready: list[Path] = []
    young: dict[Path, tuple[int, int]] = {}
    now = clock()
    for path in candidates:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if stat.st_size == 0:
            young[path] = (-1, -1)
        elif now - stat.st_mtime >= stability_s:
            ready.append(path)
        else:
            young[path] = (stat.st_size, stat.st_mtime_ns)
    changing: list[Path] = []
    if young:
        sleep(stability_s)
        for path, before in young.items():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if before[0] > 0 and (stat.st_size, stat.st_mtime_ns) == before:
                ready.append(path)
            else:
                changing.append(path)
    return ready, changing


def process_guarded(path: Path, ctx: Context) -> FileReport:
    """``process_file``, turning any failure into a report and one log sentence.

    One file's failure never stops the others. The file stays claimed by this process, so the
    next run (or the watch daemon's retry) resumes it from the journal. The traceback of an
    unexpected error shows with --debug.
    """
    try:
        return process_file(path, ctx)
    except FiledropError as exc:
        message = f"{path.name}: {exc}"
    except OSError as exc:  # disk full, permissions, an outcome held open on a share
        where = f" ({exc.filename})" if exc.filename else ""
        message = (
            f"{path.name}: {exc.strerror or exc}{where}; nothing is lost, the next run resumes it"
        )
        log.debug("%s", message, exc_info=True)
    except Exception as exc:
        message = f"{path.name}: unexpected error ({exc!r}); the next run resumes it"
        log.debug("%s", message, exc_info=True)
    log.error("%s", message)
    return FileReport(path, "retry", {}, message=message)


def process_files(paths: list[Path], ctx: Context, *, concurrent_files: int) -> RunReport:
    """Process files several at a time; one file's failure never stops the others."""

    with ThreadPoolExecutor(
        max_workers=concurrent_files, thread_name_prefix="filedrop-file"
    ) as pool:
        return RunReport(list(pool.map(lambda path: process_guarded(path, ctx), paths)))


def settle_leftovers(ctx: Context) -> None:
    """Learn the fate of batches whose file is gone or was replaced (issue 4 §2: resume).

    Processing a file again resumes its batches, but a file that was moved away or re-exported
    with other content is never processed again under that hash. Its batches are polled here
    and recorded, so DUPLICATE rows elsewhere and ``filedrop status`` tell the truth; a batch
    written down before a POST whose process is gone becomes ``UNKNOWN`` and is listed.
    """
    now = time.time()
    for record in ctx.journal.unfinished_files(target=ctx.target):
        if record.state == "claimed" and owner_alive(
            record.owner, heartbeat=record.updated_at, now=now, stale_s=CLAIM_STALE_S
        ):
            continue  # its owner is at work on it
        try:
            still_there = content_hash(Path(record.path)) == record.sha256
        except OSError:
            still_there = False
        if still_there and record.state != "claimed":
            continue  # processing the file resumes it, with its outcome rewritten
        for orphan in ctx.journal.postings_of(record.id):
            ctx.journal.batch_unknown(orphan.id, message=orphan_message(orphan.id))
        polls = [
            (batch.id, ctx.poller.track(batch.batch_id))
            for batch in ctx.journal.batches(file_id=record.id, states=("queued",))
            if batch.batch_id
        ]
        pending = 0
        for batch, future in polls:
            result = future.result()
            if isinstance(result, BatchResult):
                record_result(ctx.journal, batch, result)
            else:
                pending += 1
        log.info(
            "%s (replaced or moved): %d earlier batches settled, %d still QUEUED",
            record.name, len(polls) - pending, pending,
        )  # fmt: skip
