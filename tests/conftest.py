"""Shared fixtures: a real Mosquitto on an ephemeral port, a unique topic prefix per
test, real frames from OpenCV's surveillance clip, and the real cloud model."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from broker import BrokerInfo, mosquitto_broker
from camoffload.demo import default_video
from edge_node import VideoSource
from pipeline.config import Config, load_config
from pipeline.inference import Classifier


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[BrokerInfo]:
    """One real Mosquitto for the session (tests isolate themselves by topic prefix)."""
    with mosquitto_broker(port=0) as info:
        yield info


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def config(mosquitto: BrokerInfo, prefix: str) -> Config:
    return load_config(
        env={},
        overrides=[
            f"broker.url={mosquitto.url}",
            f"prefix={prefix}",
            "edge.deadline_ms=5000",
            "worker.status_interval_s=0.2",
        ],
    )


def with_broker(config: Config, info: BrokerInfo) -> Config:
    """``config`` pointed at another broker (e.g. the embedded one)."""
    return dataclasses.replace(
        config,
        broker=dataclasses.replace(config.broker, url=info.url, protocol=info.protocol),
        worker=dataclasses.replace(config.worker, shared_subscription=info.shared_subscriptions),
    )


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    """The first 12 frames of vtest.avi (768x576 BGR)."""
    source = VideoSource(str(default_video()))
    try:
        out = []
        while len(out) < 12:
            frame = source.read()
            assert frame is not None
            out.append(frame.image)
        return out
    finally:
        source.close()


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    return Classifier.by_name("efficientnet_lite0", "cpu")
