"""The edge and worker sections and the whole configuration: frozen, closed dataclasses.

Each field's type declares its range or choices (:mod:`pipeline.config.constraints`);
``__post_init__`` holds a section to them however it was built, then checks what one
field cannot say alone ("the tensor payload needs a local model"). :mod:`pipeline.config.loader`
fills them from a file, the environment and ``--set``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec

from pipeline.config.broker import BrokerConfig
from pipeline.config.constraints import (
    Fraction,
    NonNegative,
    Port,
    Positive,
    PositiveInt,
    Qos,
    Slowdown,
    check_declared,
)
from pipeline.cpus import parse_cpus
from pipeline.errors import ConfigError
from pipeline.topics import Topics, validate_level

__all__ = ["DEFAULT_MODEL", "DEFAULT_PREFIX", "Config", "EdgeConfig", "WorkerConfig"]

DEFAULT_PREFIX = "camoffload"
DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """The edge node: identity, offload transport and deadline."""

    edge_id: str = "edge-1"
    qos: Qos = 1
    deadline_ms: Positive = 1000.0
    max_in_flight: PositiveInt = 8
    # Frames that are ready while earlier publishes still wait for their PUBACK leave
    # together as one bundle message (edge_node/sender.py); a camera at its own pace
    # sends one frame per message either way. False: always one frame per message.
    bundle: bool = True
    jpeg_quality: Annotated[int, msgspec.Meta(ge=1, le=100)] = 90
    model: str = DEFAULT_MODEL
    rate: str = "max"  # "max", "real" (the source's own fps) or a number of frames/s
    ledger_path: str | None = None  # SQLite (WAL) file; None keeps the ledger in memory
    # The edge's own model (registry name): an early-exit model runs its edge part up
    # to ``split`` and answers with exit ``split``; None = no local model.
    local_model: str | None = None
    split: Annotated[int, msgspec.Meta(ge=1)] = 1
    policy: Literal["cloud-only", "local-only", "threshold", "entropy", "router"] = "cloud-only"
    confidence_threshold: Fraction = 0.8  # threshold policy: offload below this
    # router policy: the learned router's .pt (default <models folder>/<local_model>.router.pt);
    # it offloads when its keep-local score is below confidence_threshold.
    router: str | None = None
    payload: Literal["jpeg", "raw", "tensor"] = "jpeg"  # tensor: the split activation
    # How a split activation is sent: per-frame uint8 codes (half float16's bytes, the
    # same top-1: pipeline/quantize.py) or float16.
    tensor_dtype: Literal["uint8", "float16"] = "uint8"
    motion_threshold: Fraction | None = None  # changed-pixel fraction; None = no gate
    motion_mask: str | None = None  # image file or "x,y;x,y;x,y" polygons (0..1)
    status_interval_s: Positive = 1.0
    # Once the local model is loaded, freeze the objects alive then (pipeline/heap.py),
    # so a full garbage collection no longer stops the loop to rescan them.
    freeze_heap: bool = True
    metrics_port: Port | None = None
    metrics_addr: str = "127.0.0.1"
    homeassistant: bool = False  # publish Home Assistant MQTT discovery + JSON state
    homeassistant_prefix: str = "homeassistant"
    # How much of an offloaded frame to send (docs/gompertz.md): "fixed" sends a full
    # JPEG at jpeg_quality (all-or-nothing); "gompertz" picks quality and resolution
    # per frame from a fitted calibration (default: pipeline/models/shipped/<model>.gompertz.json).
    quality_policy: Literal["fixed", "gompertz"] = "fixed"
    calibration: str | None = None
    target_accuracy: Fraction | None = None  # None: maximise expected accuracy
    accuracy_slack: Fraction = 0.005  # the cheapest choice within this of the best
    link_kbps: Positive | None = None  # uplink bandwidth until measured; None: unknown
    # Dynamic thresholds (policy "threshold" only; edge_node/thresholds.py): "fixed"
    # keeps confidence_threshold; "target-share" offloads the least confident
    # target_offload_share of recent frames; "latency-slo" moves that share (AIMD) to
    # keep offloaded frames' p95 latency under latency_slo_ms.
    threshold_mode: Literal["fixed", "target-share", "latency-slo"] = "fixed"
    target_offload_share: Fraction = 0.3  # also latency-slo's starting share
    latency_slo_ms: Positive = 250.0
    # Neurosurgeon-style partition (edge_node/partition.py): "auto" picks, per frame,
    # where to cut local_model (send the image, an activation, or nothing) by predicted
    # latency; with policy cloud-only. device_slowdown emulates a slower edge device:
    # local computation holds its thread this many times as long.
    partition: Literal["off", "auto"] = "off"
    device_slowdown: Slowdown = 1.0
    # What the edge asks the cloud: "classify" (one label a frame) or "detect" (objects:
    # people, vehicles), with a detector as local_model (ssdlite_person) and as model
    # (nanodet_coco). Detection routing (edge_node/detection_policy.py), policy
    # "threshold": a frame stays local when every local detection is sure (score >=
    # detect_high) or noise (< detect_low) and no class in detect_classes is one the
    # local detector cannot see; "cloud-only" and "local-only" as for classification.
    task: Literal["classify", "detect"] = "classify"
    detect_low: Fraction = 0.3
    detect_high: Fraction = 0.7
    detect_classes: tuple[str, ...] = ("person",)
    # A camera's own early-exit model (`camoffload specialize`; docs/specialize.md): the
    # path of its manifest (.json). It takes the local detector's place: frames its
    # exits are sure of stop on the camera, the rest go to the cloud. Task detect only.
    specialized: str | None = None
    # Named zones for objects (docs/objects.md), the motion mask's polygon syntax with
    # a name before each: "door: 0.4,0.3;0.6,0.3;0.6,0.7 | yard: 0,0.6;1,0.6;1,1;0,1".
    zones: str | None = None
    # Also write each object's snapshot to this folder, as <edge>-<object id>-<label>.jpg,
    # keeping the newest snapshot_keep files. None: snapshots go to MQTT only.
    snapshot_dir: str | None = None
    snapshot_keep: PositiveInt = 500

    def __post_init__(self) -> None:
        check_declared(self, "edge")
        self._check_detection()
        validate_level(self.edge_id, "edge.edge_id")
        self._check_modes()
        if self.policy != "cloud-only" and self.local_model is None and self.specialized is None:
            raise ConfigError(
                f"edge.policy {self.policy!r} needs edge.local_model", key="edge.policy"
            )
        if self.payload == "tensor" and self.local_model is None:
            raise ConfigError(
                "edge.payload 'tensor' sends the local model's activation: set "
                "edge.local_model to an early-exit model",
                key="edge.payload",
            )
        if self.router is not None and not self.router.strip():
            raise ConfigError("edge.router must name a router file", key="edge.router")
        if self.rate not in ("max", "real"):
            try:
                rate = float(self.rate)
            except ValueError:
                rate = 0.0
            if rate <= 0:
                raise ConfigError(
                    f"edge.rate must be 'max', 'real' or a positive number, got {self.rate!r}",
                    key="edge.rate",
                )

    def _check_detection(self) -> None:
        if self.task != "detect":
            if self.specialized is not None:
                raise ConfigError(
                    "edge.specialized answers a detecting edge's frames: set edge.task = detect",
                    key="edge.specialized",
                )
            return
        if self.specialized is not None and self.local_model is not None:
            raise ConfigError(
                "edge.specialized takes the local detector's place: leave edge.local_model unset",
                key="edge.specialized",
            )
        if self.detect_low > self.detect_high:
            raise ConfigError(
                f"edge.detect_low ({self.detect_low}) is above edge.detect_high "
                f"({self.detect_high})",
                key="edge.detect_low",
            )
        if self.payload != "jpeg" or self.partition != "off":
            raise ConfigError(
                "edge.task 'detect' sends images: it needs edge.payload = jpeg and "
                "edge.partition = off",
                key="edge.task",
            )
        if self.policy in ("entropy", "router"):
            raise ConfigError(
                f"edge.policy {self.policy!r} reads a classifier's scores; detection uses "
                "cloud-only, local-only or threshold (detect_low/detect_high)",
                key="edge.policy",
            )
        if not self.detect_classes or not all(c.strip() for c in self.detect_classes):
            raise ConfigError("edge.detect_classes must name classes", key="edge.detect_classes")

    def _check_modes(self) -> None:
        """The quality, threshold and partition modes need a policy and payload to act on."""
        if self.quality_policy == "gompertz" and self.payload != "jpeg":
            raise ConfigError(
                "edge.quality_policy 'gompertz' chooses a JPEG quality: it needs "
                f"edge.payload = jpeg, not {self.payload!r}",
                key="edge.quality_policy",
            )
        if self.threshold_mode != "fixed" and self.policy != "threshold":
            raise ConfigError(
                f"edge.threshold_mode {self.threshold_mode!r} moves the threshold policy's "
                f"threshold: set edge.policy = threshold, not {self.policy!r}",
                key="edge.threshold_mode",
            )
        if self.partition == "auto" and (
            self.policy != "cloud-only" or self.local_model is None or self.payload != "jpeg"
        ):
            raise ConfigError(
                "edge.partition 'auto' chooses per frame what to send: it needs "
                "edge.policy = cloud-only, edge.payload = jpeg (for the whole image) and "
                "an early-exit edge.local_model",
                key="edge.partition",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """A cloud worker: identity, subscription, batching and queue bounds."""

    worker_id: str = "worker-1"
    group: str = "workers"
    shared_subscription: bool = True
    qos: Qos = 1
    model: str = DEFAULT_MODEL
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # A batch is whatever is queued when the inference thread is free, up to
    # max_batch: under load the queue fills while the previous batch computes, and a
    # lone frame at low load goes at once. max_wait_ms > 0 holds a batch open that
    # long for company (worth it only where batch 1 costs as much as a full batch).
    max_batch: PositiveInt = 32
    max_wait_ms: NonNegative = 0.0
    max_queue: PositiveInt = 256
    # Messages the broker may send this worker before it acknowledges them (MQTT 5's
    # Receive Maximum; on MQTT 3.1.1 the broker's own max_inflight_messages rules). A
    # message is acknowledged once queued, answered or refused; the rest wait at the
    # broker, never in a client queue that could drop them (docs/worker.md).
    receive_maximum: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 64
    status_interval_s: Positive = 1.0
    half: bool = False  # float16 inference (CUDA only)
    # Serve the model as a frozen TorchScript graph (pipeline/frozen.py): BatchNorm
    # folded, and no GIL held during the forward pass. False: eager PyTorch.
    frozen: bool = True
    # torch's intra-op threads in this worker's process (None: torch's default, one
    # per core). On a small CPU box, N workers with cores/N threads each beat one
    # worker with all of them: no thread waits at a barrier for a core another
    # process holds (docs/performance.md).
    threads: Annotated[int, msgspec.Meta(ge=1, le=1024)] | None = None
    # Pin this worker's process to these cores ("0", "0,1", "0-3"; Linux): its
    # inference thread keeps a core and its caches to itself. None: no pinning.
    cpus: str | None = None
    # Keep freed memory in the process (glibc; pipeline/allocator.py), so each batch
    # reuses the last one's pages instead of faulting in zeroed ones from the kernel.
    keep_freed_memory: bool = True
    # Once the model is loaded, freeze the objects alive then (pipeline/heap.py), so a
    # full garbage collection no longer stops the loop for ~150 ms to rescan them.
    freeze_heap: bool = True
    # Prometheus endpoint: None = off, 0 = any free port. Loopback by default; set
    # metrics_addr = "0.0.0.0" for a scraper on another host.
    metrics_port: Port | None = None
    metrics_addr: str = "127.0.0.1"
    # A detector's lowest kept score (worker.model a detector, e.g. nanodet_coco).
    min_score: Fraction = 0.35
    # On SIGINT/SIGTERM, finish queued frames for at most this long before answering
    # the rest ``shutting_down``.
    drain_timeout_s: NonNegative = 10.0
    # Load emulation's documented fallback: each batch's compute takes this many times
    # as long (the inference thread sleeps the difference), like a slower or shared
    # server. Real contention (extra edges, ``camoffload eval`` loads) is preferred.
    slowdown: Slowdown = 1.0

    def __post_init__(self) -> None:
        check_declared(self, "worker")
        validate_level(self.worker_id, "worker.worker_id")
        validate_level(self.group, "worker.group")
        if self.cpus is not None:
            parse_cpus(self.cpus)  # raises ConfigError on a malformed list
        if self.half and self.device == "cpu":
            raise ConfigError(
                "worker.half needs worker.device = cuda or auto (float16 is slower on a CPU)",
                key="worker.half",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration: the topic prefix and one table per process kind.

    Layers, later wins: defaults < TOML file < environment (``CAMOFFLOAD_PREFIX``,
    ``CAMOFFLOAD_<SECTION>_<KEY>``) < ``--set section.key=value``. The broker password
    comes only from ``CAMOFFLOAD_BROKER_PASSWORD`` or ``broker.password_file``.
    """

    prefix: str = DEFAULT_PREFIX
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def __post_init__(self) -> None:
        Topics(self.prefix)  # validates the prefix

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)
