"""pipeline.heap: start-up objects leave the collector's generations, garbage does not
survive into the frozen set, and the worker and the edge freeze (or not) as configured.

Each test starts from an unfrozen heap and leaves one behind: freezing is process-wide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import weakref
from collections.abc import Iterator

import pytest

from edge_node import EdgeNode, Ledger
from edge_node.sources import DatasetSource
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier
from tests._helpers import running_worker

MODEL = "fmnist_exit_resnet"
needs_fashion_mnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


@pytest.fixture(autouse=True)
def unfrozen_heap() -> Iterator[None]:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _tracked(obj: object) -> bool:
    # gc.get_objects() lists generations 0-2 only: a frozen object is not among them.
    return any(tracked is obj for tracked in gc.get_objects())


def test_live_objects_are_frozen_and_dead_cycles_are_collected_first() -> None:
    live = _Node()
    dead = _Node()
    dead.other = _Node()
    dead.other.other = dead  # a cycle only the cyclic collector frees
    dead_ref = weakref.ref(dead)
    del dead
    assert dead_ref() is not None
    assert _tracked(live)

    frozen = freeze_heap()

    assert dead_ref() is None  # collected, not frozen for the life of the process
    assert frozen == gc.get_freeze_count() > 0
    assert not _tracked(live)
    gc.collect()
    assert live.other is None  # still usable: reference counting is untouched


@needs_fashion_mnist
@pytest.mark.parametrize("freeze", [True, False])
def test_the_worker_freezes_its_heap_once_its_model_is_loaded(config: Config, freeze: bool) -> None:
    cfg = dataclasses.replace(
        config, worker=dataclasses.replace(config.worker, model=MODEL, freeze_heap=freeze)
    )

    async def scenario() -> int:
        async with running_worker(cfg, Classifier.by_name(MODEL)):
            return gc.get_freeze_count()

    frozen = asyncio.run(scenario())
    assert (frozen > 0) is freeze


@needs_fashion_mnist
@pytest.mark.parametrize("freeze", [True, False])
def test_the_edge_freezes_its_heap_once_its_local_model_is_loaded(
    config: Config, freeze: bool
) -> None:
    edge = dataclasses.replace(
        config.edge, local_model=MODEL, model=MODEL, policy="local-only", freeze_heap=freeze
    )
    cfg = dataclasses.replace(config, edge=edge)

    async def scenario() -> int:
        summary = await EdgeNode(cfg, DatasetSource(limit=3), Ledger()).run()
        assert summary.by_decision == {"local": 3}
        return gc.get_freeze_count()

    frozen = asyncio.run(scenario())
    assert (frozen > 0) is freeze
