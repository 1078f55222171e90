"""Discrete weights packed at the bits their value set needs: each weight is stored as its
index into the values (``codes``), in ``lrnets.nn.distributions.bits_for(len(values))`` bits,
the bits of consecutive weights back to back (least significant first). A binary weight takes
1 bit, a ternary one 2.
NumPy only, so that the torch-free runner (``lrnets.export.integer_inference``) reads exports too.
"""
from __future__ import annotations

import numpy as np


def pack(codes: np.ndarray, bits: int) -> bytes:
    """``codes`` (integers in [0, 2**bits)) as ``ceil(codes.size * bits / 8)`` bytes."""
    flat = np.asarray(codes).astype(np.uint8).ravel()
    planes = (flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.ravel(), bitorder="little").tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """The ``count`` codes that ``pack`` wrote into ``data``, as a flat uint8 array."""
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits,
                           bitorder="little").reshape(count, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(1, dtype=np.uint8)
