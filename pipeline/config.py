"""One typed, closed configuration for every process.

Layers, later wins: built-in defaults < TOML file < environment < command line.

* TOML: top-level ``prefix`` and tables ``[broker]``, ``[edge]``, ``[worker]``.
* Environment: ``CAMOFFLOAD_PREFIX``, ``CAMOFFLOAD_<SECTION>_<KEY>``
  (e.g. ``CAMOFFLOAD_EDGE_DEADLINE_MS=500``).
* Command line: ``--set section.key=value`` (and shortcuts such as ``--broker URL``).

Unknown keys are errors, not silently ignored. The broker password is a secret: it is
read only from ``CAMOFFLOAD_BROKER_PASSWORD`` or from ``broker.password_file``, never
from the command line or a URL.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pipeline.cpus import parse_cpus
from pipeline.errors import ConfigError
from pipeline.topics import Topics, validate_level

__all__ = [
    "BrokerConfig",
    "Config",
    "EdgeConfig",
    "MqttProtocol",
    "WorkerConfig",
    "load_config",
]

ENV_PREFIX = "CAMOFFLOAD_"
PASSWORD_ENV = "CAMOFFLOAD_BROKER_PASSWORD"  # noqa: S105 - the variable name, not a secret
DEFAULT_PREFIX = "camoffload"
DEFAULT_MODEL = "efficientnet_lite0"


MqttProtocol = Literal["5", "3.1.1"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """How to reach the MQTT broker."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    protocol: MqttProtocol = "5"
    keepalive_s: int = 30
    connect_timeout_s: float = 15.0  # keep retrying a broker that is not up yet this long
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(
                f"broker url {self.url!r} must start with mqtt:// or mqtts://", key="broker.url"
            )
        if not parts.hostname:
            raise ConfigError(f"broker url {self.url!r} has no host", key="broker.url")
        if parts.password is not None:
            raise ConfigError(
                f"broker url must not contain a password: set {PASSWORD_ENV} "
                "or broker.password_file",
                key="broker.url",
            )
        try:
            _ = parts.port
        except ValueError as exc:
            raise ConfigError(f"broker url {self.url!r}: {exc}", key="broker.url") from exc
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(
                f"broker url {self.url!r} takes no path, query or fragment", key="broker.url"
            )
        if parts.username and self.username and parts.username != self.username:
            raise ConfigError(
                "broker.username and the user in broker.url disagree", key="broker.username"
            )
        if self.password is not None and self.password_file is not None:
            raise ConfigError(
                f"give the password by {PASSWORD_ENV} or broker.password_file, not both",
                key="broker.password_file",
            )
        if (self.password is not None or self.password_file is not None) and not self.user:
            raise ConfigError("a broker password requires a username", key="broker.username")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(
                "broker.cert_file and broker.key_file go together", key="broker.cert_file"
            )
        if parts.scheme != "mqtts" and (self.ca_file or self.cert_file):
            # Otherwise a typo in the scheme would quietly send the password in clear.
            raise ConfigError(
                "broker.ca_file, cert_file and key_file are for TLS: use an mqtts:// url",
                key="broker.url",
            )
        if self.connect_timeout_s <= 0:
            raise ConfigError(
                "broker.connect_timeout_s must be > 0", key="broker.connect_timeout_s"
            )
        if not 5 <= self.keepalive_s <= 3600:
            raise ConfigError("broker.keepalive_s must be 5-3600", key="broker.keepalive_s")

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked in __post_init__
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def user(self) -> str | None:
        return self.username or urlsplit(self.url).username or None

    def read_password(self) -> str | None:
        """The password, from the environment-supplied value or the password file."""
        if self.password_file is None:
            return self.password
        try:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read broker.password_file {self.password_file!r}: {exc}",
                key="broker.password_file",
            ) from exc


def _check_qos(qos: int, key: str) -> None:
    if qos not in (0, 1, 2):
        raise ConfigError(f"{key} must be 0, 1 or 2", key=key)


def _check_positive(values: Mapping[str, float]) -> None:
    for key, value in values.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}", key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """The edge node: identity, offload transport and deadline."""

    edge_id: str = "edge-1"
    qos: int = 1
    deadline_ms: float = 1000.0
    max_in_flight: int = 8
    # Frames that are ready while earlier publishes still wait for their PUBACK leave
    # together as one bundle message (edge_node/sender.py); a camera at its own pace
    # sends one frame per message either way. False: always one frame per message.
    bundle: bool = True
    jpeg_quality: int = 90
    model: str = DEFAULT_MODEL
    rate: str = "max"  # "max", "real" (the source's own fps) or a number of frames/s
    ledger_path: str | None = None  # SQLite (WAL) file; None keeps the ledger in memory
    # The edge's own model (registry name): an early-exit model runs its edge part up
    # to ``split`` and answers with exit ``split``; None = no local model.
    local_model: str | None = None
    split: int = 1
    policy: Literal["cloud-only", "local-only", "threshold", "entropy", "router"] = "cloud-only"
    confidence_threshold: float = 0.8  # threshold policy: offload below this
    # router policy: the learned router's .pt (default <models folder>/<local_model>.router.pt);
    # it offloads when its keep-local score is below confidence_threshold.
    router: str | None = None
    payload: Literal["jpeg", "raw", "tensor"] = "jpeg"  # tensor: the split activation
    # How a split activation is sent: per-frame uint8 codes (half float16's bytes, the
    # same top-1: pipeline/quantize.py) or float16.
    tensor_dtype: Literal["uint8", "float16"] = "uint8"
    motion_threshold: float | None = None  # changed-pixel fraction; None = no gate
    motion_mask: str | None = None  # image file or "x,y;x,y;x,y" polygons (0..1)
    status_interval_s: float = 1.0
    # Once the local model is loaded, freeze the objects alive then (pipeline/heap.py),
    # so a full garbage collection no longer stops the loop to rescan them.
    freeze_heap: bool = True
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    homeassistant: bool = False  # publish Home Assistant MQTT discovery + JSON state
    homeassistant_prefix: str = "homeassistant"
    # How much of an offloaded frame to send (docs/gompertz.md): "fixed" sends a full
    # JPEG at jpeg_quality (all-or-nothing); "gompertz" picks quality and resolution
    # per frame from a fitted calibration (default: pipeline/models/shipped/<model>.gompertz.json).
    quality_policy: Literal["fixed", "gompertz"] = "fixed"
    calibration: str | None = None
    target_accuracy: float | None = None  # None: maximise expected accuracy
    accuracy_slack: float = 0.005  # the cheapest choice within this of the best
    link_kbps: float | None = None  # uplink bandwidth until measured; None: unknown
    # Dynamic thresholds (policy "threshold" only; edge_node/thresholds.py): "fixed"
    # keeps confidence_threshold; "target-share" offloads the least confident
    # target_offload_share of recent frames; "latency-slo" moves that share (AIMD) to
    # keep offloaded frames' p95 latency under latency_slo_ms.
    threshold_mode: Literal["fixed", "target-share", "latency-slo"] = "fixed"
    target_offload_share: float = 0.3  # also latency-slo's starting share
    latency_slo_ms: float = 250.0
    # Neurosurgeon-style partition (edge_node/partition.py): "auto" picks, per frame,
    # where to cut local_model (send the image, an activation, or nothing) by predicted
    # latency; with policy cloud-only. device_slowdown emulates a slower edge device:
    # local computation holds its thread this many times as long.
    partition: Literal["off", "auto"] = "off"
    device_slowdown: float = 1.0

    def __post_init__(self) -> None:
        validate_level(self.edge_id, "edge.edge_id")
        self._check_quality_policy()
        _check_qos(self.qos, "edge.qos")
        _check_positive(
            {"edge.deadline_ms": self.deadline_ms, "edge.max_in_flight": self.max_in_flight}
        )
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("edge.jpeg_quality must be 1-100", key="edge.jpeg_quality")
        if self.policy != "cloud-only" and self.local_model is None:
            raise ConfigError(
                f"edge.policy {self.policy!r} needs edge.local_model", key="edge.policy"
            )
        if self.payload == "tensor" and self.local_model is None:
            raise ConfigError(
                "edge.payload 'tensor' sends the local model's activation: set "
                "edge.local_model to an early-exit model",
                key="edge.payload",
            )
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(
                "edge.confidence_threshold must be 0-1", key="edge.confidence_threshold"
            )
        if self.router is not None and not self.router.strip():
            raise ConfigError("edge.router must name a router file", key="edge.router")
        if self.motion_threshold is not None and not 0.0 <= self.motion_threshold <= 1.0:
            raise ConfigError("edge.motion_threshold must be 0-1", key="edge.motion_threshold")
        if self.split < 1:
            raise ConfigError("edge.split must be >= 1", key="edge.split")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError("edge.metrics_port must be 0-65535", key="edge.metrics_port")
        _check_positive({"edge.status_interval_s": self.status_interval_s})
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

    def _check_quality_policy(self) -> None:
        if self.quality_policy == "gompertz" and self.payload != "jpeg":
            raise ConfigError(
                "edge.quality_policy 'gompertz' chooses a JPEG quality: it needs "
                f"edge.payload = jpeg, not {self.payload!r}",
                key="edge.quality_policy",
            )
        if self.target_accuracy is not None and not 0.0 <= self.target_accuracy <= 1.0:
            raise ConfigError("edge.target_accuracy must be 0-1", key="edge.target_accuracy")
        if not 0.0 <= self.accuracy_slack <= 1.0:
            raise ConfigError("edge.accuracy_slack must be 0-1", key="edge.accuracy_slack")
        if self.link_kbps is not None:
            _check_positive({"edge.link_kbps": self.link_kbps})
        if self.threshold_mode != "fixed" and self.policy != "threshold":
            raise ConfigError(
                f"edge.threshold_mode {self.threshold_mode!r} moves the threshold policy's "
                f"threshold: set edge.policy = threshold, not {self.policy!r}",
                key="edge.threshold_mode",
            )
        if not 0.0 <= self.target_offload_share <= 1.0:
            raise ConfigError(
                "edge.target_offload_share must be 0-1", key="edge.target_offload_share"
            )
        _check_positive({"edge.latency_slo_ms": self.latency_slo_ms})
        if not 1.0 <= self.device_slowdown <= 1000.0:
            raise ConfigError("edge.device_slowdown must be 1-1000", key="edge.device_slowdown")
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
    qos: int = 1
    model: str = DEFAULT_MODEL
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # A batch is whatever is queued when the inference thread is free, up to
    # max_batch: under load the queue fills while the previous batch computes, and a
    # lone frame at low load goes at once. max_wait_ms > 0 holds a batch open that
    # long for company (worth it only where batch 1 costs as much as a full batch).
    max_batch: int = 32
    max_wait_ms: float = 0.0
    max_queue: int = 256
    status_interval_s: float = 1.0
    half: bool = False  # float16 inference (CUDA only)
    # Serve the model as a frozen TorchScript graph (pipeline/frozen.py): BatchNorm
    # folded, and no GIL held during the forward pass. False: eager PyTorch.
    frozen: bool = True
    # torch's intra-op threads in this worker's process (None: torch's default, one
    # per core). On a small CPU box, N workers with cores/N threads each beat one
    # worker with all of them: no thread waits at a barrier for a core another
    # process holds (docs/performance.md).
    threads: int | None = None
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
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    # On SIGINT/SIGTERM, finish queued frames for at most this long before answering
    # the rest ``shutting_down``.
    drain_timeout_s: float = 10.0
    # Load emulation's documented fallback: each batch's compute takes this many times
    # as long (the inference thread sleeps the difference), like a slower or shared
    # server. Real contention (extra edges, ``camoffload eval`` loads) is preferred.
    slowdown: float = 1.0

    def __post_init__(self) -> None:
        validate_level(self.worker_id, "worker.worker_id")
        if not 1.0 <= self.slowdown <= 1000.0:
            raise ConfigError("worker.slowdown must be 1-1000", key="worker.slowdown")
        validate_level(self.group, "worker.group")
        _check_qos(self.qos, "worker.qos")
        _check_positive(
            {
                "worker.max_batch": self.max_batch,
                "worker.max_queue": self.max_queue,
                "worker.status_interval_s": self.status_interval_s,
            }
        )
        if self.max_wait_ms < 0:
            raise ConfigError("worker.max_wait_ms must be >= 0", key="worker.max_wait_ms")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ConfigError("worker.threads must be 1-1024", key="worker.threads")
        if self.cpus is not None:
            parse_cpus(self.cpus)  # raises ConfigError on a malformed list
        if self.drain_timeout_s < 0:
            raise ConfigError("worker.drain_timeout_s must be >= 0", key="worker.drain_timeout_s")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError("worker.metrics_port must be 0-65535", key="worker.metrics_port")
        if self.half and self.device == "cpu":
            raise ConfigError(
                "worker.half needs worker.device = cuda or auto (float16 is slower on a CPU)",
                key="worker.half",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    prefix: str = DEFAULT_PREFIX
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def __post_init__(self) -> None:
        Topics(self.prefix)  # validates the prefix

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)


_SECTIONS: dict[str, type] = {"broker": BrokerConfig, "edge": EdgeConfig, "worker": WorkerConfig}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse_scalar(value: object, tp: Any, key: str) -> object:
    """Convert a TOML value or a string (env, CLI) to the declared field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        return _parse_scalar(value, members[0], key)
    if origin is Literal:
        allowed = [str(a) for a in typing.get_args(tp)]
        text = str(value)
        if text not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {text!r}", key=key)
        return text
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{key} must be true or false, got {value!r}", key=key)
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}", key=key)
        if isinstance(value, (int, float)) and (tp is float or isinstance(value, int)):
            return tp(value)
        try:
            return tp(str(value))
        except ValueError:
            raise ConfigError(
                f"{key} must be {'an integer' if tp is int else 'a number'}, got {value!r}",
                key=key,
            ) from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be a string", key=key)
        return str(value)
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module


def _build_section(cls: type, values: Mapping[str, object], section: str) -> object:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in [{section}]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})",
            key=f"{section}.{unknown[0]}",
        )
    kwargs = {
        name: _parse_scalar(value, hints[name], f"{section}.{name}")
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - names are checked above
        raise ConfigError(f"[{section}]: {exc}") from exc


def _set_key(layers: dict[str, dict[str, object]], dotted: str, value: object, origin: str) -> None:
    if dotted == "prefix":
        layers["_"]["prefix"] = value
        return
    section, _, key = dotted.partition(".")
    if section not in _SECTIONS or not key:
        raise ConfigError(
            f"{origin}: unknown setting {dotted!r} (sections: {', '.join(_SECTIONS)})", key=dotted
        )
    layers[section][key] = value


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Build the configuration from defaults, a TOML file, the environment and
    ``section.key=value`` overrides, validating every value and combination."""
    env = os.environ if env is None else env
    layers: dict[str, dict[str, object]] = {"_": {}, **{s: {} for s in _SECTIONS}}

    if path is not None:
        data = _read_toml(Path(path))
        for key, value in data.items():
            if isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    _set_key(layers, f"{key}.{sub_key}", sub_value, f"config file {path}")
            else:
                _set_key(layers, key, value, f"config file {path}")

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in (PASSWORD_ENV, "CAMOFFLOAD_CONFIG"):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest == "prefix":
            _set_key(layers, "prefix", value, f"environment {name}")
            continue
        section, _, key = rest.partition("_")
        if section in _SECTIONS:
            _set_key(layers, f"{section}.{key}", value, f"environment {name}")

    for item in overrides:
        dotted, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        _set_key(layers, dotted.strip(), value, "command line")

    if "password" in layers["broker"]:
        raise ConfigError(
            f"the broker password is a secret: set {PASSWORD_ENV} or broker.password_file "
            "instead of putting it in a file or on the command line",
            key="broker.password",
        )
    if PASSWORD_ENV in env:
        layers["broker"]["password"] = env[PASSWORD_ENV]

    prefix = layers["_"].get("prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str):
        raise ConfigError("prefix must be a string", key="prefix")
    return Config(
        prefix=prefix,
        broker=_build_section(BrokerConfig, layers["broker"], "broker"),  # type: ignore[arg-type]
        edge=_build_section(EdgeConfig, layers["edge"], "edge"),  # type: ignore[arg-type]
        worker=_build_section(WorkerConfig, layers["worker"], "worker"),  # type: ignore[arg-type]
    )
