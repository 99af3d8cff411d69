"""Training and evaluating the project's own early-exit networks (``camoffload train``)
and the hybrid-models router (``camoffload train-router``) on local data.

The data sets themselves are :mod:`pipeline.datasets`: the edge reads them at run time.
"""

from camoffload.training.evaluate import ExitPredictions, predict_exits
from camoffload.training.trainer import TrainOptions, train

__all__ = ["ExitPredictions", "TrainOptions", "predict_exits", "train"]
