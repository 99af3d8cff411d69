"""Calibration files: a real (small) calibration through the command, the JSON round
trip, clear errors for missing or malformed files, and the edge's fallback to full
quality with a warning."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from camoffload.calibrate_commands import add_calibrate_command, run_calibrate_command
from edge_node.quality import FixedQuality, GompertzQuality, make_quality_policy
from pipeline.calibration import CalibrationError, load_calibration
from pipeline.config import load_config
from pipeline.datasets import DEBIAN_FASHION_MNIST
from pipeline.errors import ConfigError

MODEL = "fmnist_exit_resnet"


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real calibration of the cloud model on 160 held-out test images."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    folder = tmp_path_factory.mktemp("cal")
    parser = argparse.ArgumentParser()
    add_calibrate_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "calibrate",
            MODEL,
            "--local-model",
            MODEL,
            "--first",
            "9000",
            "--count",
            "160",
            "--qualities",
            "1,5,15,90",
            "--bins",
            "2",
            "--out",
            str(folder / "cal.json"),
            "--plot",
            str(folder / "cal.png"),
        ]
    )
    assert run_calibrate_command(args) == 0
    return folder / "cal.json"


def test_the_calibrate_command_writes_a_calibration_and_a_plot(calibration_file: Path) -> None:
    calibration = load_calibration(calibration_file)
    assert calibration.model == MODEL
    assert calibration.codec == "jpeg-abbrev"
    assert (calibration.images_fit, calibration.images_heldout) == (80, 80)
    assert [p.quality for p in calibration.points] == [1, 5, 15, 90]
    assert calibration.local_model == MODEL
    assert calibration.local_split == 1
    # Fewer bytes at lower quality; the abbreviated q90 is well under the full q90.
    sizes = [p.bytes for p in calibration.points]
    assert sizes == sorted(sizes)
    assert calibration.points[-1].x < 0.7
    # JPEG quality matters to the cloud model: q1 is clearly worse than q90.
    assert calibration.points[0].accuracy < calibration.points[-1].accuracy - 0.1
    assert calibration.curve.r2_fit > 0.8
    assert len(calibration.bins) == 2
    assert calibration.bins[0].local_accuracy < calibration.bins[1].local_accuracy
    png = calibration_file.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # Saved and loaded, it is the same calibration.
    again = json.loads(calibration_file.read_text())
    assert again == calibration.to_json()


def _broken(tmp_path: Path, change: object) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(change))
    return path


def test_missing_and_malformed_files_are_clear_errors(
    calibration_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(CalibrationError, match="camoffload calibrate") as missing:
        load_calibration(tmp_path / "nope.json")
    assert missing.value.key == "edge.calibration"
    assert isinstance(missing.value, ConfigError)
    (tmp_path / "text.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_calibration(tmp_path / "text.json")
    good = json.loads(calibration_file.read_text())
    cases: list[tuple[dict[str, object], str]] = [
        ({k: v for k, v in good.items() if k != "curve"}, r"calibration\.curve is missing"),
        ({**good, "format": 99}, "format 99"),
        ({**good, "codec": "png"}, "codec"),
        ({**good, "curve": {**good["curve"], "a": "high"}}, r"curve\.a must be a number"),
        ({**good, "curve": {**good["curve"], "a": 3.0}}, "Gompertz parameter a"),
        (
            {**good, "points": [{**good["points"][0], "quality": 0}]},
            r"points\[0\]\.quality must be an integer",
        ),
        ({**good, "points": [{**good["points"][0], "frontier": False}]}, "frontier point"),
        ({**good, "bins": "none"}, r"calibration\.bins must be an array"),
    ]
    for change, message in cases:
        with pytest.raises(CalibrationError, match=message):
            load_calibration(_broken(tmp_path, change))
    with pytest.raises(CalibrationError, match="must be an object"):
        load_calibration(_broken(tmp_path, [1, 2]))


def _edge_config(*overrides: str) -> object:
    return load_config(
        env={},
        overrides=[
            f"edge.model={MODEL}",
            f"edge.local_model={MODEL}",
            "edge.quality_policy=gompertz",
            *overrides,
        ],
    ).edge


def test_the_edge_falls_back_to_full_quality_with_a_warning(
    calibration_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "bad.json").write_text("[]")
    for path in (tmp_path / "missing.json", tmp_path / "bad.json"):
        cfg = _edge_config(f"edge.calibration={path}", "edge.jpeg_quality=85")
        with caplog.at_level(logging.WARNING, logger="edge_node.quality"):
            policy = make_quality_policy(cfg, local_split=1)  # type: ignore[arg-type]
        assert policy == FixedQuality(85)
        assert "sending full quality (q85)" in caplog.text
        assert str(path) in caplog.text
        caplog.clear()
    other = _edge_config(f"edge.calibration={calibration_file}", "edge.model=efficientnet_lite2")
    with caplog.at_level(logging.WARNING, logger="edge_node.quality"):
        assert isinstance(make_quality_policy(other, local_split=1), FixedQuality)  # type: ignore[arg-type]
    assert "calibrates 'fmnist_exit_resnet'" in caplog.text
    good = _edge_config(f"edge.calibration={calibration_file}")
    assert isinstance(make_quality_policy(good, local_split=1), GompertzQuality)  # type: ignore[arg-type]


def test_quality_policy_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"needs edge\.payload = jpeg"):
        _edge_config("edge.payload=tensor")
    with pytest.raises(ConfigError, match="target_accuracy must be 0-1"):
        _edge_config("edge.target_accuracy=1.5")
    with pytest.raises(ConfigError, match="link_kbps must be > 0"):
        _edge_config("edge.link_kbps=0")
    with pytest.raises(ConfigError, match="must be one of fixed, gompertz"):
        _edge_config("edge.quality_policy=best")


def test_the_calibrate_command_writes_the_calibration_and_the_plot(tmp_path: Path) -> None:
    from camoffload.cli import main

    out, plot = tmp_path / "cal.json", tmp_path / "cal.png"
    code = main(
        ["calibrate", "fmnist_exit_resnet", "--count", "120", "--bins", "0",
         "--out", str(out), "--plot", str(plot)]
    )  # fmt: skip
    assert code == 0
    assert load_calibration(out).model == "fmnist_exit_resnet"
    assert plot.stat().st_size > 5000
