"""One cell of a suite: the measured edge's config, its run over the prepared frames, and
what it measured.

A strategy's ``coverage`` target becomes a threshold here: the quantile of the local
model's keep-local scores on the cell's own frames (see :class:`LocalModels`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camoffload.eval.frames import PacedFrames, PreparedData
from camoffload.eval.measures import CellMeasures, frame_rows, measure
from camoffload.eval.suite import Cell, DataSpec, Suite
from edge_node import EdgeNode, Ledger, LocalModel
from edge_node.ledger_rows import iter_frames
from edge_node.policies import ScoredPolicy, policy_from_config
from pipeline.config import Config, EdgeConfig, load_config
from pipeline.errors import CamoffloadError

__all__ = ["CellResult", "LocalModels", "edge_config", "run_cell"]


@dataclass(frozen=True, slots=True)
class CellResult:
    data: str
    load: str
    link: str
    strategy: str
    settings: dict[str, Any]  # the measured edge's edge.* settings, thresholds resolved
    measures: CellMeasures
    wall_s: float

    def as_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "load": self.load,
            "link": self.link,
            "strategy": self.strategy,
            "settings": self.settings,
            **self.measures.as_dict(),
            "wall_s": round(self.wall_s, 3),
        }


class LocalModels:
    """Local models by (name, split), loaded once per data set; keep-local scores cached."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], LocalModel] = {}
        self._confidences: dict[tuple[str, int, str, str | None], np.ndarray] = {}

    async def get(self, name: str, split: int) -> LocalModel:
        key = (name, split)
        if key not in self._models:
            self._models[key] = await asyncio.to_thread(LocalModel, name, split=split)
        return self._models[key]

    async def confidences(
        self, name: str, split: int, data: PreparedData, edge: EdgeConfig
    ) -> np.ndarray:
        """Each frame's keep-local score under ``edge.policy`` (max-softmax for
        ``threshold``, the router's score for ``router``, ...): what its threshold
        compares, so a coverage target is a quantile of these."""
        key = (name, split, edge.policy, edge.router)
        if key not in self._confidences:
            model = await self.get(name, split)
            policy = await asyncio.to_thread(policy_from_config, edge)
            if not isinstance(policy, ScoredPolicy):
                raise CamoffloadError(f"policy {edge.policy!r} has no threshold to set coverage")

            def scores() -> np.ndarray:
                frames = (model.classify(image) for image in data.images)
                return np.array([policy.keep_score(f) for f in frames], dtype=np.float64)

            self._confidences[key] = await asyncio.to_thread(scores)
        return self._confidences[key]


def edge_config(
    base: Config, suite: Suite, data: DataSpec, settings: dict[str, Any], *, edge_id: str
) -> Config:
    """A measured edge's config: the suite's run settings, then the cell's ``settings``,
    on ``base``'s broker and prefix."""
    values: dict[str, Any] = {
        "edge_id": edge_id,
        "model": data.cloud_model,
        "deadline_ms": suite.run.deadline_ms,
        "max_in_flight": suite.run.max_in_flight if suite.run.pacing == "camera" else 1,
        "rate": "max",  # the source paces itself, like a camera
        "status_interval_s": 1.0,
        **suite.run.edge,
    }
    values.update(settings)
    overrides = [f"edge.{key}={_setting(value)}" for key, value in values.items()]
    overrides += [
        f"broker.url={base.broker.url}",
        f"broker.protocol={base.broker.protocol}",
        f"prefix={base.prefix}",
    ]
    return load_config(env={}, overrides=overrides)


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


async def run_cell(
    base: Config,
    suite: Suite,
    cell: Cell,
    data: PreparedData,
    locals_: LocalModels,
    out_dir: Path,
    stop: asyncio.Event,
) -> CellResult:
    """Replay ``data`` through one measured edge under ``cell``'s strategy; its frames go
    to the suite's ledger (run id: the cell's key) and ``frames.jsonl``."""
    settings = dict(cell.strategy.settings)
    wants_local = (
        settings.get("policy", "cloud-only") != "cloud-only"
        or "payload" in settings
        or settings.get("partition", "off") != "off"
    )
    if "local_model" not in settings and data.spec.local_model is not None and wants_local:
        settings["local_model"] = data.spec.local_model
    local_name = settings.get("local_model")
    split = int(settings.get("split", data.spec.split))
    if local_name is not None:
        settings.setdefault("split", split)
    if cell.strategy.coverage is not None:
        if local_name is None:
            raise CamoffloadError(f"{cell.key}: a coverage target needs a local model")
        scoring = edge_config(base, suite, data.spec, settings, edge_id="coverage").edge
        confidences = await locals_.confidences(local_name, split, data, scoring)
        # Offload the (1 - coverage) lowest-scoring frames: they fall below this.
        settings["confidence_threshold"] = float(
            np.quantile(confidences, 1.0 - cell.strategy.coverage)
        )
    edge_id = "m-" + "-".join(
        part.replace("_", "-") for part in (cell.load.name, cell.link.name, cell.strategy.name)
    )
    config = edge_config(base, suite, data.spec, settings, edge_id=edge_id[:60])
    local = await locals_.get(local_name, split) if local_name is not None else None
    ledger_path = out_dir / "ledger.sqlite"
    run_id = cell.key
    ledger = Ledger(ledger_path, run_id=run_id)
    started = time.monotonic()
    try:
        fps = suite.run.rate if suite.run.pacing == "camera" else None
        node = EdgeNode(config, PacedFrames(data, fps), ledger, local_model=local)
        await node.run(stop=stop)
    finally:
        ledger.close()
    wall_s = time.monotonic() - started
    records = list(iter_frames(ledger_path, run_id=run_id))
    measures = measure(records, data.labels, slo_ms=suite.run.slo_ms)
    rows = frame_rows(records, data.labels)
    with (out_dir / "frames.jsonl").open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"cell": cell.key, **dataclasses.asdict(row)}) + "\n")
    return CellResult(
        data=cell.data.name,
        load=cell.load.name,
        link=cell.link.name,
        strategy=cell.strategy.name,
        settings=settings,
        measures=measures,
        wall_s=wall_s,
    )
