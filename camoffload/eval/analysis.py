"""What a suite's cells add up to: the seed paper's figure next to ours.

Each suite names one analysis:

* ``crossover`` (seed study): per link and server load, the strategy with the best
  timely accuracy (correct within the latency objective; ties go to the lower p95);
  the crossover is shown when the winner changes with load or link.
* ``partition`` (Neurosurgeon): per condition, the fastest partition point (all local,
  each split, all cloud) by median latency, and its speed-up over cloud-only.
* ``coverage`` (hybrid models): accuracy against the share answered locally.
* ``savings`` (Gompertz): every strategy against the first one (the baseline): bytes,
  median latency and accuracy.

Cells are plain dicts as stored in cells.jsonl, so a report can be re-rendered from a
results folder without rerunning anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "analyse", "condition_of"]

Cells = Sequence[dict[str, Any]]


@dataclass(slots=True)
class Finding:
    """A headline (markdown lines), an optional table, and a yes/no verdict."""

    headline: list[str] = field(default_factory=list)
    table: list[str] = field(default_factory=list)
    verdict: bool | None = None


def condition_of(cell: dict[str, Any], *, with_data: bool) -> str:
    parts = [cell["load"], cell["link"]]
    if with_data:
        parts.insert(0, cell["data"])
    return " / ".join(parts)


def _groups(cells: Cells) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["data"], cell["load"], cell["link"]), []).append(cell)
    return groups


def analyse(kind: str, cells: Cells, *, slo_ms: float) -> Finding:
    if kind == "crossover":
        return _crossover(cells, slo_ms)
    if kind == "partition":
        return _partition(cells)
    if kind == "coverage":
        return _coverage(cells)
    if kind == "savings":
        return _savings(cells)
    return Finding()


def _winner(group: list[dict[str, Any]]) -> dict[str, Any]:
    return max(group, key=lambda c: (round(c["timely_accuracy"], 4), -c["latency_p95_ms"]))


def _changes(where: str, along: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    """ "<where> the winner goes a (x) → b (y)" when the winners along one axis differ."""
    steps = [(key, cell["strategy"]) for key, cell in along if cell is not None]
    if len({name for _, name in steps}) < 2:
        return []
    return [f"{where} the winner goes " + " → ".join(f"{name} ({key})" for key, name in steps)]


def _crossover(cells: Cells, slo_ms: float) -> Finding:
    finding = Finding()
    groups = _groups(cells)
    winners = {key: _winner(group) for key, group in groups.items()}
    datas = sorted({k[0] for k in groups})
    loads = list(dict.fromkeys(k[1] for k in groups))
    links = list(dict.fromkeys(k[2] for k in groups))
    changes: list[str] = []
    for data in datas:
        finding.table += [
            f"Winner by timely accuracy (correct within {slo_ms:.0f} ms), data {data}:",
            "",
            "| link \\ server | " + " | ".join(loads) + " |",
            "|---|" + "---|" * len(loads),
        ]
        for link in links:
            row = []
            for load in loads:
                w = winners.get((data, load, link))
                row.append(
                    "—"
                    if w is None
                    else f"**{w['strategy']}** ({w['timely_accuracy']:.1%}, "
                    f"p95 {w['latency_p95_ms']:.0f} ms)"
                )
            finding.table.append(f"| {link} | " + " | ".join(row) + " |")
            along = [(load, winners.get((data, load, link))) for load in loads]
            changes += _changes(f"on the {link} link", along)
        finding.table.append("")
        for load in loads:
            along = [(link, winners.get((data, load, link))) for link in links]
            changes += _changes(f"with the {load} server", along)
    finding.verdict = bool(changes)
    if changes:
        finding.headline.append("**Crossover shown:** " + "; ".join(changes) + ".")
    else:
        only = {w["strategy"] for w in winners.values()}
        finding.headline.append(
            f"**No crossover:** {', '.join(sorted(only))} wins under every load and link "
            "measured here."
        )
    return finding


def _partition(cells: Cells) -> Finding:
    """The online planner ("partition") against cloud-only, local-only and the best
    fixed point measured (the oracle); without a planner, the oracle stands in."""
    finding = Finding()
    finding.table += [
        "| condition | best fixed point | its p50 ms | partition p50 ms | cloud-only p50 ms "
        "| local-only p50 ms | vs cloud-only | vs local-only | vs best fixed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    vs_cloud: list[float] = []
    vs_local: list[float] = []
    vs_best: list[float] = []
    planner_seen = False
    fixed_winners: set[str] = set()
    for (data, load, link), group in _groups(cells).items():
        by = {c["strategy"]: c for c in group}
        fixed = [c for c in group if c["strategy"] != "partition"]
        best = min(fixed, key=lambda c: c["latency_p50_ms"])
        fixed_winners.add(best["strategy"])
        planner = by.get("partition")
        planner_seen = planner_seen or planner is not None
        chosen = planner or best
        p50 = chosen["latency_p50_ms"]
        cloud, local = by.get("cloud-only"), by.get("local-only")
        ratios = []
        for other, bucket in ((cloud, vs_cloud), (local, vs_local), (best, vs_best)):
            if other is None or p50 <= 0:
                ratios.append("—")
                continue
            ratio = other["latency_p50_ms"] / p50
            bucket.append(ratio)
            ratios.append(f"{ratio:.2f}x")
        finding.table.append(
            f"| {data} / {load} / {link} | {best['strategy']} | {best['latency_p50_ms']:.1f} | "
            + (f"{planner['latency_p50_ms']:.1f}" if planner else "—")
            + " | "
            + (f"{cloud['latency_p50_ms']:.1f}" if cloud else "—")
            + " | "
            + (f"{local['latency_p50_ms']:.1f}" if local else "—")
            + " | "
            + " | ".join(ratios)
            + " |"
        )
    who = "The online partition planner" if planner_seen else "The best fixed point"
    if vs_cloud:
        mean = sum(vs_cloud) / len(vs_cloud)
        text = (
            f"**{who}:** {mean:.2f}x average ({max(vs_cloud):.2f}x max) lower median "
            f"latency than cloud-only over {len(vs_cloud)} conditions (paper: 3.1x "
            "average, 40.7x max)"
        )
        if vs_local:
            text += (
                f"; {sum(vs_local) / len(vs_local):.2f}x average against local-only "
                f"({min(vs_local):.2f}x at worst)"
            )
        if planner_seen and vs_best:
            text += (
                f"; {sum(vs_best) / len(vs_best):.2f}x of the best fixed point's speed on "
                f"average (1.00x would match an oracle that knew each condition)"
            )
        finding.headline.append(text + ".")
        finding.verdict = mean > 1.0
    if fixed_winners == {"local-only"}:
        finding.headline.append(
            "All on the edge is the fastest fixed point everywhere: the speed-up over "
            "cloud-only is then local-only's, and it depends on how slow the edge device "
            "is. Where the edge is as fast as the server (one shared CPU), any network "
            "makes offloading slower; the paper's phones were several times slower than "
            "its server."
        )
    return finding


def _coverage(cells: Cells) -> Finding:
    finding = Finding()
    finding.table += [
        "| condition | strategy | answered locally | accuracy | timely accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    for (data, load, link), group in _groups(cells).items():
        for c in sorted(group, key=lambda c: -c["local_share"]):
            finding.table.append(
                f"| {data} / {load} / {link} | {c['strategy']} | {c['local_share']:.1%} | "
                f"{c['accuracy']:.2%} | {c['timely_accuracy']:.2%} |"
            )
    return finding


def _savings(cells: Cells) -> Finding:
    finding = Finding()
    finding.table += [
        "| condition | strategy vs baseline | bytes/frame | fewer bytes | sent p50 ms | "
        "sent p50 change | accuracy | accuracy change |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for (data, load, link), group in _groups(cells).items():
        base = group[0]
        for c in group[1:]:
            b0, b1 = base["bytes_per_frame"], c["bytes_per_frame"]
            fewer = 1 - b1 / b0 if b0 else 0.0
            # The latency of the frames each strategy sent: the cost of offloading.
            l0, l1 = base.get("sent_latency_p50_ms"), c.get("sent_latency_p50_ms")
            faster = l1 / l0 - 1 if l0 and l1 is not None else None
            gain = c["accuracy"] - base["accuracy"]
            verdicts.append(fewer >= 0.5 and (faster is None or faster < 0) and gain >= 0)
            finding.table.append(
                f"| {data} / {load} / {link} | {c['strategy']} vs {base['strategy']} | "
                f"{b1:.0f} | {fewer:.1%} | "
                + ("—" if l1 is None else f"{l1:.1f}")
                + " | "
                + ("—" if faster is None else f"{faster:+.1%}")
                + f" | {c['accuracy']:.2%} | {gain * 100:+.2f} pt |"
            )
    if verdicts:
        finding.verdict = all(verdicts)
        finding.headline.append(
            "**Fewer bytes (>= 50%), a lower median latency of the frames sent and no "
            "less accuracy than the baseline in every condition:** "
            + ("yes." if finding.verdict else "no; see the table.")
        )
    return finding
