"""Pinning workers to cores: parsing ``worker.cpus``, sharing cores out, and a real
worker process that ends up on the cores it was given."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest

from camoffload.processes import WorkerGroup, WorkerSettings
from pipeline import cpus as cpus_module
from pipeline.config import Config, load_config
from pipeline.cpus import cpu_shares, format_cpus, parse_cpus
from pipeline.errors import ConfigError


def test_cpu_lists_parse_and_print() -> None:
    with pytest.raises(ConfigError):
        parse_cpus("")
    assert parse_cpus("0") == {0}
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}
    assert parse_cpus(" 1 , 3 ") == {1, 3}
    assert format_cpus(parse_cpus("3,0-1")) == "0,1,3"


@pytest.mark.parametrize("bad", ["a", "2-1", "-1", "1-", "0,,1", "1.5", ","])
def test_malformed_cpu_lists_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"worker\.cpus"):
        parse_cpus(bad)
    with pytest.raises(ConfigError, match=r"worker\.cpus"):
        load_config(env={}, overrides=[f"worker.cpus={bad}"])


def test_cores_are_shared_out_evenly_and_contiguously(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus_module, "available_cpus", lambda: [0, 1, 2, 3, 4])
    assert cpu_shares(1) == [{0, 1, 2, 3, 4}]
    assert cpu_shares(2) == [{0, 1, 2}, {3, 4}]
    assert cpu_shares(5) == [{0}, {1}, {2}, {3}, {4}]
    assert cpu_shares(7) == [{0}, {1}, {2}, {3}, {4}, {0}, {1}]  # more workers than cores


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_a_pinned_worker_process_runs_on_its_share(config: Config) -> None:
    config = dataclasses.replace(
        config, worker=dataclasses.replace(config.worker, model="fmnist_exit_resnet")
    )
    settings = WorkerSettings(model="fmnist_exit_resnet", count=2, pin=True, group_tag="pin")
    group = WorkerGroup(config, settings)

    async def scenario() -> list[set[int]]:
        await group.start()
        try:
            return [os.sched_getaffinity(pid) for pid in group.pids.values()]
        finally:
            await group.stop()

    assert asyncio.run(scenario()) == [set(share) for share in cpu_shares(2)]
