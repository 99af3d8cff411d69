"""The shared core of camoffload: wire protocol, topics, configuration, codecs, models.

Subpackages and modules are imported explicitly (``from pipeline.protocol import
FrameRequest``); importing ``pipeline`` itself loads nothing heavy.
"""

from pipeline.errors import (
    BrokerError,
    CamoffloadError,
    CodecError,
    ConfigError,
    ModelError,
    ProtocolError,
    SourceError,
    TransportError,
)

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
