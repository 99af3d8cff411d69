"""Microseconds to read one incoming MQTT 5 PUBLISH: paho-mqtt's own decoder against
pipeline.paho_publish's, on the same packets, side by side (ratio last).

A frame topic's packet carries a response topic; a bundle of 16 split activations
(uint8 codes, 37,632 bytes each) is ~600 KB.

    .venv/bin/python bench/paho_publish.py
"""

from __future__ import annotations

import argparse
import random
import struct
import timeit

from paho.mqtt.enums import MQTTProtocolVersion

from pipeline.paho_publish import decode_publish, paho_decode_publish
from pipeline.topics import request_properties

SIZES = (200, 37_632, 16 * 37_632 + 300)


def _packet(payload_len: int) -> bytearray:
    topic = b"camoffload/frames/bench-edge"
    properties = request_properties("camoffload/results/bench-edge", None)
    assert properties is not None
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", 77)
    body += properties.pack()  # type: ignore[no-untyped-call]  # paho is untyped
    return bytearray(body + random.Random(0).randbytes(payload_len))


def _us(decode: object, packet: bytearray, number: int) -> float:
    def once() -> None:
        decode(0x32, packet, MQTTProtocolVersion.MQTTv5)  # type: ignore[operator]

    return min(timeit.repeat(once, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for size in SIZES:
        packet = _packet(size)
        a = paho_decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
        b = decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
        assert (a.payload, a.topic, a.mid) == (b.payload, b.topic, b.mid)
        rows.append(
            (
                size,
                _us(paho_decode_publish, packet, args.number),
                _us(decode_publish, packet, args.number),
            )
        )
    print("| payload bytes | paho us | ours us |")
    print("|---:|---:|---:|")
    for size, paho_us, ours_us in rows:
        print(f"| {size:,} | {paho_us:.1f} | {ours_us:.1f} |")
    for size, paho_us, ours_us in rows:
        print(f"ratio paho/ours {size} bytes: {paho_us / ours_us:.2f}")


if __name__ == "__main__":
    main()
