"""The training objective of LRNetModule: the regularisers of sec. 4.2-4.3 and Adam's groups."""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from lrnets.nn.distributions import BinaryWeights, TernaryWeights
from lrnets.nn.layers import DiscreteLinear
from lrnets.training.module import LRNetModule


class _Net(nn.Module):
    def __init__(self, distribution=TernaryWeights):
        super().__init__()
        self.body = DiscreteLinear(6, 4, distribution=distribution)
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.head(self.body(x))


def _module(model, probability_decay, beta=0.0):
    return LRNetModule(model, lr=0.05, lr_milestones=[], lr_gamma=1.0, weight_decay=0.0,
                       weight_decay_scope="last", probability_decay=probability_decay, beta=beta)


def test_probability_decay_takes_the_steps_of_its_loss_term():
    """Adam's decay of the logits = the loss term probability_decay * sum(logits^2) / 2."""
    torch.manual_seed(0)
    decayed = _Net()
    with torch.no_grad():
        decayed.body.distribution.a.normal_(0, 2)
        decayed.body.distribution.b.normal_(0, 2)
    in_loss = copy.deepcopy(decayed)
    by_adam, by_loss = _module(decayed, 0.3), _module(in_loss, 0.0)
    optimizers = [m.configure_optimizers()["optimizer"] for m in (by_adam, by_loss)]
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    for step in range(5):
        for module, optimizer in zip((by_adam, by_loss), optimizers):
            torch.manual_seed(step)  # the same LRT noise for both
            loss = F.cross_entropy(module(x), y) + module.regularization()
            if module is by_loss:
                loss = loss + 0.3 * module.model.body.distribution.logit_l2()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for p, q in zip(decayed.parameters(), in_loss.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    assert not torch.allclose(decayed.body.distribution.a, _Net().body.distribution.a)
    logits = decayed.body.distribution.logits()
    expected = 0.3 * sum(l.square().sum() for l in logits) / 2
    assert torch.allclose(by_adam.probability_decay_value(), expected)


class _BetaOverridden(BinaryWeights):
    def beta_density(self):
        return torch.tensor(7.0)


def test_beta_regularizer_is_each_distributions_own():
    """The loss takes the distribution's beta_density, a subclass's override included (the
    binary one is a memory-saving autograd function, not the base class's formula)."""
    module = _module(_Net(_BetaOverridden), 0.0, beta=0.5)
    assert module.regularization().item() == 3.5
