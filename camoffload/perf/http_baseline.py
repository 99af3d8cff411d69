"""The seed study's HTTP design, as a baseline for the MQTT pipeline: FastAPI + uvicorn.

What it is: the design this project replaces (``/work/shared/DESIGN.md``). One FastAPI
app, served by uvicorn in a child process on 127.0.0.1 and an ephemeral port; or, as
the strongest form of the baseline on a multi-core box, one such process per share of
the cores, pinned, with the client spreading its requests over them
(:func:`http_servers`). A client POSTs one frame per request to ``/classify`` as a
binary body, described by headers: ``X-Kind`` (``jpeg``, ``raw``, ``tensor``,
``split`` or ``split16``, the payloads of :mod:`camoffload.perf.workload`), ``X-Shape``,
``X-Dtype`` and ``X-Split``, and for uint8 split codes ``X-Scale`` and ``X-Offset``.

The server decodes the body (OpenCV for a JPEG, numpy for the rest), runs the SAME
model as the cloud worker (``Classifier.by_name(model, "cpu")``, the frozen graph) at
batch 1 per request on one inference thread (``run_in_executor`` on a one-thread pool,
as the seed did, so the event loop is never blocked and the classifier's staging
buffers are never shared between threads), and answers JSON ``{"label": int,
"confidence": float}``. Access logs are off (they would only slow the baseline down).

The client is an ``httpx.AsyncClient`` with a bounded number of requests in flight,
over the same pre-encoded frames the pipeline is driven with. Needs the ``bench``
extra (fastapi, uvicorn, httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from camoffload.perf.workload import Workload
from pipeline.allocator import keep_freed_memory
from pipeline.children import supervised
from pipeline.codecs import decode_jpeg
from pipeline.cpus import cpu_shares, format_cpus, parse_cpus, pin_process
from pipeline.errors import CodecError
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier, Prediction
from pipeline.quantize import QuantizedTensor

HOST = "127.0.0.1"
PORT_LINE = "HTTP_BASELINE_PORT "
_DTYPES: dict[str, np.dtype[Any]] = {
    "uint8": np.dtype(np.uint8),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
}


# --------------------------------------------------------------------------- server


class Label(BaseModel):
    """The JSON answer: the top-1 class and its softmax score."""

    label: int
    confidence: float


def make_app(model: str) -> FastAPI:
    """The seed design's FastAPI app; the model loads at startup, not at import."""
    state: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-infer")
        loop = asyncio.get_running_loop()
        state["classifier"] = await loop.run_in_executor(
            executor, lambda: Classifier.by_name(model, "cpu")
        )
        state["executor"] = executor
        try:
            yield
        finally:
            executor.shutdown(wait=True)

    app = FastAPI(title="camoffload seed HTTP baseline", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model}

    @app.post("/classify", response_model=Label)
    async def classify(request: Request) -> Label:
        classifier = state["classifier"]
        executor = state["executor"]
        assert isinstance(classifier, Classifier)
        assert isinstance(executor, ThreadPoolExecutor)
        body = await request.body()
        try:
            work = _work_for(classifier, request.headers, body)
        except (CodecError, KeyError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        loop = asyncio.get_running_loop()
        (prediction,) = await loop.run_in_executor(executor, work)
        return Label(label=prediction.label, confidence=prediction.topk_scores[0])

    return app


def _work_for(
    classifier: Classifier, headers: Mapping[str, str], body: bytes
) -> Callable[[], list[Prediction]]:
    """What the inference thread runs for one request; raises on a malformed one."""
    kind = headers.get("x-kind", "raw")
    shape = tuple(int(part) for part in headers["x-shape"].split(","))
    if kind == "jpeg":
        image = decode_jpeg(body, expected_shape=shape)
        return lambda: classifier.predict([image])
    dtype = _DTYPES[headers.get("x-dtype", "uint8")]
    if not shape or min(shape) < 1 or int(np.prod(shape)) * dtype.itemsize != len(body):
        raise ValueError(f"{len(body)} bytes do not make {dtype} {shape}")
    array = np.frombuffer(body, dtype=dtype).reshape(shape).copy()  # torch wants writable
    if kind == "raw":
        return lambda: classifier.predict([array])
    if kind == "tensor":
        return lambda: classifier.predict_inputs([array])
    if kind in ("split", "split16"):
        split = int(headers["x-split"])
        if dtype == np.uint8:
            codes = QuantizedTensor(array, float(headers["x-scale"]), float(headers["x-offset"]))
            return lambda: classifier.predict_from_split(split, [codes])
        return lambda: classifier.predict_from_split(split, [array])
    raise ValueError(f"X-Kind {kind!r} is not jpeg, raw, tensor, split or split16")


async def _serve(model: str, cpus: frozenset[int] | None, threads: int | None) -> None:
    """Child process: uvicorn on an ephemeral port; print the port once it listens."""
    keep_freed_memory()  # the workers' allocator setting: the designs differ, not malloc
    if cpus is not None:
        pin_process(cpus)  # as the pipeline's pinned workers are
    if threads is not None:
        torch.set_num_threads(threads)
    config = uvicorn.Config(
        make_app(model),
        host=HOST,
        port=0,
        workers=1,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started:
        if task.done():
            await task  # raises what failed at startup
            return
        await asyncio.sleep(0.05)
    freeze_heap()  # as the workers do once their model is loaded: the same GC pauses
    port = server.servers[0].sockets[0].getsockname()[1]
    sys.stdout.write(f"{PORT_LINE}{port}\n")  # the parent reads the port from here
    sys.stdout.flush()
    await task


@contextlib.asynccontextmanager
async def http_servers(
    model: str, processes: int = 1, *, pin: bool = True
) -> AsyncIterator[list[str]]:
    """``processes`` servers, the base URL of each: one process with torch's default
    threads, or (``processes`` > 1) one per share of the cores with a thread per core of
    its share, pinned to it unless ``pin`` is false, as the pipeline's workers run.
    Stopped on exit."""
    async with contextlib.AsyncExitStack() as stack:
        if processes == 1:
            yield [await stack.enter_async_context(http_server(model))]
            return
        yield [
            await stack.enter_async_context(
                http_server(model, cpus=cpus if pin else None, threads=len(cpus))
            )
            for cpus in cpu_shares(processes)
        ]


@contextlib.asynccontextmanager
async def http_server(
    model: str, *, cpus: frozenset[int] | None = None, threads: int | None = None
) -> AsyncIterator[str]:
    """Start the server in a child process, yield its base URL once it answers, stop it."""
    argv = ["--model", model]
    if cpus is not None:
        argv += ["--cpus", format_cpus(cpus)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    # Under the supervisor: the server dies with us, even if we are SIGKILLed.
    proc = await asyncio.create_subprocess_exec(
        *supervised([sys.executable, "-m", "camoffload.perf.http_baseline", "--serve", *argv]),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(180):
            line = (await proc.stdout.readline()).decode()
            if not line.startswith(PORT_LINE):
                raise RuntimeError(f"the HTTP server exited before listening ({line!r})")
            url = f"http://{HOST}:{int(line[len(PORT_LINE) :])}"
            async with httpx.AsyncClient(base_url=url) as client:
                for _attempt in range(100):
                    if (await client.get("/health")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"the HTTP server at {url} never answered /health")
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


# --------------------------------------------------------------------------- client


@dataclasses.dataclass
class Row:
    concurrency: int
    frames_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    answered: int
    errors: int
    accuracy: float


def headers_for(workload: Workload) -> list[dict[str, str]]:
    """The headers that describe each body of ``workload``."""
    headers = {
        "x-kind": workload.kind,
        "x-shape": ",".join(map(str, workload.shape)),
        "x-dtype": workload.dtype.value,
    }
    if workload.split is not None:
        headers["x-split"] = str(workload.split)
    if workload.tensor_params is None:
        return [headers] * workload.count
    return [
        {**headers, "x-scale": repr(scale), "x-offset": repr(offset)}
        for scale, offset in workload.tensor_params
    ]


async def drive_http(url: str | Sequence[str], workload: Workload, concurrency: int) -> Row:
    """POST every frame of ``workload`` with ``concurrency`` in flight; one Row.

    Several URLs (one per server process) share the senders round robin, and every
    sender takes the next unsent frame, so a faster server gets more of them."""
    urls = [url] if isinstance(url, str) else list(url)
    bodies, headers, labels = workload.payloads, headers_for(workload), workload.labels
    latencies: list[float] = []
    errors = correct = 0
    todo: Iterator[int] = iter(range(len(bodies)))
    per_url = -(-concurrency // len(urls))  # ceiling division
    limits = httpx.Limits(max_connections=per_url, max_keepalive_connections=per_url)

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal errors, correct
        for i in todo:  # shared iterator: each index is sent once, by one sender
            sent = time.perf_counter()
            try:
                response = await client.post("/classify", content=bodies[i], headers=headers[i])
                response.raise_for_status()
                label = int(response.json()["label"])
            except (httpx.HTTPError, KeyError, ValueError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - sent)
            correct += int(label == labels[i])

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=u, limits=limits, timeout=120)
            )
            for u in urls
        ]
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for n in range(concurrency):
                group.create_task(sender(clients[n % len(clients)]), name=f"sender-{n}")
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Row(
        concurrency,
        len(latencies) / elapsed,
        float(p50),
        float(p95),
        float(p99),
        len(latencies),
        errors,
        correct / len(bodies),
    )


def main() -> None:
    """The server process (``python -m camoffload.perf.http_baseline --serve``)."""
    parser = argparse.ArgumentParser(description="the HTTP baseline's server process")
    parser.add_argument("--model", default="fmnist_exit_resnet")
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--cpus", type=parse_cpus, help="pin the server to these cores")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    asyncio.run(_serve(args.model, args.cpus, args.threads))


if __name__ == "__main__":
    main()
