"""What the worker's inference thread spends per frame turning split activations into a
float32 batch: float16 cast by NumPy (how it stacked them until 2026-11-23), float16
widened by torch for the whole batch (now), and uint8 codes dequantised by torch.

Real split-1 activations of Fashion-MNIST test images, batch 32, one thread, median of
repeats; the same stacking code the worker runs (``Classifier.predict_from_split`` less
the forward pass).

    .venv/bin/python bench/split_stack.py [--batch 32] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from pipeline.inference import Classifier
from pipeline.quantize import dequantize_batch, quantize
from pipeline.training.datasets import load_fashion_mnist


def _median_us(action: Callable[[], object], repeats: int, per: int) -> float:
    action()  # warm-up: the buffers
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6 / per


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    classifier = Classifier.by_name("fmnist_exit_resnet", "cpu")
    network = classifier.network
    assert network is not None
    images = list(load_fashion_mnist(split="test").head(args.batch).images)
    with torch.inference_mode():
        activations = network.edge_part(1)(classifier.preprocess(images)).activation
    # As the decode thread hands them over: read-only views of each request's payload.
    halves = [
        np.frombuffer(a.half().numpy().tobytes(), np.float16).reshape(a.shape) for a in activations
    ]
    coded = [quantize(a) for a in activations]
    shape = halves[0].shape
    out = np.empty((args.batch, *shape), np.float32)
    half_out = torch.empty((args.batch, *shape), dtype=torch.float16)
    code_out = torch.empty((args.batch, *shape), dtype=torch.uint8)

    def numpy_cast() -> None:
        for i, array in enumerate(halves):
            out[i] = array

    def torch_widen() -> None:
        target = half_out.numpy()
        for i, array in enumerate(halves):
            target[i] = array
        half_out.to(torch.float32)

    def dequantise() -> None:
        target = code_out.numpy()
        for i, tensor in enumerate(coded):
            target[i] = tensor.codes
        dequantize_batch(code_out, coded, torch.float32)

    rows = [
        ("float16, NumPy cast per frame (before)", numpy_cast),
        ("float16, torch widens the batch (now)", torch_widen),
        ("uint8 codes, torch dequantises the batch", dequantise),
    ]
    print(f"# split-1 activations {shape}, batch {args.batch}, 1 thread\n")
    print("| stacking | us per frame |\n|---|---:|")
    results = {}
    for name, action in rows:
        results[name] = _median_us(action, args.repeats, args.batch)
        print(f"| {name} | {results[name]:.1f} |")
    before, now = results[rows[0][0]], results[rows[1][0]]
    print(f"\nRESULT numpy_cast_us={before:.1f} torch_widen_us={now:.1f} "
          f"dequantise_us={results[rows[2][0]]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
