"""The one error tree of camoffload.

Every failure the pipeline knows how to describe is raised as one of these, with
structured attributes so callers can act on it without parsing messages::

    CamoffloadError
    ├── ProtocolError      a message on the wire is malformed (reason, frame_id)
    ├── ConfigError        configuration is invalid or incomplete (key)
    ├── CodecError         an image or tensor payload cannot be encoded/decoded
    ├── ModelError         an unknown model name, or weights that cannot be loaded
    ├── SourceError        a capture source cannot be opened or read
    ├── BrokerError        a broker process cannot be started or stopped
    └── TransportError     the MQTT connection failed or was lost

Third-party exceptions (paho/aiomqtt, OpenCV, torch) are translated into these at the
boundary, chained with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CamoffloadError",
    "CodecError",
    "ConfigError",
    "ModelError",
    "ProtocolError",
    "SourceError",
    "TransportError",
]


class CamoffloadError(Exception):
    """Base class of every error that camoffload raises on purpose."""


class ProtocolError(CamoffloadError):
    """A message could not be decoded or violates the schema.

    ``reason`` is a short machine-readable slug (``"not_msgpack"``, ``"missing_field"``,
    ...); ``frame_id`` is the request id when it could be read, so the sender can match
    an error reply to its request.
    """

    def __init__(self, message: str, *, reason: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.frame_id = frame_id


class ConfigError(CamoffloadError):
    """Configuration is invalid; ``key`` names the offending setting when there is one."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class CodecError(CamoffloadError):
    """An image or tensor payload could not be encoded or decoded."""


class ModelError(CamoffloadError):
    """A model is unknown or its weights cannot be loaded."""


class SourceError(CamoffloadError):
    """A capture source (camera, stream, file, folder) cannot be opened or read."""


class BrokerError(CamoffloadError):
    """A broker process could not be started, did not come up, or failed."""


class TransportError(CamoffloadError):
    """The MQTT connection could not be made or was lost."""
