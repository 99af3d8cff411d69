"""``camoffload eval --suite security``: its measures on hand-made ledgers and reference
lists, the suite as shipped, and one small real run through a broker, worker and edge."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from camoffload.eval.security_measures import (
    hand_agreement,
    measure_security,
    presence,
    read_hand_counts,
)
from camoffload.eval.security_report import (
    SecurityResults,
    format_tables,
    is_security_results,
    load_security,
    render_security_report,
)
from camoffload.eval.security_suite import (
    cell_config,
    check_security_suite,
    data_sets,
    run_security,
)
from camoffload.eval.suite import load_suite, parse_suite
from edge_node.ledger_rows import FrameRecord
from pipeline.errors import CamoffloadError, ConfigError

TINY = """
name = "security-tiny"
title = "A tiny security suite"
analysis = "security"

[run]
frames = 8
rate = 10
deadline_ms = 1000

[data.clip]
source = "package:vtest_clip.avi"
cloud_model = "nanodet_coco"
local_model = "ssdlite_person"
reference = "cloud"

[strategies.cascade-fixed]
policy = "threshold"
jpeg_quality = 90

[links.direct]
profile = "direct"

[loads.idle]
"""


def _det(label: str, score: float = 0.9) -> dict[str, object]:
    return {"label": label, "score": score, "box": [0.1, 0.1, 0.2, 0.3]}


def _record(
    seq: int,
    decision: str | None,
    detections: list[dict[str, object]] | None,
    *,
    bytes_sent: int = 0,
    latency_ms: float = 10.0,
) -> FrameRecord:
    return FrameRecord(
        run_id="r",
        frame_id=f"f{seq}",
        seq=seq,
        capture_ts=100.0,
        true_label=None,
        decision=decision,
        decided_ts=None if decision is None else 100.0 + latency_ms / 1000,
        label=None,
        confidence=None,
        bytes_sent=bytes_sent,
        rtt_ms=None,
        detail=None,
        model=None,
        local_label=None,
        local_confidence=None,
        payload=None,
        detections=detections,
    )


def test_presence_counts_precision_recall_and_f1() -> None:
    p = presence([True, True, False, False, True], [True, False, True, False, True])
    assert (p.tp, p.fp, p.fn, p.tn) == (2, 1, 1, 1)
    assert p.precision == pytest.approx(2 / 3)
    assert p.recall == pytest.approx(2 / 3)
    assert p.f1 == pytest.approx(2 / 3)
    nothing_called = presence([False, False], [True, False])
    assert nothing_called.precision is None  # no alarm: neither right nor wrong
    assert nothing_called.recall == 0.0
    assert nothing_called.f1 == 0.0
    assert presence([False], [False]).f1 is None  # nothing to find, nothing found


def test_a_tiny_run_is_measured_exactly_against_its_reference() -> None:
    person, car = _det("person"), _det("car")
    faint = _det("person", 0.2)  # below COUNT_MIN_SCORE: not counted on either side
    reference = [
        [person, person],  # 0: two people
        [person, car],  # 1: a person and a car
        [],  # 2: empty
        [person],  # 3: one person
        [car],  # 4: a car
    ]
    records = [
        _record(0, "local", [person, faint], latency_ms=5.0),  # 1 of 2 people
        _record(1, "cloud", [person, car], bytes_sent=1000, latency_ms=50.0),
        _record(2, "local", [person], latency_ms=5.0),  # a false alarm
        _record(3, "local-after-timeout", [], bytes_sent=3000, latency_ms=1000.0),
        # frame 4 never decided: it counts, with no detections
        _record(4, None, None),
    ]
    m = measure_security(records, reference)
    assert m.frames == 5
    # people: ours yes,yes,yes,no,no vs reference yes,yes,no,yes,no -> TP 2, FP 1, FN 1
    assert m.person_precision == pytest.approx(2 / 3)
    assert m.person_recall == pytest.approx(2 / 3)
    assert m.person_f1 == pytest.approx(2 / 3)
    # |1-2| + |1-1| + |1-0| + |0-1| + |0-0| = 3 over 5 frames
    assert m.count_mae == pytest.approx(0.6)
    assert m.vehicle_frames == 2
    assert m.vehicle_recall == pytest.approx(0.5)  # frame 1 found, frame 4 not
    assert m.offload_share == pytest.approx(0.4)  # cloud and local-after-timeout
    assert m.bytes_per_frame == pytest.approx(800.0)  # 4000 bytes over all 5 frames
    assert m.decided_once == 4
    assert m.latency_p50_ms == pytest.approx(27.5)  # 5, 5, 50, 1000
    assert m.sent_latency_p50_ms == pytest.approx(525.0)  # 50, 1000
    assert m.sent_latency_p95_ms == pytest.approx(952.5)


def test_no_vehicle_in_the_reference_leaves_vehicle_recall_undefined() -> None:
    m = measure_security([_record(0, "local", [_det("person")])], [[_det("person")]])
    assert m.vehicle_recall is None
    assert m.person_f1 == 1.0
    assert m.count_mae == 0.0


def test_hand_counts_are_read_and_compared_with_the_reference(tmp_path: Path) -> None:
    csv = tmp_path / "hand.csv"
    csv.write_text("frame,people\n0,2\n2,1\n9,4\n", encoding="utf-8")
    hand = read_hand_counts(csv)
    assert hand == {0: 2, 2: 1, 9: 4}
    reference = [[_det("person")], [], []]  # 1, 0, 0 people; frame 9 is outside
    agreement = hand_agreement(reference, hand)
    assert agreement is not None
    assert agreement.frames == 2
    assert agreement.count_mae == pytest.approx(1.0)  # |1-2| and |0-1|
    assert agreement.presence_agreement == pytest.approx(0.5)
    assert hand_agreement(reference, {7: 1}) is None
    csv.write_text("frame,people\n0,many\n", encoding="utf-8")
    with pytest.raises(CamoffloadError, match=r"hand\.csv:2"):
        read_hand_counts(csv)


def test_the_shipped_suite_forms_detection_edges(tmp_path: Path) -> None:
    suite = load_suite("security")
    assert suite.analysis == "security"
    check_security_suite(suite)
    assert [s.name for s in suite.strategies][-1] == "cascade-gompertz"
    assert {link.name for link in suite.links} == {"direct", "1mbit"}
    (clip,) = data_sets(suite, None)
    assert clip.path.is_file()  # the package's clip, not a path outside it
    by_name = {s.name: s for s in suite.strategies}
    ledger = tmp_path / "l.sqlite"
    cloud = cell_config(suite, clip.spec, by_name["cloud-only"], ledger=ledger, edge_id="e")
    assert (cloud.edge.task, cloud.edge.policy, cloud.edge.local_model) == (
        "detect",
        "cloud-only",
        None,
    )
    assert cloud.edge.rate == "10"
    assert cloud.worker.model == "nanodet_coco"
    cascade = cell_config(suite, clip.spec, by_name["cascade-gompertz"], ledger=ledger, edge_id="e")
    assert cascade.edge.local_model == "ssdlite_person"
    assert cascade.edge.quality_policy == "gompertz"
    video = tmp_path / "vtest.avi"
    video.write_bytes(b"")
    assert [d.spec.name for d in data_sets(suite, video)] == ["vtest-clip", "vtest"]
    with pytest.raises(ConfigError, match="no such file"):
        data_sets(suite, tmp_path / "missing.avi")


def test_a_suite_the_replays_cannot_run_is_refused() -> None:
    text = TINY.replace("[loads.idle]", "[loads.busy]\nedges = 1\nrate = 5")
    with pytest.raises(ConfigError, match="background loads"):
        check_security_suite(parse_suite(text))


def test_a_skipped_cell_keeps_its_row_and_says_why() -> None:
    suite = parse_suite(TINY)
    cells = [{"data": "clip", "link": "direct", "strategy": "cascade-fixed", "skipped": "no calib"}]
    lines = format_tables(SecurityResults(Path("."), suite, {"data": {}}, cells))
    assert any("| cascade-fixed | skipped: no calib |" in line for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tiny_security_suite_runs_through_a_real_broker_and_reports(tmp_path: Path) -> None:
    suite = parse_suite(TINY)
    out = tmp_path / "results"
    lines: list[str] = []

    async def scenario() -> dict[str, object]:
        # Under the test's own 300 s: the replay's broker and worker children stop with it.
        async with asyncio.timeout(240):
            return await run_security(suite, out, progress=lines.append)

    meta = asyncio.run(scenario())
    assert meta["complete"] is True
    assert any("[1/1] clip/direct/cascade-fixed" in line for line in lines)
    (cell,) = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert cell["frames"] == 8
    assert cell["decided_once"] == 8
    assert 0.0 <= cell["offload_share"] <= 1.0
    assert cell["person_f1"] is not None
    reference = json.loads((out / "reference-clip.json").read_text())
    assert len(reference) == 8
    assert is_security_results(out)
    report = render_security_report(out)
    text = report.read_text()
    assert "| cascade-fixed |" in text
    assert "8/8 |" in text
    assert "No hand counts were given" in text
    assert (out / "plots" / "accuracy_vs_bytes.png").is_file()
    tables = "\n".join(format_tables(load_security(out)))
    assert f"| {cell['count_mae']:.2f} |" in tables
