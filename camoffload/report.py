"""The demo's summary table."""

from __future__ import annotations

from edge_node.ledger import LedgerSummary
from pipeline.protocol import Decision

__all__ = ["format_summary"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_summary(summary: LedgerSummary, *, title: str) -> str:
    by = summary.by_decision
    fallbacks = sum(
        by.get(d.value, 0) for d in (Decision.LOCAL_AFTER_BUSY, Decision.LOCAL_AFTER_ERROR)
    )
    exactly_once = summary.undecided == 0 and summary.decided == summary.captured
    rows = [
        ("frames", str(summary.captured)),
        ("skipped (no motion)", str(by.get(Decision.SKIPPED.value, 0))),
        ("local", str(by.get(Decision.LOCAL.value, 0))),
        ("offloaded", str(summary.offloaded)),
        ("answered", str(summary.answered)),
        ("timed out", str(summary.timed_out)),
        ("busy/error", str(fallbacks)),
        ("dropped", str(by.get(Decision.DROPPED.value, 0))),
        ("undecided", str(summary.undecided)),
        ("bytes sent", f"{summary.bytes_sent:,}"),
        ("round trip p50", _ms(summary.rtt_ms_p50)),
        ("round trip p95", _ms(summary.rtt_ms_p95)),
    ]
    if summary.accuracy is not None:
        rows.append(("accuracy", f"{summary.accuracy:.2%} of {summary.labelled} labelled"))
    rows.append(("decided exactly once", "yes" if exactly_once else "NO"))
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
