"""Plan batches: split the invoices to send into POST-sized groups, in file order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def plan_batches(invoices: Sequence[T], *, size: int) -> list[list[T]]:
    """Consecutive groups of at most ``size`` invoices (the API guide names no limit, so it is a
    setting: ``batch_size``). Keeping file order makes the outcome's batch ids read top-down."""
    if size < 1:
        raise ValueError("batch size must be 1 or more")
    return [list(invoices[start : start + size]) for start in range(0, len(invoices), size)]
