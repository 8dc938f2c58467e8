"""From settings to a finished run: build the client, journal and context, then process the inbox.

``run_inbox`` is what ``filedrop run`` does and what ``filedrop demo`` does on the sandbox; the CLI
only turns its report into words and an exit code.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filedrop.client import AmiliClient, Credentials, PollSchedule
from filedrop.errors import ConfigError
from filedrop.inbox import scan
from filedrop.journal import Journal
from filedrop.mapping import load_mappings
from filedrop.pipeline import Context, RunReport, process_files, ready_files, settle_leftovers
from filedrop.progress import Progress
from filedrop.settings import Settings

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
