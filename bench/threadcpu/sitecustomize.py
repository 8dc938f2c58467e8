"""Each thread's CPU seconds in a ``filedrop run`` the bench times, written as it exits.

bench.py puts this folder on the run's PYTHONPATH with BENCH_THREAD_CPU naming a JSON
file: Python imports ``sitecustomize`` at start-up, before filedrop. A thread that ends records
its own ``time.thread_time()``; at exit, the threads still alive (the pools' daemon threads) are
read through their CPU clocks, and the main thread's own. The run's ``os._exit`` (it skips the
interpreter's teardown) is where that happens, so it is wrapped too. What the threads add up to
against the process's own CPU is what its reader child took (a workbook's parse).

Costs a function call per thread's end and one file written at exit; nothing per request.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

_OUT = os.environ.get("BENCH_THREAD_CPU")
_PID = os.getpid()

if _OUT:
    _ended: list[tuple[str, float]] = []
    _lock = threading.Lock()
    _run = threading.Thread.run

    def _run_timed(self: threading.Thread) -> None:
        try:
            _run(self)
        finally:
            with _lock:
                _ended.append((self.name, time.thread_time()))

    def _kind(name: str) -> str:
        """A thread's kind: its name less a pool's number and a file's name."""
        if name.startswith("prepare "):
            return "prepare"
        return re.sub(r"[-_]?\d+$", "", name)

    def _write() -> None:
        # Only filedrop's own process: not the launcher before it, nor the workbook reader's
        # forkserver and children (started afresh, or forked from it and keeping this module).
        main = getattr(sys.modules.get("__main__"), "__spec__", None)
        if os.getpid() != _PID or getattr(main, "name", "") != "filedrop.__main__":
            return
        seconds = list(_ended)
        for thread in threading.enumerate():
            if thread is threading.main_thread() or thread.ident is None:
                continue
            try:
                clock = time.pthread_getcpuclockid(thread.ident)
                seconds.append((thread.name, time.clock_gettime(clock)))
            except OSError:  # ended meanwhile: it recorded itself
                continue
        seconds.append(("main", time.thread_time()))
        kinds: dict[str, list[float]] = {}
        for name, cpu_s in seconds:
            entry = kinds.setdefault(_kind(name), [0, 0.0])
            entry[0] += 1
            entry[1] += cpu_s
        figures = {kind: {"threads": n, "cpu_s": s} for kind, (n, s) in kinds.items()}
        Path(_OUT).write_text(json.dumps(figures))

    _exit = os._exit

    def _exit_written(code: int) -> None:
        try:
            _write()
        finally:
            _exit(code)

    threading.Thread.run = _run_timed  # type: ignore[method-assign]
    os._exit = _exit_written
    atexit.register(_write)
