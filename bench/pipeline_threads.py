"""CPU per frame of every thread of a saturated pipeline, and its minor page faults:
where the two cores go outside the model (Linux: read from /proc/PID/task/TID/stat).

The same layout as the bench's saturated row: Mosquitto, 2 worker processes pinned
one per core, the edge's sender and reply router in this process, 256 frames in
flight, bundled. Each round sends ``--frames`` frames; a thread is listed when it used
at least 10 ms in the round. /proc counts in clock ticks (10 ms here), so a figure is
good to ~2 us per frame at 5,000 frames.

    .venv/bin/python bench/pipeline_threads.py [--payload split] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
from pathlib import Path

from camoffload.perf.cpu import CpuMeter
from camoffload.perf.mqtt_load import drive_pipeline
from camoffload.perf.run import BenchSettings, _broker, _group
from camoffload.perf.workload import PAYLOADS, make_workload
from pipeline.inference import Classifier

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
_NOTICEABLE_S = 0.01


def _threads(pid: int) -> dict[str, tuple[float, int]]:
    """(CPU seconds, minor faults) of each thread of ``pid``, by 'name:tid' ('main' for
    the thread that runs the event loop; a worker's other two are its decode thread and
    its inference thread, the busy one)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended
            continue
        name = "main" if tid == str(pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # proc(5): minflt is field 10, utime 14, stime 15 (1-based, from pid).
        cpu = (int(fields[11]) + int(fields[12])) * _TICK_S
        out[f"{name}:{tid}"] = (cpu, int(fields[7]))
    return out


class ThreadMeter(CpuMeter):
    """Per-thread CPU and faults of named processes between start and stop."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__({})
        self.pids = pids
        self.before: dict[str, dict[str, tuple[float, int]]] = {}
        self.after: dict[str, dict[str, tuple[float, int]]] = {}

    def start(self) -> None:
        self.before = {name: _threads(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.after = {name: _threads(pid) for name, pid in self.pids.items()}
        return {}

    def rows(self, frames: int) -> list[tuple[str, str, float, float]]:
        rows = []
        for process, threads in self.after.items():
            for thread, (cpu, faults) in threads.items():
                cpu0, faults0 = self.before[process].get(thread, (0.0, 0))
                if cpu - cpu0 >= _NOTICEABLE_S:
                    per_frame_us = (cpu - cpu0) / frames * 1e6
                    rows.append((process, thread, per_frame_us, (faults - faults0) / frames))
        return rows


async def _run(payload: str, rounds: int, frames: int) -> None:
    settings = BenchSettings(payloads=(payload,), workers=(2,), frames=frames)  # type: ignore[arg-type]
    classifier = Classifier.by_name(settings.model, "cpu")
    workload = make_workload(payload, classifier, frames)  # type: ignore[arg-type]
    del classifier
    with _broker() as (url, broker_pid):
        group = _group(url, settings, 2)
        await group.processes.start()
        try:
            warm = dataclasses.replace(workload, payloads=workload.payloads[:1000])
            await drive_pipeline(group.config, warm, window=settings.window)
            pids = {**group.processes.pids, "mosquitto": broker_pid, "edge": os.getpid()}
            for index in range(rounds):
                meter = ThreadMeter(pids)
                result = await drive_pipeline(
                    group.config, workload, window=settings.window, meter=meter
                )
                print(f"\nround {index + 1}: {result.fps:.0f} frames/s, mean batch "
                      f"{result.mean(result.batch_sizes):.1f}, {result.errors} errors")  # fmt: skip
                print("| process | thread | CPU us per frame | minor faults per frame |")
                print("|---|---|---:|---:|")
                rows = meter.rows(len(workload.payloads))
                for process, thread, per_frame_us, faults in rows:
                    print(f"| {process} | {thread} | {per_frame_us:.0f} | {faults:.1f} |")
                total = sum(row[2] for row in rows)
                print(f"total {total:.0f} us per frame = {2e6 / total:.0f} frames/s on 2 cores")
        finally:
            await group.processes.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--payload", choices=PAYLOADS, default="split")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(_run(args.payload, args.rounds, args.frames))


if __name__ == "__main__":
    main()
