"""Bundles: several frames, or several replies, in one MQTT message.

Python MQTT costs 50-150 us of CPU per message on each side, several times what
MessagePack costs per frame, so when an edge has many frames ready at once (a replay
at full speed, a multi-camera box, a burst after a stall) it sends them as one
:class:`FrameBundle`, and a worker answers the frames of one bundle that finish in the
same batch with one :class:`ReplyBundle`. A camera at its own pace has one frame ready
at a time and sends plain :class:`FrameRequest` messages, exactly as before.

Each member is a complete encoded message (``FrameRequest.to_bytes()``, a result or an
error), so it is validated on its own: one bad frame in a bundle gets its own
``bad_request`` answer and never spoils the others. Bundles carry no per-frame MQTT 5
correlation data (every member names its frame id); only a worker that received a
bundle answers with one, so an edge that never bundles never sees one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

import msgpack

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import check_id
from pipeline.protocol.frames import ENVELOPE_ALLOWANCE, MAX_PAYLOAD_BYTES, FrameRequest
from pipeline.protocol.replies import MAX_REPLY_BYTES, Reply, decode_reply, reply_from_map

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


def _pack_with_members(message: _wire.Envelope, field: str) -> bytes:
    """``message.to_bytes()``, byte for byte, with its members copied once.

    MessagePack's packer copies each member into a buffer it grows by reallocation and
    then copies the whole buffer out. Here the other fields are packed as usual and the
    members joined behind their headers: a bundle of 16 split activations (~600 KB) in
    21 us against the packer's 40 (``bench/wire.py``)."""
    body = _wire.message_body(message)
    if next(reversed(body)) != field or len(body) > 15:  # a fixmap holds up to 15
        return _wire.encode(message)  # members not last, or many fields: the general way
    members = body.pop(field)
    assert isinstance(members, tuple)
    head = msgpack.packb(body, use_bin_type=True)
    assert isinstance(head, bytes)
    parts = [
        bytes((0x80 | (len(body) + 1),)),
        head[1:],
        msgpack.packb(field),
        _array_header(len(members)),
    ]
    for member in members:
        parts += (_bin_header(len(member)), member)
    return b"".join(parts)


def _array_header(count: int) -> bytes:
    if count <= 15:  # a fixarray
        return bytes((0x90 | count,))
    return b"\xdc" + struct.pack(">H", count)  # MAX_BUNDLE_FRAMES fits 16 bits


def _bin_header(size: int) -> bytes:
    if size <= 0xFF:
        return b"\xc4" + struct.pack(">B", size)
    if size <= 0xFFFF:
        return b"\xc5" + struct.pack(">H", size)
    return b"\xc6" + struct.pack(">I", size)


def _check_members(members: tuple[bytes, ...], what: str) -> None:
    if not 1 <= len(members) <= MAX_BUNDLE_FRAMES:
        raise ProtocolError(
            f"a {what} bundle holds 1-{MAX_BUNDLE_FRAMES} members, not {len(members)}",
            reason="bad_value",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameBundle(_wire.WireMessage):
    """Frames of one edge, each an encoded :class:`FrameRequest`, in one message."""

    MESSAGE_TYPE: ClassVar[str] = "frames"
    MAX_BYTES: ClassVar[int] = _wire.MAX_MESSAGE_BYTES

    edge_id: str
    frames: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_id(self.edge_id, "edge_id")
        _check_members(self.frames, "frame")

    def to_bytes(self) -> bytes:
        return _pack_with_members(self, "frames")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyBundle(_wire.WireMessage):
    """Answers for one edge, each an encoded result or error, in one message."""

    MESSAGE_TYPE: ClassVar[str] = "replies"
    MAX_BYTES: ClassVar[int] = _wire.MAX_MESSAGE_BYTES

    replies: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_members(self.replies, "reply")
        for member in self.replies:
            if len(member) > MAX_REPLY_BYTES:
                raise ProtocolError(
                    f"a bundled reply of {len(member)} bytes exceeds {MAX_REPLY_BYTES}",
                    reason="oversize",
                )

    def to_bytes(self) -> bytes:
        return _pack_with_members(self, "replies")


def decode_replies(
    data: bytes | bytearray | memoryview,
) -> tuple[list[Reply], list[ProtocolError]]:
    """Whatever arrived on a result topic: one reply, or a bundle's replies.

    Returns the replies that decoded and the errors of the members that did not; a
    broken envelope raises :class:`ProtocolError`, as :func:`decode_reply` does.
    """
    obj = _wire.unpack_map(data, max_bytes=ReplyBundle.MAX_BYTES)
    if _wire.message_type(obj) != ReplyBundle.MESSAGE_TYPE:
        if len(data) > MAX_REPLY_BYTES:
            raise ProtocolError(
                f"reply of {len(data)} bytes exceeds {MAX_REPLY_BYTES}", reason="oversize"
            )
        return [reply_from_map(obj)], []
    replies: list[Reply] = []
    errors: list[ProtocolError] = []
    for member in _wire.decode_as(ReplyBundle, obj).replies:
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


def decode_frames(
    data: bytes | bytearray | memoryview, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
) -> ArrivedFrames:
    """One frame request or a bundle of them; a broken envelope raises ProtocolError."""
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
    return ArrivedFrames(requests, errors, bundled=True)
