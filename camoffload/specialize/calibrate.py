"""Each exit's threshold, chosen on a held-out later span for the user's objective.

A frame stops at the first exit sure enough of every yes/no it answers (each watched
label there or not, in the frame and in each grid cell) to reach that exit's
threshold; a frame no exit is sure of goes to the cloud. Exits are calibrated in
order, each on the held-out frames the earlier ones let through: the threshold is the
lowest at which the frames it stops keep within the objective,

* recall of presence first (security): at most ``max_miss`` of the stopped frames say
  "nobody" (in the frame or in a cell) where the teacher saw someone;
* then false alarms: at most ``max_false`` of them say "someone" where the teacher
  saw nobody;
* and, only when asked (``max_count_mae``), the count: its mean absolute error over
  the frames stopped, per label.

By default the count rides along, reported per exit (and through the broker by
``camoffload eval --suite specialize``) but not chosen for: a few hundred frames of a
crowded scene do not teach a small network to count a crowd to the person, and an
exit's sureness of presence says little about its count.

The held-out span comes after the training span, as the frames the model will meet
do: a camera's afternoon is not its morning.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from camoffload.specialize.data import Teaching
from pipeline.models.specialized import ExitAnswer, SpecializedNet, exit_answers
from pipeline.models.specialized_weights import ExitMetrics

__all__ = ["Objective", "calibrate_exits", "exit_outputs", "exit_scores"]

NEVER = 1.01  # a threshold no probability reaches: the exit answers nothing
FLOOR = 0.5  # no surer than a coin toss: such an exit answers nothing, whatever the span says


@dataclass(frozen=True, slots=True, kw_only=True)
class Objective:
    max_miss: float = 0.01
    max_false: float = 0.1
    max_count_mae: float | None = None  # None: the count is not chosen for

    def as_dict(self) -> dict[str, float]:
        out = {"max_miss": self.max_miss, "max_false": self.max_false}
        if self.max_count_mae is not None:
            out["max_count_mae"] = self.max_count_mae
        return out


# One held-out frame as an exit would answer it: how sure, a presence missed, one made
# up, and the count's absolute error (summed over labels).
Graded = tuple[float, bool, bool, int]


def exit_outputs(network: SpecializedNet, teaching: Teaching) -> list[list[ExitAnswer]]:
    """Per exit, each held-out frame's answer."""
    with torch.inference_mode():
        outputs = network(teaching.frames)
    max_count = network.config.max_count
    return [exit_answers(i, d, cells, max_count) for i, (d, cells) in enumerate(outputs)]


def _graded(answer: ExitAnswer, counts: torch.Tensor, cells: torch.Tensor) -> Graded:
    """How an exit's answer to one frame fares: presence missed or made up, in the
    frame or a cell, and the count's error."""
    ours_frame = np.array(answer.counts) > 0
    truth_frame = counts.numpy() > 0
    ours_cells = answer.cells >= 0.5
    truth_cells = cells.numpy() >= 0.5
    missed = bool(np.any(truth_frame & ~ours_frame) or np.any(truth_cells & ~ours_cells))
    made_up = bool(np.any(ours_frame & ~truth_frame) or np.any(ours_cells & ~truth_cells))
    count_error = int(np.sum(np.abs(np.array(answer.counts) - counts.numpy())))
    return answer.sureness, missed, made_up, count_error


def _threshold(graded: Sequence[Graded], objective: Objective, labels: int = 1) -> float:
    """The lowest threshold within ``objective``; ``graded``: the frames, surest first."""
    best = NEVER
    misses = made_up = count_errors = 0
    count_budget = objective.max_count_mae
    # Lowering the threshold past each frame's sureness stops that frame too.
    for stopped, (sureness, missed, false, count_error) in enumerate(graded, start=1):
        misses += missed
        made_up += false
        count_errors += count_error
        if sureness <= FLOOR:
            break
        counted = count_budget is None or count_errors <= count_budget * stopped * labels
        if (
            counted
            and misses <= objective.max_miss * stopped
            and made_up <= objective.max_false * stopped
        ):
            nxt = graded[stopped][0] if stopped < len(graded) else -1.0
            if nxt < sureness:  # a threshold between two frames, not inside a tie
                best = sureness
    return best


def _f1(ours: np.ndarray, truth: np.ndarray) -> tuple[float | None, float | None]:
    tp = int(np.sum(ours & truth))
    fp = int(np.sum(ours & ~truth))
    fn = int(np.sum(~ours & truth))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    recall = tp / (tp + fn) if tp + fn else None
    return f1, recall


def exit_scores(
    answers: Sequence[ExitAnswer], counts: np.ndarray, cells: np.ndarray
) -> dict[str, float | None]:
    """One exit's answers against the teacher's ``counts`` (frames, labels) and
    ``cells`` (frames, labels, rows, columns); all None for no frames."""
    if not answers:
        keys = ("presence_f1", "presence_recall", "count_accuracy", "count_mae")
        return dict.fromkeys((*keys, "cell_f1", "cell_recall"))
    ours = np.array([a.counts for a in answers])
    presence_f1, presence_recall = _f1(ours > 0, counts > 0)
    cell_f1, cell_recall = _f1(np.stack([a.cells for a in answers]) >= 0.5, cells >= 0.5)
    return {
        "presence_f1": presence_f1,
        "presence_recall": presence_recall,
        "count_accuracy": float(np.mean(np.all(ours == counts, axis=1))),
        "count_mae": float(np.mean(np.abs(ours - counts))),
        "cell_f1": cell_f1,
        "cell_recall": cell_recall,
    }


def _ms_per_exit(network: SpecializedNet, teaching: Teaching, frames: int = 40) -> list[float]:
    """CPU ms to reach each exit, one frame at a time (as the edge runs it)."""
    spent = [0.0] * network.config.exits
    sample = teaching.frames[: max(1, min(frames, len(teaching)))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # an edge core's time, not two cores' wall time
    try:
        with torch.inference_mode():
            for frame in sample:
                started = time.thread_time()
                x = network.stem_features(frame[None])
                for i in range(network.config.exits):
                    x, _counts, _cells = network.step(i, x)
                    spent[i] += time.thread_time() - started
    finally:
        torch.set_num_threads(threads)
    return [1000 * s / len(sample) for s in spent]


def calibrate_exits(
    network: SpecializedNet, held_out: Teaching, objective: Objective
) -> tuple[list[ExitMetrics], float]:
    """Each exit's threshold and metrics, and the share of held-out frames offloaded."""
    per_exit = exit_outputs(network, held_out)
    remaining = list(range(len(held_out)))
    metrics = []
    milliseconds = _ms_per_exit(network, held_out)
    for i, answers in enumerate(per_exit):
        graded = sorted(
            (_graded(answers[j], held_out.counts[j], held_out.cells[j]) for j in remaining),
            reverse=True,
        )
        threshold = _threshold(graded, objective, len(network.config.labels))
        stopped = [j for j in remaining if answers[j].sureness >= threshold]
        remaining = [j for j in remaining if answers[j].sureness < threshold]
        alone = exit_scores(answers, held_out.counts.numpy(), held_out.cells.numpy())
        metrics.append(
            ExitMetrics(
                presence_f1=alone["presence_f1"],
                presence_recall=alone["presence_recall"],
                count_accuracy=float(alone["count_accuracy"] or 0.0),
                count_mae=float(alone["count_mae"] or 0.0),
                cell_f1=alone["cell_f1"],
                cell_recall=alone["cell_recall"],
                threshold=round(threshold, 6),
                stopped_share=len(stopped) / len(held_out),
                ms_per_frame=round(milliseconds[i], 3),
            )
        )
    return metrics, len(remaining) / len(held_out)
