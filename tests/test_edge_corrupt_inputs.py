"""Corrupt inputs at the edge, end to end: ``camoffload edge`` as a child process on a
truncated video, a video cut inside its header, folders of unreadable images, and a
camera (an MJPEG stream over HTTP) that disappears or stalls mid-stream.

Each one ends with a clear one-line error or a clean end with every captured frame
decided, never a hang: every run has a hard time limit. The sources' own behaviour on
such files is covered in tests/test_sources.py; this file checks the whole edge.
No worker runs: every offload falls back at its 200 ms deadline.
"""

from __future__ import annotations

import http.server
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from broker import BrokerInfo
from camoffload.cli import main as cli_main
from camoffload.demo import default_video
from edge_node.ledger import summarize_ledger_file

pytestmark = pytest.mark.timeout(180)

VTEST_FRAMES = 795


def _edge_argv(source: str, mosquitto: BrokerInfo, prefix: str, ledger: Path) -> list[str]:
    return [
        sys.executable, "-m", "camoffload", "edge", source, "--broker", mosquitto.url,
        "--set", f"prefix={prefix}", "--policy", "cloud-only", "--deadline-ms", "200",
        "--set", "edge.max_in_flight=64", "--ledger", str(ledger), "--quiet",
        "--log-level", "WARNING",
    ]  # fmt: skip


class Ran:
    """What an edge run printed: its exit code, stdout, and stderr with its log."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


def _run_edge(
    source: str,
    mosquitto: BrokerInfo,
    prefix: str,
    ledger: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Ran:
    """``camoffload edge`` in this process (the child's interpreter start costs more
    than these runs); the file's timeout catches a hang."""
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        code = cli_main(_edge_argv(source, mosquitto, prefix, ledger)[3:])
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err + caplog.text)


def _decided_once(ledger: Path) -> int:
    """Frames in the ledger; every one decided."""
    summary = summarize_ledger_file(ledger)
    assert summary.undecided == 0
    assert summary.captured == summary.decided
    assert sum(summary.by_decision.values()) == summary.captured
    return summary.captured


def test_a_truncated_video_is_replayed_to_where_it_stops(
    tmp_path: Path,
    mosquitto: BrokerInfo,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = default_video().read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 3 // 10])
    done = _run_edge(str(cut), mosquitto, prefix, tmp_path / "edge.sqlite", capsys, caplog)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    frames = _decided_once(tmp_path / "edge.sqlite")
    assert 0 < frames < VTEST_FRAMES
    assert "decided exactly once  yes" in done.stdout


def test_a_video_cut_inside_its_header_is_a_one_line_error(
    tmp_path: Path,
    mosquitto: BrokerInfo,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cut = tmp_path / "header.avi"
    cut.write_bytes(default_video().read_bytes()[:4096])
    done = _run_edge(str(cut), mosquitto, prefix, tmp_path / "edge.sqlite", capsys, caplog)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [f"camoffload edge: error: cannot open video source {str(cut)!r}"], done.stderr


def test_unreadable_images_are_skipped_and_the_rest_decided(
    tmp_path: Path,
    mosquitto: BrokerInfo,
    prefix: str,
    frames: list[np.ndarray],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    small = [cv2.resize(f, (96, 72)) for f in frames[:3]]
    for i, image in enumerate(small):
        cv2.imwrite(str(folder / f"{i}-good.png"), image)
    ok, jpeg = cv2.imencode(".jpg", small[0])
    assert ok
    (folder / "3-text.jpg").write_bytes(b"not an image")
    (folder / "4-cut.jpg").write_bytes(jpeg.tobytes()[:100])
    (folder / "5-empty.png").write_bytes(b"")
    (folder / "6-noise.png").write_bytes(np.random.default_rng(1).bytes(4000))
    done = _run_edge(str(folder), mosquitto, prefix, tmp_path / "edge.sqlite", capsys, caplog)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _decided_once(tmp_path / "edge.sqlite") == 3
    assert done.stderr.count("skipping unreadable image") == 4


def test_a_folder_of_only_unreadable_images_is_a_clean_empty_run(
    tmp_path: Path,
    mosquitto: BrokerInfo,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n")
    done = _run_edge(str(folder), mosquitto, prefix, tmp_path / "edge.sqlite", capsys, caplog)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decided exactly once  yes" in done.stdout
    assert _decided_once(tmp_path / "edge.sqlite") == 0


class _Camera:
    """An MJPEG camera over HTTP (multipart/x-mixed-replace) that sends ``frames``
    frames at 20 fps, then either hangs up or stalls (sends nothing, keeps the socket)."""

    def __init__(self, frames: int, *, then: str) -> None:
        self.frames, self.then = frames, then
        self.release = threading.Event()
        self.sent = 0
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                image = np.zeros((120, 160, 3), np.uint8)
                for i in range(camera.frames):
                    image[:] = (i * 7) % 256
                    _, buf = cv2.imencode(".jpg", image)
                    data = buf.tobytes()
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                        % len(data)
                        + data
                        + b"\r\n"
                    )
                    self.wfile.flush()
                    camera.sent += 1
                    time.sleep(0.05)
                if camera.then == "stall":
                    camera.release.wait(120)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def camera(request: pytest.FixtureRequest) -> Iterator[_Camera]:
    cam = _Camera(40, then=request.param)
    try:
        yield cam
    finally:
        cam.close()


@pytest.mark.parametrize("camera", ["hang-up"], indirect=True)
def test_a_camera_that_disappears_mid_stream_ends_the_run(
    tmp_path: Path,
    mosquitto: BrokerInfo,
    prefix: str,
    camera: _Camera,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = _run_edge(camera.url, mosquitto, prefix, tmp_path / "edge.sqlite", capsys, caplog)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert camera.sent == 40
    # Every frame the edge captured (taken, or dropped because a newer one came first)
    # is in the ledger, decided once. OpenCV may keep a frame or two in its probe.
    assert 30 <= _decided_once(tmp_path / "edge.sqlite") <= 40


@pytest.mark.slow
@pytest.mark.parametrize("camera", ["stall"], indirect=True)
def test_a_camera_that_stalls_mid_stream_does_not_keep_the_edge_from_stopping(
    tmp_path: Path, mosquitto: BrokerInfo, prefix: str, camera: _Camera
) -> None:
    """A stalled stream blocks OpenCV's read (its FFmpeg backend gives up after 30 s of
    silence, which ends the source). SIGTERM meanwhile: the edge stops at once, leaving
    the blocked read behind, with every captured frame decided."""
    ledger = tmp_path / "edge.sqlite"
    edge = subprocess.Popen(
        _edge_argv(camera.url, mosquitto, prefix, ledger),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while camera.sent < camera.frames:
            assert edge.poll() is None, edge.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the camera never sent its frames"
            time.sleep(0.1)
        time.sleep(2.0)  # the stream is silent now, the read blocked
        assert edge.poll() is None  # still waiting on the camera: live
        stopped = time.monotonic()
        edge.send_signal(signal.SIGTERM)
        out, err = edge.communicate(timeout=20)
        took = time.monotonic() - stopped
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.communicate()
    assert edge.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert took < 15  # the abandoned read costs at most its 5 s join
    assert 30 <= _decided_once(ledger) <= 40
    assert "decided exactly once  yes" in out
