"""The sandbox speaks the guide's API on the wire: shapes, status codes, validation, knobs."""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from typing import Any

import pytest
import requests

from filedrop.mapping.convert import CURRENCIES
from filedrop.sandbox import Sandbox, SandboxOptions, serve, validate_invoice

BATCH_FIELDS = {
    "batchId",
    "type",
    "status",
    "createdAt",
    "finishedAt",
    "organizationId",
    "createdBy",
    "succeeded",
    "failed",
}


def get_token(sandbox: Sandbox, **form: str) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_id": "me", "client_secret": "s3cr3t"}
    return requests.post(f"{sandbox.url}/token", data={**data, **form}, timeout=5)


def bearer(sandbox: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {get_token(sandbox).json()['access_token']}"}


def invoices_url(sandbox: Sandbox, org_id: str) -> str:
    return f"{sandbox.url}/collection/v1/orgs/{org_id}/invoices"


def post_invoices(
    sandbox: Sandbox, invoices: list[dict[str, Any]], *, org_id: str
) -> requests.Response:
    return requests.post(
        invoices_url(sandbox, org_id),
        json={"invoices": invoices},
        headers=bearer(sandbox),
        timeout=5,
    )


def get_batch(sandbox: Sandbox, batch_id: str) -> requests.Response:
    url = f"{sandbox.url}/collection/v1/batches/{batch_id}"
    return requests.get(url, headers=bearer(sandbox), timeout=5)


def submit(sandbox: Sandbox, invoices: list[dict[str, Any]], *, org_id: str) -> dict[str, Any]:
    """POST then GET once; the batch's data (the sandbox fixture's batches finish at once)."""
    created = post_invoices(sandbox, invoices, org_id=org_id)
    assert created.status_code == 202, created.text
    return get_batch(sandbox, created.json()["data"]["batchId"]).json()["data"]


def test_token_answer_has_every_documented_field(sandbox):
    """POST /token with client_credentials answers the guide's token JSON."""
    answer = get_token(sandbox)
    assert answer.status_code == 200
    data = answer.json()
    assert set(data) == {
        "access_token",
        "token_type",
        "not_before",
        "expires_in",
        "expires_on",
        "resource",
    }
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 3600
    assert data["expires_on"] - data["not_before"] == 3600


def test_token_needs_the_client_credentials_grant(sandbox):
    """Another grant type is a 400 in OAuth's words."""
    answer = get_token(sandbox, grant_type="password")
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


def test_configured_credentials_are_enforced(sandbox):
    """Started with a client id and secret, the sandbox refuses any other pair with 401."""
    sandbox.options.client_id = "me"
    sandbox.options.client_secret = "right"
    assert get_token(sandbox, client_secret="wrong").status_code == 401
    assert get_token(sandbox, client_id="you", client_secret="right").status_code == 401
    assert get_token(sandbox, client_secret="right").status_code == 200


def test_guide_example_succeeds_with_every_documented_field(sandbox, example_invoice, org_id):
    """The guide's own invoice becomes a case; both answers carry every documented field."""
    created = post_invoices(sandbox, [example_invoice], org_id=org_id)
    assert created.status_code == 202
    batch_id = created.json()["data"]["batchId"]
    assert created.json()["data"]["batchUrl"] == f"{sandbox.url}/collection/v1/batches/{batch_id}"
    data = get_batch(sandbox, batch_id).json()["data"]
    assert set(data) == BATCH_FIELDS
    assert (data["status"], data["type"], data["organizationId"]) == ("SUCCESS", "INVOICE", org_id)
    assert data["failed"] == []
    (case,) = data["succeeded"]
    assert set(case) == {"type", "invoiceId", "invoiceNumber", "caseId", "caseNumber"}
    assert case["invoiceNumber"] == "INV-2024-00123"
    assert data["finishedAt"] is not None


def test_unknown_batch_is_404(sandbox):
    """An id the sandbox never issued is not found."""
    answer = get_batch(sandbox, str(uuid.uuid4()))
    assert answer.status_code == 404
    assert "was not found" in answer.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body is not valid JSON"),
        (b"[]", 'Request body must be {"invoices": [...]}'),
        (b'{"invoices": []}', "with at least one invoice"),
        (b'{"invoices": [42]}', "Each entry of invoices must be an object"),
    ],
)
def test_malformed_body_is_400_with_a_message(sandbox, body, message, org_id):
    """A body that is not {"invoices": [objects]} is refused whole, with a reason."""
    answer = requests.post(
        invoices_url(sandbox, org_id),
        data=body,
        headers={**bearer(sandbox), "Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert message in answer.json()["message"]
    assert sandbox.counters().invoices_received == 0


def test_org_id_must_be_a_uuid(sandbox, example_invoice):
    """orgId is a UUID in the guide; anything else is a 400."""
    assert post_invoices(sandbox, [example_invoice], org_id="acme").status_code == 400


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic bWU6czNjcjN0"])
def test_api_needs_a_valid_bearer_token(sandbox, example_invoice, authorization, org_id):
    """No token, an unknown token or another scheme: 401, nothing processed."""
    headers = {"Authorization": authorization} if authorization else {}
    answer = requests.post(
        invoices_url(sandbox, org_id),
        json={"invoices": [example_invoice]},
        headers=headers,
        timeout=5,
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert sandbox.counters().invoices_received == 0


def test_expired_token_is_refused(example_invoice, org_id, fake_time):
    """A token past its lifetime gets 401."""
    fake = fake_time
    with Sandbox(SandboxOptions(token_lifetime_s=60), clock=fake.clock) as sandbox:
        headers = bearer(sandbox)
        fake.now += 61
        answer = requests.post(
            invoices_url(sandbox, org_id),
            json={"invoices": [example_invoice]},
            headers=headers,
            timeout=5,
        )
        assert answer.status_code == 401


def test_batch_stays_queued_for_its_delay(example_invoice, org_id, fake_time):
    """QUEUED (no finishedAt, empty lists) until the delay has passed, then terminal."""
    fake = fake_time
    with Sandbox(SandboxOptions(delay_s=(5, 5)), clock=fake.clock) as sandbox:
        batch_id = post_invoices(sandbox, [example_invoice], org_id=org_id).json()["data"][
            "batchId"
        ]
        fake.now += 4.9
        queued = get_batch(sandbox, batch_id).json()["data"]
        assert set(queued) == BATCH_FIELDS
        assert (queued["status"], queued["finishedAt"]) == ("QUEUED", None)
        assert queued["succeeded"] == queued["failed"] == []
        fake.now += 0.1
        assert get_batch(sandbox, batch_id).json()["data"]["status"] == "SUCCESS"


def test_duplicate_invoice_number_fails_in_a_later_batch(sandbox, example_invoice, org_id):
    """An invoice number this org already has a case for fails with "already exists"."""
    assert submit(sandbox, [example_invoice], org_id=org_id)["status"] == "SUCCESS"
    second = submit(sandbox, [example_invoice], org_id=org_id)
    assert second["status"] == "FAILED"
    assert second["failed"] == [
        {
            "type": "INVOICE",
            "invoiceNumber": "INV-2024-00123",
            "errors": ["Invoice number INV-2024-00123 already exists"],
        }
    ]
    assert sandbox.counters().invoice_numbers_repeated == ("INV-2024-00123",)


def test_same_number_in_another_org_is_not_a_duplicate(sandbox, example_invoice, org_id):
    """Cases belong to an organisation."""
    submit(sandbox, [example_invoice], org_id=org_id)
    assert submit(sandbox, [example_invoice], org_id=str(uuid.uuid4()))["status"] == "SUCCESS"


def test_failed_invoice_number_can_be_sent_again(sandbox, example_invoice, org_id):
    """Only a case blocks a number: a rejected invoice may be corrected and resent."""
    broken = copy.deepcopy(example_invoice)
    broken["currency"] = "nok"
    assert submit(sandbox, [broken], org_id=org_id)["status"] == "FAILED"
    assert submit(sandbox, [example_invoice], org_id=org_id)["status"] == "SUCCESS"


def test_extra_fields_are_accepted(sandbox, example_invoice, org_id):
    """Fields the guide does not list pass through without error."""
    example_invoice["projectCode"] = "P-7"
    example_invoice["debtors"][0]["preferredLanguage"] = "nb"
    assert submit(sandbox, [example_invoice], org_id=org_id)["status"] == "SUCCESS"


def change(invoice: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """Set (or with ... delete) a dotted path such as ``debtors.0.firstname``."""
    *parents, last = path.split(".")
    target: Any = invoice
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return invoice


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("invoiceNumber", ..., "Invoice number is required"),
        ("invoiceNumber", 123, "Invoice number 123 must be a string"),
        ("originalInvoiceAmount", ..., "Original invoice amount is required"),
        ("originalInvoiceAmount", 0, "Original invoice amount must be a positive number"),
        ("originalInvoiceAmount", "4500", "Original invoice amount must be a positive number"),
        ("currency", ..., "Currency is required"),
        ("currency", "XYZ", 'Currency "XYZ" is not an ISO 4217 currency code'),
        ("invoiceDate", ..., "Invoice date is required"),
        ("dueDate", "15.02.2024", 'Due date "15.02.2024" is not an ISO 8601 date'),
        ("dueDate", "2024-02-30", 'Due date "2024-02-30" is not an ISO 8601 date'),
        ("debtors", [], "At least one debtor is required"),
        ("claims", ..., "At least one claim is required"),
        ("claims.0.remainingAmount", -1, "Claim remaining amount must be a positive number"),
        ("debtors.0.firstname", "", "Debtor first name is required"),
        ("debtors.0.lastname", ..., "Debtor last name is required"),
        ("debtors.0.type", "PERSON", 'Debtor type "PERSON" is not one of PRIVATE, COMPANY'),
        ("debtors.0.identificationNumber", "1234", "Debtor identification number is invalid"),
        ("debtors.0.emails.0.value", "kari@", 'Debtor email "kari@" is invalid'),
        ("debtors.0.emails.0.value", "kari@example", 'Debtor email "kari@example" is invalid'),
        ("debtors.0.phoneNumbers.0.value", "call me", 'Debtor phone number "call me" is invalid'),
    ],
)
def test_invoice_validation_names_the_problem(example_invoice, path, value, error):
    """Each rule gives the one Amili-style sentence for exactly what is wrong."""
    assert validate_invoice(change(example_invoice, path, value)) == [error]


def test_every_currency_filedrop_accepts_the_sandbox_accepts(example_invoice):
    """The sandbox and the validator share one currency list (VED, ZWL, ... included)."""
    refused = [
        code
        for code in sorted(CURRENCIES)
        if validate_invoice(change(example_invoice, "currency", code))
    ]
    assert refused == []


def test_company_debtor_needs_a_name(example_invoice):
    """A COMPANY debtor needs name, companyName or lastname, and a 9-digit Norwegian number."""
    debtor = example_invoice["debtors"][0]
    for key in ("firstname", "lastname"):
        del debtor[key]
    debtor.update(type="COMPANY", identificationNumber="923609016")
    assert validate_invoice(example_invoice) == ["Debtor company name is required"]
    debtor["companyName"] = "Nordmann AS"
    assert validate_invoice(example_invoice) == []
    del debtor["companyName"]
    debtor["name"] = "Nordmann AS"
    assert validate_invoice(example_invoice) == []
    del debtor["name"]
    debtor["lastname"] = "Nordmann AS"
    assert validate_invoice(example_invoice) == []


def test_mixed_batch_is_partial_and_all_bad_is_failed(sandbox, example_invoice, org_id):
    """PARTIAL when some fail, FAILED only when all fail."""
    bad = change(copy.deepcopy(example_invoice), "invoiceNumber", "INV-BAD")
    bad["currency"] = "XYZ"
    partial = submit(sandbox, [example_invoice, bad], org_id=org_id)
    assert partial["status"] == "PARTIAL"
    assert [f["invoiceNumber"] for f in partial["failed"]] == ["INV-BAD"]
    assert submit(sandbox, [bad], org_id=org_id)["status"] == "FAILED"


def test_counters_count_what_arrived(sandbox, example_invoice, org_id):
    """Token requests, POSTs, polls, invoices and repeated numbers are counted."""
    other = change(copy.deepcopy(example_invoice), "invoiceNumber", "INV-2")
    submit(sandbox, [example_invoice, other], org_id=org_id)
    submit(sandbox, [other], org_id=org_id)
    counters = sandbox.counters()
    assert (counters.token_requests, counters.posts, counters.polls) == (4, 2, 2)
    assert counters.invoices_received == 3
    assert counters.invoice_numbers_repeated == ("INV-2",)
    assert sandbox.received_invoice_numbers() == ["INV-2024-00123", "INV-2", "INV-2"]


def test_rates_answer_429_and_503_with_retry_after(sandbox, example_invoice, org_id):
    """At rate 1 every API request is refused, unprocessed, with the configured Retry-After."""
    sandbox.options.rate_429 = 1
    sandbox.options.retry_after_s = 2
    answer = post_invoices(sandbox, [example_invoice], org_id=org_id)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "2")
    sandbox.options.rate_429, sandbox.options.rate_503 = 0, 1
    assert get_batch(sandbox, str(uuid.uuid4())).status_code == 503
    assert sandbox.counters().invoices_received == 0


def test_lost_response_rate_processes_then_hangs_up(sandbox, example_invoice, org_id):
    """At rate 1 the POST is processed but the connection closes without an answer."""
    sandbox.options.rate_lost_response = 1
    with pytest.raises(requests.ConnectionError):
        post_invoices(sandbox, [example_invoice], org_id=org_id)
    assert sandbox.received_invoice_numbers() == ["INV-2024-00123"]


def test_fail_next_is_used_up_in_order(sandbox):
    """Injected failures hit the next matching requests only, then normal service resumes."""
    sandbox.fail_next(503, count=2, retry_after="0", route="batches")
    headers = bearer(sandbox)
    url = f"{sandbox.url}/collection/v1/batches/{uuid.uuid4()}"
    codes = [requests.get(url, headers=headers, timeout=5).status_code for _ in range(3)]
    assert codes == [503, 503, 404]
    with pytest.raises(ValueError, match="route"):
        sandbox.fail_next(500, route="everything")


def test_start_twice_serves_once():
    """``with Sandbox().start() as sandbox`` starts one server, not two."""
    sandbox = Sandbox().start()
    with sandbox.start() as same:
        assert same is sandbox
        assert get_token(sandbox).status_code == 200
    with pytest.raises(requests.ConnectionError):
        get_token(sandbox)


def test_stopped_sandbox_refuses_connections():
    """stop() closes the port and any kept-alive connection."""
    with Sandbox() as sandbox, requests.Session() as session:
        url = sandbox.url
        assert session.post(f"{url}/token", data={}, timeout=5).status_code == 400
        sandbox.stop()
        with pytest.raises(requests.ConnectionError):
            session.post(f"{url}/token", data={}, timeout=5)


def test_serve_says_nothing_reaches_amili(caplog):
    """The CLI entry point logs that it is a local sandbox, then stops on the event."""
    caplog.set_level(logging.INFO, logger="filedrop.sandbox")
    stop = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(SandboxOptions(),),
        kwargs={"host": "127.0.0.1", "port": 0, "stop": stop},
    )
    thread.start()
    try:
        for _ in range(100):
            if "nothing sent here reaches Amili" in caplog.text:
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert "nothing sent here reaches Amili" in caplog.text
    assert not thread.is_alive()
