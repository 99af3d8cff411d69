"""A camera's specialized early-exit model: its teaching (counts, cells, places), its
seeded training, its manifest checked at load, its exits' thresholds, the edge's use of
it, the ledger's boxless counted objects, the config that turns it on, and the
``camoffload specialize`` command. A tiny network on the first frames of the shipped
clip keeps all of it fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from camoffload.cli import main as cli_main
from camoffload.demo import default_video
from camoffload.eval.security_measures import people
from camoffload.specialize.calibrate import NEVER, Objective, _threshold, calibrate_exits
from camoffload.specialize.data import Teaching, count_and_cells, read_teaching
from camoffload.specialize.train import TrainOptions, train_specialized
from edge_node.ledger import Ledger
from edge_node.ledger_rows import iter_frames
from edge_node.specialized_model import SpecializedAnswer, SpecializedModel
from pipeline.config import load_config
from pipeline.errors import CamoffloadError, ConfigError, LedgerError, ModelError
from pipeline.models.specialized import ExitAnswer, SpecializedConfig, SpecializedNet
from pipeline.models.specialized_weights import (
    ExitMetrics,
    load_specialized,
    read_specialized_manifest,
    save_specialized,
)
from pipeline.models.weights import sha256_of
from pipeline.protocol import Decision
from tests._helpers import with_thresholds

TINY = SpecializedConfig(widths=(4, 8, 8, 8), input_size=(32, 48), grid=(3, 3))
FRAMES = 24
OPTIONS = TrainOptions(epochs=3, batch_size=8, seed=0)


@pytest.fixture(scope="module")
def teaching() -> Teaching:
    """The first 24 frames of the shipped clip, taught by the reference detector."""
    return read_teaching(
        str(default_video()),
        TINY,
        end=FRAMES,
        teacher="reference:nanodet_coco",
        min_score=0.35,
    )


@pytest.fixture(scope="module")
def network(teaching: Teaching) -> SpecializedNet:
    return train_specialized(teaching, TINY, OPTIONS)


def _fields(exits: tuple[ExitMetrics, ...], offload_share: float = 1.0) -> dict[str, object]:
    """The manifest's fields that the command fills in."""
    return {
        "camera": "vtest_clip.avi",
        "train_frames": (0, FRAMES),
        "held_out_frames": (0, FRAMES),
        "time_span_s": (0.0, 2.3),
        "teacher": "reference:nanodet_coco",
        "min_score": 0.35,
        "objective": Objective().as_dict(),
        "exits": exits,
        "offload_share": offload_share,
        "seed": OPTIONS.seed,
        "epochs": OPTIONS.epochs,
        "command": "camoffload specialize (test)",
        "torch_version": str(torch.__version__),
        "train_wall_s": 0.0,
    }


def _save(network: SpecializedNet, teaching: Teaching, folder: Path, name: str = "cam") -> Path:
    """``network`` saved with real, calibrated exit metrics; the manifest's path."""
    exits, offload_share = calibrate_exits(network, teaching, Objective())
    return save_specialized(network, folder, name, _fields(tuple(exits), offload_share))


def _edit(manifest: Path, **fields: object) -> None:
    data = json.loads(manifest.read_text())
    data.update(fields)
    manifest.write_text(json.dumps(data))


# -- training -----------------------------------------------------------------------


def test_training_is_reproducible_to_the_byte(teaching: Teaching, tmp_path: Path) -> None:
    """The same frames and seed give the same tensors and the same .pt (sha256); another
    seed gives other weights."""
    first = train_specialized(teaching, TINY, OPTIONS)
    again = train_specialized(teaching, TINY, OPTIONS)
    other = train_specialized(teaching, TINY, TrainOptions(epochs=3, batch_size=8, seed=1))
    a, b, c = first.state_dict(), again.state_dict(), other.state_dict()
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not all(torch.equal(a[key], c[key]) for key in a)
    # The learned scene is the same median frame whatever the seed.
    assert torch.equal(a["scene"], c["scene"])
    fields = _fields((_metrics(), _metrics(), _metrics()))
    saved = [
        read_specialized_manifest(save_specialized(net, tmp_path / folder, "cam", fields))
        for net, folder in ((first, "a"), (again, "b"), (other, "c"))
    ]
    assert saved[0].sha256 == saved[1].sha256
    assert saved[0].size_bytes == saved[1].size_bytes
    assert saved[0].sha256 != saved[2].sha256


def test_training_leaves_torchs_threads_and_determinism_as_they_were(
    teaching: Teaching,
) -> None:
    """Training runs on one thread, deterministically, then puts both settings back."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    train_specialized(teaching, TINY, TrainOptions(epochs=1, batch_size=8))
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def _metrics(threshold: float = NEVER) -> ExitMetrics:
    return ExitMetrics(
        presence_f1=None,
        presence_recall=None,
        count_accuracy=0.0,
        count_mae=0.0,
        cell_f1=None,
        cell_recall=None,
        threshold=threshold,
        stopped_share=0.0,
        ms_per_frame=0.0,
    )


# -- teaching -------------------------------------------------------------------------


def test_the_teaching_reads_the_clips_frames_and_people(teaching: Teaching) -> None:
    """Every frame has an answer from the reference, the clip's people are counted, and
    the places of exit 1 hold one box centre per counted person."""
    assert teaching.indices == tuple(range(FRAMES))
    assert teaching.fps == pytest.approx(10.0)
    assert teaching.frames.shape == (FRAMES, 3, 32, 48)
    assert float(teaching.frames.min()) >= 0.0
    assert float(teaching.frames.max()) <= 1.0
    assert teaching.counts.shape == (FRAMES, 1)
    assert int(teaching.counts.min()) >= 1  # people walk through every frame of the start
    assert teaching.cells.shape == (FRAMES, 1, 3, 3)
    assert teaching.places.shape == (FRAMES, 1, 8, 12)  # 32x48 / 4
    # Under max_count, the places hold exactly the counted centres.
    assert teaching.places.sum(dim=(2, 3)).tolist() == teaching.counts.tolist()
    held = teaching.span(18, 24)
    assert held.indices == tuple(range(18, 24))
    assert torch.equal(held.frames, teaching.frames[18:])


def test_count_and_cells_ignores_weak_boxes_and_places_centres() -> None:
    """Boxes under min_score do not count; a score at min_score does; the grid cell and
    the place of exit 1 are where the box's centre falls; "vehicle" is any COCO vehicle
    and only those."""
    config = SpecializedConfig(
        labels=("person", "vehicle"), widths=(4, 8, 8, 8), input_size=(32, 48), grid=(3, 3)
    )
    detections = [
        ("person", 0.9, (0.0, 0.0, 0.2, 0.2)),  # centre (0.1, 0.1)
        ("person", 0.34, (0.4, 0.4, 0.6, 0.6)),  # under min_score: ignored
        ("person", 0.35, (0.8, 0.8, 1.0, 1.0)),  # at min_score: counted, centre (0.9, 0.9)
        ("car", 0.9, (0.4, 0.4, 0.6, 0.6)),  # centre (0.5, 0.5)
        ("truck", 0.8, (0.0, 0.7, 0.2, 0.9)),  # centre (0.1, 0.8)
        ("bus", 0.7, (0.8, 0.0, 1.0, 0.2)),  # centre (0.9, 0.1)
        ("dog", 0.99, (0.4, 0.0, 0.6, 0.2)),  # not watched
        ("car", 0.1, (0.0, 0.0, 1.0, 1.0)),  # a weak vehicle: ignored
    ]
    counts, cells, places = count_and_cells(detections, config, min_score=0.35)
    assert counts == [2, 3]
    assert cells.shape == (2, 3, 3)
    assert places.shape == (2, 8, 12)
    person_cells = {tuple(int(v) for v in rc) for rc in np.argwhere(cells[0] == 1.0)}
    assert person_cells == {(0, 0), (2, 2)}
    vehicle_cells = {tuple(int(v) for v in rc) for rc in np.argwhere(cells[1] == 1.0)}
    assert vehicle_cells == {(1, 1), (2, 0), (0, 2)}
    # Places of exit 1's 8x12 map: row int(y * 8), column int(x * 12).
    assert {tuple(int(v) for v in yx) for yx in np.argwhere(places[0])} == {(0, 1), (7, 10)}
    assert {tuple(int(v) for v in yx) for yx in np.argwhere(places[1])} == {(4, 6), (6, 1), (0, 10)}
    assert int(places.sum()) == 5


def test_count_and_cells_clips_counts_and_keeps_edges_inside() -> None:
    """A count stops at max_count; every centre still marks its place; a centre on the
    frame's right or bottom edge falls in the last cell and place, not outside."""
    config = SpecializedConfig(widths=(4, 8, 8, 8), input_size=(32, 48), max_count=2, grid=(3, 3))
    same = ("person", 0.9, (0.1, 0.1, 0.3, 0.3))  # centre (0.2, 0.2)
    corner = ("person", 0.9, (1.0, 1.0, 1.0, 1.0))  # centre on the bottom-right corner
    counts, cells, places = count_and_cells([same, same, same, corner], config, min_score=0.35)
    assert counts == [2]
    assert cells[0, 0, 0] == cells[0, 2, 2] == 1.0
    assert float(cells.sum()) == 2.0
    assert places[0, 1, 2] == 3  # row int(0.2 * 8), column int(0.2 * 12)
    assert places[0, 7, 11] == 1
    nothing = count_and_cells([], config, min_score=0.35)
    assert nothing[0] == [0]
    assert not nothing[1].any()
    assert not nothing[2].any()


# -- the manifest -----------------------------------------------------------------------


def test_a_saved_model_loads_and_answers_as_it_was(
    network: SpecializedNet, teaching: Teaching, tmp_path: Path
) -> None:
    """load_specialized gives back the manifest's fields and the same network."""
    path = _save(network, teaching, tmp_path)
    assert path == tmp_path / "cam.json"
    assert (tmp_path / "cam.pt").is_file()
    manifest, loaded = load_specialized(path)
    assert manifest.name == "cam"
    assert manifest.network_config == TINY
    assert manifest.weights_file == "cam.pt"
    assert manifest.size_bytes == (tmp_path / "cam.pt").stat().st_size
    assert manifest.version == f"cam-{manifest.sha256[:12]}"
    assert len(manifest.thresholds) == TINY.exits
    assert not loaded.training
    saved, got = network.state_dict(), loaded.state_dict()
    assert saved.keys() == got.keys()
    assert all(torch.equal(saved[key], got[key]) for key in saved)


def _copy(source: Path, folder: Path) -> Path:
    """The manifest and its weights copied into ``folder`` (a test may then break them)."""
    folder.mkdir()
    shutil.copy(source, folder / source.name)
    shutil.copy(source.with_suffix(".pt"), folder / source.with_suffix(".pt").name)
    return folder / source.name


@pytest.fixture(scope="module")
def saved(
    network: SpecializedNet, teaching: Teaching, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return _save(network, teaching, tmp_path_factory.mktemp("saved"))


def test_a_truncated_weights_file_is_refused(saved: Path, tmp_path: Path) -> None:
    """A shorter .pt than the manifest says: refused by its size."""
    path = _copy(saved, tmp_path / "m")
    weights = path.with_suffix(".pt")
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelError, match="truncated or replaced"):
        load_specialized(path)


def test_a_flipped_byte_is_refused_by_the_sha256(saved: Path, tmp_path: Path) -> None:
    """One byte changed, the size the same: refused by the sha256."""
    path = _copy(saved, tmp_path / "m")
    weights = path.with_suffix(".pt")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the sha256"):
        load_specialized(path)


def test_a_missing_weights_file_is_named(saved: Path, tmp_path: Path) -> None:
    path = _copy(saved, tmp_path / "m")
    path.with_suffix(".pt").unlink()
    with pytest.raises(ModelError, match=r"weights file .*cam\.pt named by .* is missing"):
        load_specialized(path)


def test_a_missing_manifest_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError, match=r"no specialized model manifest at .*camoffload specialize"
    ):
        load_specialized(tmp_path / "none.json")


def test_a_manifest_of_another_format_is_refused(saved: Path, tmp_path: Path) -> None:
    path = _copy(saved, tmp_path / "m")
    _edit(path, format=2)
    with pytest.raises(ModelError, match=r"manifest format 2 .* is not 1"):
        load_specialized(path)
    _edit(path, format=1, architecture="something_else")
    with pytest.raises(ModelError, match="'something_else' is not 1 of 'specialized_exit_net'"):
        load_specialized(path)


def test_a_manifest_that_is_not_json_is_refused(saved: Path, tmp_path: Path) -> None:
    path = _copy(saved, tmp_path / "m")
    path.write_text("weights: cam.pt\n")
    with pytest.raises(ModelError, match="not a specialized model manifest"):
        load_specialized(path)
    path.write_text(json.dumps({"name": "cam"}))  # JSON, but not a manifest's fields
    with pytest.raises(ModelError, match="not a specialized model manifest"):
        load_specialized(path)


def test_a_config_that_is_not_the_weights_is_refused(saved: Path, tmp_path: Path) -> None:
    """The weights match their sha256 but the manifest describes another network."""
    path = _copy(saved, tmp_path / "m")
    config = json.loads(path.read_text())["config"]
    _edit(path, config={**config, "widths": [4, 8, 8, 16]})
    with pytest.raises(ModelError, match="not the network its manifest describes"):
        load_specialized(path)
    _edit(path, config={**config, "input_size": [64, 96]})  # the scene buffer's shape
    with pytest.raises(ModelError, match="not the network its manifest describes"):
        load_specialized(path)
    _edit(path, config={**config, "widths": [4, 8, 8]})  # two exits, three entries
    with pytest.raises(ModelError, match="3 exit entries for 2 exits"):
        load_specialized(path)
    _edit(path, config={**config, "input_size": [30, 48]})
    with pytest.raises(ModelError, match="the manifest's config is not a network's"):
        load_specialized(path)


@pytest.mark.parametrize("kind", ["a tensor", "not torch at all"])
def test_a_vouched_for_file_that_is_not_a_state_dict_is_a_model_error(
    saved: Path, tmp_path: Path, kind: str
) -> None:
    """A manifest whose sha256 and size vouch for a file that is not a state dict (edited
    by hand, or written by another tool) still fails as one ModelError."""
    path = _copy(saved, tmp_path / "m")
    weights = path.with_suffix(".pt")
    if kind == "a tensor":
        torch.save(torch.zeros(3), weights)
    else:
        weights.write_bytes(b"not a torch file\n" * 8)
    _edit(path, sha256=sha256_of(weights), size_bytes=weights.stat().st_size)
    with pytest.raises(ModelError, match="not the network its manifest describes"):
        load_specialized(path)


# -- calibration ------------------------------------------------------------------------

_OK = (False, False, 0)
_MISS = (True, False, 0)
_FALSE = (False, True, 0)


@pytest.mark.parametrize(
    ("graded", "objective", "expected"),
    [
        # No miss allowed: the lowest threshold before the first miss.
        ([(0.99, *_OK), (0.95, *_OK), (0.9, *_MISS), (0.8, *_OK)], Objective(max_miss=0.0), 0.95),
        # One miss in four allowed: every frame may stop.
        ([(0.99, *_OK), (0.95, *_OK), (0.9, *_MISS), (0.8, *_OK)], Objective(max_miss=0.25), 0.8),
        # Failing at the top does not stop a lower threshold from keeping within it.
        ([(0.95, *_MISS), (0.9, *_OK), (0.85, *_OK), (0.8, *_OK)], Objective(max_miss=0.25), 0.8),
        # False alarms by max_false.
        ([(0.99, *_OK), (0.9, *_FALSE), (0.8, *_OK)], Objective(max_false=0.0), 0.99),
        ([(0.99, *_OK), (0.9, *_FALSE), (0.8, *_OK)], Objective(max_false=0.5), 0.8),
        # Nothing keeps within it: the exit answers nothing.
        ([(0.99, *_MISS), (0.9, *_MISS)], Objective(max_miss=0.0), NEVER),
        ([(0.99, *_FALSE)], Objective(max_false=0.0), NEVER),
        ([], Objective(), NEVER),
        # An exit no surer than a coin toss answers nothing, whatever the span says.
        ([(0.5, *_OK), (0.5, *_OK)], Objective(), NEVER),
        ([(0.9, *_OK), (0.5, *_OK)], Objective(), 0.9),
        # The count only when asked: mean absolute error over the frames stopped.
        ([(0.99, False, False, 0), (0.9, False, False, 3)], Objective(), 0.9),
        ([(0.99, False, False, 0), (0.9, False, False, 3)], Objective(max_count_mae=1.0), 0.99),
        ([(0.99, False, False, 1), (0.9, False, False, 1)], Objective(max_count_mae=1.0), 0.9),
    ],
)
def test_the_threshold_is_the_lowest_within_the_objective(
    graded: list[tuple[float, bool, bool, int]], objective: Objective, expected: float
) -> None:
    assert _threshold(graded, objective) == expected


@pytest.mark.parametrize(
    "tie",
    [
        [(0.8, *_OK), (0.8, *_MISS)],
        [(0.8, *_MISS), (0.8, *_OK)],
    ],
)
def test_the_threshold_never_splits_a_tie(tie: list[tuple[float, bool, bool, int]]) -> None:
    """A threshold stops every frame as sure as it: a tie with a miss in it cannot be
    split to stop only its good frame, in whatever order the tie comes."""
    graded = [(0.9, *_OK), *tie, (0.7, *_MISS)]
    assert _threshold(graded, Objective(max_miss=0.0)) == 0.9
    # A tie that keeps within the objective is stopped whole.
    clean = [(0.9, *_OK), (0.8, *_OK), (0.8, *_OK), (0.7, *_MISS)]
    assert _threshold(clean, Objective(max_miss=0.0)) == 0.8
    # A tie at the bottom of the list is its end, not a split.
    assert _threshold([(0.9, *_OK), (0.8, *_OK), (0.8, *_OK)], Objective(max_miss=0.0)) == 0.8
    assert _threshold([(0.8, *_MISS), (0.8, *_OK)], Objective(max_miss=0.5)) == 0.8
    assert _threshold([(0.8, *_MISS), (0.8, *_OK)], Objective(max_miss=0.4)) == NEVER


def test_calibration_gives_each_exit_a_threshold_and_metrics(
    network: SpecializedNet, teaching: Teaching
) -> None:
    """Each exit gets a threshold in [0.5, 1] or NEVER, the shares add up to the frames,
    and each exit's CPU time is measured."""
    held_out = teaching.span(18, 24)
    exits, offload_share = calibrate_exits(network, held_out, Objective())
    assert len(exits) == TINY.exits
    for metrics in exits:
        assert metrics.threshold == NEVER or 0.5 <= metrics.threshold <= 1.0
        assert 0.0 <= metrics.count_accuracy <= 1.0
        assert metrics.count_mae >= 0.0
        assert metrics.ms_per_frame >= 0.0
    assert sum(m.stopped_share for m in exits) + offload_share == pytest.approx(1.0)


# -- the edge's model -------------------------------------------------------------------


def test_the_edge_model_stops_at_the_first_sure_exit(saved: Path, frames: list[np.ndarray]) -> None:
    """With exit 1 always sure, every frame stops there; with exit 2 always sure, there;
    with no exit sure, the last exit's answer comes back unsure. The counted objects are
    the counts, one (label, presence) each."""
    first = SpecializedModel(with_thresholds(saved, [0.0, NEVER, NEVER], "first"))
    assert first.name == "specialized:cam"
    assert first.labels == ("person",)
    for image in frames[:3]:
        got = first.answer(image)
        assert isinstance(got, SpecializedAnswer)
        assert got.sure
        assert got.answer.exit == 0
        assert got.detail.startswith("exit 1 sure (")
        _agrees(got)
    assert first.exits_taken == [3, 0, 0]

    second = SpecializedModel(with_thresholds(saved, [NEVER, 0.0, NEVER], "second"))
    got = second.answer(frames[0])
    assert (got.sure, got.answer.exit) == (True, 1)
    assert got.detail.startswith("exit 2 sure (")
    assert second.exits_taken == [0, 1, 0]

    never = SpecializedModel(with_thresholds(saved, [NEVER, NEVER, NEVER], "never"))
    got = never.answer(frames[0])
    assert (got.sure, got.answer.exit) == (False, 2)
    assert got.detail.startswith("exit 3 unsure (")
    _agrees(got)
    assert never.exits_taken == [0, 0, 0]


def _agrees(got: SpecializedAnswer) -> None:
    (count,) = got.answer.counts
    (presence,) = got.answer.presence
    assert 0 <= count <= TINY.max_count
    assert got.counted == (("person", round(presence, 3)),) * count
    assert got.detail.endswith(f": {count} person")
    assert got.answer.cells.shape == (1, 3, 3)
    assert 0.5 <= got.answer.sureness <= 1.0


def test_counted_objects_follow_the_counts_per_label() -> None:
    """Two labels: one (label, presence) per object counted, in the labels' order."""
    answer = ExitAnswer(1, (2, 0, 1), (0.91234, 0.1, 0.6), np.full((3, 3, 3), 0.9))
    got = SpecializedAnswer(answer, True, ("person", "car", "dog"))
    assert got.counted == (("person", 0.912), ("person", 0.912), ("dog", 0.6))
    assert got.detail == "exit 2 sure (0.60): 2 person, 0 car, 1 dog"


# -- the ledger -------------------------------------------------------------------------


def test_the_ledger_keeps_counted_objects_without_a_box(tmp_path: Path) -> None:
    """A counted object is stored as label and score, no box, read back as such, and
    counts as a person for the security measures."""
    path = tmp_path / "l.db"
    with Ledger(path, run_id="r") as ledger:
        ledger.capture("f0", seq=0, capture_ts=1.0, true_label=None)
        ledger.capture("f1", seq=1, capture_ts=2.0, true_label=None)
        ledger.decide(
            "f0",
            Decision.LOCAL,
            decided_ts=1.5,
            model="specialized:cam",
            detail="exit 1 sure (0.97): 2 person",
            detections=[("person", 0.9, None), ("person", 0.8766, None)],
        )
        ledger.decide(
            "f1",
            Decision.CLOUD,
            decided_ts=2.5,
            model="nanodet_coco",
            detections=[("person", 0.9, (0.1, 0.2, 0.3, 0.4)), ("car", 0.8, None)],
        )
    counted, mixed = iter_frames(path, run_id="r")
    assert counted.detections == [
        {"label": "person", "score": 0.9},
        {"label": "person", "score": 0.877},
    ]
    assert (counted.model, counted.people) == ("specialized:cam", 2)
    assert people(counted.detections) == 2
    assert mixed.detections == [
        {"label": "person", "score": 0.9, "box": [0.1, 0.2, 0.3, 0.4]},
        {"label": "car", "score": 0.8},
    ]
    assert people(mixed.detections) == 1


def test_a_counted_object_with_a_bad_score_is_still_refused(tmp_path: Path) -> None:
    """No box is no licence for a score outside 0..1."""
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=None)
        with pytest.raises(LedgerError, match="detection 0") as refused:
            ledger.decide("a", Decision.LOCAL, decided_ts=2.0, detections=[("person", 1.5, None)])
        assert refused.value.reason == "bad_value"
        assert ledger.undecided == ["a"]


# -- config -----------------------------------------------------------------------------


def test_the_specialized_model_needs_a_detecting_edge() -> None:
    with pytest.raises(ConfigError, match=r"edge\.specialized .*edge\.task = detect") as info:
        load_config(env={}, overrides=["edge.specialized=models/cam.json"])
    assert info.value.key == "edge.specialized"


def test_the_specialized_model_takes_the_local_detectors_place() -> None:
    with pytest.raises(ConfigError, match=r"edge\.specialized .*edge\.local_model") as info:
        load_config(
            env={},
            overrides=[
                "edge.task=detect",
                "edge.model=nanodet_coco",
                "edge.local_model=ssdlite_person",
                "edge.policy=threshold",
                "edge.specialized=models/cam.json",
            ],
        )
    assert info.value.key == "edge.specialized"


def test_a_detecting_edge_with_a_specialized_model_needs_no_local_model() -> None:
    """Policy threshold is allowed without edge.local_model when edge.specialized is set
    (and refused without either)."""
    config = load_config(
        env={},
        overrides=[
            "edge.task=detect",
            "edge.model=nanodet_coco",
            "edge.policy=threshold",
            "edge.specialized=models/cam.json",
        ],
    )
    assert config.edge.specialized == "models/cam.json"
    assert config.edge.local_model is None
    assert config.edge.policy == "threshold"
    with pytest.raises(ConfigError, match=r"needs edge\.local_model"):
        load_config(
            env={},
            overrides=["edge.task=detect", "edge.model=nanodet_coco", "edge.policy=threshold"],
        )


# -- the command ------------------------------------------------------------------------


def test_the_specialize_command_writes_the_pair_and_its_exit_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``camoffload specialize`` trains on the first 3/4 of the frames, calibrates on the
    rest, writes t.pt and t.json (loadable, recording how it was made) and prints each
    exit's threshold and share."""
    out = tmp_path / "models"
    argv = [
        "specialize", str(default_video()), "--frames", "24", "--epochs", "2",
        "--input-size", "32x48", "--out", str(out), "--name", "t",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["t.json", "t.pt"]
    manifest, network = load_specialized(out / "t.json")
    assert manifest.name == "t"
    assert manifest.camera == "vtest_clip.avi"
    assert manifest.train_frames == (0, 18)
    assert manifest.held_out_frames == (18, 24)
    assert manifest.teacher == "reference:nanodet_coco"
    assert manifest.epochs == 2
    assert manifest.command.startswith("camoffload specialize ")
    assert network.config.input_size == (32, 48)
    assert len(manifest.exits) == network.config.exits == 3
    assert sum(e.stopped_share for e in manifest.exits) + manifest.offload_share == pytest.approx(
        1.0, abs=1e-3
    )
    printed = capsys.readouterr().out
    assert f"wrote {out / 't.json'}" in printed
    assert "18 frames trained, 6 held out" in printed
    assert "exit  threshold  answers" in printed
    rows = [line.split() for line in printed.splitlines() if line[:4].strip() in {"1", "2", "3"}]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    for row, metrics in zip(rows, manifest.exits, strict=True):
        assert row[1] == f"{metrics.threshold:.3f}"
    assert "(no exit sure)" in printed


def test_the_specialize_command_refuses_too_few_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["specialize", str(default_video()), "--frames", "8", "--out", str(tmp_path)]
    assert cli_main(argv) == 1
    assert "too few to train on" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_runs_ledger_teaches_the_frames_the_cloud_answered(tmp_path: Path) -> None:
    """``--ledger``: the cloud's detections in a run's ledger are the teacher; frames it
    did not answer (kept on the camera, or never answered) are left out."""
    path = tmp_path / "run.sqlite"
    with Ledger(path, run_id="r") as ledger:
        for seq in range(6):
            ledger.capture(f"f{seq}", seq=seq, capture_ts=float(seq), true_label=None)
        for seq in (0, 2, 3, 5):
            ledger.decide(
                f"f{seq}",
                Decision.CLOUD,
                decided_ts=seq + 0.5,
                model="nanodet_coco",
                detections=[("person", 0.9, (0.1, 0.1, 0.2, 0.4))] * (seq % 3),
            )
        ledger.decide("f1", Decision.LOCAL, decided_ts=1.5, model="ssdlite_person", detections=[])
    teaching = read_teaching(
        str(default_video()), TINY, end=6, teacher=f"ledger:{path}", min_score=0.35
    )
    assert teaching.indices == (0, 2, 3, 5)
    assert teaching.counts[:, 0].tolist() == [0, 2, 0, 2]
    assert int(teaching.cells[1, 0].sum()) == 1  # both boxes in one cell, the top left


def test_a_ledger_without_cloud_answers_teaches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with Ledger(path, run_id="r") as ledger:
        ledger.capture("f0", seq=0, capture_ts=0.0, true_label=None)
        ledger.decide("f0", Decision.LOCAL, decided_ts=0.5, model="ssdlite_person", detections=[])
    with pytest.raises(CamoffloadError, match="no frame answered by the cloud"):
        read_teaching(str(default_video()), TINY, end=1, teacher=f"ledger:{path}", min_score=0.35)
    with pytest.raises(CamoffloadError, match="expected reference:<detector> or ledger:<file>"):
        read_teaching(str(default_video()), TINY, end=1, teacher="teacher", min_score=0.35)
