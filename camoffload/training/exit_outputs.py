"""An early-exit network's outputs on a labelled set, the router's training data.

For every image the network runs once: exit ``split``'s logits (what the router reads
on the edge) and the final exit's (what the cloud would say). From those, the outcome
of sending each image (:func:`outcomes`):

* ``LOSS`` (0): the edge is right and the cloud wrong;
* ``TIE``  (1): both right, or both wrong;
* ``GAIN`` (2): the edge is wrong and the cloud right (the paper's "hard example the
  cloud can classify").

The outputs on a data set's split are cached (``~/.cache/camoffload/router/``, keyed by
the weights' sha256), so retraining the router takes seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from camoffload.training.evaluate import normalised_batch
from pipeline.datasets import Split, get_dataset
from pipeline.errors import ModelError
from pipeline.models.early_exit import EarlyExitResNet
from pipeline.models.router import GAIN, LOSS, TIE
from pipeline.models.weights import WeightsManifest, load_early_exit

__all__ = [
    "DEFAULT_CACHE",
    "ExitOutputs",
    "cached_exit_outputs",
    "compute_exit_outputs",
    "outcomes",
]

# The router's logger: these progress lines keep the name they were logged under.
logger = logging.getLogger("camoffload.training.router")

DEFAULT_CACHE = Path("~/.cache/camoffload/router")
_BATCH = 500


@dataclass(frozen=True, slots=True)
class ExitOutputs:
    """An early-exit network's outputs on a labelled set: one row per image."""

    exit_logits: npt.NDArray[np.float32]  # N x C, the edge's exit
    final_logits: npt.NDArray[np.float32]  # N x C, the cloud's final exit
    labels: npt.NDArray[np.int64]  # N

    def __post_init__(self) -> None:
        if not len(self.exit_logits) == len(self.final_logits) == len(self.labels):
            raise ValueError("exit logits, final logits and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def edge_right(self) -> npt.NDArray[np.bool_]:
        right: npt.NDArray[np.bool_] = self.exit_logits.argmax(axis=1) == self.labels
        return right

    @property
    def cloud_right(self) -> npt.NDArray[np.bool_]:
        right: npt.NDArray[np.bool_] = self.final_logits.argmax(axis=1) == self.labels
        return right

    def take(self, index: npt.NDArray[np.int64]) -> ExitOutputs:
        return ExitOutputs(self.exit_logits[index], self.final_logits[index], self.labels[index])


def compute_exit_outputs(
    network: EarlyExitResNet,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    *,
    split: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> ExitOutputs:
    """Exit ``split``'s and the final exit's logits for every image (N x H x W x C)."""
    network.check_split(split)
    if split < 1:
        raise ModelError("the router reads an exit: split must be >= 1")
    edge, cloud = network.edge_part(split).eval(), network.cloud_part(split).eval()
    exit_rows, final_rows = [], []
    with torch.inference_mode():
        for start in range(0, len(images), _BATCH):
            batch = normalised_batch(images[start : start + _BATCH], mean, std)
            out = edge(batch)
            assert out.logits is not None  # split >= 1
            exit_rows.append(out.logits.float().numpy())
            final_rows.append(cloud(out.activation).float().numpy())
    return ExitOutputs(
        np.concatenate(exit_rows).astype(np.float32),
        np.concatenate(final_rows).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
    )


def cached_exit_outputs(
    model: str,
    split: int,
    data_split: Split,
    *,
    cache_dir: Path | None = DEFAULT_CACHE,
    models_dir: Path | None = None,
) -> tuple[ExitOutputs, WeightsManifest]:
    """:func:`compute_exit_outputs` on a data set's split, cached by the weights' sha256."""
    network, manifest = load_early_exit(model, models_dir=models_dir)
    cache = None
    if cache_dir is not None:
        cache = cache_dir.expanduser() / f"{manifest.version}-exit{split}-{data_split}.npz"
        if cache.is_file():
            with np.load(cache) as stored:
                return ExitOutputs(stored["exit"], stored["final"], stored["labels"]), manifest
    data = get_dataset(manifest.dataset).load(
        get_dataset(manifest.dataset).default_root, data_split
    )
    started = time.monotonic()
    outputs = compute_exit_outputs(
        network, data.images, data.labels, split=split, mean=manifest.mean, std=manifest.std
    )
    logger.info(
        "%s: exit %d and final outputs on %d %s images in %.0f s",
        model,
        split,
        len(outputs),
        data_split,
        time.monotonic() - started,
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, exit=outputs.exit_logits, final=outputs.final_logits, labels=outputs.labels)
        tmp.replace(cache)
    return outputs, manifest


def outcomes(outputs: ExitOutputs) -> npt.NDArray[np.int64]:
    """What sending each image does: ``LOSS`` (0), ``TIE`` (1) or ``GAIN`` (2)."""
    edge, cloud = outputs.edge_right, outputs.cloud_right
    result = np.full(len(outputs), TIE, dtype=np.int64)
    result[edge & ~cloud] = LOSS
    result[~edge & cloud] = GAIN
    return result
