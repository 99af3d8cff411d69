"""The committed Fashion-MNIST weights: they load, they score what the manifest says,
and the serving path (JPEG -> registry -> Classifier) gets the same answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camoffload.training.evaluate import predict_exits
from pipeline.codecs import decode_jpeg, encode_jpeg
from pipeline.datasets import DEBIAN_FASHION_MNIST, LabelledImages, load_fashion_mnist
from pipeline.inference import Classifier
from pipeline.models import default_models_dir, get_model_spec, load_early_exit
from pipeline.models.weights import sha256_of

MODEL = "fmnist_exit_resnet"
pytestmark = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


@pytest.fixture(scope="module")
def test_set() -> LabelledImages:
    return load_fashion_mnist(split="test")


def test_the_manifest_meets_the_targets_on_all_test_images() -> None:
    _, manifest = load_early_exit(MODEL)
    assert manifest.test_images == 10_000
    assert manifest.exit_accuracy[0] >= 0.90
    assert manifest.exit_accuracy[-1] >= 0.945
    assert manifest.dataset == "fashion-mnist"
    assert manifest.command.startswith("camoffload train")
    assert sha256_of(default_models_dir() / manifest.weights_file) == manifest.sha256
    assert manifest.size_bytes < 8 * 2**20  # small enough to commit


@pytest.mark.slow
def test_the_committed_weights_score_what_the_manifest_says(test_set: LabelledImages) -> None:
    network, manifest = load_early_exit(MODEL)
    accuracy = predict_exits(network, test_set, mean=manifest.mean, std=manifest.std).accuracy()
    # Same file, same float32 arithmetic: only kernel-order rounding may differ by CPU.
    for measured, claimed in zip(accuracy, manifest.exit_accuracy, strict=True):
        assert measured == pytest.approx(claimed, abs=0.0015)
    assert accuracy[0] >= 0.90
    assert accuracy[-1] >= 0.945


def test_split_parts_of_the_trained_network_match_it(test_set: LabelledImages) -> None:
    network, manifest = load_early_exit(MODEL)
    images = torch.from_numpy(test_set.images[:64]).permute(0, 3, 1, 2).float() / 255.0
    images = (images - manifest.mean[0]) / manifest.std[0]
    with torch.inference_mode():
        full = network(images)[-1]
        for split in range(network.config.num_stages + 1):
            activation = network.edge_part(split)(images).activation
            torch.testing.assert_close(network.cloud_part(split)(activation), full)


def test_the_registry_serves_the_final_exit_on_jpeg_frames(test_set: LabelledImages) -> None:
    spec = get_model_spec(MODEL)
    _, manifest = load_early_exit(MODEL)
    assert spec.version == manifest.version
    assert spec.channels == 1
    assert spec.input_size == (28, 28)
    subset = test_set.head(500)
    # What an edge sends: a JPEG of the frame (quality 90), decoded by the worker.
    frames = [decode_jpeg(encode_jpeg(image, 90)) for image in subset.images]
    predictions = Classifier(spec, torch.device("cpu")).predict(frames)
    labels = np.array([p.label for p in predictions])
    assert float(np.mean(labels == subset.labels)) >= 0.93
    assert spec.labels[predictions[0].label] in subset.classes
