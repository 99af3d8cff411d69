"""Experiment suites: a TOML matrix of data x strategies x links x server loads.

A suite file::

    name = "seed-study"
    title = "Local, cloud or early exit, as server load and the link change"
    analysis = "crossover"            # crossover | partition | coverage | savings | security
                                      # | specialize
    paper = "Seed study: a busy server and slow networks change which strategy wins"

    [run]                             # defaults for every cell
    frames = 400                      # frames replayed per cell (the same ones each time)
    rate = 40                         # frames/s offered by the measured edge
    pacing = "camera"                 # or "closed": one frame at a time
    deadline_ms = 500
    slo_ms = 250                      # the latency a strategy must hold to "win"
    workers = 1

    [quick]                           # --quick overrides any [run] key
    frames = 120

    [data.fmnist]
    source = "fashion-mnist:test"
    cloud_model = "fmnist_exit_resnet"
    local_model = "fmnist_exit_resnet"
    reference = "labels"              # or "cloud": the cloud model's answer on the frame

    [strategies.early-exit]           # edge.* settings of the measured edge
    policy = "threshold"
    confidence_threshold = 0.8
    # coverage = 0.9                  # instead of a threshold: answer 90% locally

    [links.slow]
    profile = "rate=2mbit,delay=40ms" # a preset name or a LinkProfile spec; "direct"

    [loads.busy]
    edges = 4                         # background edges publishing to the same workers
    rate = 150                        # frames/s each
    slowdown = 1.0                    # worker.slowdown (the documented fallback)

Unknown keys are errors (a typo must not silently change an experiment).
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError

__all__ = [
    "ANALYSES",
    "Cell",
    "DataSpec",
    "LinkSpec",
    "LoadSpec",
    "RunSettings",
    "Strategy",
    "Suite",
    "builtin_suites",
    "load_suite",
]

# "security": detection strategies against a reference detector, each cell its own
# replay (camoffload/eval/security_suite.py), not the classification runner.
# "specialize": the same replays, on the second half of each video, after teaching a
# camera's specialized model the first half (camoffload/eval/specialize_cells.py).
Analysis = Literal[
    "crossover", "partition", "coverage", "savings", "table", "security", "specialize"
]
ANALYSES: tuple[Analysis, ...] = (
    "crossover",
    "partition",
    "coverage",
    "savings",
    "table",
    "security",
    "specialize",
)
Reference = Literal["labels", "cloud"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    frames: int = 400
    rate: float = 40.0
    deadline_ms: float = 500.0
    slo_ms: float = 250.0
    workers: int = 1
    max_batch: int = 16
    max_in_flight: int = 8
    warmup_s: float = 1.0  # background load runs this long before a cell starts
    # camera: a frame every 1/rate s, ready or not (latency under load, with drops and
    # local fallbacks). closed: one frame at a time, the next once the last is decided
    # (per-frame latency without self-inflicted queueing, as Neurosurgeon measures it).
    pacing: str = "camera"
    # edge.* settings of the measured edge in every cell (a strategy's own win), e.g.
    # {device_slowdown = 10} for an edge device ten times slower than this machine.
    edge: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pacing not in ("camera", "closed"):
            raise ConfigError("run.pacing must be camera or closed", key="run.pacing")
        for key in ("frames", "rate", "deadline_ms", "slo_ms", "workers", "max_batch"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"run.{key} must be > 0", key=f"run.{key}")
        if self.max_in_flight <= 0:
            raise ConfigError("run.max_in_flight must be > 0", key="run.max_in_flight")
        if self.warmup_s < 0:
            raise ConfigError("run.warmup_s must be >= 0", key="run.warmup_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    name: str
    source: str
    cloud_model: str
    local_model: str | None = None
    split: int = 1
    reference: Reference = "labels"


@dataclass(frozen=True, slots=True, kw_only=True)
class Strategy:
    """One way of deciding, as the measured edge's settings (``edge.*`` keys)."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Answer this share locally: the runner turns it into a confidence threshold from
    # the local model's confidences on the cell's own frames.
    coverage: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    name: str
    profile: str = "direct"  # "direct" (no proxy), a preset name, or a LinkProfile spec

    @property
    def direct(self) -> bool:
        return self.profile == "direct"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    name: str
    edges: int = 0
    rate: float = 0.0  # frames/s per background edge
    slowdown: float = 1.0

    @property
    def idle(self) -> bool:
        return self.edges == 0 and self.slowdown == 1.0


@dataclass(frozen=True, slots=True)
class Cell:
    data: DataSpec
    load: LoadSpec
    link: LinkSpec
    strategy: Strategy

    @property
    def key(self) -> str:
        return f"{self.data.name}/{self.load.name}/{self.link.name}/{self.strategy.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    name: str
    title: str
    analysis: Analysis
    paper: str
    description: str
    run: RunSettings
    data: tuple[DataSpec, ...]
    strategies: tuple[Strategy, ...]
    links: tuple[LinkSpec, ...]
    loads: tuple[LoadSpec, ...]
    source_text: str  # the TOML as read, kept with the results
    quick: bool = False  # [quick] applied

    def cells(self) -> Iterator[Cell]:
        """Grouped so processes are reused: workers per (data, load), a proxy per link."""
        for data, load, link, strategy in itertools.product(
            self.data, self.loads, self.links, self.strategies
        ):
            yield Cell(data, load, link, strategy)

    @property
    def size(self) -> int:
        return len(self.data) * len(self.loads) * len(self.links) * len(self.strategies)


_TOP_KEYS = {"name", "title", "analysis", "paper", "description", "run", "quick"}
_TABLES = ("data", "strategies", "links", "loads")


def load_suite(name_or_path: str, *, quick: bool = False) -> Suite:
    """A built-in suite by name (``seed-study``) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read suite {path}: {exc}") from exc
    else:
        suites = builtin_suites()
        if name_or_path not in suites:
            raise ConfigError(
                f"unknown suite {name_or_path!r}; built in: {', '.join(sorted(suites))} "
                "(or give a .toml file)"
            )
        text = suites[name_or_path]
    return parse_suite(text, quick=quick, origin=str(name_or_path))


def builtin_suites() -> dict[str, str]:
    folder = resources.files("camoffload.eval") / "suites"
    return {
        entry.name.removesuffix(".toml"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def parse_suite(text: str, *, quick: bool = False, origin: str = "<suite>") -> Suite:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"suite {origin}: not valid TOML: {exc}") from exc
    unknown = set(raw) - _TOP_KEYS - set(_TABLES)
    if unknown:
        raise ConfigError(f"suite {origin}: unknown keys {sorted(unknown)}")
    name = _text(raw, "name", origin)
    analysis = raw.get("analysis", "table")
    if analysis not in ANALYSES:
        raise ConfigError(f"suite {origin}: analysis must be one of {', '.join(ANALYSES)}")
    run_values = dict(_table(raw, "run", origin))
    if quick:
        run_values.update(_table(raw, "quick", origin))
    run = _build(RunSettings, run_values, f"suite {origin} [run]")
    tables = {key: _table(raw, key, origin) for key in _TABLES}
    for key in _TABLES:
        if not tables[key]:
            raise ConfigError(f"suite {origin}: [{key}.NAME] needs at least one entry")
    strategies = tuple(_strategy(n, dict(v), origin) for n, v in tables["strategies"].items())
    suite = Suite(
        name=name,
        title=str(raw.get("title", name)),
        analysis=analysis,
        paper=str(raw.get("paper", "")),
        description=str(raw.get("description", "")),
        run=run,
        data=tuple(
            _build(DataSpec, {"name": n, **_entry(v, origin, n)}, f"suite {origin} [data.{n}]")
            for n, v in tables["data"].items()
        ),
        strategies=strategies,
        links=tuple(
            _build(LinkSpec, {"name": n, **_entry(v, origin, n)}, f"suite {origin} [links.{n}]")
            for n, v in tables["links"].items()
        ),
        loads=tuple(
            _build(LoadSpec, {"name": n, **_entry(v, origin, n)}, f"suite {origin} [loads.{n}]")
            for n, v in tables["loads"].items()
        ),
        source_text=text,
        quick=quick,
    )
    for data in suite.data:
        if data.reference not in ("labels", "cloud"):
            raise ConfigError(f"suite {origin} [data.{data.name}]: reference: labels or cloud")
    for load in suite.loads:
        if load.edges < 0 or load.rate < 0 or load.slowdown < 1:
            raise ConfigError(
                f"suite {origin} [loads.{load.name}]: edges, rate >= 0 and slowdown >= 1"
            )
        if load.edges and not load.rate:
            raise ConfigError(f"suite {origin} [loads.{load.name}]: edges need a rate")
    return suite


def _strategy(name: str, values: dict[str, Any], origin: str) -> Strategy:
    coverage = values.pop("coverage", None)
    if coverage is not None:
        if not 0.0 <= float(coverage) <= 1.0:
            raise ConfigError(f"suite {origin} [strategies.{name}]: coverage must be 0-1")
        if "confidence_threshold" in values:
            raise ConfigError(
                f"suite {origin} [strategies.{name}]: coverage or confidence_threshold, not both"
            )
        values.setdefault("policy", "threshold")
        coverage = float(coverage)
    return Strategy(name=name, settings=values, coverage=coverage)


def _text(raw: Mapping[str, Any], key: str, origin: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"suite {origin}: {key!r} must be a non-empty string")
    return value


def _table(raw: Mapping[str, Any], key: str, origin: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"suite {origin}: [{key}] must be a table")
    return value


def _entry(value: Any, origin: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"suite {origin}: {name!r} must be a table")
    return value


def _build(cls: type[Any], values: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        if value is None:
            continue
        # Annotations are strings here (postponed evaluation); numbers must be numbers.
        numeric = f.type in ("int", "float")
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}: {f.name} must be a number, not {value!r}")
        if f.type == "str" and not isinstance(value, str):
            raise ConfigError(f"{where}: {f.name} must be a string, not {value!r}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
