"""Bundles: several frames, or several replies, in one MQTT message.

Python MQTT costs 50-150 us of CPU per message on each side, several times what
MessagePack costs per frame, so when an edge has many frames ready at once (a replay
at full speed, a multi-camera box, a burst after a stall) it sends them as one
:class:`FrameBundle`, and a worker answers the frames of one bundle that finish in the
same batch with one :class:`ReplyBundle`. A camera at its own pace has one frame ready
at a time and sends plain :class:`FrameRequest` messages, exactly as before.

An edge that sets a frame bundle's ``columns`` takes its results back as one
:class:`~pipeline.protocol.columns.ResultColumns` per batch instead of as members
(errors and detections stay members); a bundle without it is answered with members, as
before, so an edge that predates columns is answered as it expects.

Each member is a complete encoded message (``FrameRequest.to_bytes()``, a result,
detections or an error), so it is validated on its own: one bad frame in a bundle gets its own
``bad_request`` answer and never spoils the others. Bundles carry no per-frame MQTT 5
correlation data (every member names its frame id); only a worker that received a
bundle answers with one, so an edge that never bundles never sees one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import check_id
from pipeline.protocol.columns import ResultColumns
from pipeline.protocol.frames import (
    ENVELOPE_ALLOWANCE,
    MAX_PAYLOAD_BYTES,
    FrameRequest,
    check_payload_size,
)
from pipeline.protocol.replies import (
    MAX_REPLY_BYTES,
    REPLY_TYPES,
    Reply,
    decode_reply,
    reply_from_map,
)

__all__ = [
    "MAX_BUNDLE_FRAMES",
    "ArrivedFrames",
    "FrameBundle",
    "ReplyBundle",
    "decode_frames",
    "decode_replies",
]

MAX_BUNDLE_FRAMES = 256
"""Most members in one bundle; a worker's batch is smaller, so more buys nothing."""


def _check_members(members: tuple[bytes, ...], what: str) -> None:
    if not 1 <= len(members) <= MAX_BUNDLE_FRAMES:
        raise ProtocolError(
            f"a {what} bundle holds 1-{MAX_BUNDLE_FRAMES} members, not {len(members)}",
            reason="bad_value",
        )


class FrameBundle(_wire.WireMessage, frozen=True, kw_only=True):
    """Frames of one edge, each an encoded :class:`FrameRequest`, in one message."""

    MESSAGE_TYPE: ClassVar[str] = "frames"
    MAX_BYTES: ClassVar[int] = _wire.MAX_MESSAGE_BYTES

    _t: Literal["frames"] = _wire.type_field(MESSAGE_TYPE)
    edge_id: _wire.Str
    frames: _wire.Blobs
    # True: answer the results as columns (ResultColumns). Left out when None, so a
    # bundle without it is byte for byte what edges before columns sent.
    columns: bool | None = None

    def __post_init__(self) -> None:
        check_id(self.edge_id, "edge_id")
        _check_members(self.frames, "frame")


class ReplyBundle(_wire.WireMessage, frozen=True, kw_only=True):
    """Answers for one edge, each an encoded reply (any of ``REPLY_TYPES``), in one
    message."""

    MESSAGE_TYPE: ClassVar[str] = "replies"
    MAX_BYTES: ClassVar[int] = _wire.MAX_MESSAGE_BYTES

    _t: Literal["replies"] = _wire.type_field(MESSAGE_TYPE)
    replies: _wire.Blobs

    def __post_init__(self) -> None:
        _check_members(self.replies, "reply")
        for member in self.replies:
            if len(member) > MAX_REPLY_BYTES:
                raise ProtocolError(
                    f"a bundled reply of {len(member)} bytes exceeds {MAX_REPLY_BYTES}",
                    reason="oversize",
                )


def decode_replies(
    data: bytes | bytearray | memoryview,
) -> tuple[list[Reply], list[ProtocolError]]:
    """Whatever arrived on a result topic: one reply, or a bundle's replies.

    Returns the replies that decoded and the errors of the members that did not; a
    broken envelope raises :class:`ProtocolError`, as :func:`decode_reply` does. A
    :class:`ResultColumns` becomes its results, one per frame.
    """
    message = _wire.decode_fast(data, (ReplyBundle, ResultColumns, *REPLY_TYPES))
    if isinstance(message, REPLY_TYPES):
        return [message], []
    if isinstance(message, ResultColumns):
        return list(message.results()), []
    bundle = message if isinstance(message, ReplyBundle) else None
    if bundle is None:  # the checked path
        obj = _wire.unpack_map(data, max_bytes=ReplyBundle.MAX_BYTES)
        if _wire.message_type(obj) == ResultColumns.MESSAGE_TYPE:
            if len(data) > ResultColumns.MAX_BYTES:
                raise ProtocolError(
                    f"a columns reply of {len(data)} bytes exceeds {ResultColumns.MAX_BYTES}",
                    reason="oversize",
                )
            return list(_wire.decode_as(ResultColumns, obj).results()), []
        if _wire.message_type(obj) != ReplyBundle.MESSAGE_TYPE:
            if len(data) > MAX_REPLY_BYTES:
                raise ProtocolError(
                    f"reply of {len(data)} bytes exceeds {MAX_REPLY_BYTES}", reason="oversize"
                )
            return [reply_from_map(obj)], []
        bundle = _wire.decode_as(ReplyBundle, obj)
    replies: list[Reply] = []
    errors: list[ProtocolError] = []
    for member in bundle.replies:
        try:
            replies.append(decode_reply(member))
        except ProtocolError as exc:
            errors.append(exc)
    return replies, errors


@dataclass(frozen=True, slots=True)
class ArrivedFrames:
    """What one message on a frames topic held: valid requests and refused members."""

    requests: list[FrameRequest]
    errors: list[ProtocolError]  # each with the member's frame id when it could be read
    bundled: bool  # the sender bundles, so it also takes bundled replies
    columns: bool = False  # and takes its results as columns


def decode_frames(
    data: bytes | bytearray | memoryview, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
) -> ArrivedFrames:
    """One frame request or a bundle of them; a broken envelope raises ProtocolError."""
    message = _wire.decode_fast(data, (FrameRequest, FrameBundle))
    if isinstance(message, FrameRequest) and len(data) <= max_payload_bytes + ENVELOPE_ALLOWANCE:
        request = check_payload_size(message, max_payload_bytes)
        return ArrivedFrames([request], [], bundled=False)
    bundle = message if isinstance(message, FrameBundle) else None
    if bundle is None:  # the checked path
        obj = _wire.unpack_map(data, max_bytes=_wire.MAX_MESSAGE_BYTES)
        if _wire.message_type(obj) != FrameBundle.MESSAGE_TYPE:
            if len(data) > max_payload_bytes + ENVELOPE_ALLOWANCE:
                raise ProtocolError(
                    f"message of {len(data)} bytes exceeds the limit of "
                    f"{max_payload_bytes + ENVELOPE_ALLOWANCE}",
                    reason="oversize",
                )
            request = FrameRequest.from_map(obj, max_payload_bytes=max_payload_bytes)
            return ArrivedFrames([request], [], bundled=False)
        bundle = _wire.decode_as(FrameBundle, obj)
    requests: list[FrameRequest] = []
    errors: list[ProtocolError] = []
    for member in bundle.frames:
        try:
            requests.append(FrameRequest.from_bytes(member, max_payload_bytes=max_payload_bytes))
        except ProtocolError as exc:
            errors.append(exc)
    return ArrivedFrames(requests, errors, bundled=True, columns=bool(bundle.columns))
