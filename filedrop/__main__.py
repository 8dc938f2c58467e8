"""``python -m filedrop``: the same as the ``filedrop`` command."""

from filedrop.cli import console

console()
