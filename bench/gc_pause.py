"""Milliseconds a full garbage collection stops a worker-shaped process, before and
after pipeline.heap.freeze_heap, side by side in one process (ratio last).

The process imports what a worker and an edge import and loads the served model, as
``camoffload worker`` does before serving. A full (generation 2) collection holds the
GIL throughout, so its duration is how long the event loop stalls when one happens.

    .venv/bin/python bench/gc_pause.py [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np

import cloud_worker  # noqa: F401  # the worker's imports
import edge_node  # noqa: F401  # and the edge's: one process may hold both
from pipeline.config import WorkerConfig
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier


def _full_collection_ms(repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=WorkerConfig().model)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    classifier = Classifier.by_name(args.model, "cpu")
    height, width = classifier.spec.input_size
    image = np.zeros((height, width, classifier.spec.channels), np.uint8)
    classifier.predict([image] * 4)  # whatever the first batches build is built too
    classifier.predict([image] * 4)
    tracked = len(gc.get_objects())
    before_times = _full_collection_ms(args.repeat)
    before = statistics.median(before_times)
    frozen = freeze_heap()
    after_times = _full_collection_ms(args.repeat)
    after = statistics.median(after_times)
    print(f"model {args.model}: {tracked:,} tracked objects, {frozen:,} frozen")
    print("| heap | full collection, median | slowest |")
    print("|---|---:|---:|")
    print(f"| as loaded | {before:.1f} ms | {max(before_times):.1f} ms |")
    print(f"| after freeze_heap() | {after * 1000:.1f} us | {max(after_times) * 1000:.1f} us |")
    print(f"ratio full collection before/after freeze: {before / max(after, 1e-6):,.0f}")


if __name__ == "__main__":
    main()
