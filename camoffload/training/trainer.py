"""Joint training of every exit of an early-exit network, reproducibly.

Recipe: SGD with Nesterov momentum under a one-cycle learning rate, random crop and
mirror, label smoothing, a weighted cross-entropy per exit, and the final exit's
softened outputs distilled into the early ones (early exits learn more from the final
exit's "dark knowledge" than from hard labels alone). Mixed precision (bfloat16) on CPUs
and GPUs that have it. A fixed seed fixes the initialisation, the data order and every
augmentation draw.

The data set (Fashion-MNIST, CIFAR-10: :data:`pipeline.datasets.DATASETS`)
decides the loader, the normalisation, the padding colour and what the manifest says;
the architecture must take its images (channels, size, classes).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

from camoffload.training.augment import random_crop_flip
from camoffload.training.evaluate import normalised_batch, predict_exits
from camoffload.training.progress import Progress
from pipeline.datasets import DatasetError, DatasetInfo, LabelledImages, get_dataset
from pipeline.models.early_exit import EarlyExitConfig, EarlyExitResNet
from pipeline.models.flops import macs_per_exit
from pipeline.models.weights import (
    WeightsManifest,
    load_early_exit,
    save_weights,
    write_manifest,
)

__all__ = ["TrainOptions", "train"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainOptions:
    dataset: str = "fashion-mnist"  # a name in pipeline.datasets.DATASETS
    name: str | None = None  # file stem of the weights; None = the data set's default
    data_dir: Path | None = None  # None = the data set's default folder
    out_dir: Path = Path("models")
    architecture: EarlyExitConfig = field(default_factory=EarlyExitConfig)
    epochs: int = 30
    limit: int | None = None  # first N training images; None = all
    test_limit: int | None = None  # first N test images; None = all 10,000
    batch_size: int = 256
    max_lr: float = 0.2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    exit_weights: tuple[float, ...] = (0.5, 0.7, 0.9, 1.0)
    distill_temperature: float = 3.0  # 0 turns distillation off
    seed: int = 0
    device: str = "cpu"
    bf16: bool = True
    command: str = ""


def _exit_loss(
    logits: list[torch.Tensor], labels: torch.Tensor, options: TrainOptions
) -> torch.Tensor:
    logits = [x.float() for x in logits]
    loss = torch.zeros((), device=labels.device)
    for weight, exit_logits in zip(options.exit_weights, logits, strict=True):
        loss = loss + weight * F.cross_entropy(
            exit_logits, labels, label_smoothing=options.label_smoothing
        )
    temperature = options.distill_temperature
    if temperature > 0:
        teacher = F.softmax(logits[-1].detach() / temperature, dim=1)
        for weight, exit_logits in zip(options.exit_weights[:-1], logits[:-1], strict=True):
            student = F.log_softmax(exit_logits / temperature, dim=1)
            loss = loss + weight * temperature**2 * F.kl_div(
                student, teacher, reduction="batchmean"
            )
    return loss


def _check(options: TrainOptions, info: DatasetInfo) -> None:
    if len(options.exit_weights) != options.architecture.num_stages:
        raise ValueError(
            f"{len(options.exit_weights)} exit weights for {options.architecture.num_stages} exits"
        )
    if options.epochs < 1 or options.batch_size < 1:
        raise ValueError("epochs and batch size must be >= 1")
    arch = options.architecture
    wanted = (info.channels, info.input_size, len(info.classes))
    if (arch.in_channels, arch.input_size, arch.num_classes) != wanted:
        raise DatasetError(
            f"the architecture takes {arch.in_channels}-channel {arch.input_size}x"
            f"{arch.input_size} images in {arch.num_classes} classes, but {info.title} has "
            f"{info.channels}-channel {info.input_size}x{info.input_size} images in "
            f"{len(info.classes)} classes: build it with in_channels={info.channels}, "
            f"input_size={info.input_size}, num_classes={len(info.classes)}"
        )


def _check_data(data: LabelledImages, info: DatasetInfo, split: str) -> None:
    shape = (info.input_size, info.input_size, info.channels)
    if data.images.shape[1:] != shape or data.classes != info.classes:
        raise DatasetError(
            f"the {info.title} {split} set holds {data.images.shape[1:]} images in "
            f"{len(data.classes)} classes, not {shape} images in {len(info.classes)}"
        )


def train(options: TrainOptions, *, log: Callable[[str], None] = logger.info) -> WeightsManifest:
    """Train, save ``<out_dir>/<name>.pt`` + ``.json``, and return the manifest.

    The accuracy in the manifest is measured on the weights as reloaded from disk
    (float16), so it is the accuracy of the file, not of the in-memory model.
    """
    info = get_dataset(options.dataset)
    _check(options, info)
    name = options.name or info.model_name
    data_dir = (options.data_dir or info.default_root).expanduser()
    device = torch.device(options.device)
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)

    train_set = info.load(data_dir, "train").head(options.limit)
    test_set = info.load(data_dir, "test").head(options.test_limit)
    _check_data(train_set, info, "training")
    _check_data(test_set, info, "test")
    mean, std = info.mean, info.std
    inputs = normalised_batch(train_set.images, mean, std)
    labels = torch.from_numpy(train_set.labels)
    fill = info.black  # pad with black, as the camera would see it
    log(
        f"training {name} on {len(train_set)} {info.title} images, {options.epochs} epochs, "
        f"{device}"
    )

    model = EarlyExitResNet(options.architecture).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=options.max_lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=options.weight_decay,
    )
    steps_per_epoch = (len(train_set) + options.batch_size - 1) // options.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=options.max_lr,
        total_steps=options.epochs * steps_per_epoch,
        pct_start=0.25,
    )
    started = time.perf_counter()
    for epoch in range(options.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=generator)
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{options.epochs}")
        for start in range(0, len(train_set), options.batch_size):
            index = order[start : start + options.batch_size]
            batch = random_crop_flip(inputs[index], padding=2, fill=fill, generator=generator)
            batch = batch.to(device, memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
                logits = model(batch)
            loss = _exit_loss(logits, labels[index].to(device), options)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            progress.update(loss=float(loss.detach()))
    wall = time.perf_counter() - started

    model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    example = torch.zeros(
        1,
        options.architecture.in_channels,
        options.architecture.input_size,
        options.architecture.input_size,
    )
    fields = _manifest_fields(options, info, train_set, test_set, model, example, wall)
    manifest = save_weights(model, fields, out_dir=options.out_dir, name=name)
    # Measure the file as written (float16), then rewrite the manifest with the figures.
    reloaded, _ = load_early_exit(options.out_dir / f"{name}.json")
    accuracy = predict_exits(reloaded, test_set, mean=mean, std=std).accuracy()
    manifest = dataclasses.replace(manifest, exit_accuracy=tuple(round(a, 6) for a in accuracy))
    write_manifest(manifest, options.out_dir)
    log(
        f"wrote {options.out_dir / manifest.weights_file} ({manifest.size_bytes} bytes); "
        f"test accuracy per exit: {', '.join(f'{a:.2%}' for a in accuracy)}"
    )
    return manifest


def _manifest_fields(
    options: TrainOptions,
    info: DatasetInfo,
    train_set: LabelledImages,
    test_set: LabelledImages,
    model: EarlyExitResNet,
    example: torch.Tensor,
    wall: float,
) -> dict[str, object]:
    """Everything the manifest says but the file's hash and accuracy (measured after)."""
    return {
        "dataset": info.name,
        "labels": train_set.classes,
        "mean": info.mean,
        "std": info.std,
        "exit_accuracy": (),
        "test_images": len(test_set),
        "params": sum(p.numel() for p in model.parameters()),
        "macs_per_exit": tuple(macs_per_exit(model, example)),
        "seed": options.seed,
        "command": options.command,
        "torch_version": torch.__version__,
        "train_device": options.device,
        "train_wall_s": round(wall, 1),
        "epochs": options.epochs,
        "train_images": len(train_set),
        "extra": {
            "batch_size": options.batch_size,
            "max_lr": options.max_lr,
            "weight_decay": options.weight_decay,
            "label_smoothing": options.label_smoothing,
            "exit_weights": list(options.exit_weights),
            "distill_temperature": options.distill_temperature,
            "bf16": options.bf16,
        },
    }
