"""``camoffload dashboard``: the live page for cameras, workers and snapshots."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from camoffload.lifecycle import run_with_signals
from camoffload.runtime_options import add_config_options, config_from_args
from pipeline.errors import ConfigError

__all__ = ["TOKEN_ENV", "add_dashboard_command", "run_dashboard_command"]

TOKEN_ENV = "CAMOFFLOAD_DASHBOARD_TOKEN"  # noqa: S105 - the variable name, not a secret


def add_dashboard_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve a live web page of every edge, worker, decision and snapshot",
        description="Subscribe to the broker (as the hardened broker's dashboard identity, "
        "with --set broker.username=... and CAMOFFLOAD_BROKER_PASSWORD) and serve a live "
        "page: edges, workers, recent decisions and objects, snapshots, charts and the "
        f"edges' controls. Binds 127.0.0.1 unless --host says otherwise; any other "
        f"address needs a token, from ${TOKEN_ENV} or --token-file (never the command line).",
    )
    add_config_options(p)
    p.add_argument("--broker", dest="broker_url", help="broker URL, mqtt://host:port")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free one)")
    p.add_argument("--token-file", type=Path, help=f"file holding the token (or ${TOKEN_ENV})")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _token(args: argparse.Namespace) -> str | None:
    path: Path | None = args.token_file
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the dashboard token file: {exc}") from exc
        if not token:
            raise ConfigError(f"the dashboard token file {path} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


def run_dashboard_command(args: argparse.Namespace) -> int:
    from camoffload.dashboard.server import check_binding, serve_dashboard

    config = config_from_args(args)
    token = _token(args)
    check_binding(args.host, token)  # before anything connects

    def ready(url: str) -> None:
        print(f"camoffload dashboard: {url} (broker {config.broker.url})", flush=True)

    async def main(stop: asyncio.Event) -> int:
        await serve_dashboard(
            config, host=args.host, port=args.port, token=token, stop=stop, on_ready=ready
        )
        return 0

    return run_with_signals(main)
