"""The one error tree of camoffload.

Every failure the pipeline knows how to describe is raised as one of these, with
structured attributes so callers can act on it without parsing messages::

    CamoffloadError
    ├── ProtocolError        a message on the wire is malformed (reason, frame_id)
    ├── ConfigError          configuration is invalid or incomplete (key)
    │   └── CalibrationError a Gompertz calibration file is missing or invalid (path)
    ├── CodecError           an image or tensor payload cannot be encoded/decoded
    ├── ModelError           an unknown model name, or weights that cannot be loaded
    ├── SourceError          a capture source cannot be opened or read
    ├── DatasetError         a data set is missing or its files are not what they claim
    ├── LedgerError          a frame decided twice, or a ledger file unusable (reason)
    ├── BrokerError          a broker process cannot be started or stopped
    └── TransportError       the MQTT connection could not be made, or was lost
        └── LinkLostError    ... while a frame waited for its reply

Third-party exceptions are translated into these at one boundary each, chained with
``raise ... from exc``: aiomqtt's ``MqttError`` by the service runtime's broker link
(:class:`pipeline.service.BrokerLink`), OpenCV's failures in
:mod:`pipeline.codecs` and the capture sources, torch's when weights load. The same
failure raises the same error on the edge and on the worker: a broker that cannot be
reached at start is a :class:`TransportError` on both.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BrokerError",
    "CalibrationError",
    "CamoffloadError",
    "CodecError",
    "ConfigError",
    "DatasetError",
    "LedgerError",
    "LinkLostError",
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


class CalibrationError(ConfigError):
    """A calibration file is missing, unreadable, or not a valid calibration."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message, key="edge.calibration")
        self.path = None if path is None else str(path)


class CodecError(CamoffloadError):
    """An image or tensor payload could not be encoded or decoded."""


class ModelError(CamoffloadError):
    """A model is unknown or its weights cannot be loaded."""


class SourceError(CamoffloadError):
    """A capture source (camera, stream, file, folder) cannot be opened or read."""


class DatasetError(CamoffloadError):
    """A data set is missing or its files are not what they claim to be."""


class LedgerError(CamoffloadError):
    """A frame captured or decided twice (a bug, never input's fault), or a ledger file
    that cannot be used; ``reason`` is a slug (see :mod:`edge_node.ledger`)."""

    def __init__(self, message: str, *, reason: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.frame_id = frame_id


class BrokerError(CamoffloadError):
    """A broker process could not be started, did not come up, or failed."""


class TransportError(CamoffloadError):
    """The MQTT connection could not be made or was lost."""


class LinkLostError(TransportError):
    """The broker connection dropped while a frame waited for its reply."""
