"""Hybrid models: accuracy at 90/80/70% coverage for max-softmax, entropy and the router.

    .venv/bin/python bench/router_coverage.py [--model fmnist_exit_resnet] [--split 1]
        [--router pipeline/models/shipped/fmnist_exit_resnet.router.pt] [--seeds 5] [--boot 500]

Offline, on the whole Fashion-MNIST test split: exit ``split``'s and the final exit's
outputs are computed once (cached, see camoffload/training/router.py). Coverage is the
share of images answered locally: each policy keeps the round(coverage * N) images it
scores highest; accuracy takes the local answer where kept and the final exit's where
sent. The oracle knows which images the cloud fixes (the best any router can do). The
committed router is scored, then ``--seeds`` routers retrained with other seeds on the
cached training outputs show the spread; ``--boot`` paired bootstrap resamples of the
test images give a 95% interval of router minus max-softmax. Prints a markdown table;
the last line is ``RESULT ...``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from camoffload.training.router import (
    COVERAGES,
    ExitOutputs,
    RouterOptions,
    accuracy_at_coverage,
    cached_exit_outputs,
    fit_router,
    outcomes,
    policy_scores,
)
from pipeline.models.router import default_router_path, load_router

# Kag et al., ICLR 2023 (DESIGN.md): MobileNetV3 48M MACs on ImageNet, base 67.6%.
PAPER = {"entropy": {0.9: 0.707, 0.7: 0.749}, "router": {0.9: 0.716, 0.7: 0.768}}
PAPER_BASE = 0.676


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _retrained(options: RouterOptions, seeds: int, test: ExitOutputs) -> list[dict[float, float]]:
    """Test accuracy per coverage of routers retrained with seeds 0 .. seeds-1."""
    train, _ = cached_exit_outputs(options.model, options.split, "train")
    rows = []
    for seed in range(seeds):
        permutation = np.random.default_rng(seed).permutation(len(train))
        fit = train.take(permutation[round(options.val_fraction * len(train)) :])
        router = fit_router(
            fit.exit_logits, outcomes(fit), hidden=options.hidden, epochs=options.epochs, seed=seed
        )
        scores = policy_scores(test, router)["router"]
        rows.append(
            {
                c: accuracy_at_coverage(scores, test.edge_right, test.cloud_right, c)
                for c in COVERAGES
            }
        )
    return rows


def _bootstrap(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], test: ExitOutputs, count: int
) -> dict[float, tuple[float, float]]:
    """95% paired-bootstrap interval of accuracy(a) - accuracy(b) at each coverage."""
    rng = np.random.default_rng(0)
    diffs: dict[float, list[float]] = {c: [] for c in COVERAGES}
    edge, cloud = test.edge_right, test.cloud_right
    for _ in range(count):
        i = rng.integers(0, len(test), len(test))
        for c in COVERAGES:
            diffs[c].append(
                accuracy_at_coverage(a[i], edge[i], cloud[i], c)
                - accuracy_at_coverage(b[i], edge[i], cloud[i], c)
            )
    return {
        c: (float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))) for c, d in diffs.items()
    }


def _router_cost(router_path: Path, test: ExitOutputs) -> tuple[float, float]:
    """Microseconds per frame: the NumPy scorer one frame at a time, torch at batch 10,000."""
    router, _ = load_router(router_path)
    scorer = router.scorer()
    rows = test.exit_logits[:2000]
    started = time.perf_counter()
    for row in rows:
        scorer(row)
    single = (time.perf_counter() - started) / len(rows) * 1e6
    logits = torch.from_numpy(test.exit_logits)
    with torch.inference_mode():
        router.keep_score(logits)
        started = time.perf_counter()
        router.keep_score(logits)
    batched = (time.perf_counter() - started) / len(test) * 1e6
    return single, batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fmnist_exit_resnet")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--router", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=5, help="retrained routers for the spread")
    parser.add_argument("--boot", type=int, default=500, help="paired bootstrap resamples")
    args = parser.parse_args()
    torch.set_num_threads(2)
    router_path = args.router or default_router_path(args.model)
    router, manifest = load_router(router_path)
    test, base = cached_exit_outputs(args.model, args.split, "test")
    if manifest.model_version != base.version or manifest.split != args.split:
        raise SystemExit(f"{router_path} is for {manifest.model_version} exit {manifest.split}")
    scores = policy_scores(test, router)
    edge, cloud = test.edge_right, test.cloud_right
    acc = {
        name: {c: accuracy_at_coverage(s, edge, cloud, c) for c in COVERAGES}
        for name, s in scores.items()
    }
    print(
        f"{base.version} exit {args.split} on {len(test):,} Fashion-MNIST test images; "
        f"router {router_path.name} (sha256 {manifest.sha256[:12]}, {manifest.params} "
        f"parameters, {manifest.macs} MACs per frame)"
    )
    print()
    print(
        "| answered locally | max-softmax | entropy | router | oracle | router - softmax | "
        "router - entropy | paper: entropy | paper: router |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| 100% (exit {args.split} only) | {_pct(float(edge.mean()))} | | | | | | "
        f"{_pct(PAPER_BASE)} | {_pct(PAPER_BASE)} |"
    )
    for c in COVERAGES:
        a = acc
        print(
            f"| {c:.0%} | {_pct(a['max-softmax'][c])} | {_pct(a['entropy'][c])} | "
            f"**{_pct(a['router'][c])}** | {_pct(a['oracle'][c])} | "
            f"{(a['router'][c] - a['max-softmax'][c]) * 100:+.2f} pt | "
            f"{(a['router'][c] - a['entropy'][c]) * 100:+.2f} pt | "
            f"{_pct(PAPER['entropy'].get(c))} | {_pct(PAPER['router'].get(c))} |"
        )
    print(f"| 0% (final exit only) | {_pct(float(cloud.mean()))} | | | | | | | |")
    print()
    headroom = {c: acc["oracle"][c] - acc["max-softmax"][c] for c in COVERAGES}
    shares = np.bincount(outcomes(test), minlength=3) / len(test)
    print(
        f"Sending an image changes its answer for the better for {shares[2]:.2%} of the test "
        f"images and for the worse for {shares[0]:.2%}; the oracle's headroom over "
        "max-softmax is "
        + ", ".join(f"{headroom[c] * 100:.2f} pt at {c:.0%}" for c in COVERAGES)
        + "."
    )
    kinds = outcomes(test)
    for c in COVERAGES:
        parts = []
        for name in ("max-softmax", "router"):
            sent = np.zeros(len(test), dtype=bool)
            sent[np.argsort(-scores[name], kind="stable")[round(c * len(test)) :]] = True
            parts.append(
                f"{name} sends {np.sum(sent & (kinds == 2))} of the {np.sum(kinds == 2)} frames "
                f"the cloud fixes, {np.sum(sent & (kinds == 0))} it breaks and "
                f"{np.sum(sent & (kinds == 1))} it leaves as they were"
            )
        print(f"At {c:.0%}: " + "; ".join(parts) + ".")
    if args.boot:
        soft = _bootstrap(scores["router"], scores["max-softmax"], test, args.boot)
        ent = _bootstrap(scores["router"], scores["entropy"], test, args.boot)
        print(
            f"Router minus max-softmax, 95% paired bootstrap ({args.boot} resamples): "
            + ", ".join(
                f"[{lo * 100:+.2f}, {hi * 100:+.2f}] pt at {c:.0%}" for c, (lo, hi) in soft.items()
            )
            + "; router minus entropy: "
            + ", ".join(
                f"[{lo * 100:+.2f}, {hi * 100:+.2f}] pt at {c:.0%}" for c, (lo, hi) in ent.items()
            )
            + "."
        )
    if args.seeds:
        options = RouterOptions(
            model=args.model, split=args.split, hidden=manifest.hidden, epochs=manifest.epochs
        )
        rows = _retrained(options, args.seeds, test)
        print(
            f"Routers retrained with seeds 0-{args.seeds - 1} (same recipe), test accuracy "
            "min-max: "
            + ", ".join(
                f"{min(r[c] for r in rows):.2%}-{max(r[c] for r in rows):.2%} at {c:.0%}"
                for c in COVERAGES
            )
            + "."
        )
    single, batched = _router_cost(router_path, test)
    print(
        f"Router cost: {single:.1f} µs per frame one at a time (NumPy, as the edge runs it), "
        f"{batched:.2f} µs per frame at batch {len(test):,} (torch), against ~1,000 µs for "
        f"exit {args.split} itself (docs/models.md)."
    )
    print()
    deltas = " ".join(
        f"@{c:.0%}: router-softmax {(acc['router'][c] - acc['max-softmax'][c]) * 100:+.2f}pt "
        f"router-entropy {(acc['router'][c] - acc['entropy'][c]) * 100:+.2f}pt"
        for c in COVERAGES
    )
    paper = " ".join(
        f"paper@{c:.0%} router-entropy {(PAPER['router'][c] - PAPER['entropy'][c]) * 100:+.1f}pt"
        for c in (0.9, 0.7)
    )
    print(f"RESULT {deltas} | {paper}")


if __name__ == "__main__":
    main()
