"""Which CPU cores a process runs on: parsing ``worker.cpus`` and sharing cores out.

Why pin: a worker's inference thread keeps its caches warm on a core of its own, and
two workers on a 2-core box no longer trade places while the edge, the broker and the
event loops take their turns. Linux only (``os.sched_setaffinity``); elsewhere pinning
is refused with a clear error rather than ignored.
"""

from __future__ import annotations

import os

from pipeline.errors import ConfigError

__all__ = ["available_cpus", "cpu_shares", "format_cpus", "parse_cpus", "pin_process"]


def parse_cpus(text: str) -> frozenset[int]:
    """``"0"``, ``"0,2"``, ``"0-3"`` or ``"0-1,4"`` -> the set of core numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        last = last if dash else first
        if not first.isdigit() or not last.isdigit() or int(last) < int(first):
            raise ConfigError(
                f"worker.cpus {text!r}: want core numbers like 0, 0,2 or 0-3", key="worker.cpus"
            )
        cpus.update(range(int(first), int(last) + 1))
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def available_cpus() -> list[int]:
    """The cores this process may run on, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_shares(count: int) -> list[frozenset[int]]:
    """The available cores split into ``count`` contiguous shares, as even as can be
    (more processes than cores: they share round-robin)."""
    cpus = available_cpus()
    if count <= len(cpus):
        size, extra = divmod(len(cpus), count)
        shares, start = [], 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            shares.append(frozenset(cpus[start:end]))
            start = end
        return shares
    return [frozenset({cpus[i % len(cpus)]}) for i in range(count)]


def pin_process(cpus: frozenset[int]) -> None:
    """Run this process (all its threads) on ``cpus`` only."""
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("worker.cpus needs Linux (sched_setaffinity)", key="worker.cpus")
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise ConfigError(f"worker.cpus {format_cpus(cpus)}: {exc}", key="worker.cpus") from exc
