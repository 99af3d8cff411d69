"""The early-exit table of docs/models.md, measured from the committed weights.

Per exit: top-1 on the Fashion-MNIST test images, the share of images answered (and
its accuracy) at several softmax-confidence thresholds, and the latency per image of
reaching that exit (stem .. stage k + exit head k) on this machine's CPU at batch 1
and 64. Prints Markdown.

    .venv/bin/python bench/early_exit_table.py [--model fmnist_exit_resnet] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from camoffload.training.evaluate import predict_exits
from pipeline.datasets import load_fashion_mnist
from pipeline.models import load_early_exit

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def _ms_per_image(module: torch.nn.Module, batch: int, repeats: int) -> float:
    example = torch.zeros(batch, 1, 28, 28)
    with torch.inference_mode():
        for _ in range(3):
            module(example)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            module(example)
            times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fmnist_exit_resnet")
    parser.add_argument("--limit", type=int, default=None, help="first N test images")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    network, manifest = load_early_exit(args.model)
    test = load_fashion_mnist(split="test").head(args.limit)
    predictions = predict_exits(network, test, mean=manifest.mean, std=manifest.std)
    accuracy = predictions.accuracy()
    exits = network.num_exits
    parts: list[torch.nn.Module] = [network.edge_part(k) for k in range(1, exits)]
    parts.append(network.final_exit())

    print(
        f"{manifest.version}: {len(test)} Fashion-MNIST test images, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n"
    )
    print(
        "| exit | top-1 | MACs | ms/image @1 | ms/image @64 | "
        + " | ".join(f"answered @{t}" for t in THRESHOLDS)
        + " |"
    )
    print("|---" * (5 + len(THRESHOLDS)) + "|")
    for k in range(exits):
        shares = []
        for threshold in THRESHOLDS:
            share, hit = predictions.at_threshold(k, threshold)
            shares.append(f"{share:.1%} ({hit:.1%})" if share else "0.0% (-)")
        print(
            f"| {k + 1}{' (final)' if k == exits - 1 else ''} | {accuracy[k]:.2%} | "
            f"{manifest.macs_per_exit[k] / 1e6:.1f} M | "
            f"{_ms_per_image(parts[k], 1, args.repeats):.2f} | "
            f"{_ms_per_image(parts[k], 64, args.repeats):.3f} | " + " | ".join(shares) + " |"
        )
    print(
        "\n'answered @t': share of test images whose top softmax score at that exit is "
        ">= t, with the accuracy on that share in brackets."
    )


if __name__ == "__main__":
    main()
