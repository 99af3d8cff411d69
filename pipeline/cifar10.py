"""CIFAR-10 from the python-pickle batches that torchvision's downloader extracts
(``<root>/cifar-10-batches-py/``).

The batches exist only as pickles, so they are read through an unpickler that refuses
every global but numpy's array rebuilders. :func:`download_cifar10` is kept for users
with internet access; nothing here reaches the network unless asked to.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import DatasetError
from pipeline.labelled_images import LabelledImages, Split

__all__ = [
    "CIFAR10_CACHE",
    "CIFAR10_FOLDER",
    "CIFAR10_LABELS",
    "CIFAR10_MEAN",
    "CIFAR10_SIZE",
    "CIFAR10_STD",
    "download_cifar10",
    "load_cifar10",
]

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
CIFAR10_SIZE = 32


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
    pixels = 3 * CIFAR10_SIZE * CIFAR10_SIZE
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
    images = data.reshape(-1, 3, CIFAR10_SIZE, CIFAR10_SIZE).transpose(0, 2, 3, 1)
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
