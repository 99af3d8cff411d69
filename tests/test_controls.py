"""Control topics through a real Mosquitto: offloading switched off and on at run time
with retained state echoes; malformed or impossible set payloads change nothing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from pathlib import Path

import aiomqtt
import pytest

from edge_node import EdgeNode, Ledger
from edge_node.ledger_rows import iter_frames
from edge_node.sources import DatasetSource
from pipeline.config import Config
from pipeline.inference import Classifier
from tests._helpers import client, running_worker

pytestmark = pytest.mark.timeout(240)

MODEL = "fmnist_exit_resnet"
FEATURES = ("offload", "policy", "detect")


def _config(config: Config) -> Config:
    return dataclasses.replace(
        config,
        edge=dataclasses.replace(
            config.edge, model=MODEL, local_model=MODEL, policy="cloud-only", rate="40"
        ),
        worker=dataclasses.replace(config.worker, model=MODEL),
    )


def test_offloading_is_switched_off_and_on_and_bad_payloads_change_nothing(
    config: Config, tmp_path: Path
) -> None:
    cfg = _config(config)
    edge = cfg.edge.edge_id
    states: dict[str, list[str]] = defaultdict(list)
    decided = [0]  # frames announced on the events topic
    changed = asyncio.Condition()

    def control(feature: str, action: str) -> str:
        return cfg.topics.control(edge, feature, action)

    async def listen(c: aiomqtt.Client) -> None:
        async for message in c.messages:
            assert isinstance(message.payload, bytes)
            async with changed:
                if message.topic.value == cfg.topics.events(edge):
                    decided[0] += 1
                else:
                    states[message.topic.value.split("/")[-2]].append(message.payload.decode())
                changed.notify_all()

    async def frames(more: int) -> None:
        """Until ``more`` further frames are decided."""
        async with asyncio.timeout(60), changed:
            target = decided[0] + more
            await changed.wait_for(lambda: decided[0] >= target)

    async def state_after(c: aiomqtt.Client, feature: str, payload: str | bytes) -> str:
        """Publish a set message; the state the edge echoes for it."""
        async with changed:
            seen = len(states[feature])
        await c.publish(control(feature, "set"), payload, qos=1)
        async with asyncio.timeout(30), changed:
            await changed.wait_for(lambda: len(states[feature]) > seen)
            return states[feature][-1]

    async def scenario() -> tuple[EdgeNode, str]:
        ledger = Ledger(tmp_path / "ledger.sqlite")
        node = EdgeNode(cfg, DatasetSource(limit=100_000), ledger)
        stop = asyncio.Event()
        async with running_worker(cfg, Classifier.by_name(MODEL)), client(cfg) as c:
            await c.subscribe(f"{cfg.topics.prefix}/control/{edge}/+/state", qos=1)
            await c.subscribe(cfg.topics.events(edge), qos=0)
            listener = asyncio.create_task(listen(c))
            running = asyncio.create_task(node.run(stop=stop))
            try:
                await drive(c)
            finally:
                stop.set()
                await running
                listener.cancel()
        return node, ledger.run_id

    async def drive(c: aiomqtt.Client) -> None:
        async with asyncio.timeout(60), changed:  # the retained states on connect
            await changed.wait_for(lambda: all(states[f] for f in FEATURES))
        assert states["offload"][-1] == "ON"
        assert states["policy"][-1] == "cloud-only"
        assert states["detect"][-1] == '["person"]'

        await frames(20)
        assert await state_after(c, "offload", "OFF") == "OFF"
        await frames(20)
        assert await state_after(c, "offload", "maybe") == "OFF"  # refused
        assert await state_after(c, "offload", b"\xff\xfe") == "OFF"  # not text
        assert await state_after(c, "policy", "threshold") == "threshold"
        assert await state_after(c, "policy", "bogus") == "threshold"  # refused
        assert await state_after(c, "detect", '["person"]') == '["person"]'  # classifying
        assert await state_after(c, "offload", "on") == "ON"
        await frames(20)

    node, run_id = asyncio.run(scenario())
    assert node.controls.refused == 4  # maybe, the bytes, bogus, a label on a classifier
    details = [r.detail for r in iter_frames(tmp_path / "ledger.sqlite", run_id=run_id)]
    decisions = [r.decision for r in iter_frames(tmp_path / "ledger.sqlite", run_id=run_id)]
    switched_off = [i for i, d in enumerate(details) if d == "offloading switched off"]
    assert len(switched_off) >= 10
    assert "cloud" in decisions[: switched_off[0]]  # offloading before OFF
    assert "cloud" in decisions[switched_off[-1] :]  # and again after ON
