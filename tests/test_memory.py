"""Freed heap memory goes back to the system between a file's big steps."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from filedrop.memory import release_freed_memory


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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
@pytest.mark.parametrize(
    ("environ", "taken"),
    [
        ({}, True),
        ({"MALLOC_ARENA_MAX": "4"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, False),
    ],
)
def test_malloc_keeps_few_arenas_unless_the_environment_says_how_many(
    environ: dict[str, str], taken: bool
) -> None:
    """glibc takes the setting (a long file's parts are prepared on a thread of their own, whose
    freed memory would otherwise stay in an arena of its own); an operator's own number, which
    glibc read at start, is left as it is. In a process of its own: the setting lasts."""
    code = (
        "import json, sys; from filedrop.memory import few_malloc_arenas; "
        "print(few_malloc_arenas(json.loads(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(environ)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(taken)
