"""CPU time of the processes taking part in a server benchmark, read from /proc.

On a 2-core machine the load generator, the server's event loop and its workers compete
for the same cores; CPU seconds per molecule for each tells which of them a rate is
limited by (a process near 1 core-second per second is saturated). "other" is what the
rest of the machine used meanwhile (all CPU time in /proc/stat less ours): when it is
not near zero, something else was competing and the run is noisy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["CpuClock"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User plus system time of one process; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_busy_seconds() -> float:
    """CPU time of every process on the machine (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (a server's forkserver and the workers it started)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class CpuClock:
    """CPU seconds of this process ("client"), the server process ("server"), every
    process below it when the clock was made ("workers": the forkserver and the worker
    processes) and the rest of the machine ("other"). Without a server, only this
    process and the rest of the machine count."""

    def __init__(self, server_pid: int | None = None) -> None:
        self._server_pid = server_pid
        self._workers = [] if server_pid is None else descendants(server_pid)

    def read(self) -> dict[str, float]:
        return {
            "client": time.process_time(),
            "server": 0.0 if self._server_pid is None else _cpu_seconds(self._server_pid),
            "workers": sum(_cpu_seconds(pid) for pid in self._workers),
            "machine": _machine_busy_seconds(),
        }

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.read()
        spent = {role: now[role] - before[role] for role in now}
        machine = spent.pop("machine")
        spent["other"] = max(0.0, machine - sum(spent.values()))
        return spent
