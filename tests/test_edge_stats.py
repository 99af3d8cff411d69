"""The edge's running figures, its Prometheus metrics and its Home Assistant discovery,
without a broker: every figure below is worked out by hand from the records."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_node.homeassistant import (
    SENSOR_KEYS,
    discovery_messages,
    ha_state_topic,
    removal_messages,
    state_payload,
)
from edge_node.metrics import EdgeMetrics
from edge_node.stats import EdgeStats, EdgeStatsSnapshot, format_status_line
from pipeline.errors import ConfigError
from pipeline.protocol import Decision

# --- EdgeStats ------------------------------------------------------------------


def test_rates_over_a_full_window_are_counts_over_its_span() -> None:
    stats = EdgeStats(window_s=10)
    # 20 s at 10 frames/s: each second 3 skipped, 2 to the cloud (2,000 bytes each,
    # 20 ms), 5 decided locally.
    for k in range(200):
        t = k / 10
        stats.record_capture(now=t)
        slot = k % 10
        if slot < 3:
            stats.record_skip(now=t)
        elif slot < 5:
            stats.record_decision(Decision.CLOUD, rtt_ms=20.0, bytes_sent=2000, now=t)
        else:
            stats.record_decision(Decision.LOCAL, rtt_ms=None, bytes_sent=0, now=t)

    snap = stats.snapshot(now=20.0)
    # The window is seconds 10..20 inclusive: [10.0, 20.0] is 10 s and holds 100 frames.
    assert snap.window_s == pytest.approx(10.0)
    assert snap.capture_fps == pytest.approx(10.0)
    assert snap.skipped_fps == pytest.approx(3.0)
    assert snap.decided_fps == pytest.approx(10.0)
    assert snap.dropped_fps == 0
    assert snap.bytes_per_s == pytest.approx(2 * 2000)
    assert snap.offload_share == pytest.approx(0.2)  # 2 of every 10 decisions
    assert snap.rtt_ms_p50 == 20.0
    assert snap.rtt_ms_p95 == 20.0
    # Totals cover all 20 s.
    assert snap.captured == 200
    assert snap.decided == 200
    assert snap.skipped == 60
    assert snap.offloaded == 40
    assert snap.bytes_sent == 80_000
    assert snap.by_decision == {"local": 100, "cloud": 40, "skipped": 60}
    assert snap.last_decision == "local"

    # Half a second into second 20 (5 more frames): the span is 10.5 s.
    for k in range(200, 205):
        stats.record_capture(now=k / 10)
    snap = stats.snapshot(now=20.5)
    assert snap.window_s == pytest.approx(10.5)
    assert snap.capture_fps == pytest.approx(105 / 10.5)


def test_offload_share_counts_every_offloaded_outcome() -> None:
    stats = EdgeStats(window_s=10)
    outcomes = [
        Decision.CLOUD,
        Decision.LOCAL_AFTER_TIMEOUT,
        Decision.LOCAL_AFTER_BUSY,
        Decision.LOCAL_AFTER_ERROR,
        Decision.LOCAL,
        Decision.LOCAL,
        Decision.SKIPPED,
        Decision.DROPPED,
    ]
    for i, decision in enumerate(outcomes):
        stats.record_capture(now=5.0 + i / 10)
        stats.record_decision(decision, rtt_ms=None, bytes_sent=100, now=5.0 + i / 10)
    snap = stats.snapshot(now=6.0)
    assert snap.offload_share == pytest.approx(4 / 8)
    assert snap.offloaded == 4
    assert snap.dropped == 1
    assert snap.skipped == 1
    assert snap.rtt_ms_p50 is None  # no reply carried a round trip
    # Started at 5.0, so the span is 1 s, not the 10 s window.
    assert snap.window_s == pytest.approx(1.0)
    assert snap.decided_fps == pytest.approx(8.0)
    assert snap.dropped_fps == pytest.approx(1.0)
    assert snap.bytes_per_s == pytest.approx(800.0)


def test_round_trip_percentiles_are_nearest_rank_over_the_window() -> None:
    stats = EdgeStats(window_s=10)
    # 20 round trips of 1..20 ms, shuffled over two seconds.
    values = [7, 3, 20, 1, 15, 9, 11, 2, 18, 5, 4, 13, 6, 19, 8, 10, 12, 17, 14, 16]
    for i, rtt in enumerate(values):
        stats.record_decision(Decision.CLOUD, rtt_ms=float(rtt), bytes_sent=1, now=i / 10)
    snap = stats.snapshot(now=2.0)
    assert snap.rtt_ms_p50 == 10.0  # rank ceil(0.50 * 20) = 10
    assert snap.rtt_ms_p95 == 19.0  # rank ceil(0.95 * 20) = 19


def test_old_buckets_leave_the_window_but_not_the_totals() -> None:
    stats = EdgeStats(window_s=5)
    for k in range(10):
        t = k / 10
        stats.record_capture(now=t)
        stats.record_decision(Decision.CLOUD, rtt_ms=50.0, bytes_sent=1000, now=t)
    assert stats.snapshot(now=5.0).capture_fps == pytest.approx(10 / 5)  # second 0 still in
    snap = stats.snapshot(now=6.0)  # the window is seconds 1..6: nothing
    assert snap.capture_fps == 0
    assert snap.decided_fps == 0
    assert snap.bytes_per_s == 0
    assert snap.offload_share is None
    assert snap.rtt_ms_p50 is None
    assert snap.rtt_ms_p95 is None
    assert (snap.captured, snap.decided, snap.offloaded, snap.bytes_sent) == (10, 10, 10, 10_000)


def test_memory_stays_bounded_after_100k_records() -> None:
    stats = EdgeStats(window_s=10, rtt_samples=32)
    # 100,000 frames over 50 s (2,000 frames/s), each answered with rtt = k % 100 ms.
    for k in range(100_000):
        t = k / 2000
        stats.record_capture(now=t)
        stats.record_decision(Decision.CLOUD, rtt_ms=float(k % 100), bytes_sent=10, now=t)
    assert stats.max_buckets == 11
    assert stats.buckets_held == 11
    assert stats.samples_held <= 11 * 32
    snap = stats.snapshot(now=50.0)
    assert snap.captured == 100_000
    assert snap.bytes_sent == 1_000_000
    assert snap.capture_fps == pytest.approx(2000.0)
    # A sample of 320 from a uniform 0..99: the median is near 49.5, not exact.
    assert snap.rtt_ms_p50 is not None
    assert 35 <= snap.rtt_ms_p50 <= 65
    assert snap.rtt_ms_p95 is not None
    assert snap.rtt_ms_p95 >= 85


def test_a_busy_second_weighs_more_than_its_sample() -> None:
    stats = EdgeStats(window_s=10, rtt_samples=64)
    # Second 0: 1,000 round trips of 100 ms (only 64 are kept).
    for k in range(1000):
        stats.record_decision(Decision.CLOUD, rtt_ms=100.0, bytes_sent=1, now=k / 1000)
    # Seconds 1..9: 60 round trips of 1 ms each, 540 in all (all kept).
    for second in range(1, 10):
        for k in range(60):
            stats.record_decision(Decision.CLOUD, rtt_ms=1.0, bytes_sent=1, now=second + k / 60)
    snap = stats.snapshot(now=10.0)
    # 1,000 of 1,540 round trips took 100 ms; counting samples alone would say 1 ms.
    assert snap.rtt_ms_p50 == 100.0


def test_the_clock_is_injectable() -> None:
    now = [1000.0]
    stats = EdgeStats(window_s=10, clock=lambda: now[0])
    for _ in range(30):
        stats.record_capture()
        now[0] += 0.1
    assert now[0] == pytest.approx(1003.0)
    assert stats.snapshot().capture_fps == pytest.approx(30 / 3.0)


def test_a_window_must_cover_at_least_one_second() -> None:
    with pytest.raises(ValueError, match="window_s"):
        EdgeStats(window_s=0.5)
    with pytest.raises(ValueError, match="rtt_samples"):
        EdgeStats(rtt_samples=0)


# --- the status line -------------------------------------------------------------


def _snapshot(**changes: object) -> EdgeStatsSnapshot:
    values: dict[str, object] = {
        "window_s": 10.0,
        "capture_fps": 12.5,
        "skipped_fps": 3.1,
        "dropped_fps": 0.0,
        "decided_fps": 12.5,
        "offload_share": 0.24,
        "rtt_ms_p50": 18.2,
        "rtt_ms_p95": 41.0,
        "bytes_per_s": 310_400.0,
        "captured": 1240,
        "decided": 1234,
        "skipped": 300,
        "dropped": 0,
        "offloaded": 296,
        "bytes_sent": 3_000_000,
        "by_decision": {"cloud": 296},
        "last_decision": "cloud",
    }
    values.update(changes)
    return EdgeStatsSnapshot(**values)  # type: ignore[arg-type]


def test_status_line() -> None:
    assert format_status_line(_snapshot()) == (
        "12.5 fps | skipped 3.1/s | offload 24% | rtt p50 18 ms p95 41 ms | 310 kB/s | decided 1234"
    )


def test_status_line_without_figures_and_with_drops() -> None:
    empty = EdgeStats().snapshot(now=0.0)
    assert format_status_line(empty) == (
        "0.0 fps | skipped 0.0/s | offload - | rtt - | 0 B/s | decided 0"
    )
    line = format_status_line(
        _snapshot(rtt_ms_p50=0.84, rtt_ms_p95=1.5, bytes_per_s=2_450_000.0, dropped=7)
    )
    assert line == (
        "12.5 fps | skipped 3.1/s | offload 24% | rtt p50 0.8 ms p95 1.5 ms | 2.5 MB/s "
        "| decided 1234 | dropped 7"
    )


# --- Prometheus ------------------------------------------------------------------


def _samples(metrics: EdgeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_exposition() -> None:
    metrics = EdgeMetrics("cam1")
    for _ in range(3):
        metrics.record_capture()
    metrics.record_decision(Decision.CLOUD, rtt_ms=20.0, bytes_sent=1500)
    metrics.record_decision(Decision.CLOUD, rtt_ms=300.0, bytes_sent=2500)
    metrics.record_decision(Decision.LOCAL, rtt_ms=None, bytes_sent=0)
    metrics.set_in_flight(2)
    metrics.update(_snapshot(offload_share=0.5))

    samples = _samples(metrics)
    edge = (("edge", "cam1"),)

    def frames(decision: str) -> float:
        return samples[("camoffload_edge_frames_total", (("decision", decision), *edge))]

    assert frames("cloud") == 2
    assert frames("local") == 1
    assert frames("dropped") == 0  # every decision exists from the start
    assert {
        labels[0][1] for (name, labels) in samples if name == "camoffload_edge_frames_total"
    } == {d.value for d in Decision}
    assert samples[("camoffload_edge_captured_total", edge)] == 3
    assert samples[("camoffload_edge_bytes_sent_total", edge)] == 4000
    assert samples[("camoffload_edge_rtt_seconds_count", edge)] == 2
    assert samples[("camoffload_edge_rtt_seconds_sum", edge)] == pytest.approx(0.32)
    assert samples[("camoffload_edge_rtt_seconds_bucket", (*edge, ("le", "0.025")))] == 1
    assert samples[("camoffload_edge_rtt_seconds_bucket", (*edge, ("le", "0.5")))] == 2
    assert samples[("camoffload_edge_in_flight", edge)] == 2
    assert samples[("camoffload_edge_offload_share", edge)] == 0.5


def test_offload_share_gauge_is_nan_without_decisions_and_edges_do_not_share() -> None:
    first, second = EdgeMetrics("a"), EdgeMetrics("b")
    first.record_capture()
    assert math.isnan(_samples(first)[("camoffload_edge_offload_share", (("edge", "a"),))])
    first.update(_snapshot(offload_share=0.25))
    first.update(_snapshot(offload_share=None))
    assert math.isnan(_samples(first)[("camoffload_edge_offload_share", (("edge", "a"),))])
    assert _samples(second)[("camoffload_edge_captured_total", (("edge", "b"),))] == 0


def test_metrics_are_served_over_http_until_closed() -> None:
    metrics = EdgeMetrics("cam1")
    metrics.record_capture()
    port = metrics.serve(0, "127.0.0.1")
    assert port > 0
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        metrics.close()
    assert 'camoffload_edge_captured_total{edge="cam1"} 1.0' in body
    metrics.close()  # a second close is harmless
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


# --- Home Assistant --------------------------------------------------------------


def _configs(edge_id: str = "cam1") -> dict[str, dict[str, object]]:
    messages = discovery_messages("site/cams", edge_id, version="0.1.0")
    return {topic: json.loads(payload) for topic, payload in messages}


def test_state_topic() -> None:
    assert ha_state_topic("camoffload", "cam1") == "camoffload/ha/cam1/state"
    with pytest.raises(ConfigError):
        ha_state_topic("camoffload", "cam/1")


def test_discovery_configs() -> None:
    configs = _configs()
    assert list(configs) == [
        f"homeassistant/sensor/camoffload_cam1/{key}/config" for key in SENSOR_KEYS
    ]
    assert len(SENSOR_KEYS) == 7
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    by_key = {topic.split("/")[3]: config for topic, config in configs.items()}
    for key, config in by_key.items():
        assert config["state_topic"] == "site/cams/ha/cam1/state"
        assert config["availability_topic"] == "site/cams/ha/cam1/state"
        assert config["value_template"] == f"{{{{ value_json.{key} }}}}"
        assert config["expire_after"] == 30
        assert config["default_entity_id"] == f"sensor.camoffload_cam1_{key}"
        assert config["device"] == {
            "identifiers": ["camoffload_cam1"],
            "name": "camoffload cam1",
            "manufacturer": "camoffload",
            "model": "edge node",
            "sw_version": "0.1.0",
        }
    assert by_key["capture_fps"]["unit_of_measurement"] == "fps"
    assert by_key["capture_fps"]["state_class"] == "measurement"
    assert by_key["offload_pct"]["unit_of_measurement"] == "%"
    assert by_key["rtt_ms_p50"]["device_class"] == "duration"
    assert by_key["rtt_ms_p50"]["unit_of_measurement"] == "ms"
    assert by_key["bytes_per_s"]["unit_of_measurement"] == "B/s"
    assert by_key["decided"]["state_class"] == "total_increasing"
    # A text sensor must not claim a state class: Home Assistant would expect numbers.
    assert "state_class" not in by_key["last_decision"]
    assert "unit_of_measurement" not in by_key["last_decision"]


def test_every_template_key_is_in_the_state() -> None:
    stats = EdgeStats()
    stats.record_capture(now=0.0)
    stats.record_decision(Decision.CLOUD, rtt_ms=12.345, bytes_sent=1234, now=0.5)
    state = json.loads(state_payload(stats.snapshot(now=1.0), online=True))
    for config in _configs().values():
        match = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", str(config["value_template"]))
        assert match is not None
        assert match.group(1) in state
    assert state["online"] is True
    assert state["rtt_ms_p50"] == 12.3
    assert state["offload_pct"] == 100.0
    assert state["last_decision"] == "cloud"
    assert state["bytes_per_s"] == 1234


def test_the_templates_render_as_home_assistant_would() -> None:
    jinja2 = pytest.importorskip("jinja2")
    config = _configs()["homeassistant/sensor/camoffload_cam1/offload_pct/config"]
    snapshot = _snapshot(offload_share=0.2444)
    for online, availability in ((True, "online"), (False, "offline")):
        value_json = json.loads(state_payload(snapshot, online=online))
        value = jinja2.Template(str(config["value_template"])).render(value_json=value_json)
        assert value == "24.4"
        available = jinja2.Template(str(config["availability_template"])).render(
            value_json=value_json
        )
        assert available == availability
    # No figure: ``None``, which Home Assistant's MQTT sensor reads as unknown.
    value_json = json.loads(state_payload(_snapshot(offload_share=None), online=True))
    assert jinja2.Template(str(config["value_template"])).render(value_json=value_json) == "None"


def test_state_payload_is_compact_json_with_rounded_figures() -> None:
    payload = state_payload(
        _snapshot(capture_fps=12.3456, offload_share=0.24444, rtt_ms_p95=None), online=False
    )
    assert b" " not in payload
    state = json.loads(payload)
    assert state["online"] is False
    assert state["capture_fps"] == 12.35
    assert state["offload_pct"] == 24.4
    assert state["rtt_ms_p95"] is None
    assert state["bytes_per_s"] == 310_400
    assert state["decided"] == 1234


def test_an_edge_id_unsafe_for_home_assistant_is_made_safe() -> None:
    configs = _configs("Lobby Cam.1")
    for topic, config in configs.items():
        node_id = topic.split("/")[2]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", node_id)
        assert node_id.startswith("camoffload_Lobby_Cam_1_")  # plus a hash of the id
        assert re.fullmatch(r"sensor\.[a-z0-9_]+", str(config["default_entity_id"]))
        assert config["state_topic"] == "site/cams/ha/Lobby Cam.1/state"
    # Two ids that differ only in unsafe characters get distinct topics.
    assert not set(_configs("cam.1")) & set(_configs("cam_1"))


def test_removal_messages_empty_every_config_topic() -> None:
    removals = removal_messages("cam1")
    assert [topic for topic, _ in removals] == list(_configs())
    assert all(payload == b"" for _, payload in removals)
    assert removal_messages("cam1", discovery_prefix="ha")[0][0].startswith("ha/sensor/")


def test_discovery_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError):
        discovery_messages("camoffload", "cam1", discovery_prefix="home/#", version="1")
    with pytest.raises(ConfigError):
        discovery_messages("camoffload", "cam1", expire_after_s=0, version="1")
