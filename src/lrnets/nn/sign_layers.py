"""Layers of sign networks trained by probabilistic forward propagation (Roth et al., ECML PKDD
2019).

In training every layer takes and returns either a tensor or a ``Gaussian(mean, var)`` pair
(``lrnets.nn.moments``): a discrete layer turns its input into the Gaussian moments of its
pre-activation, 2x2 max pooling and batch norm act on those moments, and the sign activation
returns a relaxed (Gumbel-softmax) sample of its +-1 output, so the next layer sees a tensor
again, or, with ``propagation="moments"``, the mean and variance of that output.

Outside training the layers are an ordinary discrete network: the discrete layers apply fixed
weights (a sample or the most probable ones, set by ``lrnets.training.evaluation``) or else their
most probable weights, batch norm uses its running statistics and the sign is hard
(sign(0) = +1), so every hidden activation is exactly -1 or +1. ``fold_thresholds`` rewrites
each batch norm followed by a sign into one per-channel threshold.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from lrnets.nn.layers import DiscreteLayer, GaussianLayers, GaussianMethod
from lrnets.nn.moments import (Gaussian, batch_moments, linear_moments, max_pool2x2_moments,
                            relaxed_sign_sample, sign_moments)

Activation = Tensor | Gaussian


class MomentPropagation(GaussianMethod):
    """The training method of sign networks.

    Training: the ``Gaussian`` moments of the pre-activation, for a tensor input (the LR-nets
    pair, eq. 4) or a Gaussian one (``linear_moments``). Otherwise (no weights fixed): the
    linear map with the most probable weights. ``eps`` is kept for the softmax layer's sample
    of its Gaussian output (``SignNetwork``); ``fused`` as for ``LocalReparameterization``.
    """

    def forward(self, layer: DiscreteLayer, x: Activation) -> Activation:
        if not layer.training:
            return layer.linear_op(x, layer.distribution.most_probable().to(x.dtype))
        if isinstance(x, Gaussian):
            w_mean, w_var = layer.distribution.moments()
            return linear_moments(layer.linear_op, x, w_mean.to(x.mean.dtype),
                                  w_var.to(x.mean.dtype))
        return Gaussian(*layer.preactivation_moments(x, self.fused))


class MomentLayers(GaussianLayers):
    """The LR-net modes' layers in sign networks (``activation.lr_layers`` of ``activation=sign``
    fills in their ``mode.layers._target_``): trained by moment propagation."""

    method_class = MomentPropagation


class GaussianMaxPool2d(nn.MaxPool2d):
    """2x2 max pooling; on Gaussians the pairwise Gaussian approximation of the max."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: Activation) -> Activation:
        return max_pool2x2_moments(x) if isinstance(x, Gaussian) else super().forward(x)


class _DistributionBatchNorm:
    """Batch norm of tensors as usual; of Gaussians (training) with the mixture's batch
    statistics mean_B = mean(m), var_B = mean(v + (m - mean_B)^2), giving
    N(gamma (m - mean_B) / sigma_B + beta, gamma^2 v / sigma_B^2). The running statistics
    follow an exponential average of the batch statistics (footnote 4 of the paper); the
    ``BatchNormReestimation`` callback replaces them by statistics of the discrete network."""

    def forward(self, x: Activation) -> Activation:
        if not isinstance(x, Gaussian):
            return super().forward(x)
        shape = (1, -1) + (1,) * (x.mean.dim() - 2)
        if self.training:
            dims = (0,) + tuple(range(2, x.mean.dim()))
            mean, var = batch_moments(x, dims)
            self._track(mean.flatten(), var.flatten(), x.mean.numel() // x.mean.shape[1])
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        scale = self.weight.view(shape) / torch.sqrt(var + self.eps)
        return Gaussian((x.mean - mean) * scale + self.bias.view(shape), x.var * scale.square())

    @torch.no_grad()
    def _track(self, mean: Tensor, var: Tensor, count: int) -> None:
        """Running averages as ``nn.BatchNorm`` keeps them (unbiased variance)."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        factor = 1 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(var * count / max(count - 1, 1), factor)


class MomentBatchNorm1d(_DistributionBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also normalises Gaussians."""


class MomentBatchNorm2d(_DistributionBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that also normalises Gaussians."""


def hard_sign(x: Tensor) -> Tensor:
    """+1 where x >= 0, else -1 (no zeros, unlike ``torch.sign``)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class Sign(nn.Module):
    """The sign activation. A Gaussian input (training) gives the relaxed sample of its sign at
    ``temperature`` (``propagation="relaxed"``, the authors' scripts) or its moments
    (``"moments"``); a tensor input gives the hard sign."""

    def __init__(self, propagation: str = "relaxed", temperature: float = 1.0):
        super().__init__()
        self.propagation, self.temperature = propagation, temperature

    def forward(self, x: Activation) -> Activation:
        if not isinstance(x, Gaussian):
            return hard_sign(x)
        if self.propagation == "moments":
            return sign_moments(x)
        return relaxed_sign_sample(x, self.temperature)

    def extra_repr(self) -> str:
        return f"propagation={self.propagation!r}, temperature={self.temperature}"


class MomentDropout(nn.Dropout):
    """Dropout; on Gaussians one mask scales the mean and (squared) the variance."""

    def forward(self, x: Activation) -> Activation:
        if not isinstance(x, Gaussian):
            return super().forward(x)
        if not self.training or self.p == 0:
            return x
        keep = torch.bernoulli(torch.full_like(x.mean, 1 - self.p)) / (1 - self.p)
        return Gaussian(x.mean * keep, x.var * keep.square())


class MomentFlatten(nn.Flatten):
    """``nn.Flatten`` of a tensor or of both tensors of a Gaussian."""

    def forward(self, x: Activation) -> Activation:
        return x.map(super().forward) if isinstance(x, Gaussian) else super().forward(x)


class ThresholdSign(nn.Module):
    """sign(BN(x)) of a discrete network folded into one comparison per channel:
    +1 where direction * (x - threshold) >= 0, else -1."""

    def __init__(self, threshold: Tensor, direction: Tensor):
        super().__init__()
        self.register_buffer("threshold", threshold)
        self.register_buffer("direction", direction)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        above = self.direction.view(shape) * (x - self.threshold.view(shape)) >= 0
        return torch.where(above, 1.0, -1.0).to(x.dtype)


@torch.no_grad()
def fold_batch_norm_sign(bn: nn.modules.batchnorm._BatchNorm) -> ThresholdSign:
    """The threshold form of hard_sign(bn(x)) with running statistics. With a = gamma /
    sqrt(running_var + eps) and b = beta - a running_mean, a x + b >= 0 holds iff x >= -b / a
    (a > 0), x <= -b / a (a < 0), or always / never (a = 0, by the sign of b)."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bn.bias - a * bn.running_mean
    constant = torch.where(b >= 0, -torch.inf, torch.inf)  # a = 0: x >= -inf always holds
    threshold = torch.where(a != 0, -b / a, constant)
    direction = torch.where(a < 0, -1.0, 1.0).to(a.dtype)
    return ThresholdSign(threshold, direction)


@torch.no_grad()
def fold_thresholds(network: nn.Module) -> nn.Module:
    """A copy of a sign network, in eval mode, where every batch norm directly followed by a
    sign is replaced by one ``ThresholdSign``: the same predictions from comparisons only.
    Fixed weights set on the network carry over; otherwise its most probable weights apply."""
    folded = copy.deepcopy(network).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.modules.batchnorm._BatchNorm) and isinstance(seq[i + 1], Sign):
                seq[i + 1] = fold_batch_norm_sign(seq[i])
                seq[i] = nn.Identity()
    return folded
