"""Training on a CPU: keep freed memory in the process for the next tensors (glibc).

glibc serves a large allocation (above its mmap threshold, at most 32 MB) from fresh pages that
the kernel zeroes and faults in on first touch, and unmaps them on free. A training step makes
many temporaries of that size, and an LR layer more than a full-precision one (weight moments,
noise, the Gaussian sample): an out-of-place product of two 34 MB tensors takes 9.5 ms on fresh
pages against 2.4 ms on reused ones on the 2-core machine this was measured on.
``keep_freed_memory`` makes glibc serve every block from its heap (``M_MMAP_MAX = 0``) and keep
freed memory there (``M_TRIM_THRESHOLD`` 2 GiB), so the memory of one step is reused by the next;
the process's resident memory then stays near its peak. ``LRNETS_KEEP_FREED_MEMORY=0`` turns it
off; without glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory; True when it took the settings."""
    if os.environ.get("LRNETS_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
