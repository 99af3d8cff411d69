"""A small driver for headless Chromium over the Chrome DevTools Protocol (CDP).

Browser tests of the dashboard need a real browser, and Selenium and Playwright are not
available, so this speaks CDP directly over one websocket to the page target. It is
deliberately pytest-free; the test modules decide when to skip.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

# --remote-debugging-port=0: Chromium picks a free port (no races with parallel tests) and
# writes it to DevToolsActivePort. (--disable-crashpad-for-testing would be tempting, but
# Chromium 150 then kills its network service: "FD ownership violation", ERR_ABORTED.)
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


def find_chromium() -> str | None:
    """The first Chromium-like binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class ChromiumError(RuntimeError):
    """The browser failed to start, crashed, or misbehaved."""


class CdpError(ChromiumError):
    """Chromium answered a CDP command with an error."""


class JavaScriptError(ChromiumError):
    """An evaluated expression threw (or its promise rejected) in the page."""


class Chromium:
    """A headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, *, binary: str | None = None) -> None:
        self.width = width
        self.height = height
        self.port: int | None = None
        self._binary = binary
        self._tmp: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._next_id = 0

    @property
    def pgid(self) -> int | None:
        """The browser's process group (its own session, so it holds every child)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> Chromium:
        try:
            self._start()
        except BaseException:
            self.close()  # a half-started browser must not outlive a failed __enter__
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        binary = self._binary or find_chromium()
        if binary is None:
            raise ChromiumError("no Chromium binary found on PATH")
        self._tmp = tempfile.mkdtemp(prefix="cdp-chromium-")
        argv = [binary, *_FLAGS, f"--user-data-dir={self._tmp}"]
        argv += [f"--window-size={self.width},{self.height}", "about:blank"]
        # chrome_crashpad_handler daemonizes out of our process group; with its config home
        # in our temp dir its command line names that dir, so close() can find it, and
        # nothing is written to ~/.config/chromium.
        env = {**os.environ, "XDG_CONFIG_HOME": str(Path(self._tmp, "config"))}
        with open(Path(self._tmp, "chromium.log"), "wb") as log:
            # Its own session and process group: close() kills renderers and zygotes too.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        self.port = self._wait_for_port(deadline=time.monotonic() + 30)
        self._ws = connect(
            self._page_ws_url(deadline=time.monotonic() + 30),
            max_size=None,  # screenshots are far larger than websockets' 1 MiB default
            open_timeout=10,
            close_timeout=2,
            proxy=None,  # websockets 15 honours *_proxy env vars; this is loopback
            compression=None,
            ping_interval=None,  # a busy renderer must not fail a keepalive mid-test
        )
        # A fixed viewport makes layouts and screenshots independent of window chrome.
        metrics = {"width": self.width, "height": self.height, "deviceScaleFactor": 1}
        self.send("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})

    def _log_tail(self, chars: int = 2000) -> str:
        try:
            return Path(self._tmp or "", "chromium.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def _check_alive(self) -> None:
        assert self._proc is not None
        if (code := self._proc.poll()) is not None:
            raise ChromiumError(f"Chromium exited with {code}; log tail:\n{self._log_tail()}")

    def _wait_for_port(self, deadline: float) -> int:
        # Chromium writes "<port>\n<browser ws path>" once it listens; the file may be
        # seen half-written, so only a first line ended by a newline counts.
        port_file = Path(self._tmp or "", "DevToolsActivePort")
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(FileNotFoundError):
                first, newline, _ = port_file.read_text().partition("\n")
                if newline and first.strip().isdigit():
                    return int(first)
            time.sleep(0.05)
        raise ChromiumError(f"no DevToolsActivePort within 30 s; log tail:\n{self._log_tail()}")

    def _page_ws_url(self, deadline: float) -> str:
        # An empty ProxyHandler: http_proxy in the environment must not capture loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with opener.open(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as resp:
                    targets: list[dict[str, Any]] = json.load(resp)
                last = targets
                for target in targets:
                    if target.get("type") == "page" and "webSocketDebuggerUrl" in target:
                        return str(target["webSocketDebuggerUrl"])
            except OSError as exc:  # the page target can lag the port by a moment
                last = exc
            time.sleep(0.1)
        raise ChromiumError(f"no page target within 30 s (last: {last!r})")

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Send one CDP command and return its result, skipping events meanwhile."""
        if self._ws is None:
            raise ChromiumError("browser is not running")
        self._next_id += 1
        msg_id = self._next_id
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            try:
                raw = self._ws.recv(timeout=max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise TimeoutError(f"CDP {method} got no reply within {timeout} s") from None
            except ConnectionClosed as exc:  # usually a crash: the log says why
                raise ChromiumError(f"CDP socket closed: {exc}; log:\n{self._log_tail()}") from exc
            reply = json.loads(raw)
            if reply.get("method") in ("Inspector.targetCrashed", "Inspector.detached"):
                raise ChromiumError(f"page went away during {method}: {reply}")
            if reply.get("id") != msg_id:
                continue  # an event, or a late reply to a command that timed out
            if err := reply.get("error"):
                raise CdpError(f"CDP {method} failed: {err.get('message')} ({err})")
            return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JS expression in the page (promises are awaited)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        reply = self.send("Runtime.evaluate", params)
        if (details := reply.get("exceptionDetails")) is not None:
            exception = details.get("exception") or {}
            what = exception.get("description") or exception.get("value") or ""
            raise JavaScriptError(f"{details.get('text', 'exception')} {what} in: {expression}")
        return reply.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30, interval: float = 0.1) -> Any:
        """Poll ``expression`` until it is truthy and return its value.

        CDP errors (e.g. "execution context was destroyed" mid-navigation) are retried;
        exceptions thrown by the page's JS are not, since they are usually test bugs.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                if last := self.evaluate(expression):
                    return last
            except CdpError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{expression!r} not truthy within {timeout} s (last value: {last!r})"
                )
            time.sleep(interval)

    def goto(self, url: str, timeout: float = 30) -> None:
        """Navigate and wait until the new document has loaded."""
        deadline = time.monotonic() + timeout
        self.send("Page.enable")
        # The old document is "complete" too: mark it, so only a fresh window counts.
        self.evaluate("window.__cdpOldDocument = true")
        reply = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if reply.get("errorText"):
            raise ChromiumError(f"navigation to {url} failed: {reply['errorText']}")
        # No loaderId means a same-document navigation (a fragment): the marker stays.
        fresh = "!window.__cdpOldDocument && " if reply.get("loaderId") else ""
        remaining = max(deadline - time.monotonic(), 0.1)
        self.wait_for(f'{fresh}document.readyState === "complete"', timeout=remaining)

    def click(self, selector: str) -> None:
        """A JS click on the first element matching ``selector``."""
        found = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return false; el.click(); return true; })()"
        )
        if not found:
            raise ChromiumError(f"no element matches {selector!r}")

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG of the viewport to ``path`` and return it."""
        params = {"format": "png", "captureBeyondViewport": False}
        reply = self.send("Page.captureScreenshot", params)
        out = Path(path)
        out.write_bytes(base64.b64decode(reply["data"]))
        return out

    def close(self) -> None:
        """Close the socket, kill the whole process group and remove the profile."""
        if self._ws is not None:
            ws, self._ws = self._ws, None
            with contextlib.suppress(Exception):  # teardown must go on to kill the browser
                ws.close()
        if self._proc is not None:
            _kill_group(self._proc)
            self._proc = None
        if self._tmp is not None:
            _kill_strays(self._tmp)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # SIGTERM lets Chromium shut its children down; SIGKILL whatever outlives 5 s.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if _group_gone(proc, deadline=time.monotonic() + 5):
            break
    # Reap it; an unkillable (D state) browser is past what a test helper can fix.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_gone(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait until no process is left in ``proc``'s group; False at the deadline."""
    while True:
        proc.poll()  # reap our own child, or it stays a zombie member of the group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (Linux /proc; else none)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # raced with an exit, or not ours to read
            if text.encode() in (entry / "cmdline").read_bytes():  # zombies read as empty
                pids.append(int(entry.name))
    return [pid for pid in pids if pid != os.getpid()]


def _kill_strays(tmp: str) -> None:
    # The crash handlers exit once the browser is gone; give them 2 s, then SIGKILL.
    grace = time.monotonic() + 2
    while strays := pids_mentioning(tmp):
        now = time.monotonic()
        if now > grace + 3:
            return  # unkillable (D state); nothing more a test helper can do
        for pid in strays if now > grace else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
