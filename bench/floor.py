"""The API floor: the least time any client can take to hand a file's batches to the API.

    FILEDROP_CLIENT_ID=.. FILEDROP_CLIENT_SECRET=.. python bench/floor.py BODIES \\
        --auth-url URL --api-url URL --org-id UUID [--in-flight 4]

BODIES holds one request body a line, each ``{"invoices": [...]}`` already encoded. Before the
clock starts: every body is in memory, one token is fetched, and each worker has opened its
keep-alive connection. Then ``--in-flight`` workers POST the bodies (at most that many POSTs in
flight), and each batch is polled once, 1 s after its POST was answered (again on the guide's
schedule, 1 s doubling to 30 s, should it not have ended yet). The standard library's
``http.client`` and nothing else, so no client library's cost is in the figure.

Prints one JSON line: wall seconds from the first POST to the last batch result, its own CPU
seconds meanwhile (user and system, all its threads), POSTs, polls.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

TERMINAL = {"SUCCESS", "PARTIAL", "FAILED"}


def connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A keep-alive connection to ``url``'s host, and its path prefix."""
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.netloc, timeout=60)
    conn.connect()
    return conn, parts.path.rstrip("/")


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, token: str
) -> dict:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
    return json.loads(data)


def fetch_token(auth_url: str) -> str:
    conn, prefix = connect(auth_url)
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": os.environ["FILEDROP_CLIENT_ID"],
            "client_secret": os.environ["FILEDROP_CLIENT_SECRET"],
        }
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", prefix + "/token", body=form, headers=headers)
    resp = conn.getresponse()
    token = json.loads(resp.read())["access_token"]
    conn.close()
    return token


@dataclass(order=True)
class _Due:
    at: float
    batch_id: str = field(compare=False)
    delay_s: float = field(compare=False)


class Floor:
    """POST workers feed a heap of due polls; poll workers drain it."""

    def __init__(self, bodies: list[bytes], *, api_url: str, org_id: str, token: str) -> None:
        self.bodies = bodies
        self.api_url = api_url
        self.org_id = urllib.parse.quote(org_id, safe="")
        self.token = token
        self.next_body = 0
        self.due: list[_Due] = []
        self.wake = threading.Condition()
        self.finished = 0
        self.posts = self.polls = 0
        self.last_result = 0.0

    def post_worker(self, conn: http.client.HTTPConnection, prefix: str) -> None:
        path = f"{prefix}/collection/v1/orgs/{self.org_id}/invoices"
        while True:
            with self.wake:
                if self.next_body >= len(self.bodies):
                    return
                body = self.bodies[self.next_body]
                self.next_body += 1
            batch_id = call(conn, "POST", path, body, self.token)["data"]["batchId"]
            with self.wake:
                self.posts += 1
                heapq.heappush(self.due, _Due(time.monotonic() + 1.0, batch_id, 1.0))
                self.wake.notify()

    def poll_worker(self, conn: http.client.HTTPConnection, prefix: str) -> None:
        while True:
            with self.wake:
                while self.finished < len(self.bodies):
                    if self.due and self.due[0].at <= time.monotonic():
                        job = heapq.heappop(self.due)
                        break
                    self.wake.wait(self.due[0].at - time.monotonic() if self.due else None)
                else:
                    return
            path = f"{prefix}/collection/v1/batches/{urllib.parse.quote(job.batch_id)}"
            status = call(conn, "GET", path, None, self.token)["data"]["status"]
            with self.wake:
                self.polls += 1
                if status in TERMINAL:
                    self.finished += 1
                    self.last_result = time.monotonic()
                    self.wake.notify_all()
                else:
                    delay_s = min(job.delay_s * 2, 30.0)
                    heapq.heappush(
                        self.due, _Due(time.monotonic() + delay_s, job.batch_id, delay_s)
                    )
                    self.wake.notify()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bodies", help="file of encoded request bodies, one a line")
    parser.add_argument("--auth-url", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--org-id", required=True)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    with Path(args.bodies).open("rb") as source:
        bodies = [line.rstrip(b"\n") for line in source if line.strip()]
    floor = Floor(
        bodies, api_url=args.api_url, org_id=args.org_id, token=fetch_token(args.auth_url)
    )
    workers = [
        threading.Thread(target=work, args=connect(args.api_url), daemon=True)
        for work in [floor.post_worker] * args.in_flight + [floor.poll_worker] * args.in_flight
    ]
    cpu_before = os.times()
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpu_after = os.times()
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    print(
        json.dumps(
            {
                "wall_s": floor.last_result - started,
                "cpu_s": cpu_s,
                "posts": floor.posts,
                "polls": floor.polls,
            }
        )
    )


if __name__ == "__main__":
    main()
