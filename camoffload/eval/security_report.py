"""A security results folder (:mod:`camoffload.eval.security_suite`) as a report:
report.md with one table per data set and link, the reference's own check against
hand counts, and PNG plots; optionally the suite's section of docs/results.md.

Reads only the folder (suite.toml, meta.json, cells.jsonl), so ``camoffload eval
--report DIR`` re-renders it without rerunning anything.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camoffload.eval.report import load_results, write_section
from camoffload.eval.security_plots import render_security_plots
from camoffload.eval.specialize_report import render_specialize_plots, specialize_lines
from camoffload.eval.suite import Suite
from camoffload.security import COUNT_MIN_SCORE

__all__ = [
    "SecurityResults",
    "format_tables",
    "is_security_results",
    "load_security",
    "publish_security",
    "render_security_report",
]


@dataclass(frozen=True, slots=True)
class SecurityResults:
    folder: Path
    suite: Suite
    meta: dict[str, Any]
    cells: list[dict[str, Any]]


def is_security_results(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("analysis") in ("security", "specialize")


def load_security(folder: Path) -> SecurityResults:
    loaded = load_results(folder, with_frames=False)
    return SecurityResults(folder, loaded.suite, loaded.meta, loaded.cells)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


_HEADER = [
    "| strategy | person P | person R | person F1 | count MAE | vehicle R | offloaded "
    "| bytes/frame | p50 ms | p95 ms | sent p50 ms | sent p95 ms | decided once |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def _row(c: dict[str, Any]) -> str:
    if "skipped" in c:
        return f"| {c['strategy']} | skipped: {c['skipped']} |" + " |" * 11
    return (
        f"| {c['strategy']} | {_pct(c['person_precision'])} | {_pct(c['person_recall'])} "
        f"| {_pct(c['person_f1'])} | {c['count_mae']:.2f} | {_pct(c['vehicle_recall'])} "
        f"| {c['offload_share']:.0%} | {c['bytes_per_frame']:,.0f} "
        f"| {_ms(c['latency_p50_ms'])} | {_ms(c['latency_p95_ms'])} "
        f"| {_ms(c['sent_latency_p50_ms'])} | {_ms(c['sent_latency_p95_ms'])} "
        f"| {c['decided_once']}/{c['frames']} |"
    )


def format_tables(results: SecurityResults) -> list[str]:
    """One markdown table per (data set, link), with its reference line above it."""
    lines: list[str] = []
    groups = dict.fromkeys((c["data"], c["link"]) for c in results.cells)
    links = {link.name: link.profile for link in results.suite.links}
    for data, link in groups:
        info = results.meta.get("data", {}).get(data, {})
        lines += [
            f"**{data}** ({info.get('source', '?')}, {info.get('frames', '?')} frames), "
            f"link **{link}** ({links.get(link, '?')})",
            "",
            *_HEADER,
            *(_row(c) for c in results.cells if (c["data"], c["link"]) == (data, link)),
            "",
        ]
    return lines


def _reference_notes(results: SecurityResults) -> list[str]:
    lines = []
    given = results.meta.get("hand_counts_given", False)
    for name, info in results.meta.get("data", {}).items():
        text = (
            f"- **{name}**: {info['cloud_model']} on each full-quality frame (score >= "
            f"{COUNT_MIN_SCORE}) sees people in {info['frames_with_people']} of "
            f"{info['frames']} frames ({info['mean_people']:.2f} per frame) and vehicles in "
            f"{info['frames_with_vehicles']}."
        )
        hand = info.get("hand")
        if hand is not None:
            text += (
                f" Against people counted by hand ({hand['frames']} frames): mean absolute "
                f"count error {hand['count_mae']:.2f}, presence agreement "
                f"{hand['presence_agreement']:.1%}."
            )
        elif given:
            text += " The hand counts cover none of its frames."
        else:
            text += (
                " No hand counts were given (`--hand-counts docs/data/"
                "vtest_people_by_hand.csv`), so the reference itself is unchecked."
            )
        lines.append(text)
    return lines


def _headline(results: SecurityResults) -> list[str]:
    """Each cascade against cloud-only on the same data and link: bytes saved, frames
    kept on the camera, F1 beside it (what DDS and Reducto report)."""
    policies = {s.name: s.settings.get("policy") for s in results.suite.strategies}
    measured = [c for c in results.cells if "skipped" not in c]
    out = []
    for base in (c for c in measured if policies.get(c["strategy"]) == "cloud-only"):
        for c in measured:
            same = (c["data"], c["link"]) == (base["data"], base["link"])
            if not same or policies.get(c["strategy"]) != "threshold":
                continue
            saved = (
                1 - c["bytes_per_frame"] / base["bytes_per_frame"]
                if base["bytes_per_frame"]
                else 0.0
            )
            out.append(
                f"{c['data']}/{c['link']}: {c['strategy']} sends {saved:.0%} fewer bytes than "
                f"cloud-only and keeps {1 - c['offload_share']:.0%} of frames on the camera, "
                f"person F1 {_pct(c['person_f1'])} vs {_pct(base['person_f1'])}, count "
                f"error {c['count_mae']:.2f} vs {base['count_mae']:.2f} people per frame."
            )
    return out


def _body(results: SecurityResults, image_prefix: str, plots: list[tuple[str, str]]) -> list[str]:
    suite, meta = results.suite, results.meta
    lines = [
        f"```\n{meta.get('command') or 'camoffload eval --suite ' + suite.name}\n```",
        "",
        f"Run {meta.get('started', '?')} on {meta.get('machine', '?')}, Python "
        f"{meta.get('python', '?')}; frames offered at {suite.run.rate:g} frames/s, "
        f"deadline {suite.run.deadline_ms:g} ms, at most {suite.run.frames} frames per "
        f"cell; {len(results.cells)} cells in {meta.get('wall_s', '?')} s"
        + ("" if meta.get("complete", True) else " (stopped early: partial results)")
        + ".",
        "",
    ]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += ["Reference:", "", *_reference_notes(results), ""]
    if suite.paper:
        lines += [f"**Papers:** {suite.paper.strip()}", ""]
    headline = _headline(results)
    if headline:
        lines += ["**Ours:**", "", *(f"- {h}" for h in headline), ""]
    lines += format_tables(results)
    lines += specialize_lines(meta, results.cells)
    for file, caption in plots:
        lines += [f"![{caption}]({image_prefix}{file})", ""]
    return lines


def _plots(results: SecurityResults, folder: Path) -> list[tuple[str, str]]:
    plots = render_security_plots(results.cells, folder)
    if results.meta.get("analysis") == "specialize":
        plots += render_specialize_plots(results.cells, folder)
    return plots


def render_security_report(folder: Path) -> Path:
    """Write ``folder/report.md`` and ``folder/plots/*.png``; returns the report path."""
    results = load_security(folder)
    plots = _plots(results, folder / "plots")
    lines = [f"# {results.suite.title}", "", *_body(results, "plots/", plots)]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def publish_security(folder: Path, results_md: Path) -> Path:
    """Replace the suite's section of ``results_md``; plots to ``img/results/SUITE/``."""
    results = load_security(folder)
    name = results.suite.name
    images = results_md.parent / "img" / "results" / name
    if images.exists():
        shutil.rmtree(images)
    plots = _plots(results, images)
    body = _body(results, f"img/results/{name}/", plots)
    write_section(results_md, name, results.suite.title, body)
    return images
