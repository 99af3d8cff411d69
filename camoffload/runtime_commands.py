"""``camoffload worker``, ``edge``, ``demo`` and ``replay``: the commands that run the
pipeline (their shared options are :mod:`camoffload.runtime_options`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from camoffload.lifecycle import run_with_signals
from camoffload.report import format_summary
from camoffload.runtime_options import (
    common_options,
    config_from_args,
    edge_options,
    worker_options,
)
from pipeline.config import Config

__all__ = ["add_runtime_commands", "run_runtime_command"]


WORKER_SWITCH_INTERVAL_S = 0.0005


def add_runtime_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run a cloud worker")
    common_options(p)
    worker_options(p)

    p = sub.add_parser("edge", help="run an edge node on a camera, stream, video or folder")
    common_options(p)
    where = p.add_mutually_exclusive_group(required=True)
    sources = "camera index (0), rtsp://... URL, video file, image folder or fashion-mnist[:test]"
    where.add_argument("source", nargs="?", help=sources)
    where.add_argument("--source", dest="source_option", help="the same, as an option")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    edge_options(p)

    p = sub.add_parser("demo", help="broker + worker + edge replaying a video, then a summary")
    common_options(p)
    p.add_argument(
        "source",
        nargs="?",
        default=None,
        help="default: the shipped clip (150 frames of OpenCV's vtest.avi)",
    )
    p.add_argument("--frames", type=int, default=50, help="frames to replay (default 50)")
    p.add_argument(
        "--task",
        choices=["detect", "classify"],
        default="detect",
        help="detect: a security camera, people at the edge (ssdlite_person) and the "
        "uncertain frames to the cloud's detector (nanodet_coco); classify: a label a "
        "frame (efficientnet_lite0, or --set edge.model=...)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the ledger and the annotated frame (default: a new temporary one)",
    )
    p.add_argument(
        "--broker-kind",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="local broker to start when --broker is not given (auto: mosquitto if installed)",
    )
    p = sub.add_parser(
        "replay",
        help="replay a video, image folder or data set through the pipeline, with progress",
        description="Replay a recorded source through broker, workers and an edge, with a "
        "progress bar and live status; every frame lands in the ledger file, then a summary. "
        "Starts a local broker and one worker unless --broker is given.",
    )
    common_options(p)
    p.add_argument("source", help="video file, image folder or fashion-mnist[:test][:N]")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers to start (default: 1 on a started broker, 0 with --broker)",
    )
    p.add_argument(
        "--link",
        help="emulate a link between edge and broker: a preset (see `camoffload link "
        "--help`) or a spec such as rate=2mbit,delay=40ms",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--broker-kind",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="local broker to start when --broker is not given",
    )
    edge_options(p)


def _print_config(config: Config) -> None:
    # The password field has repr=False, so secrets never reach the terminal.
    for section in ("broker", "edge", "worker"):
        values = dataclasses.asdict(getattr(config, section))
        values.pop("password", None)
        print(f"[{section}]")
        for key, value in values.items():
            print(f"{key} = {value!r}")
    print(f"prefix = {config.prefix!r}")


def _cmd_worker(config: Config) -> int:
    from cloud_worker import CloudWorker

    # The event loop hands the GIL to the inference thread after at most this long
    # (default 5 ms): decoding a bundle must not stall the forward pass's Python parts.
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL_S)

    async def main(stop: asyncio.Event) -> int:
        # The worker drains on ``stop`` itself; a second signal cancels it outright.
        await CloudWorker(config).run(stop=stop)
        return 0

    return run_with_signals(main)


def _cmd_edge(config: Config, args: argparse.Namespace) -> int:
    from edge_node import EdgeNode, Ledger, open_source

    spec = args.source or args.source_option

    def status_line(line: str) -> None:
        # One line, rewritten in place on a terminal; plain lines when piped.
        if sys.stderr.isatty():
            print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    async def main(stop: asyncio.Event) -> int:
        source = await asyncio.to_thread(open_source, spec)
        ledger = Ledger(config.edge.ledger_path)
        try:
            node = EdgeNode(config, source, ledger, on_status=None if args.quiet else status_line)
            summary = await node.run(max_frames=args.frames, stop=stop)
        finally:
            ledger.close()
        if not args.quiet and sys.stderr.isatty():
            print(file=sys.stderr)
        print(format_summary(summary, title=f"camoffload edge {config.edge.edge_id}: {spec}"))
        return 0

    return run_with_signals(main)


def _cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from camoffload.demo import SAMPLE_CLIP, default_video, run_demo, security_config
    from camoffload.security import format_security
    from edge_node.ledger_objects import format_objects

    source = args.source or str(default_video())
    out_dir = None
    if args.task == "detect":
        config = security_config(config)
        out_dir = args.out or Path(tempfile.mkdtemp(prefix="camoffload-demo-"))
        out_dir.mkdir(parents=True, exist_ok=True)
    # The shipped clip by name: its path says only where pip put the package.
    shown = args.source or f"{SAMPLE_CLIP} (shipped sample)"

    async def main(stop: asyncio.Event) -> int:
        outcome = await run_demo(
            config,
            source=source,
            frames=args.frames,
            broker_url=args.broker_url,
            broker_kind=args.broker_kind,
            stop=stop,
            out_dir=out_dir,
        )
        title = f"camoffload demo: {shown} via {outcome.broker}, model {outcome.model}"
        print(format_summary(outcome.summary, title=title), flush=True)
        if outcome.security is not None:
            text = format_security(
                outcome.security,
                outcome.snapshot,
                offloaded=outcome.summary.offloaded,
                bytes_sent=outcome.summary.bytes_sent,
            )
            print(text, flush=True)
            print(format_objects(outcome.objects, start_ts=outcome.start_ts, limit=12))
        return 0

    return run_with_signals(main)


def _cmd_replay(config: Config, args: argparse.Namespace) -> int:
    from camoffload.replay import ReplayOptions, run_replay

    options = ReplayOptions(
        source=args.source,
        frames=args.frames,
        broker_url=args.broker_url,
        broker_kind=args.broker_kind,
        workers=args.workers,
        link=args.link,
        progress=not args.no_progress,
    )

    async def main(stop: asyncio.Event) -> int:
        outcome = await run_replay(config, options, stop=stop)
        title = f"camoffload replay: {args.source} via {outcome.broker}"
        print(format_summary(outcome.summary, title=title))
        print(f"ledger                {outcome.ledger_path}", flush=True)
        return 0

    return run_with_signals(main)


def run_runtime_command(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run ``worker``, ``edge``, ``demo`` or ``replay`` (or, with ``--validate-config``,
    print the config it would run with)."""
    config = config_from_args(args)
    if args.validate_config:
        _print_config(config)
        return 0
    if args.command == "worker" and args.processes != 1:
        from camoffload.worker_pool import run_pool_command

        return run_pool_command(config, processes=args.processes, pin=not args.no_pin, argv=argv)
    if args.command == "worker":
        return _cmd_worker(config)
    if args.command == "edge":
        return _cmd_edge(config, args)
    if args.command == "replay":
        return _cmd_replay(config, args)
    return _cmd_demo(config, args)
