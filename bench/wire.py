"""Microseconds per message to encode and decode the wire envelopes, one by one and in
bundles of 32: what the edge and the worker pay per frame for MessagePack and strict
validation, beside the ~50-150 us an MQTT message costs in Python; and a bundle of 16
split activations encoded by ``FrameBundle.to_bytes`` against MessagePack's own packer
(ratio last).

    .venv/bin/python bench/wire.py [--number 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import timeit

from pipeline.codecs import encode_jpeg
from pipeline.protocol import (
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    Result,
    TensorDType,
    _wire,
    decode_frames,
    decode_replies,
)
from pipeline.training.datasets import load_fashion_mnist

SPLIT_BUNDLE = "FrameBundle.to_bytes (16 split frames), per bundle"
SPLIT_BUNDLE_PACKER = "the same through the MessagePack packer, per bundle"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    image = load_fashion_mnist(split="test").head(1).images[0]
    now = time.time()
    request = FrameRequest(
        frame_id="run1234-17", edge_id="cam-1", seq=17, capture_ts=now, deadline_ts=now + 1,
        codec=PayloadCodec.JPEG, quality=90, shape=(28, 28, 1), dtype=TensorDType.UINT8,
        payload=encode_jpeg(image, 90), model="fmnist_exit_resnet",
    )  # fmt: skip
    result = Result(
        frame_id="run1234-17", worker_id="w1", label=3, label_name="Dress",
        topk_labels=(3, 1, 2, 4, 6), topk_scores=(0.9, 0.05, 0.02, 0.02, 0.01),
        model="fmnist_exit_resnet", model_version="1", queue_ms=1.0, decode_ms=0.1,
        inference_ms=20.0, batch_size=32,
    )  # fmt: skip
    frame, reply = request.to_bytes(), result.to_bytes()
    frames = FrameBundle(edge_id="cam-1", frames=(frame,) * 32).to_bytes()
    replies = ReplyBundle(replies=(reply,) * 32).to_bytes()
    # A bundle of 16 split-1 activations as uint8 codes (~600 KB): how a bundle is
    # encoded, against MessagePack's own packer on the same message.
    split_members = tuple(bytes(37_632 + 250) for _ in range(16))
    split_bundle = FrameBundle(edge_id="cam-1", frames=split_members)
    cases = {
        "FrameRequest.to_bytes": (request.to_bytes, 1),
        SPLIT_BUNDLE: (split_bundle.to_bytes, 1),
        SPLIT_BUNDLE_PACKER: (
            lambda: _wire.encode(split_bundle),
            1,
        ),
        "decode_frames (one frame)": (lambda: decode_frames(frame), 1),
        "decode_frames (bundle of 32), per frame": (lambda: decode_frames(frames), 32),
        "Result built (validated, as a worker builds each)": (
            lambda: dataclasses.replace(result),
            1,
        ),
        "Result.to_bytes": (result.to_bytes, 1),
        "decode_replies (one reply)": (lambda: decode_replies(reply), 1),
        "decode_replies (bundle of 32), per reply": (lambda: decode_replies(replies), 32),
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
