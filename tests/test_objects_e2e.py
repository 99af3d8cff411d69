"""Objects through a real Mosquitto: an edge detecting on the shipped clip publishes
new / update / end per object with stable ids, retained snapshots with the object in
its box, and counts per label."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from pathlib import Path

import aiomqtt
import cv2
import numpy as np
import pytest

from camoffload.cli import main as cli_main
from camoffload.demo import default_video
from edge_node import EdgeNode, Ledger, VideoSource
from edge_node.ledger_objects import objects_in
from edge_node.ledger_rows import iter_frames
from edge_node.objects import SNAPSHOT_WIDTH
from pipeline.config import Config
from pipeline.detection import Detector, iou
from tests._helpers import client, detecting, running_worker

pytestmark = pytest.mark.timeout(240)


def test_objects_snapshots_and_counts_through_the_broker(
    config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = detecting(
        config,
        policy="threshold",
        zones="path: 0,0.3;1,0.3;1,1;0,1 | sky: 0,0;1,0;1,0.05;0,0.05",
        snapshot_dir=str(tmp_path / "snapshots"),
    )
    topics = cfg.topics
    edge = cfg.edge.edge_id
    events: list[dict[str, object]] = []
    snapshots: dict[str, bytes] = {}
    counts: dict[str, list[int]] = defaultdict(list)
    in_zones: dict[tuple[str, str], list[int]] = defaultdict(list)
    nobody_left = asyncio.Event()  # the person count went back to 0 after people
    run_ids: list[str] = []

    async def listen(c: aiomqtt.Client, ready: asyncio.Event) -> None:
        await c.subscribe(topics.objects(edge), qos=1)
        await c.subscribe(f"{topics.prefix}/snapshots/{edge}/+", qos=1)
        await c.subscribe(f"{topics.prefix}/counts/{edge}/+", qos=1)
        await c.subscribe(f"{topics.prefix}/zones/{edge}/+/+", qos=1)
        ready.set()
        async for message in c.messages:
            topic = message.topic.value
            payload = message.payload
            assert isinstance(payload, bytes)
            if topic == topics.objects(edge):
                events.append(json.loads(payload))
            elif "/snapshots/" in topic:
                snapshots[topic.rpartition("/")[2]] = payload
            elif "/zones/" in topic:
                *_, zone, label = topic.split("/")
                in_zones[zone, label].append(int(payload))
            else:
                label = topic.rpartition("/")[2]
                counts[label].append(int(payload))
                if label == "person" and counts[label][-1] == 0 and max(counts[label]) > 0:
                    nobody_left.set()

    async def scenario() -> None:
        async with running_worker(cfg), client(cfg) as watcher:
            ready = asyncio.Event()
            listener = asyncio.create_task(listen(watcher, ready))
            await ready.wait()
            ledger = Ledger(tmp_path / "ledger.sqlite")
            try:
                node = EdgeNode(cfg, VideoSource(str(default_video())), ledger)
                await node.run(max_frames=40)
            finally:
                ledger.close()
            run_ids.append(ledger.run_id)
            async with asyncio.timeout(30):  # the last events cross the broker
                await nobody_left.wait()
            listener.cancel()

    asyncio.run(scenario())
    by_id: dict[str, list[dict[str, object]]] = defaultdict(list)
    for event in events:
        after = event["after"]
        assert isinstance(after, dict)
        by_id[str(after["id"])].append(event)
    people = [i for i, life in by_id.items() if life[0]["after"]["label"] == "person"]  # type: ignore[index]
    assert len(people) >= 3  # the clip has 3-8 people in view at once
    for life in by_id.values():
        types = [e["type"] for e in life]
        assert types[0] == "new"
        assert types[-1] == "end"
        assert set(types[1:-1]) <= {"update"}
        assert life[0]["before"] is None
        for previous, event in itertools.pairwise(life):
            assert event["before"] == previous["after"]  # Frigate's before/after
        end = life[-1]["after"]
        assert isinstance(end, dict)
        assert end["end_time"] is not None
        assert end["end_time"] >= end["start_time"]
    assert counts["person"][-1] == 0  # every object ended with the run
    # Zones: people walk on the path, nobody in the sky; objects say where they went.
    assert max(in_zones["path", "person"]) >= 2
    assert in_zones["path", "person"][-1] == 0
    assert set(in_zones["sky", "person"]) == {0}
    ends = [e["after"] for e in events if e["type"] == "end"]
    assert any("path" in end["entered_zones"] for end in ends)  # type: ignore[index]
    # Snapshots on disk, named by the objects' ids.
    on_disk = {p.name for p in (tmp_path / "snapshots").iterdir()}
    assert on_disk
    assert all(name.startswith(f"{edge}-") and name.endswith(".jpg") for name in on_disk)
    ids = {name.removeprefix(f"{edge}-").rsplit("-", 1)[0] for name in on_disk}
    assert ids <= set(by_id)
    # The ledger keeps what the tracker needs: replaying it names the same objects.
    replayed = objects_in(iter_frames(tmp_path / "ledger.sqlite", run_id=run_ids[0]))
    assert {o.id for o in replayed} == set(by_id)
    assert cli_main(["ledger", "summary", str(tmp_path / "ledger.sqlite")]) == 0
    listing = capsys.readouterr().out
    assert f"objects seen      {len(people)} person" in listing
    assert max(counts["person"]) >= 3

    jpeg = snapshots["person"]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[1] <= SNAPSHOT_WIDTH
    # The snapshot is the best frame of one of the person objects: find which, by the
    # picture itself, and check the reference detector finds a person in its box there.
    source = VideoSource(str(default_video()))
    originals = [source.read() for _ in range(40)]
    source.close()
    matches = []
    for event in events:
        after = event["after"]
        assert isinstance(after, dict)
        shot = after["snapshot"]
        if after["label"] != "person":
            continue
        original = originals[shot["frame"]]
        assert original is not None
        small = cv2.resize(original.image, (image.shape[1], image.shape[0]))
        if cv2.PSNR(small, image) > 25:  # the same frame (the box aside)
            matches.append((original.image, tuple(shot["box"])))
    assert matches, "the snapshot is no person object's best frame"
    reference = Detector.by_name("nanodet_coco")
    assert any(
        iou(box, d.box) >= 0.5
        for frame, box in matches
        for d in reference.detect_one(frame)
        if d.name == "person"
    )
