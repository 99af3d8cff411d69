"""A detecting edge with its camera's own specialized model, through a real Mosquitto and
a real nanodet_coco worker, on the shipped clip: every frame decided exactly once, the
frames an exit is sure of answered on the camera with counts and no boxes, the rest
answered by the cloud with boxes; policy cloud-only offloads every frame whatever the
exits say. The thresholds are set in the manifest (as a user may tune them) so each
run's split of frames is known, however well the tiny model learned."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
from pathlib import Path

import pytest
import torch

from camoffload.cli import main as cli_main
from camoffload.demo import default_video
from camoffload.specialize.calibrate import NEVER, Objective, calibrate_exits
from camoffload.specialize.data import read_teaching
from camoffload.specialize.train import TrainOptions, train_specialized
from edge_node import EdgeNode, Ledger, VideoSource
from edge_node.ledger_rows import FrameRecord, iter_frames
from edge_node.ledger_summary import LedgerSummary
from edge_node.specialized_model import SpecializedModel
from pipeline.config import Config
from pipeline.models.specialized import SpecializedConfig
from pipeline.models.specialized_weights import save_specialized
from tests._helpers import running_worker, with_thresholds

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FRAMES = 24
TINY = SpecializedConfig(widths=(4, 8, 8, 8), input_size=(32, 48))
_COUNT = re.compile(r": (\d+) person$")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of the clip's camera: trained on frames 0-29, calibrated on 30-39."""
    teaching = read_teaching(
        str(default_video()), TINY, end=40, teacher="reference:nanodet_coco", min_score=0.35
    )
    train, held_out = teaching.span(0, 30), teaching.span(30, 40)
    epochs = 5
    network = train_specialized(train, TINY, TrainOptions(epochs=epochs, batch_size=8))
    exits, offload_share = calibrate_exits(network, held_out, Objective())
    fields = {
        "camera": "vtest_clip.avi",
        "train_frames": (0, 30),
        "held_out_frames": (30, 40),
        "time_span_s": (0.0, 3.9),
        "teacher": "reference:nanodet_coco",
        "min_score": 0.35,
        "objective": Objective().as_dict(),
        "exits": tuple(exits),
        "offload_share": offload_share,
        "seed": 0,
        "epochs": epochs,
        "command": "camoffload specialize (test)",
        "torch_version": str(torch.__version__),
        "train_wall_s": 0.0,
    }
    return save_specialized(network, tmp_path_factory.mktemp("specialized"), "cam", fields)


def _edge(config: Config, manifest: Path, policy: str) -> Config:
    """A detecting edge with ``manifest`` as its model and nanodet_coco in the cloud (one
    onnxruntime thread: tests share the box). The deadline is long: on a slow, loaded
    machine the cloud still answers every frame it is sent."""
    return dataclasses.replace(
        config,
        edge=dataclasses.replace(
            config.edge,
            task="detect",
            model="nanodet_coco",
            local_model=None,
            specialized=str(manifest),
            policy=policy,  # type: ignore[arg-type]
            deadline_ms=60_000.0,
        ),
        worker=dataclasses.replace(config.worker, model="nanodet_coco", threads=1),
    )


def _run(cfg: Config, ledger_path: Path) -> tuple[LedgerSummary, list[FrameRecord]]:
    """The edge over the clip's first FRAMES frames with one worker; its ledger rows."""

    async def scenario() -> tuple[LedgerSummary, str]:
        async with running_worker(cfg):
            ledger = Ledger(ledger_path)
            try:
                node = EdgeNode(cfg, VideoSource(str(default_video())), ledger)
                summary = await node.run(max_frames=FRAMES)
            finally:
                ledger.close()
        return summary, ledger.run_id

    summary, run_id = asyncio.run(scenario())
    return summary, list(iter_frames(ledger_path, run_id=run_id))


def _decided_once(summary: LedgerSummary, records: list[FrameRecord]) -> None:
    assert summary.captured == summary.decided == FRAMES
    assert sum(summary.by_decision.values()) == FRAMES
    assert [r.seq for r in records] == list(range(FRAMES))
    assert len({r.frame_id for r in records}) == FRAMES
    assert all(r.decision is not None and r.decided_ts is not None for r in records)


def _counted_locally(record: FrameRecord, detail: str) -> None:
    """A frame the specialized model answered: its name, the exit's detail, one boxless
    person per counted object and nothing sent."""
    assert record.model == "specialized:cam", record
    assert record.detail is not None
    assert record.detail.startswith(detail), record.detail
    assert record.bytes_sent == 0
    assert record.detections is not None
    assert all(set(d) == {"label", "score"} for d in record.detections), record.detections
    assert all(d["label"] == "person" and 0.5 <= d["score"] <= 1.0 for d in record.detections)
    found = _COUNT.search(record.detail)
    assert found is not None, record.detail
    assert len(record.detections) == int(found.group(1))


def _answered_by_the_cloud(record: FrameRecord) -> None:
    """A frame nanodet_coco answered: located objects, people among them."""
    assert record.decision == "cloud", record
    assert record.model == "nanodet_coco"
    assert record.bytes_sent > 0
    assert record.detections is not None
    assert all(len(d["box"]) == 4 for d in record.detections), record.detections
    # The clip's first seconds have people walking in every frame.
    assert any(d["label"] == "person" and d["score"] >= 0.35 for d in record.detections)


def _exit_one_sureness(manifest: Path) -> list[float]:
    """How sure exit 1 is of each of the clip's first FRAMES frames, as the edge runs it."""
    model = SpecializedModel(with_thresholds(manifest, [0.0, NEVER, NEVER], "probe"))
    source = VideoSource(str(default_video()))
    try:
        sureness = []
        for _ in range(FRAMES):
            frame = source.read()
            assert frame is not None
            sureness.append(model.answer(frame.image).answer.sureness)
    finally:
        source.close()
    return sureness


def _splitting_threshold(sureness: list[float]) -> float:
    """A threshold between two of these values that stops a quarter to three quarters of
    the frames, in the widest gap: no frame sits near it."""
    values = sorted(set(sureness))
    candidates = []
    for low, high in itertools.pairwise(values):
        stopped = sum(1 for s in sureness if s >= high)
        if FRAMES // 4 <= stopped <= 3 * FRAMES // 4:
            candidates.append((high - low, (low + high) / 2))
    assert candidates, f"exit 1 is equally sure of every frame: {sureness}"
    gap, threshold = max(candidates)
    assert gap > 1e-5, f"exit 1's sureness is too even to split: {sureness}"
    return threshold


def test_sure_frames_stay_on_the_camera_and_the_rest_go_to_the_cloud(
    config: Config, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1's threshold set between its sureness on the clip's frames: the frames it
    is sure of are decided on the camera, counted without boxes; every other frame goes
    through exits 2 and 3 (never sure) to nanodet_coco and comes back with boxes."""
    sureness = _exit_one_sureness(manifest)
    threshold = _splitting_threshold(sureness)
    split = with_thresholds(manifest, [threshold, NEVER, NEVER], "split")
    ledger_path = tmp_path / "ledger.sqlite"
    summary, records = _run(_edge(config, split, "threshold"), ledger_path)
    _decided_once(summary, records)
    local = {seq for seq, s in enumerate(sureness) if s >= threshold}
    assert {r.seq for r in records if r.decision == "local"} == local
    assert {r.seq for r in records if r.decision == "cloud"} == set(range(FRAMES)) - local
    assert summary.by_decision == {"local": len(local), "cloud": FRAMES - len(local)}
    for record in records:
        if record.seq in local:
            _counted_locally(record, "exit 1 sure (")
            assert record.local_confidence == pytest.approx(sureness[record.seq], abs=1e-6)
        else:
            _answered_by_the_cloud(record)
    # The ledger's reader takes boxless objects in its stride.
    assert cli_main(["ledger", "summary", str(ledger_path)]) == 0
    assert f"{FRAMES}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("policy", "thresholds", "detail"),
    [
        ("threshold", [NEVER, 0.0, NEVER], "exit 2 sure ("),  # exit 2 is always sure
        ("local-only", [NEVER, NEVER, NEVER], "local-only: exit 3 unsure ("),
    ],
)
def test_frames_an_exit_answers_never_reach_the_cloud(
    config: Config,
    manifest: Path,
    tmp_path: Path,
    policy: str,
    thresholds: list[float],
    detail: str,
) -> None:
    """When an exit is always sure (or the policy is local-only), every frame is
    decided on the camera, at that exit, and nothing is sent."""
    model = with_thresholds(manifest, thresholds, f"local-{policy}")
    summary, records = _run(_edge(config, model, policy), tmp_path / "ledger.sqlite")
    _decided_once(summary, records)
    assert summary.by_decision == {"local": FRAMES}
    for record in records:
        _counted_locally(record, detail)


def test_cloud_only_offloads_every_frame_even_when_an_exit_is_sure(
    config: Config, manifest: Path, tmp_path: Path
) -> None:
    """Policy cloud-only with edge.specialized: exit 1 is always sure, yet every frame
    goes to nanodet_coco and is answered with boxes."""
    sure = with_thresholds(manifest, [0.0, 0.0, 0.0], "sure")
    summary, records = _run(_edge(config, sure, "cloud-only"), tmp_path / "ledger.sqlite")
    _decided_once(summary, records)
    assert summary.by_decision == {"cloud": FRAMES}
    for record in records:
        _answered_by_the_cloud(record)
