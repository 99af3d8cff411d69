"""Keep freed memory in the process, so each batch reuses the last batch's pages.

glibc's malloc, by default, gives a block above its mmap threshold (128 KiB at first)
its own ``mmap`` and hands it back to the kernel with ``munmap`` when it is freed, and
gives the free top of a heap back once more than 128 KiB of it is free. A worker's
inference thread allocates the same activations every batch, so by default every batch
faults in fresh pages that the kernel must zero first. Measured on the 2-core box
(``perf record`` of a saturated worker, docs/performance.md): ~15% of the inference
thread's time was in the kernel, in page faults and ``clear_page`` (~4,000 faults per
batch of 32); with these settings under 1%.

With :func:`keep_freed_memory`, blocks up to ``mmap_threshold`` come from the heap and
up to ``trim_threshold`` bytes of free heap stay mapped: the process keeps what its
busiest batch needed, and no more (each heap's free top above that is still returned).

Other C libraries (musl, macOS) have no ``mallopt``; there this is a no-op that says so.

A C child (Mosquitto) gets the same two thresholds through its environment instead:
:func:`environ_keeping_freed_memory` (glibc reads ``GLIBC_TUNABLES`` at start-up; other
C libraries ignore it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Mapping

__all__ = [
    "DEFAULT_MMAP_THRESHOLD",
    "DEFAULT_TRIM_THRESHOLD",
    "environ_keeping_freed_memory",
    "keep_freed_memory",
]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
DEFAULT_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
DEFAULT_TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_freed_memory(
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD, trim_threshold: int = DEFAULT_TRIM_THRESHOLD
) -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where it cannot.

    Process-wide and cheap; call it before the model allocates, though later works too.
    """
    if not 0 < mmap_threshold <= DEFAULT_MMAP_THRESHOLD:
        # mallopt(3)'s documented ceiling (glibc 2.36 here accepts more, undocumented).
        raise ValueError(
            f"an mmap threshold of {mmap_threshold} bytes is outside 1-{DEFAULT_MMAP_THRESHOLD}"
        )
    if not 0 <= trim_threshold < 2**31:  # mallopt takes an int
        raise ValueError(f"a trim threshold of {trim_threshold} bytes is outside 0-{2**31 - 1}")
    if not sys.platform.startswith("linux"):
        logger.debug("keep_freed_memory: not glibc (%s); allocator left as is", sys.platform)
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl lacks it
    except (OSError, AttributeError):
        logger.debug("keep_freed_memory: no glibc mallopt; allocator left as is")
        return False
    del gnu_get_libc_version
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 for a value it refuses (out of range).
    if not mallopt(_M_MMAP_THRESHOLD, mmap_threshold):
        raise ValueError(f"glibc refused an mmap threshold of {mmap_threshold} bytes")
    if not mallopt(_M_TRIM_THRESHOLD, trim_threshold):
        raise ValueError(f"glibc refused a trim threshold of {trim_threshold} bytes")
    return True


_MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


def environ_keeping_freed_memory(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the ``GLIBC_TUNABLES`` that give a child process the thresholds
    :func:`keep_freed_memory` sets; a malloc threshold the caller already set there
    is left as it is (theirs wins), other tunables are kept beside ours."""
    env = dict(environ)
    given = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    names = {t.partition("=")[0] for t in given}
    ours = zip(_MALLOC_TUNABLES, (DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD), strict=True)
    given += [f"{name}={value}" for name, value in ours if name not in names]
    env["GLIBC_TUNABLES"] = ":".join(given)
    return env
