"""``camoffload bench``: the report's arithmetic by hand, the options, and (slow) a tiny
real run through Mosquitto, worker processes and the FastAPI baseline."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camoffload.bench_commands import add_bench_options, bench_settings
from camoffload.perf.mqtt_load import LoadResult
from camoffload.perf.report import format_report, ratios
from camoffload.perf.run import QUICK, BenchSettings, Measured, PayloadReport, Row
from pipeline.datasets import DEBIAN_FASHION_MNIST

ROOT = Path(__file__).resolve().parents[1]


def _report() -> PayloadReport:
    low = LoadResult(frames=3, elapsed_s=1.0, latencies_ms=[4.0, 5.0, 9.0])
    low.inference_ms_batch1 = [2.5, 3.0, 3.5]
    low.queue_ms, low.decode_ms = [0.1, 0.1, 0.1], [0.05, 0.05, 0.05]
    report = PayloadReport("jpeg", 740.0, {"envelope": 10.0, "jpeg": 6.0})
    report.rows = [
        Row("model alone", "1 process x 2 thread", "batch 32", 1600.0, saturated=True),
        Row("model alone", "2 process x 1 thread", "batch 32", 1800.0, saturated=True),
        Row("HTTP", "FastAPI", "1 in flight", 250.0, 3.0, saturated=True),
        Row("HTTP", "FastAPI", "32 in flight", 300.0, 100.0, saturated=True),
        Row("MQTT", "2 worker x 1 thread", "256 in flight", 1350.0, 180.0, saturated=True),
        Row("MQTT", "1 worker x 2 thread", "1000/s offered", 2000.0, saturated=False),
    ]
    report.low_load = Measured(1, low, {})
    return report


def test_ratios_take_the_best_saturated_rows_and_the_median_round() -> None:
    report = _report()
    # Without rounds: best saturated pipeline over the best model alone; the unsaturated
    # row (2000/s) never counts.
    assert ratios(report) == pytest.approx(
        {"pipeline/http": 1350 / 300, "pipeline/model": 1350 / 1800, "p50-inference_ms": 2.0}
    )
    report.round_ratios = [0.70, 0.80, 0.75]
    assert ratios(report)["pipeline/model"] == pytest.approx(0.75)


def test_the_report_prints_its_ratios_last() -> None:
    text = format_report(BenchSettings(), [_report()])
    last = text.strip().splitlines()[-1]
    assert last.startswith("RATIO jpeg ")
    assert "pipeline/http=4.50" in last
    assert "| model alone | 2 process x 1 thread | batch 32 | 1800 |" in text
    assert "round trip p50 5.00 ms = inference at batch 1 3.00" in text


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_options(parser)
    return parser.parse_args(list(argv))


def test_options_override_the_short_version() -> None:
    settings = bench_settings(
        _args("--payloads", "raw,split", "--workers", "2", "--no-http"), QUICK
    )
    assert settings.payloads == ("raw", "split")
    assert settings.workers == (2,)
    assert not settings.http
    assert settings.frames == QUICK.frames
    with pytest.raises(SystemExit):
        _args("--payloads", "png")
    with pytest.raises(SystemExit):
        bench_settings(_args("--frames", "10"), QUICK)


@pytest.mark.slow
@pytest.mark.timeout(660)  # above its subprocess's 600 s: that one fails first, with its output
@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist missing")
def test_a_tiny_bench_answers_every_frame_and_ends_with_its_ratios() -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "camoffload", "bench", "--payloads", "jpeg,split",
            "--frames", "300", "--rates", "200", "--window", "64", "--concurrency", "4",
            "--rounds", "1",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines[-2:]] == ["jpeg", "split"]
    for line in lines[-2:]:
        values = dict(re.findall(r"(\S+)=([\d.]+)", line))
        assert set(values) == {"pipeline/http", "pipeline/model", "p50-inference_ms"}
        assert all(float(v) > 0 for v in values.values())
    # Every contender answered every frame: the errors column is 0 on every row.
    rows = [line for line in lines if line.startswith(("| HTTP", "| MQTT"))]
    # Per kind: HTTP in 2 layouts (1 process, 2 pinned), and the pipeline's 2 layouts x 4.
    assert len(rows) == 2 * (2 + 2 * (1 + 1 + 2))
    assert sum("| HTTP | 2 process x 1 thread, pinned, batch 1 |" in line for line in rows) == 2
    assert all(line.split("|")[9].strip() == "0" for line in rows), rows
    top1 = [float(line.split("|")[10].strip().rstrip("%")) for line in rows]
    assert np.min(top1) > 85.0


def test_the_free_model_ends_the_report_with_its_transport_ceilings() -> None:
    report = _report()
    bundled = LoadResult(frames=1000, elapsed_s=0.5, latencies_ms=[1.0] * 1000)
    single = LoadResult(frames=1000, elapsed_s=2.0, latencies_ms=[1.0] * 1000)
    report.saturated = [
        Measured(2, bundled, {"edge": 0.05, "broker": 0.01, "worker-1": 0.1, "worker-2": 0.1})
    ]
    report.unbundled = [Measured(2, single, {"edge": 0.4, "broker": 0.08, "worker-1": 0.8})]
    text = format_report(BenchSettings(model="null"), [report])
    assert text.strip().splitlines()[-2:] == [
        "CEILING jpeg bundled frames/s=2000 worker_us=200 workers=2",
        "CEILING jpeg single frames/s=500 worker_us=800 workers=2",
    ]
    # Any other model's report ends with its ratios, as before.
    assert "CEILING" not in format_report(BenchSettings(), [report])


def test_the_free_model_reads_its_input_and_answers_one_label() -> None:
    from pipeline.inference import Classifier
    from pipeline.models import available_models

    assert "null" in available_models()
    null = Classifier.by_name("null", "cpu")
    images = [np.full((28, 28), v, np.uint8) for v in (0, 128, 255)]
    assert [p.label for p in null.predict(images)] == [0, 0, 0]
    assert null.network is None  # nothing to split: the bench skips split payloads
