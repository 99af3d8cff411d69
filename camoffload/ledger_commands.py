"""``camoffload ledger``: read an edge's SQLite ledger, also while the edge writes it.

::

    camoffload ledger summary PATH [--run RUN_ID] [--json]
    camoffload ledger runs PATH [--json]

A missing, corrupt or foreign file is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_node.ledger import LedgerSummary, RunInfo
    from edge_node.ledger_objects import ObjectSummary

__all__ = ["add_ledger_command", "run_ledger_command"]

_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def add_ledger_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ledger summary`` and ``ledger runs`` to the CLI's subcommands."""
    p = sub.add_parser(
        "ledger",
        help="summarize an edge's ledger file (edge.ledger_path): decisions, accuracy, bytes",
        description="Read an edge's SQLite ledger (read-only; safe while the edge runs).",
    )
    actions = p.add_subparsers(dest="ledger_action", required=True, metavar="ACTION")
    summary = actions.add_parser(
        "summary", help="decisions, offload share, accuracy, bytes sent and round trips"
    )
    summary.add_argument("path", type=Path, help="the ledger file")
    summary.add_argument(
        "--run", dest="run_id", default=None, help="one run (see `ledger runs`); default all"
    )
    runs = actions.add_parser("runs", help="the runs in a ledger file, oldest first")
    runs.add_argument("path", type=Path, help="the ledger file")
    for action in (summary, runs):
        action.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
        # The CLI's main configures logging from every command's --log-level.
        action.add_argument("--log-level", default="WARNING", choices=_LOG_LEVELS)


def run_ledger_command(args: argparse.Namespace) -> int:
    # Imported here: building the parser must not load the edge package.
    from edge_node.ledger import LedgerError, list_runs, summarize_ledger_file
    from edge_node.ledger_objects import format_objects

    try:
        if args.ledger_action == "runs":
            runs = list_runs(args.path)
            print(_runs_json(runs) if args.as_json else format_runs(runs))
        else:
            summary = summarize_ledger_file(args.path, run_id=args.run_id)
            objects, start_ts, run = _objects(args.path, args.run_id)
            if args.as_json:
                data = _summary_json(summary, path=args.path, run_id=args.run_id)
                data["objects"] = {
                    "run_id": run,
                    "objects": [dataclasses.asdict(o) for o in objects],
                }
                print(json.dumps(data, indent=2))
            else:
                scope = "all runs" if args.run_id is None else f"run {args.run_id}"
                print(format_ledger_summary(summary, title=f"ledger {args.path}, {scope}"))
                if objects:
                    print(f"(objects of run {run})")
                    print(format_objects(objects, start_ts=start_ts))
    except LedgerError as exc:
        print(f"camoffload ledger: error: {exc}", file=sys.stderr)
        return 1
    return 0


def format_ledger_summary(summary: LedgerSummary, *, title: str) -> str:
    decided = summary.decided
    rows = [("decision", "frames", "share")]
    rows += [(name, str(n), _share(n, decided)) for name, n in summary.by_decision.items()]
    rows += [
        ("captured", str(summary.captured), ""),
        ("decided", str(decided), _share(decided, summary.captured)),
        # Undecided frames are a crashed run's, or a run still going.
        ("undecided", str(summary.undecided), "(crashed or running)" if summary.undecided else ""),
        ("offloaded", str(summary.offloaded), _share(summary.offloaded, decided)),
        ("accuracy", _percent(summary.accuracy), _labelled(summary)),
        ("bytes sent", f"{summary.bytes_sent:,}", ""),
        ("round trip p50", _ms(summary.rtt_ms_p50), ""),
        ("round trip p95", _ms(summary.rtt_ms_p95), ""),
    ]
    name_w = max(len(row[0]) for row in rows)
    value_w = max(len(row[1]) for row in rows)
    lines = [title, "-" * len(title)]
    for i, (name, value, note) in enumerate(rows):
        lines.append(f"{name:<{name_w}}  {value:>{value_w}}  {note}".rstrip())
        if i == len(summary.by_decision):  # a rule between the decisions and the totals
            lines.append("-" * len(title))
    return "\n".join(lines)


def format_runs(runs: list[RunInfo]) -> str:
    if not runs:
        return "no runs"
    header = ("run", "first capture (UTC)", "frames", "decided", "undecided")
    rows = [header] + [
        (
            run.run_id,
            datetime.fromtimestamp(run.first_capture_ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(run.frames),
            str(run.decided),
            str(run.undecided),
        )
        for run in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            f"{cell:<{w}}" if i < 2 else f"{cell:>{w}}"
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def _summary_json(summary: LedgerSummary, *, path: Path, run_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"path": str(path), "run_id": run_id, **dataclasses.asdict(summary)}
    data["accuracy"] = summary.accuracy
    data["offload_share"] = summary.offload_share
    return data


def _objects(path: Path, run_id: str | None) -> tuple[list[ObjectSummary], float, str | None]:
    """The objects of ``run_id`` (or of the latest run): a detection run's; else none."""
    from edge_node.ledger import list_runs
    from edge_node.ledger_objects import objects_in
    from edge_node.ledger_rows import iter_frames

    runs = list_runs(path)
    run = run_id or (runs[-1].run_id if runs else None)
    if run is None:
        return [], 0.0, None
    records = list(iter_frames(path, run_id=run))
    if not any(r.detections is not None for r in records):
        return [], 0.0, run
    return objects_in(records), records[0].capture_ts, run


def _runs_json(runs: list[RunInfo]) -> str:
    return json.dumps(
        [{**dataclasses.asdict(run), "undecided": run.undecided} for run in runs], indent=2
    )


def _share(part: int, whole: int) -> str:
    return _percent(part / whole if whole else None)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _labelled(summary: LedgerSummary) -> str:
    if not summary.labelled:
        return "(no true labels)"
    return f"({summary.correct} of {summary.labelled} labelled)"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
