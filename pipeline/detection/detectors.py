"""The shipped object detectors: ONNX files vouched for by manifests, run by onnxruntime.

``pipeline/models/shipped/detectors/<name>.onnx`` sits beside ``<name>.json``, which
records where the file came from (registry package, version, sha256 of source and
result, licence, the conversion command: ``scripts/convert_detectors.py``) and the
input it takes. Loading checks the sha256 before onnxruntime reads a byte, so a
missing, truncated or foreign file is one clear line, as is a missing onnxruntime.

* ``ssdlite_person``: SSDLite-MobileNetV2, people only, 300x300; the edge's detector.
* ``nanodet_coco``: NanoDet, 80 COCO classes, 416x416; the cloud's.

Synchronous and CPU/GPU-bound: callers run :meth:`Detector.detect` in a thread.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.codecs import Image
from pipeline.detection.boxes import Detection
from pipeline.detection.coco import COCO_LABELS
from pipeline.detection.decoders import decode_nanodet, decode_ssd
from pipeline.errors import ModelError

__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorSpec",
    "default_detectors_dir",
    "get_detector_spec",
    "is_detector",
]

# name -> (decoder, labels): what the manifest cannot say in JSON.
DETECTORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ssdlite_person": ("ssd", ("person",)),
    "nanodet_coco": ("nanodet", COCO_LABELS),
}


def default_detectors_dir() -> Path:
    """The detectors that ship inside the package (package data)."""
    return Path(__file__).resolve().parent.parent / "models" / "shipped" / "detectors"


def is_detector(name: str) -> bool:
    return name in DETECTORS


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSpec:
    name: str
    version: str  # "onnx-" + the first 12 hex digits of the file's sha256
    decoder: str  # "ssd" or "nanodet"
    labels: tuple[str, ...]
    onnx_path: Path
    sha256: str
    input_size: tuple[int, int]  # (height, width)
    input_name: str
    manifest: dict[str, Any]


def get_detector_spec(name: str, *, detectors_dir: Path | None = None) -> DetectorSpec:
    """The spec of a shipped detector; :class:`ModelError` names the known ones."""
    if name not in DETECTORS:
        raise ModelError(f"unknown detector {name!r}; known detectors: {', '.join(DETECTORS)}")
    folder = detectors_dir or default_detectors_dir()
    manifest_path = folder / f"{name}.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        width, height = manifest["input"]["size"]
        onnx_path = folder / manifest["onnx_file"]
        sha256 = str(manifest["sha256"])
        input_name = str(manifest["input"]["name"])
    except FileNotFoundError:
        raise ModelError(
            f"detector {name}: manifest {manifest_path} is missing; reinstall camoffload"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"detector {name}: manifest {manifest_path} is unreadable: {exc}") from exc
    decoder, labels = DETECTORS[name]
    return DetectorSpec(
        name=name,
        version=f"onnx-{sha256[:12]}",
        decoder=decoder,
        labels=labels,
        onnx_path=onnx_path,
        sha256=sha256,
        input_size=(int(height), int(width)),
        input_name=input_name,
        manifest=manifest,
    )


def _verified_bytes(spec: DetectorSpec) -> bytes:
    """The file's bytes, read once: what is hashed is what onnxruntime gets."""
    try:
        model = spec.onnx_path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"detector {spec.name}: {spec.onnx_path} is missing; reinstall camoffload "
            "(or rebuild it: scripts/convert_detectors.py)"
        ) from None
    except OSError as exc:
        raise ModelError(f"detector {spec.name}: {spec.onnx_path} is unreadable: {exc}") from exc
    if hashlib.sha256(model).hexdigest() != spec.sha256:
        raise ModelError(
            f"detector {spec.name}: {spec.onnx_path} does not match the sha256 in its "
            "manifest (truncated, corrupt or another file); reinstall camoffload"
        )
    return model


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("device 'cuda' was asked for but onnxruntime has no CUDA provider")
    return ["CPUExecutionProvider"]


class Detector:
    """A shipped detector on onnxruntime: images in, detections (normalised boxes) out.

    ``min_score`` is the lowest score kept; policies apply their own thresholds above it.
    ``threads`` bounds onnxruntime's intra-op pool (0: its default, every core).
    """

    def __init__(
        self, spec: DetectorSpec, *, min_score: float = 0.2, device: str = "cpu", threads: int = 0
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "onnxruntime is not installed; the detectors run on it: pip install onnxruntime"
            ) from None
        model = _verified_bytes(spec)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initialisers are noise
        try:
            self._session = ort.InferenceSession(model, options, providers=_providers(device))
        except (RuntimeError, ValueError) as exc:  # onnxruntime's errors derive from these
            raise ModelError(f"detector {spec.name}: onnxruntime refused it: {exc}") from exc
        self.spec = spec
        self.min_score = min_score
        providers = self._session.get_providers()
        self.device = "cuda" if "CUDAExecutionProvider" in providers else "cpu"
        self.half = False  # float32 graphs: what the worker's status and log report

    @classmethod
    def by_name(cls, name: str, **kwargs: Any) -> Detector:
        return cls(get_detector_spec(name), **kwargs)

    @property
    def name(self) -> str:
        return self.spec.name

    def _input(self, image: Image) -> np.ndarray:
        height, width = self.spec.input_size
        colour: np.ndarray = image
        if image.ndim == 2 or image.shape[2] == 1:
            colour = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        resized = cv2.resize(colour, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = resized[:, :, ::-1]
        if self.spec.decoder == "ssd":
            return np.ascontiguousarray(rgb[None])  # uint8 NHWC, as the TF graph takes
        return np.ascontiguousarray((rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])

    def detect_one(self, image: Image) -> list[Detection]:
        try:
            outputs = self._session.run(None, {self.spec.input_name: self._input(image)})
        except (RuntimeError, ValueError, cv2.error) as exc:
            raise ModelError(f"{self.spec.name} failed on a {image.shape} image: {exc}") from exc
        if self.spec.decoder == "ssd":
            return decode_ssd(outputs, self.spec.labels, self.min_score)
        return decode_nanodet(outputs, self.spec.labels, self.min_score, self.spec.input_size[0])

    def detect(self, images: Sequence[Image]) -> list[list[Detection]]:
        """Detections for each image, in order (the graphs take one image at a time)."""
        return [self.detect_one(image) for image in images]
