"""The shipped detectors on the shipped clip: time per frame and what each finds.

Both run on onnxruntime, one image at a time, with the thread counts given (the
edge's detector on a Pi-like single thread by default). Prints Markdown: per detector,
p50 / p95 milliseconds a frame, and people found per frame (score >= 0.35; the
edge's sure people, >= 0.7, too).

    .venv/bin/python bench/detectors.py [--frames 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from camoffload.demo import default_video
from edge_node import VideoSource
from pipeline.detection import Detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    source = VideoSource(str(default_video()))
    images = []
    while len(images) < args.frames and (frame := source.read()) is not None:
        images.append(frame.image)
    source.close()
    print(f"{len(images)} frames of the shipped clip, {args.threads} onnxruntime thread(s)\n")
    print("| detector | p50 ms | p95 ms | people a frame (>= 0.35) | sure people (>= 0.7) |")
    print("|---|---:|---:|---:|---:|")
    for name in ("ssdlite_person", "nanodet_coco"):
        detector = Detector.by_name(name, min_score=0.2, threads=args.threads)
        detector.detect_one(images[0])  # the first run allocates; not a frame's cost
        times, people, sure = [], [], []
        for image in images:
            started = time.perf_counter()
            found = detector.detect_one(image)
            times.append((time.perf_counter() - started) * 1000)
            people.append(sum(1 for d in found if d.name == "person" and d.score >= 0.35))
            sure.append(sum(1 for d in found if d.name == "person" and d.score >= 0.7))
        p95 = statistics.quantiles(times, n=20)[-1]
        print(
            f"| {name} | {statistics.median(times):.1f} | {p95:.1f} | "
            f"{statistics.mean(people):.2f} | {statistics.mean(sure):.2f} |"
        )


if __name__ == "__main__":
    main()
