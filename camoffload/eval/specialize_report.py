"""What the ``specialize`` suite adds to the security report: the model each data set
taught, its exits on the held-out span and on the second half, where each strategy's
frames were answered, the edge's CPU, and a picture of offloading against accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["render_specialize_plots", "specialize_lines"]

Cells = Sequence[dict[str, Any]]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _model_lines(name: str, taught: dict[str, Any]) -> list[str]:
    first, end = taught["train_frames"]
    held_first, held_end = taught["held_out_frames"]
    eval_first, eval_end = taught["evaluated_frames"]
    lines = [
        f"**{name}**: taught frames {first}-{end - 1}, thresholds from the held-out frames "
        f"{held_first}-{held_end - 1}, measured on frames {eval_first}-{eval_end - 1}; "
        f"{taught['params']:,} parameters, {taught['train_wall_s']} s to read, teach and "
        f"calibrate (`{taught['manifest']}`).",
        "",
        "| exit | threshold | held-out answered | 2nd half answered | its cell recall there "
        "| its count MAE there | alone: presence F1 | alone: cell F1 | alone: cell recall "
        "| alone: count MAE | ms/frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    second = taught.get("second_half_exits", [])
    for i, held in enumerate(taught["held_out_exits"]):
        alone = second[i] if i < len(second) else {}
        threshold = held["threshold"]
        answered = alone.get("answered_share")
        lines.append(
            f"| {i + 1} | {'never' if threshold > 1 else f'{threshold:.3f}'} "
            f"| {held['stopped_share']:.0%} | {'—' if answered is None else f'{answered:.0%}'} "
            f"| {_pct(alone.get('answered_cell_recall'))} "
            f"| {_num(alone.get('answered_count_mae'))} | {_pct(alone.get('presence_f1'))} "
            f"| {_pct(alone.get('cell_f1'))} | {_pct(alone.get('cell_recall'))} "
            f"| {_num(alone.get('count_mae'))} | {held['ms_per_frame']:.2f} |"
        )
    lines += [
        f"| cloud | | {taught['held_out_offload_share']:.0%} | | | | | | | | |",
        "",
    ]
    return lines


def _where_lines(cells: Cells) -> list[str]:
    exits = max((len(c.get("exit_shares", [])) for c in cells), default=0)
    head = " | ".join(f"exit {i + 1}" for i in range(exits))
    lines = [
        f"| data | strategy | {head} | cloud | person R | count MAE | bytes/frame "
        "| edge CPU ms/frame |",
        "|---|---|" + "---:|" * (exits + 5),
    ]
    for c in cells:
        if "skipped" in c:
            continue
        shares = c.get("exit_shares") or []
        kept = [f"{s:.0%}" for s in shares] + ["—"] * (exits - len(shares))
        lines.append(
            f"| {c['data']} | {c['strategy']} | {' | '.join(kept)} | {c['offload_share']:.0%} "
            f"| {_pct(c['person_recall'])} | {c['count_mae']:.2f} "
            f"| {c['bytes_per_frame']:,.0f} | {_num(c.get('edge_cpu_ms_per_frame'))} |"
        )
    return [*lines, ""]


def _headline(cells: Cells) -> list[str]:
    """The issue's question, per data set: does the specialized edge offload less than
    the generic edge detector at equal or better presence recall?"""
    out = []
    by_data: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells:
        if "skipped" not in c:
            by_data.setdefault(c["data"], {})[c["strategy"]] = c
    for data, strategies in by_data.items():
        ours, generic = strategies.get("specialized"), strategies.get("edge-detector")
        if ours is None or generic is None:
            continue
        recall_ours, recall_generic = ours["person_recall"] or 0.0, generic["person_recall"] or 0.0
        verdict = (
            "offloads less at equal or better presence recall"
            if ours["offload_share"] < generic["offload_share"] and recall_ours >= recall_generic
            else "does not offload less at equal or better presence recall"
        )
        out.append(
            f"{data}: the specialized edge {verdict}: it sends {ours['offload_share']:.0%} "
            f"of frames ({ours['bytes_per_frame']:,.0f} B/frame), the generic edge detector "
            f"{generic['offload_share']:.0%} ({generic['bytes_per_frame']:,.0f} B/frame); "
            f"presence recall {_pct(recall_ours)} vs {_pct(recall_generic)}; count error "
            f"{ours['count_mae']:.2f} vs {generic['count_mae']:.2f} people per frame; edge "
            f"CPU {_num(ours.get('edge_cpu_ms_per_frame'))} vs "
            f"{_num(generic.get('edge_cpu_ms_per_frame'))} ms per frame."
        )
    return out


def specialize_lines(meta: dict[str, Any], cells: Cells) -> list[str]:
    """The report's specialize section (empty for a security run)."""
    if meta.get("analysis") != "specialize":
        return []
    lines = ["**Against the generic edge detector:**", ""]
    lines += [*(f"- {h}" for h in _headline(cells)), ""]
    lines += ["Where each strategy's frames were answered, on the second half:", ""]
    lines += _where_lines(cells)
    lines += ["The specialized models, each exit alone:", ""]
    for name, info in meta.get("data", {}).items():
        if "specialized" in info:
            lines += _model_lines(name, info["specialized"])
    return lines


def offload_vs_accuracy(cells: Cells, path: Path) -> None:
    """Offloaded share against person recall and count error, one marker a cell."""
    data_sets = list(dict.fromkeys(c["data"] for c in cells))
    strategies = list(dict.fromkeys(c["strategy"] for c in cells))
    colours = plt.get_cmap("tab10")
    fig, (recall_ax, count_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for c in cells:
        style = {
            "marker": "osD^vP"[data_sets.index(c["data"]) % 6],
            "color": colours(strategies.index(c["strategy"]) % 10),
            "s": 60,
        }
        recall_ax.scatter(c["offload_share"] * 100, (c["person_recall"] or 0.0) * 100, **style)
        count_ax.scatter(c["offload_share"] * 100, c["count_mae"], **style)
    for si, strategy in enumerate(strategies):
        recall_ax.scatter([], [], marker="s", color=colours(si % 10), label=strategy)
    for di, data in enumerate(data_sets):
        recall_ax.scatter([], [], marker="osD^vP"[di % 6], color="grey", label=data)
    recall_ax.set_ylabel("person-presence recall vs reference (%)")
    count_ax.set_ylabel("people per frame, mean absolute error vs reference")
    for ax in (recall_ax, count_ax):
        ax.set_xlabel("frames offloaded (%)")
        ax.grid(alpha=0.3)
    recall_ax.legend(fontsize="x-small")
    fig.suptitle("Offloading against accuracy: colour = strategy, marker = data set")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def edge_cpu(cells: Cells, path: Path) -> None:
    """Edge CPU per frame per strategy, one group a data set."""
    data_sets = list(dict.fromkeys(c["data"] for c in cells))
    strategies = list(dict.fromkeys(c["strategy"] for c in cells))
    values = {(c["data"], c["strategy"]): c.get("edge_cpu_ms_per_frame") for c in cells}
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(data_sets) + 2), 4))
    width = 0.8 / len(strategies)
    x = np.arange(len(data_sets))
    for i, strategy in enumerate(strategies):
        heights = [values.get((d, strategy)) or np.nan for d in data_sets]
        ax.bar(
            x + i * width - 0.4 + width / 2, heights, width, color=colours(i % 10), label=strategy
        )
    ax.set_xticks(x, data_sets)
    ax.set_ylabel("edge process CPU per frame (ms)")
    ax.set_title("What the edge spends per frame: model, encoding and MQTT")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_specialize_plots(cells: Cells, folder: Path) -> list[tuple[str, str]]:
    measured = [c for c in cells if "skipped" not in c]
    if not measured:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    offload_vs_accuracy(measured, folder / "offload_vs_accuracy.png")
    edge_cpu(measured, folder / "edge_cpu.png")
    return [
        ("offload_vs_accuracy.png", "Frames offloaded against presence recall and count error"),
        ("edge_cpu.png", "Edge CPU per frame per strategy"),
    ]
