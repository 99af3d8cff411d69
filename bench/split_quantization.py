"""Top-1 of the cloud part from float32, float16 and uint8 split activations, side by side.

Each Fashion-MNIST test image runs through the early-exit network's edge part up to a
split point; its activation goes on as float32, as float16, and as per-frame uint8
codes (pipeline.quantize: what an edge sends by default), and the cloud part finishes
each. Prints one row per split point (top-1 of each, the bytes of each, and how many
frames' labels the uint8 codes change against float16), and a ``RESULT`` line last.

    .venv/bin/python bench/split_quantization.py [--model fmnist_exit_resnet] [--images 10000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pipeline.inference import Classifier
from pipeline.quantize import dequantize_batch, quantize
from pipeline.training.datasets import load_fashion_mnist

CHUNK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="fmnist_exit_resnet")
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    classifier = Classifier.by_name(args.model, "cpu", frozen=False)
    network = classifier.network
    if network is None:
        raise SystemExit(f"{args.model} is not an early-exit model: it has no split points")
    test = load_fashion_mnist(split="test").head(args.images)
    images, labels = list(test.images), np.asarray(test.labels)
    print(f"# {args.model}, {len(images)} Fashion-MNIST test images\n")
    print("| split | shape | float32 top-1 | float16 top-1 | uint8 top-1 | float16 bytes "
          "| uint8 bytes | labels uint8 changes vs float16 |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    with torch.inference_mode():
        for split in range(1, network.config.num_stages):
            edge, cloud = network.edge_part(split).eval(), network.cloud_part(split).eval()
            correct = {"float32": 0, "float16": 0, "uint8": 0}
            changed = 0
            for start in range(0, len(images), CHUNK):
                activation = edge(classifier.preprocess(images[start : start + CHUNK])).activation
                coded = [quantize(a) for a in activation]
                codes = torch.from_numpy(np.stack([c.codes for c in coded]))
                inputs = {
                    "float32": activation,
                    "float16": activation.half().float(),
                    "uint8": dequantize_batch(codes, coded, torch.float32),
                }
                truth = labels[start : start + CHUNK]
                predicted = {k: cloud(v).argmax(dim=1).numpy() for k, v in inputs.items()}
                for kind, labels_of in predicted.items():
                    correct[kind] += int((labels_of == truth).sum())
                changed += int((predicted["uint8"] != predicted["float16"]).sum())
            top1 = {k: v / len(images) for k, v in correct.items()}
            worst = max(worst, abs(top1["uint8"] - top1["float16"]))
            elements = int(np.prod(activation.shape[1:]))
            print(
                f"| {split} | {tuple(activation.shape[1:])} | {top1['float32']:.2%} "
                f"| {top1['float16']:.2%} | {top1['uint8']:.2%} | {2 * elements} "
                f"| {elements} | {changed} |"
            )
    print(f"\nRESULT max_abs_top1_difference_uint8_vs_float16={worst:.4f}")


if __name__ == "__main__":
    main()
