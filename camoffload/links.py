"""An emulated link between an edge and its broker, for replays and experiments."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from pipeline.config import Config

__all__ = ["shaped_link"]


@contextlib.asynccontextmanager
async def shaped_link(config: Config, profile: str | None) -> AsyncIterator[Config]:
    """``config`` with its broker reached through a shaping proxy running ``profile`` (a
    preset name or a link spec such as ``rate=2mbit,delay=40ms``); ``None`` or
    ``"direct"``: the config unchanged."""
    if profile is None or profile == "direct":
        yield config
        return
    from camoffload.netem import LinkProfile, ShapingProxy

    link = LinkProfile.parse(profile)
    upstream = (config.broker.host, config.broker.port)
    async with ShapingProxy(upstream=upstream, profile=link) as proxy:
        yield dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=proxy.url))
