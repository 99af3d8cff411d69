"""Does the broker hold to a subscriber's Receive Maximum once acknowledgements flow?

A paho subscriber connects with MQTT 5 Receive Maximum ``--receive-maximum`` and
manual acknowledgement; a publisher sends ``--messages`` QoS 1 messages at once; the
subscriber acknowledges one every 2 ms. A broker that keeps the promise never has more
than Receive Maximum messages outstanding (received, not yet acknowledged). Prints the
most it had. docs/worker.md cites it: Mosquitto 2.0.11 does not keep it.

    .venv/bin/python bench/receive_maximum.py [--receive-maximum 4] [--messages 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker import mosquitto_broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receive-maximum", type=int, default=4)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    got: list[tuple[int, int]] = []
    with mosquitto_broker(port=0) as broker:
        sub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="rm-sub", protocol=mqtt.MQTTv5, manual_ack=True
        )
        sub.on_message = lambda client, userdata, m: got.append((m.mid, m.qos))
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = args.receive_maximum
        sub.connect("127.0.0.1", broker.port, properties=props)
        sub.loop_start()
        sub.subscribe("rm/#", qos=1)
        time.sleep(0.3)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rm-pub", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(0)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        for _ in range(args.messages):
            pub.publish("rm/x", b"m", qos=1)
        acked = most = 0
        deadline = time.monotonic() + 10 + args.messages * 0.004
        while acked < args.messages and time.monotonic() < deadline:
            most = max(most, len(got) - acked)
            if acked < len(got):
                sub.ack(*got[acked])
                acked += 1
            time.sleep(0.002)
        sub.loop_stop()
        pub.loop_stop()
    limit = args.receive_maximum
    print(f"Receive Maximum {limit}: {len(got)} of {args.messages} received, "
          f"at most {most} outstanding (a conforming broker: <= {limit})")  # fmt: skip


if __name__ == "__main__":
    main()
