"""Switching an edge at run time over MQTT: offloading, the policy, the labels watched.

    {p}/control/{edge_id}/offload/set    ON | OFF
    {p}/control/{edge_id}/policy/set     cloud-only | local-only | threshold (| entropy |
                                         router, for a classifier with what they need)
    {p}/control/{edge_id}/detect/set     labels to watch: a JSON list or "person,car"
    {p}/control/{edge_id}/<feature>/state   retained: the value in force

Frigate's ``<camera>/<feature>/set`` and ``/state``, under one ``control`` subtree so a
broker's ACLs can give the dashboard and Home Assistant write access to it alone. A
payload that does not parse, or asks for what this edge cannot do (a threshold policy
with no local model, a label no detector knows), is refused: the state is unchanged,
re-published as it is, and the log says why (the first refusal and then every
100th, so a flood cannot fill the log).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from edge_node.policies import policy_from_config
from edge_node.triage import Triage
from pipeline.config import EdgeConfig
from pipeline.detection import COCO_LABELS
from pipeline.errors import CamoffloadError, ConfigError, ProtocolError, TransportError
from pipeline.mqtt import payload_bytes
from pipeline.service import publish
from pipeline.topics import Topics

__all__ = ["FEATURES", "EdgeControls"]

logger = logging.getLogger(__name__)

FEATURES = ("offload", "policy", "detect")
MAX_PAYLOAD = 1024
MAX_LABELS = 32
_KNOWN_LABELS = frozenset(COCO_LABELS)


class EdgeControls:
    def __init__(
        self,
        cfg: EdgeConfig,
        topics: Topics,
        triage: Triage,
        *,
        on_labels: Callable[[frozenset[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._cfg = cfg
        self._topics = topics
        self._triage = triage
        self._on_labels = on_labels
        self.offload = True
        self.policy: str = cfg.policy
        self.labels: tuple[str, ...] = tuple(cfg.detect_classes)
        self.refused = 0

    @property
    def set_filter(self) -> str:
        return self._topics.control_set_filter(self._cfg.edge_id)

    def is_for(self, topic: str) -> bool:
        """Whether ``topic`` is one of this edge's set topics."""
        return topic.startswith(self.set_filter[: -len("+/set")])

    def hold_reason(self) -> str | None:
        """Why offloading is held back by a control, or None."""
        return None if self.offload else "offloading switched off"

    def state(self, feature: str) -> str:
        if feature == "offload":
            return "ON" if self.offload else "OFF"
        if feature == "policy":
            return self.policy
        return json.dumps(list(self.labels))

    async def announce(self, client: aiomqtt.Client) -> None:
        for feature in FEATURES:
            await self._publish_state(client, feature)

    async def on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        feature = message.topic.value.split("/")[-2]
        try:
            self._apply(feature, _text(feature, payload_bytes(message)))
            if feature == "detect" and self._on_labels is not None:
                await self._on_labels(frozenset(self.labels))
        except (ConfigError, ProtocolError) as why:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                logger.warning(
                    "edge %s: %s/set refused (%d so far): %s",
                    self._cfg.edge_id,
                    feature,
                    self.refused,
                    why,
                )
            if feature not in FEATURES:
                return
        await self._publish_state(client, feature)

    def _apply(self, feature: str, text: str) -> None:
        if feature == "offload":
            if text.upper() not in ("ON", "OFF"):
                raise ConfigError(f"offload takes ON or OFF, not {text[:40]!r}")
            self.offload = text.upper() == "ON"
        elif feature == "policy":
            self._set_policy(text)
        else:
            self._set_labels(text)
        logger.info("edge %s: %s set to %s", self._cfg.edge_id, feature, self.state(feature))

    def _set_policy(self, name: str) -> None:
        detection = self._triage.detection_policy
        if detection is not None:
            if name not in ("cloud-only", "local-only", "threshold"):
                raise ConfigError(
                    "a detecting edge's policy is cloud-only, local-only or threshold, "
                    f"not {name[:40]!r}"
                )
            if name != "cloud-only" and self._triage.local_name is None:
                raise ConfigError(f"policy {name} needs a local detector; this edge has none")
            detection.mode = name
        else:
            try:
                asked = dataclasses.replace(self._cfg, policy=name)  # type: ignore[arg-type]
                policy = policy_from_config(asked)
            except (CamoffloadError, ValueError, TypeError) as exc:
                raise ConfigError(f"policy {name[:40]!r}: {exc}") from exc
            if policy.needs_local_model and self._triage.local is None:
                raise ConfigError(f"policy {name} needs a local model; this edge has none")
            self._triage.policy = policy
        self.policy = name

    def _set_labels(self, text: str) -> None:
        try:
            parsed = json.loads(text) if text.startswith("[") else text.split(",")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"labels: {exc}") from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise ConfigError("labels are a JSON list of strings or a comma-separated list")
        labels = tuple(dict.fromkeys(x.strip() for x in parsed if x.strip()))
        if not labels or len(labels) > MAX_LABELS:
            raise ConfigError(f"1-{MAX_LABELS} labels, not {len(labels)}")
        unknown = [x for x in labels if x not in _KNOWN_LABELS]
        if unknown:
            raise ConfigError(f"no detector knows {', '.join(unknown[:5])}")
        detection = self._triage.detection_policy
        if detection is None:
            raise ConfigError("this edge classifies; it watches no labels")
        detection.watch(labels)
        self.labels = labels

    async def _publish_state(self, client: aiomqtt.Client, feature: str) -> None:
        topic = self._topics.control(self._cfg.edge_id, feature, "state")
        with contextlib.suppress(TransportError):  # the next change or connection re-sends it
            await publish(client, topic, self.state(feature), qos=1, retain=True)


def _text(feature: str, data: bytes | bytearray | memoryview) -> str:
    """A set message's payload as text; :class:`ConfigError` if it cannot be one."""
    if feature not in FEATURES:
        raise ConfigError(f"no such feature {feature!r} (features: {', '.join(FEATURES)})")
    if len(data) > MAX_PAYLOAD:
        raise ConfigError(f"a {len(data)}-byte payload (at most {MAX_PAYLOAD})")
    try:
        return bytes(data).decode().strip()
    except UnicodeDecodeError:
        raise ConfigError("the payload is not UTF-8 text") from None
