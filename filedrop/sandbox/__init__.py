"""The sandbox: a local stand-in for Amili's collection API, for trying mappings and for tests.

``service`` is its behaviour (tokens, batches, faults to inject), ``rules`` the per-invoice checks
close to Amili's own, ``transport`` the HTTP plumbing. Nothing sent here reaches Amili.
"""

from filedrop.sandbox.rules import CURRENCIES, DEBTOR_TYPES, validate_invoice
from filedrop.sandbox.service import Counters, Sandbox, SandboxOptions, serve

__all__ = [
    "CURRENCIES",
    "DEBTOR_TYPES",
    "Counters",
    "Sandbox",
    "SandboxOptions",
    "serve",
    "validate_invoice",
]
