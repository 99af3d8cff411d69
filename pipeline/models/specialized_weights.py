"""A specialized network on disk: ``<name>.pt`` beside ``<name>.json``, which vouches for it.

The manifest says which camera and which frames it learned from (and their time span),
whose answers it learned (the reference detector, or a run's ledger), each exit's
threshold and its metrics on a later held-out span, and the sha256 of the weights.
Loading checks the manifest's fields and the file's size and sha256 before torch reads
a byte, so a missing, truncated or foreign file is one line that says which.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import torch

from pipeline.errors import ModelError
from pipeline.models.specialized import SpecializedConfig, SpecializedNet
from pipeline.models.weights import sha256_of

__all__ = [
    "SPECIALIZED_ARCHITECTURE",
    "SPECIALIZED_FORMAT",
    "ExitMetrics",
    "SpecializedManifest",
    "load_specialized",
    "read_specialized_manifest",
    "save_specialized",
]

SPECIALIZED_FORMAT = 1
SPECIALIZED_ARCHITECTURE = "specialized_exit_net"


class ExitMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """One exit's answers on the held-out span against the teacher's."""

    presence_f1: float | None  # any watched label there, frame by frame
    presence_recall: float | None
    count_accuracy: float  # the count exactly right, every label
    count_mae: float
    cell_f1: float | None  # per grid cell and label
    cell_recall: float | None
    threshold: float  # answer here when every yes/no is at least this sure
    stopped_share: float  # held-out frames this exit answers in the cascade
    ms_per_frame: float  # CPU time to reach this exit, one frame at a time


class SpecializedManifest(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    config: dict[str, Any]
    weights_file: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    camera: str  # the source it learned (a video's file name, a camera's name)
    train_frames: tuple[int, int]  # [first, end) frame indices it trained on
    held_out_frames: tuple[int, int]  # [first, end): the later span thresholds come from
    time_span_s: tuple[float, float]  # seconds into the source of the first and last frame
    teacher: str  # "reference:nanodet_coco" or "ledger:<file>"
    min_score: float  # a teacher's detection counts from this score
    objective: dict[str, float]  # what the thresholds were chosen for
    exits: tuple[ExitMetrics, ...]
    offload_share: float  # held-out frames no exit was sure of
    seed: int
    epochs: int
    command: str
    torch_version: str
    train_wall_s: float
    architecture: str = SPECIALIZED_ARCHITECTURE
    format: int = SPECIALIZED_FORMAT

    @property
    def network_config(self) -> SpecializedConfig:
        return SpecializedConfig.from_dict(self.config)

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(e.threshold for e in self.exits)

    @property
    def version(self) -> str:
        return f"{self.name}-{self.sha256[:12]}"


def read_specialized_manifest(path: Path) -> SpecializedManifest:
    """The manifest at ``path``, every field checked; :class:`ModelError` says what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(
            f"no specialized model manifest at {path}: train one with `camoffload specialize`"
        ) from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the specialized model manifest: {exc}") from exc
    try:
        manifest = msgspec.json.decode(data, type=SpecializedManifest)
    except msgspec.DecodeError as exc:
        raise ModelError(f"{path}: not a specialized model manifest: {exc}") from exc
    if manifest.format != SPECIALIZED_FORMAT or manifest.architecture != SPECIALIZED_ARCHITECTURE:
        raise ModelError(
            f"{path}: manifest format {manifest.format} of {manifest.architecture!r} is not "
            f"{SPECIALIZED_FORMAT} of {SPECIALIZED_ARCHITECTURE!r}; retrain or upgrade camoffload"
        )
    try:
        config = manifest.network_config
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: the manifest's config is not a network's: {exc!r}") from exc
    if len(manifest.exits) != config.exits:
        raise ModelError(f"{path}: {len(manifest.exits)} exit entries for {config.exits} exits")
    return manifest


def load_specialized(path: Path) -> tuple[SpecializedManifest, SpecializedNet]:
    """The manifest and its network, weights verified, in eval mode on the CPU."""
    manifest = read_specialized_manifest(path)
    weights = path.parent / manifest.weights_file
    if not weights.is_file():
        raise ModelError(f"weights file {weights} named by {path} is missing")
    if (size := weights.stat().st_size) != manifest.size_bytes:
        raise ModelError(
            f"weights file {weights} is {size} bytes, the manifest says {manifest.size_bytes}: "
            "truncated or replaced; retrain with `camoffload specialize`"
        )
    if sha256_of(weights) != manifest.sha256:
        raise ModelError(
            f"weights file {weights} does not match the sha256 in {path} (corrupt or another "
            "model's); retrain with `camoffload specialize`"
        )
    network = SpecializedNet(manifest.network_config)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except (
        RuntimeError,
        ValueError,
        OSError,
        TypeError,
        KeyError,
        EOFError,
        pickle.UnpicklingError,
    ) as exc:
        # torch.load's and load_state_dict's ways of saying "not this network's state
        # dict": a tensor, a foreign pickle, an empty or cut file, other keys or shapes.
        raise ModelError(f"{weights}: not the network its manifest describes: {exc!r}") from exc
    return manifest, network.eval()


def save_specialized(
    network: SpecializedNet, folder: Path, name: str, fields: dict[str, Any]
) -> Path:
    """Write ``<name>.pt`` and ``<name>.json`` into ``folder``; the manifest's path.
    Each file goes to a temporary name first, so a crash leaves the old pair whole."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    _replace(weights, lambda f: torch.save(state, f))
    manifest = SpecializedManifest(
        name=name,
        config=network.config.to_dict(),
        weights_file=weights.name,
        sha256=sha256_of(weights),
        size_bytes=weights.stat().st_size,
        **fields,
    )
    path = folder / f"{name}.json"
    text = msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
    _replace(path, lambda f: f.write(text))
    return path


def _replace(path: Path, write: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
