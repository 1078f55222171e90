"""Training methods that draw a sample of the weights instead of the LRT Gaussian.

With one of these as its method, a ``DiscreteConv2d`` / ``DiscreteLinear`` (the same weight
distributions, eq. 6-8 initialisation, sampled and most probable networks of sec. 4.4) draws one
weight tensor per batch and applies it, where the LR-nets sample the pre-activation (Algorithm 1).
They are the baselines the paper sets the local reparameterization trick against:

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
from abc import abstractmethod

import torch.nn.functional as F
from torch import Tensor

from lrnets.nn.distributions import WeightDistribution
from lrnets.nn.layers import DiscreteLayer, DiscreteLayers, DistributionFactory, TrainingMethod
from lrnets.nn.quantizers import straight_through


class WeightSample(TrainingMethod):
    """Training forward: the layer's map with ``sample(distribution)`` as its weight."""

    @abstractmethod
    def sample(self, distribution: WeightDistribution) -> Tensor:
        """One weight tensor drawn from ``distribution``, differentiable w.r.t. its parameters."""

    def forward(self, layer: DiscreteLayer, x: Tensor) -> Tensor:
        return layer.linear_op(x, self.sample(layer.distribution).to(x.dtype))


class GumbelSoftmaxSample(WeightSample):
    """Relaxed sample of every weight: softmax((log P(w = d_k) + g_k) / tau) @ (d_1, ..., d_K)."""

    def __init__(self, temperature: float = 0.1, initial_temperature: float | None = None):
        super().__init__()
        self.final_temperature = temperature
        self.initial_temperature = initial_temperature
        self.temperature = temperature if initial_temperature is None else initial_temperature

    def sample(self, distribution: WeightDistribution) -> Tensor:
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


class StraightThroughSample(WeightSample):
    """A discrete sample in the forward pass, the identity to E[w] in the backward pass."""

    def sample(self, distribution: WeightDistribution) -> Tensor:
        return straight_through(distribution.mean(), distribution.sample())


class SampledWeightLayers(DiscreteLayers):
    """Discrete layers trained on ``sampler``'s weight samples (``mode.layers.sampler``)."""

    def __init__(self, distribution: DistributionFactory, sampler: WeightSample):
        super().__init__(distribution, sampler)
