"""Microseconds per message to encode and decode the wire envelopes, one by one and in
bundles of 32: what the edge and the worker pay per frame for MessagePack and strict
validation, beside the ~50-150 us an MQTT message costs in Python; the largest split
activation an edge sends (float16 at split 1, 75 KB); and a bundle of 16 split
activations (uint8 at split 1, ~600 KB) decoded, and encoded by ``FrameBundle.to_bytes``
(msgspec) against MessagePack's own packer on the same map, the encoder before msgspec
(ratio last). The process keeps freed memory as a worker does by default
(pipeline/allocator.py): otherwise each ~600 KB decode may fault its pages in afresh,
or not, depending on what the process happened to free before.

    .venv/bin/python bench/wire.py [--number 20000]

It uses only the public protocol API, so the same script measures any version of it.
"""

from __future__ import annotations

import argparse
import time
import timeit
from typing import Any

import msgpack

from pipeline.allocator import keep_freed_memory
from pipeline.codecs import encode_jpeg
from pipeline.datasets import load_fashion_mnist
from pipeline.protocol import (
    SCHEMA_VERSION,
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    Result,
    ResultColumns,
    ResultRow,
    TensorDType,
    decode_frames,
    decode_replies,
)

SPLIT_BUNDLE = "FrameBundle.to_bytes (16 split frames), per bundle"
SPLIT_BUNDLE_PACKER = "the same through the MessagePack packer, per bundle"


def _packed_by_msgpack(bundle: FrameBundle) -> bytes:
    """``bundle`` as MessagePack's packer writes its map: the same bytes."""
    body = {"v": SCHEMA_VERSION, "t": "frames", "edge_id": bundle.edge_id, "frames": bundle.frames}
    packed = msgpack.packb(body, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    keep_freed_memory()
    image = load_fashion_mnist(split="test").head(1).images[0]
    now = time.time()
    request = FrameRequest(
        frame_id="run1234-17", edge_id="cam-1", seq=17, capture_ts=now, deadline_ts=now + 1,
        codec=PayloadCodec.JPEG, quality=90, shape=(28, 28, 1), dtype=TensorDType.UINT8,
        payload=encode_jpeg(image, 90), model="fmnist_exit_resnet",
    )  # fmt: skip
    split = FrameRequest(
        frame_id="run1234-18", edge_id="cam-1", seq=18, capture_ts=now, deadline_ts=now + 1,
        codec=PayloadCodec.TENSOR, split_stage=1, shape=(48, 28, 28),
        dtype=TensorDType.FLOAT16, payload=bytes(48 * 28 * 28 * 2), model="fmnist_exit_resnet",
        edge_label=3, edge_confidence=0.4,
    )  # fmt: skip
    result_fields: dict[str, Any] = {
        "frame_id": "run1234-17", "worker_id": "w1", "label": 3, "label_name": "Dress",
        "topk_labels": (3, 1, 2, 4, 6), "topk_scores": (0.9, 0.05, 0.02, 0.02, 0.01),
        "model": "fmnist_exit_resnet", "model_version": "1", "queue_ms": 1.0,
        "decode_ms": 0.1, "inference_ms": 20.0, "batch_size": 32,
    }  # fmt: skip
    result = Result(**result_fields)
    frame, split_frame, reply = request.to_bytes(), split.to_bytes(), result.to_bytes()
    frames = FrameBundle(edge_id="cam-1", frames=(frame,) * 32).to_bytes()
    replies = ReplyBundle(replies=(reply,) * 32).to_bytes()
    row_fields = {k: v for k, v in result_fields.items() if k != "worker_id"}
    rows = [ResultRow(**row_fields) for _ in range(32)]
    columns = ResultColumns.of_rows(rows, worker_id="w1").to_bytes()
    # A bundle of 16 split-1 activations as uint8 codes (~600 KB): how a bundle is
    # encoded, against MessagePack's own packer on the same message.
    split_members = tuple(bytes(37_632 + 250) for _ in range(16))
    split_bundle = FrameBundle(edge_id="cam-1", frames=split_members)
    uint8_split = FrameRequest(
        frame_id="run1234-19", edge_id="cam-1", seq=19, capture_ts=now, deadline_ts=now + 1,
        codec=PayloadCodec.TENSOR, split_stage=1, shape=(48, 28, 28), dtype=TensorDType.UINT8,
        payload=bytes(48 * 28 * 28), model="fmnist_exit_resnet", tensor_scale=0.02,
        tensor_offset=-0.5,
    )  # fmt: skip
    split_frames = FrameBundle(edge_id="cam-1", frames=(uint8_split.to_bytes(),) * 16).to_bytes()
    assert split_bundle.to_bytes() == _packed_by_msgpack(split_bundle)
    cases = {
        "FrameRequest.to_bytes": (request.to_bytes, 1),
        "FrameRequest.to_bytes (float16 split, 75 KB)": (split.to_bytes, 1),
        SPLIT_BUNDLE: (split_bundle.to_bytes, 1),
        SPLIT_BUNDLE_PACKER: (lambda: _packed_by_msgpack(split_bundle), 1),
        "decode_frames (one frame)": (lambda: decode_frames(frame), 1),
        "decode_frames (float16 split, 75 KB)": (lambda: decode_frames(split_frame), 1),
        "decode_frames (bundle of 32), per frame": (lambda: decode_frames(frames), 32),
        "decode_frames (bundle of 16 split activations), per frame": (
            lambda: decode_frames(split_frames),
            16,
        ),
        "Result built (validated, as a worker builds each)": (
            lambda: Result(**result_fields),
            1,
        ),
        "Result.to_bytes": (result.to_bytes, 1),
        "decode_replies (one reply)": (lambda: decode_replies(reply), 1),
        "decode_replies (bundle of 32), per reply": (lambda: decode_replies(replies), 32),
        "32 Results built and bundled, per reply (a worker, before columns)": (
            lambda: ReplyBundle(
                replies=tuple(Result(**result_fields).to_bytes() for _ in range(32))
            ).to_bytes(),
            32,
        ),
        "32 rows as ResultColumns, per reply (a worker, columns)": (
            lambda: ResultColumns.of_rows(
                [ResultRow(**row_fields) for _ in range(32)], worker_id="w1"
            ).to_bytes(),
            32,
        ),
        "decode_replies (columns of 32), per reply": (lambda: decode_replies(columns), 32),
    }
    timings: dict[str, float] = {}
    print("| step | us per message |\n|---|---:|")
    for name, (call, per) in cases.items():
        number = max(1, args.number // per)
        seconds = min(timeit.repeat(call, number=number, repeat=5))
        print(f"| {name} | {seconds / number / per * 1e6:.1f} |")
        timings[name] = seconds / number
    ours, packer = timings[SPLIT_BUNDLE], timings[SPLIT_BUNDLE_PACKER]
    print(f"ratio packer/to_bytes, split bundle: {packer / ours:.2f}")


if __name__ == "__main__":
    main()
