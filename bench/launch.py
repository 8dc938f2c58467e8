"""Run one command and write down what it cost, from a process small enough not to count.

    python bench/launch.py USAGE.json -- COMMAND ...

Why a launcher: at exec, Linux keeps the RSS high-water mark of the process image being
replaced, which for a child forked by the bench is the bench's own (hundreds of MB once it has
read the inputs), so ``ru_maxrss`` would report the bench's size rather than the child's. Forked
from this process, which imports nothing heavy, the child's peak is its own.

USAGE.json gets: wall seconds, start and end time (``time.time()``, the clock of the command's
log lines), CPU seconds (user + sys, and sys alone, from ``os.wait4``, which include the children
the command waited for, plus any it left behind, reparented to this process as subreaper and
reaped here: a forkserver outliving ``filedrop run``), peak RSS in MB (the largest of those
processes, not their sum), and the exit code.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def children() -> set[int]:
    pids: set[int] = set()
    for listing in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in listing.read_text().split())
    return pids


def main() -> None:
    report, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(__doc__.split("\n\n")[1])
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    started_at, started = time.time(), time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    ended_at = time.time()
    child.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - started
    user_s, sys_s, peak_mb = usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024
    left = children()
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:
        for pid in list(left):
            done, _, orphan = os.wait4(pid, os.WNOHANG)
            if done:
                left.discard(pid)
                user_s += orphan.ru_utime
                sys_s += orphan.ru_stime
                peak_mb = max(peak_mb, orphan.ru_maxrss / 1024)
        time.sleep(0.02)
    Path(report).write_text(
        json.dumps(
            {
                "wall_s": wall_s,
                "started_at": started_at,
                "ended_at": ended_at,
                "cpu_s": user_s + sys_s,
                "sys_s": sys_s,
                "peak_mb": peak_mb,
                "code": child.returncode,
                "not_reaped": len(left),
            }
        )
    )


if __name__ == "__main__":
    main()
