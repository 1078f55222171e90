"""On a CPU, freed tensor memory stays in the process's heap for the next step (glibc)."""
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, ctypes.util, torch
from lrnets.training.cpu_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
took = keep_freed_memory()
tensor = torch.ones(16 * 2**20)  # 64 MiB
mapped = libc.mallinfo2().hblkhd  # bytes in mmapped blocks
del tensor
print(took, mapped, libc.mallinfo2().fordblks)  # fordblks: free bytes the heap keeps
"""
MIB64 = 64 * 2**20


def _probe(setting: str) -> tuple[bool, int, int]:
    env = {**os.environ, "LRNETS_KEEP_FREED_MEMORY": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    if "mallinfo2" in out.stderr:
        pytest.skip("not glibc >= 2.33")
    took, mapped, kept = out.stdout.split()
    return took == "True", int(mapped), int(kept)


def test_freed_tensor_memory_is_kept_for_reuse():
    took, mapped, kept = _probe("1")
    assert took and mapped < MIB64 and kept >= MIB64


def test_the_setting_can_be_turned_off():
    took, mapped, kept = _probe("0")
    assert not took and mapped >= MIB64 and kept < MIB64
