"""deploy/grafana/camoffload.json against the metrics the code really exports.

The metric names, labels and label values come from scraping a real ``EdgeMetrics`` and
``WorkerMetrics`` (their registries, no HTTP server), so a metric renamed in the code, a
label typo or a decision that no longer exists fails here instead of leaving a panel
silently empty. ``query_problems`` is the check; the last tests feed it bad queries to
show that it can fail.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud_worker.metrics import WorkerMetrics
from edge_node.metrics import EdgeMetrics
from pipeline.protocol import Decision, ErrorCode

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "camoffload.json"
PREFIX = "camoffload_"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Labels whose values come from each process's configuration (edge_id, worker_id, model):
# any value is fine there, a dashboard selects them through its variables.
INSTANCE_LABELS = frozenset({"edge", "worker", "model"})
# Which variable filters which metrics: camoffload_edge_* by $edge, camoffload_worker_* by $worker.
SIDES = {"edge": f"{PREFIX}edge_", "worker": f"{PREFIX}worker_"}

Catalog = dict[str, dict[str, set[str]]]  # exported sample name -> label name -> values


@dataclass(frozen=True)
class Exported:
    samples: Catalog
    # Family name -> the sample names Prometheus stores for it (counter: _total;
    # histogram: _bucket, _sum, _count; gauge: the name itself).
    families: dict[str, frozenset[str]]


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _scrape(registry: CollectorRegistry, exported: Exported) -> None:
    for family in registry.collect():
        if family.name.startswith(PREFIX):
            suffixes = _SUFFIXES[family.type]
            exported.families[family.name] = frozenset(family.name + s for s in suffixes)
    # What Prometheus reads is the text exposition, so the names and labels come from it.
    for parsed in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in parsed.samples:
            labels = exported.samples.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)


@pytest.fixture(scope="module")
def exported() -> Exported:
    edge = EdgeMetrics("cam1")  # nothing serves until .serve(); close() anyway
    worker = WorkerMetrics("w1", "model1")
    try:
        # Labelled children appear only once used: every outcome and error code, once.
        worker.request("ok")
        for code in ErrorCode:
            worker.error(code)
        found = Exported(samples={}, families={})
        _scrape(edge.registry, found)
        _scrape(worker.registry, found)
    finally:
        edge.close()
        worker.close()
    missing = [n for names in found.families.values() for n in names if n not in found.samples]
    assert missing == [], "a family without samples: exercise it above"
    return found


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _panels(dashboard) if p["type"] != "row"]


def _exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _query_panels(dashboard):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


# --- the check -------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC = re.compile(rf"(?<![\w:$]){PREFIX}[A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"(?P<metric>[A-Za-z_:][A-Za-z0-9_:]*)?\s*\{(?P<body>[^}]*)\}")
_MATCHER = re.compile(
    r'\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"'
    r"\s*(?:,|$)"
)
_GROUPING = re.compile(
    r"\b(?P<keyword>by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^()]*)\)"
)


def _balanced(text: str, start: int, step: int) -> int | None:
    """The index of the parenthesis that closes (step 1) or opens (step -1) the one at
    ``start``."""
    depth = 0
    i = start
    while 0 <= i < len(text):
        depth += {"(": step, ")": -step}.get(text[i], 0)
        if depth == 0:
            return i
        i += step
    return None


def _grouped(text: str, match: re.Match[str]) -> str | None:
    """What ``by (...)`` / ``without (...)`` aggregates: the parenthesised argument after
    the clause (``sum by (x) (expr)``) or before it (``sum(expr) by (x)``)."""
    after = match.end()
    while after < len(text) and text[after].isspace():
        after += 1
    if text[after : after + 1] == "(":
        end = _balanced(text, after, 1)
        return None if end is None else text[after : end + 1]
    before = match.start() - 1
    while before >= 0 and text[before].isspace():
        before -= 1
    if text[before : before + 1] == ")":
        start = _balanced(text, before, -1)
        return None if start is None else text[start : before + 1]
    return None


def _value_problem(metric: str, label: str, op: str, value: str, known: set[str]) -> str | None:
    if "$" in value or label in INSTANCE_LABELS:
        return None  # a dashboard variable, or a value set by configuration
    if op in ("=", "!="):
        if value not in known:
            return (
                f"{metric}: {label}{op}{value!r} matches no value the code exports {sorted(known)}"
            )
        return None
    try:
        pattern = re.compile(value)
    except re.error as e:
        return f"{metric}: {label}{op}{value!r} is not a regular expression ({e})"
    if not any(pattern.fullmatch(v) for v in known):
        return f"{metric}: {label}{op}{value!r} matches no value the code exports {sorted(known)}"
    return None


def query_problems(expr: str, samples: Catalog) -> list[str]:
    """What in one PromQL expression does not exist in ``samples``: metric names with the
    project's prefix, the labels of their matchers and groupings, and the values of
    matchers on labels the code fixes (decision, outcome, code); [] when all is real."""
    problems: list[str] = []
    bare = _STRING.sub('""', expr)  # names and keywords, no label values
    if bare.count("(") != bare.count(")") or bare.count("{") != bare.count("}"):
        problems.append(f"unbalanced brackets in {expr!r}")
    metrics = _METRIC.findall(bare)
    problems += [f"unknown metric {name}" for name in dict.fromkeys(metrics) if name not in samples]

    for selector in _SELECTOR.finditer(expr):
        metric, body = selector["metric"], selector["body"]
        if metric is None or not metric.startswith(PREFIX):
            problems.append(f"a selector without a {PREFIX}* metric name: {selector[0]!r}")
            continue
        if metric not in samples:
            continue  # reported above
        matchers = list(_MATCHER.finditer(body))
        if "".join(m[0] for m in matchers).strip() != body.strip():
            problems.append(f"{metric}: cannot read the matchers {{{body}}}")
        for m in matchers:
            label = m["label"]
            if label not in samples[metric]:
                problems.append(
                    f"{metric} has no label {label!r} (it has {sorted(samples[metric])})"
                )
                continue
            issue = _value_problem(metric, label, m["op"], m["value"], samples[metric][label])
            if issue is not None:
                problems.append(issue)

    for grouping in _GROUPING.finditer(bare):
        keyword = grouping["keyword"]
        labels = [label.strip() for label in grouping["labels"].split(",") if label.strip()]
        if keyword in ("by", "without"):
            scope = _grouped(bare, grouping)
            if scope is None:
                problems.append(f"cannot find what {grouping[0]!r} aggregates")
                continue
            inside = [n for n in dict.fromkeys(_METRIC.findall(scope)) if n in samples]
            problems += [
                f"{keyword} ({label}): {name} has no label {label!r}"
                for label in labels
                for name in inside
                if label not in samples[name]
            ]
        else:  # on / ignoring / group_*: the label must exist on one side at least
            known = [n for n in metrics if n in samples]
            problems += [
                f"{keyword} ({label}): no metric in the query has it"
                for label in labels
                if known and not any(label in samples[n] for n in known)
            ]
    return problems


# --- the dashboard ---------------------------------------------------------------------


def test_the_file_is_a_grafana_dashboard_in_two_space_json() -> None:
    text = DASHBOARD.read_text(encoding="utf-8")
    dashboard = _dashboard()
    assert text == json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
    assert dashboard["uid"] == "camoffload"
    assert dashboard["title"] == "camoffload: edges and workers"
    assert dashboard["schemaVersion"] == 39


def test_every_panel_has_an_id_a_title_and_the_datasource_variable() -> None:
    panels = _panels(_dashboard())
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    titles = [p.get("title") for p in panels]
    assert all(isinstance(t, str) and t.strip() for t in titles)
    assert len(set(titles)) == len(titles), "titles must tell panels apart"
    for panel in _query_panels(_dashboard()):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in _panels(_dashboard()):
        pos = panel["gridPos"]
        assert min(pos["w"], pos["h"]) > 0, panel["title"]
        assert min(pos["x"], pos["y"]) >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_variables_pick_the_datasource_edges_and_workers(exported: Exported) -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in SIDES:
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["datasource"] == DATASOURCE
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        found = re.fullmatch(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", query)
        assert found is not None, query
        metric, label = found.groups()
        assert label == name
        assert metric.startswith(SIDES[name])
        assert label in exported.samples.get(metric, {}), query


def test_every_query_names_real_metrics_labels_and_values(exported: Exported) -> None:
    problems = [
        f"{title}: {problem}"
        for title, expr in _exprs(_dashboard())
        for problem in query_problems(expr, exported.samples)
    ]
    assert problems == []


def test_every_selector_follows_the_variable_of_its_side() -> None:
    """A panel that ignored $edge or $worker would show every edge or worker whatever the
    picker says."""
    unfiltered = []
    for title, expr in _exprs(_dashboard()):
        for selector in _SELECTOR.finditer(expr):
            for variable, prefix in SIDES.items():
                wanted = f'{variable}=~"${variable}"'
                if (selector["metric"] or "").startswith(prefix) and wanted not in selector[0]:
                    unfiltered.append(f"{title}: {selector[0]}")
        named = Counter(_METRIC.findall(_STRING.sub('""', expr)))
        selected = Counter(s["metric"] for s in _SELECTOR.finditer(expr))
        unfiltered += [f"{title}: {n} without a selector" for n in named if named[n] > selected[n]]
    assert unfiltered == []


def test_the_dashboard_shows_every_exported_metric_of_edges_and_workers(
    exported: Exported,
) -> None:
    used = {
        name
        for _, expr in _exprs(_dashboard())
        for name in _METRIC.findall(_STRING.sub('""', expr))
    }
    for prefix in SIDES.values():
        assert any(name.startswith(prefix) for name in used), f"no panel for {prefix}*"
    unshown = sorted(family for family, names in exported.families.items() if not names & used)
    assert unshown == [], "metrics the code exports that no panel shows"


# --- the check can fail ----------------------------------------------------------------


def test_the_check_accepts_a_real_query(exported: Exported) -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, edge) "
        '(rate(camoffload_edge_rtt_seconds_bucket{edge=~"$edge"}[5m])))'
        ' + sum(rate(camoffload_edge_frames_total{decision=~"cloud|local-after-.*"}[1m])) by (edge)'
    )
    assert query_problems(expr, exported.samples) == []
    assert {d.value for d in Decision} == exported.samples["camoffload_edge_frames_total"][
        "decision"
    ]


@pytest.mark.parametrize(
    ("expr", "reported"),
    [
        (
            "rate(camoffload_edge_nonexistent_total[1m])",
            "unknown metric camoffload_edge_nonexistent_total",
        ),
        ("rate(camoffload_edge_rtt_seconds[1m])", "unknown metric camoffload_edge_rtt_seconds"),
        (
            "camoffload_worker_queue_depth_total",
            "unknown metric camoffload_worker_queue_depth_total",
        ),
        ('camoffload_edge_in_flight{worker="w1"}', "has no label 'worker'"),
        ("sum by (worker) (rate(camoffload_edge_captured_total[1m]))", "has no label 'worker'"),
        ("sum(rate(camoffload_worker_errors_total[1m])) by (outcome)", "has no label 'outcome'"),
        ("sum by (le) (camoffload_worker_queue_depth)", "has no label 'le'"),
        ('camoffload_edge_frames_total{decision="offloaded"}', "matches no value"),
        ('camoffload_worker_requests_total{outcome=~"timeout|lost"}', "matches no value"),
        ('camoffload_worker_errors_total{code="unknown-model"}', "matches no value"),
        ('camoffload_edge_captured_total{edge=~"$edge"', "unbalanced"),
    ],
)
def test_the_check_reports_what_does_not_exist(
    exported: Exported, expr: str, reported: str
) -> None:
    problems = query_problems(expr, exported.samples)
    assert any(reported in p for p in problems), problems
