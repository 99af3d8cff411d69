"""The ceiling: the worker's model alone, on inputs already decoded and in memory.

It times exactly the classifier call the worker's inference thread makes for a batch
(preprocessing, forward pass, softmax and top-k back to the host), at the batch size
the worker is configured for, with nothing else running: no MQTT, no broker, no
decoding, no edge. Whatever the pipeline loses against it is the cost of everything
else.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as BarrierType
from typing import cast

import numpy as np
import torch

from camoffload.perf.workload import PayloadKind, Workload, make_workload
from pipeline.allocator import keep_freed_memory
from pipeline.cpus import cpu_shares, pin_process
from pipeline.inference import Classifier, Prediction
from pipeline.quantize import QuantizedTensor

__all__ = ["model_alone_fps", "model_alone_fps_in_processes"]


Inputs = Sequence[np.ndarray | QuantizedTensor]


def _call(classifier: Classifier, workload: Workload) -> Callable[[Inputs], object]:
    # A workload holds one kind of input (see make_workload): only splits hold codes.
    if workload.kind in ("jpeg", "raw"):
        return lambda arrays: classifier.predict(cast(Sequence[np.ndarray], arrays))
    if workload.kind == "tensor":
        return lambda arrays: classifier.predict_inputs(cast(Sequence[np.ndarray], arrays))
    split = workload.split
    assert split is not None

    def from_split(arrays: Inputs) -> list[Prediction]:
        return classifier.predict_from_split(split, arrays)

    return from_split


def model_alone_fps(
    classifier: Classifier, workload: Workload, batch: int, *, seconds: float = 3.0
) -> float:
    """Images/s of ``classifier`` on ``workload``'s decoded inputs at ``batch``."""
    call = _call(classifier, workload)
    inputs = workload.model_inputs
    batches = [inputs[i : i + batch] for i in range(0, len(inputs) - batch + 1, batch)]
    if not batches:
        raise ValueError(f"{len(inputs)} inputs do not make one batch of {batch}")
    for chunk in batches[:3]:  # warm-up: allocator, oneDNN kernel choice
        call(chunk)
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        call(batches[(done // batch) % len(batches)])
        done += batch
    return done / elapsed


def _child(
    model: str,
    kind: PayloadKind,
    batch: int,
    threads: int,
    seconds: float,
    cpus: frozenset[int] | None,
    start: BarrierType,
    out: Queue[float],
) -> None:
    if cpus is not None:
        pin_process(cpus)
    keep_freed_memory()  # as the workers do by default: the ceiling gets it too
    torch.set_num_threads(threads)
    classifier = Classifier.by_name(model, "cpu")
    workload = make_workload(kind, classifier, max(4 * batch, 256))
    model_alone_fps(classifier, workload, batch, seconds=min(1.0, seconds))  # warm-up
    start.wait()  # every process measures over the same seconds
    out.put(model_alone_fps(classifier, workload, batch, seconds=seconds))


def model_alone_fps_in_processes(
    model: str,
    kind: PayloadKind,
    batch: int,
    *,
    processes: int,
    threads: int,
    seconds: float,
    pin: bool = False,
) -> float:
    """Images/s of ``processes`` copies of the model, each in its own process with
    ``threads`` torch threads, all at once: the ceiling for that many workers. With
    ``pin``, process i runs on the i-th share of the cores, as pinned workers do. Each
    keeps freed memory, as workers do by default (pipeline/allocator.py)."""
    shares: list[frozenset[int] | None] = list(cpu_shares(processes)) if pin else [None] * processes
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    start = context.Barrier(processes)
    out: Queue[float] = context.Queue()
    children = [
        context.Process(
            target=_child,
            args=(model, kind, batch, threads, seconds, cpus, start, out),
            daemon=True,
        )
        for cpus in shares
    ]
    for child in children:
        child.start()
    try:
        return sum(out.get(timeout=300) for _ in children)
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
