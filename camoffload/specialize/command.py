"""``camoffload specialize``: train a camera's own early-exit network from its frames and
the cloud's answers, calibrate its exits, write weights and manifest."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from camoffload.security import COUNT_MIN_SCORE
from pipeline.errors import CamoffloadError

if TYPE_CHECKING:
    from camoffload.specialize.build import Built

__all__ = ["add_specialize_command", "run_specialize"]


def _pair(text: str) -> tuple[int, int]:
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AxB (e.g. 96x128), got {text!r}") from None
    return first, second


def add_specialize_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "specialize",
        help="train a camera's own early-exit model from its frames and the cloud's answers",
        description="Learn what one camera watches for (each label's count and grid cells) "
        "from its frames and a teacher's answers; calibrate each exit's threshold on a "
        "later held-out span; write <name>.pt and <name>.json. The edge uses it with "
        "edge.specialized=<name>.json (docs/specialize.md).",
    )
    p.add_argument("source", help="the camera's recorded frames: a video file or image folder")
    p.add_argument("--name", default=None, help="file stem (default: <source stem>_specialized)")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder")
    teacher = p.add_mutually_exclusive_group()
    teacher.add_argument(
        "--reference",
        default="nanodet_coco",
        help="run this detector over the full-quality frames as the teacher (default)",
    )
    teacher.add_argument(
        "--ledger",
        type=Path,
        default=None,
        help="learn the cloud's answers kept in this run's ledger instead (its frame i "
        "must be the source's frame i)",
    )
    p.add_argument("--frames", type=int, default=None, help="use frames 0..N-1 (default all)")
    p.add_argument(
        "--held-out",
        type=float,
        default=0.25,
        help="the later share of those frames kept for thresholds and metrics (default 0.25)",
    )
    p.add_argument("--labels", default="person", help="watched labels, comma-separated")
    p.add_argument("--min-score", type=float, default=COUNT_MIN_SCORE)
    p.add_argument("--input-size", type=_pair, default=(96, 128), help="HxW (default 96x128)")
    p.add_argument("--grid", type=_pair, default=(2, 2), help="zones: rows x columns (default 2x2)")
    p.add_argument("--max-count", type=int, default=8)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-miss",
        type=float,
        default=0.01,
        help="an exit may say 'nobody' (in the frame or a grid cell) where the teacher "
        "saw someone on at most this share of the frames it answers (default 0.01)",
    )
    p.add_argument(
        "--max-false",
        type=float,
        default=0.1,
        help="and 'someone' where the teacher saw nobody on at most this share (default 0.1)",
    )
    p.add_argument(
        "--max-count-mae",
        type=float,
        default=None,
        help="also hold the count: at most this mean absolute error (people per frame) "
        "over the frames an exit answers (default: the count is not chosen for)",
    )


def run_specialize(args: argparse.Namespace, argv: list[str]) -> int:
    # torch loads here, not when the CLI starts: the other commands do not need it.
    from camoffload.specialize.build import Specialization, build_specialized
    from camoffload.specialize.calibrate import Objective
    from camoffload.specialize.train import TrainOptions
    from pipeline.models.specialized import SpecializedConfig

    try:
        config = SpecializedConfig(
            labels=tuple(v.strip() for v in args.labels.split(",") if v.strip()),
            input_size=args.input_size,
            max_count=args.max_count,
            grid=args.grid,
        )
    except ValueError as exc:
        raise CamoffloadError(f"specialize: {exc}") from exc
    job = Specialization(
        source=args.source,
        out=args.out,
        name=args.name or f"{Path(args.source.rstrip('/')).stem}_specialized",
        config=config,
        teacher=f"ledger:{args.ledger}" if args.ledger else f"reference:{args.reference}",
        min_score=args.min_score,
        frames=args.frames,
        held_out=args.held_out,
        options=TrainOptions(epochs=args.epochs, seed=args.seed),
        objective=Objective(
            max_miss=args.max_miss, max_false=args.max_false, max_count_mae=args.max_count_mae
        ),
        command=shlex.join(["camoffload", *argv]),
    )
    built = build_specialized(job)
    _report(built)
    return 0


def _report(built: Built) -> None:
    print(
        f"wrote {built.manifest} ({built.params:,} parameters; {built.trained} frames "
        f"trained, {built.held} held out)"
    )
    print("held-out span, each exit alone, and the share each answers in the cascade:")
    print("exit  threshold  answers  presence F1  cell F1  cell recall  count MAE  ms/frame")
    for i, m in enumerate(built.exits, start=1):
        print(
            f"{i:>4}  {_num(m.threshold):>9}  {m.stopped_share:>7.0%}  {_num(m.presence_f1):>11}"
            f"  {_num(m.cell_f1):>7}  {_num(m.cell_recall):>11}  {m.count_mae:>9.2f}"
            f"  {m.ms_per_frame:>8.2f}"
        )
    print(f"cloud       -  {built.offload_share:>7.0%}  (no exit sure)")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
