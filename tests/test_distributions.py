"""Weight distributions: moments, initialisation (eq. 6-8), sampling (sec. 4.4)."""
import pytest
import torch

from lrnets.nn.distributions import (BinaryWeights, TernaryWeights, _BinaryMoments, _SigmoidVarianceSum,
                                 _TernaryMoments)

DISTRIBUTIONS = [BinaryWeights, TernaryWeights]


def _randomised(cls, shape=(40, 30)):
    torch.manual_seed(0)
    dist = cls(shape)
    with torch.no_grad():
        for logit in dist.logits():
            logit.normal_(0, 1.5)
    return dist


@pytest.mark.parametrize("cls", DISTRIBUTIONS)
def test_probabilities_are_a_distribution(cls):
    p = _randomised(cls).probs()
    assert p.shape[-1] == len(cls((1,)).values)
    assert torch.all(p >= 0)
    assert torch.allclose(p.sum(-1), torch.ones(()))


@pytest.mark.parametrize("cls", DISTRIBUTIONS)
def test_closed_form_moments_match_monte_carlo(cls):
    dist = _randomised(cls)
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([dist.sample(g) for _ in range(4000)])
    # 4000 draws of a variable in [-1, 1]: standard error of the mean <= 1/sqrt(4000) ~ 0.016
    assert (draws.mean(0) - dist.mean()).abs().max() < 0.08
    assert (draws.var(0) - dist.variance()).abs().max() < 0.1
    assert torch.allclose(dist.mean(), dist.probs() @ dist.values, atol=1e-6)


@pytest.mark.parametrize("cls", DISTRIBUTIONS)
def test_samples_take_allowed_values_with_their_probabilities(cls):
    dist = _randomised(cls, shape=(4,))
    g = torch.Generator().manual_seed(2)
    draws = torch.stack([dist.sample(g) for _ in range(20000)])
    assert set(draws.unique().tolist()) <= set(dist.values.tolist())
    freq = torch.stack([(draws == v).float().mean(0) for v in dist.values], -1)
    assert (freq - dist.probs().detach()).abs().max() < 0.02  # 3.5 standard errors at p = 0.5


@pytest.mark.parametrize("cls", DISTRIBUTIONS)
def test_mode_is_the_most_probable_value(cls):
    dist = _randomised(cls)
    p = dist.probs()
    assert torch.equal(dist.most_probable(), dist.values[p.argmax(-1)])
    assert torch.all(p.gather(-1, dist.index_of(dist.most_probable()).unsqueeze(-1)).squeeze(-1)
                     == p.max(-1).values)


@pytest.mark.parametrize("cls", DISTRIBUTIONS)
def test_entropy_is_zero_when_deterministic_and_maximal_when_uniform(cls):
    dist = cls((3,))
    k = len(dist.values)
    dist.probs = lambda: torch.eye(k)[torch.arange(3) % k]
    assert torch.allclose(dist.entropy(), torch.zeros(3), atol=1e-6)
    dist.probs = lambda: torch.full((3, k), 1.0 / k)
    assert torch.allclose(dist.entropy(), torch.full((3,), torch.log(torch.tensor(float(k)))))


def test_binary_init_keeps_the_weight_as_mean():
    """Eq. 6 (binary analogue): P(w=1) = (1 + w) / 2, so E[w] = w inside the clipping range."""
    dist = BinaryWeights((101,))
    w = torch.linspace(-0.85, 0.85, 101)
    dist.init_from_weights(w, 0.05, 0.95)
    assert torch.allclose(dist.mean(), w, atol=1e-5)


def test_ternary_init_keeps_the_weight_as_mean():
    """Eq. 6-8: P(w=0) = p_max - (p_max - p_min)|w|, P(w=1|w!=0) = (1 + w/(1 - P(0))) / 2,
    so E[w] = w wherever no clipping applies: with p_min, p_max = 0.05, 0.95 that is
    |w| <= 0.045 / 0.19 ~ 0.237 (beyond it P(w=1|w!=0) reaches p_max)."""
    dist = TernaryWeights((101,))
    w = torch.linspace(-0.23, 0.23, 101)
    dist.init_from_weights(w, 0.05, 0.95)
    p_zero = dist.probs()[:, 1]
    assert torch.allclose(p_zero, 0.95 - 0.9 * w.abs(), atol=1e-5)
    assert torch.allclose(dist.mean(), w, atol=1e-5)
    dist = TernaryWeights((1,))
    dist.init_from_weights(torch.tensor([0.4]), 0.05, 0.95)
    assert dist.mean().item() < 0.4 - 0.01  # clipped: the mean falls short of w


def test_ternary_init_clips_to_p_min_p_max():
    dist = TernaryWeights((3,))
    dist.init_from_weights(torch.tensor([-5.0, 0.0, 5.0]), 0.05, 0.95)
    p = dist.probs()
    assert torch.allclose(p[:, 1], torch.tensor([0.05, 0.95, 0.05]), atol=1e-5)
    assert p[0, 0] > p[0, 2] and p[2, 2] > p[2, 0]  # large |w|: the matching sign is likely


def test_regularisers_shrink_towards_uncertain_or_deterministic_weights():
    dist = TernaryWeights((10,))
    dist.init_from_weights(torch.zeros(10), 0.05, 0.95)
    assert dist.logit_l2() > 0
    assert torch.allclose(dist.logit_l2(), sum(l.square().sum() for l in dist.logits()) / 2)
    binary = BinaryWeights((10,))
    with torch.no_grad():
        binary.logits()[0].fill_(0.0)
    assert torch.allclose(binary.beta_density(), torch.tensor(2.5))  # 10 * 0.5 * 0.5


@pytest.mark.parametrize("cls", DISTRIBUTIONS)
def test_moments_match_mean_and_variance(cls):
    dist = _randomised(cls)
    mean, var = dist.moments()
    assert torch.allclose(mean, dist.mean(), atol=1e-6)
    assert torch.allclose(var, dist.variance(), atol=1e-6)


@pytest.mark.parametrize("function,arity", [(_BinaryMoments, 1), (_TernaryMoments, 2),
                                            (_SigmoidVarianceSum, 1)])
def test_hand_written_gradients_are_exact(function, arity):
    torch.manual_seed(0)
    logits = [torch.randn(4, 3, dtype=torch.double, requires_grad=True) * 2 for _ in range(arity)]
    logits = [l.detach().requires_grad_() for l in logits]
    assert torch.autograd.gradcheck(function.apply, logits)
