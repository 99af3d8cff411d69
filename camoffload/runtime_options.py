"""The options the runtime commands share, and the config they resolve to: ``--config``,
``--set``, ``--broker``, ``--log-level`` and the worker and edge shorthands (each a
``--set`` too)."""

from __future__ import annotations

import argparse
import os

from pipeline.config import Config, load_config

__all__ = [
    "add_config_options",
    "common_options",
    "config_from_args",
    "edge_options",
    "worker_options",
]


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set SECTION.KEY=VALUE``: where a command's settings come
    from, besides the CAMOFFLOAD_* environment."""
    parser.add_argument(
        "--config",
        default=os.environ.get("CAMOFFLOAD_CONFIG"),
        help="TOML config file (default: $CAMOFFLOAD_CONFIG)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting (repeatable), e.g. --set edge.deadline_ms=500",
    )


def common_options(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--broker", dest="broker_url", help="broker URL, mqtt://host:port")
    parser.add_argument(
        "--validate-config", action="store_true", help="print the resolved config and exit"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def worker_options(parser: argparse.ArgumentParser) -> None:
    """Shorthands for the worker settings people change most (each is a --set too)."""
    group = parser.add_argument_group("worker")
    group.add_argument("--worker-id", help="worker.worker_id (also its MQTT client id)")
    group.add_argument("--model", help="worker.model, e.g. fmnist_exit_resnet")
    group.add_argument("--device", choices=["cpu", "cuda", "auto"], help="worker.device")
    group.add_argument(
        "--half", action="store_true", default=None, help="float16 inference (CUDA only)"
    )
    group.add_argument("--max-batch", type=int, help="worker.max_batch")
    group.add_argument("--max-wait-ms", type=float, help="worker.max_wait_ms")
    group.add_argument("--max-queue", type=int, help="worker.max_queue")
    group.add_argument("--threads", type=int, help="worker.threads: torch threads in this worker")
    group.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free)"
    )
    group.add_argument(
        "--slowdown",
        type=float,
        help="worker.slowdown: each batch takes this many times as long (load emulation)",
    )
    group.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run N worker processes on this box (ids <worker-id>-1..N), each on its "
        "share of the cores, restarted if one dies (default 1)",
    )
    group.add_argument(
        "--no-pin",
        action="store_true",
        help="with --processes: leave the processes unpinned (one core share each by default)",
    )


def edge_options(parser: argparse.ArgumentParser) -> None:
    """Shorthands for the edge settings people change most (each is a --set too)."""
    group = parser.add_argument_group("edge")
    group.add_argument("--edge-id", help="edge.edge_id (also its MQTT client id)")
    group.add_argument("--model", dest="cloud_model", help="edge.model: the cloud model to ask")
    group.add_argument("--local-model", help="edge.local_model, e.g. fmnist_exit_resnet")
    group.add_argument(
        "--task",
        dest="edge_task",
        choices=["classify", "detect"],
        help="edge.task: detect asks for objects (--local-model ssdlite_person --model "
        "nanodet_coco --policy threshold)",
    )
    group.add_argument(
        "--policy",
        choices=["cloud-only", "local-only", "threshold", "entropy", "router"],
        help="edge.policy",
    )
    group.add_argument("--threshold", type=float, help="edge.confidence_threshold")
    group.add_argument("--payload", choices=["jpeg", "raw", "tensor"], help="edge.payload")
    group.add_argument("--rate", help="edge.rate: real, max or frames/s")
    group.add_argument("--deadline-ms", type=float, help="edge.deadline_ms")
    group.add_argument("--ledger", help="edge.ledger_path (SQLite)")


_FLAG_SETTINGS = {
    "worker_id": "worker.worker_id",
    "model": "worker.model",
    "device": "worker.device",
    "half": "worker.half",
    "max_batch": "worker.max_batch",
    "max_wait_ms": "worker.max_wait_ms",
    "threads": "worker.threads",
    "max_queue": "worker.max_queue",
    "metrics_port": "worker.metrics_port",
    "slowdown": "worker.slowdown",
    "edge_id": "edge.edge_id",
    "cloud_model": "edge.model",
    "local_model": "edge.local_model",
    "edge_task": "edge.task",
    "policy": "edge.policy",
    "threshold": "edge.confidence_threshold",
    "payload": "edge.payload",
    "rate": "edge.rate",
    "deadline_ms": "edge.deadline_ms",
    "ledger": "edge.ledger_path",
}


def config_from_args(args: argparse.Namespace) -> Config:
    """The config a command line asks for: ``--config``'s file and the environment, with
    ``--set``, the worker and edge shorthands and ``--broker`` applied as overrides."""
    overrides = list(args.overrides)
    for flag, key in _FLAG_SETTINGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.broker_url:
        overrides.append(f"broker.url={args.broker_url}")
    return load_config(args.config, overrides=overrides)
