"""Rows that were certainly not sent say so (NOT_SENT), and the next run sends them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from builders import erp_row, filedrop, run_env, write_erp_csv

from filedrop.api.types import ApiError
from filedrop.pipeline import not_sent_reason
from filedrop.sandbox import Sandbox, SandboxOptions
from filedrop.states import ExitCode, RowStatus, exit_code_for


def outcome_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", encoding="cp1252", dtype=str, keep_default_na=False)


def test_a_batch_too_large_is_not_sent_and_a_smaller_batch_size_sends_it(
    inbox: Path, sandbox: Sandbox
) -> None:
    """413 on the POST: NOT_SENT saying what to do, exit 2; the rerun with a smaller batch size
    sends every row, although the file's bytes did not change."""
    write_erp_csv(inbox / "big.csv", [erp_row("8101"), erp_row("8102"), erp_row("8103")])
    sandbox.fail_next(413, route="invoices")
    _, out, _ = filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.SETUP)
    outcome = outcome_csv(inbox / "big.outcome.csv")
    message = (
        "not sent: the API answered 413, request too large; lower FILEDROP_BATCH_SIZE and the "
        "next run sends it"
    )
    assert list(outcome["outcome_status"]) == ["NOT_SENT"] * 3
    assert list(outcome["outcome_message"]) == [message] * 3
    assert out.splitlines()[1:3] == ["big.csv: 3 NOT_SENT", f"  {message}"]
    assert sandbox.received_invoice_numbers() == []

    env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="1")
    filedrop("run", environ=env, expect=ExitCode.OK)
    assert list(outcome_csv(inbox / "big.outcome.csv")["outcome_status"]) == ["SUCCEEDED"] * 3
    assert sorted(sandbox.received_invoice_numbers()) == ["8101", "8102", "8103"]
    assert sandbox.counters().posts == 4


def test_a_batch_refused_with_400_for_its_size_is_not_sent_either(inbox: Path) -> None:
    """An API that refuses a batch over its limit with 400 and says so (as filedrop's own sandbox
    does): NOT_SENT naming FILEDROP_BATCH_SIZE, exit 2, and the same file sent once it is lowered.
    Taken for a refusal of the invoices' content, every row was FAILED and the rerun skipped the
    file as already processed: nothing was ever sent."""
    write_erp_csv(inbox / "big.csv", [erp_row("8151"), erp_row("8152"), erp_row("8153")])
    with Sandbox(SandboxOptions(delay_s=(0, 0), seed=1, max_invoices_per_batch=2)) as sandbox:
        filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.SETUP)
        message = (
            'not sent: the API answered 400, \'{"message": "A batch holds at most 2 invoices, '
            "not 3\"}': a batch of 3 invoices is too large; lower FILEDROP_BATCH_SIZE and the next "
            "run sends it"
        )
        outcome = outcome_csv(inbox / "big.outcome.csv")
        assert list(outcome["outcome_status"]) == ["NOT_SENT"] * 3
        assert list(outcome["outcome_message"]) == [message] * 3
        assert sandbox.received_invoice_numbers() == []

        env = run_env(inbox, sandbox.url, FILEDROP_BATCH_SIZE="2")
        filedrop("run", environ=env, expect=ExitCode.OK)
        assert list(outcome_csv(inbox / "big.outcome.csv")["outcome_status"]) == ["SUCCEEDED"] * 3
        assert sorted(sandbox.received_invoice_numbers()) == ["8151", "8152", "8153"]


def test_rows_not_sent_while_the_api_is_down_are_not_sent_not_failed(
    inbox: Path, sandbox: Sandbox
) -> None:
    """Every POST answered 503: NOT_SENT with the reason, exit 3 (nothing for a person to fix)."""
    write_erp_csv(inbox / "m.csv", [erp_row("8201")])
    sandbox.fail_next(503, count=6, retry_after="0", route="invoices")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.UNFINISHED)
    outcome = outcome_csv(inbox / "m.outcome.csv")
    assert list(outcome["outcome_status"]) == ["NOT_SENT"]
    assert outcome["outcome_message"][0] == (
        "not sent: Amili was not available (HTTP 503, 6 attempts); the next run sends it"
    )


def test_a_forbidden_post_is_not_sent_naming_the_setting(inbox: Path, sandbox: Sandbox) -> None:
    """403 on the POST: NOT_SENT naming FILEDROP_ORG_ID, exit 2."""
    write_erp_csv(inbox / "f.csv", [erp_row("8301")])
    sandbox.fail_next(403, route="invoices")
    filedrop("run", environ=run_env(inbox, sandbox.url), expect=ExitCode.SETUP)
    outcome = outcome_csv(inbox / "f.outcome.csv")
    assert list(outcome["outcome_status"]) == ["NOT_SENT"]
    assert outcome["outcome_message"][0] == (
        "not sent: the API answered 403, forbidden; check that the client may use this "
        "organisation (FILEDROP_ORG_ID) and the next run sends it"
    )


def test_a_batch_refused_for_its_content_stays_failed(inbox: Path, sandbox: Sandbox) -> None:
    """400 on the POST is about the invoices: FAILED, exit 1, and the same bytes are not resent."""
    write_erp_csv(inbox / "c.csv", [erp_row("8401")])
    env = run_env(inbox, sandbox.url)
    sandbox.fail_next(400, route="invoices")
    filedrop("run", environ=env, expect=ExitCode.ATTENTION)
    assert list(outcome_csv(inbox / "c.outcome.csv")["outcome_status"]) == ["FAILED"]
    _, out, _ = filedrop("run", environ=env)
    assert out.splitlines()[1] == "c.csv: skipped (already processed)"
    assert sandbox.counters().posts == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "{url} ",
            "filedrop: FILEDROP_API_URL is '{url} ', which holds a space or control character; "
            "remove it.",
        ),
        (
            "127.0.0.1:1",
            "filedrop: FILEDROP_API_URL is '127.0.0.1:1', which is not an http(s) URL; set it to "
            "e.g. https://api.amili.no.",
        ),
    ],
)
def test_an_invalid_api_url_is_a_setup_error_before_anything_is_sent(
    inbox: Path, sandbox: Sandbox, url: str, message: str
) -> None:
    """A trailing space or a missing scheme: exit 2 in one sentence, no POST, no outcome."""
    write_erp_csv(inbox / "u.csv", [erp_row("8501")])
    env = run_env(inbox, sandbox.url, FILEDROP_API_URL=url.format(url=sandbox.url))
    _, out, err = filedrop("run", environ=env, expect=ExitCode.SETUP)
    assert err.splitlines()[-1] == message.format(url=sandbox.url)
    assert out == ""
    assert sandbox.counters().posts == 0
    assert not (inbox / "u.outcome.csv").exists()


@pytest.mark.parametrize(
    ("statuses", "setup", "code"),
    [
        ({RowStatus.NOT_SENT}, False, ExitCode.UNFINISHED),
        ({RowStatus.NOT_SENT, RowStatus.SUCCEEDED}, False, ExitCode.UNFINISHED),
        ({RowStatus.NOT_SENT}, True, ExitCode.SETUP),
        ({RowStatus.NOT_SENT, RowStatus.INVALID}, False, ExitCode.ATTENTION),
        ({RowStatus.NOT_SENT, RowStatus.INVALID}, True, ExitCode.SETUP),
    ],
)
def test_not_sent_rows_exit_3_unless_the_setup_stopped_them(
    statuses: set[RowStatus], setup: bool, code: ExitCode
) -> None:
    """NOT_SENT alone is 3, 2 when the setup is the cause; the order is 2, 1, 3, 0."""
    assert exit_code_for(statuses, setup_problem=setup) is code


@pytest.mark.parametrize(
    ("words", "too_large"),
    [
        ('{"message": "A batch holds at most 5 invoices, not 11"}', True),
        ("invoices: ensure this list has at most 50 items", True),
        ("Maximum batch size is 50", True),
        ("Too many invoices in one request", True),
        ("Batch too large: 100 invoices (limit 50)", True),
        ("invoices: size must be between 1 and 50", True),
        ("may not contain more than 50 invoices", True),
        ("List should have at most 100 items", False),  # not below the 100 sent
        ("invoices[3].originalInvoiceAmount exceeds maximum", False),
        ("invoices[0].debtors[0].phoneNumbers: ensure this list has at most 1 items", False),
        ("claims: ensure this list has at most 50 items", False),
        ("emails: maximum 5 entries", False),
        ("invoice 240301: dueDate is before invoiceDate", False),
        ("Number of invoices (100) exceeds limit (50)", True),
        ("Payload contains 100 invoices; the limit is 50.", True),
        ("Too many items in request: 100 > 50", True),
        ("Batch rejected: amount exceeds maximum allowed", False),
        ("invoices.3.references: ensure this list has at most 2 items", False),
        ("Each invoice may carry at most 2 items", False),
        ("Batch refused: at most 3 invoices may be created per day", False),
        ("invoices: size must be between 1 and 500", False),  # 100 is within
        ("amount exceeds maximum of 10000 for invoices", False),
        ("at most " + "9" * 5000 + " invoices", False),  # no count, and no crash
    ],
)
def test_only_words_about_the_batch_size_make_a_400_a_setup_refusal(
    words: str, too_large: bool
) -> None:
    """The API's own words tell a batch of 100 refused for its size (NOT_SENT, the batch size
    to lower) from one refused for its invoices' content (FAILED: ``not_sent_reason`` gives
    None): words that point inside an invoice, or a limit not below the invoices sent, are
    content. A batch of one is never too large, so lowering the batch size always ends it."""
    refusal = ApiError("POST", "/collection/v1/orgs/x/invoices", 400, words)
    reason = not_sent_reason(refusal, invoices=100)
    assert (reason is not None) == too_large
    if reason is not None:
        assert reason[0].endswith("a batch of 100 invoices is too large; lower FILEDROP_BATCH_SIZE")
    assert not_sent_reason(refusal, invoices=1) is None
