"""CPU per frame of every thread of a saturated pipeline, and its minor page faults:
where the two cores go outside the model (Linux: read from /proc/PID/task/TID/stat).

The same layout as the bench's saturated row: Mosquitto, 2 worker processes pinned
one per core, the edge's sender and reply router in this process, 256 frames in
flight (``--window``), bundled. Each round sends ``--frames`` frames; a thread is
listed when it used at least 10 ms in the round, and the last line of a round says
where the machine's CPU time went (``/proc/stat``: idle, and steal by the hypervisor).
/proc counts in clock ticks (10 ms here), so a figure is good to ~2 us per frame at
5,000 frames.

With ``--ceiling`` each round first times the model alone in the same layout (2
processes, one pinned per core, batch 32: the bench's pinned ceiling) and then splits
what the pipeline lost against it, as shares of the model-alone CPU per frame: the
inference threads' excess over the model alone, everything outside the model, and the
cores' idle time with anything unlisted (2 cores x elapsed, less every listed thread's
CPU). The three add up to ceiling / pipeline - 1.

    .venv/bin/python bench/pipeline_threads.py [--payload split] [--rounds 3] [--ceiling]
        [--window 256] [--frames 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
from pathlib import Path

from camoffload.perf.ceiling import model_alone_fps_in_processes
from camoffload.perf.cpu import CpuMeter
from camoffload.perf.mqtt_load import drive_pipeline
from camoffload.perf.run import BenchSettings, bench_broker, bench_layout
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


# proc(5): the first eight time fields of the "cpu" line (guest time is inside user).
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _cores_ticks() -> list[int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return [int(value) for value in fields[: len(_STAT_FIELDS)]]


class ThreadMeter(CpuMeter):
    """Per-thread CPU and faults of named processes between start and stop."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__({})
        self.pids = pids
        self.before: dict[str, dict[str, tuple[float, int]]] = {}
        self.after: dict[str, dict[str, tuple[float, int]]] = {}
        self.cores_before: list[int] = []
        self.cores_after: list[int] = []

    def start(self) -> None:
        self.before = {name: _threads(pid) for name, pid in self.pids.items()}
        self.cores_before = _cores_ticks()

    def stop(self) -> dict[str, float]:
        self.after = {name: _threads(pid) for name, pid in self.pids.items()}
        self.cores_after = _cores_ticks()
        return {}

    def cores(self) -> str:
        """Where the machine's CPU time went in the round, from /proc/stat."""
        spent = [b - a for a, b in zip(self.cores_before, self.cores_after, strict=True)]
        total = sum(spent) or 1
        shares = (
            f"{name} {ticks / total:.1%}" for name, ticks in zip(_STAT_FIELDS, spent, strict=True)
        )
        return "cores (/proc/stat): " + ", ".join(shares)

    def rows(self, frames: int) -> list[tuple[str, str, float, float]]:
        rows = []
        for process, threads in self.after.items():
            for thread, (cpu, faults) in threads.items():
                cpu0, faults0 = self.before[process].get(thread, (0.0, 0))
                if cpu - cpu0 >= _NOTICEABLE_S:
                    per_frame_us = (cpu - cpu0) / frames * 1e6
                    rows.append((process, thread, per_frame_us, (faults - faults0) / frames))
        return rows


def _inference_threads(rows: list[tuple[str, str, float, float]], workers: set[str]) -> set[int]:
    """Indexes of the rows of each worker's busiest thread other than its event loop:
    its inference thread."""
    busiest: dict[str, int] = {}
    for index, (process, thread, per_frame_us, _) in enumerate(rows):
        if process not in workers or thread.startswith("main:"):
            continue
        if process not in busiest or per_frame_us > rows[busiest[process]][2]:
            busiest[process] = index
    return set(busiest.values())


def _losses(
    rows: list[tuple[str, str, float, float]], workers: set[str], fps: float, alone_fps: float
) -> str:
    """The pipeline's shortfall against the model alone, split three ways (module doc)."""
    cores = 2
    alone_us = cores * 1e6 / alone_fps  # core-time per frame of the model alone
    capacity_us = cores * 1e6 / fps  # core-time per frame the pipeline had
    inference = _inference_threads(rows, workers)
    inference_us = sum(rows[i][2] for i in inference)
    outside_us = sum(row[2] for i, row in enumerate(rows) if i not in inference)
    idle_us = capacity_us - inference_us - outside_us
    return (
        f"model alone {alone_fps:.0f} frames/s ({alone_us:.0f} us per frame), pipeline "
        f"{fps:.0f} = {fps / alone_fps:.2f} of it; lost, as shares of the model alone: "
        f"inference threads {(inference_us - alone_us) / alone_us:+.1%} "
        f"({inference_us:.0f} us), outside the model {outside_us / alone_us:+.1%} "
        f"({outside_us:.0f} us), idle {idle_us / alone_us:+.1%} ({idle_us:.0f} us)"
    )


async def _run(payload: str, rounds: int, frames: int, *, window: int, ceiling: bool) -> None:
    settings = BenchSettings(payloads=(payload,), workers=(2,), frames=frames, window=window)  # type: ignore[arg-type]
    classifier = Classifier.by_name(settings.model, "cpu")
    workload = make_workload(payload, classifier, frames)  # type: ignore[arg-type]
    del classifier
    with bench_broker() as (url, broker_pid):
        group = bench_layout(url, settings, 2)
        await group.processes.start()
        try:
            warm = dataclasses.replace(workload, payloads=workload.payloads[:1000])
            await drive_pipeline(group.config, warm, window=settings.window)
            pids = {**group.processes.pids, "mosquitto": broker_pid, "edge": os.getpid()}
            for index in range(rounds):
                alone_fps = 0.0
                if ceiling:
                    alone_fps = await asyncio.to_thread(
                        model_alone_fps_in_processes, settings.model, workload.kind,
                        settings.max_batch, processes=2, threads=1, seconds=4.0, pin=True,
                    )  # fmt: skip
                meter = ThreadMeter(pids)
                result = await drive_pipeline(
                    group.config, workload, window=settings.window, meter=meter
                )
                batch = result.mean([float(b) for b in result.batch_sizes])
                print(f"\nround {index + 1}: {result.fps:.0f} frames/s, mean batch "
                      f"{batch:.1f}, {result.errors} errors")  # fmt: skip
                print("| process | thread | CPU us per frame | minor faults per frame |")
                print("|---|---|---:|---:|")
                rows = meter.rows(len(workload.payloads))
                for process, thread, per_frame_us, faults in rows:
                    print(f"| {process} | {thread} | {per_frame_us:.0f} | {faults:.1f} |")
                total = sum(row[2] for row in rows)
                print(f"total {total:.0f} us per frame = {2e6 / total:.0f} frames/s on 2 cores")
                if ceiling:
                    workers = set(group.processes.pids)
                    print(_losses(rows, workers, result.fps, alone_fps))
                print(meter.cores())
        finally:
            await group.processes.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--payload", choices=PAYLOADS, default="split")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--window", type=int, default=256, help="frames in flight")
    parser.add_argument(
        "--ceiling", action="store_true", help="time the model alone before each round"
    )
    args = parser.parse_args()
    asyncio.run(
        _run(args.payload, args.rounds, args.frames, window=args.window, ceiling=args.ceiling)
    )


if __name__ == "__main__":
    main()
