"""Quantisers of the straight-through baselines: a real latent weight in, the forward weight out.

Each quantiser rounds the latent weight ``w`` of one layer and, for the scaled methods, multiplies
by a real scale. In the backward pass the rounding (sign, threshold) is the identity, the
straight-through estimator (Bengio et al. 2013) the methods share; a scale computed from ``w`` is
differentiated as computed. So for ``q = alpha(w) * r(w)`` and an upstream gradient ``g``,

    dL/dw_j = alpha g_j + (sum_i g_i r_i) d alpha / d w_j.

- ``Binary``: sign(w), +1 at 0 (BinaryConnect, Courbariaux et al. 2015, deterministic eq. 1).
- ``Ternary``: 0 where |w| <= threshold, else sign(w) (weights exactly in {-1, 0, 1}).
- ``ScaledBinary``: alpha_c sign(w), alpha_c the mean |w| of output channel c (BWN, Rastegari
  et al. 2016, sec. 3.1).
- ``ScaledTernary``: alpha t, t = sign(w) where |w| > delta = 0.7 mean|w| of the layer, else 0;
  alpha the mean |w| over those entries (TWN, Li et al. 2016, eq. 14-15).
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import Tensor


def straight_through(latent: Tensor, rounded: Tensor) -> Tensor:
    """``rounded`` in the forward pass, exactly (``latent - latent`` is 0), and the identity
    w.r.t. ``latent`` in the backward pass."""
    return rounded.detach() + (latent - latent.detach())


class Quantizer(metaclass=ABCMeta):
    """Maps a layer's latent weight (output channels first) to its forward weight."""

    #: What the quantised weights cost at inference beside additions (the results file says it).
    multiplications = "none"
    #: The values of the forward weight, before a scale (``multiplications`` says if there is one).
    levels: tuple[float, ...] = (-1.0, 1.0)

    @abstractmethod
    def __call__(self, weight: Tensor) -> Tensor:
        """The forward weight, with straight-through gradients w.r.t. ``weight``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _sign(weight: Tensor) -> Tensor:
    """sign(w) with +1 at 0, so the result is always in {-1, 1}."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


def _ternary(weight: Tensor, threshold: Tensor | float) -> Tensor:
    return torch.where(weight.abs() > threshold, _sign(weight), 0.0).to(weight.dtype)


class Binary(Quantizer):
    """w_b = +1 if w >= 0 else -1 (deterministic BinaryConnect)."""

    def __call__(self, weight: Tensor) -> Tensor:
        return straight_through(weight, _sign(weight))


class Ternary(Quantizer):
    """w_t = sign(w) where |w| > threshold, else 0: no scale, weights exactly in {-1, 0, 1}.
    With latent weights clipped to [-1, 1] and ``threshold=0.5`` it rounds to the nearest value."""

    levels = (-1.0, 0.0, 1.0)

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def __call__(self, weight: Tensor) -> Tensor:
        return straight_through(weight, _ternary(weight, self.threshold))


class ScaledBinary(Quantizer):
    """alpha_c sign(w) with alpha_c = mean |w| over output channel c (BWN)."""

    multiplications = "one per output channel"

    def __call__(self, weight: Tensor) -> Tensor:
        alpha = weight.abs().mean(dim=tuple(range(1, weight.dim())), keepdim=True)
        return alpha * straight_through(weight, _sign(weight))


class ScaledTernary(Quantizer):
    """alpha t with t = sign(w) where |w| > delta, delta = ``threshold_factor`` * mean |w| over
    the layer (0.7 in TWN), and alpha the mean |w| over the entries above delta (TWN).
    The scale is one number per layer; each output channel's sum is multiplied by it."""

    multiplications = "one per output channel"
    levels = (-1.0, 0.0, 1.0)

    def __init__(self, threshold_factor: float = 0.7):
        self.threshold_factor = threshold_factor

    def __call__(self, weight: Tensor) -> Tensor:
        delta = self.threshold_factor * weight.detach().abs().mean()
        kept = weight.detach().abs() > delta
        alpha = (weight.abs() * kept).sum() / kept.sum().clamp_min(1)
        return alpha * straight_through(weight, _ternary(weight, delta))
