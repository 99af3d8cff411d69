"""The early-exit network: splitting, training, weights on disk, profile, registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from camoffload.cli import main
from camoffload.model_profile import profile_network
from pipeline.datasets import DEBIAN_FASHION_MNIST
from pipeline.errors import ModelError
from pipeline.models import (
    EarlyExitConfig,
    EarlyExitResNet,
    available_models,
    get_model_spec,
    load_early_exit,
    read_manifest,
)

TINY = EarlyExitConfig(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))
needs_fashion_mnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


def _network(config: EarlyExitConfig = TINY, seed: int = 0) -> EarlyExitResNet:
    torch.manual_seed(seed)
    network = EarlyExitResNet(config).eval()
    # Zero-initialised residual branches make every block an identity; perturb the
    # BN scales so the split test exercises real arithmetic.
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.running_mean.uniform_(-0.1, 0.1)
    return network


@pytest.mark.parametrize("split", [0, 1, 2, 3])
def test_edge_then_cloud_part_equals_the_whole_network(split: int) -> None:
    network = _network()
    images = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        full = network(images)
        edge = network.edge_part(split)(images)
        final = network.cloud_part(split)(edge.activation)
    torch.testing.assert_close(final, full[-1], rtol=1e-5, atol=1e-5)
    if split == 0:
        assert edge.logits is None
    else:
        assert edge.logits is not None
        torch.testing.assert_close(edge.logits, full[split - 1], rtol=1e-5, atol=1e-5)


def test_a_float16_intermediate_costs_little() -> None:
    network = _network()
    images = torch.randn(8, 1, 28, 28)
    with torch.inference_mode():
        full = network(images)[-1]
        sent = network.edge_part(1)(images).activation.half()  # what crosses the wire
        received = network.cloud_part(1)(sent.float())
    assert torch.equal(received.argmax(1), full.argmax(1))
    torch.testing.assert_close(received, full, rtol=0.02, atol=0.02)


def test_final_exit_is_the_last_exit() -> None:
    network = _network()
    images = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(network.final_exit()(images), network(images)[-1])


def test_split_points_outside_the_network_are_refused() -> None:
    with pytest.raises(ModelError, match=r"outside 0\.\.4"):
        _network().edge_part(5)
    with pytest.raises(ModelError, match="stages"):
        EarlyExitConfig(widths=(8,), blocks=(1,))


TINY_TRAIN = "train --epochs 1 --limit 512 --test-limit 300 --widths 8,8,16,16 --device cpu"


def _train_tiny(out: Path) -> None:
    """A real (tiny) `camoffload train` run into ``out``, as ``tiny``."""
    assert main([*TINY_TRAIN.split(), "--out", str(out), "--name", "tiny"]) == 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) `camoffload train` run: its output folder."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    out = tmp_path_factory.mktemp("weights")
    _train_tiny(out)
    return out


def test_train_writes_weights_and_a_truthful_manifest(tiny_run: Path) -> None:
    manifest = read_manifest(tiny_run / "tiny.json")
    assert manifest.config == TINY
    assert manifest.train_images == 512
    assert manifest.test_images == 300
    assert manifest.command.startswith("camoffload train --epochs 1 --limit 512")
    assert manifest.torch_version == torch.__version__
    assert len(manifest.exit_accuracy) == len(manifest.macs_per_exit) == 4
    assert manifest.macs_per_exit == tuple(sorted(manifest.macs_per_exit))
    network, loaded = load_early_exit(tiny_run / "tiny.json")
    assert loaded == manifest
    assert manifest.params == sum(p.numel() for p in network.parameters())


def test_training_is_reproducible(tiny_run: Path, tmp_path: Path) -> None:
    _train_tiny(tmp_path)
    first = read_manifest(tiny_run / "tiny.json")
    second = read_manifest(tmp_path / "tiny.json")
    assert second.sha256 == first.sha256
    assert second.exit_accuracy == first.exit_accuracy


def _copy(run: Path, tmp_path: Path) -> Path:
    for name in ("tiny.json", "tiny.pt"):
        shutil.copy(run / name, tmp_path / name)
    return tmp_path / "tiny.json"


def _one_line_error(manifest: Path, match: str) -> None:
    with pytest.raises(ModelError, match=match) as caught:
        load_early_exit(manifest)
    assert "\n" not in str(caught.value)


def test_a_missing_manifest_says_how_to_get_one(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nothing.json", "no weights manifest.*camoffload train")


def test_a_missing_weights_file_is_named(tiny_run: Path, tmp_path: Path) -> None:
    manifest = _copy(tiny_run, tmp_path)
    (tmp_path / "tiny.pt").unlink()
    _one_line_error(manifest, r"weights file .*tiny\.pt .* is missing")


def test_a_truncated_weights_file_is_caught(tiny_run: Path, tmp_path: Path) -> None:
    manifest = _copy(tiny_run, tmp_path)
    weights = tmp_path / "tiny.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    _one_line_error(manifest, "is 1000 bytes, the manifest says .* truncated")


def test_a_corrupt_weights_file_fails_its_checksum(tiny_run: Path, tmp_path: Path) -> None:
    manifest = _copy(tiny_run, tmp_path)
    weights = tmp_path / "tiny.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    _one_line_error(manifest, "is corrupt: sha256")


def test_weights_for_another_architecture_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    manifest_path = _copy(tiny_run, tmp_path)
    # The manifest claims a wider network than the file holds (checksum still fine).
    data = json.loads(manifest_path.read_text())
    data["config"]["widths"] = [8, 16, 16, 32]
    manifest_path.write_text(json.dumps(data))
    _one_line_error(manifest_path, "does not fit early_exit_resnet.*of another shape")


def test_a_caller_expecting_another_architecture_is_refused(tiny_run: Path) -> None:
    with pytest.raises(ModelError, match="not the requested"):
        load_early_exit(tiny_run / "tiny.json", config=EarlyExitConfig())


def test_profile_covers_every_layer_and_split(tiny_run: Path) -> None:
    network, manifest = load_early_exit(tiny_run / "tiny.json")
    report = profile_network(
        network, device=torch.device("cpu"), batch_sizes=(1, 4), repeats=2, manifest=manifest
    )
    names = [layer["name"] for layer in report["layers"]]
    assert names == [
        "stem",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "exit1_head",
        "exit2_head",
        "exit3_head",
        "final_head",
    ]
    splits = report["splits"]
    assert [row["split"] for row in splits] == [0, 1, 2, 3, 4]
    assert splits[0]["tensor_shape"] == [1, 28, 28]
    assert splits[1]["tensor_shape"] == [8, 28, 28]
    assert splits[3]["tensor_shape"] == [16, 7, 7]
    assert splits[3]["float16_bytes"] == 2 * 16 * 7 * 7
    assert splits[0]["edge_macs"] == 0
    assert splits[4]["cloud_macs"] == 0
    total = splits[0]["cloud_macs"]
    assert all(row["edge_macs"] + row["cloud_macs"] >= total for row in splits)
    assert splits[2]["exit_accuracy"] == manifest.exit_accuracy[1]
    assert all(value > 0 for value in splits[0]["cloud_ms_per_image"].values())
    json.dumps(report)  # the partition policy reads it as JSON


def test_profile_command_prints_json(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["profile", str(tiny_run / "tiny.json"), "--repeats", "1", "--json", "-"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny"
    assert len(report["splits"]) == 5


def test_unknown_models_are_named() -> None:
    with pytest.raises(ModelError, match=r"known models: .*fmnist_exit_resnet"):
        get_model_spec("resnet9000")


def test_any_trained_manifest_is_served_by_name(tiny_run: Path) -> None:
    from pipeline.inference import Classifier

    assert "tiny" in available_models(models_dir=tiny_run)
    spec = get_model_spec("tiny", models_dir=tiny_run)
    manifest = read_manifest(tiny_run / "tiny.json")
    assert spec.version == manifest.version == f"tiny-{manifest.sha256[:12]}"
    assert (spec.channels, spec.input_size) == (1, (28, 28))
    colour_frame = np.zeros((56, 56, 3), np.uint8)  # a camera frame: BGR, another size
    predictions = Classifier(spec, torch.device("cpu")).predict([colour_frame])
    assert 0 <= predictions[0].label < 10
