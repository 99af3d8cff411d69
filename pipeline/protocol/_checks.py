"""Field-level invariants shared by the envelopes (ids, ranges)."""

from __future__ import annotations

import re
from typing import TypeGuard

from pipeline.errors import ProtocolError

MAX_ID_CHARS = 128
MAX_LABEL = 2**31 - 1
"""The largest class index a reply may carry: what an edge's SQLite ledger stores."""
MAX_REPLY_BYTES = 256 * 1024
"""Ceiling on one encoded reply (result, detections or error), alone or in a bundle.
Here, not in ``replies``, so that every reply module can import it without a cycle."""
# 1-128 characters, none of them '/', '+', '#' or NUL: one C call per id (ids are
# checked on every frame and reply).
_VALID_ID = re.compile(rf"[^/+#\x00]{{1,{MAX_ID_CHARS}}}")


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _VALID_ID.fullmatch(value) is not None


def safe_id(value: object) -> str | None:
    """``value`` if it is a valid id, to attach to an error; otherwise ``None``."""
    return value if is_valid_id(value) else None


def check_id(value: str, field: str, frame_id: str | None = None) -> None:
    """An id becomes a topic level, so it must be a non-empty level without wildcards."""
    if not is_valid_id(value):
        raise ProtocolError(
            f"field {field!r}: {value[:40]!r} is not a valid id "
            f"(1-{MAX_ID_CHARS} chars, no '/', '+', '#' or NUL)",
            reason="bad_value",
            frame_id=frame_id,
        )


def check_range(
    value: float | None, field: str, lo: float, hi: float, frame_id: str | None = None
) -> None:
    if value is not None and not lo <= value <= hi:
        raise ProtocolError(
            f"field {field!r}: {value!r} is outside [{lo}, {hi}]",
            reason="bad_value",
            frame_id=frame_id,
        )


def check_non_negative(values: dict[str, float], frame_id: str | None = None) -> None:
    for field, value in values.items():
        if value < 0:
            raise ProtocolError(
                f"field {field!r}: {value!r} is negative", reason="bad_value", frame_id=frame_id
            )
