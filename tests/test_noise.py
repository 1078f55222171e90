"""Parallel standard normal noise: the numbers of the global seed, whatever the thread count."""
import subprocess
import sys

import pytest
import torch

from lrnets.nn.noise import BLOCK, standard_normal_like


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_noise_depends_on_the_seed_not_on_the_thread_count(restore_threads):
    like = torch.empty(3, 5, BLOCK // 4 + 7)  # several blocks, the last one short
    draws = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        draws.append(standard_normal_like(like))
    assert all(torch.equal(draws[0], d) for d in draws[1:])
    torch.manual_seed(1)
    assert not torch.equal(draws[0], standard_normal_like(like))


def test_noise_is_standard_normal_and_independent_across_blocks():
    torch.manual_seed(0)
    z = standard_normal_like(torch.empty(4 * BLOCK, dtype=torch.float64))
    assert z.dtype == torch.float64 and z.shape == (4 * BLOCK,)
    assert abs(z.mean()) < 5e-3 and abs(z.std() - 1) < 5e-3
    blocks = z.view(4, BLOCK)
    assert torch.corrcoef(blocks).fill_diagonal_(0).abs().max() < 5e-3


def test_small_tensors_use_the_global_generator():
    torch.manual_seed(0)
    z = standard_normal_like(torch.empty(10, 10))
    torch.manual_seed(0)
    assert torch.equal(z, torch.randn(10, 10))


FORK_PROBE = """
import multiprocessing, torch
from lrnets.nn.noise import BLOCK, standard_normal_like

def draw(queue=None):
    torch.manual_seed(0)
    numbers = standard_normal_like(torch.empty(3 * BLOCK))[:5].tolist()
    return queue.put(numbers) if queue else numbers

parent = draw()  # the parent's pool is running now
context = multiprocessing.get_context("fork")
queue = context.Queue()
child = context.Process(target=draw, args=(queue,))
child.start()
try:
    print(queue.get(timeout=60) == parent)
finally:
    child.kill()
"""


def test_a_forked_child_draws_noise_after_its_parent_did():
    """In a fresh interpreter: once a process forks after OpenMP ran (as in this suite), any
    parallel PyTorch operation in the child may hang, with or without lrnets."""
    out = subprocess.run([sys.executable, "-c", FORK_PROBE], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
