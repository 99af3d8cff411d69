"""pipeline.allocator: freed memory stays in the process, so batches stop faulting.

Each check runs in a fresh interpreter: the allocator setting is process-wide and
must not leak into the test process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only"
)


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=100,  # under the test's own 120 s, so this one fails first, with its stderr
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_keep_freed_memory_stops_page_faults_in_an_inference_thread() -> None:
    # The worker's case: the frozen model classifying batches in a thread of its own.
    # Without the setting this thread faulted in ~3,400-4,500 fresh pages per batch of
    # 32 in most runs on this box (glibc's adaptive threshold sometimes settles); with
    # it, 1-120 (a heap still growing now and then).
    out = _python(
        """
        import resource, threading
        import numpy as np
        from pipeline.allocator import keep_freed_memory
        assert keep_freed_memory()
        import torch
        torch.set_num_threads(1)
        from pipeline.inference import Classifier
        classifier = Classifier.by_name("fmnist_exit_resnet", "cpu", frozen=True)
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (28, 28, 1), dtype=np.uint8) for _ in range(32)]
        faults = []
        def serve():
            for _ in range(10):
                classifier.predict(images)
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            for _ in range(20):
                classifier.predict(images)
            faults.append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 20)
        thread = threading.Thread(target=serve)
        thread.start()
        thread.join()
        print(faults[0])
        """
    )
    assert float(out) < 400, f"{out} page faults per batch"


def test_thresholds_out_of_range_are_a_clear_error() -> None:
    from pipeline.allocator import keep_freed_memory

    # Checked before glibc is touched: this process's allocator stays as it was.
    with pytest.raises(ValueError, match="mmap threshold of 1073741824 bytes"):
        keep_freed_memory(mmap_threshold=1 << 30)
    with pytest.raises(ValueError, match="trim threshold"):
        keep_freed_memory(trim_threshold=-1)


def test_the_worker_setting_is_on_by_default_and_can_be_turned_off() -> None:
    from pipeline.config import load_config

    assert load_config(env={}).worker.keep_freed_memory is True
    config = load_config(env={}, overrides=["worker.keep_freed_memory=false"])
    assert config.worker.keep_freed_memory is False


def test_a_child_environment_gets_both_thresholds_beside_other_tunables() -> None:
    from pipeline.allocator import (
        DEFAULT_MMAP_THRESHOLD,
        DEFAULT_TRIM_THRESHOLD,
        environ_keeping_freed_memory,
    )

    env = environ_keeping_freed_memory({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.rtld.nns=8"})
    assert env["PATH"] == "/bin"
    assert env["GLIBC_TUNABLES"] == (
        "glibc.rtld.nns=8"
        f":glibc.malloc.mmap_threshold={DEFAULT_MMAP_THRESHOLD}"
        f":glibc.malloc.trim_threshold={DEFAULT_TRIM_THRESHOLD}"
    )
    assert environ_keeping_freed_memory({})["GLIBC_TUNABLES"].count("=") == 2


def test_a_threshold_the_caller_set_wins() -> None:
    from pipeline.allocator import environ_keeping_freed_memory

    given = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}
    tunables = environ_keeping_freed_memory(given)["GLIBC_TUNABLES"].split(":")
    assert tunables[0] == "glibc.malloc.mmap_threshold=65536"
    assert [t.partition("=")[0] for t in tunables[1:]] == ["glibc.malloc.trim_threshold"]
    assert given == {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}  # not mutated
