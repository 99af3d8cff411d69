"""Fashion-MNIST from local files: Debian's package, torchvision's layout, bad files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.training.augment import random_crop_flip
from pipeline.training.datasets import (
    DEBIAN_FASHION_MNIST,
    DatasetError,
    load_fashion_mnist,
    read_idx,
)

pytestmark = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


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
