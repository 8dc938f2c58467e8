"""The journal: what filedrop has seen, claimed, sent and learnt; the ground of "never twice".

``store`` holds the ``Journal`` and its records. Callers import from here.
"""

from filedrop.journal.store import (
    BatchRecord,
    FileRecord,
    InvoiceRecord,
    Journal,
    NotSettledError,
    owner_alive,
    this_owner,
)

__all__ = [
    "BatchRecord",
    "FileRecord",
    "InvoiceRecord",
    "Journal",
    "NotSettledError",
    "owner_alive",
    "this_owner",
]
