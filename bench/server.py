"""`filedrop sandbox --delay 0` in a process of its own, keeping a record of every request.

    python bench/server.py RECORD.json [LATENCY_S]  # prints its base URL; serves until SIGTERM

The same `Sandbox` the command serves (batches end at their first poll, any credentials), with
one addition: each request's arrival time, method, path, status and, for an invoice POST, the
batch id it created; with LATENCY_S, each answer waits that long first, as an API across a
network does (the sandbox itself answers in microseconds). On SIGTERM it writes that record and
its own CPU time and peak RSS to RECORD.json, so the bench can check the HTTP economy of a run
from the server's side (tokens, POSTs, the gaps between a batch's POST and its polls) without
trusting the client's account.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.sandbox.transport import Reply


class RecordingSandbox(Sandbox):
    """The sandbox, noting each request as it arrives (one list append under a lock)."""

    def __init__(self, options: SandboxOptions, *, latency_s: float = 0.0) -> None:
        super().__init__(options)
        self.latency_s = latency_s
        self.requests: list[tuple[float, str, str, int, str]] = []
        self._record_lock = threading.Lock()

    def _handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        reused_connection: bool = False,
    ) -> Reply:
        arrived = time.time()
        if self.latency_s:
            time.sleep(self.latency_s)  # one thread per connection: other requests go on
        reply = super()._handle(method, target, headers, body, reused_connection=reused_connection)
        batch_id = ""
        if method == "POST" and reply.status == 202 and isinstance(reply.body, dict):
            batch_id = str(reply.body.get("data", {}).get("batchId", ""))
        with self._record_lock:
            self.requests.append((arrived, method, target, reply.status, batch_id))
        return reply


def main() -> None:
    record = Path(sys.argv[1])
    latency_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with RecordingSandbox(SandboxOptions(delay_s=(0.0, 0.0)), latency_s=latency_s) as sandbox:
        print(sandbox.url, flush=True)
        stop.wait()
        requests = list(sandbox.requests)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary: dict[str, Any] = {
        "requests": requests,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,
    }
    record.write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
