"""Data sets from local files: Fashion-MNIST (Debian's package, torchvision's layout),
CIFAR-10 (a fake in the exact pickle format of the real batches), bad files, the
registry, and augmentation."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pytest
import torch

from camoffload.cli import main
from camoffload.training.augment import random_crop_flip
from camoffload.training.trainer import TrainOptions, train
from pipeline.datasets import (
    CIFAR10_LABELS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASETS,
    DEBIAN_FASHION_MNIST,
    DatasetError,
    get_dataset,
    load_cifar10,
    load_fashion_mnist,
    read_idx,
)
from pipeline.models import EarlyExitConfig, read_manifest

needs_fashion_mnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


@needs_fashion_mnist
def test_the_debian_files_hold_the_real_data_set() -> None:
    train = load_fashion_mnist(split="train")
    test = load_fashion_mnist(split="test")
    assert train.images.shape == (60_000, 28, 28, 1)
    assert test.images.shape == (10_000, 28, 28, 1)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[9] == "Ankle boot"


@pytest.fixture(scope="module")
def torchvision_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Debian files laid out as torchvision's downloader leaves them (gunzipped)."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("tv")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for source in DEBIAN_FASHION_MNIST.glob("*-ubyte.gz"):  # torchvision wants all four
        with gzip.open(source) as compressed, (raw / source.stem).open("wb") as out:
            shutil.copyfileobj(compressed, out)
    return root


def test_torchvision_reads_the_layout_we_read(torchvision_layout: Path) -> None:
    from torchvision.datasets import FashionMNIST

    # download=False: the same code path users take after a download, on local files.
    theirs = FashionMNIST(str(torchvision_layout), train=False, download=False)
    ours = load_fashion_mnist(torchvision_layout, "test")
    assert len(theirs) == len(ours) == 10_000
    assert torch.equal(theirs.data, torch.from_numpy(ours.images[..., 0]))
    assert torch.equal(theirs.targets, torch.from_numpy(ours.labels))
    assert tuple(theirs.classes) == ours.classes


def test_missing_files_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, "test")


@needs_fashion_mnist
def test_a_truncated_idx_file_is_caught(tmp_path: Path) -> None:
    data = gzip.decompress((DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(data[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)


def test_a_file_that_is_not_idx_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(path)


def test_augmentation_is_seeded_and_keeps_pixels() -> None:
    batch = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    first = random_crop_flip(
        batch, padding=1, fill=-1.0, generator=torch.Generator().manual_seed(3)
    )
    again = random_crop_flip(
        batch, padding=1, fill=-1.0, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(first, again)
    for image, original in zip(first, batch, strict=True):
        kept = set(image[image >= 0].tolist())
        # A crop of a 1-pixel padding keeps at least the 3x3 centre of the image.
        assert len(kept) >= 9
        assert kept <= set(original.flatten().tolist())


def test_augmentation_pads_each_channel_with_its_own_fill() -> None:
    batch = torch.full((6, 3, 4, 4), 9.0)
    fill = (-1.0, -2.0, -3.0)
    out = random_crop_flip(batch, padding=2, fill=fill, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    for channel, value in enumerate(fill):
        assert set(out[:, channel].flatten().tolist()) <= {9.0, value}
    assert (out != 9.0).any()  # some crop reached into the padding
    single = random_crop_flip(
        batch, padding=2, fill=(-1.0,), generator=torch.Generator().manual_seed(0)
    )
    scalar = random_crop_flip(
        batch, padding=2, fill=-1.0, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(single, scalar)
    with pytest.raises(ValueError, match="2 fill values for 3-channel"):
        random_crop_flip(batch, padding=1, fill=(0.0, 0.0), generator=torch.Generator())


# --- CIFAR-10 -------------------------------------------------------------------------
# The real batches are Python 2 cPickle files (protocol 2) of dicts whose keys and raw
# pixel bytes are Python 2 str; torchvision reads them with encoding="latin1", the
# CIFAR-10 page's own snippet with encoding="bytes". The pickler below writes that
# format: bytes and str as Python 2 strings, numpy's rebuilder under its numpy 1 name.

_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch is a dict
    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)
    write: Callable[[bytes], object]  # both come from pickle._Pickler, untyped
    memoize: Callable[[object], None]

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = lambda self, obj: self._save_py2_str(obj.encode("latin-1"))

    def save_global(self, obj: object, name: str | None = None) -> None:
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)  # type: ignore[misc]


Split = Literal["train", "test"]
Written = dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]


def _py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _batch_file(
    path: Path, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], title: str
) -> None:
    planar = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # R plane, G, B
    batch = {
        b"batch_label": title.encode(),
        b"labels": [int(label) for label in labels],
        b"data": np.ascontiguousarray(planar),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(images))],
    }
    path.write_bytes(_py2_pickle(batch))


def _fake_cifar10(root: Path, per_batch: int = 16, test: int = 40) -> Written:
    """A CIFAR-10 folder as torchvision extracts it, with random RGB images (N x H x W x C)."""
    rng = np.random.default_rng(7)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [name.encode() for name in CIFAR10_LABELS],
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    images_of: dict[str, list[npt.NDArray[np.uint8]]] = {"train": [], "test": []}
    labels_of: dict[str, list[npt.NDArray[np.int64]]] = {"train": [], "test": []}
    files = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)]
    for name, split, count in [*files, ("test_batch", "test", test)]:
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count).astype(np.int64)
        if name == "data_batch_1":
            images[0] = (255, 0, 0)  # pure red, in RGB
        _batch_file(folder / name, images, labels, name)
        images_of[split].append(images)
        labels_of[split].append(labels)
    return {
        split: (np.concatenate(images_of[split]), np.concatenate(labels_of[split]))
        for split in images_of
    }


@pytest.fixture(scope="module")
def fake_cifar10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Written]:
    root = tmp_path_factory.mktemp("cifar10")
    return root, _fake_cifar10(root)


def test_cifar10_batches_read_back_exactly_in_rgb(
    fake_cifar10: tuple[Path, Written],
) -> None:
    root, written = fake_cifar10
    splits: tuple[tuple[Split, int], ...] = (("train", 80), ("test", 40))
    for split, size in splits:
        data = load_cifar10(root, split)
        images, labels = written[split]
        assert data.images.shape == (size, 32, 32, 3)
        assert data.images.dtype == np.uint8
        assert data.images.flags.writeable
        assert data.images.flags.c_contiguous
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels)
        assert data.labels.dtype == np.int64
        assert data.classes == CIFAR10_LABELS
    red = load_cifar10(root, "train").images[0]
    assert (red == np.array([255, 0, 0], dtype=np.uint8)).all()
    # The batch folder itself works as the root too.
    assert len(load_cifar10(root / "cifar-10-batches-py", "test")) == 40


def test_torchvision_reads_the_cifar10_fake_as_we_do(
    fake_cifar10: tuple[Path, Written], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    # The fake's md5 sums are not the real ones; everything else is torchvision's path.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *_args, **_kwargs: True)
    root, _ = fake_cifar10
    splits: tuple[tuple[bool, Split], ...] = ((True, "train"), (False, "test"))
    for is_train, split in splits:
        theirs = tv_cifar.CIFAR10(str(root), train=is_train, download=False)
        ours = load_cifar10(root, split)
        np.testing.assert_array_equal(theirs.data, ours.images)
        assert theirs.targets == ours.labels.tolist()
        assert tuple(theirs.classes) == ours.classes


def test_missing_cifar10_files_say_to_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data_batch_1.*--download"):
        load_cifar10(tmp_path, "train")
    _fake_cifar10(tmp_path, per_batch=2, test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_4 not found.*--download"):
        load_cifar10(tmp_path, "train")
    assert len(load_cifar10(tmp_path, "test")) == 2  # the test split is whole


def test_a_truncated_cifar10_batch_is_caught(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path, per_batch=2, test=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = path.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(DatasetError, match="data_batch_3 is truncated"):
            load_cifar10(tmp_path, "train")
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetError, match="data_batch_3 is truncated or not a CIFAR-10"):
        load_cifar10(tmp_path, "train")


def test_cifar10_batches_with_wrong_contents_are_refused(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path, per_batch=2, test=2)
    folder = tmp_path / "cifar-10-batches-py"
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    _batch_file(folder / "test_batch", images, np.array([0, 10]), "test")
    with pytest.raises(DatasetError, match=r"labels outside classes 0\.\.9"):
        load_cifar10(tmp_path, "test")
    _batch_file(folder / "test_batch", images, np.array([0]), "test")
    with pytest.raises(DatasetError, match="2 images but labels of shape"):
        load_cifar10(tmp_path, "test")
    grey = {b"data": np.zeros((2, 1024), dtype=np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(_py2_pickle(grey))
    with pytest.raises(DatasetError, match="1024 values per image, not 3072"):
        load_cifar10(tmp_path, "test")
    meta = {b"fine_label_names": [b"apple"]}  # CIFAR-100's
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    with pytest.raises(DatasetError, match="does not name the CIFAR-10 classes"):
        load_cifar10(tmp_path, "test")


class _Planted:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, ...]:
        return (os.mkdir, (str(self.target),))


def test_a_planted_cifar10_batch_cannot_run_code(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path, per_batch=2, test=2)
    marker = tmp_path / "ran"
    batch = {b"data": _Planted(marker), b"labels": [0, 1]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match=r"names posix\.mkdir|names os\.mkdir"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()


def test_the_registry_knows_both_data_sets() -> None:
    cifar = get_dataset("cifar10")
    assert (cifar.channels, cifar.input_size, cifar.classes) == (3, 32, CIFAR10_LABELS)
    assert (cifar.mean, cifar.std) == (CIFAR10_MEAN, CIFAR10_STD)
    assert cifar.black == pytest.approx(
        tuple(-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True))
    )
    fmnist = get_dataset("fashion-mnist")
    assert (fmnist.channels, fmnist.input_size, fmnist.default_root) == (
        1,
        28,
        DEBIAN_FASHION_MNIST,
    )
    assert sorted(DATASETS) == ["cifar10", "fashion-mnist"]
    with pytest.raises(DatasetError, match="known data sets: cifar10, fashion-mnist"):
        get_dataset("mnist")


def test_an_architecture_that_does_not_fit_the_data_set_is_refused(tmp_path: Path) -> None:
    options = TrainOptions(
        dataset="cifar10",
        data_dir=tmp_path,  # never read: the check comes first
        out_dir=tmp_path,
        architecture=EarlyExitConfig(widths=(4, 4, 8, 8)),  # 1-channel 28x28
        epochs=1,
    )
    with pytest.raises(DatasetError, match=r"1-channel 28x28.*in_channels=3, input_size=32"):
        train(options)
    assert not list(tmp_path.iterdir())


def test_train_on_cifar10_end_to_end(fake_cifar10: tuple[Path, Written], tmp_path: Path) -> None:
    root, _ = fake_cifar10
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(root), "--epochs", "1"]
    argv += ["--limit", "64", "--test-limit", "32", "--widths", "4,4,8,8"]
    argv += ["--out", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    manifest = read_manifest(tmp_path / "cifar10_exit_resnet.json")  # the data set's name
    assert manifest.dataset == "cifar10"
    assert manifest.config == EarlyExitConfig(
        in_channels=3, num_classes=10, input_size=32, widths=(4, 4, 8, 8)
    )
    assert manifest.labels == CIFAR10_LABELS
    assert (manifest.mean, manifest.std) == (CIFAR10_MEAN, CIFAR10_STD)
    assert (manifest.train_images, manifest.test_images) == (64, 32)
    assert manifest.command.startswith("camoffload train --dataset cifar10")
    assert json.loads((tmp_path / "cifar10_exit_resnet.json").read_text())["dataset"] == "cifar10"
