"""Discrete layers trained on a sample of their weights instead of the LRT Gaussian.

``SampledConv2d`` / ``SampledLinear`` are ``LRConv2d`` / ``LRLinear`` (same arguments, the same
weight distributions, eq. 6-8 initialisation, sampled and mode evaluation of sec. 4.4) whose
training forward draws one weight tensor per batch with a ``sampler`` and applies it, where
the LR layers sample the pre-activation (Algorithm 1). The samplers are the baselines the paper
sets the local reparameterization trick against:

- ``GumbelSoftmaxSample``: the relaxed one-hot sample softmax((log p + g) / tau), g ~ Gumbel(0, 1)
  (Jang et al. 2017, eq. 2), mapped to the weight values; temperature 0.1 (Appendix A), optionally
  annealed geometrically from ``initial_temperature`` over the run's optimizer steps.
- ``StraightThroughSample``: a discrete sample whose gradient goes to the mean E[w]; with
  ``HardSigmoidBinaryWeights`` this is stochastic BinaryConnect (Courbariaux et al. 2015).

``LRNetModule`` calls ``after_optimizer_step(progress)`` (``progress``: the fraction of the run's
optimizer steps done) on the samplers and distributions that anneal or clip.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from lrnets.distributions import WeightDistribution
from lrnets.layers import DistributionFactory, LRConv2d, LRLayer, LRLinear
from lrnets.quantizers import straight_through


class GumbelSoftmaxSample(nn.Module):
    """Relaxed sample of every weight: softmax((log P(w = d_k) + g_k) / tau) @ (d_1, ..., d_K)."""

    def __init__(self, temperature: float = 0.1, initial_temperature: float | None = None):
        super().__init__()
        self.final_temperature = temperature
        self.initial_temperature = initial_temperature
        self.temperature = temperature if initial_temperature is None else initial_temperature

    def forward(self, distribution: WeightDistribution) -> Tensor:
        log_probs = distribution.probs().clamp_min(1e-12).log()
        return F.gumbel_softmax(log_probs, tau=self.temperature, dim=-1) @ distribution.values

    def after_optimizer_step(self, progress: float) -> None:
        """tau = initial * (final / initial) ** progress: initial at the start, final at the end."""
        if self.initial_temperature is not None:
            ratio = self.final_temperature / self.initial_temperature
            self.temperature = self.initial_temperature * math.pow(ratio, progress)

    def extra_repr(self) -> str:
        return (f"temperature={self.final_temperature}, "
                f"initial_temperature={self.initial_temperature}")


class StraightThroughSample(nn.Module):
    """A discrete sample in the forward pass, the identity to E[w] in the backward pass."""

    def forward(self, distribution: WeightDistribution) -> Tensor:
        return straight_through(distribution.mean(), distribution.sample())


class SampledWeightLayer(LRLayer):
    """Training forward: the layer's map with ``sampler(distribution)`` as its weight."""

    sampler: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        weight = self.fixed_weight
        if weight is None:
            weight = self.sampler(self.distribution)
        return self.linear_op(x, weight.to(x.dtype))


class SampledConv2d(SampledWeightLayer, LRConv2d):
    """``LRConv2d`` trained on weight samples; arguments as ``LRConv2d`` plus ``sampler``."""

    def __init__(self, *args, sampler: nn.Module, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler = sampler


class SampledLinear(SampledWeightLayer, LRLinear):
    """``LRLinear`` trained on weight samples; arguments as ``LRLinear`` plus ``sampler``."""

    def __init__(self, *args, sampler: nn.Module, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler = sampler


class SampledWeightLayers:
    """Builds layers whose weights follow ``distribution`` and train on ``sampler``'s samples
    (one sampler shared by all layers, so one temperature schedule)."""

    discrete = True

    def __init__(self, distribution: DistributionFactory, sampler: nn.Module):
        self.distribution = distribution
        self.sampler = sampler

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return SampledConv2d(in_channels, out_channels, kernel_size, stride, padding,
                             distribution=self.distribution, sampler=self.sampler)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return SampledLinear(in_features, out_features, distribution=self.distribution,
                             sampler=self.sampler)
