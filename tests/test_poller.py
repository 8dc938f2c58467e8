"""The poller: many batches on their own schedules, and a timeout that means wall time."""

from __future__ import annotations

import socket
import time

from conftest import ORG_ID

from filedrop.api.client import AmiliClient, BatchResult, Credentials, PollSchedule, StillPending
from filedrop.api.poller import Poller
from filedrop.sandbox import Sandbox, SandboxOptions


def test_a_batch_still_queued_at_the_timeout_resolves_pending_with_its_id(
    example_invoice: dict,
) -> None:
    """Still QUEUED when the schedule runs out: StillPending, carrying the batch id."""
    with Sandbox(SandboxOptions(delay_s=(30.0, 30.0))).start() as sandbox:
        client = AmiliClient(
            auth_url=sandbox.url,
            api_url=sandbox.url,
            credentials=Credentials(client_id="c", client_secret="s"),
            connect_timeout_s=2.0,
            read_timeout_s=5.0,
        )
        batch_id = client.create_invoices(ORG_ID, [example_invoice])
        poller = Poller(
            client, schedule=PollSchedule(initial_s=0.05, max_interval_s=0.2, timeout_s=0.3)
        )
        try:
            result = poller.track(batch_id).result(timeout=10)
        finally:
            poller.close()
            client.close()
    assert isinstance(result, StillPending)
    assert result.batch_id == batch_id


def test_many_batches_end_independently(example_invoice: dict, sandbox: Sandbox) -> None:
    """Twenty batches tracked at once each resolve to their own terminal result."""
    client = AmiliClient(
        auth_url=sandbox.url,
        api_url=sandbox.url,
        credentials=Credentials(client_id="c", client_secret="s"),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
    )
    ids = []
    for n in range(20):
        invoice = dict(example_invoice, invoiceNumber=f"POLL-{n}")
        ids.append(client.create_invoices(ORG_ID, [invoice]))
    poller = Poller(client, schedule=PollSchedule(initial_s=0.02, max_interval_s=0.2, timeout_s=10))
    try:
        results = [poller.track(batch_id).result(timeout=20) for batch_id in ids]
    finally:
        poller.close()
        client.close()
    assert [r.batch_id for r in results] == ids
    assert all(isinstance(r, BatchResult) and r.status == "SUCCESS" for r in results)


def test_the_timeout_is_wall_time_even_when_every_poll_spends_its_own_retries() -> None:
    """API unreachable: each poll retries for a while, yet the batch is given up on time."""
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = AmiliClient(
        auth_url=closed_url,
        api_url=closed_url,
        credentials=Credentials(client_id="c", client_secret="s"),
        connect_timeout_s=2.0,
        read_timeout_s=5.0,
        max_retries=2,
        backoff_initial_s=0.2,  # each poll now spends ~0.6 s retrying before it fails
    )
    poller = Poller(client, schedule=PollSchedule(initial_s=0.01, max_interval_s=0.01, timeout_s=1))
    started = time.monotonic()
    try:
        result = poller.track("d290f1ee-6c54-4b01-90e6-d701748f0851").result(timeout=30)
    finally:
        poller.close()
        client.close()
    assert isinstance(result, StillPending)
    # The planned waits alone add up to 1 s over ~100 polls; counted that way it took a minute.
    assert time.monotonic() - started < 5
