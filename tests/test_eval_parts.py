"""The evaluation harness's pure parts: suites, measures and analyses, by hand."""

from __future__ import annotations

import pytest

from camoffload.eval.analysis import analyse
from camoffload.eval.measures import measure
from camoffload.eval.suite import builtin_suites, load_suite, parse_suite
from edge_node.ledger_rows import FrameRecord
from pipeline.errors import ConfigError

_MINIMAL = """
name = "t"
[data.d]
source = "fashion-mnist:test"
cloud_model = "fmnist_exit_resnet"
[strategies.s]
policy = "cloud-only"
[links.l]
profile = "direct"
[loads.idle]
"""


@pytest.mark.parametrize("name", ["seed-study", "neurosurgeon", "hybrid-router", "gompertz"])
@pytest.mark.parametrize("quick", [False, True])
def test_builtin_suites_parse(name: str, quick: bool) -> None:
    assert name in builtin_suites()
    suite = load_suite(name, quick=quick)
    assert suite.name == name
    assert suite.size == len(list(suite.cells())) > 0
    assert suite.paper  # each seed suite names the paper's figure


def test_quick_overrides_run_settings() -> None:
    full, quick = load_suite("seed-study"), load_suite("seed-study", quick=True)
    assert quick.run.frames < full.run.frames
    assert quick.run.rate == full.run.rate


def test_cells_are_grouped_so_processes_are_reused() -> None:
    suite = load_suite("seed-study")
    keys = [(c.load.name, c.link.name) for c in suite.cells()]
    # Every (load, link) block is contiguous: workers per load, a proxy per link.
    blocks = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(blocks) == len(set(blocks))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("bogus = 1\n", "unknown keys ['bogus']"),
        ("[run]\nframes = 'ten'\n", "frames must be a number"),
        ("[run]\nframes = 0\n", "run.frames must be > 0"),
        ("[run]\npacing = 'sometimes'\n", "pacing must be camera or closed"),
        ("[loads.busy]\nedges = 2\n", "edges need a rate"),
        ("[strategies.c]\ncoverage = 1.5\n", "coverage must be 0-1"),
        ("[strategies.c]\ncoverage = 0.5\nconfidence_threshold = 0.3\n", "not both"),
        ("[links.x]\nprofil = 'lan'\n", "unknown keys ['profil']"),
    ],
)
def test_bad_suites_say_what_is_wrong(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_suite(_MINIMAL + extra)


def test_an_unknown_suite_names_the_builtin_ones() -> None:
    with pytest.raises(ConfigError, match="seed-study"):
        load_suite("no-such-suite")


def test_not_toml_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_suite("name = [")


def _record(seq: int, decision: str | None, label: int | None, latency_ms: float,
            bytes_sent: int = 0) -> FrameRecord:  # fmt: skip
    return FrameRecord(
        run_id="r", frame_id=f"f{seq}", seq=seq, capture_ts=100.0, true_label=None,
        decision=decision, decided_ts=None if decision is None else 100.0 + latency_ms / 1000,
        label=label, confidence=None, bytes_sent=bytes_sent, rtt_ms=None, detail=None,
        model=None, local_label=None, local_confidence=None, payload=None,
    )  # fmt: skip


def test_measures_count_every_frame_and_late_answers() -> None:
    labels = [1, 2, 3, 4, 5]
    records = [
        _record(0, "local", 1, 5),  # right, in time
        _record(1, "cloud", 2, 300, bytes_sent=1000),  # right, late for a 100 ms objective
        _record(2, "local-after-timeout", 9, 500, bytes_sent=1000),  # wrong
        _record(3, "dropped", None, 1),  # no answer: wrong, not missing
        _record(4, None, None, 0),  # never decided
    ]
    m = measure(records, labels, slo_ms=100)
    assert m.frames == 5
    assert m.accuracy == pytest.approx(2 / 5)
    assert m.timely_accuracy == pytest.approx(1 / 5)
    assert m.offload_share == pytest.approx(2 / 5)
    assert m.cloud_share == pytest.approx(1 / 5)
    assert m.local_share == pytest.approx(2 / 5)
    assert (m.timeouts, m.dropped, m.undecided) == (1, 1, 1)
    assert m.bytes_per_frame == pytest.approx(400)
    assert m.latency_p50_ms == pytest.approx(152.5)  # of 5, 300, 500, 1
    assert m.sent_latency_p50_ms == pytest.approx(400)  # the two frames that were sent


def _cell(load: str, link: str, strategy: str, timely: float, p95: float, **more: float) -> dict:  # type: ignore[type-arg]
    return {
        "data": "d", "load": load, "link": link, "strategy": strategy,
        "timely_accuracy": timely, "accuracy": timely, "latency_p95_ms": p95,
        "latency_p50_ms": more.get("p50", p95 / 2), "bytes_per_frame": more.get("bytes", 0.0),
        "sent_latency_p50_ms": more.get("p50", p95 / 2),
        "local_share": 0.0,
    }  # fmt: skip


def test_crossover_names_the_winner_per_condition() -> None:
    cells = [
        _cell("idle", "fast", "cloud-only", 0.95, 20),
        _cell("idle", "fast", "local-only", 0.91, 5),
        _cell("busy", "fast", "cloud-only", 0.40, 400),
        _cell("busy", "fast", "local-only", 0.91, 5),
    ]
    finding = analyse("crossover", cells, slo_ms=100)
    assert finding.verdict is True
    assert "cloud-only (idle) → local-only (busy)" in " ".join(finding.headline)


def test_no_crossover_is_said_plainly() -> None:
    cells = [
        _cell("idle", "fast", "early-exit", 0.94, 20),
        _cell("idle", "fast", "local-only", 0.91, 5),
        _cell("busy", "fast", "early-exit", 0.93, 50),
        _cell("busy", "fast", "local-only", 0.91, 5),
    ]
    finding = analyse("crossover", cells, slo_ms=100)
    assert finding.verdict is False
    assert "No crossover" in finding.headline[0]


def test_a_tie_goes_to_the_lower_p95() -> None:
    cells = [
        _cell("idle", "fast", "slow-one", 0.9, 90),
        _cell("idle", "fast", "quick-one", 0.9, 10),
    ]
    assert "quick-one" in " ".join(analyse("crossover", cells, slo_ms=100).table)


def test_partition_speed_up_over_cloud_only() -> None:
    cells = [
        _cell("idle", "1mbit", "cloud-only", 1, 0, p50=120.0),
        _cell("idle", "1mbit", "split-3", 1, 0, p50=40.0),
        _cell("idle", "1mbit", "local-only", 1, 0, p50=60.0),
        _cell("idle", "100mbit", "cloud-only", 1, 0, p50=10.0),
        _cell("idle", "100mbit", "local-only", 1, 0, p50=10.0),
    ]
    finding = analyse("partition", cells, slo_ms=100)
    # No planner: the best fixed point stands in. (120/40 + 10/10) / 2 = 2.0x, 3.0x max.
    assert "best fixed point:** 2.00x average (3.00x max)" in finding.headline[0]


def test_partition_planner_against_both_ends_and_the_oracle() -> None:
    cells = [
        _cell("idle", "1mbit", "cloud-only", 1, 0, p50=120.0),
        _cell("idle", "1mbit", "local-only", 1, 0, p50=60.0),
        _cell("idle", "1mbit", "partition", 1, 0, p50=60.0),
        _cell("idle", "100mbit", "cloud-only", 1, 0, p50=20.0),
        _cell("idle", "100mbit", "local-only", 1, 0, p50=60.0),
        _cell("idle", "100mbit", "partition", 1, 0, p50=25.0),
    ]
    headline = analyse("partition", cells, slo_ms=100).headline[0]
    # vs cloud-only: (2.0 + 0.8) / 2 = 1.40x; vs local-only: (1.0 + 2.4) / 2 = 1.70x,
    # 1.00x at worst; vs the best fixed point: (1.0 + 0.8) / 2 = 0.90x.
    assert "planner:** 1.40x average (2.00x max)" in headline
    assert "1.70x average against local-only (1.00x at worst)" in headline
    assert "0.90x of the best fixed point" in headline


def test_savings_compare_with_the_first_strategy() -> None:
    cells = [
        _cell("idle", "slow", "all-or-nothing", 0.9, 0, p50=100.0, bytes=1000.0),
        _cell("idle", "slow", "gompertz", 0.9, 0, p50=60.0, bytes=400.0),
    ]
    finding = analyse("savings", cells, slo_ms=100)
    assert finding.verdict is True
    assert "60.0%" in finding.table[-1]  # fewer bytes
    assert "-40.0%" in finding.table[-1]  # median latency
