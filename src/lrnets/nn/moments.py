"""Gaussian moment formulas for the probabilistic forward pass of sign networks (Roth et al.,
ECML PKDD 2019).

A random activation is carried as a ``Gaussian(mean, var)`` pair of tensors. The functions here
are the closed forms the layers of ``lrnets.nn.sign_layers`` use:

- ``linear_moments``: a layer with independent random weights (E[w], Var[w]) applied to an
  independent random input (m_x, v_x):  mu = sum E[w] m_x,
  var = sum (m_x^2 Var[w] + v_x E[w]^2 + v_x Var[w]); with v_x = 0 it is the LR-nets pair (eq. 4).
- ``sign_moments``: sign of N(mu, var): mean 2 Phi(mu / sigma) - 1, variance 1 - mean^2.
- ``relaxed_sign_sample``: a Gumbel-softmax (binary concrete) sample of that +-1 output.
- ``max_moments`` / ``max_pool2x2_moments``: the Gaussian approximation of the max of two
  Gaussians (Clark 1961, as Sinha et al. use it), applied pairwise for 2x2 max pooling.
- ``batch_moments``: batch statistics of a batch of Gaussians (distribution batch norm).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from lrnets.nn.layers import GaussianSample

EPS = 1e-6  # keeps standard deviations away from zero, as the authors' code


class Gaussian(NamedTuple):
    """Element-wise independent Gaussians N(mean, var)."""

    mean: Tensor
    var: Tensor

    def map(self, fn: Callable[[Tensor], Tensor]) -> Gaussian:
        """Apply a shape operation (flatten, crop, ...) to both tensors."""
        return Gaussian(fn(self.mean), fn(self.var))

    def sample(self, eps: float = EPS) -> Tensor:
        """mean + sqrt(var + eps) * N(0, 1), fresh noise per element (the local
        reparameterization trick; the last layer's sample in Roth et al.): the LR layers'
        ``GaussianSample``."""
        return GaussianSample.apply(self.mean, self.var, eps)


def linear_moments(op: Callable[[Tensor, Tensor], Tensor], x: Gaussian, w_mean: Tensor,
                   w_var: Tensor) -> Gaussian:
    """Moments of ``op(x, w)`` for a linear map ``op`` (matrix product or convolution), a random
    input x and random weights w, all independent:
    mean = op(m_x, E[w]),  var = op(m_x^2 + v_x, Var[w]) + op(v_x, E[w]^2)."""
    mean = op(x.mean, w_mean)
    var = op(x.mean.square() + x.var, w_var) + op(x.var, w_mean.square())
    return Gaussian(mean, var)


def _standardised(x: Gaussian, eps: float) -> Tensor:
    return x.mean / torch.sqrt(x.var + eps)


def sign_moments(x: Gaussian, eps: float = EPS) -> Gaussian:
    """Sign of N(mu, var) as a +-1 variable: P(+1) = Phi(mu / sigma), mean 2 Phi(mu / sigma) - 1
    = erf(mu / (sigma sqrt 2)), variance 1 - mean^2."""
    mean = torch.erf(_standardised(x, eps) / math.sqrt(2))
    return Gaussian(mean, 1 - mean.square())


def relaxed_sign_sample(x: Gaussian, temperature: float, eps: float = EPS) -> Tensor:
    """Binary-concrete (Gumbel-softmax) relaxation of sign(N(mu, var)) in (-1, 1):
    tanh((l + L) / (2 tau)), l = log Phi(a) - log Phi(-a) the log-odds of +1 (a = mu / sigma),
    L ~ Logistic(0, 1) (the difference of two Gumbel variables). Its sign is +1 with
    probability Phi(a) at every temperature; tau -> 0 gives the hard sample."""
    a = _standardised(x, eps)
    log_odds = torch.special.log_ndtr(a) - torch.special.log_ndtr(-a)
    u = torch.rand_like(a).clamp(EPS, 1 - EPS)
    logistic = torch.log(u) - torch.log1p(-u)
    return torch.tanh((log_odds + logistic) / (2 * temperature))


def max_moments(x1: Gaussian, x2: Gaussian, eps: float = EPS) -> Gaussian:
    """First two moments of max(x1, x2) for independent Gaussians (exact; Clark 1961). With
    s = sqrt(v1 + v2), a = (m1 - m2) / s:  mean = m1 Phi(a) + m2 Phi(-a) + s phi(a),
    E[max^2] = (v1 + m1^2) Phi(a) + (v2 + m2^2) Phi(-a) + (m1 + m2) s phi(a)."""
    s = torch.sqrt(x1.var + x2.var + eps)
    a = (x1.mean - x2.mean) / s
    cdf, cdf_neg = torch.special.ndtr(a), torch.special.ndtr(-a)
    s_pdf = s * torch.exp(-0.5 * a.square()) / math.sqrt(2 * math.pi)
    mean = x1.mean * cdf + x2.mean * cdf_neg + s_pdf
    second = ((x1.var + x1.mean.square()) * cdf + (x2.var + x2.mean.square()) * cdf_neg
              + (x1.mean + x2.mean) * s_pdf)
    return Gaussian(mean, (second - mean.square()).clamp_min(0))


def max_pool2x2_moments(x: Gaussian, eps: float = EPS) -> Gaussian:
    """2x2 max pooling (stride 2, odd edges dropped as ``nn.MaxPool2d(2)``) of N, C, H, W
    Gaussians: the max of each horizontal pair, then of each vertical pair of those."""
    h, w = x.mean.shape[-2] // 2 * 2, x.mean.shape[-1] // 2 * 2
    x = x.map(lambda t: t[..., :h, :w])
    x = max_moments(x.map(lambda t: t[..., 0::2]), x.map(lambda t: t[..., 1::2]), eps)
    return max_moments(x.map(lambda t: t[..., 0::2, :]), x.map(lambda t: t[..., 1::2, :]), eps)


def batch_moments(x: Gaussian, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean and variance over ``dims`` of the mixture of the batch's Gaussians (distribution
    batch norm): mean_B = mean(m), var_B = mean(v + (m - mean_B)^2)."""
    mean = x.mean.mean(dims, keepdim=True)
    var = (x.var + (x.mean - mean).square()).mean(dims, keepdim=True)
    return mean, var
