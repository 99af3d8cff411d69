"""The README's demo command, run for real as a subprocess: summary, brokers, Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import BrokerInfo
from camoffload.demo import default_video
from pipeline.config import load_config
from pipeline.protocol import WorkerStatus
from tests._helpers import client, next_message

REPO = Path(__file__).resolve().parents[1]


def _camoffload(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camoffload", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def _background(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``camoffload ARGS`` as a child with piped output, killed by pid if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "camoffload", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _field(output: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}\s+(.+)$", output, re.MULTILINE)
    assert match, f"{name!r} not in summary:\n{output}"
    return match.group(1).strip()


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_demo_prints_a_summary_with_every_frame_decided_once(kind: str) -> None:
    # A generous deadline: this checks the summary, not latency on a loaded CI box
    # (the first batch also pays the model's warm-up).
    done = _camoffload(
        "demo",
        "--frames",
        "12",
        "--task",
        "classify",
        "--broker-kind",
        kind,
        "--log-level",
        "WARNING",
        "--set",
        "edge.deadline_ms=10000",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"via {kind}" in out
    assert _field(out, "frames") == "12"
    assert _field(out, "answered") == "12"
    assert _field(out, "undecided") == "0"
    assert _field(out, "decided exactly once") == "yes"
    assert _field(out, "round trip p50").endswith("ms")
    assert "people in view" not in out  # classification says nothing of people
    if kind == "embedded":
        assert "no shared subscriptions" in done.stderr  # the log says what it lacks


def test_the_default_demo_is_a_security_camera(tmp_path: Path) -> None:
    """People seen (the clip has 3-8 in every frame) and an annotated frame written."""
    done = _camoffload(
        "demo", "--frames", "12", "--out", str(tmp_path), "--set", "edge.deadline_ms=10000"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "model nanodet_coco" in out
    assert _field(out, "decided exactly once") == "yes"
    assert _field(out, "answered") == _field(out, "offloaded")  # every offload answered
    people = re.match(r"up to (\d+) at once, 0\.0-", _field(out, "people in view"))
    assert people is not None
    assert 3 <= int(people.group(1)) <= 9
    snapshot = Path(_field(out, "annotated frame"))
    assert snapshot.parent == tmp_path
    assert snapshot.suffix == ".jpg"
    assert snapshot.stat().st_size > 10_000
    assert (tmp_path / "ledger.sqlite").is_file()
    assert re.search(r"^objects seen +\d+ person", out, re.MULTILINE)


def test_demo_against_a_running_broker(mosquitto: BrokerInfo) -> None:
    done = _camoffload(
        "demo",
        "--frames",
        "5",
        "--task",
        "classify",
        "--broker",
        mosquitto.url,
        "--set",
        "prefix=demo-ext",
        "--set",
        "edge.deadline_ms=10000",
    )
    assert done.returncode == 0, done.stderr
    assert f"via {mosquitto.url}" in done.stdout
    assert _field(done.stdout, "answered") == "5"


def _communicate_or_dump(proc: subprocess.Popen[str], timeout_s: float) -> tuple[str, str]:
    """``proc.communicate``; if it hangs, fail with every thread's stack (SIGUSR1)."""
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # camoffload's faulthandler dumps the stacks
        time.sleep(2)
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no exit {timeout_s:g} s after the signal; stacks:\n{err[-20000:]}")


def test_ctrl_c_stops_the_demo_cleanly_with_a_summary() -> None:
    args = ("demo", "--frames", "100000", "--broker-kind", "mosquitto", "--set", "edge.rate=20")
    with _background(*args) as proc:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        seen = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen += line
            if "serving" in line:  # the worker is up; frames are flowing
                break
        else:
            pytest.fail(f"demo never became ready:\n{seen}")
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = _communicate_or_dump(proc, timeout_s=60)
    assert proc.returncode == 0, err
    captured = int(_field(out, "frames"))
    assert 0 < captured < 100000
    assert _field(out, "decided exactly once") == "yes"
    started = re.search(r"mosquitto broker pid (\d+) listening", seen + err)
    assert started is not None
    assert f"mosquitto broker pid {started.group(1)} stopped" in err
    assert not Path(f"/proc/{started.group(1)}").exists()


def test_validate_config_and_bad_config() -> None:
    ok = _camoffload("worker", "--validate-config", "--set", "worker.max_batch=4")
    assert ok.returncode == 0
    assert "max_batch = 4" in ok.stdout
    bad = _camoffload("edge", "x.avi", "--set", "edge.qos=7")
    assert bad.returncode == 1
    assert "edge.qos must be 0, 1 or 2" in bad.stderr
    missing = _camoffload("edge", "/nonexistent.avi", "--frames", "1")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_unreachable_broker_is_a_clear_error() -> None:
    done = _camoffload(
        "edge",
        str(default_video()),
        "--broker",
        "mqtt://127.0.0.1:9",
        "--frames",
        "1",
        "--set",
        "broker.connect_timeout_s=1.5",
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot connect to the broker" in done.stderr


def test_worker_stops_on_sigterm_and_marks_itself_offline(mosquitto: BrokerInfo) -> None:
    prefix = "sigterm-test"
    args = (
        "worker",
        "--broker",
        mosquitto.url,
        "--set",
        f"prefix={prefix}",
        "--set",
        "worker.worker_id=w-term",
    )
    with _background(*args) as proc:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "serving" not in proc.stderr.readline():
            pass
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "w-term offline" in err

    config = load_config(env={}, overrides=[f"broker.url={mosquitto.url}", f"prefix={prefix}"])

    async def retained() -> WorkerStatus:
        async with client(config) as watcher:
            await watcher.subscribe(config.topics.worker_status("w-term"), qos=1)
            return WorkerStatus.from_bytes((await next_message(watcher)).payload)  # type: ignore[arg-type]

    assert asyncio.run(retained()).online is False


@pytest.mark.parametrize("kind", ["mosquitto", "embedded"])
def test_broker_command_runs_in_the_foreground_until_ctrl_c(kind: str) -> None:
    with _background("broker", "--kind", kind, "--port", "0") as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (mqtt://127\.0\.0\.1:\d+)", line)
        assert match, line
        config = load_config(
            env={},
            overrides=[
                f"broker.url={match.group(1)}",
                f"broker.protocol={'5' if kind == 'mosquitto' else '3.1.1'}",
            ],
        )

        async def ping() -> bytes:
            async with client(config) as c:
                await c.subscribe("ping", qos=1)
                await c.publish("ping", b"pong", qos=1)
                payload = (await next_message(c)).payload
                assert isinstance(payload, bytes)
                return payload

        assert asyncio.run(ping()) == b"pong"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err


def test_edge_command_against_a_worker_command_shows_status_and_summary(
    mosquitto: BrokerInfo,
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    common = ("--broker", mosquitto.url, "--set", f"prefix={prefix}")
    with _background("worker", *common, "--max-batch", "4") as worker:
        assert worker.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "serving" not in worker.stderr.readline():
            pass
        done = _camoffload(
            "edge",
            "--source",
            str(default_video()),
            "--frames",
            "24",
            *common,
            "--rate",
            "12",
            "--set",
            "edge.status_interval_s=0.25",
            "--set",
            "edge.deadline_ms=5000",
        )
        worker.send_signal(signal.SIGTERM)
        _communicate_or_dump(worker, timeout_s=30)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^frames\s+24$", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^answered\s+24$", done.stdout, re.MULTILINE), done.stdout
    assert "decided exactly once  yes" in done.stdout
    status_lines = [line for line in done.stderr.splitlines() if " fps | " in line]
    assert status_lines, done.stderr  # the live line, once per interval (plain when piped)
