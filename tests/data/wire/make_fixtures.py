"""The wire fixtures: every message type, encoded once, as the reference bytes.

``FIXTURES`` names one deterministic value per case (no clock, no OpenCV: a JPEG
payload here is opaque bytes, as the envelope treats it); this script writes each as
``<name>.msgpack`` beside itself. tests/test_wire_fixtures.py encodes the same values
and compares byte for byte, then decodes each file back to its value, so an encoder
change that moves one byte on the wire fails there.

The files were written by the hand-written MessagePack encoder that msgspec replaced;
run this again only on purpose (a schema change), and say so where it is committed:

    .venv/bin/python tests/data/wire/make_fixtures.py

It rewrites every file; those of an unchanged encoder come out byte for byte the same.
``frame_jpeg_detect``, ``detections`` and ``detections_empty`` were added by this
encoder (msgspec), with DetectionResult and FrameRequest.task.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # run as a script from a checkout

from pipeline.protocol import (  # noqa: E402 - after the path above
    Decision,
    DetectionResult,
    EdgeStatus,
    ErrorCode,
    ErrorReply,
    Event,
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    Result,
    ResultColumns,
    ResultRow,
    Task,
    TensorDType,
    WorkerStatus,
)

TS = 1_700_000_000.123456  # a fixed capture time: fixtures never read the clock


def _bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _frame(**fields: object) -> FrameRequest:
    base: dict[str, object] = {
        "frame_id": "run1234-17",
        "edge_id": "cam-1",
        "seq": 17,
        "capture_ts": TS,
        "deadline_ts": TS + 1.5,
        "model": "fmnist_exit_resnet",
        "dtype": TensorDType.UINT8,
    }
    return FrameRequest(**{**base, **fields})  # type: ignore[arg-type]


# A fake JPEG: the envelope never decodes it, and OpenCV's bytes vary by build.
_JPEG = b"\xff\xd8\xff\xe0" + _bytes(1, 296) + b"\xff\xd9"

FRAMES: dict[str, FrameRequest] = {
    "frame_jpeg": _frame(
        codec=PayloadCodec.JPEG, quality=90, shape=(28, 28, 1), payload=_JPEG, seq=0
    ),
    "frame_jpeg_full": _frame(
        codec=PayloadCodec.JPEG, quality=75, shape=(480, 640, 3), payload=_JPEG,
        seq=255, edge_label=7, edge_confidence=0.625,
    ),
    "frame_jpeg_abbrev": _frame(
        codec=PayloadCodec.JPEG_ABBREV, quality=50, shape=(28, 28, 1),
        payload=_bytes(2, 200), seq=65_536,
    ),
    "frame_jpeg_abbrev_full": _frame(
        codec=PayloadCodec.JPEG_ABBREV, quality=1, shape=(576, 768, 3),
        payload=_bytes(3, 31), edge_label=0, edge_confidence=0.0,
    ),
    "frame_raw_uint8": _frame(
        codec=PayloadCodec.RAW, shape=(28, 28, 1), payload=_bytes(4, 784), seq=2**32
    ),
    "frame_raw_uint8_full": _frame(
        codec=PayloadCodec.RAW, shape=(2, 2, 3), payload=_bytes(5, 12),
        edge_label=2**31 - 1, edge_confidence=1.0, seq=2**63 - 1,
    ),
    "frame_raw_float32": _frame(
        codec=PayloadCodec.RAW, shape=(1, 28, 28), dtype=TensorDType.FLOAT32,
        payload=_bytes(6, 28 * 28 * 4), edge_label=9, edge_confidence=0.4,
    ),
    "frame_tensor_uint8": _frame(
        codec=PayloadCodec.TENSOR, split_stage=1, shape=(12, 28, 28),
        payload=_bytes(7, 12 * 28 * 28), tensor_scale=0.0123, tensor_offset=-1.5,
    ),
    "frame_tensor_uint8_full": _frame(
        codec=PayloadCodec.TENSOR, split_stage=3, shape=(4, 4),
        payload=_bytes(8, 16), tensor_scale=2.0, tensor_offset=0.0,
        edge_label=3, edge_confidence=0.25, deadline_ts=TS + 100,
    ),
    "frame_tensor_float16": _frame(
        codec=PayloadCodec.TENSOR, split_stage=2, shape=(24, 14, 14),
        dtype=TensorDType.FLOAT16, payload=_bytes(9, 24 * 14 * 14 * 2),
    ),
    "frame_tensor_float16_full": _frame(
        codec=PayloadCodec.TENSOR, split_stage=1, shape=(3,), dtype=TensorDType.FLOAT16,
        payload=_bytes(10, 6), edge_label=1, edge_confidence=0.5,
    ),
    "frame_tensor_float32": _frame(
        codec=PayloadCodec.TENSOR, split_stage=4, shape=(256, 8, 8),
        dtype=TensorDType.FLOAT32, payload=_bytes(11, 256 * 8 * 8 * 4),  # a bin 32
    ),
    "frame_tensor_float32_full": _frame(
        codec=PayloadCodec.TENSOR, split_stage=4, shape=(1, 2, 3, 4),
        dtype=TensorDType.FLOAT32, payload=_bytes(12, 96), edge_label=65_535,
        edge_confidence=0.999, frame_id="f" * 128, edge_id="édge-ü", model="m",
    ),
}  # fmt: skip

# Added with DetectionResult, apart from FRAMES (which frame_bundle_16 holds, so that
# its bytes stay as they were): the frames above, without a task, are unchanged.
DETECT_FRAMES: dict[str, FrameRequest] = {
    "frame_jpeg_detect": _frame(
        codec=PayloadCodec.JPEG, quality=85, shape=(480, 640, 3), payload=_JPEG,
        model="ssdlite320_mobilenet_v3", task=Task.DETECT,
    ),
}  # fmt: skip

RESULTS: dict[str, Result] = {
    "result": Result(
        frame_id="run1234-17", worker_id="w1", label=3, topk_labels=(3,),
        topk_scores=(0.9,), model="fmnist_exit_resnet", model_version="1",
        queue_ms=0.0, decode_ms=0.1, inference_ms=20.0, batch_size=1,
    ),
    "result_full": Result(
        frame_id="run1234-18", worker_id="worker-02", label=2**31 - 1,
        label_name="Ankle boot — größe", topk_labels=(2**31 - 1, 1, 0, 300, 70_000),
        topk_scores=(0.9, 0.05, 0.02, 0.02, 0.01), model="efficientnet_lite2",
        model_version="2024-06-01", queue_ms=1234.5, decode_ms=3.0,
        inference_ms=1e-3, batch_size=256,
    ),
}  # fmt: skip

DETECTIONS: dict[str, DetectionResult] = {
    "detections": DetectionResult(
        frame_id="run1234-19", worker_id="w1", labels=(1, 3, 2**31 - 1),
        label_names=("person", "car", "größe — 64 chars max"), scores=(0.9, 0.5, 0.0),
        boxes=(0.0, 0.0, 1.0, 1.0, 0.25, 0.5, 0.375, 0.75, 0.5, 0.5, 0.5, 0.5),
        model="ssdlite320_mobilenet_v3", model_version="1", queue_ms=1.5,
        decode_ms=2.0, inference_ms=12.25, batch_size=4,
    ),
    "detections_empty": DetectionResult(
        frame_id="run1234-20", worker_id="w1", labels=(), label_names=(), scores=(),
        boxes=(), model="ssdlite320_mobilenet_v3", model_version="1", queue_ms=0.0,
        decode_ms=0.0, inference_ms=0.0, batch_size=1,
    ),
}  # fmt: skip

ERRORS: dict[str, ErrorReply] = {
    f"error_{code.value}": ErrorReply(
        frame_id=f"run1234-{i}", worker_id="w1", code=code, message=f"{code.value}: why"
    )
    for i, code in enumerate(ErrorCode)
}
ERRORS["error_no_frame_id"] = ErrorReply(
    worker_id="w1", code=ErrorCode.BAD_REQUEST, message="not a MessagePack message: " + "x" * 300
)

BUNDLES: dict[str, FrameBundle | ReplyBundle] = {
    "frame_bundle": FrameBundle(
        edge_id="cam-1",
        frames=(FRAMES["frame_jpeg"].to_bytes(), FRAMES["frame_raw_uint8"].to_bytes()),
    ),
    # 16 members (an array 16 header) across the bin 8 / 16 / 32 sizes, and a member
    # that is not a valid frame: a bundle carries members as opaque bytes.
    "frame_bundle_16": FrameBundle(
        edge_id="cam-2",
        frames=(
            *(m.to_bytes() for m in FRAMES.values()),
            b"\xc1",
            _bytes(13, 255),
            _bytes(14, 256),
        ),
    ),
    "reply_bundle": ReplyBundle(
        replies=(
            RESULTS["result"].to_bytes(),
            ERRORS["error_busy"].to_bytes(),
            RESULTS["result_full"].to_bytes(),
        )
    ),
}

# Added with columns replies: a bundle asking for them, and the answer.
COLUMNS: dict[str, FrameBundle | ResultColumns] = {
    "frame_bundle_columns": FrameBundle(
        edge_id="cam-1",
        frames=(FRAMES["frame_jpeg"].to_bytes(), FRAMES["frame_raw_uint8"].to_bytes()),
        columns=True,
    ),
    "result_columns": ResultColumns.of_rows(
        [
            ResultRow(
                r.frame_id, r.label, r.label_name or "", r.topk_labels[:1], r.topk_scores[:1],
                "fmnist_exit_resnet", "1", r.queue_ms, r.decode_ms, r.inference_ms,
                r.batch_size,
            )
            for r in RESULTS.values()
        ],
        worker_id="w1",
    ),
}  # fmt: skip

STATUSES: dict[str, WorkerStatus | EdgeStatus] = {
    "worker_status": WorkerStatus(worker_id="w1", online=False, ts=TS),
    "worker_status_full": WorkerStatus(
        worker_id="w1", online=True, ts=TS, device="cuda:0",
        models=("fmnist_exit_resnet", "efficientnet_lite2"), queue_depth=3,
        queue_capacity=256, mean_batch_size=4.5, latency_ms_per_image=2.25,
        throughput_fps=100.0, frames_done=2**40, frames_rejected=7,
    ),
    "edge_status": EdgeStatus(edge_id="cam-1", online=False, ts=TS),
    "edge_status_full": EdgeStatus(
        edge_id="cam-1", online=True, ts=TS, captured=1000, in_flight=4, offloaded=300,
        decided=990, skipped=600, dropped=6, bytes_sent=2**33, capture_fps=29.97,
        skipped_fps=18.5, offload_share=0.303, rtt_ms_p50=41.25, connected=False,
    ),
}  # fmt: skip

_EVENT_EXTRAS: dict[Decision, dict[str, object]] = {
    Decision.LOCAL: {"label": 4, "confidence": 0.97, "model": "fmnist_exit_resnet",
                     "latency_ms": 3.5, "true_label": 4},
    Decision.CLOUD: {"label": 1, "confidence": 0.8, "model": "efficientnet_lite2",
                     "latency_ms": 45.0, "bytes_sent": 2_400, "true_label": 2},
    Decision.LOCAL_AFTER_TIMEOUT: {"label": 0, "confidence": 0.3, "latency_ms": 1000.0,
                                   "bytes_sent": 37_900},
    Decision.LOCAL_AFTER_BUSY: {"label": 6, "confidence": 0.5, "bytes_sent": 1},
    Decision.LOCAL_AFTER_ERROR: {"bytes_sent": 70_000, "latency_ms": 0.0},
    Decision.SKIPPED: {},
    Decision.DROPPED: {"true_label": 9},
}  # fmt: skip

EVENTS: dict[str, Event] = {
    f"event_{decision.value.replace('-', '_')}": Event(
        edge_id="cam-1", frame_id=f"run1234-{i}", seq=i * 1000, ts=TS + i,
        decision=decision, **extras,  # type: ignore[arg-type]
    )
    for i, (decision, extras) in enumerate(_EVENT_EXTRAS.items())
}  # fmt: skip

FIXTURES: dict[str, object] = {
    **FRAMES, **DETECT_FRAMES, **RESULTS, **DETECTIONS, **ERRORS, **BUNDLES, **COLUMNS,
    **STATUSES, **EVENTS,
}  # fmt: skip


def fixture_path(name: str) -> Path:
    return HERE / f"{name}.msgpack"


def main() -> None:
    for name, message in FIXTURES.items():
        fixture_path(name).write_bytes(message.to_bytes())  # type: ignore[attr-defined]
    print(f"wrote {len(FIXTURES)} fixtures to {HERE}")


if __name__ == "__main__":
    main()
