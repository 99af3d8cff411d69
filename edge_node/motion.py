"""A cheap motion gate: static frames are decided ``skipped`` without running a model.

Security cameras mostly watch empty scenes, so the edge asks this gate first. Each frame
is shrunk to a small grey image, blurred, and compared with a running background (an
exponential average, ``cv2.accumulateWeighted``); a pixel changed if it differs from the
background by more than ``pixel_delta`` grey levels, and the frame is moving if the
changed share of the watched area passes ``threshold``.

Per-frame cost on a 768x576 BGR frame of vtest.avi at the default width of 160, measured
with ``timeit`` (best of 7 runs of 1,000 frames) on the project's 2-core shared
development box: about 0.1 ms (97 us; 133 us with a mask; 49 us for a grey frame). Not
yet measured on a Raspberry Pi. Memory: five working-size arrays made once per frame
size (160x120: 19 KB each, 58 KB in colour) and the float32 background (77 KB).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.errors import ConfigError

__all__ = ["MotionGate", "MotionResult", "load_mask", "parse_polygon"]

# 5x5 at the working width (160 px: a person is 10-20 px wide there) averages away sensor
# noise and JPEG blocking without erasing the things worth waking a model for.
_BLUR_KERNEL = (5, 5)
_POLYGON_CHARS = re.compile(r"[0-9eE.,;|+\-\s]+")


@dataclass(frozen=True, slots=True)
class MotionResult:
    moving: bool
    changed_fraction: float  # share of the watched area that changed; 1.0 on a first frame


class MotionGate:
    """Frame differencing against a running background, at a small working size.

    ``check`` takes HxWx3 BGR or HxW / HxWx1 grey uint8 frames of any size. The first
    frame, and the first after the frame size changes or :meth:`reset`, has nothing to
    compare with and counts as moving. ``mask`` (any size; non-zero = watched) is
    resized to the working size. Not thread-safe: one gate per source.
    """

    def __init__(
        self,
        threshold: float = 0.01,
        pixel_delta: int = 25,
        mask: npt.NDArray[np.generic] | None = None,
        width: int = 160,
        background_alpha: float = 0.05,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"motion threshold {threshold} must be in [0, 1]")
        if not 0 <= pixel_delta < 255:
            raise ConfigError(f"motion pixel_delta {pixel_delta} must be in 0..254")
        if width < 8:
            raise ConfigError(f"motion working width {width} must be at least 8 pixels")
        if not 0.0 < background_alpha <= 1.0:
            raise ConfigError(f"motion background_alpha {background_alpha} must be in (0, 1]")
        if mask is not None:
            mask = _as_2d(mask, "motion mask")
            if not np.any(mask):
                raise ConfigError("motion mask watches nothing (it has no non-zero pixels)")
        self.threshold = threshold
        self.pixel_delta = pixel_delta
        self.width = width
        self.background_alpha = background_alpha
        self._mask_source = mask
        self._frame_shape: tuple[int, int] | None = None  # (H, W) the buffers were made for
        self._background: npt.NDArray[np.float32] | None = None

    def reset(self) -> None:
        """Forget the background (e.g. after the camera reconnects or moves)."""
        self._background = None

    def check(self, image: npt.NDArray[np.generic]) -> MotionResult:
        # Typed loosely (cv2's results are unions of dtypes); the dtype is checked here.
        if image.dtype != np.uint8:
            raise ValueError(f"motion gate needs uint8 frames, not {image.dtype}")
        frame = cast(npt.NDArray[np.uint8], image)
        grey_input = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)
        if not grey_input and not (image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(f"motion gate needs HxW, HxWx1 or HxWx3 frames, not {image.shape}")
        height, width = image.shape[:2]
        if (height, width) != self._frame_shape:
            self._allocate(height, width)
        small = (self._working_w, self._working_h)
        # INTER_LINEAR, not INTER_AREA: area costs ~20x more here for a non-integer ratio
        # (1.4 ms vs 65 us at 768 -> 160), and the blur below does the noise averaging.
        if grey_input:
            cv2.resize(frame, small, dst=self._grey, interpolation=cv2.INTER_LINEAR)
        else:
            cv2.resize(frame, small, dst=self._colour, interpolation=cv2.INTER_LINEAR)
            cv2.cvtColor(self._colour, cv2.COLOR_BGR2GRAY, dst=self._grey)
        cv2.GaussianBlur(self._grey, _BLUR_KERNEL, 0, dst=self._blurred)

        if self._background is None:
            self._background = self._blurred.astype(np.float32)
            return MotionResult(moving=True, changed_fraction=1.0)

        # A global brightness shift (auto-exposure, a cloud) moves every pixel alike:
        # shift the background by the mean difference before comparing, so only local
        # change counts. The running average then absorbs the shift for good.
        offset = cv2.mean(self._blurred, self._mask)[0] - cv2.mean(self._background, self._mask)[0]
        cv2.convertScaleAbs(self._background, dst=self._shifted, alpha=1.0, beta=offset)
        cv2.absdiff(self._blurred, self._shifted, dst=self._diff)
        cv2.threshold(self._diff, self.pixel_delta, 255, cv2.THRESH_BINARY, dst=self._diff)
        if self._mask is not None:
            cv2.bitwise_and(self._diff, self._mask, dst=self._diff)
        changed = cv2.countNonZero(self._diff) / self._watched
        cv2.accumulateWeighted(self._blurred, self._background, self.background_alpha)
        return MotionResult(moving=changed > self.threshold, changed_fraction=changed)

    def _allocate(self, height: int, width: int) -> None:
        """Working-size buffers for frames of ``height`` x ``width``; forgets the background."""
        working_w = min(self.width, width)  # never upscale a small frame
        working_h = max(1, round(height * working_w / width))
        shape = (working_h, working_w)
        self._working_w, self._working_h = working_w, working_h
        self._colour = np.empty((*shape, 3), np.uint8)
        self._grey = np.empty(shape, np.uint8)
        self._blurred = np.empty(shape, np.uint8)
        self._shifted = np.empty(shape, np.uint8)
        self._diff = np.empty(shape, np.uint8)
        self._mask: npt.NDArray[np.uint8] | None = None
        self._watched = working_w * working_h
        if self._mask_source is not None:
            # INTER_AREA then "> 0": a thin watched strip survives the shrink.
            resized = cv2.resize(
                self._mask_source.astype(np.float32),
                (working_w, working_h),
                interpolation=cv2.INTER_AREA,
            )
            self._mask = np.where(resized > 0, 255, 0).astype(np.uint8)
            self._watched = cv2.countNonZero(self._mask)
        self._frame_shape = (height, width)
        self._background = None


def load_mask(spec: str, shape: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A watched-region mask of ``shape`` (H, W): 255 watched, 0 ignored.

    ``spec`` is a path to an image file (non-zero pixels are watched; resized to
    ``shape``) or polygons in normalised ``x,y`` coordinates, ``;`` between points and
    ``|`` between polygons: ``"0.1,0.1;0.9,0.1;0.9,0.9;0.1,0.9"``. Raises
    :class:`ConfigError` naming what is wrong with a bad spec.
    """
    height, width = shape
    if height < 1 or width < 1:
        raise ValueError(f"mask shape {shape} must be positive")
    text = spec.strip()
    if not text:
        raise ConfigError("motion mask spec is empty")
    if _POLYGON_CHARS.fullmatch(text) and not Path(text).is_file():
        mask = _polygons_mask(text, height, width)
    else:
        mask = _image_mask(Path(text), height, width)
    if not np.any(mask):
        raise ConfigError(f"motion mask {spec!r} watches nothing (no non-zero pixels)")
    return mask


def _image_mask(path: Path, height: int, width: int) -> npt.NDArray[np.uint8]:
    if not path.is_file():
        raise ConfigError(f"motion mask file {str(path)!r} does not exist")
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ConfigError(f"motion mask {str(path)!r} is not a readable image: {exc}") from exc
    if image is None:
        raise ConfigError(f"motion mask {str(path)!r} is not a readable image")
    watched = _as_2d(image, f"motion mask {str(path)!r}")
    resized = cv2.resize(watched.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return np.where(resized > 0, 255, 0).astype(np.uint8)


def _polygons_mask(text: str, height: int, width: int) -> npt.NDArray[np.uint8]:
    mask = np.zeros((height, width), np.uint8)
    scale = np.array([width - 1, height - 1], np.float64)
    for number, polygon in enumerate(text.split("|"), start=1):
        points = parse_polygon(polygon, f"motion mask polygon {number}")
        pixels = np.round(points * scale).astype(np.int32)
        cv2.fillPoly(mask, [pixels], 255)
    return mask


def parse_polygon(text: str, what: str) -> npt.NDArray[np.float64]:
    """``"x,y;x,y;x,y"`` in 0..1 as an (n, 2) array; :class:`ConfigError` naming
    ``what`` if it is not a polygon with an area. Zones use the same syntax."""
    points = np.array([_point(p, what) for p in text.split(";") if p.strip()], np.float64)
    if len(points) < 3:
        raise ConfigError(f"{what} has {len(points)} point(s); it needs at least 3")
    if np.linalg.matrix_rank(points - points[0], tol=1e-9) < 2:
        raise ConfigError(f"{what} has no area (its points are in line)")
    return points


def _point(text: str, what: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        x, y = (float(part) for part in parts)
    except ValueError:
        raise ConfigError(f"{what}: point {text.strip()!r} is not two numbers x,y") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ConfigError(
            f"{what}: point ({x}, {y}) is outside 0..1 "
            "(coordinates are fractions of the frame's width and height)"
        )
    return x, y


def _as_2d(mask: npt.NDArray[np.generic], what: str) -> npt.NDArray[np.bool_]:
    """``mask`` as HxW booleans (HxWxC: any channel non-zero)."""
    if mask.ndim not in (2, 3) or mask.size == 0:
        raise ConfigError(f"{what} must be an HxW or HxWxC array, not shape {mask.shape}")
    watched = mask.astype(bool)
    return np.any(watched, axis=2) if watched.ndim == 3 else watched
