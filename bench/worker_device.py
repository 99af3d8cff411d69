"""The worker's compute path by device, precision and batch size, side by side in one run.

Times exactly what the worker's inference thread runs (``process_batch``: JPEG decode,
preprocessing, host-to-device copy, forward pass, top-k back to the host) on real
requests, without the broker, so CPU and CUDA, float32 and float16 (``worker.half``)
compare on equal terms. Requests:

    fmnist_exit_resnet   Fashion-MNIST test images as 28x28 JPEG (quality 90), and the
                         same images as split-1 float16 activations (an early-exit edge)
    efficientnet_lite0   vtest.avi frames as 768x576 JPEG (quality 85)

    .venv/bin/python bench/worker_device.py [--devices cpu,cuda] [--batch-sizes 1,8,64,256]

Each row is the mean frames/s over ``--seconds`` of back-to-back batches after a
warm-up; ratios are against batch 1 on the same device and precision, and (for CUDA)
against the CPU at the same batch size.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from cloud_worker.processing import Pending, process_batch
from pipeline.codecs import encode_jpeg
from pipeline.datasets import DEBIAN_FASHION_MNIST, load_fashion_mnist
from pipeline.inference import Classifier, resolve_device
from pipeline.models import get_model_spec
from pipeline.protocol import FrameRequest, PayloadCodec, Result, TensorDType
from pipeline.topics import ReplyTarget

_TARGET = ReplyTarget(topic="bench/results/edge", properties=None)


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    requests: list[FrameRequest]


def _request(i: int, model: str, **fields: object) -> FrameRequest:
    now = time.time()
    return FrameRequest(
        frame_id=f"f{i}",
        edge_id="bench-edge",
        seq=i,
        capture_ts=now,
        deadline_ts=now + 3600,
        model=model,
        **fields,  # type: ignore[arg-type]
    )


def _fmnist_workloads(root: Path, count: int) -> list[Workload]:
    images = load_fashion_mnist(root, split="test").head(count).images
    model = "fmnist_exit_resnet"
    jpeg = [
        _request(
            i,
            model,
            codec=PayloadCodec.JPEG,
            quality=90,
            shape=image.shape,
            dtype=TensorDType.UINT8,
            payload=encode_jpeg(image, 90),
        )
        for i, image in enumerate(images)
    ]
    classifier = Classifier.by_name(model, "cpu")
    network = classifier.network  # the edge part of the same weights
    assert network is not None
    with torch.inference_mode():
        activations = network.edge_part(1)(classifier.preprocess(list(images))).activation
    tensors = [
        _request(
            i,
            model,
            codec=PayloadCodec.TENSOR,
            split_stage=1,
            shape=tuple(a.shape),
            dtype=TensorDType.FLOAT16,
            payload=a.numpy().astype(np.float16).tobytes(),
        )
        for i, a in enumerate(activations)
    ]
    return [
        Workload("fmnist jpeg 28x28", model, jpeg),
        Workload("fmnist split-1 f16", model, tensors),
    ]


def _video_workload(path: str, count: int) -> list[Workload]:
    capture = cv2.VideoCapture(path)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        return []
    model = "efficientnet_lite0"
    requests = [
        _request(
            i,
            model,
            codec=PayloadCodec.JPEG,
            quality=85,
            shape=frame.shape,
            dtype=TensorDType.UINT8,
            payload=encode_jpeg(frame, 85),
        )
        for i, frame in enumerate(frames)
    ]
    return [Workload("lite0 jpeg 768x576", model, requests)]


def _throughput(
    classifier: Classifier, requests: list[FrameRequest], batch: int, seconds: float
) -> float:
    pending = [Pending(r, _TARGET, time.monotonic()) for r in requests]
    batches = [
        (pending * (batch // len(pending) + 1))[start : start + batch]
        for start in range(0, len(pending), batch)
    ]
    for chunk in batches[:3]:  # warm-up: kernel selection, allocator, pinned buffers
        process_batch(chunk, classifier, "bench")
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for chunk in batches:
            replies = process_batch(chunk, classifier, "bench")
            assert all(isinstance(reply, Result) for _, reply in replies), replies[:1]
            done += len(chunk)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--devices", default=default_devices)
    parser.add_argument("--batch-sizes", default="1,8,64,256")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument(
        "--video",
        default=os.environ.get("CAMOFFLOAD_VIDEO", "../shared/data/vtest.avi"),
        help="frames for the EfficientNet rows (skipped if missing)",
    )
    parser.add_argument("--video-frames", type=int, default=128)
    parser.add_argument("--fashion-mnist", default=str(DEBIAN_FASHION_MNIST), help="IDX folder")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    workloads = _fmnist_workloads(Path(args.fashion_mnist), args.images)
    if Path(args.video).is_file():
        workloads += _video_workload(args.video, args.video_frames)

    configs = []
    for device in args.devices.split(","):
        configs.append((device, False))
        if device == "cuda":
            configs.append((device, True))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads", end="")
    if torch.cuda.is_available():
        print(f", {torch.cuda.get_device_name()}", end="")
    print("\n")
    print("| requests | device | precision | batch | frames/s | vs batch 1 | vs CPU |")
    print("|---|---|---|---:|---:|---:|---:|")
    ratios = []
    for workload in workloads:
        cpu_fps: dict[int, float] = {}
        for device, half in configs:
            classifier = Classifier(
                get_model_spec(workload.model), resolve_device(device), half=half
            )
            base = 0.0
            for size in sizes:
                fps = _throughput(classifier, workload.requests, size, args.seconds)
                base = base or fps
                if device == "cpu":
                    cpu_fps[size] = fps
                vs_cpu = (
                    f"{fps / cpu_fps[size]:.1f}x" if device != "cpu" and size in cpu_fps else ""
                )
                precision = "float16" if half else "float32"
                print(
                    f"| {workload.name} | {device} | {precision} | {size} | {fps:.0f} | "
                    f"{fps / base:.2f}x | {vs_cpu} |",
                    flush=True,
                )
                ratios.append((workload.name, device, precision, size, fps / base))
    name, device, precision, size, ratio = max(ratios, key=lambda r: r[4])
    print(f"\nbest batched/batch-1: {ratio:.2f}x ({name}, {device} {precision}, batch {size})")


if __name__ == "__main__":
    main()
