"""Freezing a model into a TorchScript graph for serving.

Why: a worker's inference thread shares the process with its event loop. An eager
PyTorch forward pass goes back to Python (and so to the GIL) between every layer, so
whenever the loop is busy decoding a bundle of requests the forward pass stalls; a
traced, frozen graph runs start to end in C++ with the GIL released. Freezing also
folds each BatchNorm into the convolution before it and inlines the weights as
constants. On the 2-core box, workers serving fmnist_exit_resnet answered 6-7% more
frames/s with it (`camoffload bench --worker-set worker.frozen=false`, docs/performance.md).

``torch.jit`` is deprecated in favour of ``torch.compile`` / ``torch.export``, which
need a C++ toolchain at run time (a Pi or a slim container may have none); until they
do not, tracing is the portable choice. Any failure to trace falls back to the eager
module, said in the log.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

__all__ = ["frozen_or_eager"]

logger = logging.getLogger(__name__)


def frozen_or_eager(module: nn.Module, example: torch.Tensor, *, what: str) -> nn.Module:
    """``module`` traced on ``example`` and frozen, or ``module`` itself if that fails.

    The traced graph is checked against the eager module on ``example`` before use.
    """
    module = module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the deprecation notice
            with torch.inference_mode():
                traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
                frozen = torch.jit.freeze(traced)
                expected = module(example)
                got = frozen(example)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "serve eager"
        logger.warning("%s: could not freeze the model (%s); serving it eager", what, exc)
        return module
    tolerance = 1e-2 if example.dtype == torch.float16 else 1e-4
    if not torch.allclose(expected.float(), got.float(), atol=tolerance, rtol=tolerance):
        logger.warning("%s: the frozen graph disagrees with the model; serving it eager", what)
        return module
    assert isinstance(frozen, nn.Module)
    return frozen
