"""Contact sheets of a clip, for counting people by eye.

docs/objects.md compares the tracker's object count on the full vtest.avi with a count
made by looking at the clip. This draws what was looked at: every ``--step``-th frame,
numbered, ``--per-sheet`` frames to a PNG, optionally cropped to ``--crop x,y,w,h`` (to
check a busy border frame by frame)::

    python scripts/contact_sheet.py CLIP.avi --out /tmp/sheets
    python scripts/contact_sheet.py CLIP.avi --out /tmp/right \\
        --first 200 --last 236 --step 3 --crop 440,60,328,360
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]


def _frames(path: Path, first: int, last: int, step: int) -> list[tuple[int, Image]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {path}")
    kept: list[tuple[int, Image]] = []
    index = 0
    while index <= last:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= first and (index - first) % step == 0:
            kept.append((index, np.asarray(frame, dtype=np.uint8)))
        index += 1
    capture.release()
    return kept


def _tile(index: int, frame: Image, crop: tuple[int, int, int, int] | None, width: int) -> Image:
    if crop is not None:
        x, y, w, h = crop
        frame = frame[y : y + h, x : x + w]
    scale = width / frame.shape[1]
    tile = np.asarray(cv2.resize(frame, (width, round(frame.shape[0] * scale))), dtype=np.uint8)
    cv2.putText(tile, str(index), (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 255), 2)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, default=10**9)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--per-sheet", type=int, default=6)
    parser.add_argument("--columns", type=int, default=2)
    parser.add_argument("--width", type=int, default=576, help="pixels per tile")
    parser.add_argument("--crop", help="x,y,w,h in the clip's pixels")
    args = parser.parse_args()
    crop: tuple[int, int, int, int] | None = None
    if args.crop:
        x, y, w, h = (int(v) for v in args.crop.split(","))
        crop = (x, y, w, h)
    tiles = [
        _tile(i, f, crop, args.width)
        for i, f in _frames(args.clip, args.first, args.last, args.step)
    ]
    if not tiles:
        raise SystemExit("no frames in that range")
    args.out.mkdir(parents=True, exist_ok=True)
    blank = np.zeros_like(tiles[0])
    for n, start in enumerate(range(0, len(tiles), args.per_sheet)):
        sheet = tiles[start : start + args.per_sheet]
        sheet += [blank] * (-len(sheet) % args.columns)
        rows = [np.hstack(sheet[r : r + args.columns]) for r in range(0, len(sheet), args.columns)]
        cv2.imwrite(str(args.out / f"sheet_{n:02d}.png"), np.vstack(rows))
    print(f"{len(tiles)} frames on {n + 1} sheets in {args.out}")


if __name__ == "__main__":
    main()
