"""Distributions over discrete weight values, one small module per weight tensor.

Each distribution owns the unconstrained parameters of one layer's weights and knows the
quantities LR-nets need (Shayer et al. 2018, sec. 3-4): the probabilities of every value, the
mean and variance used by the local reparameterization forward pass (Algorithm 1), the entropy
(Appendix B), a sample and the most probable weights (sec. 4.4), the initialisation from
pretrained full-precision weights (eq. 6-8) and the two regularisers (sec. 4.2, 4.3).

Adding a weight set means adding one subclass here; layers take the class, not a mode string.
"""
from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from typing import Sequence

import torch
from torch import Tensor, nn

from lrnets.errors import ConfigError


def bits_for(num_values: int) -> int:
    """Bits that store one weight of a value set of ``num_values`` values (at least 1): 1 for
    binary, 2 for ternary weights; the summary counts and the export packs them."""
    return max(1, math.ceil(math.log2(num_values)))


class WeightDistribution(nn.Module, metaclass=ABCMeta):
    """Independent distribution over ``values`` for every entry of a weight tensor.

    Subclasses define ``probs`` (shape ``(*shape, K)``, one probability per value) and
    ``init_from_weights``; mean, variance, entropy, sampling and the most probable values follow
    from them.
    Subclasses may override ``mean`` / ``variance`` with cheaper closed forms.
    """

    def __init__(self, shape: tuple[int, ...], values: tuple[float, ...]):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32), persistent=False)

    @abstractmethod
    def probs(self) -> Tensor:
        """P(w = d_k) for every entry, shape ``(*shape, K)``."""

    @abstractmethod
    def logits(self) -> list[Tensor]:
        """The unconstrained parameters the regularisers act on."""

    @abstractmethod
    def bernoulli_probabilities(self) -> dict[str, Tensor]:
        """The named probabilities behind ``probs`` (logged as histograms, Appendix B)."""

    @abstractmethod
    def init_from_weights(self, weight: Tensor, p_min: float, p_max: float) -> None:
        """Set the distribution from a full-precision weight normalised to roughly [-1, 1]."""

    def mean(self) -> Tensor:
        """E[w] = sum_k P(w = d_k) d_k."""
        return self.probs() @ self.values

    def variance(self) -> Tensor:
        """Var[w] = E[w^2] - E[w]^2."""
        return self.probs() @ self.values.square() - self.mean().square()

    def moments(self) -> tuple[Tensor, Tensor]:
        """(E[w], Var[w]), what the LR forward pass needs (eq. 4)."""
        return self.mean(), self.variance()

    def entropy(self) -> Tensor:
        """Per-weight entropy in nats (Appendix B tracks its layer average)."""
        p = self.probs()
        return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Draw discrete weights independently from the distribution (sec. 4.4)."""
        cdf = self.probs().cumsum(-1)
        u = torch.rand(self.shape + (1,), generator=generator, device=cdf.device)
        index = (u > cdf[..., :-1]).sum(-1)
        return self.values[index]

    def most_probable(self) -> Tensor:
        """The most probable weight of every entry."""
        return self.values[self.probs().argmax(-1)]

    def index_of(self, weight: Tensor) -> Tensor:
        """Position of each discrete weight in ``values`` (for integer checkpoints)."""
        return (weight.unsqueeze(-1) == self.values).float().argmax(-1)

    def random_init(self, p_min: float, p_max: float) -> None:
        """Initialise from a random Gaussian weight of unit standard deviation (eq. 6-8)."""
        self.init_from_weights(torch.randn(self.shape), p_min, p_max)

    def logit_l2(self) -> Tensor:
        """Probability decay (sec. 4.2): sum of squared logits / 2, as the reference code adds."""
        return sum(torch.dot(logit.flatten(), logit.flatten()) for logit in self.logits()) / 2

    def beta_density(self) -> Tensor:
        """Beta-density regulariser (sec. 4.3), alpha = beta = 2: sum of p (1 - p) over the
        Bernoulli probabilities behind the distribution."""
        return sum((p * (1 - p)).sum() for p in self.bernoulli_probabilities().values())


class _BinaryMoments(torch.autograd.Function):
    """E[w] = t, Var[w] = 1 - t^2 with t = tanh(b / 2). The backward pass reads both from the
    outputs, which the layer's maps keep anyway, instead of recomputing them."""

    @staticmethod
    def forward(ctx, b: Tensor) -> tuple[Tensor, Tensor]:
        t = b.mul(0.5).tanh_()  # in place: fresh tensors cost more than passes on a CPU
        var = torch.mul(t, t).neg_().add_(1)
        ctx.save_for_backward(t, var)
        return t, var

    @staticmethod
    def backward(ctx, g_mean: Tensor, g_var: Tensor) -> Tensor:
        """dE/db = (1 - t^2) / 2 = Var / 2, dVar/db = -2 t dE/db."""
        t, var = ctx.saved_tensors
        return torch.addcmul(g_mean, t, g_var, value=-2).mul_(var).mul_(0.5)


class _TernaryMoments(torch.autograd.Function):
    """E[w] = q t, Var[w] = q - (q t)^2 with q = sigmoid(-a) = P(w != 0), t = tanh(b / 2)
    (eq. 7). The backward pass reads E and Var from the outputs (the layer's maps keep them
    anyway), gets q = Var + E^2 back from them and recomputes only t."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        q, t = torch.neg(a).sigmoid_(), b.mul(0.5).tanh_()
        mean = t.mul_(q)
        var = q.addcmul_(mean, mean, value=-1)
        ctx.save_for_backward(b, mean, var)
        return mean, var

    @staticmethod
    def backward(ctx, g_mean: Tensor, g_var: Tensor) -> tuple[Tensor, Tensor]:
        """With c = g_E - 2 E g_V (the gradient through E = q t and Var = q - E^2 w.r.t. E):
        dL/dq = t c + g_V and dL/dt = q c; then dq/da = -q (1 - q) and dt/db = (1 - t^2) / 2,
        each applied by PyTorch's one-pass sigmoid / tanh backward kernels."""
        b, mean, var = ctx.saved_tensors
        q = torch.addcmul(var, mean, mean)
        t = b.mul(0.5).tanh_()
        c = torch.addcmul(g_mean, mean, g_var, value=-2)
        grad_b = torch.mul(q, c)
        torch.ops.aten.tanh_backward.grad_input(grad_b, t, grad_input=grad_b)
        grad_q = t.mul_(c).add_(g_var)
        torch.ops.aten.sigmoid_backward.grad_input(grad_q, q, grad_input=grad_q)
        return grad_q.neg_(), grad_b.mul_(0.5)


class _SigmoidVarianceSum(torch.autograd.Function):
    """sum sigmoid(x) (1 - sigmoid(x)), the beta-density regulariser of Bernoulli logits x
    (sec. 4.3); the backward pass, p (1 - p) (1 - 2 p), recomputes p instead of saving it."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        p = torch.sigmoid(x).flatten()
        return p.sum() - torch.dot(p, p)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        p = torch.sigmoid(x)
        return torch.addcmul(p, p, p, value=-1).mul_(p.mul_(-2).add_(1)).mul_(grad)


def _logit(p: Tensor) -> Tensor:
    return torch.log(p) - torch.log1p(-p)


class _SigmoidParameterised(WeightDistribution, metaclass=ABCMeta):
    """A distribution whose Bernoulli probabilities are the sigmoids of its logits."""

    def beta_density(self) -> Tensor:
        return sum(_SigmoidVarianceSum.apply(logit) for logit in self.logits())


class BinaryWeights(_SigmoidParameterised):
    """w in {-1, +1} with P(w = +1) = sigmoid(b) (sec. 4: p(w = 0) fixed to 0)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(shape, (-1.0, 1.0))
        self.b = nn.Parameter(torch.zeros(shape))

    def logits(self) -> list[Tensor]:
        return [self.b]

    def bernoulli_probabilities(self) -> dict[str, Tensor]:
        return {"p_plus": torch.sigmoid(self.b)}

    def probs(self) -> Tensor:
        p_plus = torch.sigmoid(self.b)
        return torch.stack([1 - p_plus, p_plus], -1)

    def mean(self) -> Tensor:
        return torch.tanh(self.b / 2)  # 2 sigmoid(b) - 1

    def variance(self) -> Tensor:
        return 1 - self.mean().square()

    def moments(self) -> tuple[Tensor, Tensor]:
        return _BinaryMoments.apply(self.b)

    @torch.no_grad()
    def init_from_weights(self, weight: Tensor, p_min: float, p_max: float) -> None:
        """Binary case of eq. 8 with p(w = 0) = 0: P(+1) = (1 + w) / 2, clipped."""
        p_plus = (0.5 * (1 + weight)).clamp(p_min, p_max)
        self.b.copy_(_logit(p_plus))


class TernaryWeights(_SigmoidParameterised):
    """w in {-1, 0, +1} with P(w = 0) = sigmoid(a), P(w = 1 | w != 0) = sigmoid(b) (sec. 4)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(shape, (-1.0, 0.0, 1.0))
        self.a = nn.Parameter(torch.zeros(shape))
        self.b = nn.Parameter(torch.zeros(shape))

    def logits(self) -> list[Tensor]:
        return [self.a, self.b]

    def bernoulli_probabilities(self) -> dict[str, Tensor]:
        return {"p_zero": torch.sigmoid(self.a), "p_plus_given_nonzero": torch.sigmoid(self.b)}

    def probs(self) -> Tensor:
        p_zero = torch.sigmoid(self.a)
        p_plus_given_nonzero = torch.sigmoid(self.b)
        nonzero = 1 - p_zero
        return torch.stack(
            [nonzero * (1 - p_plus_given_nonzero), p_zero, nonzero * p_plus_given_nonzero], -1
        )

    def mean(self) -> Tensor:
        """Eq. 7: E[w] = (2 P(w = 1 | w != 0) - 1)(1 - P(w = 0))."""
        return torch.sigmoid(-self.a) * torch.tanh(self.b / 2)

    def variance(self) -> Tensor:
        """Var[w] = P(w != 0) - E[w]^2."""
        return torch.sigmoid(-self.a) - self.mean().square()

    def moments(self) -> tuple[Tensor, Tensor]:
        return _TernaryMoments.apply(self.a, self.b)

    @torch.no_grad()
    def init_from_weights(self, weight: Tensor, p_min: float, p_max: float) -> None:
        """Eq. 6 for P(w = 0) and eq. 8 for P(w = 1 | w != 0), both clipped to [p_min, p_max]."""
        p_zero = (p_max - (p_max - p_min) * weight.abs()).clamp(p_min, p_max)
        p_plus = (0.5 * (1 + weight / (1 - p_zero))).clamp(p_min, p_max)
        self.a.copy_(_logit(p_zero))
        self.b.copy_(_logit(p_plus))


class HardSigmoidBinaryWeights(WeightDistribution):
    """w in {-1, +1} with P(w = +1) = hard_sigmoid(r) = clip((r + 1) / 2, 0, 1) of a real latent
    weight r kept in [-1, 1]: stochastic BinaryConnect (Courbariaux et al. 2015, eq. 2-3).
    Its mean is r itself, so a straight-through sample hands r the gradient of the sample."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(shape, (-1.0, 1.0))
        self.latent = nn.Parameter(torch.zeros(shape))

    def logits(self) -> list[Tensor]:
        return [self.latent]

    def bernoulli_probabilities(self) -> dict[str, Tensor]:
        return {"p_plus": ((self.latent + 1) / 2).clamp(0, 1)}

    def probs(self) -> Tensor:
        p_plus = self.bernoulli_probabilities()["p_plus"]
        return torch.stack([1 - p_plus, p_plus], -1)

    def mean(self) -> Tensor:
        return self.latent.clamp(-1, 1)

    def variance(self) -> Tensor:
        return 1 - self.mean().square()

    @torch.no_grad()
    def init_from_weights(self, weight: Tensor, p_min: float, p_max: float) -> None:
        """As ``BinaryWeights`` (eq. 8 with p(w = 0) = 0): P(+1) = (1 + w) / 2, clipped."""
        self.latent.copy_(2 * (0.5 * (1 + weight)).clamp(p_min, p_max) - 1)

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """BinaryConnect's clip of the latent weight to [-1, 1] after every update."""
        self.latent.clamp_(-1, 1)


class CategoricalWeights(WeightDistribution):
    """w in a grid D = {d_1 < ... < d_K} with P(w = d_k) = softmax(theta)_k, one logit per value
    (Roth et al. 2019): ternary {-1, 0, 1}, quaternary {-1, -1/3, 1/3, 1}, quinary
    {-1, -1/2, 0, 1/2, 1} or any grid with values on both sides of zero.

    E[w] = sum_k q_k d_k and Var[w] = sum_k q_k (d_k - E[w])^2. The logits are clipped to
    [-LOGIT_BOUND, LOGIT_BOUND] after every optimizer step, as in the authors' code.
    """

    LOGIT_BOUND = 5.0

    def __init__(self, shape: tuple[int, ...], values: Sequence[float]):
        values = tuple(float(v) for v in values)
        if len(values) < 2 or any(a >= b for a, b in zip(values, values[1:])) \
                or not values[0] < 0 < values[-1]:
            raise ConfigError(
                f"weights.values={list(values)} is not a weight grid: give at least two values in "
                "increasing order, the smallest negative and the largest positive "
                "(e.g. [-1, -0.5, 0, 0.5, 1])."
            )
        super().__init__(shape, values)
        # value first: a softmax over the leading dimension is the fast one on a CPU
        self.theta = nn.Parameter(torch.zeros(len(values), *shape))

    def _probs_by_value(self) -> Tensor:
        return torch.softmax(self.theta, 0)

    def probs(self) -> Tensor:
        return self._probs_by_value().movedim(0, -1)

    def logits(self) -> list[Tensor]:
        return [self.theta]

    def bernoulli_probabilities(self) -> dict[str, Tensor]:
        p = self._probs_by_value()
        return {f"p_w={value:g}": p[k] for k, value in enumerate(self.values.tolist())}

    def moments(self) -> tuple[Tensor, Tensor]:
        p = self._probs_by_value()
        values = self.values.view(-1, *(1 for _ in self.shape))
        mean = (p * values).sum(0)
        return mean, (p * (values - mean).square()).sum(0)

    def mean(self) -> Tensor:
        return self.moments()[0]

    def variance(self) -> Tensor:
        return self.moments()[1]

    def most_probable(self) -> Tensor:
        return self.values[self.theta.max(0).indices]  # faster than argmax(0) on a CPU

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """Clip the logits to [-5, 5] after every update (Roth et al.'s constraint)."""
        self.theta.clamp_(-self.LOGIT_BOUND, self.LOGIT_BOUND)

    @torch.no_grad()
    def init_from_weights(self, weight: Tensor, p_min: float, p_max: float) -> None:
        """Map a real weight onto the grid and put probability ``p_max`` on its nearest value,
        linearly shared between the two neighbours in between (Roth et al. 2019, as their code).

        The weights are first spread evenly over the grid by their empirical distribution
        (``spread_over_grid``), then ``grid_probabilities`` gives q. The smallest probability,
        (1 - p_max) / (K - 1), follows from ``p_max``, so ``p_min`` does not apply here.
        """
        k = len(self.values)
        if not 1 / k < p_max < 1:
            raise ConfigError(f"init.p_max={p_max} is not allowed for {k} weight values: the "
                              f"nearest value needs a probability between 1/{k} and 1.")
        q = grid_probabilities(spread_over_grid(weight, self.values), self.values, p_max)
        self.theta.copy_(torch.log(q).movedim(-1, 0))


def spread_over_grid(weight: Tensor, values: Tensor) -> Tensor:
    """Negative weights replaced by their empirical CDF stretched over [d_1 - h_1 / 2, 0], the
    others over [0, d_K + h_K / 2] (h: the spacing at either end of the grid), so that about as
    many weights come nearest to every value whatever the scale of ``weight``."""
    low = values[0] - (values[1] - values[0]) / 2
    high = values[-1] + (values[-1] - values[-2]) / 2
    negative, positive = weight < 0, weight > 0
    out = torch.zeros_like(weight, dtype=values.dtype)
    out[negative] = low * (1 - _empirical_cdf(weight[negative]))
    out[positive] = high * _empirical_cdf(weight[positive])
    return out


def _empirical_cdf(x: Tensor) -> Tensor:
    """The fraction of ``x`` at or below each entry."""
    return torch.searchsorted(x.sort().values, x, right=True).float() / max(1, x.numel())


def grid_probabilities(weight: Tensor, values: Tensor, p_max: float) -> Tensor:
    """q_k = q_min + (p_max - q_min) * hat_k(w), with hat_k the piecewise-linear function that is
    1 at d_k and 0 at its neighbours and q_min = (1 - p_max) / (K - 1); rows sum to 1. Weights
    outside the grid count as its ends. Shape ``(*weight.shape, K)``."""
    k = len(values)
    w = weight.clamp(values[0], values[-1])
    right = torch.searchsorted(values, w, right=True).clamp(1, k - 1)
    left_value, right_value = values[right - 1], values[right]
    t = ((w - left_value) / (right_value - left_value)).unsqueeze(-1)
    hat = torch.zeros(*w.shape, k, dtype=values.dtype, device=values.device)
    hat.scatter_(-1, (right - 1).unsqueeze(-1), 1 - t)
    hat.scatter_add_(-1, right.unsqueeze(-1), t)
    q_min = (1 - p_max) / (k - 1)
    return q_min + (p_max - q_min) * hat
