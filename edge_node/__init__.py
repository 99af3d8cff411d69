"""The edge node: capture, offload over MQTT, one final decision per frame."""

from edge_node.ledger import Ledger, LedgerCounts, LedgerError, LedgerSummary
from edge_node.node import EdgeNode
from edge_node.pacing import Pacer, frames_per_second
from edge_node.sources import (
    CapturedFrame,
    FrameSource,
    ImageFolderSource,
    VideoSource,
    open_source,
)

__all__ = [
    "CapturedFrame",
    "EdgeNode",
    "FrameSource",
    "ImageFolderSource",
    "Ledger",
    "LedgerCounts",
    "LedgerError",
    "LedgerSummary",
    "Pacer",
    "VideoSource",
    "frames_per_second",
    "open_source",
]
