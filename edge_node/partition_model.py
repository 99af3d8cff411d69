"""The edge side of a partition: an early-exit network that can stop at any split point.

:meth:`PartitionedModel.profile` measures this device's time to each point (the median
of repeated runs on a blank input of the model's size) and works out what each point
would send and leave to the worker; :meth:`PartitionedModel.run` computes a frame up to
the point the planner chose. Synchronous and CPU-bound: call both from a thread.

``device_slowdown`` emulates a slower edge device (a Pi-class board next to a server)
on a machine where edge and worker share one CPU: every local computation holds its
thread that many times as long. It is an experiment's stated assumption, not a
measurement of any device.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch

from edge_node.local_model import LocalOutput
from edge_node.partition import SplitPoint
from pipeline.codecs import Image
from pipeline.errors import ModelError
from pipeline.inference import Classifier, resolve_device
from pipeline.models import get_model_spec
from pipeline.models.flops import macs_per_exit
from pipeline.protocol import TensorDType
from pipeline.quantize import TensorWireDType, wire_activation

__all__ = ["REQUEST_OVERHEAD_BYTES", "PartitionedModel"]

# Envelope, topic and MQTT header around a payload, near enough for a latency estimate.
REQUEST_OVERHEAD_BYTES = 400


class PartitionedModel:
    def __init__(
        self,
        name: str,
        *,
        device: str = "cpu",
        device_slowdown: float = 1.0,
        tensor_dtype: TensorWireDType = "uint8",
    ) -> None:
        self.tensor_dtype = tensor_dtype
        self._classifier = Classifier(get_model_spec(name), resolve_device(device))
        network = self._classifier.network
        if network is None:
            raise ModelError(f"{name} is not an early-exit model: it cannot be partitioned")
        self.name = name
        self.stages = network.config.num_stages
        self.local_point = self.stages
        self._parts = {k: network.edge_part(k).eval() for k in range(1, self.stages)}
        self._whole = network.final_exit().eval()
        self._network = network
        self._slowdown = device_slowdown

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) the network takes."""
        return self._classifier.input_shape

    def profile(self, jpeg_bytes: float, *, repeats: int = 15) -> list[SplitPoint]:
        """Every split point, timed on this device (see the module)."""
        example = self._classifier.preprocess([self._blank()])
        macs = macs_per_exit(self._network, example)
        total = float(macs[-1])
        points = [SplitPoint(0, 0.0, jpeg_bytes + REQUEST_OVERHEAD_BYTES, 1.0)]
        for k, part in self._parts.items():
            activation = int(np.prod(self._classifier.activation_shape(k)))
            points.append(
                SplitPoint(
                    k,
                    self._time_ms(part, example, repeats),
                    TensorDType(self.tensor_dtype).itemsize * activation + REQUEST_OVERHEAD_BYTES,
                    max(0.0, 1.0 - macs[k - 1] / total),
                )
            )
        points.append(
            SplitPoint(self.local_point, self._time_ms(self._whole, example, repeats), 0.0, 0.0)
        )
        # A longer prefix never costs less; a noisy machine can make it look so.
        for i in range(2, len(points)):
            if points[i].edge_ms < points[i - 1].edge_ms:
                points[i] = dataclasses.replace(points[i], edge_ms=points[i - 1].edge_ms)
        return points

    def run(self, point: int, image: Image) -> LocalOutput:
        """Compute ``image`` up to ``point`` (1 .. stages): the exit's answer there, and
        the activation to send (None when the whole network ran here)."""
        started = time.monotonic()
        with torch.inference_mode():
            x = self._classifier.preprocess([image])
            if point == self.local_point:
                logits, activation = self._whole(x), None
            elif point in self._parts:
                output = self._parts[point](x)
                assert output.logits is not None  # a split >= 1 has an exit
                logits = output.logits
                activation = wire_activation(output.activation[0], self.tensor_dtype)
            else:
                raise ModelError(f"{self.name}: no split point {point} (1..{self.stages})")
            probs = torch.softmax(logits.float(), dim=1)[0]
            confidence, label = probs.max(dim=0)
        self._hold(time.monotonic() - started)
        return LocalOutput(int(label), min(1.0, float(confidence)), activation)

    def _time_ms(self, module: torch.nn.Module, example: torch.Tensor, repeats: int) -> float:
        times = []
        with torch.inference_mode():
            module(example)  # warm-up: first calls allocate
            for _ in range(repeats):
                started = time.perf_counter()
                module(example)
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times) * self._slowdown

    def _hold(self, elapsed_s: float) -> None:
        if self._slowdown > 1.0:
            time.sleep((self._slowdown - 1.0) * elapsed_s)

    def _blank(self) -> Image:
        channels, height, width = self._classifier.input_shape
        return np.zeros((height, width, channels), dtype=np.uint8)
