"""Training and evaluating the project's own early-exit networks on local data."""

from pipeline.training.datasets import DatasetError, LabelledImages, load_fashion_mnist
from pipeline.training.evaluate import ExitPredictions, predict_exits
from pipeline.training.trainer import TrainOptions, train

__all__ = [
    "DatasetError",
    "ExitPredictions",
    "LabelledImages",
    "TrainOptions",
    "load_fashion_mnist",
    "predict_exits",
    "train",
]
