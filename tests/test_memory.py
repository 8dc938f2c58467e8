"""Freed heap memory goes back to the system between a file's big steps."""

from __future__ import annotations

import os
import sys

import pytest

from filedrop.memory import few_malloc_arenas, release_freed_memory


def _resident_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_memory_freed_between_live_blocks_is_given_back() -> None:
    """200 MB of blocks freed around a few kept ones stays resident until released; then the
    resident size falls by most of it (a big CSV's parser leaves just such a heap)."""
    blocks = [bytes(2000) for _ in range(100_000)]
    kept = blocks[::50]
    del blocks
    before = _resident_mb()
    assert release_freed_memory() is True
    assert before - _resident_mb() > 100
    assert len(kept) == 2000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's")
def test_malloc_keeps_few_arenas_unless_the_environment_says_how_many() -> None:
    """glibc takes the setting (a long file's parts are prepared on a thread of their own, whose
    freed memory would otherwise stay in an arena of its own); MALLOC_ARENA_MAX set by the
    operator, which glibc read at start, is left as it is."""
    assert few_malloc_arenas({}) is True
    assert few_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False
