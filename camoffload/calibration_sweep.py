"""The calibration sweep: the cloud model's accuracy against the bytes it is sent, and
the Gompertz curves fitted to it (``camoffload calibrate``).

For each operating point (JPEG quality x resolution scale) every held-out image is
scaled, encoded in the chosen codec, decoded as the worker would, and classified by
the cloud model. ``x`` is the mean payload over the mean bytes of a full JPEG at the
reference quality (what all-or-nothing sends). Even images fit the curve, odd ones
are held out: R^2 on held-out points is measured on images the fit never saw. The
local model's confidence on each image splits them into equal-count bins, each with
its own curve and the local model's accuracy there, for the edge's per-frame choice.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_node.requests import scaled
from pipeline.calibration import (
    Calibration,
    CalibrationCodec,
    ConfidenceBin,
    FittedCurve,
    OperatingPoint,
)
from pipeline.codecs import (
    Image,
    decode_jpeg,
    decode_jpeg_abbreviated,
    encode_jpeg,
    encode_jpeg_abbreviated,
)
from pipeline.errors import CamoffloadError

__all__ = ["DEFAULT_QUALITIES", "CalibrationData", "measure"]

# The command's logger, so the sweep's progress lines keep the name they were logged under.
logger = logging.getLogger("camoffload.calibrate_commands")

DEFAULT_QUALITIES = (1, 3, 5, 8, 12, 17, 25, 35, 50, 65, 80, 90, 95, 100)


@dataclass(frozen=True, slots=True)
class CalibrationData:
    """Images with their labels and the local model's confidence and correctness."""

    images: list[Image]
    labels: npt.NDArray[np.int64]
    local_confidence: npt.NDArray[np.float64]
    local_correct: npt.NDArray[np.bool_]
    description: str
    local_model: str | None = None
    local_split: int | None = None  # the early exit that answered; None: a whole model


def _degrade(
    image: Image, quality: int, scale: float, codec: CalibrationCodec
) -> tuple[Image, int]:
    """What the worker decodes from ``image`` sent at (quality, scale), and its bytes."""
    small = scaled(image, scale)
    shape = small.shape if small.ndim == 3 else (*small.shape, 1)
    h, w, c = (int(v) for v in shape)
    if codec == "jpeg-abbrev":
        data = encode_jpeg_abbreviated(small, quality)
        return decode_jpeg_abbreviated(data, quality, expected_shape=(h, w, c)), len(data)
    data = encode_jpeg(small, quality)
    return decode_jpeg(data, expected_shape=(h, w, c)), len(data)


def _fit(xs: list[float], fit_acc: list[float], held_acc: list[float]) -> FittedCurve:
    from camoffload.gompertz_fit import fit_gompertz, r_squared

    fit = fit_gompertz(xs, fit_acc)
    predicted = fit.curve.evaluate(xs).tolist()
    residuals = np.asarray(held_acc) - np.asarray(predicted)
    return FittedCurve(
        curve=fit.curve,
        r2_fit=fit.r2,
        r2_heldout=r_squared(held_acc, predicted),
        rmse_heldout=float(np.sqrt(np.mean(residuals**2))),
    )


# Per image, how right the model is on a degraded batch (0..1): (index of the batch's
# first image, the batch) -> one score per image.
Scorer = Callable[[int, list[Image]], "npt.NDArray[np.float64]"]


def _scorer(model: object, data: CalibrationData) -> Scorer:
    from pipeline.detection import Detector, agreement
    from pipeline.inference import Classifier

    if isinstance(model, Detector):
        reference = model.detect(data.images)

        def agree(start: int, images: list[Image]) -> npt.NDArray[np.float64]:
            found = model.detect(images)
            mine = reference[start : start + len(images)]
            return np.asarray([agreement(f, r) for f, r in zip(found, mine, strict=True)])

        return agree
    assert isinstance(model, Classifier)

    def right(start: int, images: list[Image]) -> npt.NDArray[np.float64]:
        labels = np.asarray([p.label for p in model.predict(images)])
        right: npt.NDArray[np.float64] = (
            labels == data.labels[start : start + len(images)]
        ).astype(np.float64)
        return right

    return right


def measure(
    classifier: object,
    data: CalibrationData,
    *,
    qualities: tuple[int, ...] = DEFAULT_QUALITIES,
    scales: tuple[float, ...] = (1.0,),
    codec: CalibrationCodec = "jpeg-abbrev",
    reference_quality: int = 90,
    bins: int = 5,
    command: str = "",
    batch_size: int = 256,
) -> Calibration:
    """Run the sweep with ``classifier`` (a :class:`pipeline.inference.Classifier`) or a
    detector (a :class:`pipeline.detection.Detector`). A classifier's accuracy is its
    top-1 against the labels; a detector's is its agreement (detection F1, IoU >= 0.5)
    with its own answer on the undegraded frame: the reference the video-analytics
    literature uses (DDS, AccMPEG)."""
    from pipeline.detection import Detector
    from pipeline.inference import Classifier

    assert isinstance(classifier, Classifier | Detector)
    score = _scorer(classifier, data)
    n = len(data.images)
    if n < 4 * max(1, bins):
        raise CamoffloadError(f"calibration needs at least {4 * max(1, bins)} images, got {n}")
    fit_half = np.arange(n) % 2 == 0
    reference = float(np.mean([len(encode_jpeg(im, reference_quality)) for im in data.images]))
    raw: list[tuple[int, float, float, npt.NDArray[np.float64]]] = []
    for scale in scales:
        for quality in qualities:
            decoded, sizes = [], []
            for image in data.images:
                out, size = _degrade(image, quality, scale, codec)
                decoded.append(out)
                sizes.append(size)
            correct = np.concatenate(
                [
                    score(start, decoded[start : start + batch_size])
                    for start in range(0, n, batch_size)
                ]
            )
            raw.append((quality, scale, float(np.mean(sizes)), correct))
            logger.info(
                "q%d scale %.2f: %.0f bytes, accuracy %.4f",
                quality,
                scale,
                np.mean(sizes),
                correct.mean(),
            )
    # Pareto frontier on the fitting half: fewest bytes first, keep strict improvements.
    best, frontier = -1.0, set()
    for i in sorted(range(len(raw)), key=lambda i: raw[i][2]):
        accuracy = float(raw[i][3][fit_half].mean())
        if accuracy > best:
            best = accuracy
            frontier.add(i)
    points = tuple(
        OperatingPoint(
            quality=q,
            scale=s,
            bytes=b,
            x=b / reference,
            accuracy=float(c[fit_half].mean()),
            accuracy_heldout=float(c[~fit_half].mean()),
            frontier=i in frontier,
        )
        for i, (q, s, b, c) in enumerate(raw)
    )
    on = sorted(frontier, key=lambda i: raw[i][2])
    xs = [raw[i][2] / reference for i in on]

    def curve_for(mask: npt.NDArray[np.bool_]) -> FittedCurve:
        return _fit(
            xs,
            [float(raw[i][3][mask & fit_half].mean()) for i in on],
            [float(raw[i][3][mask & ~fit_half].mean()) for i in on],
        )

    everything = np.ones(n, dtype=bool)
    confidence_bins: list[ConfidenceBin] = []
    if bins > 0 and len(on) >= 3:
        edges = np.quantile(data.local_confidence, np.linspace(0, 1, bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        for lo, hi in itertools.pairwise(edges):
            last = hi >= 1.0
            mask = (data.local_confidence >= lo) & (
                (data.local_confidence <= hi) if last else (data.local_confidence < hi)
            )
            if (mask & fit_half).sum() < 2 or (mask & ~fit_half).sum() < 2 or lo >= hi:
                continue
            confidence_bins.append(
                ConfidenceBin(
                    low=round(float(lo), 6),
                    high=round(float(hi), 6),
                    frames=int(mask.sum()),
                    local_accuracy=float(data.local_correct[mask & fit_half].mean()),
                    curve=curve_for(mask),
                )
            )
    spec = classifier.spec
    return Calibration(
        model=spec.name,
        model_version=spec.version,
        codec=codec,
        reference_quality=reference_quality,
        reference_bytes=reference,
        local_model=data.local_model,
        local_split=data.local_split,
        dataset=data.description,
        images_fit=int(fit_half.sum()),
        images_heldout=int((~fit_half).sum()),
        command=command,
        points=points,
        curve=curve_for(everything),
        bins=tuple(confidence_bins),
    )
