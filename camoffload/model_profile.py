"""Per-stage profile of an early-exit network: the partition policy's input.

For every layer group (stem, each stage, each exit head) it measures latency on a
device at several batch sizes, and counts MACs and parameters; for every split point
it gives the tensor that would cross the network (shape, bytes as float32, float16 and
int8) and the edge-side and cloud-side cost of splitting there.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.models.early_exit import EarlyExitResNet
from pipeline.models.flops import count_macs
from pipeline.models.weights import WeightsManifest, load_early_exit

__all__ = ["format_profile", "profile_early_exit", "profile_network"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(module: nn.Module, example: torch.Tensor, repeats: int) -> float:
    device = example.device
    with torch.inference_mode():
        for _ in range(3):  # warm-up: allocator, oneDNN/cuDNN kernel choice
            module(example)
        _sync(device)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            module(example)
            _sync(device)
            times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def profile_network(
    network: EarlyExitResNet,
    *,
    device: torch.device,
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 20,
    manifest: WeightsManifest | None = None,
) -> dict[str, Any]:
    """The profile as a JSON-ready dict (see the module docstring)."""
    config = network.config
    network = network.to(device).eval()
    size = config.input_size
    image = torch.zeros(1, config.in_channels, size, size)
    layers: list[dict[str, Any]] = []
    # Inputs of every trunk layer, per batch size, from one real forward pass.
    trunk: list[tuple[str, nn.Module]] = [("stem", network.stem)]
    trunk += [(f"stage{i + 1}", stage) for i, stage in enumerate(network.stages)]
    inputs = {b: torch.zeros(b, config.in_channels, size, size, device=device) for b in batch_sizes}
    outputs: dict[str, dict[int, torch.Tensor]] = {}
    one = image.to(device)
    with torch.inference_mode():
        for name, module in trunk:
            latency = {str(b): _median_ms(module, inputs[b], repeats) / b for b in batch_sizes}
            macs = count_macs(module, one)
            outputs[name] = {b: module(inputs[b]) for b in batch_sizes}
            layers.append(
                {
                    "name": name,
                    "kind": "trunk",
                    "macs": macs,
                    "params": sum(p.numel() for p in module.parameters()),
                    "output_shape": list(outputs[name][batch_sizes[0]].shape[1:]),
                    "latency_ms_per_image": latency,
                }
            )
            inputs = outputs[name]
            one = module(one)
    for index, head in enumerate(network.exits):
        feeding = outputs[f"stage{index + 1}"]
        final = index == len(network.exits) - 1
        layers.append(
            {
                "name": "final_head" if final else f"exit{index + 1}_head",
                "kind": "head",
                "macs": count_macs(head, feeding[batch_sizes[0]][:1]),
                "params": sum(p.numel() for p in head.parameters()),
                "output_shape": [config.num_classes],
                "latency_ms_per_image": {
                    str(b): _median_ms(head, feeding[b], repeats) / b for b in batch_sizes
                },
            }
        )
    return {
        "model": manifest.name if manifest else "early_exit_resnet",
        "version": manifest.version if manifest else None,
        "config": config.to_dict(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "batch_sizes": list(batch_sizes),
        "layers": layers,
        "splits": _splits(
            layers, config.num_stages, config.in_channels, size, batch_sizes, manifest
        ),
    }


def _splits(
    layers: list[dict[str, Any]],
    stages: int,
    channels: int,
    size: int,
    batch_sizes: tuple[int, ...],
    manifest: WeightsManifest | None,
) -> list[dict[str, Any]]:
    by_name = {layer["name"]: layer for layer in layers}
    trunk = ["stem"] + [f"stage{i + 1}" for i in range(stages)]

    def cost(names: list[str], key: str, batch: int | None = None) -> float:
        if batch is None:
            return float(sum(by_name[n][key] for n in names))
        return float(sum(by_name[n][key][str(batch)] for n in names))

    rows = []
    for split in range(stages + 1):
        # Split 0 sends the image; split k runs stem .. stage k (+ exit k) on the edge.
        edge = trunk[: split + 1] if split else []
        if 0 < split < stages:
            edge = [*edge, f"exit{split}_head"]
        elif split == stages:
            edge = [*edge, "final_head"]
        cloud = (["stem"] if split == 0 else []) + trunk[split + 1 :]
        cloud = [*cloud, "final_head"] if split < stages else []
        shape = by_name[trunk[split]]["output_shape"] if split else [channels, size, size]
        elements = 1
        for dim in shape:
            elements *= int(dim)
        rows.append(
            {
                "split": split,
                "edge_layers": edge,
                "cloud_layers": cloud,
                "tensor_shape": shape,
                "float32_bytes": 4 * elements,
                "float16_bytes": 2 * elements,
                "int8_bytes": elements,
                "edge_macs": int(cost(edge, "macs")),
                "cloud_macs": int(cost(cloud, "macs")),
                "edge_ms_per_image": {
                    str(b): cost(edge, "latency_ms_per_image", b) for b in batch_sizes
                },
                "cloud_ms_per_image": {
                    str(b): cost(cloud, "latency_ms_per_image", b) for b in batch_sizes
                },
                "exit_accuracy": (
                    manifest.exit_accuracy[split - 1]
                    if manifest and split and manifest.exit_accuracy
                    else None
                ),
            }
        )
    return rows


def profile_early_exit(
    name_or_path: str | Path,
    *,
    device: torch.device,
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 20,
) -> dict[str, Any]:
    """Profile a trained model from ``pipeline/models/shipped/`` (by name) or a manifest path."""
    network, manifest = load_early_exit(name_or_path)
    return profile_network(
        network, device=device, batch_sizes=batch_sizes, repeats=repeats, manifest=manifest
    )


def format_profile(report: dict[str, Any]) -> str:
    """Two plain-text tables: layer groups, then split points."""
    batches = [str(b) for b in report["batch_sizes"]]
    lines = [
        f"{report['model']} {report['version'] or ''} on {report['device_name']} "
        f"({report['threads']} threads, torch {report['torch_version']})",
        "",
        f"{'layer':<12} {'output':<14} {'MACs':>11} {'params':>9} "
        + " ".join(f"{'ms/img@' + b:>11}" for b in batches),
    ]
    for layer in report["layers"]:
        shape = "x".join(str(d) for d in layer["output_shape"])
        lines.append(
            f"{layer['name']:<12} {shape:<14} {layer['macs']:>11,} {layer['params']:>9,} "
            + " ".join(f"{layer['latency_ms_per_image'][b]:>11.4f}" for b in batches)
        )
    lines += [
        "",
        f"{'split':>5} {'tensor':<12} {'f32 B':>8} {'f16 B':>8} {'edge MACs':>11} "
        f"{'cloud MACs':>11} "
        + " ".join(f"{'edge@' + b:>9} {'cloud@' + b:>9}" for b in batches)
        + f" {'exit acc':>8}",
    ]
    for row in report["splits"]:
        shape = "x".join(str(d) for d in row["tensor_shape"])
        accuracy = "" if row["exit_accuracy"] is None else f"{row['exit_accuracy']:.2%}"
        lines.append(
            f"{row['split']:>5} {shape:<12} {row['float32_bytes']:>8,} "
            f"{row['float16_bytes']:>8,} {row['edge_macs']:>11,} {row['cloud_macs']:>11,} "
            + " ".join(
                f"{row['edge_ms_per_image'][b]:>9.4f} {row['cloud_ms_per_image'][b]:>9.4f}"
                for b in batches
            )
            + f" {accuracy:>8}"
        )
    lines.append("(latencies are medians in ms per image; MACs per image)")
    return "\n".join(lines)
