"""What the untried ideas for split activations would save, priced per frame on this box.

Split frames (uint8 codes after split 1, 37,632 bytes) leave the pipeline ~15% of the
model-alone time outside the model (``bench/pipeline_threads.py --ceiling``). Each
candidate change is timed here on the bench's own split frames, one process, before
anyone builds it:

* decoding one bundle member: our validated ``FrameRequest.from_bytes`` against plain
  MessagePack, and against msgspec's typed decoder when msgspec is importable (it is
  not a dependency: ``pip install --target DIR msgspec`` and ``PYTHONPATH=DIR``);
* smaller payloads: the codes' zero share, a zero bitmask plus the non-zero codes, and
  zlib at level 1, with what each costs to encode and decode;
* the kernel's share: 1.2 MB (a 32-frame bundle) through loopback TCP and through a
  Unix socket, sender and receiver CPU from ``os.times`` in two processes.

The reply path does not depend on the payload: ``bench/wire.py`` times it.

    .venv/bin/python bench/split_wire_costs.py [--repeat 300]
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import tempfile
import timeit
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from camoffload.perf.workload import make_workload
from pipeline.inference import Classifier
from pipeline.protocol import FrameRequest
from pipeline.quantize import QuantizedTensor

BUNDLE = 32


def _us(action: Callable[[], object], repeat: int, per: int = 1) -> float:
    """Best of 5 timings of ``repeat`` calls, in us per item (``per`` items a call)."""
    return min(timeit.repeat(action, number=repeat, repeat=5)) / repeat / per * 1e6


def _msgspec_decoder() -> Callable[[bytes], object] | None:
    try:
        import msgspec  # type: ignore[import-not-found]  # optional: not a dependency
    except ImportError:
        return None
    fields: list[Any] = [
        ("v", int), ("t", str), ("frame_id", str), ("edge_id", str), ("seq", int),
        ("capture_ts", float), ("deadline_ts", float), ("codec", str),
        ("shape", tuple[int, ...]), ("dtype", str), ("payload", bytes), ("model", str),
    ]  # fmt: skip
    optional: list[Any] = [
        (name, tp | None, None)
        for name, tp in (
            ("quality", int), ("split_stage", int), ("edge_label", int),
            ("edge_confidence", float), ("tensor_scale", float), ("tensor_offset", float),
        )
    ]  # fmt: skip
    struct = msgspec.defstruct("Frame", fields + optional, forbid_unknown_fields=True)
    decoder = msgspec.msgpack.Decoder(struct)
    decode: Callable[[bytes], object] = decoder.decode
    return decode


def _decode_all(decoder: Callable[[bytes], object], members: list[bytes]) -> None:
    for member in members:
        decoder(member)


def _decode_rows(members: list[bytes], repeat: int) -> None:
    rows: list[tuple[str, Callable[[bytes], object]]] = [
        ("FrameRequest.from_bytes (validated)", FrameRequest.from_bytes),
        ("msgpack.unpackb (no checks)", msgpack.unpackb),
    ]
    decode = _msgspec_decoder()
    if decode is not None:
        rows.append(("msgspec typed decoder (types only)", decode))
    print("| decoding one bundle member | us per frame |")
    print("|---|---:|")
    for name, decoder in rows:
        cost = _us(functools.partial(_decode_all, decoder, members), repeat, BUNDLE)
        print(f"| {name} | {cost:.1f} |")
    if decode is None:
        print("| msgspec typed decoder | (msgspec not importable) |")


def _payload_rows(codes: np.ndarray, repeat: int) -> None:
    flat = codes.ravel()
    raw = flat.tobytes()
    mask = flat != 0
    packed, values = np.packbits(mask), flat[mask]

    def sparse_encode() -> bytes:
        nonzero = flat != 0
        return b"".join((np.packbits(nonzero).tobytes(), flat[nonzero].tobytes()))

    def sparse_decode() -> np.ndarray:
        where = np.unpackbits(packed, count=flat.size).view(bool)
        out = np.zeros(flat.size, np.uint8)
        out[where] = values
        return out

    assert np.array_equal(sparse_decode(), flat)
    deflated = zlib.compress(raw, 1)
    print(f"\n| the codes of one frame ({codes.shape}, {mask.mean():.0%} non-zero) | bytes "
          "| encode us | decode us |")  # fmt: skip
    print("|---|---:|---:|---:|")
    print(f"| as sent (uint8 codes) | {len(raw):,} | | |")
    print(f"| zero bitmask + non-zero codes | {packed.nbytes + values.nbytes:,} | "
          f"{_us(sparse_encode, repeat):.1f} | {_us(sparse_decode, repeat):.1f} |")  # fmt: skip
    print(f"| zlib level 1 | {len(deflated):,} | {_us(lambda: zlib.compress(raw, 1), repeat):.1f} "
          f"| {_us(lambda: zlib.decompress(deflated), repeat):.1f} |")  # fmt: skip
    copy_us = _us(lambda: bytes(bytearray(raw)), repeat) / 2  # two copies a call
    print(f"| one copy of the codes (for scale) | | {copy_us:.1f} | |")


def _socket_cost(
    family: int, address: tuple[str, int] | str, messages: int, size: int
) -> tuple[float, float]:
    """(sender, receiver) CPU us per message of ``size`` bytes, ``messages`` of them."""
    server = socket.socket(family)
    server.bind(address)
    server.listen(1)
    bound = server.getsockname()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the sender
        os.close(read_end)
        client = socket.socket(family)
        client.connect(bound)
        if family == socket.AF_INET:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = bytes(size)
        before = os.times()
        for _ in range(messages):
            client.sendall(data)
        after = os.times()
        client.close()
        spent = (after.user + after.system - before.user - before.system) / messages * 1e6
        os.write(write_end, f"{spent}".encode())
        os._exit(0)
    os.close(write_end)
    connection, _ = server.accept()
    buffer = memoryview(bytearray(size))
    before = os.times()
    while connection.recv_into(buffer):
        pass
    after = os.times()
    received = (after.user + after.system - before.user - before.system) / messages * 1e6
    sent = float(os.read(read_end, 64).decode())
    os.waitpid(child, 0)
    os.close(read_end)
    connection.close()
    server.close()
    return sent, received


def _socket_rows(size: int) -> None:
    messages = 2000  # os.times counts 10 ms ticks: ~5 us per message at 2,000
    print(f"\n| {size:,} bytes (one bundle) through | sender CPU us | receiver CPU us | "
          "both, per frame |")  # fmt: skip
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as directory:
        for run in range(2):
            ends: tuple[tuple[str, int, tuple[str, int] | str], ...] = (
                ("loopback TCP", socket.AF_INET, ("127.0.0.1", 0)),
                ("Unix socket", socket.AF_UNIX, str(Path(directory) / f"s{run}")),
            )
            for name, family, address in ends:
                sent, received = _socket_cost(family, address, messages, size)
                print(f"| {name} | {sent:.0f} | {received:.0f} | "
                      f"{(sent + received) / BUNDLE:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    classifier = Classifier.by_name("fmnist_exit_resnet", "cpu")
    workload = make_workload("split", classifier, 2 * BUNDLE)
    members = workload.requests("bench-edge", "abcd1234")[:BUNDLE]
    first = workload.model_inputs[0]
    assert isinstance(first, QuantizedTensor)
    print(f"# split frames of fmnist_exit_resnet, {len(members[0]):,} bytes per request\n")
    _decode_rows(members, args.repeat)
    _payload_rows(np.asarray(first.codes), args.repeat)
    _socket_rows(sum(len(m) for m in members))


if __name__ == "__main__":
    main()
