"""Discrete-weight layers trained with the local reparameterization trick (Algorithm 1).

``LRConv2d`` and ``LRLinear`` take the constructor arguments of ``nn.Conv2d`` / ``nn.Linear``
(without bias: batch norm follows every discrete layer) plus the weight distribution class.
In training they return a sample of the Gaussian approximation of the pre-activation,

    z = m + sqrt(v^2 + eps) * N(0, 1),  m = op(h, E[w]),  v^2 = op(h^2, Var[w])   (eq. 4),

whose gradient w.r.t. the distribution parameters is eq. 5 (autograd computes it). ``eps``
is the reference code's 1e-3 inside the square root (the paper has none). When discrete
weights are fixed (a sample or the mode, sec. 4.4) the layer is an ordinary convolution.

The layer-family classes at the bottom (``FullPrecisionLayers``, ``LRLayers``) build the
layers an architecture asks for; a mode config instantiates one of them.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrnets.distributions import TernaryWeights, WeightDistribution

DistributionFactory = Callable[[tuple[int, ...]], WeightDistribution]


class LRLayer(nn.Module, metaclass=ABCMeta):
    """Shared behaviour of discrete layers: LRT forward, fixed-weight forward."""

    distribution: WeightDistribution

    def __init__(self, weight_shape: tuple[int, ...], distribution: DistributionFactory, eps: float):
        super().__init__()
        self.distribution = distribution(tuple(weight_shape))
        self.eps = eps
        self.fixed_weight: Tensor | None = None

    @abstractmethod
    def linear_op(self, x: Tensor, weight: Tensor) -> Tensor:
        """The layer's linear map (convolution or matrix product) with a given weight."""

    def forward(self, x: Tensor) -> Tensor:
        if self.fixed_weight is not None:
            return self.linear_op(x, self.fixed_weight.to(x.dtype))
        mean, var = self.preactivation_moments(x)
        return mean + torch.sqrt(var + self.eps) * torch.randn_like(mean)

    def preactivation_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean m and variance v^2 of the pre-activation for a deterministic input (eq. 4)."""
        dist = self.distribution
        mean = self.linear_op(x, dist.mean().to(x.dtype))
        var = self.linear_op(x * x, dist.variance().to(x.dtype))
        return mean, var


class LRConv2d(LRLayer):
    """2-D convolution with discrete random weights; arguments as ``nn.Conv2d``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        *,
        distribution: DistributionFactory = TernaryWeights,
        eps: float = 1e-3,
    ):
        _check_no_bias(bias)
        if padding_mode != "zeros":
            raise ValueError(f"LRConv2d supports padding_mode='zeros' only, got {padding_mode!r}.")
        kh, kw = nn.modules.utils._pair(kernel_size)
        super().__init__((out_channels, in_channels // groups, kh, kw), distribution, eps)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding = stride, padding
        self.dilation, self.groups = dilation, groups

    def linear_op(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, "
            f"distribution={type(self.distribution).__name__}"
        )


class LRLinear(LRLayer):
    """Fully connected layer with discrete random weights; arguments as ``nn.Linear``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        distribution: DistributionFactory = TernaryWeights,
        eps: float = 1e-3,
    ):
        _check_no_bias(bias)
        super().__init__((out_features, in_features), distribution, eps)
        self.in_features, self.out_features = in_features, out_features

    def linear_op(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, "
            f"distribution={type(self.distribution).__name__}"
        )


def _check_no_bias(bias: bool) -> None:
    if bias:
        raise ValueError(
            "Discrete LR layers have no bias (batch norm follows every discrete layer); "
            "got bias=True."
        )


class FullPrecisionLayers:
    """Builds ordinary real-valued layers (the full-precision reference, sec. 5)."""

    discrete = False

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features, bias=False)


class LRLayers:
    """Builds LR-net layers whose weights follow ``distribution`` (binary, ternary, ...)."""

    discrete = True

    def __init__(self, distribution: DistributionFactory, eps: float = 1e-3):
        self.distribution = distribution
        self.eps = eps

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return LRConv2d(in_channels, out_channels, kernel_size, stride, padding,
                        distribution=self.distribution, eps=self.eps)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return LRLinear(in_features, out_features, distribution=self.distribution, eps=self.eps)
