"""What an edge says about itself: its retained status (with a last will saying
offline), the console status line, its metrics, and Home Assistant discovery and state.
One stats snapshot per status interval feeds all of them."""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import Callable

import aiomqtt

from edge_node.homeassistant import discovery_messages, ha_state_topic, state_payload
from edge_node.homeassistant_objects import object_discovery, object_removal
from edge_node.ledger_keeper import LedgerKeeper
from edge_node.metrics import EdgeMetrics
from edge_node.stats import EdgeStats, EdgeStatsSnapshot, format_status_line
from edge_node.tracker import watched_labels
from edge_node.zones import parse_zones
from pipeline.config import Config
from pipeline.errors import TransportError
from pipeline.protocol import EdgeStatus
from pipeline.service import RetainedStatus, publish

__all__ = ["EdgeReporter"]


class EdgeReporter:
    def __init__(
        self,
        config: Config,
        *,
        ledger: LedgerKeeper,
        stats: EdgeStats,
        metrics: EdgeMetrics,
        in_flight: Callable[[], int],
        client: Callable[[], aiomqtt.Client | None],
        on_status: Callable[[str], None] | None,
    ) -> None:
        self._config = config
        self._cfg = config.edge
        self._edge_id = config.edge.edge_id
        # The object labels a detecting edge reports (and Home Assistant shows).
        self.watched = watched_labels(config.edge.detect_classes)
        self._zones = (
            tuple(z.name for z in parse_zones(config.edge.zones)) if config.edge.zones else ()
        )
        self._ledger = ledger
        self._stats = stats
        self._metrics = metrics
        self._in_flight = in_flight
        self._client = client
        self._on_status = on_status
        self.status = RetainedStatus(
            config.topics.edge_status(self._edge_id),
            self._render,
            interval_s=self._cfg.status_interval_s,
        )

    def _render(self, online: bool) -> bytes:
        return self._encode(online, self._stats.snapshot())

    def _encode(self, online: bool, snap: EdgeStatsSnapshot) -> bytes:
        counts = self._ledger.counts()
        return EdgeStatus(
            edge_id=self._edge_id,
            online=online,
            ts=time.time(),
            captured=counts.captured,
            in_flight=self._in_flight(),
            offloaded=counts.offloaded,
            decided=counts.decided,
            skipped=snap.skipped,
            dropped=snap.dropped,
            bytes_sent=snap.bytes_sent,
            capture_fps=snap.capture_fps,
            skipped_fps=snap.skipped_fps,
            offload_share=snap.offload_share or 0.0,
            rtt_ms_p50=snap.rtt_ms_p50,
            connected=self._client() is not None,
            rtt_ms_p95=snap.rtt_ms_p95,
            bytes_per_s=snap.bytes_per_s,
        ).to_bytes()

    async def announce(self, client: aiomqtt.Client) -> None:
        """On every connection: online, and Home Assistant discovery when enabled."""
        await self.publish(online=True)
        if self._cfg.homeassistant:
            messages = discovery_messages(
                self._config.prefix,
                self._edge_id,
                discovery_prefix=self._cfg.homeassistant_prefix,
                version=_package_version(),
            )
            if self._cfg.task == "detect":
                messages += object_discovery(
                    self._config.prefix,
                    self._edge_id,
                    self.watched,
                    zones=self._zones,
                    discovery_prefix=self._cfg.homeassistant_prefix,
                    version=_package_version(),
                )
            for topic, payload in messages:
                await publish(client, topic, payload, qos=1, retain=True)

    async def watch(self, labels: frozenset[str]) -> None:
        """The labels watched changed: Home Assistant loses the entities of the labels
        dropped and gains those of the labels added."""
        dropped = self.watched - labels
        self.watched = labels
        client = self._client()
        if not self._cfg.homeassistant or client is None:
            return
        messages = object_removal(
            self._edge_id,
            dropped,
            zones=self._zones,
            with_controls=False,
            discovery_prefix=self._cfg.homeassistant_prefix,
        )
        messages += object_discovery(
            self._config.prefix,
            self._edge_id,
            labels,
            zones=self._zones,
            discovery_prefix=self._cfg.homeassistant_prefix,
            version=_package_version(),
        )
        with contextlib.suppress(TransportError):  # the next connection announces them
            for topic, payload in messages:
                await publish(client, topic, payload, qos=1, retain=True)

    async def publish(self, *, online: bool, snapshot: EdgeStatsSnapshot | None = None) -> None:
        client = self._client()
        if client is None:
            return
        snapshot = snapshot or self._stats.snapshot()
        self._metrics.set_in_flight(self._in_flight())
        self._metrics.update(snapshot)
        # A lost connection is the link's to report, not ours.
        with contextlib.suppress(TransportError):
            await self.status.publish(
                client, online=online, rendered=self._encode(online, snapshot)
            )
            if self._cfg.homeassistant:
                await publish(
                    client,
                    ha_state_topic(self._config.prefix, self._edge_id),
                    state_payload(snapshot, online=online),
                    qos=0,
                    # Not retained: a restarted Home Assistant must not show a dead
                    # edge's last figures as current; the next state comes in a second.
                    retain=False,
                )

    async def run(self) -> None:
        """Every status interval: the console line, then the status and metrics."""

        async def tick() -> None:
            # One snapshot per interval for the console line, the status and the metrics.
            snapshot = self._stats.snapshot()
            if self._on_status is not None:
                self._on_status(format_status_line(snapshot))
            await self.publish(online=True, snapshot=snapshot)

        await self.status.every_interval(tick)


def _package_version() -> str:
    try:
        return importlib.metadata.version("camoffload")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # running from a checkout that was never installed
