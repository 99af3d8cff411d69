"""The headless-Chromium CDP driver (tests/chromium.py) against a tiny local page."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.chromium import (
    Chromium,
    ChromiumError,
    JavaScriptError,
    find_chromium,
    pids_mentioning,
)

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium binary on PATH (chromium, chromium-browser, google-chrome)",
)

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title></head>
<body>
<button id="go" onclick="document.body.dataset.clicked = 'yes'">go</button>
<script>
setTimeout(() => {
  const el = document.createElement("p");
  el.id = "late";
  el.textContent = "arrived";
  document.body.appendChild(el);
}, 300);
</script>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output free of access logs


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    # One browser for the module: starting Chromium costs seconds on a slow box.
    with Chromium(width=1280, height=900) as b:
        yield b


def test_goto_wait_click_and_screenshot(browser: Chromium, page_url: str, tmp_path: Path) -> None:
    browser.goto(page_url)
    assert browser.evaluate("document.title") == "harness"
    assert browser.wait_for("document.querySelector('#late')?.textContent", timeout=10) == (
        "arrived"
    )
    browser.click("#go")
    assert browser.wait_for("document.body.dataset.clicked", timeout=10) == "yes"
    assert browser.evaluate("[innerWidth, innerHeight]") == [1280, 900]
    shot = browser.screenshot(tmp_path / "page.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 100


def test_click_on_missing_element_raises(browser: Chromium, page_url: str) -> None:
    browser.goto(page_url)
    with pytest.raises(RuntimeError, match="no element matches"):
        browser.click("#absent")


def test_evaluate_raises_page_errors(browser: Chromium) -> None:
    with pytest.raises(JavaScriptError, match="boom from the page"):
        browser.evaluate("(() => { throw new Error('boom from the page'); })()")
    with pytest.raises(JavaScriptError, match="rejected here"):
        browser.evaluate("Promise.reject(new Error('rejected here'))")
    # The browser stays usable after a page error.
    assert browser.evaluate("1 + 1") == 2


def test_wait_for_times_out_with_expression_and_last_value(browser: Chromium) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"1 \+ 1 === 3.*last value: False"):
        browser.wait_for("1 + 1 === 3", timeout=0.5)
    assert time.monotonic() - started < 10


def test_exit_leaves_no_process_behind(page_url: str) -> None:
    with Chromium(width=800, height=600) as b:
        pgid = b.pgid
        assert pgid is not None
        os.killpg(pgid, 0)  # alive while in use
        b.goto(page_url)  # a renderer exists too, not only the browser process
        profile = b._tmp
        assert profile is not None
        # The browser names its profile dir; so does its crash handler, outside the group.
        assert pids_mentioning(profile)
    _wait_group_gone(pgid)
    assert pids_mentioning(profile) == []
    assert not Path(profile).exists()


def _wait_group_gone(pgid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process group {pgid} still alive"
        time.sleep(0.05)


def test_failed_enter_kills_the_half_started_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def no_page(self: Chromium, deadline: float) -> str:
        assert self.pgid is not None
        seen.append(self.pgid)
        raise ChromiumError("simulated: no page target")

    monkeypatch.setattr(Chromium, "_page_ws_url", no_page)
    with pytest.raises(ChromiumError, match="simulated"), Chromium():
        pass
    assert len(seen) == 1
    _wait_group_gone(seen[0])


def test_binary_that_exits_reports_it() -> None:
    with pytest.raises(ChromiumError, match="exited with 1"), Chromium(binary="false"):
        pass
