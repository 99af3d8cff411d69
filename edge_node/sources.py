"""Capture sources behind one interface: video file, image folder, camera, stream URL.

``read()`` blocks (OpenCV does); the edge calls it from a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.codecs import Image
from pipeline.errors import SourceError

__all__ = ["CapturedFrame", "FrameSource", "ImageFolderSource", "VideoSource", "open_source"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    image: npt.NDArray[np.uint8]  # HxWx3 BGR
    capture_ts: float  # Unix time at capture
    index: int  # position in the source
    true_label: int | None = None  # known for labelled data sets


class FrameSource(Protocol):
    name: str
    fps: float | None  # the source's own rate, when it has one
    live: bool  # a camera or stream: frames are lost if not read in time

    def read(self) -> CapturedFrame | None:
        """The next frame, or ``None`` at the end of the source."""

    def close(self) -> None: ...


class VideoSource:
    """A video file, a camera index (``0``) or an RTSP/HTTP stream URL, via OpenCV."""

    def __init__(self, spec: str | int) -> None:
        self.name = str(spec)
        self.live = isinstance(spec, int) or "://" in str(spec)
        if isinstance(spec, str) and not self.live and not Path(spec).is_file():
            raise SourceError(f"video file {spec!r} does not exist")
        self._cap = cv2.VideoCapture(spec)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video source {self.name!r}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if fps > 0 else None
        self._index = 0

    def read(self) -> CapturedFrame | None:
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        frame = CapturedFrame(image=cast(Image, image), capture_ts=time.time(), index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """Every image file in a folder, in name order; unreadable files are skipped and logged."""

    def __init__(self, folder: str | Path) -> None:
        self.name = str(folder)
        self.fps: float | None = None
        self.live = False
        root = Path(folder)
        if not root.is_dir():
            raise SourceError(f"image folder {self.name!r} does not exist")
        self._paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(
                f"image folder {self.name!r} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self._next = 0
        self._index = 0
        self.skipped = 0

    def read(self) -> CapturedFrame | None:
        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped += 1
                logger.warning("skipping unreadable image %s", path)
                continue
            frame = CapturedFrame(
                image=cast(Image, image), capture_ts=time.time(), index=self._index
            )
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._next = len(self._paths)


def open_source(spec: str) -> FrameSource:
    """``0``/``1``...: camera; ``rtsp://``/``http://``: stream; a folder; else a video file."""
    if spec.isdigit():
        return VideoSource(int(spec))
    if Path(spec).is_dir():
        return ImageFolderSource(spec)
    return VideoSource(spec)
