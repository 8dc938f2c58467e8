"""Speed and memory of the whole pipeline against the obvious baselines, measured in one run.

    python bench/bench.py                 # 50,000-row xlsx and 200,000-row CSV
    python bench/bench.py --rows-xlsx 5000 --rows-csv 20000 --skip-openpyxl   # a quick look

Targets: the whole pipeline (read, map, validate, submit, poll,
write the outcome) on a 50,000-row export in at most half the time pandas.read_excel(openpyxl)
takes just to read it; on a 200,000-row CSV in at most 3x pandas.read_csv, under 500 MB.

`filedrop run` runs as a real process against `filedrop sandbox` in another process (batches end
at their first poll), so the figures include start-up, HTTP, JSON and the journal. Peak memory is
the run process's maximum RSS. Then each stage is timed in-process to show where the time goes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import xlsxwriter

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ORG_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
HEADERS = [
    "Fakturanr", "Fakturadato", "Forfallsdato", "Beløp", "Valuta", "KID", "Kundenr", "Kundetype",
    "Fornavn", "Etternavn", "Fødselsnr", "Orgnr", "E-post", "Mobil", "Adresse", "Postnr",
    "Poststed",
]  # fmt: skip
FIRST = ["Åse", "Bjørn", "Kåre", "Sigrid", "Håkon", "Tone", "Jørgen", "Mari", "Øyvind", "Live"]
LAST = ["Kristiansen", "Ødegård", "Hølland", "Løvås", "Bråthen", "Ågesen", "Fjære", "Strøm"]


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


def timed(label: str, fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:7.2f} s", flush=True)
    return seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_pipeline(
    source: Path, *, batch_size: int, concurrent: int, extra_env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """`filedrop run` on a one-file inbox in a real process; (seconds, peak MB, its summary).

    ``extra_env`` adds settings (``bench/journal.py`` points FILEDROP_STATE elsewhere)."""
    inbox = OUT / f"inbox-{source.stem}"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    shutil.copy(source, inbox / source.name)
    old = time.time() - 3600
    os.utime(inbox / source.name, (old, old))
    port = free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "filedrop", "sandbox", "--port", str(port), "--delay", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "FILEDROP_ENV": "sandbox", "FILEDROP_AUTH_URL": url, "FILEDROP_API_URL": url,
            "FILEDROP_CLIENT_ID": "bench", "FILEDROP_CLIENT_SECRET": "bench-secret",
            "FILEDROP_ORG_ID": ORG_ID, "FILEDROP_INBOX": str(inbox),
            "FILEDROP_MAPPING": str(ROOT / "mappings" / "norwegian-erp.toml"),
            "FILEDROP_STABILITY_S": "0", "FILEDROP_BATCH_SIZE": str(batch_size),
            "FILEDROP_CONCURRENT_BATCHES": str(concurrent), "FILEDROP_LOG_FORMAT": "text",
            **(extra_env or {}),
        }  # fmt: skip
        started = time.perf_counter()
        run = subprocess.Popen(
            [sys.executable, "-m", "filedrop", "run"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        _, status, usage = os.wait4(run.pid, 0)
        seconds = time.perf_counter() - started
        summary = run.stdout.read() if run.stdout else ""
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            raise SystemExit(f"filedrop run exited {code}:\n{summary}")
        return seconds, usage.ru_maxrss / 1024, summary.strip().splitlines()[-2]
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def stages(source: Path) -> None:
    """Where the time goes, stage by stage, in this process."""
    from filedrop.mapping import load_mapping
    from filedrop.mapping.prepare import prepare
    from filedrop.outcome import OUTCOME_COLUMNS, OutcomeSummary, write_outcome
    from filedrop.read import read_table

    mapping = load_mapping(ROOT / "mappings" / "norwegian-erp.toml")
    table = None

    def read() -> None:
        nonlocal table
        table = read_table(source, mapping.read)

    timed(f"read_table({source.name})", read)
    prepared = None

    def prep() -> None:
        nonlocal prepared
        prepared = prepare(table, mapping)

    timed("prepare (map + validate + JSON)", prep)
    outcomes = pd.DataFrame({name: ["SUCCEEDED"] * len(table) for name in OUTCOME_COLUMNS})
    now = dt.datetime.now(dt.UTC)
    summary = OutcomeSummary(
        source=OUT / "stage" / source.name,
        environment="sandbox",
        mapping=mapping.name,
        started_at=now,
        finished_at=now,
    )
    (OUT / "stage").mkdir(exist_ok=True)
    shutil.copy(source, OUT / "stage" / source.name)
    staged = type(table)(**{**table.__dict__, "path": OUT / "stage" / source.name})
    timed("write_outcome", write_outcome, staged, outcomes, summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-xlsx", type=int, default=50_000)
    parser.add_argument("--rows-csv", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument(
        "--skip-openpyxl",
        action="store_true",
        help="skip the slow openpyxl baseline (ratios then use 11x calamine)",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    xlsx = OUT / f"erp-{args.rows_xlsx}.xlsx"
    csv = OUT / f"erp-{args.rows_csv}.csv"
    print(f"Inputs ({len(HEADERS)} columns) in {OUT}")
    if not xlsx.exists():
        timed(f"generate {xlsx.name}", write_xlsx, xlsx, args.rows_xlsx)
    if not csv.exists():
        timed(f"generate {csv.name}", write_csv, csv, args.rows_csv)

    print("Baselines (same machine, same run):")
    calamine_s = timed(
        "pandas.read_excel(engine='calamine')", pd.read_excel, xlsx, engine="calamine"
    )
    if args.skip_openpyxl:
        openpyxl_s = 11 * calamine_s
        print(f"  {'openpyxl estimated as 11x calamine':<44} {openpyxl_s:7.2f} s")
    else:
        openpyxl_s = timed(
            "pandas.read_excel(engine='openpyxl')", pd.read_excel, xlsx, engine="openpyxl"
        )
    read_csv_s = timed("pandas.read_csv", pd.read_csv, csv, sep=";", encoding="cp1252")

    print(
        f"Whole pipeline: filedrop run (batch size {args.batch_size}, "
        f"{args.concurrent} POSTs in flight):"
    )
    xlsx_s, xlsx_mb, xlsx_summary = run_pipeline(
        xlsx, batch_size=args.batch_size, concurrent=args.concurrent
    )
    print(f"  {xlsx.name:<44} {xlsx_s:7.2f} s  peak {xlsx_mb:5.0f} MB  ({xlsx_summary})")
    csv_s, csv_mb, csv_summary = run_pipeline(
        csv, batch_size=args.batch_size, concurrent=args.concurrent
    )
    print(f"  {csv.name:<44} {csv_s:7.2f} s  peak {csv_mb:5.0f} MB  ({csv_summary})")

    print("Ratios (target):")
    print(f"  xlsx pipeline / openpyxl read   {xlsx_s / openpyxl_s:5.2f}  (<= 0.50)")
    print(f"  csv pipeline / read_csv         {csv_s / read_csv_s:5.2f}  (<= 3.00)")
    print(f"  csv pipeline peak memory        {csv_mb:5.0f} MB (< 500)")

    print("Stages, in-process:")
    stages(xlsx)
    stages(csv)
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"(bench process peak {rusage.ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
