"""The model commands of the CLI: ``train`` and ``profile``."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

__all__ = ["add_model_commands", "run_profile", "run_train"]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pipeline.datasets import DATASETS

    def by_dataset(field: str) -> str:
        return ", ".join(f"{getattr(info, field)} for {name}" for name, info in DATASETS.items())

    p = sub.add_parser(
        "train",
        help="train the early-exit network on Fashion-MNIST or CIFAR-10; writes weights",
    )
    p.add_argument(
        "--dataset",
        choices=list(DATASETS),
        default="fashion-mnist",
        help="what to train on; it also sets the network's input channels and size "
        "(default fashion-mnist)",
    )
    p.add_argument(
        "--name",
        default=None,
        help=f"file stem of the weights (default {by_dataset('model_name')})",
    )
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the data set's files (default {by_dataset('default_root')})",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch the data set into --data-dir with torchvision first (internet)",
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="evaluate on the first N test images only (default all 10,000)",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2, help="peak one-cycle learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--widths", type=_ints, default=(48, 96, 192, 256), help="channels per stage")
    p.add_argument("--blocks", type=_ints, default=(1, 1, 1, 1), help="residual blocks per stage")
    p.add_argument("--fp32", action="store_true", help="train in float32, not bfloat16")
    p.add_argument(
        "--no-distill", action="store_true", help="do not distil the final exit into the early ones"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    p = sub.add_parser(
        "profile", help="per-stage latency, split-point tensor sizes and MACs of a model"
    )
    p.add_argument(
        "model",
        nargs="?",
        default="fmnist_exit_resnet",
        help="trained early-exit model name or manifest path",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--batch-sizes", type=_ints, default=(1, 64))
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    p.add_argument(
        "--json",
        dest="json_out",
        type=Path,
        default=None,
        help="also write the profile as JSON to this file ('-' = stdout only JSON)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run_train(args: argparse.Namespace, argv: list[str]) -> int:
    from camoffload.training.trainer import TrainOptions, train
    from pipeline.datasets import get_dataset
    from pipeline.inference import resolve_device
    from pipeline.models import EarlyExitConfig

    dataset = get_dataset(args.dataset)
    data_dir = (args.data_dir or dataset.default_root).expanduser()
    if args.download:
        dataset.download(data_dir)
    # The data set fixes what the network takes; the command line, how big it is.
    architecture = EarlyExitConfig(
        in_channels=dataset.channels,
        num_classes=len(dataset.classes),
        input_size=dataset.input_size,
        widths=args.widths,
        blocks=args.blocks,
    )
    # Exits weigh more the deeper they are; the final one carries the distillation.
    stages = architecture.num_stages
    weights = tuple(round(0.5 + 0.5 * i / (stages - 1), 3) for i in range(stages))
    options = TrainOptions(
        dataset=dataset.name,
        name=args.name or dataset.model_name,
        data_dir=data_dir,
        out_dir=args.out,
        architecture=architecture,
        epochs=args.epochs,
        limit=args.limit,
        test_limit=args.test_limit,
        batch_size=args.batch_size,
        max_lr=args.lr,
        exit_weights=weights,
        distill_temperature=0.0 if args.no_distill else 3.0,
        seed=args.seed,
        device=str(resolve_device(args.device)),
        bf16=not args.fp32,
        command=shlex.join(["camoffload", *argv]),
    )
    manifest = train(options, log=lambda line: print(line, flush=True))
    print(
        json.dumps(
            {
                "weights": str(args.out / manifest.weights_file),
                "version": manifest.version,
                "exit_accuracy": manifest.exit_accuracy,
            }
        )
    )
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from camoffload.model_profile import format_profile, profile_early_exit
    from pipeline.inference import resolve_device

    report = profile_early_exit(
        args.model,
        device=resolve_device(args.device),
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
    )
    text = json.dumps(report, indent=2)
    if args.json_out is not None and str(args.json_out) == "-":
        print(text)
        return 0
    print(format_profile(report))
    if args.json_out is not None:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    return 0
