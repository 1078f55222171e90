"""LR layers: the Gaussian pre-activation of Algorithm 1 against explicitly sampled weights
(the check behind the paper's Figure 1)."""
import pytest
import torch
from torch import nn

from lrnets.nn.distributions import BinaryWeights, TernaryWeights
from lrnets.nn.layers import DiscreteConv2d, DiscreteLinear, GaussianSample
from lrnets.training.evaluation import draw_weights, fixed_weights

DRAWS = 3000


def _layer(kind, distribution):
    torch.manual_seed(0)
    layer = (DiscreteConv2d(3, 4, 3, padding=1, distribution=distribution) if kind == "conv"
             else DiscreteLinear(20, 5, distribution=distribution))
    with torch.no_grad():
        for logit in layer.distribution.logits():
            logit.normal_(0, 1.5)
    x = torch.rand(2, 3, 6, 6) if kind == "conv" else torch.rand(2, 20)
    return layer, x


@pytest.mark.parametrize("distribution", [BinaryWeights, TernaryWeights])
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_preactivation_moments_match_sampled_weights(kind, distribution):
    layer, x = _layer(kind, distribution)
    mean, var = layer.preactivation_moments(x)
    with torch.no_grad():
        outs = []
        for i in range(DRAWS):
            with fixed_weights(layer, {"": draw_weights(layer, i)[""]}):
                outs.append(layer(x))
        outs = torch.stack(outs)
    scale = var.sqrt().clamp_min(0.1)
    # standard error of a mean of 3000 draws is std/55: 5 of them is 0.09 std
    assert ((outs.mean(0) - mean).abs() / scale).max() < 0.1
    assert ((outs.var(0) - var).abs() / var.clamp_min(0.01)).max() < 0.15


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_training_forward_is_the_gaussian_sample(kind):
    layer, x = _layer(kind, TernaryWeights)
    mean, var = layer.preactivation_moments(x)
    torch.manual_seed(1)
    outs = torch.stack([layer(x) for _ in range(2000)]).detach()
    assert ((outs.mean(0) - mean) / (var + layer.method.eps).sqrt()).abs().max() < 0.15
    assert torch.allclose(outs.var(0), var + layer.method.eps, rtol=0.2, atol=1e-3)


def test_gradients_reach_the_logits():
    layer, x = _layer("conv", TernaryWeights)
    layer(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_fixed_weights_make_an_ordinary_layer():
    layer, x = _layer("conv", TernaryWeights)
    weights = draw_weights(layer, 0)
    with fixed_weights(layer, weights):
        out = layer(x)
    expected = nn.functional.conv2d(x, weights[""], padding=1)
    assert torch.equal(out, expected)
    assert set(weights[""].unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_bias_is_refused():
    with pytest.raises(ValueError, match="bias"):
        DiscreteLinear(3, 2, bias=True)


@pytest.mark.parametrize("distribution", [BinaryWeights, TernaryWeights])
@pytest.mark.parametrize("kind", ["conv", "linear", "grouped_conv"])
def test_fused_and_unfused_moments_and_gradients_agree(kind, distribution):
    torch.manual_seed(0)
    if kind == "linear":
        make, x = (lambda: DiscreteLinear(20, 5, distribution=distribution)), torch.rand(4, 20)
    else:
        groups = 2 if kind == "grouped_conv" else 1
        make = lambda: DiscreteConv2d(4, 6, 3, stride=2, padding=1, groups=groups,  # noqa: E731
                                      distribution=distribution)
        x = torch.rand(3, 4, 7, 7)
    x.requires_grad_()
    fused, plain = make(), make()
    plain.load_state_dict(fused.state_dict())
    with torch.no_grad():
        for logit in fused.distribution.logits():
            logit.normal_()
    plain.load_state_dict(fused.state_dict())
    moments, grads = [], []
    for layer, is_fused in ((fused, True), (plain, False)):
        x.grad = None
        mean, var = layer.preactivation_moments(x, fused=is_fused)
        (mean.sin().sum() + var.cos().sum()).backward()
        moments.append((mean.detach(), var.detach()))
        grads.append([x.grad, *(p.grad for p in layer.parameters())])
    for a, b in [*zip(*moments), *zip(*grads)]:
        assert torch.allclose(a, b, atol=1e-5)


def test_gaussian_sample_gradient_is_eq_5():
    """dz/dm = 1 and dz/dv^2 = noise / (2 sqrt(v^2 + eps)), with noise = (z - m) / sqrt(v^2 + eps)."""
    mean = torch.randn(50, requires_grad=True)
    var = torch.rand(50).add(0.1).requires_grad_()
    z = GaussianSample.apply(mean, var, 1e-3)
    z.sum().backward()
    std = (var.detach() + 1e-3).sqrt()
    noise = (z.detach() - mean.detach()) / std
    assert torch.equal(mean.grad, torch.ones(50))
    assert torch.allclose(var.grad, noise / (2 * std), atol=1e-6)


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_bf16_autocast_keeps_the_sample_and_its_gradients_finite(kind):
    layer, x = _layer(kind, TernaryWeights)
    x = (x * 1e3).requires_grad_()  # large inputs: bf16 rounding of the variance
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = layer(x)
    assert z.dtype == torch.bfloat16 and torch.isfinite(z).all()
    z.float().square().mean().backward()
    for tensor in (x, *layer.parameters()):
        assert tensor.grad.dtype == torch.float32 and torch.isfinite(tensor.grad).all()
