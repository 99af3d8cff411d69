"""A bundle's answers as columns: one envelope for many frames' results.

A worker that answers a :class:`~pipeline.protocol.FrameBundle` with ``columns`` set
sends the results of one batch to that edge as one :class:`ResultColumns`: the fields
every result shares (worker, model) once, and each per-frame field (frame id, label,
top-k, timings) as an array. Nothing per frame is built or encoded one message at a
time: msgspec writes and reads the arrays in C, and the invariants a
:class:`~pipeline.protocol.Result` checks one by one are checked over each column at
once (``min``/``max``). Errors and detections still travel as members of a
:class:`~pipeline.protocol.ReplyBundle`.

The top-k columns are flat: frame ``i``'s top-k are items ``i*topk .. i*topk+topk-1``.
A column holds at most ``MAX_ARRAY_ITEMS`` items like any array of the protocol, so a
worker sends at most ``MAX_ARRAY_ITEMS // topk`` frames in one message
(:func:`frames_per_message`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import ClassVar, Literal, NamedTuple

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import MAX_LABEL, check_id, is_valid_id
from pipeline.protocol.replies import Result

__all__ = ["ResultColumns", "ResultRow", "frames_per_message"]

MAX_COLUMN_FRAMES = 256
"""Most frames in one columns message: a bundle's most (``MAX_BUNDLE_FRAMES``)."""


class ResultRow(NamedTuple):
    """One frame's answer before it becomes a column entry (what the worker computes)."""

    frame_id: str
    label: int
    label_name: str
    topk_labels: tuple[int, ...]
    topk_scores: tuple[float, ...]
    model: str
    model_version: str
    queue_ms: float
    decode_ms: float
    inference_ms: float
    batch_size: int


def frames_per_message(topk: int) -> int:
    """Most frames one :class:`ResultColumns` holds at ``topk`` labels a frame."""
    return max(1, min(MAX_COLUMN_FRAMES, _wire.MAX_ARRAY_ITEMS // max(1, topk)))


class ResultColumns(_wire.WireMessage, frozen=True, kw_only=True):
    """The results for one edge's frames from one worker's batch, column by column."""

    MESSAGE_TYPE: ClassVar[str] = "result_columns"
    MAX_BYTES: ClassVar[int] = 1024 * 1024

    _t: Literal["result_columns"] = _wire.type_field(MESSAGE_TYPE)
    worker_id: _wire.Str
    model: _wire.Str
    model_version: _wire.Str
    frame_ids: _wire.Strs
    labels: _wire.Ints
    label_names: _wire.Strs
    topk: int
    topk_labels: _wire.Ints
    topk_scores: _wire.Floats
    queue_ms: _wire.Floats
    decode_ms: _wire.Floats
    inference_ms: _wire.Floats
    batch_sizes: _wire.Ints

    def __post_init__(self) -> None:
        check_id(self.worker_id, "worker_id")
        frames = len(self.frame_ids)
        if not 1 <= frames <= MAX_COLUMN_FRAMES:
            raise ProtocolError(
                f"a columns reply holds 1-{MAX_COLUMN_FRAMES} frames, not {frames}",
                reason="bad_value",
            )
        for frame_id in self.frame_ids:
            if not is_valid_id(frame_id):
                check_id(frame_id, "frame_ids[]")  # raises: the id is not valid
        per_frame = (
            self.labels,
            self.label_names,
            self.queue_ms,
            self.decode_ms,
            self.inference_ms,
            self.batch_sizes,
        )
        if any(len(column) != frames for column in per_frame):
            raise ProtocolError(
                f"every per-frame column must hold {frames} items", reason="bad_value"
            )
        if self.topk < 1 or len(self.topk_labels) != frames * self.topk:
            raise ProtocolError(
                f"'topk_labels' must hold topk x {frames} items", reason="bad_value"
            )
        if len(self.topk_scores) != len(self.topk_labels):
            raise ProtocolError(
                "'topk_labels' and 'topk_scores' must be of equal length", reason="bad_value"
            )
        self._check_values()

    def _check_values(self) -> None:
        """The ranges a :class:`Result` checks, each over a whole column in C."""
        if min(self.topk_scores) < 0.0 or max(self.topk_scores) > 1.0:
            raise ProtocolError("'topk_scores' must lie in [0, 1]", reason="bad_value")
        labels, topk_labels = self.labels, self.topk_labels
        if min(labels) < 0 or max(labels) > MAX_LABEL:
            raise ProtocolError(
                f"a label is not a class index (0..{MAX_LABEL})", reason="bad_value"
            )
        if min(topk_labels) < 0 or max(topk_labels) > MAX_LABEL:
            raise ProtocolError(
                f"a top-k label is not a class index (0..{MAX_LABEL})", reason="bad_value"
            )
        if min(self.batch_sizes) < 1:
            raise ProtocolError("'batch_sizes' must be >= 1", reason="bad_value")
        if min(self.queue_ms) < 0 or min(self.decode_ms) < 0 or min(self.inference_ms) < 0:
            raise ProtocolError("a timing column holds a negative value", reason="bad_value")

    @classmethod
    def of_rows(cls, rows: Sequence[ResultRow], *, worker_id: str) -> ResultColumns:
        """The columns of ``rows``: one model's answers, each with as many top-k labels.
        Raises :class:`ProtocolError` where they are not."""
        (ids, labels, names, topk_labels, topk_scores, models, versions, queue, decode,
         inference, sizes) = zip(*rows, strict=True)  # fmt: skip
        topk = len(topk_labels[0])
        if len(set(models)) != 1 or len(set(versions)) != 1:
            raise ProtocolError("a columns reply holds one model's answers", reason="bad_value")
        if any(len(row) != topk for row in topk_labels):
            raise ProtocolError(f"every row needs {topk} top-k labels", reason="bad_value")
        return cls(
            worker_id=worker_id,
            model=models[0],
            model_version=versions[0],
            frame_ids=ids,
            labels=labels,
            label_names=names,
            topk=topk,
            topk_labels=tuple(itertools.chain.from_iterable(topk_labels)),
            topk_scores=tuple(itertools.chain.from_iterable(topk_scores)),
            queue_ms=queue,
            decode_ms=decode,
            inference_ms=inference,
            batch_sizes=sizes,
        )

    def results(self) -> list[Result]:
        """One :class:`Result` per frame, as the worker would have sent it alone."""
        k = self.topk
        worker_id, model, version = self.worker_id, self.model, self.model_version
        return [
            Result(
                frame_id=frame_id,
                worker_id=worker_id,
                label=label,
                label_name=name,
                topk_labels=self.topk_labels[i * k : i * k + k],
                topk_scores=self.topk_scores[i * k : i * k + k],
                model=model,
                model_version=version,
                queue_ms=queue,
                decode_ms=decode,
                inference_ms=inference,
                batch_size=size,
            )
            for i, (frame_id, label, name, queue, decode, inference, size) in enumerate(
                zip(
                    self.frame_ids,
                    self.labels,
                    self.label_names,
                    self.queue_ms,
                    self.decode_ms,
                    self.inference_ms,
                    self.batch_sizes,
                    strict=True,
                )
            )
        ]
