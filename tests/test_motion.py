"""The edge's motion gate on real surveillance frames, and its watched-region masks."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_node.motion import MotionGate, load_mask
from pipeline.errors import ConfigError


def brighter(image: np.ndarray, levels: int) -> np.ndarray:
    """``image`` with every channel raised by ``levels`` (saturating, as a sensor does)."""
    return np.clip(image.astype(np.int16) + levels, 0, 255).astype(np.uint8)


def test_a_repeated_frame_is_not_moving_after_the_first(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    first = gate.check(frames[0])
    assert first.moving
    assert first.changed_fraction == 1.0
    for _ in range(5):
        again = gate.check(frames[0])
        assert not again.moving
        assert again.changed_fraction == 0.0


def test_codec_and_sensor_noise_is_not_motion(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    gate.check(frames[0])
    rng = np.random.default_rng(0)
    for quality in (90, 60, 30):
        ok, jpeg = cv2.imencode(".jpg", frames[0], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        assert decoded is not None
        decoded = decoded.astype(np.int16)
        # Heavy low-light sensor noise (sigma 20 levels): the blur must average it away.
        noisy = np.clip(decoded + rng.normal(0, 20, decoded.shape), 0, 255).astype(np.uint8)
        result = gate.check(noisy)
        assert result.changed_fraction < 0.001, (quality, result)


def test_a_lasting_change_becomes_background(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    gate.check(frames[0])
    # People who stop (frame 11, repeated) are motion at first, then the running
    # background takes them in: 25 of 100 levels left after ~27 frames at alpha 0.05.
    moving = [gate.check(frames[-1]).moving for _ in range(60)]
    assert all(moving[:10])
    assert not any(moving[45:])


def test_walking_people_are_motion(frames: list[np.ndarray]) -> None:
    gate = MotionGate(threshold=0.005)
    results = [gate.check(frame) for frame in frames]
    assert results[0].changed_fraction == 1.0
    for index, result in enumerate(results[1:], start=1):
        assert result.moving, (index, result)
        assert 0.005 < result.changed_fraction < 0.2  # a few people, not the whole scene


def test_grey_frames_give_the_same_answers_as_colour(frames: list[np.ndarray]) -> None:
    colour, grey, grey1 = (MotionGate(threshold=0.005) for _ in range(3))
    for frame in frames[:6]:
        mono = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        a, b, c = colour.check(frame), grey.check(mono), grey1.check(mono[:, :, None])
        assert a.moving == b.moving == c.moving
        assert b == c
        # Grey first or shrink first: the same picture within rounding.
        assert abs(a.changed_fraction - b.changed_fraction) < 0.003


def test_a_brightness_drift_is_absorbed(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    gate.check(frames[0])
    # A slow ramp of 3 levels a frame: 45 levels in all, far past pixel_delta.
    for step in range(1, 16):
        result = gate.check(brighter(frames[0], 3 * step))
        assert not result.moving, (step, result)
    # A sudden exposure change moves every pixel alike: still not motion.
    assert not gate.check(brighter(frames[0], 45 + 30)).moving


def test_motion_is_still_seen_through_a_brightness_drift(frames: list[np.ndarray]) -> None:
    gate = MotionGate(threshold=0.005)
    results = [gate.check(brighter(frame, 3 * step)) for step, frame in enumerate(frames)]
    assert all(result.moving for result in results[1:]), results


def _moving_region(frames: list[np.ndarray]) -> np.ndarray:
    """Where anything changed in the clip, grown by a margin: HxW bool."""
    grey = [cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (9, 9), 0) for f in frames]
    changed = np.zeros(grey[0].shape, np.uint8)
    for before, after in [*itertools.pairwise(grey), *((grey[0], g) for g in grey)]:
        changed |= (cv2.absdiff(before, after) > 10).astype(np.uint8)
    grown = cv2.dilate(changed, np.ones((41, 41), np.uint8))
    return grown > 0


def test_a_mask_that_excludes_the_moving_region_turns_motion_off(
    frames: list[np.ndarray],
) -> None:
    moving = _moving_region(frames)
    assert 0.02 < moving.mean() < 0.5  # the people, not the whole frame
    still = MotionGate(threshold=0.005, mask=np.where(moving, 0, 255).astype(np.uint8))
    results = [still.check(frame) for frame in frames]
    assert not any(result.moving for result in results[1:]), results
    # Watching only the people: motion, and a larger share of the watched area changes.
    people = MotionGate(threshold=0.005, mask=moving)
    unmasked = MotionGate(threshold=0.005)
    for frame in frames:
        seen, everywhere = people.check(frame), unmasked.check(frame)
    assert seen.moving
    assert seen.changed_fraction > everywhere.changed_fraction


def test_a_thin_watched_strip_survives_the_shrink(frames: list[np.ndarray]) -> None:
    mask = np.zeros(frames[0].shape[:2], np.uint8)
    mask[:, 386:388] = 1  # 2 of 768 columns: gone if the shrink sampled pixels
    gate = MotionGate(mask=mask)
    results = [gate.check(frame) for frame in frames]
    assert all(0.0 <= result.changed_fraction <= 1.0 for result in results)


def test_a_new_frame_size_starts_a_new_background(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    gate.check(frames[0])
    assert not gate.check(frames[0]).moving
    small = cv2.resize(frames[0], (320, 240))
    assert gate.check(small).changed_fraction == 1.0  # nothing of this size to compare with
    assert gate.check(small).changed_fraction == 0.0
    assert gate.check(frames[0]).changed_fraction == 1.0
    gate.reset()
    assert gate.check(frames[0]).changed_fraction == 1.0
    assert not gate.check(frames[0]).moving


def test_tiny_grey_frames_work(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    tiny = cv2.resize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY), (28, 28))[:, :, None]
    assert gate.check(tiny).moving
    assert not gate.check(tiny).moving
    assert gate.check(255 - tiny).moving


def test_the_gate_refuses_bad_settings_and_frames() -> None:
    with pytest.raises(ConfigError, match="watches nothing"):
        MotionGate(mask=np.zeros((10, 10), np.uint8))
    with pytest.raises(ConfigError, match="threshold"):
        MotionGate(threshold=1.5)
    with pytest.raises(ConfigError, match="pixel_delta"):
        MotionGate(pixel_delta=300)
    with pytest.raises(ConfigError, match="background_alpha"):
        MotionGate(background_alpha=0.0)
    gate = MotionGate()
    with pytest.raises(ValueError, match="uint8"):
        gate.check(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        gate.check(np.zeros((10, 10, 4), np.uint8))


def test_a_polygon_mask() -> None:
    mask = load_mask("0.1,0.1;0.9,0.1;0.9,0.9;0.1,0.9", (100, 200))
    assert mask.shape == (100, 200)
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    assert mask[50, 100] == 255
    assert mask[5, 5] == mask[95, 195] == 0
    assert (mask > 0).mean() == pytest.approx(0.64, abs=0.03)


def test_several_polygons_watch_each_region() -> None:
    spec = "0,0; 0.2,0; 0.2,0.2; 0,0.2 | 0.8,0.8; 1,0.8; 1,1; 0.8,1"
    mask = load_mask(spec, (100, 100))
    assert mask[5, 5] == mask[95, 95] == 255
    assert mask[0, 0] == mask[99, 99] == 255  # 1.0 reaches the last pixel
    assert mask[50, 50] == mask[5, 95] == 0


def test_an_image_file_mask_is_resized(tmp_path: Path) -> None:
    drawing = np.zeros((40, 50), np.uint8)
    drawing[10:30, 25:50] = 200  # the right half, rows 1/4 to 3/4
    path = tmp_path / "mask.png"
    assert cv2.imwrite(str(path), drawing)
    mask = load_mask(str(path), (576, 768))
    assert mask.shape == (576, 768)
    assert mask[288, 700] == 255
    assert mask[288, 100] == mask[20, 700] == 0
    # A colour mask: any non-black channel is watched.
    colour = np.zeros((40, 50, 3), np.uint8)
    colour[:, :25] = (255, 0, 0)
    assert cv2.imwrite(str(path), colour)
    mask = load_mask(str(path), (40, 50))
    assert mask[:, :25].all()
    assert not mask[:, 25:].any()


def test_a_loaded_mask_drives_the_gate(frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    corner = MotionGate(mask=load_mask("0,0;0.05,0;0.05,0.05;0,0.05", (height, width)))
    corner.check(frames[0])
    assert not corner.check(frames[-1]).moving  # a corner nobody walks through
    everywhere = MotionGate()
    everywhere.check(frames[0])
    assert everywhere.check(frames[-1]).moving


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("missing.png", "does not exist"),
        ("not-an-image.png", "not a readable image"),
        ("black.png", "watches nothing"),
        ("0.1,0.1;0.9,0.9", "at least 3"),
        ("0.1,0.1;0.9,0.1;0.9,0.9|0.2,0.2", "polygon 2 has 1 point"),
        ("0.1,0.1;1.5,0.1;0.9,0.9", "outside 0..1"),
        ("0.1,0.1;0.9,-0.1;0.9,0.9", "outside 0..1"),
        ("0.1,0.1;0.5,0.5;0.9,0.9", "no area"),
        ("0.1;0.5,0.5;0.9,0.9", "not two numbers"),
        ("   ", "empty"),
    ],
)
def test_bad_mask_specs_are_config_errors(tmp_path: Path, spec: str, match: str) -> None:
    (tmp_path / "not-an-image.png").write_bytes(b"hello, not a png")
    assert cv2.imwrite(str(tmp_path / "black.png"), np.zeros((8, 8), np.uint8))
    if spec.endswith(".png"):
        spec = str(tmp_path / spec)
    with pytest.raises(ConfigError, match=match) as info:
        load_mask(spec, (576, 768))
    assert "\n" not in str(info.value)
