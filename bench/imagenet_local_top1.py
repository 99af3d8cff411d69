"""ImageNet top-1 / top-5 of the EfficientNet-Lite models on the few labelled photos on disk.

The images are sample photos that ship with OpenCV's documentation (Debian package
``opencv-doc``); ``tests/data/imagenet_local_labels.csv`` names each one's accepted
ImageNet-1k class indices and why. Missing images are skipped with a note. Each image
goes through :class:`pipeline.inference.Classifier` alone (batch 1, like an edge frame),
so the time per image includes preprocessing. One torch thread by default: on a busy
CPU more threads make the timings swing by tens of times. A dozen images is a smoke
test that weights and preprocessing are right, not an accuracy estimate. Prints Markdown.

    .venv/bin/python bench/imagenet_local_top1.py [--models efficientnet_lite0 ...]
        [--threads 1] [--imagenet-norm]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.inference import Classifier, Prediction
from pipeline.models import get_model_spec

LABELS_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "imagenet_local_labels.csv"
MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# The normalisation of the TensorFlow EfficientNet-Lite reference code
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py:
# MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels), for comparison with the registry's.
# The usual torchvision ImageNet scaling, which the PyTorch port's README suggests; the
# registry uses (pixel - 127) / 128 as the TF originals do. --imagenet-norm compares.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, slots=True)
class LabelledImage:
    path: Path
    accepted: frozenset[int]
    note: str


@dataclass(frozen=True, slots=True)
class ModelRun:
    name: str
    version: str
    predictions: list[Prediction]
    seconds: list[float]

    def top1_hits(self, images: list[LabelledImage]) -> int:
        return sum(p.label in im.accepted for p, im in zip(self.predictions, images, strict=True))

    def top5_hits(self, images: list[LabelledImage]) -> int:
        return sum(
            not im.accepted.isdisjoint(p.topk_labels)
            for p, im in zip(self.predictions, images, strict=True)
        )


def read_labels(csv_path: Path) -> list[LabelledImage]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return [
            LabelledImage(
                path=Path(row["path"]),
                accepted=frozenset(int(i) for i in row["accepted_indices"].split(";")),
                note=row["note"],
            )
            for row in csv.DictReader(handle)
        ]


def load_images(
    labelled: list[LabelledImage],
) -> tuple[list[LabelledImage], list[np.ndarray], list[Path]]:
    """The images that can be read (BGR uint8), their labels, and the paths skipped."""
    kept: list[LabelledImage] = []
    pixels: list[np.ndarray] = []
    missing: list[Path] = []
    for item in labelled:
        image = cv2.imread(str(item.path), cv2.IMREAD_COLOR) if item.path.is_file() else None
        if image is None:
            missing.append(item.path)
            continue
        kept.append(item)
        pixels.append(image)
    return kept, pixels, missing


def run_model(name: str, images: list[np.ndarray], *, imagenet_norm: bool = False) -> ModelRun:
    spec = get_model_spec(name)
    if imagenet_norm:
        spec = dataclasses.replace(spec, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    classifier = Classifier(spec, torch.device("cpu"))
    classifier.predict(images[:1])  # warm-up: first-call allocations are not latency
    predictions: list[Prediction] = []
    seconds: list[float] = []
    for image in images:
        started = time.perf_counter()
        predictions.extend(classifier.predict([image]))
        seconds.append(time.perf_counter() - started)
    return ModelRun(name, spec.version, predictions, seconds)


def _rounded(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=LABELS_CSV)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--imagenet-norm",
        action="store_true",
        help="normalise with torchvision's ImageNet mean/std instead of the spec's (127, 128)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 keeps timings steady on a busy machine, 0 = torch's choice",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    labelled = read_labels(args.csv)
    kept, images, missing = load_images(labelled)
    for path in missing:
        print(f"skipped (missing or unreadable): {path}")
    if not kept:
        print(f"none of the {len(labelled)} images in {args.csv} is here; nothing to measure")
        return
    first = get_model_spec(args.models[0])
    names = first.labels
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if args.imagenet_norm else (first.mean, first.std)
    runs = [run_model(name, images, imagenet_norm=args.imagenet_norm) for name in args.models]

    print(
        f"{len(kept)} of {len(labelled)} labelled images, CPU, batch 1, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
        f"mean {_rounded(mean)}, std {_rounded(std)}\n"
    )
    print("| image | accepted | " + " | ".join(f"{run.name} top-1" for run in runs) + " |")
    print("|---" * (2 + len(runs)) + "|")
    for i, item in enumerate(kept):
        accepted = " / ".join(names[j] for j in sorted(item.accepted))
        cells = []
        for run in runs:
            prediction = run.predictions[i]
            mark = "ok" if prediction.label in item.accepted else "MISS"
            cells.append(f"{names[prediction.label]} ({prediction.topk_scores[0]:.2f}) {mark}")
        print(f"| {item.path.name} | {accepted} | " + " | ".join(cells) + " |")

    print("\n| model | version | input | top-1 | top-5 | ms/image mean | ms/image median |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        height, width = get_model_spec(run.name).input_size
        print(
            f"| {run.name} | {run.version} | {height}x{width} | "
            f"{run.top1_hits(kept)}/{len(kept)} | {run.top5_hits(kept)}/{len(kept)} | "
            f"{1000 * statistics.fmean(run.seconds):.1f} | "
            f"{1000 * statistics.median(run.seconds):.1f} |"
        )


if __name__ == "__main__":
    main()
