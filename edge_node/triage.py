"""Triage: what the edge does with one captured frame, before any MQTT.

A pure step over the frame and the edge's estimators: the motion gate, the local model
(or the partitioned model and its planner), the offload policy and the quality policy
turn a frame into either a decision made here (:class:`Decided`) or a plan to offload
it (:class:`OffloadPlan`). Whether an offload may go now (workers busy, broker down,
frames in flight) is the node's call, not triage's. Unit-testable with no broker.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from edge_node.detection_policy import DetectionPolicy
from edge_node.estimators import LinkEstimator, WorkerLoad
from edge_node.local_model import LocalModel, LocalOutput
from edge_node.motion import MotionGate, load_mask
from edge_node.outcomes import Outcome, with_local_answer
from edge_node.partition import PartitionPlanner, Plan
from edge_node.partition_model import PartitionedModel
from edge_node.policies import Route, policy_from_config
from edge_node.quality import (
    Conditions,
    FixedQuality,
    QualityChoice,
    QualityPolicy,
    make_quality_policy,
)
from edge_node.requests import Payload
from edge_node.sources import CapturedFrame
from edge_node.specialized_model import SpecializedModel
from edge_node.thresholds import adaptive_threshold
from pipeline.codecs import Image, encode_jpeg
from pipeline.config import EdgeConfig
from pipeline.deadline import Deadline
from pipeline.detection import Detection, Detector
from pipeline.errors import ModelError
from pipeline.protocol import Decision, PayloadCodec
from pipeline.quantize import TensorWireDType

__all__ = ["Decided", "OffloadPlan", "Triage", "Verdict"]


@dataclass(frozen=True, slots=True)
class Decided:
    """The frame is decided here."""

    outcome: Outcome
    local: LocalOutput | None = None


@dataclass(frozen=True, slots=True)
class OffloadPlan:
    """The frame should go to the cloud, unless the node must hold offloading back."""

    local: LocalOutput | None
    local_name: str | None
    choice: QualityChoice
    deadline: Deadline
    split: int | None  # the split point whose activation goes; None: the image
    payload: Payload | None  # None: edge.payload
    planned: tuple[Plan, float] | None  # the partition plan, and when it was made


Verdict = Decided | OffloadPlan
Answer = LocalOutput | list[Detection]  # a local classifier's or detector's
T = TypeVar("T")


class Triage:
    def __init__(
        self,
        cfg: EdgeConfig,
        *,
        link: LinkEstimator,
        worker_load: WorkerLoad,
        local_model: LocalModel | None = None,
    ) -> None:
        self._cfg = cfg
        self._link = link
        self._worker_load = worker_load
        self.local = local_model
        self.policy = policy_from_config(cfg)
        self.adaptive = adaptive_threshold(cfg)
        if self.adaptive is not None:
            self.policy = self.adaptive
        self.partition: PartitionedModel | None = None
        self.planner: PartitionPlanner | None = None
        self.partition_choices: Counter[int] = Counter()  # split point -> frames
        self.quality: QualityPolicy = FixedQuality(cfg.jpeg_quality)
        self.overhead_bytes = 0.0  # envelope + topic beyond the payload, last seen
        self._motion: MotionGate | None = None
        self.detector: Detector | None = None  # task detect: the local detector
        self.specialized: SpecializedModel | None = None  # or the camera's own model
        self.detection_policy: DetectionPolicy | None = None

    @property
    def local_name(self) -> str | None:
        if self.specialized is not None:
            return self.specialized.name
        if self.detector is not None:
            return self.detector.name
        if self.partition is not None:
            return self.partition.name
        return self.local.name if self.local else None

    async def load(self) -> None:
        """Load the local model (or the partitioned one) and the quality policy, off the
        loop: reading weights and building a model is slow."""
        cfg = self._cfg
        if cfg.task == "detect":
            await self._load_detection()
            return
        if cfg.partition == "auto" and cfg.local_model is not None:
            self.partition, self.planner = await asyncio.to_thread(
                _partition_for, cfg.local_model, cfg.device_slowdown, cfg.tensor_dtype
            )
            return
        if self.local is None and cfg.local_model is not None:
            self.local = await asyncio.to_thread(
                LocalModel, cfg.local_model, split=cfg.split, tensor_dtype=cfg.tensor_dtype
            )
        if self.policy.needs_local_model and self.local is None:
            raise ModelError(f"policy {self.policy.name!r} needs a local model")
        if cfg.payload == "tensor" and (self.local is None or not self.local.can_send_tensors):
            raise ModelError(
                "payload 'tensor' needs an early-exit local model (e.g. fmnist_exit_resnet)"
            )
        if cfg.quality_policy != "fixed":
            split = self.local.split if self.local else None
            self.quality = await asyncio.to_thread(make_quality_policy, cfg, local_split=split)

    @property
    def local_labels(self) -> tuple[str, ...]:
        """What the edge's own detector (or specialized model) can see."""
        if self.specialized is not None:
            return self.specialized.labels
        return self.detector.spec.labels if self.detector is not None else ()

    async def _load_detection(self) -> None:
        cfg = self._cfg
        labels: tuple[str, ...] = ()
        if cfg.specialized is not None:
            self.specialized = await asyncio.to_thread(SpecializedModel, cfg.specialized)
            labels = self.specialized.labels
        elif cfg.local_model is not None:
            self.detector = await asyncio.to_thread(
                Detector.by_name, cfg.local_model, min_score=min(cfg.detect_low, 0.2)
            )
            labels = self.detector.spec.labels
        elif cfg.policy != "cloud-only":
            raise ModelError(f"policy {cfg.policy!r} with task detect needs a local detector")
        self.detection_policy = DetectionPolicy(
            low=cfg.detect_low,
            high=cfg.detect_high,
            wanted=cfg.detect_classes,
            local_labels=labels,
            mode=cfg.policy,
        )
        if cfg.quality_policy != "fixed":
            self.quality = await asyncio.to_thread(make_quality_policy, cfg)

    async def triage(self, frame: CapturedFrame) -> Verdict:
        if self._motion_gate_skips(frame):
            return Decided(Outcome(Decision.SKIPPED, detail="no motion"))
        deadline = Deadline.after(frame.capture_ts, self._cfg.deadline_ms)
        if self.detection_policy is not None:
            return await self._triage_detection(frame, deadline)
        local = None
        split = self.local.split if self.local else None
        planned: tuple[Plan, float] | None = None
        if self.partition is not None:
            planned_mono = time.monotonic()
            plan = self._plan_partition()
            self.partition_choices[plan.point] += 1
            if plan.point > 0:
                local = await asyncio.to_thread(self.partition.run, plan.point, frame.image)
            if plan.point == self.partition.local_point:
                self.observe_plan(plan, planned_mono)
                return Decided(
                    with_local_answer(
                        Decision.LOCAL, local, self.partition.name, detail="partition: all local"
                    ),
                    local,
                )
            split = plan.point or None
            planned = (plan, planned_mono)
        elif self.local is not None:
            local = await asyncio.to_thread(self._classify_locally, frame.image)
        local_name = self.local_name
        if self.adaptive is not None and local is not None:
            self.adaptive.observe_local(local)
        if self.policy.route(local) is Route.LOCAL:
            return Decided(with_local_answer(Decision.LOCAL, local, local_name), local)
        choice = self._choose_quality(local, deadline)
        if not choice.offload:
            outcome = with_local_answer(Decision.LOCAL, local, local_name, detail=choice.reason)
            return Decided(outcome, local)
        payload: Payload | None = None
        if self.partition is not None and split is not None:
            payload = "tensor"  # the planner cut at a split point: send its activation
        return OffloadPlan(local, local_name, choice, deadline, split, payload, planned)

    async def _triage_detection(self, frame: CapturedFrame, deadline: Deadline) -> Verdict:
        assert self.detection_policy is not None
        local = None
        if self.specialized is not None:
            counted = await asyncio.to_thread(self._stretched, self.specialized.answer, frame.image)
            local = LocalOutput.counting(counted.counted, counted.answer.sureness)
            route = self.detection_policy.route_counted(counted.sure, counted.detail)
        else:
            if self.detector is not None:
                local = await asyncio.to_thread(
                    self._run_locally, self.detector.detect_one, frame.image
                )
            route = self.detection_policy.route(local.detections or () if local else ())
        name = self.local_name
        if not route.offload:
            return Decided(
                with_local_answer(Decision.LOCAL, local, name, detail=route.reason), local
            )
        # The detection calibration has no confidence bins: its curve is the cloud
        # detector's agreement with itself at full quality, whatever the edge saw.
        choice = self._choose_quality(None, deadline)
        if not choice.offload:
            return Decided(
                with_local_answer(Decision.LOCAL, local, name, detail=choice.reason), local
            )
        return OffloadPlan(local, name, choice, deadline, None, None, None)

    def observe_plan(self, plan: Plan, planned_mono: float) -> None:
        assert self.planner is not None
        self.planner.observe(plan, (time.monotonic() - planned_mono) * 1000)

    def _classify_locally(self, image: Image) -> LocalOutput:
        assert self.local is not None
        return self._run_locally(self.local.classify, image)

    def _run_locally(self, answer: Callable[[Image], Answer], image: Image) -> LocalOutput:
        found = self._stretched(answer, image)
        return found if isinstance(found, LocalOutput) else LocalOutput.detected(found)

    def _stretched(self, work: Callable[[Image], T], image: Image) -> T:
        """``work`` on the frame; ``edge.device_slowdown`` stretches its time."""
        started = time.monotonic()
        found = work(image)
        if self._cfg.device_slowdown > 1.0:
            time.sleep((self._cfg.device_slowdown - 1.0) * (time.monotonic() - started))
        return found

    def _plan_partition(self) -> Plan:
        assert self.planner is not None
        wait_ms, per_image_ms = self._worker_load.wait_and_per_image_ms()
        return self.planner.choose(
            self._link.estimate().network_ms_for, wait_ms=wait_ms, per_image_ms=per_image_ms
        )

    def _choose_quality(self, local: LocalOutput | None, deadline: Deadline) -> QualityChoice:
        """Ask the quality policy (JPEG payloads only; others go as they are)."""
        if self._cfg.payload != "jpeg" or (self.partition is not None and local is not None):
            return QualityChoice(True, PayloadCodec.JPEG, self._cfg.jpeg_quality, 1.0, None, "")
        conditions = Conditions(
            time_left_ms=deadline.remaining_ms(),
            link=self._link.estimate(),
            worker_ms=self._worker_load.estimated_ms(),
            overhead_bytes=self.overhead_bytes,
        )
        return self.quality.choose(local, conditions)

    def _motion_gate_skips(self, frame: CapturedFrame) -> bool:
        threshold = self._cfg.motion_threshold
        if threshold is None:
            return False
        if self._motion is None:
            mask = None
            if self._cfg.motion_mask:
                mask = load_mask(self._cfg.motion_mask, frame.image.shape[:2])
            self._motion = MotionGate(threshold=threshold, mask=mask)
        return not self._motion.check(frame.image).moving


def _partition_for(
    name: str, device_slowdown: float, tensor_dtype: TensorWireDType
) -> tuple[PartitionedModel, PartitionPlanner]:
    """The partitioned model and its planner, profiled on this device (blocking)."""
    model = PartitionedModel(name, device_slowdown=device_slowdown, tensor_dtype=tensor_dtype)
    channels, height, width = model.input_shape
    # The typical JPEG of a frame this size: a mid-grey image's, to start with.
    jpeg_bytes = len(encode_jpeg(np.full((height, width, channels), 128, np.uint8), 90))
    return model, PartitionPlanner(model.profile(jpeg_bytes))
