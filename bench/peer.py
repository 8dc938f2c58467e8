"""The plain pandas + requests script a competent developer would write instead of filedrop.

    FILEDROP_CLIENT_ID=.. FILEDROP_CLIENT_SECRET=.. python bench/peer.py FILE \\
        --auth-url URL --api-url URL --org-id UUID [--batch-size 100]

Reads the norwegian-erp export with pandas, builds the same invoice JSON filedrop sends, POSTs
each batch in turn on one ``requests.Session``, polls every batch on the guide's schedule (1 s
after its POST, doubling to 30 s, until it ends), and writes the file again with a status column
beside it (FILE.peer.xlsx or FILE.peer.csv). No journal, no resume, no per-row checks: the
figure is what the job costs without them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import requests

TERMINAL = {"SUCCESS", "PARTIAL", "FAILED"}
DEBTOR_TYPES = {"P": "PRIVATE", "B": "COMPANY"}


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".xlsx":
        frame = pd.read_excel(path, dtype={"Kundenr": str, "Fødselsnr": str, "Postnr": str})
    else:
        frame = pd.read_csv(
            path, sep=";", encoding="cp1252", decimal=",", dtype=str, keep_default_na=False
        )
        frame["Beløp"] = frame["Beløp"].str.replace(" ", "").str.replace(",", ".").astype(float)
    dates = None if path.suffix == ".xlsx" else "%d.%m.%Y"
    for column in ("Fakturadato", "Forfallsdato"):
        frame[column] = pd.to_datetime(frame[column], format=dates).dt.strftime(
            "%Y-%m-%dT00:00:00Z"
        )
    return frame.fillna("").astype({"Kundenr": str, "Mobil": str, "Postnr": str})


def invoice(row: dict[str, Any]) -> dict[str, Any]:
    identification = str(row["Fødselsnr"]).zfill(11) if row["Fødselsnr"] else str(row["Orgnr"])
    body: dict[str, Any] = {
        "type": "NOTICE",
        "invoiceNumber": row["Fakturanr"],
        "originalInvoiceAmount": row["Beløp"],
        "currency": row["Valuta"] or "NOK",
        "invoiceDate": row["Fakturadato"],
        "dueDate": row["Forfallsdato"],
        "uniqueSourceInvoiceId": f"{row['Kundenr']}-{row['Fakturanr']}",
        "description": f"Faktura {row['Fakturanr']}",
        "debtors": [
            {
                "type": DEBTOR_TYPES.get(row["Kundetype"], "PRIVATE"),
                "firstname": row["Fornavn"],
                "lastname": row["Etternavn"],
                "customerNumber": row["Kundenr"],
                "identificationNumber": identification,
                "emails": [{"value": row["E-post"]}],
                "phoneNumbers": [{"value": "+47" + str(row["Mobil"]), "countryCode": "NO"}],
                "addresses": [
                    {
                        "street": row["Adresse"],
                        "zipCode": str(row["Postnr"]).zfill(4),
                        "city": row["Poststed"],
                        "countryCode": "NO",
                    }
                ],
            }
        ],
        "claims": [
            {"type": "PRINCIPAL", "remainingAmount": row["Beløp"], "description": "Hovedstol"}
        ],
    }
    if row["KID"]:
        body["ocrReferenceNumber"] = row["KID"]
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--auth-url", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--org-id", required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    frame = read(args.file)
    invoices = [invoice(row) for row in frame.to_dict("records")]

    session = requests.Session()
    answer = session.post(
        f"{args.auth_url}/token",
        data={
            "grant_type": "client_credentials",
            "client_id": os.environ["FILEDROP_CLIENT_ID"],
            "client_secret": os.environ["FILEDROP_CLIENT_SECRET"],
        },
        timeout=30,
    )
    answer.raise_for_status()
    session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    # batch id -> (when to poll next, the wait after that)
    pending: dict[str, tuple[float, float]] = {}
    for start in range(0, len(invoices), args.batch_size):
        answer = session.post(
            f"{args.api_url}/collection/v1/orgs/{args.org_id}/invoices",
            json={"invoices": invoices[start : start + args.batch_size]},
            timeout=60,
        )
        answer.raise_for_status()
        pending[answer.json()["data"]["batchId"]] = (time.monotonic() + 1.0, 2.0)

    status: dict[str, str] = {}
    while pending:
        batch_id, (due, wait_s) = min(pending.items(), key=lambda item: item[1][0])
        time.sleep(max(0.0, due - time.monotonic()))
        answer = session.get(f"{args.api_url}/collection/v1/batches/{batch_id}", timeout=60)
        answer.raise_for_status()
        batch = answer.json()["data"]
        if batch["status"] not in TERMINAL:
            pending[batch_id] = (time.monotonic() + wait_s, min(wait_s * 2, 30.0))
            continue
        del pending[batch_id]
        status.update((done["invoiceNumber"], "SUCCEEDED") for done in batch["succeeded"])
        status.update((failed["invoiceNumber"], "FAILED") for failed in batch["failed"])

    frame["status"] = frame["Fakturanr"].map(status).fillna("UNKNOWN")
    out = args.file.with_name(f"{args.file.stem}.peer{args.file.suffix}")
    if out.suffix == ".xlsx":
        frame.to_excel(out, index=False)
    else:
        frame.to_csv(out, sep=";", index=False, encoding="cp1252")


if __name__ == "__main__":
    main()
