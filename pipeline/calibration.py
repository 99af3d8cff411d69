"""Gompertz calibrations: what ``camoffload calibrate`` measured, as a small JSON file.

A calibration belongs to one cloud model (and the local model whose confidence splits
its frames into bins). It holds the operating points that were measured (JPEG quality
and resolution scale -> mean payload bytes, ``x`` = bytes / bytes of the reference
full-quality JPEG, accuracy on the fitting half and on the held-out half of the
images), the Gompertz curve fitted to the Pareto-optimal points, and the same per bin
of local confidence (the cloud is less accurate on the frames the local exit is unsure
of, and those are the ones that get offloaded).

It lives next to the model's weights, ``pipeline/models/shipped/<model>.gompertz.json``
(:func:`default_calibration_path`). Loading validates every field; anything missing,
mistyped or out of range is a :class:`CalibrationError` naming the file and the field.

Errors::

    CamoffloadError
    └── ConfigError
        └── CalibrationError   path; the file is missing, not JSON, or not a calibration
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import CalibrationError
from pipeline.gompertz import GompertzCurve

__all__ = [
    "CALIBRATION_FORMAT",
    "Calibration",
    "CalibrationError",
    "ConfidenceBin",
    "FittedCurve",
    "OperatingPoint",
    "default_calibration_path",
    "load_calibration",
    "save_calibration",
]

CALIBRATION_FORMAT = 1
MAX_CALIBRATION_BYTES = 1_000_000  # a calibration is a few kB; refuse anything huge

CalibrationCodec = Literal["jpeg", "jpeg-abbrev"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatingPoint:
    """One way of sending a frame: JPEG ``quality`` at ``scale`` of its resolution."""

    quality: int
    scale: float
    bytes: float  # mean payload bytes in the calibration's codec
    x: float  # bytes / the reference full-quality JPEG's bytes
    accuracy: float  # on the fitting half of the images
    accuracy_heldout: float  # on the held-out half
    frontier: bool  # Pareto-optimal (no point is both smaller and more accurate)


@dataclass(frozen=True, slots=True, kw_only=True)
class FittedCurve:
    curve: GompertzCurve
    r2_fit: float  # on the fitting half's points it was fitted to
    r2_heldout: float  # the same points measured on the held-out images
    rmse_heldout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfidenceBin:
    """Frames whose local confidence is in ``[low, high)``: how often the local exit
    is right there, and the cloud's curve on just those frames."""

    low: float
    high: float
    frames: int
    local_accuracy: float
    curve: FittedCurve


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    model: str
    model_version: str
    codec: CalibrationCodec  # the codec ``bytes`` and ``x`` were measured in
    reference_quality: int  # x = 1 is a full JPEG at this quality and scale 1
    reference_bytes: float
    local_model: str | None
    local_split: int | None
    dataset: str
    images_fit: int
    images_heldout: int
    command: str
    points: tuple[OperatingPoint, ...]
    curve: FittedCurve
    bins: tuple[ConfidenceBin, ...] = ()

    def __post_init__(self) -> None:
        if not any(p.frontier for p in self.points):
            raise CalibrationError("a calibration needs at least one frontier point")
        edges = [(b.low, b.high) for b in self.bins]
        if edges != sorted(edges) or any(lo >= hi for lo, hi in edges):
            raise CalibrationError("confidence bins must be ordered and non-empty")

    @property
    def frontier(self) -> tuple[OperatingPoint, ...]:
        """The Pareto-optimal points, fewest bytes first: the only ones worth sending."""
        return tuple(sorted((p for p in self.points if p.frontier), key=lambda p: p.bytes))

    def bin_for(self, confidence: float) -> ConfidenceBin | None:
        for b in self.bins:
            if b.low <= confidence < b.high or (confidence == b.high == self.bins[-1].high):
                return b
        return None

    def to_json(self) -> dict[str, Any]:
        def curve(c: FittedCurve) -> dict[str, float]:
            return {
                "a": c.curve.a,
                "b": c.curve.b,
                "c": c.curve.c,
                "r2_fit": c.r2_fit,
                "r2_heldout": c.r2_heldout,
                "rmse_heldout": c.rmse_heldout,
            }

        return {
            "format": CALIBRATION_FORMAT,
            "model": self.model,
            "model_version": self.model_version,
            "codec": self.codec,
            "reference_quality": self.reference_quality,
            "reference_bytes": self.reference_bytes,
            "local_model": self.local_model,
            "local_split": self.local_split,
            "dataset": self.dataset,
            "images_fit": self.images_fit,
            "images_heldout": self.images_heldout,
            "command": self.command,
            "curve": curve(self.curve),
            "points": [
                {
                    "quality": p.quality,
                    "scale": p.scale,
                    "bytes": round(p.bytes, 2),
                    "x": round(p.x, 5),
                    "accuracy": round(p.accuracy, 5),
                    "accuracy_heldout": round(p.accuracy_heldout, 5),
                    "frontier": p.frontier,
                }
                for p in self.points
            ],
            "bins": [
                {
                    "low": b.low,
                    "high": b.high,
                    "frames": b.frames,
                    "local_accuracy": round(b.local_accuracy, 5),
                    "curve": curve(b.curve),
                }
                for b in self.bins
            ],
        }


def default_calibration_path(model: str, *, models_dir: Path | None = None) -> Path:
    """``<models dir>/<model>.gompertz.json``, beside the model's weights and manifest."""
    from pipeline.models.weights import default_models_dir

    return (models_dir or default_models_dir()) / f"{model}.gompertz.json"


def save_calibration(calibration: Calibration, path: Path | str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(calibration.to_json(), indent=2, sort_keys=True) + "\n"
    target.write_text(text, encoding="utf-8")
    return target


class _Reader:
    """Typed access to a JSON object that names the field at fault."""

    def __init__(self, path: Path, obj: object, where: str) -> None:
        if not isinstance(obj, Mapping):
            raise CalibrationError(f"{path}: {where} must be an object", path=path)
        self.path, self.obj, self.where = path, obj, where

    def _fail(self, key: str, what: str) -> CalibrationError:
        return CalibrationError(f"{self.path}: {self.where}.{key} {what}", path=self.path)

    def raw(self, key: str) -> object:
        if key not in self.obj:
            raise self._fail(key, "is missing")
        return self.obj[key]

    def string(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "must be a non-empty string")
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.raw(key) is None else self.string(key)

    def number(self, key: str, low: float = -math.inf, high: float = math.inf) -> float:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, f"must be a number, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high):
            raise self._fail(key, f"must be within {low:g}..{high:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fail(key, f"must be an integer within {low}..{high}, got {value!r}")
        return value

    def optional_integer(self, key: str, low: int, high: int) -> int | None:
        return None if self.raw(key) is None else self.integer(key, low, high)

    def array(self, key: str) -> list[object]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self._fail(key, "must be an array")
        return value


def _curve(r: _Reader) -> FittedCurve:
    try:
        curve = GompertzCurve(r.number("a"), r.number("b"), r.number("c"))
    except ValueError as exc:
        raise CalibrationError(f"{r.path}: {r.where}: {exc}", path=r.path) from exc
    return FittedCurve(
        curve=curve,
        r2_fit=r.number("r2_fit", high=1.0),
        r2_heldout=r.number("r2_heldout", high=1.0),
        rmse_heldout=r.number("rmse_heldout", 0.0, 1.0),
    )


def _point(r: _Reader) -> OperatingPoint:
    frontier = r.raw("frontier")
    if not isinstance(frontier, bool):
        raise CalibrationError(f"{r.path}: {r.where}.frontier must be true or false", path=r.path)
    return OperatingPoint(
        quality=r.integer("quality", 1, 100),
        scale=r.number("scale", 0.01, 1.0),
        bytes=r.number("bytes", 1.0),
        x=r.number("x", 0.0, 100.0),
        accuracy=r.number("accuracy", 0.0, 1.0),
        accuracy_heldout=r.number("accuracy_heldout", 0.0, 1.0),
        frontier=frontier,
    )


def _parse(path: Path, obj: object) -> Calibration:
    r = _Reader(path, obj, "calibration")
    fmt = r.raw("format")
    if fmt != CALIBRATION_FORMAT:
        raise CalibrationError(
            f"{path}: calibration format {fmt!r} is not {CALIBRATION_FORMAT}: re-run "
            "`camoffload calibrate`",
            path=path,
        )
    codec = r.string("codec")
    if codec not in ("jpeg", "jpeg-abbrev"):
        raise CalibrationError(
            f"{path}: codec must be jpeg or jpeg-abbrev, not {codec!r}", path=path
        )
    points = tuple(
        _point(_Reader(path, p, f"points[{i}]")) for i, p in enumerate(r.array("points"))
    )
    bins = []
    for i, item in enumerate(r.array("bins")):
        b = _Reader(path, item, f"bins[{i}]")
        bins.append(
            ConfidenceBin(
                low=b.number("low", 0.0, 1.0),
                high=b.number("high", 0.0, 1.0),
                frames=b.integer("frames", 1, 10**9),
                local_accuracy=b.number("local_accuracy", 0.0, 1.0),
                curve=_curve(_Reader(path, b.raw("curve"), f"bins[{i}].curve")),
            )
        )
    try:
        return Calibration(
            model=r.string("model"),
            model_version=r.string("model_version"),
            codec="jpeg-abbrev" if codec == "jpeg-abbrev" else "jpeg",
            reference_quality=r.integer("reference_quality", 1, 100),
            reference_bytes=r.number("reference_bytes", 1.0),
            local_model=r.optional_string("local_model"),
            local_split=r.optional_integer("local_split", 1, 64),
            dataset=r.string("dataset"),
            images_fit=r.integer("images_fit", 1, 10**9),
            images_heldout=r.integer("images_heldout", 1, 10**9),
            command=r.string("command"),
            points=points,
            curve=_curve(_Reader(path, r.raw("curve"), "curve")),
            bins=tuple(bins),
        )
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}", path=path) from exc


def load_calibration(path: Path | str) -> Calibration:
    """Read and validate a calibration; :class:`CalibrationError` says what is wrong."""
    source = Path(path)
    try:
        with source.open("rb") as fh:
            data = fh.read(MAX_CALIBRATION_BYTES + 1)
    except FileNotFoundError:
        raise CalibrationError(
            f"no calibration at {source}: run `camoffload calibrate MODEL` to make one",
            path=source,
        ) from None
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration {source}: {exc}", path=source) from exc
    if len(data) > MAX_CALIBRATION_BYTES:
        raise CalibrationError(f"{source} is over {MAX_CALIBRATION_BYTES} bytes", path=source)
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{source} is not valid JSON: {exc}", path=source) from exc
    return _parse(source, obj)
