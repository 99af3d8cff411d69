"""The seed study's HTTP design, as a baseline for the MQTT pipeline: FastAPI + uvicorn.

What it is: the design this project replaces (``/work/shared/DESIGN.md``). One FastAPI
app, served by uvicorn (one process, ``--workers 1``) in a child process on 127.0.0.1
and an ephemeral port. A client POSTs one frame per request to ``/classify`` as a binary
body, with its shape and dtype in the ``X-Shape`` / ``X-Dtype`` headers:

- ``--payload raw``: the uint8 pixels (h, w, c), resized and normalised by the server;
- ``--payload tensor``: an already normalised float32 input tensor (c, h, w).

The server decodes the body with numpy, runs the SAME model as the cloud worker
(``Classifier.by_name(model, "cpu")``) at batch 1 per request on one inference thread
(``run_in_executor`` on a one-thread pool, as the worker does, so the event loop is never
blocked and the classifier's staging buffers are never shared between threads), and
answers JSON ``{"label": int, "confidence": float}``. Access logs are off (they would
only slow the baseline down).

What it measures: an ``httpx.AsyncClient`` keeps a bounded window of requests in flight
(1, 8, 32, 64 ...: the same windows the MQTT benchmarks use) over a fixed set of
Fashion-MNIST test images, and reports frames/s, latency p50/p95/p99 (send to JSON
parsed, per request), errors and top-1 for each window, after an untimed warm-up pass.
Client and server share the machine's cores, as in ``bench/worker.py``. The last line,
``RESULT http_fps_max=...``, is the best throughput over the windows.

    .venv/bin/python bench/http_baseline.py [--frames 2000] [--concurrency 1,8,32,64] \\
        [--model fmnist_exit_resnet] [--payload raw|tensor]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from pipeline.inference import Classifier
from pipeline.models import get_model_spec
from pipeline.training.datasets import load_fashion_mnist

HOST = "127.0.0.1"
PORT_LINE = "HTTP_BASELINE_PORT "
Payload = Literal["raw", "tensor"]
_DTYPES: dict[str, np.dtype[Any]] = {"uint8": np.dtype(np.uint8), "float32": np.dtype(np.float32)}


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
        dtype = _DTYPES.get(request.headers.get("x-dtype", "uint8"))
        if dtype is None:
            raise HTTPException(status_code=400, detail="X-Dtype must be uint8 or float32")
        try:
            shape = tuple(int(part) for part in request.headers["x-shape"].split(","))
        except (KeyError, ValueError):
            raise HTTPException(status_code=400, detail="X-Shape must be like 28,28,1") from None
        body = await request.body()
        if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) * dtype.itemsize != len(body):
            raise HTTPException(
                status_code=400, detail=f"{len(body)} bytes do not make {dtype} {shape}"
            )
        array = np.frombuffer(body, dtype=dtype).reshape(shape).copy()  # torch wants writable
        if dtype == np.uint8:
            work = lambda: classifier.predict([array])  # noqa: E731
        elif shape == classifier.input_shape:
            work = lambda: classifier.predict_inputs([array])  # noqa: E731
        else:
            raise HTTPException(
                status_code=400, detail=f"a float32 tensor must be {classifier.input_shape}"
            )
        loop = asyncio.get_running_loop()
        (prediction,) = await loop.run_in_executor(executor, work)
        return Label(label=prediction.label, confidence=prediction.topk_scores[0])

    return app


async def _serve(model: str) -> None:
    """Child process: uvicorn on an ephemeral port; print the port once it listens."""
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
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"{PORT_LINE}{port}", flush=True)
    await task


@contextlib.asynccontextmanager
async def http_server(model: str) -> AsyncIterator[str]:
    """Start the server in a child process, yield its base URL once it answers, stop it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--model", model, stdout=asyncio.subprocess.PIPE
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


def _bodies(images: np.ndarray, model: str, payload: Payload) -> tuple[list[bytes], dict[str, str]]:
    """The request bodies and the headers that describe them."""
    if payload == "raw":
        shape = images.shape[1:]
        return [image.tobytes() for image in images], {
            "x-dtype": "uint8",
            "x-shape": ",".join(map(str, shape)),
        }
    spec = get_model_spec(model)
    height, width = spec.input_size
    if images.shape[1:3] != (height, width) or images.shape[3] != spec.channels:
        raise SystemExit(f"--payload tensor needs images of the model's input, not {images.shape}")
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    tensors = (images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
    return [np.ascontiguousarray(t, dtype=np.float32).tobytes() for t in tensors], {
        "x-dtype": "float32",
        "x-shape": ",".join(map(str, tensors.shape[1:])),
    }


async def _drive(
    url: str, bodies: list[bytes], headers: dict[str, str], labels: np.ndarray, concurrency: int
) -> Row:
    """Send every body with ``concurrency`` requests in flight; one Row of results."""
    latencies: list[float] = []
    errors = correct = 0
    todo: Iterator[int] = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal errors, correct
        for i in todo:  # shared iterator: each index is sent once, by one sender
            sent = time.perf_counter()
            try:
                response = await client.post("/classify", content=bodies[i], headers=headers)
                response.raise_for_status()
                label = int(response.json()["label"])
            except (httpx.HTTPError, KeyError, ValueError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - sent)
            correct += int(label == labels[i])

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for n in range(concurrency):
                group.create_task(sender(client), name=f"sender-{n}")
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


async def _run(args: argparse.Namespace) -> list[Row]:
    test = load_fashion_mnist(split="test").head(args.frames)
    bodies, headers = _bodies(test.images, args.model, args.payload)
    rows = []
    async with http_server(args.model) as url:
        for concurrency in args.concurrency:
            # Warm-up (connections, allocator, oneDNN kernel choice) outside the timing.
            warm = min(len(bodies), max(64, 2 * concurrency))
            await _drive(url, bodies[:warm], headers, test.labels, concurrency)
            rows.append(await _drive(url, bodies, headers, test.labels, concurrency))
    return rows


def _concurrency(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument(
        "--concurrency", type=_concurrency, default=[1, 8, 32, 64], help="requests in flight"
    )
    parser.add_argument("--model", default="fmnist_exit_resnet")
    parser.add_argument("--payload", choices=("raw", "tensor"), default="raw")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.model))
        return
    rows = asyncio.run(_run(args))
    body = "uint8 pixels" if args.payload == "raw" else "float32 normalised tensors"
    print(
        f"{args.frames} Fashion-MNIST test images as {body}, one POST each, model "
        f"{args.model}, CPU, batch 1, FastAPI + uvicorn (1 worker, h11) on {HOST}, "
        "httpx client\n"
    )
    print("| in flight | frames/s | p50 ms | p95 ms | p99 ms | answered | errors | top-1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.concurrency} | {row.frames_per_s:.0f} | {row.p50_ms:.1f} | "
            f"{row.p95_ms:.1f} | {row.p99_ms:.1f} | {row.answered} | {row.errors} | "
            f"{row.accuracy:.2%} |"
        )
    best = max(rows, key=lambda row: row.frames_per_s)
    print(f"\nRESULT http_fps_max={best.frames_per_s:.0f} concurrency={best.concurrency}")


if __name__ == "__main__":
    main()
