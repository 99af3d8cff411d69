"""The dashboard in a real browser: a real Mosquitto, a worker, an edge replaying the
shipped clip and ``camoffload dashboard``, each its own process, and headless Chromium
on the page. The edge and the worker appear, counts move, a click switches the edge's
offloading through the broker (the edge's retained state echoes it), a snapshot shows,
and a SIGKILLed worker turns offline by its last will."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker import BrokerInfo
from camoffload.demo import default_video
from tests.chromium import Chromium, find_chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (apt chromium)"),
]

EDGE, WORKER = "door", "gpu-1"


@contextmanager
def _process(argv: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m camoffload argv``, in its own process group, stopped by pid at exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "camoffload", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def _url_in(log: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"camoffload dashboard: (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"the dashboard never said where it serves:\n{log.read_text()[-2000:]}")


def _card(field: str) -> str:
    return f'document.querySelector(\'[data-edge="{EDGE}"] [data-field="{field}"]\')'


def test_the_page_shows_edges_and_workers_live_and_switches_an_edge(
    mosquitto: BrokerInfo, prefix: str, tmp_path: Path
) -> None:
    common = [
        "--broker",
        mosquitto.url,
        "--set",
        f"prefix={prefix}",
        "--set",
        "broker.keepalive_s=5",
    ]
    worker_argv = ["worker", *common, "--set", f"worker.worker_id={WORKER}",
                   "--set", "worker.model=nanodet_coco", "--set", "worker.threads=1",
                   "--set", "worker.status_interval_s=0.5"]  # fmt: skip
    # Two frames a second: the clip's 150 frames last the whole test.
    edge_argv = ["edge", str(default_video()), *common, "--edge-id", EDGE, "--quiet",
                 "--set", "edge.task=detect", "--local-model", "ssdlite_person",
                 "--model", "nanodet_coco", "--policy", "threshold", "--rate", "2",
                 "--set", "edge.status_interval_s=0.5",
                 "--ledger", str(tmp_path / "edge.sqlite")]  # fmt: skip
    dashboard_argv = ["dashboard", "--broker", mosquitto.url, "--set", f"prefix={prefix}",
                      "--port", "0"]  # fmt: skip
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "edge", "dashboard")}
    with (
        _process(worker_argv, logs["worker"], tmp_path) as worker,
        _process(dashboard_argv, logs["dashboard"], tmp_path) as dashboard,
        _process(edge_argv, logs["edge"], tmp_path),
        Chromium(width=1400, height=1250) as browser,
    ):
        try:
            url = _url_in(logs["dashboard"], dashboard, timeout_s=60)
            browser.goto(url)
            # Both appear (the worker loads NanoDet, the edge SSDLite: allow for a slow box).
            browser.wait_for(f"{_card('online')}?.textContent === 'online'", timeout=120)
            row = f"document.querySelector('[data-worker=\"{WORKER}\"]')"
            browser.wait_for(f"{row}?.dataset.online === 'yes'", timeout=120)
            assert browser.evaluate(f"{row}.textContent").count("nanodet_coco") == 1

            # Counts move.
            decided = f"Number({_card('decided')}.textContent.replace(/[^0-9]/g, ''))"
            first = browser.evaluate(decided)
            browser.wait_for(f"{decided} > {first}", timeout=60)
            browser.wait_for("document.querySelectorAll('#feed li').length > 0", timeout=60)

            # A click switches offloading through the broker, and back.
            button = f'document.querySelector(\'[data-edge="{EDGE}"] [data-control="offload"]\')'
            browser.wait_for(f"{button}.dataset.state === 'ON'", timeout=60)
            browser.click(f'[data-edge="{EDGE}"] [data-control="offload"]')
            browser.wait_for(f"{button}.dataset.state === 'OFF'", timeout=60)
            browser.click(f'[data-edge="{EDGE}"] [data-control="offload"]')
            browser.wait_for(f"{button}.dataset.state === 'ON'", timeout=60)

            # A person's snapshot is on the page, decoded by the browser.
            img = f'document.querySelector(\'[data-edge="{EDGE}"] img[data-snapshot="person"]\')'
            browser.wait_for(f"{img}?.complete && {img}.naturalWidth > 0", timeout=90)
            browser.screenshot(tmp_path / "dashboard.png")
            if os.environ.get("CAMOFFLOAD_DASHBOARD_SCREENSHOT"):  # docs/img/dashboard.png
                browser.screenshot(os.environ["CAMOFFLOAD_DASHBOARD_SCREENSHOT"])

            # A killed worker is marked offline by its last will.
            os.killpg(worker.pid, signal.SIGKILL)
            browser.wait_for(f"{row}.dataset.online === 'no'", timeout=60)
            latencies = browser.evaluate("window.camoffload.latencies")
            assert latencies, "the page timed no status"
        except BaseException:
            for name, log in logs.items():
                print(f"--- {name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
        # The dashboard stops cleanly on SIGTERM.
        dashboard.send_signal(signal.SIGTERM)
        assert dashboard.wait(timeout=60) == 0, logs["dashboard"].read_text()[-2000:]
        assert "aborting" not in logs["dashboard"].read_text()  # one signal was enough
