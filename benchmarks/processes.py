"""Helpers for the benchmarks' child processes (beats, workers, a busy core)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rss_mb(pid: int) -> float:
    """VmRSS of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after "(comm)", which may hold spaces: state
    ppid pgrp ... utime(11) stime(12)) of every live process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        yield int(entry.name), stat.rpartition(")")[2].split()


def cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of group `pgid` (a beat started in a
    session of its own), from /proc/<pid>/stat."""
    ticks = sum(int(f[11]) + int(f[12]) for _, f in _stats() if int(f[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    return [child for child, fields in _stats() if int(fields[1]) == pid]


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` (0: this one) on `cpus` (children forked later inherit)."""
    process = os.getpid() if pid == 0 else pid
    try:
        threads = [int(t.name) for t in Path(f"/proc/{process}/task").iterdir()]
    except OSError:  # gone meanwhile
        return
    for thread in threads:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(thread, cpus)


@contextlib.contextmanager
def busy_core() -> Iterator[int | None]:
    """A CPU-bound busy loop in a process of its own, pinned to the last core this process
    may use (when there are two or more), for the duration of the block. Yields that core."""
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1] if len(cores) > 1 else None
    try:
        if core is not None:
            os.sched_setaffinity(loop.pid, {core})
        yield core
    finally:
        stop(loop)


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the peak resident set) of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def settled_rss_mb(pid: int, after_s: float = 6.0, bound_s: float = 120.0) -> float:
    """VmRSS once a freshly started process stops growing (two readings a second apart
    within 1 MB), read no sooner than `after_s` and no later than `bound_s`."""
    time.sleep(after_s)
    deadline = time.monotonic() + bound_s - after_s
    last = rss_mb(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        current = rss_mb(pid)
        if abs(current - last) < 1:
            return current
        last = current
    return last
