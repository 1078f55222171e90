"""Layers with discrete random weights, and the local reparameterization trick (Algorithm 1).

``DiscreteConv2d`` and ``DiscreteLinear`` take the constructor arguments of ``nn.Conv2d`` /
``nn.Linear`` (without bias: batch norm follows every discrete layer) plus the weight
distribution class and the training method: how the training forward pass uses the
distribution. When discrete weights are fixed (a sample or the most probable weights, sec. 4.4)
the layer is an ordinary convolution whatever the method. The methods:

- ``LocalReparameterization`` (LR-nets): a sample of the Gaussian approximation of the
  pre-activation,

      z = m + sqrt(v^2 + eps) * N(0, 1),  m = op(h, E[w]),  v^2 = op(h^2, Var[w])   (eq. 4),

  whose gradient w.r.t. the distribution parameters is eq. 5 (autograd computes it). ``eps``
  is the reference code's 1e-3 inside the square root (the paper has none). The two maps have a
  hand-written backward pass (``MomentMaps``) that keeps h, not h^2, for it. With
  ``fused=True`` they run as one grouped convolution (one batched matrix product for linear
  layers) instead of two calls, differentiated by autograd; the result is the same. The
  standard deviation is computed in float32 so that mixed precision (bf16) cannot make it NaN.
- a weight sample per batch (``lrnets.nn.sampled_layers``: Gumbel-softmax, stochastic
  BinaryConnect), the baselines the paper sets the trick against;
- moment propagation through sign activations (``lrnets.nn.sign_layers.MomentPropagation``, Roth
  et al. 2019), by the family ``MomentLayers``, which the LR-net modes' ``mode.layers._target_``
  names under ``activation=sign`` (``${activation.lr_layers}``).

A training method is a module called as ``method(layer, x)``; a new one is a class and a mode
config. The layer families at the bottom (``FullPrecisionLayers``, ``DiscreteLayers`` and the
mode configs' ``LRLayers``) build the layers an architecture asks for; ``mode.layers._target_``
names the family, and so the method.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrnets.nn.distributions import TernaryWeights, WeightDistribution
from lrnets.nn.noise import standard_normal_like

DistributionFactory = Callable[[tuple[int, ...]], WeightDistribution]


class GaussianSample(torch.autograd.Function):
    """z = m + sqrt(v^2 + eps) * noise with noise ~ N(0, 1) (Algorithm 1), in float32.

    The backward pass (eq. 5: dz/dm = 1, dz/dv^2 = noise / (2 sqrt(v^2 + eps))) needs one saved
    tensor, noise / (2 sqrt(v^2 + eps)), instead of the four autograd would keep."""

    @staticmethod
    def forward(ctx, mean: Tensor, var: Tensor, eps: float) -> Tensor:
        std = var.float().clamp_min(0).add_(eps).sqrt_()
        noise = standard_normal_like(std)
        sample = torch.addcmul(mean.float(), std, noise)
        half_noise_over_std = noise.div_(std).mul_(0.5)
        if eps == 0:  # the paper's form: v = 0 where the input patch is all zero, and there the
            half_noise_over_std.nan_to_num_(0.0, 0.0, 0.0)  # gradient is 0, not noise / 0
        ctx.save_for_backward(half_noise_over_std)
        ctx.var_dtype = var.dtype
        return sample.to(mean.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        (half_noise_over_std,) = ctx.saved_tensors
        return grad, (grad.float() * half_noise_over_std).to(ctx.var_dtype), None


class MomentMaps(torch.autograd.Function):
    """(m, v^2) = (op(h, E[w]), op(h^2, Var[w])) of a layer's linear map ``op`` (eq. 4).

    The backward pass keeps h and recomputes h^2 (autograd would keep both), and forms the input
    gradient op^T(g_m, E[w]) + 2 h op^T(g_v, Var[w]) in one pass. Under autocast the maps run in
    the autocast dtype, as the layer's plain forward would; the weight moments are kept as they
    come (the distribution keeps them for its own backward pass) and cast again there."""

    @staticmethod
    def forward(ctx, x: Tensor, mean_w: Tensor, var_w: Tensor, layer: DiscreteLayer) -> tuple[Tensor, Tensor]:
        device = x.device.type
        ctx.dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        ctx.layer = layer
        ctx.save_for_backward(x, mean_w, var_w)
        x, mean_w, var_w = (t.to(ctx.dtype) for t in (x, mean_w, var_w))
        return layer.linear_op(x, mean_w), layer.linear_op(x * x, var_w)

    @staticmethod
    def backward(ctx, g_mean: Tensor, g_var: Tensor) -> tuple[Tensor | None, Tensor, Tensor, None]:
        x, mean_w, var_w = (t.to(ctx.dtype) for t in ctx.saved_tensors)
        need_x = ctx.needs_input_grad[0]
        g_x_mean, g_mean_w = ctx.layer.linear_op_backward(g_mean.to(ctx.dtype), x, mean_w, need_x)
        g_x_var, g_var_w = ctx.layer.linear_op_backward(g_var.to(ctx.dtype), x * x, var_w, need_x)
        g_x = g_x_mean.addcmul_(x, g_x_var, value=2) if need_x else None  # g_x_mean is fresh
        return g_x, g_mean_w, g_var_w, None


class TrainingMethod(nn.Module, metaclass=ABCMeta):
    """How a discrete layer's training forward pass uses its weight distribution."""

    @abstractmethod
    def forward(self, layer: DiscreteLayer, x: Tensor) -> Tensor:
        """The layer's output for input ``x`` while no discrete weights are fixed."""


class GaussianMethod(TrainingMethod):
    """A method built on the pre-activation's Gaussian moments (eq. 4): ``eps`` inside the
    square root of its sample, ``fused`` for how the two maps are computed."""

    def __init__(self, eps: float = 1e-3, fused: bool = False):
        super().__init__()
        self.eps, self.fused = eps, fused

    def extra_repr(self) -> str:
        return f"eps={self.eps}, fused={self.fused}"


class LocalReparameterization(GaussianMethod):
    """The LR-nets' forward pass: a sample of the Gaussian pre-activation (eq. 4)."""

    def forward(self, layer: DiscreteLayer, x: Tensor) -> Tensor:
        mean, var = layer.preactivation_moments(x, self.fused)
        return GaussianSample.apply(mean, var, self.eps)


class DiscreteLayer(nn.Module, metaclass=ABCMeta):
    """A weight distribution, a linear map and the training method that connects them."""

    distribution: WeightDistribution

    def __init__(self, weight_shape: tuple[int, ...], distribution: DistributionFactory,
                 method: TrainingMethod | None):
        super().__init__()
        self.distribution = distribution(tuple(weight_shape))
        self.method = LocalReparameterization() if method is None else method
        self.fixed_weight: Tensor | None = None

    @abstractmethod
    def linear_op(self, x: Tensor, weight: Tensor) -> Tensor:
        """The layer's linear map (convolution or matrix product) with a given weight."""

    @abstractmethod
    def linear_op_backward(self, grad: Tensor, x: Tensor, weight: Tensor,
                           need_input: bool) -> tuple[Tensor | None, Tensor]:
        """Gradients of ``linear_op(x, weight)`` w.r.t. x (None unless ``need_input``) and weight."""

    @abstractmethod
    def fused_moments(self, x: Tensor, mean_w: Tensor, var_w: Tensor) -> tuple[Tensor, Tensor]:
        """``(op(x, mean_w), op(x^2, var_w))`` computed by one call."""

    def forward(self, x: Tensor) -> Tensor:
        if self.fixed_weight is not None:
            return self.linear_op(x, self.fixed_weight.to(x.dtype))
        return self.method(self, x)

    def preactivation_moments(self, x: Tensor, fused: bool = False) -> tuple[Tensor, Tensor]:
        """Mean m and variance v^2 of the pre-activation for a deterministic input (eq. 4)."""
        return self.moment_maps(x, *self.distribution.moments(), fused)

    def moment_maps(self, x: Tensor, mean_w: Tensor, var_w: Tensor,
                    fused: bool = False) -> tuple[Tensor, Tensor]:
        """``(op(x, mean_w), op(x^2, var_w))`` for given weight moments (one call when fused)."""
        if fused:
            return self.fused_moments(x, mean_w.to(x.dtype), var_w.to(x.dtype))
        return MomentMaps.apply(x, mean_w, var_w, self)

    def extra_repr(self) -> str:
        return f"distribution={type(self.distribution).__name__}"


class DiscreteConv2d(DiscreteLayer):
    """2-D convolution with discrete random weights; arguments as ``nn.Conv2d``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        *,
        distribution: DistributionFactory = TernaryWeights,
        method: TrainingMethod | None = None,
    ):
        _check_no_bias(bias)
        if padding_mode != "zeros":
            raise ValueError(f"DiscreteConv2d supports padding_mode='zeros' only, got {padding_mode!r}.")
        kh, kw = nn.modules.utils._pair(kernel_size)
        super().__init__((out_channels, in_channels // groups, kh, kw), distribution, method)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        pair = nn.modules.utils._pair
        self.stride, self.padding, self.dilation = pair(stride), pair(padding), pair(dilation)
        self.groups = groups

    def linear_op(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def linear_op_backward(self, grad: Tensor, x: Tensor, weight: Tensor,
                           need_input: bool) -> tuple[Tensor | None, Tensor]:
        g_x, g_weight, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, self.stride, self.padding, self.dilation, False, (0, 0),
            self.groups, (need_input, True, False))
        return g_x, g_weight

    def fused_moments(self, x: Tensor, mean_w: Tensor, var_w: Tensor) -> tuple[Tensor, Tensor]:
        """[x, x^2] stacked on channels, [E[w], Var[w]] on output channels, twice the groups."""
        out = F.conv2d(torch.cat([x, x * x], 1), torch.cat([mean_w, var_w], 0), None, self.stride,
                       self.padding, self.dilation, 2 * self.groups)
        return out.chunk(2, dim=1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, {super().extra_repr()}"
        )


class DiscreteLinear(DiscreteLayer):
    """Fully connected layer with discrete random weights; arguments as ``nn.Linear``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        distribution: DistributionFactory = TernaryWeights,
        method: TrainingMethod | None = None,
    ):
        _check_no_bias(bias)
        super().__init__((out_features, in_features), distribution, method)
        self.in_features, self.out_features = in_features, out_features

    def linear_op(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight)

    def linear_op_backward(self, grad: Tensor, x: Tensor, weight: Tensor,
                           need_input: bool) -> tuple[Tensor | None, Tensor]:
        g_weight = grad.flatten(0, -2).T @ x.flatten(0, -2)
        return (grad @ weight if need_input else None), g_weight

    def fused_moments(self, x: Tensor, mean_w: Tensor, var_w: Tensor) -> tuple[Tensor, Tensor]:
        """One batched matrix product of [x, x^2] with [E[w], Var[w]]."""
        out = torch.stack([x, x * x]) @ torch.stack([mean_w, var_w]).transpose(-1, -2)
        return out[0], out[1]

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {super().extra_repr()}"


def _check_no_bias(bias: bool) -> None:
    if bias:
        raise ValueError(
            "Discrete layers have no bias (batch norm follows every discrete layer); "
            "got bias=True."
        )


class FullPrecisionLayers:
    """Builds ordinary real-valued layers (the full-precision reference, sec. 5)."""

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features, bias=False)


class DiscreteLayers:
    """Builds discrete layers whose weights follow ``distribution`` (binary, ternary, ...) and
    train by ``method`` (one method object shared by all layers, so one temperature schedule)."""

    def __init__(self, distribution: DistributionFactory, method: TrainingMethod):
        self.distribution, self.method = distribution, method

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return DiscreteConv2d(in_channels, out_channels, kernel_size, stride, padding,
                              distribution=self.distribution, method=self.method)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return DiscreteLinear(in_features, out_features, distribution=self.distribution,
                              method=self.method)


class GaussianLayers(DiscreteLayers):
    """Discrete layers trained by a method on the pre-activation's Gaussian moments
    (``method_class``), with its options ``mode.layers.eps`` and ``mode.layers.fused``."""

    method_class: type[GaussianMethod]

    def __init__(self, distribution: DistributionFactory, eps: float = 1e-3, fused: bool = False):
        super().__init__(distribution, self.method_class(eps, fused))


class LRLayers(GaussianLayers):
    """LR-net layers (``mode=binary``, ``mode=ternary``): the local reparameterization trick."""

    method_class = LocalReparameterization
