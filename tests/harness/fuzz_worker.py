"""Fuzz a real worker over MQTT: malformed and mutated frame requests, zero crashes.

Starts Mosquitto on 127.0.0.1 and ``camoffload worker`` (a child process serving the
committed ``fmnist_exit_resnet``), then publishes ``--inputs`` messages on
``{p}/frames/{edge}``, each a mutation of a valid request of one of the five kinds
(JPEG, abbreviated JPEG, raw pixels, a raw input tensor, a split-point activation):
truncations, bit flips, spliced and random bytes, fields dropped, added or given the
wrong type, huge or negative shapes, wrong payload lengths, broken JPEG bytes, tensors
with the wrong dtype, shape or split, out-of-range values (NaN, past deadlines, bad
ids, unknown models, other schema versions), nested junk, non-MessagePack text, and a
share of untouched requests as a control. Every message carries MQTT 5 correlation
data naming it (and most a response topic), so each reply is matched to its input.

Inputs go in windows (``--window`` at a time, each waited for), so nothing is lost to
the worker's own bounded queues and every input can be expected to get one reply: the
worker answers everything that arrives on a frames topic, with a ``Result`` or an
``ErrorReply`` (``bad_request`` for what does not decode). Then the oversize checks: a
frame whose payload is one byte over the 8 MiB limit and a 16.5 MiB message (both must
come back ``bad_request``), and a message over the broker's ``max_packet_size`` (17
MiB: the broker must disconnect its sender, and nothing reaches the worker). Finally a
valid frame must still be answered, and the worker must be the same live process.

    .venv/bin/python tests/harness/fuzz_worker.py [--inputs 100000] [--window 256] [--seed 1]

The last line is ``RESULT inputs=N crashes=0 ...``; the exit status is 1 if the worker
crashed, an input went unanswered or was answered twice, or an oversize check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import msgpack
import msgspec
import numpy as np
import psutil  # type: ignore[import-untyped]
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import free_port, mosquitto_broker
from broker.mosquitto import MAX_PACKET_SIZE
from pipeline.codecs import encode_jpeg, encode_jpeg_abbreviated
from pipeline.config import Config, load_config
from pipeline.errors import ProtocolError
from pipeline.mqtt import make_client
from pipeline.protocol import (
    MAX_PAYLOAD_BYTES,
    ErrorReply,
    FrameRequest,
    PayloadCodec,
    Result,
    TensorDType,
    WorkerStatus,
    decode_reply,
)
from pipeline.topics import request_properties

MODEL = "fmnist_exit_resnet"
EDGE = "fuzz-edge"
# The split-point activations of fmnist_exit_resnet (docs/worker.md).
ACTIVATIONS = {1: (48, 28, 28), 2: (96, 14, 14), 3: (192, 7, 7), 4: (256, 4, 4)}
INPUT_SHAPE = (1, 28, 28)


# -- valid requests and their mutations ---------------------------------------------------


def base_requests(seed: int = 0) -> list[FrameRequest]:
    """One valid request of every kind the worker serves (deadlines an hour away)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(28, 28, 1), dtype=np.uint8)
    now = time.time()
    common: dict[str, Any] = {
        "frame_id": "base",
        "edge_id": EDGE,
        "seq": 0,
        "capture_ts": now,
        "deadline_ts": now + 3600,
        "model": MODEL,
        "edge_label": 3,
        "edge_confidence": 0.5,
    }
    out = [
        FrameRequest(
            **common,
            codec=PayloadCodec.JPEG,
            quality=80,
            shape=(28, 28, 1),
            dtype=TensorDType.UINT8,
            payload=encode_jpeg(image[:, :, 0], 80),
        ),
        FrameRequest(
            **common,
            codec=PayloadCodec.JPEG_ABBREV,
            quality=50,
            shape=(28, 28, 1),
            dtype=TensorDType.UINT8,
            payload=encode_jpeg_abbreviated(image[:, :, 0], 50),
        ),
        FrameRequest(
            **common,
            codec=PayloadCodec.RAW,
            shape=(28, 28, 1),
            dtype=TensorDType.UINT8,
            payload=image.tobytes(),
        ),
        FrameRequest(
            **common,
            codec=PayloadCodec.RAW,
            shape=INPUT_SHAPE,
            dtype=TensorDType.FLOAT32,
            payload=rng.standard_normal(INPUT_SHAPE, dtype=np.float32).tobytes(),
        ),
    ]
    for split, shape in ACTIVATIONS.items():
        activation = rng.standard_normal(shape).astype(np.float16)
        out.append(
            FrameRequest(
                **common,
                codec=PayloadCodec.TENSOR,
                split_stage=split,
                shape=shape,
                dtype=TensorDType.FLOAT16,
                payload=activation.tobytes(),
            )
        )
    return out


def _as_map(request: FrameRequest, frame_id: str) -> dict[str, Any]:
    obj = msgpack.unpackb(request.to_bytes(), raw=False)
    obj["frame_id"] = frame_id
    return dict(obj)


def _pack(obj: object) -> bytes:
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _junk_value(rng: random.Random, depth: int = 0) -> object:
    kinds = ["none", "bool", "int", "bigint", "float", "nan", "str", "bytes", "list", "map"]
    kind = rng.choice(kinds if depth < 3 else kinds[:8])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-1000, 1000)
    if kind == "bigint":
        return rng.choice([2**63 - 1, -(2**63), 2**64 - 1, 2**31, -1])
    if kind == "float":
        return rng.uniform(-1e9, 1e9)
    if kind == "nan":
        return rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0])
    if kind == "str":
        return rng.choice(["", "x" * rng.randint(1, 5000), "a/b", "+", "#", "\x00", "é" * 9])
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 64))
    if kind == "list":
        return [_junk_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {f"k{i}": _junk_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def _flip_bits(data: bytes, rng: random.Random, count: int) -> bytes:
    buf = bytearray(data)
    for _ in range(count):
        if buf:
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return data[: rng.randrange(len(data) + 1)]
    if choice == 1:
        return _flip_bits(data, rng, rng.randint(1, 16))
    if choice == 2:
        start = rng.randrange(len(data) + 1)
        end = min(len(data), start + rng.randint(0, 64))
        return data[:start] + rng.randbytes(rng.randint(0, 64)) + data[end:]
    return data + rng.randbytes(rng.randint(1, 64))


def _jpeg_sof_dims(data: bytes, rng: random.Random) -> bytes:
    """Claim other dimensions in the JPEG's frame header (at most 4096x4096 here: the
    decoder allocates what the header claims; see docs/reliability.md)."""
    at = data.find(b"\xff\xc0")
    if at < 0 or at + 9 > len(data):
        return _flip_bits(data, rng, 4)
    buf = bytearray(data)
    buf[at + 5 : at + 7] = rng.choice([0, 1, 27, 29, 4096]).to_bytes(2, "big")
    buf[at + 7 : at + 9] = rng.choice([0, 1, 27, 29, 4096]).to_bytes(2, "big")
    return bytes(buf)


Mutator = Callable[[dict[str, Any], bytes, random.Random], bytes]


def m_truncate(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return packed[: rng.randrange(len(packed))]


def m_bitflip(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return _flip_bits(packed, rng, rng.choice([1, 1, 2, 4, 16]))


def m_splice(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return _mutate_bytes(packed, rng)


def m_random(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 16, 300, 4096]))


def m_not_msgpack(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return rng.choice(
        [b"", b"{}", b'{"v": 1, "t": "frame"}', b"hello", b"\xff" * 10, b"\x00", b"\xc1"]
    )


def m_wrong_type(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    obj[rng.choice(sorted(obj))] = _junk_value(rng)
    return _pack(obj)


def m_drop_field(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    del obj[rng.choice(sorted(obj))]
    return _pack(obj)


def m_add_field(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    obj[rng.choice(["extra", "x", "", "frame_id2", "payload2"])] = _junk_value(rng)
    return _pack(obj)


def m_shape(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    obj["shape"] = rng.choice(
        [
            [],
            [0],
            [-1, 28, 1],
            [65535, 65535, 3],
            [65536, 1, 1],
            [2**40, 2**40, 3],
            [1] * 5,
            [1] * 2000,
            [28, 28],
            [28, 28, 2],
            [28, 28, 3],
            [1, 1, 1, 1],
            [28.0, 28, 1],
            ["28", 28, 1],
            [True, 28, 1],
            list(reversed(obj.get("shape") or [1])),
        ]
    )
    return _pack(obj)


def m_payload_length(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    payload = obj.get("payload", b"")
    if not isinstance(payload, bytes):
        payload = b""
    cut = rng.choice([1, 2, 3, 7, len(payload) // 2, len(payload)])
    obj["payload"] = payload[:-cut] if rng.random() < 0.5 else payload + b"\x00" * cut
    return _pack(obj)


def m_jpeg_bytes(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    payload = obj.get("payload", b"")
    if not isinstance(payload, bytes):
        payload = b""
    if obj.get("codec") not in ("jpeg", "jpeg-abbrev"):
        obj["codec"] = rng.choice(["jpeg", "jpeg-abbrev"])
        obj["quality"] = rng.randint(1, 100)
        obj["split_stage"] = None
    choice = rng.randrange(5)
    if choice == 0:
        obj["payload"] = _jpeg_sof_dims(payload, rng)
    elif choice == 1:
        obj["payload"] = b"\xff\xd8" + rng.randbytes(rng.randint(0, 500))
    elif choice == 2:
        obj["payload"] = rng.choice([b"", b"\xff\xd8", b"\xff\xd8\xff\xd9", b"\xff\xd8\xff"])
    else:
        obj["payload"] = _mutate_bytes(payload, rng)
    return _pack(obj)


def m_tensor(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        obj["dtype"] = rng.choice(["uint8", "float16", "float32", "float64", "int8", ""])
    elif choice == 1:
        obj["split_stage"] = rng.choice([None, -1, 0, 1, 2, 3, 4, 5, 99, 2**40])
        obj["codec"] = "tensor"
    elif choice == 2:
        shape = list(rng.choice(list(ACTIVATIONS.values())))
        rng.shuffle(shape)
        obj["shape"] = shape
        obj["payload"] = b"\x00" * (math.prod(shape) * 2)
        obj["dtype"] = "float16"
        obj["codec"] = "tensor"
        obj["split_stage"] = rng.randint(1, 4)
        obj["quality"] = None
    elif choice == 3:
        # Non-finite values: NaN and inf activations or input tensors.
        claimed = obj.get("shape")
        if obj.get("dtype") in ("float16", "float32") and isinstance(claimed, list):
            dtype = np.float16 if obj["dtype"] == "float16" else np.float32
            fill = rng.choice([np.nan, np.inf, -np.inf, 6e4])
            obj["payload"] = np.full(claimed, fill, dtype=dtype).tobytes()
    elif choice == 4:
        obj["codec"] = rng.choice(["raw", "tensor", "jpeg", "jpeg-abbrev", "png", ""])
    else:
        obj["payload"] = rng.randbytes(len(obj.get("payload") or b""))
    return _pack(obj)


def m_values(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    key, value = rng.choice(
        [
            ("deadline_ts", time.time() - 10),
            ("deadline_ts", math.nan),
            ("deadline_ts", 1e300),
            ("capture_ts", math.inf),
            ("edge_confidence", 1.5),
            ("edge_confidence", math.nan),
            ("edge_label", -1),
            ("seq", -1),
            ("quality", 0),
            ("quality", 101),
            ("model", "no_such_model"),
            ("model", "a/b"),
            ("edge_id", "other-edge"),
            ("edge_id", ""),
            ("frame_id", "x" * 129),
            ("frame_id", "a+b"),
            ("frame_id", None),
            ("v", 2),
            ("v", True),
            ("v", None),
            ("t", "result"),
            ("t", "worker_status"),
            ("t", None),
        ]
    )
    obj[key] = value
    return _pack(obj)


def m_nested(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return b"\x91" * rng.choice([10, 1000, 100_000]) + b"\xc0"  # deep arrays
    if choice == 1:
        return b"\x81\xa1a" * rng.choice([10, 1000, 100_000]) + b"\xc0"  # deep maps
    if choice == 2:
        return _pack([obj])
    if choice == 3:
        return b"\xc7\x01\x05x"  # an ext type
    return _pack({1: 2, "v": 1})  # a non-string key


def m_other_topic(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return _pack(obj)  # valid, but published on another edge's frames topic (see fuzz())


def m_control(obj: dict[str, Any], packed: bytes, rng: random.Random) -> bytes:
    return _pack(obj)  # untouched: the worker must compute it


MUTATORS: dict[str, tuple[Mutator, int]] = {
    # name: (mutator, weight)
    "truncate": (m_truncate, 10),
    "bitflip": (m_bitflip, 12),
    "splice": (m_splice, 8),
    "random-bytes": (m_random, 5),
    "not-msgpack": (m_not_msgpack, 2),
    "wrong-type": (m_wrong_type, 12),
    "drop-field": (m_drop_field, 6),
    "add-field": (m_add_field, 4),
    "shape": (m_shape, 8),
    "payload-length": (m_payload_length, 8),
    "jpeg-bytes": (m_jpeg_bytes, 10),
    "tensor": (m_tensor, 8),
    "values": (m_values, 8),
    "nested": (m_nested, 2),
    "other-topic": (m_other_topic, 1),
    "control": (m_control, 3),
}


def mutated_inputs(
    seed: int, count: int, bases: list[FrameRequest] | None = None
) -> list[tuple[str, str, bytes]]:
    """``count`` (input id, mutator name, message bytes), reproducible from ``seed``."""
    rng = random.Random(seed)
    bases = bases or base_requests(seed)
    names = list(MUTATORS)
    weights = [MUTATORS[n][1] for n in names]
    out = []
    for i in range(count):
        input_id = f"fz-{seed}-{i}"
        base = rng.choice(bases)
        name = rng.choices(names, weights)[0]
        obj = _as_map(base, input_id)
        out.append((input_id, name, MUTATORS[name][0](obj, _pack(obj), rng)))
    return out


# -- the run -------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.replies: Counter[str] = Counter()  # input id -> replies
        self.codes: Counter[str] = Counter()  # "result", "bad_request", ...
        self.by_mutator: dict[str, Counter[str]] = {}
        self.waiting: set[str] = set()
        self.all_in = asyncio.Event()
        self.unmatched = 0

    def on_reply(self, message: aiomqtt.Message) -> None:
        corr = getattr(message.properties, "CorrelationData", None)
        payload = message.payload
        if not isinstance(corr, bytes) or not isinstance(payload, bytes):
            self.unmatched += 1
            return
        input_id = corr.decode(errors="replace")
        try:
            reply = decode_reply(payload)
        except ProtocolError:
            self.codes["undecodable-reply"] += 1
            return
        code = "result" if isinstance(reply, Result) else reply.code.value
        self.replies[input_id] += 1
        if self.replies[input_id] == 1:
            self.codes[code] += 1
            mutator = input_id.split("|", 1)[0]
            self.by_mutator.setdefault(mutator, Counter())[code] += 1
        self.waiting.discard(input_id)
        if not self.waiting:
            self.all_in.set()


async def _listen(c: aiomqtt.Client, tally: Tally) -> None:
    async for message in c.messages:
        tally.on_reply(message)


async def wait_online(config: Config, worker_id: str, timeout_s: float = 120) -> None:
    async with make_client(config.broker, client_id=f"fuzz-watch-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe(config.topics.worker_status(worker_id), qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in c.messages:
                if WorkerStatus.from_bytes(message.payload).online:
                    return


def _topic(config: Config, mutator: str) -> tuple[str, str]:
    """(edge id, frames topic): the fuzz edge's, or another edge's for ``other-topic``
    (the envelope's edge id then differs from the topic's: a ``bad_request``)."""
    edge = "other-edge" if mutator == "other-topic" else EDGE
    return edge, config.topics.frames(edge)


async def fuzz(
    config: Config, inputs: list[tuple[str, str, bytes]], window: int, reply_timeout_s: float
) -> tuple[Tally, float]:
    tally = Tally()
    rng = random.Random(len(inputs))
    async with (
        make_client(config.broker, client_id="fuzz-pub") as pub,
        make_client(config.broker, client_id="fuzz-sub", max_queued_incoming=100_000) as sub,
    ):
        await sub.subscribe(f"{config.prefix}/results/#", qos=1)
        listener = asyncio.create_task(_listen(sub, tally))
        started = time.monotonic()
        try:
            for at in range(0, len(inputs), window):
                chunk = inputs[at : at + window]
                tally.all_in.clear()
                publishes = []
                for input_id, mutator, data in chunk:
                    key = f"{mutator}|{input_id}"
                    tally.waiting.add(key)
                    edge, topic = _topic(config, mutator)
                    if rng.random() < 0.2:  # no response topic: the default one
                        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                        props.CorrelationData = key.encode()
                    else:
                        props = request_properties(config.topics.results(edge), key.encode())
                    publishes.append(pub.publish(topic, data, qos=1, properties=props))
                await asyncio.gather(*publishes)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(reply_timeout_s):
                        await tally.all_in.wait()
                for key in list(tally.waiting):
                    tally.codes["no-reply"] += 1
                    tally.by_mutator.setdefault(key.split("|", 1)[0], Counter())["no-reply"] += 1
                tally.waiting.clear()
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.0)  # late duplicates, if any, arrive
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    return tally, elapsed


async def _one_reply(
    config: Config, data: bytes, key: str, timeout_s: float = 30
) -> Result | ErrorReply | None:
    async with (
        make_client(config.broker, client_id=f"fuzz-1-{uuid.uuid4().hex[:6]}") as c,
    ):
        await c.subscribe(config.topics.results(EDGE), qos=1)
        props = request_properties(config.topics.results(EDGE), key.encode())
        await c.publish(config.topics.frames(EDGE), data, qos=1, properties=props)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in c.messages:
                    if getattr(message.properties, "CorrelationData", None) == key.encode():
                        return decode_reply(message.payload)
        except TimeoutError:
            return None
    return None


async def oversize_checks(config: Config, base: FrameRequest) -> dict[str, bool]:
    """Over our limit: refused by the worker; over the broker's: refused by the broker."""
    results: dict[str, bool] = {}
    # (a) a well-formed frame whose payload is one byte over MAX_PAYLOAD_BYTES. The
    # constructor refuses it too, so build the map by hand.
    obj = _as_map(base, "big-payload")
    obj.update(
        codec="raw", shape=[MAX_PAYLOAD_BYTES + 1, 1, 1], dtype="uint8", quality=None,
        split_stage=None, payload=b"\x00" * (MAX_PAYLOAD_BYTES + 1),
    )  # fmt: skip
    reply = await _one_reply(config, _pack(obj), "oversize-payload")
    results["payload_over_8MiB"] = (
        isinstance(reply, ErrorReply) and reply.code.value == "bad_request"
    )
    # (b) 16.5 MiB: under the broker's 17 MiB, over the protocol's 16 MiB ceiling.
    reply = await _one_reply(config, b"\x00" * (16 * 1024 * 1024 + 512 * 1024), "oversize-16.5")
    results["message_16.5MiB"] = isinstance(reply, ErrorReply) and "exceeds" in reply.message
    # (c) over max_packet_size: the broker must disconnect the sender.
    refused = False
    try:
        async with make_client(config.broker, client_id="fuzz-huge") as c:
            async with asyncio.timeout(30):
                await c.publish(
                    config.topics.frames(EDGE), b"\x00" * (MAX_PACKET_SIZE + 1024 * 1024), qos=1
                )
    except (aiomqtt.MqttError, TimeoutError):
        refused = True
    results["packet_over_broker_limit"] = refused
    return results


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("w") as log:  # a file: a pipe nobody reads would block the worker
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _scrape(port: int, name: str) -> float | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


async def run(args: argparse.Namespace) -> int:
    prefix = f"fuzz-{uuid.uuid4().hex[:6]}"
    bases = base_requests(args.seed)
    inputs = mutated_inputs(args.seed, args.inputs, bases)
    kinds = Counter(name for _, name, _ in inputs)
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker(port=0) as info:
        config = load_config(env={}, overrides=[f"broker.url={info.url}", f"prefix={prefix}"])
        metrics_port = free_port()
        log_path = Path(tmp) / "worker.log"
        argv = [
            sys.executable, "-m", "camoffload", "worker", "--broker", info.url,
            "--set", f"prefix={prefix}", "--worker-id", "fuzz-w1", "--model", MODEL,
            "--max-queue", "1024", "--max-batch", "32", "--metrics-port", str(metrics_port),
            "--log-level", "WARNING",
        ]  # fmt: skip
        worker = _spawn(argv, log_path)
        crashes = 0
        try:
            await wait_online(config, "fuzz-w1")
            pid = worker.pid
            rss_before = psutil.Process(pid).memory_info().rss
            print(f"fuzzing worker pid {pid} with {len(inputs):,} inputs "
                  f"(window {args.window}, seed {args.seed})", flush=True)  # fmt: skip
            tally, elapsed = await fuzz(config, inputs, args.window, args.reply_timeout_s)
            alive = worker.poll() is None
            crashes += 0 if alive else 1
            rss_after = psutil.Process(pid).memory_info().rss if alive else 0
            oversize = (
                {} if args.no_oversize or not alive else await oversize_checks(config, bases[2])
            )
            control = bases[2]
            fresh = msgspec.structs.replace(control, frame_id="final", deadline_ts=time.time() + 30)
            final = await _one_reply(config, fresh.to_bytes(), "final") if alive else None
            alive = worker.poll() is None and worker.pid == pid
            crashes += 0 if alive or crashes else 1
            bad_messages = _scrape(metrics_port, "camoffload_worker_bad_messages_total")
        finally:
            await asyncio.to_thread(_stop, worker)
        log_text = log_path.read_text(errors="replace")
    tracebacks = log_text.count("Traceback")
    answered = sum(1 for n in tally.replies.values() if n >= 1)
    duplicates = sum(n - 1 for n in tally.replies.values() if n > 1)
    no_reply = tally.codes["no-reply"]
    print(f"\n{len(inputs):,} inputs in {elapsed:.1f} s ({len(inputs) / elapsed:,.0f}/s); "
          f"worker RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB")  # fmt: skip
    print("\n| mutation | inputs | " + " | ".join(_CODES) + " |")
    print("|---|---:|" + "---:|" * len(_CODES))
    for name in MUTATORS:
        row = tally.by_mutator.get(name, Counter())
        print(f"| {name} | {kinds[name]} | " + " | ".join(str(row[c]) for c in _CODES) + " |")
    print(f"\nreplies by code: {dict(tally.codes)}; duplicates {duplicates}; "
          f"unmatched {tally.unmatched}; worker bad_messages_total {bad_messages}; "
          f"tracebacks in the worker log {tracebacks}")  # fmt: skip
    print(f"oversize: {oversize}")
    print(f"final valid frame: {type(final).__name__ if final else 'no reply'}")
    ok = (
        crashes == 0
        and no_reply == 0
        and duplicates == 0
        and tracebacks == 0
        and isinstance(final, Result)
        and all(oversize.values())
    )
    result = {
        "inputs": len(inputs),
        "crashes": crashes,
        "answered": answered,
        "no_reply": no_reply,
        "duplicates": duplicates,
        "results": tally.codes["result"],
        "bad_request": tally.codes["bad_request"],
        "other_errors": answered - tally.codes["result"] - tally.codes["bad_request"],
        "tracebacks": tracebacks,
        "oversize_ok": int(all(oversize.values())) if oversize else "skipped",
        "final_answered": int(isinstance(final, Result)),
        "inputs_per_s": f"{len(inputs) / elapsed:.0f}",
        "rss_growth_mib": f"{(rss_after - rss_before) / 2**20:.1f}",
    }
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return 0 if ok else 1


_CODES = ("result", "bad_request", "unknown_model", "expired", "busy", "internal", "no-reply")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reply-timeout-s", type=float, default=20.0)
    parser.add_argument("--no-oversize", action="store_true", help="skip the 8-18 MiB checks")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
