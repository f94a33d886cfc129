"""glibc's malloc set up for PyTorch's large buffers, once per process, before the first large tensor.

By default glibc serves every allocation above 128 KiB-32 MiB (its threshold moves) with mmap and hands
it back with munmap when freed, and trims the heap top above 128 KiB. A forward pass frees its activation
buffers at the end, so the next pass page-faults tens of MB back in, and on these 2-core machines most of
an inference pass went to the kernel: EfficientNet-Lite0 at 224 px, batch 64, 17-25 img/s by default and
55-84 img/s with both thresholds raised (benchmarks/allocator.py measures it side by side). Raising both
keeps freed buffers in the heap for the next pass; the cost is that a process holds on to its peak heap
(docs/performance.md gives the measured memory).

HASHLAB_MALLOC=default leaves glibc's defaults (a platform without glibc gets them anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameter numbers (malloc.h)
THRESHOLD = 1 << 30  # 1 GiB: larger than any buffer of a batch we run, so none goes to mmap
ENV = "HASHLAB_MALLOC"
_state: dict = {}


def configure_allocator() -> dict:
    """Raise glibc's mmap and trim thresholds in this process (idempotent). Returns what was done:
    {"malloc": "raised thresholds" | "default" , "why": ...}. Forked children (DataLoader workers)
    inherit the setting; spawned ones call this from their own entry point."""
    if _state:
        return dict(_state)
    if os.environ.get(ENV, "").lower() in ("default", "off", "0", "no"):
        _state.update(malloc="default", why=f"{ENV}={os.environ[ENV]}")
        return dict(_state)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _state.update(malloc="default", why="no glibc mallopt on this platform")
        return dict(_state)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1:
        _state.update(malloc="raised thresholds", why=f"mmap and trim thresholds {THRESHOLD} bytes")
    else:
        _state.update(malloc="default", why="mallopt refused the thresholds")
    return dict(_state)


def allocator_state() -> dict:
    """What configure_allocator did in this process ({} when it was never called)."""
    return dict(_state)
