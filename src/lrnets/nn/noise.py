"""Standard normal noise for the LRT sample (Algorithm 1), filled by all CPU threads.

PyTorch fills a CPU tensor with normal numbers on one thread (one Mersenne-Twister state); for
the pre-activations of a LeNet batch of 256 that is about a third of a full-precision training
step. ``standard_normal_like`` splits a large CPU tensor into fixed blocks, each filled from its
own generator seeded from the global one, on a pool of ``torch.get_num_threads()`` threads. The
numbers depend on the global seed only, not on the number of threads. On accelerators it is
``torch.randn_like``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
from torch import Tensor

BLOCK = 1 << 20  # elements per generator


@lru_cache(maxsize=None)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="lrnets-noise")


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the threads


def standard_normal_like(t: Tensor) -> Tensor:
    """A tensor of independent N(0, 1) numbers with the shape, dtype and device of ``t``."""
    if t.device.type != "cpu" or t.numel() < 2 * BLOCK:
        return torch.randn_like(t)
    out = torch.empty_like(t, memory_format=torch.contiguous_format)
    blocks = out.view(-1).split(BLOCK)
    seed = int(torch.randint(1 << 62, ()))

    def fill(i: int) -> None:
        blocks[i].normal_(generator=torch.Generator().manual_seed(seed + i))

    list(_pool(torch.get_num_threads()).map(fill, range(len(blocks))))
    return out
