"""Trained weights on disk: a ``.pt`` state dict beside a JSON manifest that vouches for it.

The manifest records what produced the file (exact command, seed, torch version), what
it scores (per-exit test accuracy), its architecture, and its sha256. Loading checks all
of that before torch sees a byte, so a missing, truncated or foreign file fails with one
line that says which and what to do, never with a 40-line state-dict traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import ModelError
from pipeline.models.early_exit import EarlyExitConfig, EarlyExitResNet

__all__ = [
    "MANIFEST_FORMAT",
    "WeightsManifest",
    "default_models_dir",
    "load_early_exit",
    "read_manifest",
    "save_weights",
    "sha256_of",
    "write_manifest",
]

MANIFEST_FORMAT = 1
ARCHITECTURE = "early_exit_resnet"


def default_models_dir() -> Path:
    """``$CAMOFFLOAD_MODELS_DIR``, else the models that ship inside the package.

    The shipped folder (``pipeline/models/shipped/``) is package data: a wheel carries
    it, so an installed camoffload finds its weights, routers and calibrations with no
    checkout beside it. ``train``, ``train-router`` and ``calibrate`` write here too
    unless told otherwise: in a checkout that is the folder to commit; an installed
    package's users set ``$CAMOFFLOAD_MODELS_DIR`` to a folder of their own.
    """
    configured = os.environ.get("CAMOFFLOAD_MODELS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent / "shipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsManifest:
    """What ``<name>.json`` says about ``<name>.pt``."""

    name: str
    architecture: str
    config: EarlyExitConfig
    weights_file: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    storage_dtype: str
    dataset: str
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    exit_accuracy: tuple[float, ...]  # top-1 per exit on ``test_images`` test images
    test_images: int
    params: int
    macs_per_exit: tuple[int, ...]  # multiply-accumulates per image to reach each exit
    seed: int
    command: str
    torch_version: str
    train_device: str
    train_wall_s: float
    epochs: int
    train_images: int
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    @property
    def version(self) -> str:
        """Names this exact file in results: the sha256 prefix changes with every retrain."""
        return f"{self.name}-{self.sha256[:12]}"

    def to_json(self) -> str:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path) -> WeightsManifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ModelError(
                f"{source}: manifest format {data.get('format')!r} is not {MANIFEST_FORMAT}; "
                "retrain or upgrade camoffload"
            )
        try:
            return cls(
                name=str(data["name"]),
                architecture=str(data["architecture"]),
                config=EarlyExitConfig.from_dict(data["config"]),
                weights_file=str(data["weights_file"]),
                sha256=str(data["sha256"]),
                size_bytes=int(data["size_bytes"]),
                storage_dtype=str(data["storage_dtype"]),
                dataset=str(data["dataset"]),
                labels=tuple(str(x) for x in data["labels"]),
                mean=tuple(float(x) for x in data["mean"]),
                std=tuple(float(x) for x in data["std"]),
                exit_accuracy=tuple(float(x) for x in data["exit_accuracy"]),
                test_images=int(data["test_images"]),
                params=int(data["params"]),
                macs_per_exit=tuple(int(x) for x in data["macs_per_exit"]),
                seed=int(data["seed"]),
                command=str(data["command"]),
                torch_version=str(data["torch_version"]),
                train_device=str(data["train_device"]),
                train_wall_s=float(data["train_wall_s"]),
                epochs=int(data["epochs"]),
                train_images=int(data["train_images"]),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: manifest is missing or mangles a field: {exc!r}") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_path(name_or_path: str | Path, models_dir: Path | None) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".json":
        return path
    return (models_dir or default_models_dir()) / f"{path.name}.json"


def read_manifest(name_or_path: str | Path, *, models_dir: Path | None = None) -> WeightsManifest:
    """The manifest of a model by name (``pipeline/models/shipped/<name>.json``) or by path."""
    path = _manifest_path(name_or_path, models_dir)
    if not path.is_file():
        raise ModelError(
            f"no weights manifest at {path}: train it with `camoffload train` or point "
            "CAMOFFLOAD_MODELS_DIR at the folder that holds it"
        )
    return WeightsManifest.from_dict(read_json_object(path, "manifest"), source=path)


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """``path``'s JSON object; :class:`ModelError` naming ``what`` if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: {what} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: {what} is not a JSON object")
    return data


def _verified_weights_path(manifest: WeightsManifest, manifest_dir: Path) -> Path:
    path = manifest_dir / manifest.weights_file
    if not path.is_file():
        raise ModelError(f"weights file {path} named by the {manifest.name} manifest is missing")
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise ModelError(
            f"weights file {path} is {size} bytes, the manifest says {manifest.size_bytes}: "
            "truncated or replaced; restore it (git checkout) or retrain"
        )
    actual = sha256_of(path)
    if actual != manifest.sha256:
        raise ModelError(
            f"weights file {path} is corrupt: sha256 {actual[:16]}... does not match the "
            f"manifest's {manifest.sha256[:16]}...; restore it (git checkout) or retrain"
        )
    return path


def _describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if state[key].shape != expected[key].shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    return "; ".join(parts)


def load_early_exit(
    name_or_path: str | Path,
    *,
    models_dir: Path | None = None,
    config: EarlyExitConfig | None = None,
) -> tuple[EarlyExitResNet, WeightsManifest]:
    """The network with its verified weights, in eval mode, on the CPU, float32.

    ``config``, when given, is the architecture the caller expects; a manifest for any
    other is refused before loading.
    """
    manifest_path = _manifest_path(name_or_path, models_dir)
    manifest = read_manifest(manifest_path)
    if manifest.architecture != ARCHITECTURE:
        raise ModelError(
            f"{manifest_path}: architecture {manifest.architecture!r} is not {ARCHITECTURE!r}"
        )
    if config is not None and config != manifest.config:
        raise ModelError(
            f"{manifest_path}: weights are for {manifest.config}, not the requested {config}"
        )
    weights_path = _verified_weights_path(manifest, manifest_path.parent)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise ModelError(f"weights file {weights_path} cannot be read by torch: {exc}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ModelError(f"weights file {weights_path} does not hold a state dict of tensors")
    model = EarlyExitResNet(manifest.config)
    mismatch = _describe_mismatch(model, state)
    if mismatch:
        raise ModelError(
            f"weights file {weights_path} does not fit {ARCHITECTURE} {manifest.config}: {mismatch}"
        )
    reference = model.state_dict()
    model.load_state_dict(
        {key: value.to(reference[key].dtype) for key, value in state.items()}, strict=True
    )
    return model.eval(), manifest


def save_weights(
    model: EarlyExitResNet,
    manifest_fields: dict[str, Any],
    *,
    out_dir: Path,
    name: str,
    storage_dtype: torch.dtype = torch.float16,
) -> WeightsManifest:
    """Write ``<name>.pt`` (floats stored as ``storage_dtype``) and ``<name>.json``.

    Float16 storage halves the file so it can be committed; the manifest's accuracy
    must therefore be measured on the model as reloaded from this file, which is why
    ``manifest_fields`` are filled in by the caller after a reload.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{name}.pt"
    state = {
        key: value.detach().to("cpu", storage_dtype if value.is_floating_point() else value.dtype)
        for key, value in model.state_dict().items()
    }
    tmp = weights_path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    tmp.replace(weights_path)  # never leave a half-written file under the real name
    manifest = WeightsManifest(
        name=name,
        architecture=ARCHITECTURE,
        config=model.config,
        weights_file=weights_path.name,
        sha256=sha256_of(weights_path),
        size_bytes=weights_path.stat().st_size,
        storage_dtype=str(storage_dtype).removeprefix("torch."),
        **manifest_fields,
    )
    write_manifest(manifest, out_dir)
    return manifest


def write_manifest(manifest: WeightsManifest, out_dir: Path) -> Path:
    """(Re)write ``<name>.json`` beside the weights it describes."""
    path = out_dir / f"{manifest.name}.json"
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path
