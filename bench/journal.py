"""The journal on SQLite and on PostgreSQL: claims and results per second, and the 50,000-row
xlsx end to end with each.

    python bench/journal.py                      # both engines, the 50,000-row file too
    python bench/journal.py --rows-xlsx 5000     # a quick look

PostgreSQL is a throwaway server started here with initdb and pg_ctl on a free port of 127.0.0.1
(as the postgres user when run as root), with fsync on, as in production. "Claims" are invoice
numbers written down before their POST (``claim_batch``, 100 a batch); "results" are the same
numbers recorded as they end (``batch_submitted`` then ``batch_finished``). Files claimed per
second is ``claim_file``, what every replica does for every file it sees. "CPU s" is this
process's CPU for each step over all the invoices, and for reading them all back
(``each_invoice``, as the outcome does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import OUT, run_filedrop, serving, write_xlsx
from filedrop.journal import Journal, this_owner
from filedrop.journal.engines import PostgresLocation

TARGET = "sandbox:bench"


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise SystemExit(f"{name} not found; install PostgreSQL (apt-get install postgresql)")
    return str(found)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway server; yields the URL of its ``postgres`` database."""
    folder = Path(tempfile.mkdtemp(prefix="filedrop-bench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    subprocess.run(
        [*as_user, postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    ctl = [*as_user, postgres_bin("pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*ctl, "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], check=True, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def rates(location: Path | PostgresLocation, *, invoices: int, files: int) -> dict[str, float]:
    """Per second: files claimed, invoice numbers claimed, invoice results recorded; then this
    process's CPU seconds for claiming, submitting, finishing and reading back every invoice
    (the server's CPU, for PostgreSQL, is not in it)."""
    with Journal(location) as journal:
        started = time.perf_counter()
        for n in range(files):
            journal.claim_file(
                path=Path(f"f{n}.csv"), sha256="x", target=TARGET, owner=this_owner(), stale_s=60
            )
        files_s = files / (time.perf_counter() - started)
        file_id = journal.claim_file(
            path=Path("big.csv"), sha256="y", target=TARGET, owner=this_owner(), stale_s=60
        ).id
        numbers = [f"INV-{n:07d}" for n in range(invoices)]
        cpu: dict[str, float] = {}
        started, cpu_at = time.perf_counter(), time.process_time()
        batches = [
            journal.claim_batch(
                file_id=file_id, target=TARGET, invoice_numbers=numbers[i : i + 100]
            )
            for i in range(0, invoices, 100)
        ]
        claims_s = invoices / (time.perf_counter() - started)
        cpu["claim CPU s"] = time.process_time() - cpu_at
        started, cpu_at = time.perf_counter(), time.process_time()
        for batch, _ in batches:
            journal.batch_submitted(batch, batch_id=f"b-{batch}")
        submit_s = time.perf_counter() - started
        cpu["submit CPU s"] = time.process_time() - cpu_at
        results = [
            (batch, [(n, f"i-{n}", f"c-{n}", f"C-{n}") for n in claimed], [])
            for batch, claimed in batches
        ]
        finished_at, cpu_at = time.perf_counter(), time.process_time()
        for batch, succeeded, failed in results:
            journal.batch_finished(batch, api_status="SUCCESS", succeeded=succeeded, failed=failed)
        results_s = invoices / (submit_s + time.perf_counter() - finished_at)
        cpu["finish CPU s"] = time.process_time() - cpu_at
        cpu_at = time.process_time()
        read = sum(1 for _ in journal.each_invoice(target=TARGET, numbers=numbers))
        cpu["read CPU s"] = time.process_time() - cpu_at
        assert read == invoices, read
    return {"files claimed/s": files_s, "claims/s": claims_s, "results/s": results_s, **cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--rows-xlsx", type=int, default=50_000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    xlsx = OUT / f"erp-{args.rows_xlsx}.xlsx"
    if not xlsx.exists():
        write_xlsx(xlsx, args.rows_xlsx)
    with postgres() as admin_url:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE rates")
            admin.execute("CREATE DATABASE pipeline")
        base = admin_url.rsplit("/", 1)[0]
        sqlite_file = OUT / "journal-rates.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
        engines: dict[str, Path | PostgresLocation] = {
            "SQLite": sqlite_file,
            "PostgreSQL": PostgresLocation(f"{base}/rates"),
        }
        print(f"journal rates ({args.invoices} invoices in batches of 100, {args.files} files):")
        for name, location in engines.items():
            figures = rates(location, invoices=args.invoices, files=args.files)
            shown = "  ".join(
                f"{value:9.2f} {label}" if "CPU" in label else f"{value:9.0f} {label}"
                for label, value in figures.items()
            )
            print(f"  {name:<11} {shown}")
        print(f"{xlsx.name} end to end (filedrop run against the sandbox, batches of 100):")
        ends = {"SQLite": str(OUT / "journal-pipeline.db"), "PostgreSQL": f"{base}/pipeline"}
        Path(ends["SQLite"]).unlink(missing_ok=True)
        run_args = argparse.Namespace(
            url=None, auth_url=None, batch_size=100, concurrent=4, latency_ms=0.0
        )
        for name, state in ends.items():
            with serving(run_args, f"journal-{name}") as api:
                run = run_filedrop(xlsx, api, run_args, extra_env={"FILEDROP_STATE": state})
            usage = run.usage
            print(
                f"  {name:<11} {usage.wall_s:7.2f} s wall  {usage.cpu_s:6.2f} s own CPU  "
                f"peak {usage.peak_mb:5.0f} MB  ({run.statuses})"
            )


if __name__ == "__main__":
    main()
