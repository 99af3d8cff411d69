"""The ``camoffload`` command: broker, worker, edge, demo, replay, eval, link, calibrate,
train, profile, ledger, config and dashboard."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from camoffload import __version__
from camoffload.bench_commands import add_bench_command, run_bench_command
from camoffload.broker_commands import add_broker_command, run_broker_command
from camoffload.calibrate_commands import add_calibrate_command, run_calibrate_command
from camoffload.config_commands import add_config_command, run_config_command
from camoffload.dashboard_commands import add_dashboard_command, run_dashboard_command
from camoffload.eval_commands import add_eval_command, run_eval_command
from camoffload.ledger_commands import add_ledger_command, run_ledger_command
from camoffload.link_commands import add_link_command, run_link_command
from camoffload.model_commands import add_model_commands, run_profile, run_train
from camoffload.router_commands import add_router_command, run_router_command
from camoffload.runtime_commands import add_runtime_commands, run_runtime_command
from camoffload.specialize.command import add_specialize_command, run_specialize
from pipeline.errors import CamoffloadError

__all__ = ["build_parser", "main"]

logger = logging.getLogger("camoffload")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camoffload",
        description="Decide when a camera should ask the cloud for help, over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"camoffload {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_broker_command(sub)
    add_runtime_commands(sub)  # worker, edge, demo, replay
    add_eval_command(sub)
    add_bench_command(sub)
    add_link_command(sub)
    add_calibrate_command(sub)
    add_model_commands(sub)
    add_router_command(sub)
    add_specialize_command(sub)
    add_ledger_command(sub)
    add_config_command(sub)
    add_dashboard_command(sub)
    return parser


def _errors(exc: BaseException) -> list[CamoffloadError]:
    if isinstance(exc, CamoffloadError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in _errors(sub)]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "broker":
            return run_broker_command(args)
        if args.command == "train":
            return run_train(args, argv)
        if args.command == "profile":
            return run_profile(args)
        if args.command == "ledger":
            return run_ledger_command(args)
        if args.command == "eval":
            return run_eval_command(args, argv)
        if args.command == "bench":
            return run_bench_command(args)
        if args.command == "link":
            return run_link_command(args)
        if args.command == "calibrate":
            return run_calibrate_command(args)
        if args.command == "train-router":
            return run_router_command(args)
        if args.command == "config":
            return run_config_command(args)
        if args.command == "specialize":
            return run_specialize(args, argv)
        if args.command == "dashboard":
            return run_dashboard_command(args)
        return run_runtime_command(args, argv)
    except asyncio.CancelledError:
        logger.warning("aborted")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and no traceback as the
        # interpreter flushes stdout on its way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (CamoffloadError, BaseExceptionGroup) as exc:
        errors = _errors(exc)
        if not errors:
            raise
        for error in errors:
            print(f"camoffload {args.command}: error: {error}", file=sys.stderr)
        return 1
