"""The few errors filedrop raises on purpose.

Each carries where the problem is and builds its one sentence in ``__str__``, so the CLI's single
error boundary can print it as it is. Anything else that escapes is a bug: the boundary prints it
as an "unexpected error" sentence, and its traceback only with ``--debug``.
"""

from __future__ import annotations


class FiledropError(Exception):
    """A problem the user can act on; ``str()`` is the whole sentence."""


class ConfigError(FiledropError):
    """A setting is missing or wrong; nothing was sent."""


class MappingError(FiledropError):
    """A mapping file is unusable, or no mapping fits a file."""

    def __init__(self, mapping: str, detail: str) -> None:
        super().__init__(mapping, detail)
        self.mapping = mapping
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.mapping}: {self.detail}"


class ReadError(FiledropError):
    """A file cannot be read as a table at all."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, detail)
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class EncodingUnsureError(ReadError):
    """A CSV whose encoding filedrop will not guess: ``finding`` says what it found where, and
    ``encodings`` are the settings that would read it, the likeliest first, then the one that
    reads it as it was taken to be (``filedrop init --encoding`` takes one)."""

    def __init__(self, path: str, detail: str, *, finding: str, encodings: tuple[str, str]) -> None:
        super().__init__(path, detail)
        self.finding = finding
        self.encodings = encodings


class EncodingContradictedError(ReadError):
    """A CSV whose bytes say what encoding they are in (``finding``), another than the one set
    for it."""

    def __init__(self, path: str, detail: str, *, finding: str) -> None:
        super().__init__(path, detail)
        self.finding = finding


class ReadAgainLaterError(FiledropError):
    """A file whose read was given up for a reason that passes, so nothing is recorded against
    its bytes: it changed while it was read (``replaced``), filedrop was stopping (``stopped``),
    or a signal from outside ended its reader. Not a ``ReadError``: a mapping that cannot read
    a file is a verdict on the file, and this is none."""

    REPLACED = "it changed while it was read; it is read again once it settles"
    STOPPED = "not read to the end: filedrop was stopping; the next run reads it"
    #: A reader killed from outside (``{}``: the signal): nothing the file did.
    KILLED = "not read to the end: its reader was stopped by {} from outside; it is read again"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, detail)
        self.path = path
        self.detail = detail

    @property
    def replaced(self) -> bool:
        return self.detail == self.REPLACED

    @property
    def stopped(self) -> bool:
        return self.detail == self.STOPPED

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


class HiddenSheetError(ReadError):
    """The sheet chosen by its position is one Excel hides; ``visible`` are the sheets it shows,
    in order (``filedrop init`` drafts from the first of them)."""

    def __init__(self, path: str, detail: str, visible: tuple[str, ...] = ()) -> None:
        super().__init__(path, detail)
        self.args = (path, detail, visible)  # rebuilt whole when it crosses from the reader
        self.visible = visible


class ClaimLostError(FiledropError):
    """Another process took over a file this one held (its claim lapsed while this process was
    held up): this one sends nothing more from it and writes no outcome; that one finishes it."""
