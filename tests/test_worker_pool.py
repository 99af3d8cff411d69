"""``camoffload worker --processes N``: N workers on one shared subscription, each on
its share of the cores, restarted when one dies, all stopped by one SIGTERM, and none
outliving a SIGKILLed pool; a pool whose workers cannot start gives up with status 1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker import (
    BrokerInfo,
    free_port,
    hardened_broker,
    identities_from,
    init_broker_folder,
)
from camoffload.worker_pool import PoolSettings, child_argv, forwarded_options
from pipeline.children import supervised_child
from pipeline.config import load_config
from pipeline.cpus import available_cpus
from pipeline.mqtt import make_client, payload_bytes
from pipeline.protocol import WorkerStatus

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")


def test_the_pool_forwards_the_options_and_sets_each_childs_own() -> None:
    argv = [
        "worker", "--broker", "mqtt://127.0.0.1:1", "--processes", "3", "--worker-id", "gpu",
        "--model=null", "--metrics-port", "9100", "--no-pin", "--set", "prefix=p",
    ]  # fmt: skip
    forwarded = forwarded_options(argv)
    assert forwarded == ("--broker", "mqtt://127.0.0.1:1", "--model=null", "--set", "prefix=p")
    settings = PoolSettings(count=2, worker_id="gpu", forwarded=forwarded, metrics_port=9100)
    first, second = child_argv(settings, 0), child_argv(settings, 1)
    assert first[1:4] == ["-m", "camoffload", "worker"]
    assert first[first.index("--worker-id") + 1] == "gpu-1"
    assert second[second.index("--worker-id") + 1] == "gpu-2"
    assert (first[first.index("--metrics-port") + 1], second[-1]) == ("9100", "9101")
    cores = [a for a in (*first, *second) if a.startswith("worker.cpus=")]
    assert len(cores) == 2  # pinned by default, one share each
    if len(available_cpus()) >= 2:
        assert cores[0] != cores[1]
    unpinned = PoolSettings(count=2, worker_id="w", forwarded=(), pin=False, metrics_port=0)
    argv_unpinned = child_argv(unpinned, 1)
    assert not any(a.startswith("worker.cpus=") for a in argv_unpinned)
    assert "--threads" not in argv_unpinned
    assert argv_unpinned[-2:] == ["--metrics-port", "0"]  # 0: each picks a free port


class _Statuses:
    """Every retained and live worker status under ``prefix``, as (worker_id, online)."""

    def __init__(self, info: BrokerInfo, prefix: str) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.on_message = self._on_message
        host, port = info.url.removeprefix("mqtt://").split(":")
        self._client.connect(host, int(port))
        self._client.subscribe(f"{prefix}/status/workers/+", qos=1)
        self._client.loop_start()

    def _on_message(
        self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage
    ) -> None:
        try:
            status = WorkerStatus.from_bytes(message.payload)
        except Exception:  # noqa: BLE001 - a status topic's garbage is not this test's
            return
        with self._lock:
            self.seen.append((status.worker_id, status.online))

    def online(self) -> set[str]:
        """Workers whose latest status says online."""
        latest: dict[str, bool] = {}
        with self._lock:
            for worker_id, online in self.seen:
                latest[worker_id] = online
        return {w for w, online in latest.items() if online}

    def count(self, worker_id: str, online: bool) -> int:
        with self._lock:
            return sum(1 for w, o in self.seen if (w, o) == (worker_id, online))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def statuses(mosquitto: BrokerInfo, prefix: str) -> Iterator[_Statuses]:
    watcher = _Statuses(mosquitto, prefix)
    yield watcher
    watcher.close()


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:g} s: {what}")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def _pool(*options: str, stderr: int = subprocess.DEVNULL) -> Iterator[subprocess.Popen[bytes]]:
    """``camoffload worker --model null --processes 2`` with these options; killed on the
    way out if the test left it running."""
    argv = [
        sys.executable, "-m", "camoffload", "worker", "--model", "null", "--processes", "2",
        "--set", "worker.status_interval_s=0.2", "--log-level", "WARNING", *options,
    ]  # fmt: skip
    pool = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield pool
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait(timeout=30)


def _on(broker_url: str, prefix: str) -> tuple[str, ...]:
    return ("--broker", broker_url, "--worker-id", "pool", "--set", f"prefix={prefix}")


def _descendants(pid: int) -> list[int]:
    """The pool's supervisors and the workers they run."""
    return [p for s in _children(pid) for p in (s, supervised_child(s))]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_serve_restart_and_stop_together(
    mosquitto: BrokerInfo, prefix: str, statuses: _Statuses
) -> None:
    with _pool(*_on(mosquitto.url, prefix)) as pool:
        _wait_for(lambda: statuses.online() == {"pool-1", "pool-2"}, 120, "both workers online")
        supervisors = _children(pool.pid)
        assert len(supervisors) == 2
        workers = [supervised_child(s) for s in supervisors]
        assert all(_alive(w) for w in workers)

        # One worker dies hard: its will says offline, and the pool starts it again.
        os.kill(workers[0], signal.SIGKILL)
        _wait_for(lambda: statuses.online() != {"pool-1", "pool-2"}, 30, "the will's offline")
        _wait_for(lambda: statuses.online() == {"pool-1", "pool-2"}, 120, "the worker back")
        assert pool.poll() is None

        descendants = _descendants(pool.pid)
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=90) == 0
        _wait_for(lambda: not any(_alive(p) for p in descendants), 30, "every child gone")
        assert statuses.online() == set()  # each said goodbye (or its will did)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sigkilled_pool_takes_its_workers_with_it(
    mosquitto: BrokerInfo, prefix: str, statuses: _Statuses
) -> None:
    with _pool(*_on(mosquitto.url, prefix)) as pool:
        _wait_for(lambda: statuses.online() == {"pool-1", "pool-2"}, 120, "both workers online")
        descendants = _descendants(pool.pid)
        assert len(descendants) == 4
        pool.kill()
        pool.wait(timeout=30)
        # The supervisors see their parent gone within a second and stop the workers.
        _wait_for(lambda: not any(_alive(p) for p in descendants), 60, "every child gone")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_pool_whose_workers_cannot_start_gives_up(prefix: str) -> None:
    """Nothing listens on the broker's port: every child exits at once, and after five
    such exits running the pool stops with status 1 rather than loop for ever."""
    closed = (*_on("mqtt://127.0.0.1:1", prefix), "--set", "broker.connect_timeout_s=1")
    with _pool(*closed, stderr=subprocess.PIPE) as pool:
        _, stderr = pool.communicate(timeout=200)
    assert pool.returncode == 1
    assert b"giving up" in stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_pool_under_one_identity_reports_through_the_hardened_broker(
    tmp_path: Path,
) -> None:
    """The hardened broker's ACL lets a worker identity publish its pool's statuses
    (``<id>-1`` .. ``-N``): both processes come online there, with one password."""
    port = free_port()
    provisioned = init_broker_folder(
        tmp_path / "broker",
        identities_from(workers=["pooled"], dashboards=["watch"]),
        prefix=f"test-{uuid.uuid4().hex[:8]}",
        port=port,
    )
    worker_toml = provisioned.client("pooled").config_file
    watch = load_config(provisioned.client("watch").config_file, env={})

    async def online_statuses(stop_when: set[str]) -> set[str]:
        online: set[str] = set()
        async with make_client(watch.broker, client_id="watch") as c:
            await c.subscribe(watch.topics.worker_status_filter, qos=1)
            async with asyncio.timeout(120):
                async for message in c.messages:
                    status = WorkerStatus.from_bytes(payload_bytes(message))
                    if status.online:
                        online.add(status.worker_id)
                    if online >= stop_when:
                        return online
        return online

    with (
        hardened_broker(tmp_path / "broker", port=port),
        _pool("--config", str(worker_toml)) as pool,
    ):
        online = asyncio.run(online_statuses({"pooled-1", "pooled-2"}))
        assert online == {"pooled-1", "pooled-2"}
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(timeout=90) == 0
