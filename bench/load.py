"""Load alone must never make a row UNKNOWN: `filedrop run` on a 200,000-row CSV at full speed
against a plain standard-library API simulator with the default listen backlog.

    python bench/load.py                       # 200,000 rows, batch size 100, 4 POSTs in flight
    python bench/load.py --rows 20000          # a quick look

The simulator is `http.server.ThreadingHTTPServer` (``request_queue_size = 5``, its default) with
an HTTP/1.1 handler answering the documented token, invoice and batch JSON; no fault is injected
and every batch is SUCCESS at its first poll. So every row should end SUCCEEDED; the target is
0 UNKNOWN. Rows are generated as bench.py generates them; the run is a real process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

from bench import OUT, ROOT, write_csv

ORG_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


class Simulator(ThreadingHTTPServer):
    """The API as documented, nothing more; the listen backlog stays the standard library's."""

    daemon_threads = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: dict[str, list[str]] = {}  # batch id -> its invoice numbers
        self.posts = 0
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Simulator

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/token":
            self.answer(200, {"access_token": "load-" + uuid.uuid4().hex, "expires_in": 3600})
            return
        numbers = [invoice["invoiceNumber"] for invoice in json.loads(body)["invoices"]]
        batch_id = str(uuid.uuid4())
        with self.server.lock:
            self.server.batches[batch_id] = numbers
            self.server.posts += 1
        self.answer(202, {"data": {"batchId": batch_id}})

    def do_GET(self) -> None:
        batch_id = self.path.rsplit("/", 1)[-1]
        with self.server.lock:
            numbers = self.server.batches.get(batch_id)
        if numbers is None:
            self.answer(404, {"message": f"Batch {batch_id} was not found"})
            return
        succeeded = [
            {
                "invoiceId": str(uuid.uuid4()),
                "invoiceNumber": number,
                "caseId": str(uuid.uuid4()),
                "caseNumber": f"CASE-{number}",
            }
            for number in numbers
        ]
        data = {
            "batchId": batch_id,
            "status": "SUCCESS",
            "createdAt": "2024-01-15T00:00:00Z",
            "finishedAt": "2024-01-15T00:00:01Z",
            "succeeded": succeeded,
            "failed": [],
        }
        self.answer(200, {"data": data})

    def answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def run(source: Path, *, batch_size: int, concurrent: int) -> tuple[float, int, Counter[str]]:
    """`filedrop run` on a one-file inbox; (seconds, POSTs the simulator saw, rows by status)."""
    inbox = OUT / "inbox-load"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    (inbox / source.name).write_bytes(source.read_bytes())
    old = time.time() - 3600
    os.utime(inbox / source.name, (old, old))
    simulator = Simulator()
    assert simulator.request_queue_size == 5  # the standard library's default backlog
    serving = threading.Thread(target=simulator.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    url = f"http://127.0.0.1:{simulator.server_address[1]}"
    env = {
        **os.environ,
        "FILEDROP_ENV": "sandbox", "FILEDROP_AUTH_URL": url, "FILEDROP_API_URL": url,
        "FILEDROP_CLIENT_ID": "load", "FILEDROP_CLIENT_SECRET": "load-secret",
        "FILEDROP_ORG_ID": ORG_ID, "FILEDROP_INBOX": str(inbox),
        "FILEDROP_MAPPING": str(ROOT / "mappings" / "norwegian-erp.toml"),
        "FILEDROP_STABILITY_S": "0", "FILEDROP_BATCH_SIZE": str(batch_size),
        "FILEDROP_CONCURRENT_BATCHES": str(concurrent), "FILEDROP_LOG_FORMAT": "text",
    }  # fmt: skip
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "filedrop", "run"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        simulator.shutdown()
        simulator.server_close()
    seconds = time.perf_counter() - started
    outcomes = sorted(inbox.rglob(f"{source.stem}.outcome.csv"))
    if not outcomes:
        raise SystemExit(f"no outcome file; filedrop run exited {done.returncode}:\n{done.stderr}")
    table = pd.read_csv(outcomes[0], sep=";", encoding="latin-1", dtype=str)
    return seconds, simulator.posts, Counter(table["outcome_status"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    csv = OUT / f"erp-{args.rows}.csv"
    if not csv.exists():
        write_csv(csv, args.rows)
    seconds, posts, statuses = run(csv, batch_size=args.batch_size, concurrent=args.concurrent)
    print(
        f"{csv.name}: {args.rows} rows, batch size {args.batch_size}, "
        f"{args.concurrent} POSTs in flight, {posts} POSTs received, {seconds:.1f} s"
    )
    for status, count in sorted(statuses.items()):
        print(f"  {status:<10} {count:8d}")
    print(f"  UNKNOWN    {statuses.get('UNKNOWN', 0):8d}  (target: 0)")


if __name__ == "__main__":
    main()
