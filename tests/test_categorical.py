"""Categorical weights over a grid (Roth et al. 2019): moments, sampling, mode, initialisation,
logit clipping, and the ``weights`` config group."""
from pathlib import Path

import pytest
import torch

from lrnets.errors import ConfigError
from lrnets.nn.distributions import (CategoricalWeights, TernaryWeights, grid_probabilities,
                                  spread_over_grid)
from lrnets.training.evaluation import discrete_layers
from lrnets.training.run import build_network, train
from tests.conftest import compose_config

GRIDS = {
    "ternary": [-1.0, 0.0, 1.0],
    "quaternary": [-1.0, -1 / 3, 1 / 3, 1.0],
    "quinary": [-1.0, -0.5, 0.0, 0.5, 1.0],
    "uneven": [-2.0, -0.5, 1.0, 3.0],
}


def _randomised(values, shape=(40, 30)):
    torch.manual_seed(0)
    dist = CategoricalWeights(shape, values)
    with torch.no_grad():
        dist.theta.normal_(0, 2)
    return dist


@pytest.mark.parametrize("name", GRIDS)
def test_moments_are_those_of_the_probabilities(name):
    dist = _randomised(GRIDS[name])
    p, d = dist.probs(), dist.values
    assert torch.allclose(p.sum(-1), torch.ones(()))
    mean, var = dist.moments()
    assert torch.allclose(mean, (p * d).sum(-1), atol=1e-6)
    assert torch.allclose(var, (p * d**2).sum(-1) - mean**2, atol=1e-5)
    assert torch.all(var >= 0)
    assert torch.equal(dist.variance(), var) and torch.allclose(dist.mean(), mean, atol=1e-6)


@pytest.mark.parametrize("name", GRIDS)
def test_samples_lie_on_the_grid_with_their_probabilities(name):
    """20000 draws of each of 5 weights (rows of one tensor share their logits)."""
    five = _randomised(GRIDS[name], shape=(5,))
    dist = CategoricalWeights((20000, 5), GRIDS[name])
    with torch.no_grad():
        dist.theta.copy_(five.theta.unsqueeze(1).expand(-1, 20000, -1))
    draws = dist.sample(torch.Generator().manual_seed(1))
    assert set(draws.unique().tolist()) <= set(dist.values.tolist())
    freq = torch.stack([(draws == v).float().mean(0) for v in dist.values], -1)
    # standard error <= sqrt(0.25 / 20000) = 0.0035: 0.02 is more than 5 of them
    assert (freq - five.probs().detach()).abs().max() < 0.02


@pytest.mark.parametrize("name", GRIDS)
def test_mode_is_the_argmax(name):
    dist = _randomised(GRIDS[name])
    p = dist.probs()
    assert torch.equal(dist.most_probable(), dist.values[p.argmax(-1)])
    assert torch.equal(dist.index_of(dist.most_probable()), p.argmax(-1))


def test_grid_probabilities_put_p_max_on_the_nearest_value_linearly_in_between():
    values = torch.tensor(GRIDS["quinary"])
    q_min = 0.05 / 4
    q = grid_probabilities(torch.tensor([0.5, 0.25, -0.4, 7.0, -3.0]), values, p_max=0.95)
    assert torch.allclose(q.sum(-1), torch.ones(5))
    expected = torch.full((5, 5), q_min)
    expected[0, 3] = 0.95                                     # on a grid value
    expected[1, 2] = expected[1, 3] = (0.95 + q_min) / 2      # half way between 0 and 1/2
    expected[2, 1], expected[2, 2] = q_min + 0.8 * (0.95 - q_min), q_min + 0.2 * (0.95 - q_min)
    expected[3, 4] = expected[4, 0] = 0.95                    # beyond the ends
    assert torch.allclose(q, expected)


@pytest.mark.parametrize("name", ["ternary", "quaternary", "quinary"])
def test_initialisation_spreads_weights_evenly_and_keeps_their_order(name):
    """Spread by their empirical distribution, as many weights come nearest to every value
    of a symmetric, evenly spaced grid (1/K each), whatever the scale of the weights."""
    torch.manual_seed(0)
    half = torch.randn(10000)
    weight = torch.cat([half, -half])  # as many negative weights as positive ones
    dist = CategoricalWeights(weight.shape, GRIDS[name])
    dist.init_from_weights(weight, p_min=0.05, p_max=0.95)
    fractions = torch.stack([(dist.most_probable() == v).float().mean() for v in dist.values])
    assert torch.allclose(fractions, torch.full_like(fractions, 1 / len(dist.values)), atol=2e-3)
    assert dist.probs().max(-1).values.max() <= 0.95 + 1e-6
    order = weight.argsort()
    assert torch.all(dist.mean()[order].diff() >= -1e-6)      # larger weight, larger mean
    assert torch.equal(spread_over_grid(3 * weight, dist.values),
                       spread_over_grid(weight, dist.values))


def test_logits_are_clipped_to_five_after_optimizer_steps(smoke_config):
    """A huge logit learning rate drives logits far out; the clip keeps them at +-5."""
    cfg = smoke_config("weights=quaternary", "arch=mlp", "init=random", "+train.logit_lr=100")
    train(cfg)
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "network.pt")["state_dict"]
    thetas = [v for k, v in state.items() if k.endswith("distribution.theta")]
    assert thetas and max(t.abs().max().item() for t in thetas) == CategoricalWeights.LOGIT_BOUND


@pytest.mark.parametrize("values", [[1.0, 0.0, -1.0], [1.0], [0.0, 1.0, 2.0], [-1.0, -1.0, 1.0]])
def test_grids_that_are_not_increasing_around_zero_are_refused(values):
    with pytest.raises(ConfigError, match="weights.values"):
        CategoricalWeights((3,), values)


def test_p_max_must_favour_the_nearest_value():
    with pytest.raises(ConfigError, match="init.p_max"):
        CategoricalWeights((3,), GRIDS["quinary"]).init_from_weights(torch.zeros(3), 0.05, 0.2)


@pytest.mark.parametrize("choice,cls,values", [
    ("ternary", CategoricalWeights, GRIDS["ternary"]),
    ("ternary_sigmoid", TernaryWeights, GRIDS["ternary"]),
    ("quaternary", CategoricalWeights, GRIDS["quaternary"]),
    ("quinary", CategoricalWeights, GRIDS["quinary"]),
])
@pytest.mark.parametrize("mode", ["ternary", "binary"])
def test_weights_group_replaces_the_modes_distribution(tmp_path, choice, cls, values, mode):
    cfg = compose_config(tmp_path, f"mode={mode}", f"weights={choice}")
    layers = discrete_layers(build_network(cfg, 1, 10, 28)).values()
    assert layers and all(type(layer.distribution) is cls for layer in layers)
    assert all(layer.distribution.values.tolist() == pytest.approx(values) for layer in layers)


def test_custom_grid_from_the_command_line(tmp_path):
    cfg = compose_config(tmp_path, "weights=custom", "weights.values=[-2,-1,0,1,2]")
    layers = discrete_layers(build_network(cfg, 1, 10, 28)).values()
    assert all(layer.distribution.values.tolist() == [-2, -1, 0, 1, 2] for layer in layers)


@pytest.mark.parametrize("mode", ["full_precision", "twn"])
def test_weights_need_a_discrete_mode(tmp_path, mode):
    """The mode's layers' schema has no distribution for the grid to set (lrnets.schema)."""
    with pytest.raises(ConfigError, match=r"weights=quinary sets the weight distribution of a "
                                          r"discrete mode, and this mode's layers take none"):
        compose_config(tmp_path, f"mode={mode}", "weights=quinary")
