"""``camoffload link``: an emulated network link in front of a broker.

::

    camoffload link --upstream mqtt://127.0.0.1:1883 --profile 3g
    camoffload link --upstream mqtt://127.0.0.1:1883 --link "rate=2mbit,delay=40ms,jitter=5ms"
    camoffload link --upstream mqtt://127.0.0.1:1883 --link "4g,outage=30s+10s,outage_mode=reset"

It prints the URL to give the edge (``--broker``) as one line on stdout, then shapes
every connection until SIGINT/SIGTERM. See docs/network-emulation.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from camoffload.lifecycle import run_with_signals
from camoffload.netem import PRESETS, LinkProfile, ShapingProxy
from pipeline.errors import ConfigError
from pipeline.tasks import cancel_and_wait

__all__ = ["add_link_command", "run_link_command"]

logger = logging.getLogger("camoffload")

_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def add_link_command(sub: Any) -> None:  # argparse's subparsers action type is private
    """Add ``link`` to the CLI's subcommands."""
    p = sub.add_parser(
        "link",
        help="emulate a slow, jittery or flaky network in front of a broker (a shaping proxy)",
        description="Listen on --listen and forward every connection to --upstream through "
        "an emulated link; prints the URL to connect to, runs until Ctrl-C. Presets: "
        + "; ".join(profile.describe() for profile in PRESETS.values()),
    )
    p.add_argument("--upstream", required=True, help="the broker to forward to, mqtt://HOST:PORT")
    p.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:0, a free port; the URL is printed)",
    )
    shape = p.add_mutually_exclusive_group(required=True)
    shape.add_argument("--profile", choices=list(PRESETS), help="a named link")
    shape.add_argument(
        "--link",
        dest="link_spec",
        metavar="SPEC",
        help='a link spec, e.g. "rate=2mbit,delay=40ms,jitter=5ms", "up=1mbit,down=10mbit,'
        'rtt=80ms" or "3g,outage=10s+5s,outage_mode=reset" (a preset, then overrides)',
    )
    p.add_argument("--seed", type=int, help="seed the jitter, for repeatable runs")
    p.add_argument("--log-level", default="INFO", choices=_LOG_LEVELS)


def run_link_command(args: argparse.Namespace) -> int:
    """Run the proxy until SIGINT/SIGTERM; 0 then, or raise a CamoffloadError."""
    if args.profile is not None:
        profile = LinkProfile.preset(args.profile)
    else:
        profile = LinkProfile.parse(args.link_spec)
    scheme, upstream = _upstream(args.upstream)
    listen = _listen(args.listen)

    async def main(stop: asyncio.Event) -> int:
        async with ShapingProxy(upstream, profile, listen=listen, seed=args.seed) as proxy:
            # The one line a script reads: where to point the edge (same scheme: TLS
            # passes through untouched).
            print(f"{scheme}{proxy.url.removeprefix('mqtt')}", flush=True)
            stopped = asyncio.create_task(stop.wait(), name="link-stop")
            failed = asyncio.create_task(proxy.wait_closed(), name="link-failed")
            try:
                await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait([stopped, failed])
            if not failed.cancelled() and failed.exception() is not None:
                failed.result()  # raises the proxy's failure
            logger.info("link: %s", proxy.stats())
        return 0

    return run_with_signals(main)


def _upstream(text: str) -> tuple[str, tuple[str, int]]:
    parts = urlsplit(text if "://" in text else f"mqtt://{text}")
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--upstream {text!r}: use mqtt://HOST:PORT", key="upstream")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--upstream {text!r}: {exc}", key="upstream") from exc
    if not parts.hostname or parts.path not in ("", "/") or parts.username:
        raise ConfigError(
            f"--upstream {text!r}: want mqtt://HOST:PORT (no user, path or query)",
            key="upstream",
        )
    return parts.scheme, (parts.hostname, port or (8883 if parts.scheme == "mqtts" else 1883))


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {text!r}: want HOST:PORT, e.g. 127.0.0.1:0", key="listen")
    return host, int(port)
