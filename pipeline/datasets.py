"""Labelled image sets for training, evaluation and replay, read from local files.

The edge's ``fashion-mnist`` source replays them at run time (``edge_node/sources.py``),
so they live in the shared core; training (:mod:`camoffload.training`) reads them too.

Fashion-MNIST is read from the IDX files that Debian's ``dataset-fashion-mnist``
installs (``/usr/share/datasets/fashion-mnist/``), gzipped or not, or from the layout
torchvision's downloader leaves (``<root>/FashionMNIST/raw/``). CIFAR-10 is read from
the python-pickle batches that torchvision's downloader extracts
(``<root>/cifar-10-batches-py/``). The downloaders (:func:`download_fashion_mnist`,
:func:`download_cifar10`) are kept for users with internet access; nothing here reaches
the network unless asked to.

:data:`DATASETS` maps each data set's name (``camoffload train --dataset``) to a
:class:`DatasetInfo`: how to load and download it, its normalisation and its shape.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pipeline.errors import DatasetError

__all__ = [
    "CIFAR10_CACHE",
    "CIFAR10_LABELS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_LABELS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DatasetError",
    "DatasetInfo",
    "LabelledImages",
    "download_cifar10",
    "download_fashion_mnist",
    "get_dataset",
    "load_cifar10",
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

# Where `camoffload train --dataset cifar10` keeps CIFAR-10 unless told otherwise
# (expanded when used, so importing this module never needs a home directory).
CIFAR10_CACHE = Path("~/.cache/camoffload/cifar10")
CIFAR10_LABELS = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# Per-channel (R, G, B) statistics of the 50,000 training images, scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_FOLDER = "cifar-10-batches-py"  # what torchvision's downloader extracts
_CIFAR10_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR10_META = "batches.meta"
_CIFAR10_SIZE = 32

Split = Literal["train", "test"]
_FILE_STEMS = {"train": "train", "test": "t10k"}
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


@dataclass(frozen=True, slots=True)
class LabelledImages:
    images: npt.NDArray[np.uint8]  # N x H x W x C
    labels: npt.NDArray[np.int64]  # N
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise DatasetError(
                f"{len(self.images)} images of shape {self.images.shape[1:]} do not match "
                f"{len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int | None) -> LabelledImages:
        """The first ``count`` examples (all when None): a deterministic subset."""
        if count is None or count >= len(self):
            return self
        return LabelledImages(self.images[:count], self.labels[:count], self.classes)


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


# The only globals a CIFAR-10 batch pickle names: numpy's array and dtype rebuilders
# (under numpy 1's and numpy 2's module names; the real files were written by Python 2
# with numpy 1). Anything else in a file is refused before it is called.
_CIFAR10_PICKLE_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str, /) -> Any:
        if (module, name) in _CIFAR10_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never does")


def _read_cifar10_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR-10 batch (or ``batches.meta``): the pickled dict, keys as ``str``."""
    # The CIFAR-10 python batches exist only as pickles, so pickle reads them: local
    # files the user pointed --data-dir at or fetched with --download, never bytes
    # from a network, and through an unpickler that refuses every global but numpy's
    # array rebuilders, so a planted file cannot run code.
    try:
        with path.open("rb") as handle:
            # encoding="bytes": Python 2 str (the dict keys, the raw pixels) stays bytes.
            data = _BatchUnpickler(handle, encoding="bytes").load()
            trailing = len(handle.read())
    except OSError as exc:
        raise DatasetError(f"cannot read CIFAR-10 file {path}: {exc}") from exc
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as exc:
        raise DatasetError(
            f"CIFAR-10 file {path} is truncated or not a CIFAR-10 python batch ({exc}); "
            "pass --download to fetch it again"
        ) from exc
    if trailing:
        raise DatasetError(f"CIFAR-10 file {path} has {trailing} stray bytes after its data")
    if not isinstance(data, dict):
        raise DatasetError(f"CIFAR-10 file {path} holds a {type(data).__name__}, not a dict")
    return {
        key.decode("latin-1") if isinstance(key, bytes) else str(key): value
        for key, value in data.items()
    }


def _cifar10_folder(root: Path) -> Path:
    """``root/cifar-10-batches-py`` (torchvision's layout) or ``root`` itself."""
    nested = root / CIFAR10_FOLDER
    if not nested.is_dir() and (root / _CIFAR10_META).is_file():
        return root
    return nested


def _cifar10_batch(path: Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    batch = _read_cifar10_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"CIFAR-10 batch {path} has no data or labels (keys: {sorted(batch)})")
    data, labels = batch["data"], batch["labels"]
    pixels = 3 * _CIFAR10_SIZE * _CIFAR10_SIZE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"CIFAR-10 batch {path}: data is not a 2-d uint8 array")
    if data.shape[1] != pixels:
        raise DatasetError(
            f"CIFAR-10 batch {path}: {data.shape[1]} values per image, not {pixels} (3 x 32 x 32)"
        )
    try:
        label_array = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"CIFAR-10 batch {path}: labels are not a list of ints") from exc
    if label_array.ndim != 1 or len(label_array) != len(data):
        raise DatasetError(
            f"CIFAR-10 batch {path}: {len(data)} images but labels of shape {label_array.shape}"
        )
    if label_array.size and (
        not np.issubdtype(label_array.dtype, np.integer)
        or int(label_array.min()) < 0
        or int(label_array.max()) >= len(CIFAR10_LABELS)
    ):
        raise DatasetError(f"CIFAR-10 batch {path}: labels outside classes 0..9")
    # Each row is channel-planar: 1024 red, then 1024 green, then 1024 blue values.
    images = data.reshape(-1, 3, _CIFAR10_SIZE, _CIFAR10_SIZE).transpose(0, 2, 3, 1)
    return images, label_array.astype(np.int64)


def load_cifar10(root: Path = CIFAR10_CACHE, split: Split = "train") -> LabelledImages:
    """CIFAR-10's training (50,000) or test (10,000) images, N x 32 x 32 x 3, in RGB order.

    RGB because that is what the serving path feeds a 3-channel model: it converts the
    camera's BGR frames to RGB (:meth:`pipeline.inference.Classifier.preprocess`).
    ``root`` is the folder torchvision downloaded into (holding ``cifar-10-batches-py``)
    or that batch folder itself.
    """
    folder = _cifar10_folder(root.expanduser())
    names = (*_CIFAR10_BATCHES[split], _CIFAR10_META)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 {split} file(s) {', '.join(missing)} not found in {folder}: pass "
            "--download to fetch CIFAR-10 with torchvision (needs internet), or --data-dir "
            f"to the folder that holds {CIFAR10_FOLDER}"
        )
    meta = _read_cifar10_pickle(folder / _CIFAR10_META)
    names_in_meta = meta.get("label_names")
    label_names = (
        tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names_in_meta)
        if isinstance(names_in_meta, list)
        else None
    )
    if label_names != CIFAR10_LABELS:
        raise DatasetError(
            f"{folder / _CIFAR10_META} does not name the CIFAR-10 classes "
            f"(label_names: {names_in_meta!r})"
        )
    parts = [_cifar10_batch(folder / name) for name in _CIFAR10_BATCHES[split]]
    return LabelledImages(
        # One contiguous, writable copy: torch refuses read-only buffers.
        np.ascontiguousarray(np.concatenate([images for images, _ in parts])),
        np.concatenate([labels for _, labels in parts]),
        CIFAR10_LABELS,
    )


def download_cifar10(root: Path = CIFAR10_CACHE) -> Path:
    """Fetch CIFAR-10 with torchvision into ``root``; returns the folder to load from.

    Needs internet access. torchvision checks the archive's md5 and extracts it to
    ``root/cifar-10-batches-py``, which :func:`load_cifar10` reads.
    """
    from torchvision.datasets import CIFAR10

    root = root.expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        # One archive holds both splits; the test split is the smaller one to load.
        CIFAR10(str(root), train=False, download=True)
    except (OSError, RuntimeError, tarfile.TarError) as exc:
        raise DatasetError(f"downloading CIFAR-10 into {root} failed: {exc}") from exc
    return root


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetInfo:
    """A data set the trainer knows: how to get it, how to feed it, what it holds."""

    name: str  # as on the command line and in weights manifests
    title: str  # for people
    load: Callable[[Path, Split], LabelledImages]
    download: Callable[[Path], Path]
    mean: tuple[float, ...]  # per channel, after scaling to [0, 1]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    channels: int  # 1 = grey, 3 = RGB
    input_size: int  # images are input_size x input_size
    default_root: Path  # where its files are unless --data-dir says otherwise
    model_name: str  # the default file stem of weights trained on it

    def __post_init__(self) -> None:
        if not len(self.mean) == len(self.std) == self.channels:
            raise ValueError(f"{self.name}: need one mean and one std per channel")

    @property
    def black(self) -> tuple[float, ...]:
        """A black pixel after normalisation, per channel: what padding should add."""
        return tuple((0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True))


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "fashion-mnist": DatasetInfo(
            name="fashion-mnist",
            title="Fashion-MNIST",
            load=load_fashion_mnist,
            download=download_fashion_mnist,
            mean=FASHION_MNIST_MEAN,
            std=FASHION_MNIST_STD,
            classes=FASHION_MNIST_LABELS,
            channels=1,
            input_size=28,
            default_root=DEBIAN_FASHION_MNIST,
            model_name="fmnist_exit_resnet",
        ),
        "cifar10": DatasetInfo(
            name="cifar10",
            title="CIFAR-10",
            load=load_cifar10,
            download=download_cifar10,
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            classes=CIFAR10_LABELS,
            channels=3,
            input_size=_CIFAR10_SIZE,
            default_root=CIFAR10_CACHE,
            model_name="cifar10_exit_resnet",
        ),
    }
)


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a known data set; :class:`DatasetError` names them."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown data set {name!r}; known data sets: {', '.join(sorted(DATASETS))}"
        ) from None
