"""uint8 split activations: coding, decoding, and the worker's batched dequantisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.datasets import load_fashion_mnist
from pipeline.inference import Classifier
from pipeline.quantize import QuantizedTensor, dequantize_batch, quantize, wire_activation

MODEL = "fmnist_exit_resnet"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.by_name(MODEL)


@pytest.fixture(scope="module")
def activations(classifier: Classifier) -> torch.Tensor:
    """Real split-1 activations of 8 Fashion-MNIST test images."""
    images = list(load_fashion_mnist(split="test").head(8).images)
    network = classifier.network
    assert network is not None
    with torch.inference_mode():
        return network.edge_part(1)(classifier.preprocess(images)).activation


def test_codes_stay_within_half_a_step_of_the_activation(activations: torch.Tensor) -> None:
    for activation in activations:
        coded = quantize(activation)
        assert coded.codes.dtype == np.uint8
        assert coded.shape == tuple(activation.shape)
        assert coded.codes.min() == 0
        assert coded.codes.max() == 255  # the range is used in full
        error = np.abs(coded.dequantize() - activation.numpy()).max()
        assert error <= coded.scale / 2 * 1.001


def test_a_constant_activation_codes_exactly() -> None:
    coded = quantize(torch.full((4, 3, 3), 0.75))
    assert coded.scale == 1.0
    assert not coded.codes.any()
    np.testing.assert_array_equal(coded.dequantize(), np.full((4, 3, 3), 0.75, np.float32))


def test_nan_or_inf_activations_and_bad_codes_are_refused() -> None:
    bad = torch.ones(2, 2, 2)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize(bad)
    with pytest.raises(ValueError, match="uint8"):
        QuantizedTensor(np.zeros(4, np.float16), 1.0, 0.0)
    with pytest.raises(ValueError, match="scale > 0"):
        QuantizedTensor(np.zeros(4, np.uint8), 0.0, 0.0)


def test_the_batched_dequantisation_matches_each_frames_own(activations: torch.Tensor) -> None:
    coded = [quantize(a) for a in activations]
    codes = torch.from_numpy(np.stack([c.codes for c in coded]))
    batch = dequantize_batch(codes, coded, torch.float32)
    np.testing.assert_array_equal(batch.numpy(), np.stack([c.dequantize() for c in coded]))
    assert dequantize_batch(codes, coded, torch.float16).dtype == torch.float16


def test_the_worker_classifies_codes_as_their_values(
    classifier: Classifier, activations: torch.Tensor
) -> None:
    coded = [quantize(a) for a in activations]
    expected = classifier.predict_from_split(1, [c.dequantize() for c in coded])
    assert classifier.predict_from_split(1, coded) == expected
    halves = [a.half().numpy() for a in activations]
    mixed = [coded[0], halves[1], *coded[2:]]  # codes next to a float16 array
    assert classifier.predict_from_split(1, mixed)[0] == expected[0]
    # The codes are what the float16 path answers, frame for frame, on real images.
    assert [p.label for p in expected] == [
        p.label for p in classifier.predict_from_split(1, halves)
    ]


def test_the_edge_sends_codes_or_float16_as_configured(activations: torch.Tensor) -> None:
    assert isinstance(wire_activation(activations[0], "uint8"), QuantizedTensor)
    half = wire_activation(activations[0], "float16")
    assert isinstance(half, np.ndarray)
    assert half.dtype == np.float16


def test_an_activation_without_codes_goes_as_float16_for_the_worker_to_refuse() -> None:
    bad = torch.ones(2, 2, 2)
    bad[1, 1, 1] = float("inf")
    sent = wire_activation(bad, "uint8")
    assert isinstance(sent, np.ndarray)
    assert sent.dtype == np.float16
    assert np.isinf(sent).any()
