"""The edge node: capture, gate, classify locally, offload over MQTT, one final decision
per frame."""

from edge_node.ledger import (
    Ledger,
    LedgerCounts,
    LedgerError,
    LedgerSummary,
    RunInfo,
    list_runs,
    summarize_ledger_file,
)
from edge_node.local_model import LocalModel, LocalOutput
from edge_node.node import EdgeNode
from edge_node.pacing import Pacer, frames_per_second
from edge_node.sources import (
    CapturedFrame,
    DatasetSource,
    FrameSource,
    ImageFolderSource,
    VideoSource,
    open_source,
)

__all__ = [
    "CapturedFrame",
    "DatasetSource",
    "EdgeNode",
    "FrameSource",
    "ImageFolderSource",
    "Ledger",
    "LedgerCounts",
    "LedgerError",
    "LedgerSummary",
    "LocalModel",
    "LocalOutput",
    "Pacer",
    "RunInfo",
    "VideoSource",
    "frames_per_second",
    "list_runs",
    "open_source",
    "summarize_ledger_file",
]
