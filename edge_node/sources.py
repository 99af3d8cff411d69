"""Capture sources behind one interface: video file, image folder, camera, stream URL,
and a labelled data set (for measuring accuracy end to end).

``read()`` blocks (OpenCV does); the edge calls it from a thread. The promise to the
edge is a clear :class:`SourceError` or a clean end (``read()`` returns ``None``),
never a hang: a file that is not a video fails to open; a truncated video opens (its
header still claims every frame) and ends cleanly where the data stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.codecs import Image
from pipeline.datasets import DEBIAN_FASHION_MNIST, load_fashion_mnist
from pipeline.errors import DatasetError, SourceError

__all__ = [
    "DATASET_SOURCE_FORMS",
    "CapturedFrame",
    "DatasetSource",
    "FrameSource",
    "ImageFolderSource",
    "VideoSource",
    "open_source",
    "skip_frames",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_DATASET_NAMES = ("fashion-mnist",)
_DATASET_SPLITS: dict[str, Literal["train", "test"]] = {"test": "test", "train": "train"}
DATASET_SOURCE_FORMS = (
    "fashion-mnist, fashion-mnist:test, fashion-mnist:train, or with a limit of N images "
    "fashion-mnist:<split>:<N> (e.g. fashion-mnist:test:500)"
)


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


@contextmanager
def _opencv_errors(what: str) -> Iterator[None]:
    """OpenCV's own exception, as ours."""
    try:
        yield
    except cv2.error as exc:
        detail = " ".join(str(exc).split())  # OpenCV's messages span lines
        raise SourceError(f"{what}: OpenCV failed: {detail}") from exc


class VideoSource:
    """A video file, a camera index (``0``) or an RTSP/HTTP stream URL, via OpenCV."""

    def __init__(self, spec: str | int) -> None:
        self.name = str(spec)
        self.live = isinstance(spec, int) or "://" in str(spec)
        if isinstance(spec, str) and not self.live and not Path(spec).is_file():
            raise SourceError(f"video file {spec!r} does not exist")
        with _opencv_errors(f"cannot open video source {self.name!r}"):
            self._cap = cv2.VideoCapture(spec)
            opened = self._cap.isOpened()
            fps = float(self._cap.get(cv2.CAP_PROP_FPS)) if opened else 0.0
        if not opened:
            # Random bytes, a file cut inside its header, an unknown codec all land here.
            raise SourceError(f"cannot open video source {self.name!r}")
        self.fps = fps if fps > 0 else None
        self._index = 0
        count = 0 if self.live else int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._frame_count = max(0, count)

    def __length_hint__(self) -> int:
        """Frames left, from the container's header (0: unknown, or live). A progress
        bar's estimate only: a truncated file ends sooner."""
        return max(0, self._frame_count - self._index)

    def read(self) -> CapturedFrame | None:
        # A truncated file reads up to where its data stops, then ok is False: the end.
        with _opencv_errors(f"cannot read video source {self.name!r}"):
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

    def __length_hint__(self) -> int:
        """Images left (unreadable ones are skipped, so maybe fewer frames)."""
        return len(self._paths) - self._next

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


class DatasetSource:
    """A labelled data set's images as frames, each with its ``true_label``.

    Frames are HxWx1 grey uint8. The split is held in memory as the loader's array
    (Fashion-MNIST test: 10,000 x 28 x 28, 7.8 MB) and each frame's image is a read-only
    view into it, not a copy: read-only so that a consumer drawing on a frame fails
    loudly instead of corrupting the data set.
    """

    def __init__(
        self,
        name: str = "fashion-mnist",
        split: str = "test",
        limit: int | None = None,
        root: Path = DEBIAN_FASHION_MNIST,
    ) -> None:
        if name not in _DATASET_NAMES:
            raise SourceError(f"unknown data set {name!r}; accepted: {DATASET_SOURCE_FORMS}")
        if split not in _DATASET_SPLITS:
            raise SourceError(
                f"unknown split {split!r} of {name}; accepted: {DATASET_SOURCE_FORMS}"
            )
        if limit is not None and limit < 1:
            raise SourceError(f"data set limit {limit} must be at least 1")
        self.name = f"{name}:{split}" + ("" if limit is None else f":{limit}")
        self.fps: float | None = None
        self.live = False
        if not root.is_dir():
            raise SourceError(
                f"data set {name} not found: {root} does not exist; install it with "
                "`apt-get install dataset-fashion-mnist`"
            )
        try:
            data = load_fashion_mnist(root, _DATASET_SPLITS[split])
        except DatasetError as exc:
            raise SourceError(f"cannot load data set {self.name} from {root}: {exc}") from exc
        images, labels = data.images, data.labels
        if limit is not None and limit < len(labels):
            # Copies so the rest of the split (47 MB for train) can be freed.
            images, labels = images[:limit].copy(), labels[:limit].copy()
        images.flags.writeable = False
        self._images = images
        self._labels = labels
        self.classes = data.classes
        self._next = 0

    def __len__(self) -> int:
        return len(self._labels)

    def read(self) -> CapturedFrame | None:
        index = self._next
        if index >= len(self._labels):
            return None
        self._next += 1
        return CapturedFrame(
            image=self._images[index],
            capture_ts=time.time(),
            index=index,
            true_label=int(self._labels[index]),
        )

    def close(self) -> None:
        self._next = len(self._labels)


def _dataset_spec(spec: str) -> tuple[str, str, int | None] | None:
    """``(name, split, limit)`` if ``spec`` names a data set, ``None`` if it is a path.

    A spec with a colon that is neither a known data set nor an existing path is
    refused here, so a typo in a data-set name says so rather than "no such video".
    """
    if "://" in spec or "/" in spec or "\\" in spec:
        return None
    name, colon, rest = spec.partition(":")
    name = name.lower()
    if name not in _DATASET_NAMES:
        if not colon or Path(spec).exists():
            return None
        raise SourceError(
            f"{spec!r} is neither a file nor a known data set ({name!r} is unknown); "
            f"accepted data sets: {DATASET_SOURCE_FORMS}"
        )
    parts = rest.split(":") if colon else ["test"]
    if len(parts) > 2:
        raise SourceError(
            f"data set source {spec!r} has too many parts; accepted: {DATASET_SOURCE_FORMS}"
        )
    split = parts[0]
    if split not in _DATASET_SPLITS:
        raise SourceError(f"unknown split {split!r} in {spec!r}; accepted: {DATASET_SOURCE_FORMS}")
    if len(parts) == 1:
        return name, split, None
    if not (parts[1].isascii() and parts[1].isdigit()) or int(parts[1]) < 1:
        raise SourceError(
            f"data set limit {parts[1]!r} in {spec!r} is not a positive whole number; "
            f"accepted: {DATASET_SOURCE_FORMS}"
        )
    return name, split, int(parts[1])


def skip_frames(source: FrameSource, count: int) -> None:
    """Read and drop the first ``count`` frames (blocking), so a replay starts later in a
    recording; :class:`SourceError` if it ends before."""
    for skipped in range(count):
        if source.read() is None:
            raise SourceError(f"{source.name}: ended after {skipped} frames, before frame {count}")


def open_source(spec: str) -> FrameSource:
    """``0``/``1``...: camera; ``rtsp://``/``http://``: stream; ``fashion-mnist[:split[:N]]``:
    a labelled data set; a folder; else a video file.

    A data-set name wins over a folder of the same name: write ``./fashion-mnist`` for
    the folder.
    """
    if spec.isdigit():
        return VideoSource(int(spec))
    dataset = _dataset_spec(spec)
    if dataset is not None:
        name, split, limit = dataset
        return DatasetSource(name, split, limit)
    if Path(spec).is_dir():
        return ImageFolderSource(spec)
    return VideoSource(spec)
