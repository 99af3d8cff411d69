"""All-or-nothing vs Gompertz partial offloading, side by side in one run, under a
bandwidth-limited link.

One real Mosquitto; one CloudWorker connected to it directly; the edge connected
through a user-space shaping proxy (``camoffload.netem.ShapingProxy``) that gives its
link a rate and a delay each way. The camera replays frames at a fixed rate (a camera
does not wait for the network), and every row replays the same frames:

    all-or-nothing          the routing policy's unsure frames go as full JPEGs at q90
    all-or-nothing, T=...   the same with a lower confidence threshold (fewer frames)
    gompertz                the same routing, then per frame: keep it local, or send an
                            abbreviated JPEG at the cheapest quality within the slack of
                            the best expected accuracy (docs/gompertz.md)

Data sets:
    fashion-mnist   test images 0..N-1 (the calibration used 4000..9999), true labels;
                    local: exit 1 of fmnist_exit_resnet, cloud: the whole network
    vtest           OpenCV's vtest.avi; local efficientnet_lite0, cloud
                    efficientnet_lite2; "accuracy" = agreement with lite2's answer on
                    the uncompressed frame

Traffic is the frame requests' bytes (the ledger's ``bytes_sent``) and everything the
edge put on the uplink (the proxy's count: MQTT headers, events, status, acks too).
Latency is capture to final decision, over the unsure frames (those the routing policy
passed on: sent, or kept local by the Gompertz chooser, which decides them at once) and
over the frames actually sent.

    .venv/bin/python bench/gompertz.py --dataset fashion-mnist --frames 2000 --fps 50 \\
        --link rate=200kbit,delay=20ms
    .venv/bin/python bench/gompertz.py --dataset vtest --frames 200 --fps 8 \\
        --link rate=4mbit,delay=20ms --threshold 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from broker import mosquitto_broker
from camoffload.netem import LinkProfile, ShapingProxy
from cloud_worker import CloudWorker
from edge_node import DatasetSource, EdgeNode, Ledger, VideoSource
from edge_node.sources import CapturedFrame, FrameSource
from pipeline.config import Config, load_config
from pipeline.inference import Classifier
from pipeline.tasks import cancel_and_wait

MODELS = {
    "fashion-mnist": ("fmnist_exit_resnet", "fmnist_exit_resnet"),
    "vtest": ("efficientnet_lite0", "efficientnet_lite2"),
}


class LabelledFrames:
    """Preloaded frames with reference labels, replayed as a file would be."""

    def __init__(self, frames: list[CapturedFrame], name: str) -> None:
        self.name = name
        self.fps: float | None = None
        self.live = False
        self._frames = frames
        self._next = 0

    def read(self) -> CapturedFrame | None:
        if self._next >= len(self._frames):
            return None
        frame = self._frames[self._next]
        self._next += 1
        return dataclasses.replace(frame, capture_ts=time.time())

    def close(self) -> None:
        self._next = len(self._frames)


def _vtest_frames(count: int, cloud: Classifier) -> list[CapturedFrame]:
    from camoffload.demo import default_video

    source = VideoSource(str(default_video()))
    frames = []
    try:
        while len(frames) < count:
            frame = source.read()
            if frame is None:
                break
            frames.append(frame)
    finally:
        source.close()
    labels = [p.label for i in range(0, len(frames), 16) for p in cloud.predict(
        [f.image for f in frames[i : i + 16]])]  # fmt: skip
    return [
        dataclasses.replace(f, true_label=label) for f, label in zip(frames, labels, strict=True)
    ]


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    frames: int
    accuracy: float
    sent: int
    considered: int
    timeouts: int
    request_bytes: int
    wire_bytes: int
    latency_p50: float | None
    latency_p95: float | None
    sent_p50: float | None
    sent_p95: float | None
    choices: Counter[str]


def _latencies(path: Path, run_id: str) -> tuple[list[float], list[float]]:
    """Capture-to-decision ms of the frames considered for the cloud, and of those sent."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT decision, detail, capture_ts, decided_ts FROM frames WHERE run_id = ?",
            (run_id,),
        ).fetchall()
    considered, sent = [], []
    for decision, detail, captured, decided in rows:
        offloaded = decision not in ("local", "skipped", "dropped")
        kept = decision == "local" and (detail or "").startswith("gompertz")
        if offloaded or kept:
            considered.append((decided - captured) * 1000)
        if offloaded:
            sent.append((decided - captured) * 1000)
    return considered, sent


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _row(
    name: str, config: Config, make_source: object, proxy: ShapingProxy, folder: Path
) -> Row:
    assert callable(make_source)
    source: FrameSource = make_source()
    path = folder / f"{uuid.uuid4().hex[:8]}.sqlite"
    ledger = Ledger(path)
    before = proxy.stats().bytes_up
    node = EdgeNode(config, source, ledger)
    try:
        summary = await node.run()
    finally:
        ledger.close()
    await asyncio.sleep(0.5)  # let the last events and acks cross the link
    latencies, sent = _latencies(path, ledger.run_id)
    return Row(
        name=name,
        frames=summary.captured,
        accuracy=summary.accuracy or 0.0,
        sent=summary.offloaded,
        considered=len(latencies),
        timeouts=summary.timed_out,
        request_bytes=summary.bytes_sent,
        wire_bytes=proxy.stats().bytes_up - before,
        latency_p50=_pct(latencies, 0.5),
        latency_p95=_pct(latencies, 0.95),
        sent_p50=_pct(sent, 0.5),
        sent_p95=_pct(sent, 0.95),
        choices=node.quality_choices,
    )


async def _run(args: argparse.Namespace) -> list[Row]:
    local_model, cloud_model = MODELS[args.dataset]
    cloud = Classifier.by_name(cloud_model)
    if args.dataset == "vtest":
        frames = _vtest_frames(args.frames, cloud)

        def make_source() -> FrameSource:
            return LabelledFrames(frames, "vtest")
    else:

        def make_source() -> FrameSource:
            return DatasetSource(limit=args.frames)

    rows = []
    with mosquitto_broker(port=0) as info, tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"broker.url={info.url}",
            f"prefix=bench-{uuid.uuid4().hex[:8]}",
            f"worker.model={cloud_model}",
            f"worker.max_batch={args.max_batch}",
            f"edge.model={cloud_model}",
            f"edge.local_model={local_model}",
            f"edge.deadline_ms={args.deadline_ms}",
            "edge.max_in_flight=64",
            f"edge.rate={args.fps}",
            "edge.policy=threshold",
            f"edge.confidence_threshold={args.threshold}",
            "edge.jpeg_quality=90",
        ]
        base = load_config(env={}, overrides=overrides)
        worker = CloudWorker(base, classifier=cloud)
        ready = asyncio.Event()
        task = asyncio.create_task(worker.run(ready=ready))
        await asyncio.wait_for(ready.wait(), timeout=60)
        profile = LinkProfile.parse(args.link)
        settings: list[tuple[str, dict[str, object]]] = [
            (f"all-or-nothing q90, T={args.threshold:g}", {}),
            (
                f"gompertz, T={args.threshold:g}",
                {"quality_policy": "gompertz", "accuracy_slack": args.slack},
            ),
        ]
        if args.low_threshold is not None:
            settings.append(
                (
                    f"all-or-nothing q90, T={args.low_threshold:g}",
                    {"confidence_threshold": args.low_threshold},
                )
            )
        try:
            async with ShapingProxy(("127.0.0.1", info.port), profile, seed=0) as proxy:
                edged = dataclasses.replace(
                    base, broker=dataclasses.replace(base.broker, url=proxy.url)
                )
                warm = dataclasses.replace(edged, edge=dataclasses.replace(edged.edge, rate="max"))
                await EdgeNode(warm, make_source(), Ledger()).run(max_frames=20)
                for name, changes in settings:
                    config = dataclasses.replace(
                        edged, edge=dataclasses.replace(edged.edge, **changes)
                    )
                    rows.append(await _row(name, config, make_source, proxy, Path(tmp)))
        finally:
            await cancel_and_wait([task])
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(MODELS), default="fashion-mnist")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--fps", type=float, default=50.0, help="camera rate")
    parser.add_argument("--link", default="rate=200kbit,delay=20ms", help="LinkProfile spec")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--low-threshold", type=float, default=None)
    parser.add_argument("--slack", type=float, default=0.005)
    parser.add_argument("--deadline-ms", type=float, default=1000.0)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    rows = asyncio.run(_run(args))
    local_model, cloud_model = MODELS[args.dataset]
    print(
        f"{args.dataset}: {args.frames} frames at {args.fps:g} fps, local {local_model}, "
        f"cloud {cloud_model}, link {args.link}, deadline {args.deadline_ms:g} ms\n"
    )
    print(
        "| policy | accuracy | frames sent | timeouts | request B/frame | uplink B/frame "
        "| latency p50 / p95 ms (unsure frames) | latency p50 / p95 ms (frames sent) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.name} | {r.accuracy:.2%} | {r.sent / r.frames:.1%} | {r.timeouts} | "
            f"{r.request_bytes / r.frames:.0f} | {r.wire_bytes / r.frames:.0f} | "
            f"{_ms(r.latency_p50)} / {_ms(r.latency_p95)} | "
            f"{_ms(r.sent_p50)} / {_ms(r.sent_p95)} |"
        )
    base = rows[0]
    for r in rows[1:]:
        saved = r.request_bytes / base.request_bytes - 1
        print(
            f"\n{r.name} vs {base.name}: request bytes {saved:+.1%}"
            f", uplink bytes {r.wire_bytes / base.wire_bytes - 1:+.1%}, accuracy "
            f"{(r.accuracy - base.accuracy) * 100:+.2f} points"
        )
        for what, mine, theirs in (
            ("unsure frames", r.latency_p50, base.latency_p50),
            ("frames sent", r.sent_p50, base.sent_p50),
        ):
            if mine is not None and theirs:
                print(f"  median latency ({what}) {mine / theirs - 1:+.1%}")
        if r.choices:
            top = ", ".join(f"{k}: {v}" for k, v in r.choices.most_common(6))
            print(f"  chosen: {top}")


if __name__ == "__main__":
    main()
