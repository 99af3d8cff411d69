"""Soak: a worker and an edge replaying for a fixed time; RSS and event-loop lag of both.

Real processes, as deployed: Mosquitto on 127.0.0.1, ``camoffload worker`` serving the
committed Fashion-MNIST model and ``camoffload edge`` replaying the training split with
the threshold policy at a fixed rate, each with its Prometheus endpoint. Every
``--sample-s`` the soak reads each process's RSS (psutil) and scrapes its event-loop lag
histogram. At the end it stops both by pid (SIGTERM), checks the edge's ledger (every
captured frame decided exactly once) and prints:

- RSS after warm-up (the first ``--warmup`` share of the run) and at the end, and the
  growth between them (the target: under 10%);
- p99 and max event-loop lag after warm-up, from the histograms' buckets (an upper
  bound: the bucket edge the 99th percentile falls in); ``n/a`` for a process whose
  endpoint does not export the histogram (an older edge).

The exit status is 1 if a process died or did not exit cleanly on SIGTERM, or a frame
was left undecided or decided twice; the RSS bound is for the caller to judge (the
test runs a short soak and allows more, see tests/test_faults.py).

    .venv/bin/python tests/harness/soak.py [--minutes 10] [--rate 80] [--sample-s 2]

The last line is ``RESULT key=value ...`` so scripts can check it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from broker import free_port, mosquitto_broker

MODEL = "fmnist_exit_resnet"


@dataclass
class Watched:
    name: str
    process: subprocess.Popen[bytes]
    metrics_port: int
    lag_metric: str
    rss: list[tuple[float, int]] = field(default_factory=list)
    lag_at_warmup: dict[float, float] | None = None
    lag_last: dict[float, float] = field(default_factory=dict)


def _lag_buckets(port: int, metric: str) -> dict[float, float]:
    """Cumulative bucket counts {le: count} of ``metric`` from the endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{metric}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _quantile_bound(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The bucket edge under which a share ``q`` of the samples between the two reads fell."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    for edge, count in zip(edges, counts, strict=True):
        if count >= q * total:
            return edge
    return math.inf


def _max_bound(before: dict[float, float], after: dict[float, float]) -> float:
    edges = sorted(after)
    total = after[edges[-1]] - before.get(edges[-1], 0.0) if edges else 0.0
    for edge in edges:
        if after[edge] - before.get(edge, 0.0) >= total:
            return edge
    return math.inf


def _wait_metrics(w: Watched, timeout_s: float = 120) -> None:
    """Wait for the endpoint; a missing lag histogram is reported as n/a, not waited for."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if w.process.poll() is not None:
            raise SystemExit(f"{w.name} exited early ({w.process.returncode})")
        with contextlib.suppress(OSError):
            _lag_buckets(w.metrics_port, w.lag_metric)
            return
        time.sleep(0.5)
    raise SystemExit(f"{w.name}: no metrics on port {w.metrics_port}")


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:g}"


def _stop(w: Watched) -> int:
    """SIGTERM and wait; SIGKILL after 60 s. The exit code (negative: killed)."""
    if w.process.poll() is None:
        w.process.send_signal(signal.SIGTERM)
    try:
        return w.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        w.process.kill()
        return w.process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=80.0, help="edge frames/s")
    parser.add_argument("--sample-s", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run")
    args = parser.parse_args()
    duration_s = args.minutes * 60
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker(port=0) as broker:
        ledger = Path(tmp) / "soak.sqlite"
        common = ["--broker", broker.url, "--set", "prefix=soak", "--log-level", "WARNING"]
        worker_port, edge_port = free_port(), free_port()
        worker_argv = [
            python, "-m", "camoffload", "worker", *common, "--model", MODEL,
            "--max-batch", "16", "--metrics-port", str(worker_port),
        ]  # fmt: skip
        edge_argv = [
            python, "-m", "camoffload", "edge", "fashion-mnist:train", *common,
            "--model", MODEL, "--local-model", MODEL, "--policy", "threshold",
            "--rate", str(args.rate), "--quiet", "--ledger", str(ledger),
            "--set", f"edge.metrics_port={edge_port}",
        ]  # fmt: skip
        worker = Watched(
            "worker",
            subprocess.Popen(worker_argv),
            worker_port,
            "camoffload_worker_event_loop_lag_seconds",
        )
        _wait_metrics(worker)
        edge = Watched(
            "edge",
            subprocess.Popen(edge_argv, stdout=subprocess.DEVNULL),
            edge_port,
            "camoffload_edge_event_loop_lag_seconds",
        )
        watched = [worker, edge]
        try:
            _wait_metrics(edge)
            started = time.monotonic()
            warmup_at = started + args.warmup * duration_s
            print(f"soak: {args.minutes:g} min at {args.rate:g} frames/s, sampling every "
                  f"{args.sample_s:g} s; warm-up {args.warmup:.0%}", flush=True)  # fmt: skip
            while time.monotonic() - started < duration_s:
                time.sleep(args.sample_s)
                now = time.monotonic()
                for w in watched:
                    if w.process.poll() is not None:
                        raise SystemExit(
                            f"{w.name} exited during the soak ({w.process.returncode})"
                        )
                    w.rss.append((now - started, psutil.Process(w.process.pid).memory_info().rss))
                    w.lag_last = _lag_buckets(w.metrics_port, w.lag_metric)
                    if w.lag_at_warmup is None and now >= warmup_at:
                        w.lag_at_warmup = w.lag_last
        finally:
            # The edge first: it lets its frames in flight reach their decision.
            exit_codes = {w.name: _stop(w) for w in reversed(watched)}
        with contextlib.closing(sqlite3.connect(ledger)) as db:
            captured, decided, distinct = db.execute(
                "SELECT COUNT(*), COUNT(decision), COUNT(DISTINCT frame_id) FROM frames"
            ).fetchone()
            by_decision = dict(
                db.execute("SELECT decision, COUNT(*) FROM frames GROUP BY decision").fetchall()
            )
    ok = captured == decided == distinct and all(code == 0 for code in exit_codes.values())
    print(f"\nedge ledger: {captured} frames captured, {decided} decided "
          f"({'every one, once' if captured == decided == distinct else 'NOT every one once'}) "
          f"in {duration_s:.0f} s: {by_decision}; exit codes {exit_codes}")  # fmt: skip
    print("\n| process | RSS after warm-up | RSS at end | growth | max RSS "
          "| loop lag p99 (bound) | loop lag max (bound) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    result = [f"decided_all={int(captured == decided == distinct)}"]
    for w in watched:
        warm = next(rss for t, rss in w.rss if t >= args.warmup * duration_s)
        end = w.rss[-1][1]
        growth = end / warm - 1
        p99 = _quantile_bound(w.lag_at_warmup or {}, w.lag_last, 0.99)
        worst = _max_bound(w.lag_at_warmup or {}, w.lag_last)
        mib = 1024 * 1024
        print(f"| {w.name} | {warm / mib:.1f} MiB | {end / mib:.1f} MiB | {growth:+.1%} "
              f"| {max(r for _, r in w.rss) / mib:.1f} MiB | <= {_ms(p99)} ms "
              f"| <= {_ms(worst)} ms |")  # fmt: skip
        result += [
            f"rss_growth_{w.name}={growth:.4f}",
            f"loop_lag_p99_ms_{w.name}={_ms(p99)}",
        ]
    result.append(f"frames={captured}")
    print("\nRESULT " + " ".join(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
