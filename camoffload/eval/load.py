"""Background server load: extra edges publishing frames to the same workers.

Real contention, not a simulation: ``edges`` virtual edges, each with its own MQTT
client and result topic, offer ``rate`` frames/s each to the shared worker group, with
at most ``max_in_flight`` unanswered frames per edge (a real edge's bound; a frame that
finds no free slot is counted as ``held`` and not sent, as an edge would decide it
locally). Frames are JPEGs of a labelled data set, encoded once up front so the
generator spends its CPU on MQTT, not on encoding.

It runs as its own process (``python -m camoffload.eval.load``) so its CPU and event
loop are not the measured edge's; ``LoadProcess`` starts and stops it by pid, and the
process prints its counts as one JSON line on stdout when it stops (SIGTERM or
``--duration``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import aiomqtt

from pipeline.children import supervised
from pipeline.codecs import Image, encode_jpeg
from pipeline.config import Config, load_config
from pipeline.deadline import Deadline
from pipeline.errors import CamoffloadError
from pipeline.mqtt import payload_bytes
from pipeline.protocol import ErrorReply, FrameRequest, PayloadCodec, TensorDType, decode_reply
from pipeline.service import BrokerLink
from pipeline.tasks import cancel_and_wait
from pipeline.topics import request_properties

__all__ = ["LoadCounts", "LoadProcess", "run_load"]

logger = logging.getLogger(__name__)

_FRAMES_KEPT = 256  # distinct images cycled through; enough that no cache helps


@dataclass(slots=True)
class LoadCounts:
    sent: int = 0
    answered: int = 0
    refused: int = 0  # busy, expired, shutting_down and other error replies
    held: int = 0  # no free in-flight slot: not sent
    lost: int = 0  # sent and never answered within the deadline
    errors: dict[str, int] = field(default_factory=dict)


async def run_load(
    config: Config,
    *,
    edges: int,
    rate: float,
    source: str,
    deadline_ms: float,
    max_in_flight: int = 8,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> LoadCounts:
    """Offer ``edges`` x ``rate`` frames/s until ``stop`` or ``duration_s``."""
    images = await asyncio.to_thread(_load_images, source)
    payloads = [encode_jpeg(image, config.edge.jpeg_quality) for image in images]
    counts = LoadCounts()
    stop = stop or asyncio.Event()
    tasks = [
        asyncio.create_task(
            _virtual_edge(
                config,
                f"load-{os.getpid()}-{i}",
                payloads,
                images[0].shape,
                counts,
                rate=rate,
                deadline_ms=deadline_ms,
                max_in_flight=max_in_flight,
                stop=stop,
            ),
            name=f"load-edge-{i}",
        )
        for i in range(edges)
    ]
    try:
        if duration_s is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await stop.wait()
        stop.set()
        # Each edge waits up to its deadline for the frames it still has in flight.
        done, _ = await asyncio.wait(tasks, timeout=deadline_ms / 1000 + 2)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        await cancel_and_wait(tasks)
    return counts


def _load_images(source: str) -> list[Image]:
    # Imported here: edge_node pulls in torch, which the parent may not want twice.
    from edge_node.sources import open_source

    frames = open_source(source)
    try:
        images: list[Image] = []
        while len(images) < _FRAMES_KEPT and (frame := frames.read()) is not None:
            images.append(frame.image)
    finally:
        frames.close()
    if not images:
        raise CamoffloadError(f"load source {source} gave no frames")
    return images


async def _virtual_edge(
    config: Config,
    edge_id: str,
    payloads: list[bytes],
    shape: tuple[int, ...],
    counts: LoadCounts,
    *,
    rate: float,
    deadline_ms: float,
    max_in_flight: int,
    stop: asyncio.Event,
) -> None:
    topics = config.topics
    in_flight: dict[str, float] = {}  # frame id -> deadline (monotonic)
    mqtt5 = config.broker.protocol == "5"
    drained = asyncio.Event()  # set by the listener whenever nothing is left in flight
    period = 1.0 / rate
    next_at = time.monotonic()
    seq = 0
    # One BrokerLink session per connection: a broker restart mid-run costs the frames
    # in flight (counted lost at their deadline), not the run; seq goes on across it.
    link = BrokerLink(config.broker, client_id=edge_id, what=f"load edge {edge_id}")

    async def session(client: aiomqtt.Client) -> None:
        nonlocal next_at, seq
        await client.subscribe(topics.results(edge_id), qos=1)
        listener = asyncio.create_task(
            _count_replies(client, in_flight, counts, drained), name=f"{edge_id}-replies"
        )
        try:
            while not stop.is_set():
                now = time.monotonic()
                for frame_id in [f for f, due in in_flight.items() if due < now]:
                    del in_flight[frame_id]
                    counts.lost += 1
                if len(in_flight) >= max_in_flight:
                    counts.held += 1
                else:
                    frame_id = f"{edge_id}-{seq}"
                    captured = time.time()
                    request = FrameRequest(
                        frame_id=frame_id,
                        edge_id=edge_id,
                        seq=seq,
                        capture_ts=captured,
                        deadline_ts=Deadline.after(captured, deadline_ms).ts,
                        model=config.edge.model,
                        codec=PayloadCodec.JPEG,
                        quality=config.edge.jpeg_quality,
                        shape=shape,
                        dtype=TensorDType.UINT8,
                        payload=payloads[seq % len(payloads)],
                    )
                    in_flight[frame_id] = now + deadline_ms / 1000 + 0.5
                    properties = (
                        request_properties(topics.results(edge_id), frame_id.encode())
                        if mqtt5
                        else None
                    )
                    await client.publish(
                        topics.frames(edge_id), request.to_bytes(), qos=1, properties=properties
                    )
                    counts.sent += 1
                seq += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay < -1.0:
                    next_at = time.monotonic()  # fell behind by a second: do not burst
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, delay)):
                        await stop.wait()
            if in_flight:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline_ms / 1000 + 0.5):
                        await drained.wait()
            counts.lost += len(in_flight)
        finally:
            await cancel_and_wait([listener])

    await link.run(session)


async def _count_replies(
    client: aiomqtt.Client, in_flight: dict[str, float], counts: LoadCounts, drained: asyncio.Event
) -> None:
    async for message in client.messages:
        try:
            reply = decode_reply(payload_bytes(message))
        except CamoffloadError:
            counts.errors["bad_reply"] = counts.errors.get("bad_reply", 0) + 1
            continue
        if reply.frame_id is None or in_flight.pop(reply.frame_id, None) is None:
            continue  # late: already counted lost
        if isinstance(reply, ErrorReply):
            counts.refused += 1
            code = reply.code.value
            counts.errors[code] = counts.errors.get(code, 0) + 1
        else:
            counts.answered += 1
        if not in_flight:
            drained.set()


class LoadProcess:
    """``python -m camoffload.eval.load`` as a child process, stopped by its pid."""

    def __init__(
        self,
        *,
        broker_url: str,
        prefix: str,
        edges: int,
        rate: float,
        source: str,
        model: str,
        deadline_ms: float,
        max_in_flight: int = 8,
    ) -> None:
        self._argv = [
            sys.executable, "-m", "camoffload.eval.load",
            "--broker", broker_url, "--prefix", prefix,
            "--edges", str(edges), "--rate", str(rate), "--source", source,
            "--model", model, "--deadline-ms", str(deadline_ms),
            "--max-in-flight", str(max_in_flight),
        ]  # fmt: skip
        self._process: subprocess.Popen[str] | None = None
        self.counts: LoadCounts | None = None

    def start(self) -> None:
        # Under the supervisor: it dies with us, even if we are SIGKILLed.
        self._process = subprocess.Popen(
            supervised(self._argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def stop(self, timeout_s: float = 15.0) -> LoadCounts:
        process = self._process
        if process is None:
            raise CamoffloadError("load generator was never started")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise CamoffloadError(f"load generator {process.pid} ignored SIGTERM") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise CamoffloadError(
                f"load generator exited {process.returncode}: {err.strip()[-500:]}"
            )
        values = json.loads(lines[-1])
        self.counts = LoadCounts(**values)
        return self.counts

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_message(self) -> str:
        """Why the process ended early (its stderr tail), for an error report."""
        process = self._process
        if process is None or process.poll() is None:
            return ""
        _, err = process.communicate()
        return err.strip()[-500:]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m camoffload.eval.load")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--edges", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--source", default="fashion-mnist:train")
    parser.add_argument("--model", required=True)
    parser.add_argument("--deadline-ms", type=float, default=500.0)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--duration", type=float, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level="WARNING", format="%(levelname)s load: %(message)s")
    config = load_config(
        env={},
        overrides=[
            f"broker.url={args.broker}",
            f"prefix={args.prefix}",
            f"edge.model={args.model}",
        ],
    )

    async def serve() -> LoadCounts:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_load(
            config,
            edges=args.edges,
            rate=args.rate,
            source=args.source,
            deadline_ms=args.deadline_ms,
            max_in_flight=args.max_in_flight,
            duration_s=args.duration,
            stop=stop,
        )

    try:
        counts = asyncio.run(serve())
    except CamoffloadError as exc:
        sys.stderr.write(f"load: error: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(asdict(counts)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
