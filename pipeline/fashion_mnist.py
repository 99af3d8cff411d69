"""Fashion-MNIST from its IDX files (LeCun's MNIST format).

Read from the files that Debian's ``dataset-fashion-mnist`` installs
(``/usr/share/datasets/fashion-mnist/``), gzipped or not, or from the layout
torchvision's downloader leaves (``<root>/FashionMNIST/raw/``).
:func:`download_fashion_mnist` is kept for users with internet access; nothing here
reaches the network unless asked to.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import DatasetError
from pipeline.labelled_images import LabelledImages, Split

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_LABELS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "download_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# Per-pixel statistics of the 60,000 training images, scaled to [0, 1].
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

_FILE_STEMS = {"train": "train", "test": "t10k"}
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """An IDX file (LeCun's MNIST format), plain or gzipped, as an array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path} is truncated or padded: {len(raw) - header} data bytes, dims {dims} "
            f"need {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find_idx(root: Path, name: str) -> Path:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    raise DatasetError(
        f"Fashion-MNIST file {name}[.gz] not found under {root}: install the Debian "
        "package dataset-fashion-mnist, or pass --download to fetch it with torchvision"
    )


def load_fashion_mnist(root: Path = DEBIAN_FASHION_MNIST, split: Split = "train") -> LabelledImages:
    stem = _FILE_STEMS[split]
    images = read_idx(_find_idx(root, f"{stem}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(root, f"{stem}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.dtype != np.uint8:
        raise DatasetError(f"Fashion-MNIST {split} files under {root} have unexpected shapes")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_LABELS):
        raise DatasetError(f"Fashion-MNIST {split} labels under {root} go past class 9")
    return LabelledImages(
        np.array(images[..., None]),  # a writable copy: torch refuses read-only buffers
        labels.astype(np.int64),
        FASHION_MNIST_LABELS,
    )


def download_fashion_mnist(root: Path) -> Path:
    """Fetch Fashion-MNIST with torchvision into ``root``; returns the folder to load from.

    Needs internet access. The files land in torchvision's layout, which
    :func:`load_fashion_mnist` reads.
    """
    from torchvision.datasets import FashionMNIST

    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"downloading Fashion-MNIST into {root} failed: {exc}") from exc
    return root
