"""``camoffload train-router``: the hybrid-models router for an early-exit network's exit.

Writes ``<model>.router.pt`` and ``<model>.router.json`` into the models folder
(``pipeline/models/shipped/``, or ``$CAMOFFLOAD_MODELS_DIR``; or ``--out``),
then prints the validation accuracy at 90/80/70% coverage of the router beside the
max-softmax and entropy thresholds and the oracle. See docs/router.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

__all__ = ["add_router_command", "run_router_command"]


def add_router_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train-router",
        help="train the learned offload router (hybrid models) over an early exit",
    )
    p.add_argument("--model", default="fmnist_exit_resnet", help="the early-exit network")
    p.add_argument("--split", type=int, default=1, help="the exit the router reads (edge.split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, default=32, help="hidden units")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the .router.pt to write (default: the models folder)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the network's outputs instead of reading ~/.cache/camoffload/router",
    )


def run_router_command(args: argparse.Namespace) -> int:
    from camoffload.training.router import DEFAULT_CACHE, RouterOptions, describe, train_router
    from pipeline.models.router import default_router_path

    # The command that reproduces this router, every setting spelled out.
    argv = ["camoffload", "train-router", "--model", args.model, "--split", str(args.split)]
    argv += ["--seed", str(args.seed), "--epochs", str(args.epochs), "--hidden", str(args.hidden)]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    options = RouterOptions(
        model=args.model,
        split=args.split,
        seed=args.seed,
        epochs=args.epochs,
        hidden=args.hidden,
        out=args.out,
        cache_dir=None if args.no_cache else DEFAULT_CACHE,
        command=shlex.join(argv),
    )
    manifest = train_router(options, log=lambda line: print(line, flush=True))
    for line in describe(manifest):
        print(line)
    out = args.out or default_router_path(args.model)
    print(json.dumps({"router": str(out), "sha256": manifest.sha256, "params": manifest.params}))
    return 0
