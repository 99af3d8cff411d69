"""``camoffload calibrate MODEL``: measure the cloud model's accuracy against the bytes
it is sent, fit the Gompertz curve, save the calibration beside the weights, plot it.

The sweep and the fit are :mod:`camoffload.calibration_sweep`, the plot
:mod:`camoffload.calibration_plot`; this module reads the images, runs them and prints
the result.

Labels: a labelled data set's own; for a video, the cloud model's answer on the
uncompressed frame (so accuracy means agreement with the full-quality answer).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from camoffload.calibration_plot import plot_calibration
from camoffload.calibration_sweep import DEFAULT_QUALITIES, CalibrationData, measure
from pipeline.calibration import default_calibration_path, save_calibration
from pipeline.codecs import Image
from pipeline.errors import CamoffloadError

# CalibrationData and measure are re-exported: they were first defined here.
__all__ = ["CalibrationData", "add_calibrate_command", "measure", "run_calibrate_command"]


def _load_data(args: argparse.Namespace, classifier: object) -> CalibrationData:
    from edge_node import LocalModel, open_source
    from pipeline.inference import Classifier

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
    if min(labels) < 0 and isinstance(classifier, Classifier):
        # Unlabelled: the cloud's answer on the uncompressed frame. (A detector's
        # reference is its own detections there: see calibration_sweep.)
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
    from pipeline.detection import Detector, is_detector
    from pipeline.inference import Classifier

    if args.count < 8 or args.first < 0 or args.every < 1:
        raise CamoffloadError("--count >= 8, --first >= 0 and --every >= 1, please")
    if not all(1 <= q <= 100 for q in args.qualities) or not 1 <= args.reference_quality <= 100:
        raise CamoffloadError("JPEG qualities are 1-100")
    if not all(0 < s <= 1 for s in args.scales):
        raise CamoffloadError("--scales are fractions in (0, 1]")
    model: Classifier | Detector
    if is_detector(args.model):
        if args.local_model is not None or args.bins:
            raise CamoffloadError(
                "a detector's calibration has no local-confidence bins: --bins 0, no "
                "--local-model (the edge's detection policy decides what to send)"
            )
        model = Detector.by_name(args.model, min_score=0.35, device=args.device)
    else:
        model = Classifier.by_name(args.model, args.device)
    data = _load_data(args, model)
    calibration = measure(
        model,
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
