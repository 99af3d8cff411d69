"""Labelled image sets for training, evaluation and replay, read from local files.

The edge's ``fashion-mnist`` source replays them at run time (``edge_node/sources.py``),
so they live in the shared core; training (:mod:`camoffload.training`) reads them too.

:data:`DATASETS` maps each data set's name (``camoffload train --dataset``) to a
:class:`DatasetInfo`: how to load and download it, its normalisation and its shape. The
readers are :mod:`pipeline.fashion_mnist` (IDX files) and :mod:`pipeline.cifar10`
(python-pickle batches), both returning :class:`~pipeline.labelled_images.LabelledImages`;
their names are re-exported here, so callers import every data set from one place.
Nothing here reaches the network unless a downloader is called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pipeline.cifar10 import (
    CIFAR10_CACHE,
    CIFAR10_LABELS,
    CIFAR10_MEAN,
    CIFAR10_SIZE,
    CIFAR10_STD,
    download_cifar10,
    load_cifar10,
)
from pipeline.errors import DatasetError
from pipeline.fashion_mnist import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_LABELS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    download_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)
from pipeline.labelled_images import LabelledImages, Split

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
    "Split",
    "download_cifar10",
    "download_fashion_mnist",
    "get_dataset",
    "load_cifar10",
    "load_fashion_mnist",
    "read_idx",
]


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
            input_size=CIFAR10_SIZE,
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
