"""Who used the CPU while a path ran: this process, PostgreSQL, RabbitMQ, the kernel, the rest.

Read from ``/proc/<pid>/stat`` before and after (Linux only; elsewhere nothing is reported). A process
that starts and exits in between is missed, which only matters for the "other" group. "other" is
what the benchmark does not control: a busy neighbour shows up there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
GROUPS = ("bench", "postgres", "rabbitmq", "kernel", "other")
_RABBIT = ("beam.smp", "erl_child_setup", "epmd", "inet_gethost")


def _group(pid: int, comm: str, own: int) -> str:
    if pid == own:
        return "bench"
    if comm.startswith("postgres"):
        return "postgres"
    if comm.startswith(_RABBIT):
        return "rabbitmq"
    if comm.startswith(("kworker", "ksoftirqd", "jbd2", "kswapd", "rcu_", "migration")):
        return "kernel"
    return "other"


def _snapshot() -> dict[int, tuple[str, int, int]]:
    """pid -> (command, start time, user+system clock ticks)."""
    taken: dict[int, tuple[str, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        taken[int(entry.name)] = (comm, int(fields[19]), int(fields[11]) + int(fields[12]))
    return taken


class CpuMeter:
    """Started on creation; ``report()`` gives the cores each group used since."""

    def __init__(self) -> None:
        self._available = Path("/proc/self/stat").exists()
        self._before = _snapshot() if self._available else {}
        self._started = time.perf_counter()

    def cores(self) -> dict[str, float]:
        if not self._available:
            return {}
        seconds = max(time.perf_counter() - self._started, 1e-9)
        own = os.getpid()
        used = dict.fromkeys(GROUPS, 0.0)
        for pid, (comm, started, ticks) in _snapshot().items():
            before = self._before.get(pid)
            base = before[2] if before is not None and before[1] == started else 0
            used[_group(pid, comm, own)] += (ticks - base) / _TICKS / seconds
        return used

    def report(self) -> str:
        """``cpu (cores of N): bench 0.98, postgres 0.40, ...``, or "" where /proc is missing."""
        used = self.cores()
        if not used:
            return ""
        parts = ", ".join(f"{group} {used[group]:.2f}" for group in GROUPS)
        return f"cpu (cores of {os.cpu_count()}): {parts}"
