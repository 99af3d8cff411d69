"""The benchmark's printout: a table per payload kind, the per-frame costs, and the
ratios last, one ``RATIO`` line per payload kind, for scripts to check."""

from __future__ import annotations

import math
import platform

import torch

from camoffload.perf.run import BenchSettings, Measured, PayloadReport, Row, median

__all__ = ["ceilings", "format_report", "ratios"]


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None or math.isnan(value) else format(value, fmt)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| contender | setup | load | frames/s | p50 ms | p95 ms | p99 ms | answered | errors "
        "| top-1 | mean batch | MQTT msgs/frame |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        msgs = _num(r.messages_per_frame, ".2f") if r.contender == "MQTT" else ""
        top1 = "" if r.top1 is None else f"{r.top1:.2%}"
        lines.append(
            f"| {r.contender} | {r.setup} | {r.load} | {r.fps:.0f} | {_num(r.p50_ms, '.1f')} | "
            f"{_num(r.p95_ms, '.1f')} | {_num(r.p99_ms, '.1f')} | {_num(r.answered, 'd')} | "
            f"{_num(r.errors, 'd')} | {top1} | {_num(r.mean_batch, '.1f')} | {msgs} |"
        )
    return lines


def _costs(report: PayloadReport, best: Measured) -> list[str]:
    result = best.result
    frames = result.frames
    us = {name: seconds * 1e6 / frames for name, seconds in best.cpu_s.items()}
    workers = sum(v for name, v in us.items() if name not in ("edge", "broker"))
    messages = (result.messages_out + result.messages_in) / frames
    lines = [
        f"Per-frame costs, saturated, {best.workers} worker(s), bundled "
        f"({result.fps:.0f} frames/s):",
        "",
        "| stage | where | per frame |",
        "|---|---|---:|",
    ]
    if "jpeg" in report.encode_us:
        lines.append(f"| JPEG encode (q90) | edge | {report.encode_us['jpeg']:.0f} us CPU |")
    lines.append(
        f"| request envelope (msgpack) | edge | {report.encode_us['envelope']:.1f} us CPU |"
    )
    if us:
        lines += [
            f"| publish, bundling, replies matched | edge process | {us['edge']:.0f} us CPU |",
            f"| routing both ways | Mosquitto | {us['broker']:.0f} us CPU |",
            f"| everything a worker does, model included | worker processes | {workers:.0f} "
            "us CPU |",
        ]
        single = next((m for m in report.unbundled if m.workers == best.workers), None)
        if single is not None and single.cpu_s:
            one = {name: sec * 1e6 / single.result.frames for name, sec in single.cpu_s.items()}
            rest = sum(v for name, v in one.items() if name not in ("edge", "broker"))
            lines.append(
                f"| (the same, one frame per message: {single.result.fps:.0f} frames/s) | "
                f"edge, Mosquitto, workers | {one['edge']:.0f}, {one['broker']:.0f}, "
                f"{rest:.0f} us CPU |"
            )
    else:
        lines.append("| (CPU per process needs psutil: the bench extra) | | |")
    lines += [
        f"| decode (in its own thread) | worker | {result.mean(result.decode_ms) * 1000:.0f} us |",
        f"| queue (while {len(result.latencies_ms)} frames kept it full) | worker | "
        f"{result.mean(result.queue_ms):.1f} ms |",
        f"| batch inference, per frame | worker | "
        f"{result.mean(result.inference_ms_per_frame) * 1000:.0f} us |",
        f"| broker messages, both ways | Mosquitto | {messages:.3f} |",
    ]
    return lines


def _low_load(report: PayloadReport, low: Measured) -> list[str]:
    r = low.result
    p50 = r.percentile(50)
    queue, decode = median(r.queue_ms), median(r.decode_ms)
    inference = median(r.inference_ms_batch1)
    transport = p50 - queue - decode - inference
    return [
        f"Low load ({r.frames} frames one at a time, {low.workers} worker): "
        f"round trip p50 {p50:.2f} ms = inference at batch 1 {inference:.2f} + decode "
        f"{decode:.2f} + queue {queue:.2f} + transport {transport:.2f} (edge -> broker -> "
        "worker -> broker -> edge, MessagePack both ways; worker medians)",
    ]


def ratios(report: PayloadReport) -> dict[str, float]:
    """pipeline/http, pipeline/model and the low-load overhead beyond inference."""
    mqtt, http, model = report.best("MQTT"), report.best("HTTP"), report.best("model alone")
    out: dict[str, float] = {}
    if mqtt and http:
        out["pipeline/http"] = mqtt.fps / http.fps
    if report.round_ratios:  # the model alone and the pipeline, seconds apart
        out["pipeline/model"] = median(report.round_ratios)
    elif mqtt and model:
        out["pipeline/model"] = mqtt.fps / model.fps
    if report.low_load is not None:
        r = report.low_load.result
        out["p50-inference_ms"] = r.percentile(50) - median(r.inference_ms_batch1)
    return out


def format_report(settings: BenchSettings, reports: list[PayloadReport]) -> str:
    lines = [
        f"# camoffload bench: {settings.model}, {_cpu_model()}, "
        f"{torch.get_num_threads()} torch threads by default, torch {torch.__version__}",
        "",
        "Every contender serves the same frames with the same model (the frozen graph) on "
        "this machine, one after the other. Saturated rows count toward the ratios: the "
        "model alone is the ceiling, HTTP is the seed study's FastAPI design.",
    ]
    for report in reports:
        lines += ["", f"## {report.kind} ({report.payload_bytes:.0f} bytes/frame)", ""]
        lines += _table(report.rows)
        if report.round_ratios:
            rounds = ", ".join(f"{r:.2f}" for r in report.round_ratios)
            lines += [
                "",
                f"Best saturated pipeline / best model alone, round by round: {rounds}",
            ]
        best = max(report.saturated, key=lambda m: m.result.fps, default=None)
        if best is not None:
            lines += ["", *_costs(report, best)]
        if report.low_load is not None:
            lines += ["", *_low_load(report, report.low_load)]
    lines.append("")
    for report in reports:
        values = " ".join(f"{name}={value:.2f}" for name, value in ratios(report).items())
        lines.append(f"RATIO {report.kind} {values}")
    if settings.model == "null":
        lines += ceilings(reports)
    return "\n".join(lines)


def ceilings(reports: list[PayloadReport]) -> list[str]:
    """With the free model: the transport ceiling, one line per payload and path, the
    best saturated frames/s and the worker processes' CPU per frame there."""
    lines = []
    for report in reports:
        for path, runs in (("bundled", report.saturated), ("single", report.unbundled)):
            best = max(runs, key=lambda m: m.result.fps, default=None)
            if best is None:
                continue
            frames = best.result.frames
            worker_s = sum(s for name, s in best.cpu_s.items() if name not in ("edge", "broker"))
            worker_us = f"{worker_s * 1e6 / frames:.0f}" if best.cpu_s else "n/a"
            lines.append(
                f"CEILING {report.kind} {path} frames/s={best.result.fps:.0f} "
                f"worker_us={worker_us} workers={best.workers}"
            )
    return lines
