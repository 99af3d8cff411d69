"""``camoffload calibrate MODEL``: measure the cloud model's accuracy against the bytes
it is sent, fit the Gompertz curve, save the calibration beside the weights, plot it.

For each operating point (JPEG quality x resolution scale) every held-out image is
scaled, encoded in the chosen codec, decoded as the worker would, and classified by
the cloud model. ``x`` is the mean payload over the mean bytes of a full JPEG at the
reference quality (what all-or-nothing sends). Even images fit the curve, odd ones
are held out: R^2 on held-out points is measured on images the fit never saw. The
local model's confidence on each image splits them into equal-count bins, each with
its own curve and the local model's accuracy there, for the edge's per-frame choice.

Labels: a labelled data set's own; for a video, the cloud model's answer on the
uncompressed frame (so accuracy means agreement with the full-quality answer).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_node.requests import scaled
from pipeline.calibration import (
    Calibration,
    CalibrationCodec,
    ConfidenceBin,
    FittedCurve,
    OperatingPoint,
    default_calibration_path,
    save_calibration,
)
from pipeline.codecs import (
    Image,
    decode_jpeg,
    decode_jpeg_abbreviated,
    encode_jpeg,
    encode_jpeg_abbreviated,
)
from pipeline.errors import CamoffloadError

__all__ = ["CalibrationData", "add_calibrate_command", "measure", "run_calibrate_command"]

logger = logging.getLogger(__name__)

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
    """Run the sweep with ``classifier`` (a :class:`pipeline.inference.Classifier`)."""
    from pipeline.inference import Classifier

    assert isinstance(classifier, Classifier)
    n = len(data.images)
    if n < 4 * max(1, bins):
        raise CamoffloadError(f"calibration needs at least {4 * max(1, bins)} images, got {n}")
    fit_half = np.arange(n) % 2 == 0
    reference = float(np.mean([len(encode_jpeg(im, reference_quality)) for im in data.images]))
    raw: list[tuple[int, float, float, npt.NDArray[np.bool_]]] = []
    for scale in scales:
        for quality in qualities:
            decoded, sizes = [], []
            for image in data.images:
                out, size = _degrade(image, quality, scale, codec)
                decoded.append(out)
                sizes.append(size)
            labels = [
                p.label
                for start in range(0, n, batch_size)
                for p in classifier.predict(decoded[start : start + batch_size])
            ]
            correct = np.asarray(labels) == data.labels
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


def plot_calibration(calibration: Calibration, path: Path) -> Path:
    """Points (fitting and held-out halves), the fitted curve, and the per-bin curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    front = calibration.frontier
    xmax = max(p.x for p in calibration.points) * 1.05
    grid = np.linspace(0, xmax, 200)
    others = [p for p in calibration.points if not p.frontier]
    left.scatter([p.x for p in front], [p.accuracy for p in front], label="fit half", s=22)
    left.scatter(
        [p.x for p in front],
        [p.accuracy_heldout for p in front],
        marker="x",
        label="held-out half",
        s=28,
    )
    if others:
        left.scatter(
            [p.x for p in others],
            [p.accuracy for p in others],
            marker=".",
            color="grey",
            label="off the frontier",
        )
    c = calibration.curve
    left.plot(
        grid,
        c.curve.evaluate(grid),
        color="black",
        label=f"a={c.curve.a:.3f} b={c.curve.b:.2f} c={c.curve.c:.2f}  "
        f"R²(held-out)={c.r2_heldout:.3f}",
    )
    left.set_xlabel(f"x = bytes / full JPEG q{calibration.reference_quality} bytes")
    left.set_ylabel("cloud accuracy")
    left.set_title(f"{calibration.model}, {calibration.codec}, {calibration.dataset}", fontsize=9)
    left.legend(fontsize=7, loc="lower right")
    for b in calibration.bins:
        line = right.plot(
            grid, b.curve.curve.evaluate(grid), label=f"conf {b.low:.2f}-{b.high:.2f}"
        )
        right.axhline(b.local_accuracy, color=line[0].get_color(), linestyle=":", linewidth=1)
    right.set_xlabel("x")
    right.set_ylabel("cloud accuracy (dotted: local exit)")
    right.set_title("per local-confidence bin", fontsize=9)
    if calibration.bins:
        right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _load_data(args: argparse.Namespace, classifier: object) -> CalibrationData:
    from edge_node import LocalModel, open_source
    from pipeline.inference import Classifier

    assert isinstance(classifier, Classifier)
    source = open_source(args.source)
    images: list[Image] = []
    labels: list[int] = []
    try:
        index = 0
        while len(images) < args.count:
            frame = source.read()
            if frame is None:
                break
            if index >= args.first and (index - args.first) % args.every == 0:
                images.append(frame.image)
                labels.append(-1 if frame.true_label is None else frame.true_label)
            index += 1
    finally:
        source.close()
    if not images:
        raise CamoffloadError(f"no images read from {args.source} (first {args.first})")
    if min(labels) < 0:  # unlabelled: the cloud's answer on the uncompressed frame
        labels = [p.label for p in classifier.predict(images)]
    local = LocalModel(args.local_model, split=args.split) if args.local_model else None
    outputs = [local.classify(image) for image in images] if local else []
    truth = np.asarray(labels, dtype=np.int64)
    return CalibrationData(
        images=images,
        labels=truth,
        local_confidence=np.asarray([o.confidence for o in outputs] or np.ones(len(images))),
        local_correct=np.asarray([o.label for o in outputs]) == truth
        if outputs
        else np.zeros(len(images), dtype=bool),
        description=f"{args.source}[{args.first}::{args.every}] x{len(images)}",
        local_model=args.local_model,
        local_split=local.split if local else None,
    )


def _numbers(kind: type, text: str) -> tuple[float, ...]:
    try:
        return tuple(kind(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from None


def add_calibrate_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit the Gompertz accuracy-vs-bytes curve of a cloud model (needs the eval extra)",
    )
    p.add_argument("model", help="the cloud model, e.g. fmnist_exit_resnet")
    p.add_argument("--source", default="fashion-mnist:test", help="labelled data set or video")
    p.add_argument("--first", type=int, default=6000, help="skip the source's first N frames")
    p.add_argument("--count", type=int, default=4000, help="images to use (half held out)")
    p.add_argument("--every", type=int, default=1, help="take every Nth frame (videos)")
    p.add_argument("--local-model", default=None, help="the edge model whose confidence bins")
    p.add_argument("--split", type=int, default=1, help="its early exit (early-exit models)")
    p.add_argument(
        "--qualities",
        type=lambda t: tuple(int(q) for q in _numbers(int, t)),
        default=DEFAULT_QUALITIES,
    )
    p.add_argument("--scales", type=lambda t: _numbers(float, t), default=(1.0,))
    p.add_argument("--codec", choices=["jpeg", "jpeg-abbrev"], default="jpeg-abbrev")
    p.add_argument("--reference-quality", type=int, default=90, help="x = 1 (all-or-nothing)")
    p.add_argument("--bins", type=int, default=5, help="local-confidence bins (0: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="default: beside the weights")
    p.add_argument("--plot", type=Path, default=None, help="PNG of points and curve")


def run_calibrate_command(args: argparse.Namespace) -> int:
    from pipeline.inference import Classifier

    if args.count < 8 or args.first < 0 or args.every < 1:
        raise CamoffloadError("--count >= 8, --first >= 0 and --every >= 1, please")
    if not all(1 <= q <= 100 for q in args.qualities) or not 1 <= args.reference_quality <= 100:
        raise CamoffloadError("JPEG qualities are 1-100")
    if not all(0 < s <= 1 for s in args.scales):
        raise CamoffloadError("--scales are fractions in (0, 1]")
    classifier = Classifier.by_name(args.model, args.device)
    data = _load_data(args, classifier)
    calibration = measure(
        classifier,
        data,
        qualities=tuple(args.qualities),
        scales=tuple(args.scales),
        codec=args.codec,
        reference_quality=args.reference_quality,
        bins=args.bins,
        command="camoffload " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "calibrate",
    )
    out = save_calibration(calibration, args.out or default_calibration_path(args.model))
    c = calibration.curve
    print(f"calibration: {out}")
    print(
        f"curve: a={c.curve.a:.4f} b={c.curve.b:.3f} c={c.curve.c:.3f}  "
        f"R2 fit {c.r2_fit:.4f}, held-out {c.r2_heldout:.4f} (rmse {c.rmse_heldout:.4f})"
    )
    print("| quality | scale | bytes | x | accuracy (fit) | accuracy (held-out) | frontier |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for p in calibration.points:
        print(
            f"| {p.quality} | {p.scale:g} | {p.bytes:.0f} | {p.x:.3f} | {p.accuracy:.4f} | "
            f"{p.accuracy_heldout:.4f} | {'yes' if p.frontier else ''} |"
        )
    for b in calibration.bins:
        print(
            f"bin {b.low:.3f}-{b.high:.3f}: {b.frames} frames, local {b.local_accuracy:.4f}, "
            f"cloud a={b.curve.curve.a:.4f}, R2 held-out {b.curve.r2_heldout:.3f}"
        )
    if args.plot is not None:
        print(f"plot: {plot_calibration(calibration, args.plot)}")
    return 0
