"""Mapping: a ``Table`` -> the invoices to send, through one TOML column-mapping file.

``loader`` reads and checks the mapping file and picks the mapping that fits a file; ``tree`` is
the language of the invoice sections; ``fields`` evaluates each field over a whole table with the
pure conversions of ``convert``; ``groups`` groups rows into invoices and finds repeated invoice
numbers; ``checks`` applies the rules; ``prepare`` runs those steps and decides what is sent;
``payload`` builds the Invoice JSON. Nothing here knows of HTTP.
"""

from filedrop.mapping.loader import (
    RULES,
    SEVERITIES,
    Mapping,
    load_mapping,
    load_mappings,
    select_mapping,
)

__all__ = [
    "RULES",
    "SEVERITIES",
    "Mapping",
    "load_mapping",
    "load_mappings",
    "select_mapping",
]
