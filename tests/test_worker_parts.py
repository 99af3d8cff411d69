"""The worker's parts without a broker: its latency estimate, the staging buffers, the
classifier's split points and precision, and the command line's worker flags."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from camoffload.cli import build_parser
from camoffload.runtime_options import config_from_args as load_from_args
from cloud_worker.processing import Pending, decode_batch
from cloud_worker.stats import WorkerStats
from pipeline.errors import ModelError
from pipeline.inference import Classifier
from pipeline.protocol import ErrorReply, FrameRequest, PayloadCodec, TensorDType
from pipeline.staging import HostStaging
from pipeline.topics import ReplyTarget


def test_the_latency_estimate_follows_recent_batches() -> None:
    stats = WorkerStats()
    assert stats.estimated_ms(10) == 0  # no evidence yet: compute, do not guess
    stats.record_batch(4, 40.0)  # 10 ms per frame
    assert stats.estimated_ms(3) == pytest.approx(30.0)
    stats.record_batch(4, 8.0)  # 2 ms per frame: the EWMA moves a fifth of the way
    assert stats.latency_ms_per_image == pytest.approx(0.2 * 2 + 0.8 * 10)
    assert stats.frames_done == 8


def test_staging_buffers_are_reused_and_grow_on_demand() -> None:
    staging = HostStaging(torch.device("cpu"))
    small, small_np = staging.array((2, 3), torch.uint8)
    small_np[:] = 7
    assert small.sum().item() == 42  # the NumPy view writes the tensor's memory
    again = staging.buffer((1, 3), torch.uint8)
    assert again.data_ptr() == small.data_ptr()  # reused, no new allocation
    large = staging.buffer((64, 3), torch.uint8)
    assert large.shape == (64, 3)
    assert staging.buffer((4, 3), torch.float32).dtype == torch.float32


def test_split_points_of_an_early_exit_model_and_none_for_others() -> None:
    fmnist = Classifier.by_name("fmnist_exit_resnet")
    assert fmnist.split_points == (1, 2, 3, 4)
    assert fmnist.activation_shape(3) == (192, 7, 7)
    with pytest.raises(ModelError, match="not 7"):
        fmnist.activation_shape(7)
    lite = Classifier.by_name("efficientnet_lite0")
    assert lite.split_points == ()
    with pytest.raises(ModelError, match="has no split points"):
        lite.activation_shape(1)


def test_half_precision_is_refused_on_the_cpu() -> None:
    with pytest.raises(ModelError, match="needs a CUDA device"):
        Classifier.by_name("fmnist_exit_resnet", "cpu", half=True)


def test_input_tensors_and_images_agree() -> None:
    classifier = Classifier.by_name("fmnist_exit_resnet")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28, 1), dtype=np.uint8) for _ in range(4)]
    tensors = list(classifier.preprocess(images).numpy())
    by_image = classifier.predict(images)
    by_tensor = classifier.predict_inputs(tensors)
    assert [p.label for p in by_image] == [p.label for p in by_tensor]
    for a, b in zip(by_image, by_tensor, strict=True):
        assert a.topk_scores == pytest.approx(b.topk_scores, abs=1e-5)


def test_worker_flags_become_settings() -> None:
    args = build_parser().parse_args(
        ["worker", "--model", "fmnist_exit_resnet", "--max-batch", "64", "--max-wait-ms",
         "2.5", "--metrics-port", "0", "--worker-id", "w7", "--device", "auto"]
    )  # fmt: skip
    worker = load_from_args(args).worker
    assert (worker.model, worker.max_batch, worker.max_wait_ms) == ("fmnist_exit_resnet", 64, 2.5)
    assert (worker.metrics_port, worker.worker_id, worker.device) == (0, "w7", "auto")
    assert worker.half is False


@pytest.mark.parametrize("dtype", [TensorDType.FLOAT16, TensorDType.FLOAT32])
def test_tensors_holding_nan_or_inf_are_refused_and_finite_ones_decode(
    dtype: TensorDType,
) -> None:
    classifier = Classifier.by_name("fmnist_exit_resnet")
    shape = classifier.activation_shape(1)
    numpy_dtype = np.float16 if dtype is TensorDType.FLOAT16 else np.float32
    base = np.random.default_rng(0).standard_normal(shape).astype(numpy_dtype)
    extremes = base.copy()
    extremes.flat[:3] = [np.finfo(numpy_dtype).max, -np.finfo(numpy_dtype).max, 0.0]
    bad_values = [np.nan, np.inf, -np.inf]
    arrays = [base, extremes] + [base.copy() for _ in bad_values]
    for array, value in zip(arrays[2:], bad_values, strict=True):
        array.flat[123] = value
    now = time.time()
    batch = [
        Pending(
            FrameRequest(
                frame_id=f"f{i}", edge_id="cam", seq=i, capture_ts=now, deadline_ts=now + 60,
                codec=PayloadCodec.TENSOR, shape=shape, dtype=dtype,
                payload=array.tobytes(), model="fmnist_exit_resnet", split_stage=1,
            ),
            ReplyTarget("r", None),
            time.monotonic(),
        )
        for i, array in enumerate(arrays)
    ]  # fmt: skip
    decoded = decode_batch(batch, classifier, "w1")
    errors = [reply for reply in decoded.replies if isinstance(reply, ErrorReply)]
    assert [e.frame_id for e in errors] == ["f2", "f3", "f4"]
    assert all("NaN or infinite" in e.message for e in errors)
    assert [index for index, _ in decoded.groups[1]] == [0, 1]


def test_float16_activations_classify_as_their_float32_values_alone_or_mixed() -> None:
    # float16 batches take torch's batched conversion, mixed batches NumPy's casts:
    # both must see exactly the values the float32 path sees.
    classifier = Classifier.by_name("fmnist_exit_resnet")
    shape = classifier.activation_shape(1)
    rng = np.random.default_rng(1)
    halves = [np.maximum(rng.standard_normal(shape), 0).astype(np.float16) for _ in range(4)]
    widened = [h.astype(np.float32) for h in halves]
    expected = classifier.predict_from_split(1, widened)
    assert classifier.predict_from_split(1, halves) == expected
    mixed = [halves[0], widened[1], halves[2], widened[3]]
    assert classifier.predict_from_split(1, mixed) == expected
