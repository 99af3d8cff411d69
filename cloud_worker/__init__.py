"""The asyncio cloud worker: shared subscription, dynamic batching, replies."""

from cloud_worker.stats import WorkerStats
from cloud_worker.worker import CloudWorker

__all__ = ["CloudWorker", "WorkerStats"]
