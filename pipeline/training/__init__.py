"""Training and evaluating the project's own early-exit networks on local data."""

from pipeline.training.datasets import (
    DATASETS,
    DatasetError,
    DatasetInfo,
    LabelledImages,
    get_dataset,
    load_cifar10,
    load_fashion_mnist,
)
from pipeline.training.evaluate import ExitPredictions, predict_exits
from pipeline.training.trainer import TrainOptions, train

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "ExitPredictions",
    "LabelledImages",
    "TrainOptions",
    "get_dataset",
    "load_cifar10",
    "load_fashion_mnist",
    "predict_exits",
    "train",
]
