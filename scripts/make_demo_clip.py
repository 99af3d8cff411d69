"""Cut the demo's clip from OpenCV's ``vtest.avi``: its first 150 frames, re-encoded.

The clip ships as package data (``camoffload/data/vtest_clip.avi``) so that
``camoffload demo`` works from a clone or a wheel alone; the full 795-frame clip stays
an optional source (Debian's ``opencv-doc``, or OpenCV's ``samples/data``).

    .venv/bin/python scripts/make_demo_clip.py /path/to/vtest.avi

MPEG-4 Part 2 (``mp4v``) in AVI, because every OpenCV build with FFmpeg decodes it
(the PyPI wheels, Debian's and Raspberry Pi OS's python3-opencv); at OpenCV's default
bitrate the 150 frames come to ~2.3 MB at ~37 dB PSNR against the source frames.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np

FRAMES = 150
FPS = 10.0
OUT = Path(__file__).resolve().parents[1] / "camoffload" / "data" / "vtest_clip.avi"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="OpenCV's vtest.avi (768x576, 10 fps)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    capture = cv2.VideoCapture(str(args.source))
    frames = []
    while len(frames) < FRAMES:
        ok, frame = capture.read()
        if not ok:
            sys.exit(f"{args.source}: only {len(frames)} frames, need {FRAMES}")
        frames.append(frame)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    check = cv2.VideoCapture(str(args.out))
    psnr = []
    for frame in frames:
        ok, decoded = check.read()
        if not ok:
            sys.exit(f"{args.out}: decodes only {len(psnr)} of {FRAMES} frames")
        psnr.append(cv2.PSNR(frame, decoded))
    source_sha = hashlib.sha256(args.source.read_bytes()).hexdigest()
    clip_sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"source {args.source} sha256 {source_sha}")
    print(
        f"wrote {args.out}: {FRAMES} frames, {args.out.stat().st_size:,} bytes, "
        f"sha256 {clip_sha}, mean PSNR {float(np.mean(psnr)):.1f} dB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
