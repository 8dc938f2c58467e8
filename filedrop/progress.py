"""Progress for people at a terminal: one line, redrawn, with a bar for long files.

Off a terminal (cron, containers) nothing is drawn: the INFO log lines tell the same story in a
form that greps and ships well.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO


class Progress:
    """Counts files, rows and batches; draws nothing (the base for log-only runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files_started = self.files_done = 0
        self.rows = self.batches_planned = self.batches_sent = self.batches_done = 0

    def file_started(self, *, rows: int, batches: int) -> None:
        with self._lock:
            self.files_started += 1
            self.rows += rows
            self.batches_planned += batches
        self.draw()

    def more_batches(self, batches: int) -> None:
        """More batches of a file being sent: a long file's later parts are planned as they
        are prepared."""
        with self._lock:
            self.batches_planned += batches
        self.draw()

    def batch_sent(self) -> None:
        with self._lock:
            self.batches_sent += 1
        self.draw()

    def batch_done(self) -> None:
        with self._lock:
            self.batches_done += 1
        self.draw()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
        self.draw()

    def draw(self) -> None:
        """Nothing to draw off a terminal."""

    def close(self) -> None:
        """Nothing to clear off a terminal."""


class TerminalProgress(Progress):
    """Redraws one status line on ``stream`` at most ten times a second."""

    BAR_WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._last_draw = 0.0
        self._width = 0

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        with self._lock:
            planned = max(self.batches_planned, 1)
            filled = int(self.BAR_WIDTH * self.batches_done / planned)
            line = (
                f"[{'#' * filled}{'-' * (self.BAR_WIDTH - filled)}] "
                f"files {self.files_done}/{self.files_started}  rows {self.rows:,}  "
                f"batches {self.batches_sent}/{self.batches_planned} sent, "
                f"{self.batches_done} done"
            )
        padding = " " * max(0, self._width - len(line))
        self._width = len(line)
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()

    def close(self) -> None:
        if self._width:
            self.draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
