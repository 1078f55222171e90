"""Sign networks (Roth et al. 2019): every moment formula against Monte Carlo, the discrete
network's +-1 activations and its folded-threshold form, configs, and training."""
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lrnets.data import build_datamodule
from lrnets.errors import ConfigError
from lrnets.models.sign import SignNetwork
from lrnets.nn.distributions import CategoricalWeights
from lrnets.nn.layers import DiscreteConv2d, DiscreteLinear
from lrnets.nn.moments import (Gaussian, batch_moments, max_moments, max_pool2x2_moments,
                            relaxed_sign_sample, sign_moments)
from lrnets.nn.sign_layers import (MomentBatchNorm1d, MomentPropagation, Sign,
                                ThresholdSign, fold_thresholds)
from lrnets.schema import validate
from lrnets.training.callbacks import BatchNormReestimation
from lrnets.training.evaluation import (batch_norms, discrete_layers, draw_weights, fixed_weights,
                               recalibrate_batch_norm)
from lrnets.training.initialization import init_from_full_precision, random_init
from lrnets.training.module import LRNetModule
from lrnets.training.run import build_network, train
from tests.conftest import compose_config

QUINARY = [-1.0, -0.5, 0.0, 0.5, 1.0]
SHAPES = {"lenet": (1, 28), "mlp": (1, 28), "vgg": (3, 32)}


def _gaussians(n: int, seed: int = 0) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    return Gaussian(torch.randn(n, generator=g) * 2, torch.rand(n, generator=g) * 3 + 0.05)


def _draws(x: Gaussian, count: int, seed: int = 1) -> torch.Tensor:
    noise = torch.randn((count,) + x.mean.shape, generator=torch.Generator().manual_seed(seed))
    return x.mean + x.var.sqrt() * noise


def _assert_moments(samples: torch.Tensor, predicted: Gaussian, standard_errors: float = 5):
    """Mean and variance of ``samples`` (draws along dim 0) within ``standard_errors`` of
    their Monte Carlo standard errors (estimated from the samples) of the prediction."""
    n = samples.shape[0]
    centred = samples - samples.mean(0)
    se_mean = samples.std(0) / math.sqrt(n)
    se_var = centred.square().std(0) / math.sqrt(n)
    assert torch.all((samples.mean(0) - predicted.mean).abs() <= standard_errors * se_mean + 1e-6)
    assert torch.all((samples.var(0) - predicted.var).abs() <= standard_errors * se_var + 1e-6)


def test_sign_of_a_gaussian_matches_monte_carlo():
    x = _gaussians(12)
    _assert_moments(torch.where(_draws(x, 200000) >= 0, 1.0, -1.0), sign_moments(x))


@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_relaxed_sign_sample_is_positive_with_probability_phi(temperature):
    """sign(tanh((l + L) / 2 tau)) = +1 with probability sigmoid(l) = Phi(mu / sigma) at
    every temperature: the relaxation keeps the distribution of the sign."""
    x = _gaussians(12)
    torch.manual_seed(2)
    draws = relaxed_sign_sample(x.map(lambda t: t.expand(100000, -1)), temperature)
    assert draws.abs().max() <= 1
    phi = torch.special.ndtr(x.mean / x.var.sqrt())
    assert ((draws > 0).float().mean(0) - phi).abs().max() < 0.008  # 5 standard errors


def test_max_of_two_gaussians_matches_monte_carlo():
    x1, x2 = _gaussians(12, seed=0), _gaussians(12, seed=3)
    _assert_moments(torch.maximum(_draws(x1, 200000, 1), _draws(x2, 200000, 2)),
                    max_moments(x1, x2))


def test_max_pool_of_gaussians_is_max_pooling_for_certain_inputs_and_pairwise_otherwise():
    torch.manual_seed(0)
    mean = torch.randn(2, 3, 5, 7)
    pooled = max_pool2x2_moments(Gaussian(mean, torch.zeros_like(mean)))
    assert pooled.mean.shape == (2, 3, 2, 3)
    assert torch.allclose(pooled.mean, F.max_pool2d(mean, 2), atol=1e-3)
    x = Gaussian(mean, torch.rand_like(mean))
    at = lambda i, j: x.map(lambda t: t[..., i, j])  # noqa: E731
    expected = max_moments(max_moments(at(0, 0), at(0, 1)), max_moments(at(1, 0), at(1, 1)))
    got = max_pool2x2_moments(x)
    assert torch.allclose(got.mean[..., 0, 0], expected.mean, atol=1e-6)
    assert torch.allclose(got.var[..., 0, 0], expected.var, atol=1e-6)


def _categorical_layer(cls, *args):
    torch.manual_seed(0)
    layer = cls(*args, distribution=lambda shape: CategoricalWeights(shape, QUINARY),
                method=MomentPropagation())
    with torch.no_grad():
        layer.distribution.theta.normal_(0, 1.5)
    return layer.train()


def test_preactivation_of_random_input_and_categorical_weights_matches_monte_carlo():
    """z = sum_i w_i x_i with independent categorical w and Gaussian x."""
    layer = _categorical_layer(DiscreteLinear, 30, 4)
    x = _gaussians(30)
    predicted = layer(Gaussian(x.mean.unsqueeze(0), x.var.unsqueeze(0)))
    count = 20000
    weights = layer.distribution
    big = CategoricalWeights((count, 4, 30), QUINARY)
    with torch.no_grad():
        big.theta.copy_(weights.theta.unsqueeze(1).expand(-1, count, -1, -1))
    w = big.sample(torch.Generator().manual_seed(5))
    z = torch.einsum("soi,si->so", w, _draws(x, count))
    _assert_moments(z, Gaussian(predicted.mean[0].detach(), predicted.var[0].detach()))


def test_convolution_moments_equal_those_of_the_linear_map_on_patches():
    conv = _categorical_layer(DiscreteConv2d, 2, 3, 3, 1, 1)
    linear = DiscreteLinear(18, 3, distribution=lambda shape: CategoricalWeights(shape, QUINARY),
                            method=MomentPropagation())
    with torch.no_grad():
        linear.distribution.theta.copy_(conv.distribution.theta.reshape(5, 3, 18))
    torch.manual_seed(1)
    x = Gaussian(torch.randn(2, 2, 4, 4), torch.rand(2, 2, 4, 4))
    out = conv(x)
    patches = x.map(lambda t: F.unfold(t, 3, padding=1).transpose(1, 2))  # N, 16, 18
    expected = linear.train()(patches)
    assert torch.allclose(out.mean.flatten(2).transpose(1, 2), expected.mean, atol=1e-5)
    assert torch.allclose(out.var.flatten(2).transpose(1, 2), expected.var, atol=1e-5)
    deterministic = conv(x.mean)  # a tensor input: the LR-nets pair, v_x = 0
    zero = conv(Gaussian(x.mean, torch.zeros_like(x.var)))
    assert torch.allclose(deterministic.mean, zero.mean, atol=1e-5)
    assert torch.allclose(deterministic.var, zero.var, atol=1e-5)


def test_distribution_batch_norm_matches_monte_carlo():
    """The batch statistics are those of the mixture of the batch's Gaussians: the mean and
    variance of draws pooled over the batch; the output is the normalised input."""
    torch.manual_seed(0)
    x = Gaussian(torch.randn(16, 3) * 2 + 1, torch.rand(16, 3) * 2)
    draws = _draws(x, 20000)                                  # count, 16, 3
    mean, var = batch_moments(x, (0,))
    _assert_moments(draws.reshape(-1, 3), Gaussian(mean[0], var[0]))
    bn = MomentBatchNorm1d(3, momentum=0.1).train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    out = bn(x)
    normalised = (draws - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    _assert_moments(normalised, Gaussian(out.mean.detach(), out.var.detach()))
    assert torch.allclose(bn.running_mean, 0.1 * mean[0])
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var[0] * 16 / 15)
    bn.eval()
    frozen = bn(x)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(frozen.mean, (x.mean - bn.running_mean) * scale + bn.bias)


def _sign_network(tmp_path, arch: str, *overrides: str) -> SignNetwork:
    cfg = compose_config(tmp_path, "activation=sign", f"arch={arch}", *overrides)
    channels, size = SHAPES[arch]
    model = build_network(cfg, channels, 10, size)
    torch.manual_seed(0)
    random_init(model, 0.05, 0.95)
    with torch.no_grad():  # batch norms of every kind: scaled, flipped, constant
        for bn in batch_norms(model):
            bn.weight.normal_()
            bn.weight[0] = 0.0
            bn.bias.normal_()
    return model


@pytest.mark.parametrize("arch", ["lenet", "mlp"])
def test_discrete_network_has_pm1_activations_and_folds_into_thresholds(tmp_path, arch):
    model = _sign_network(tmp_path, arch).double()
    channels, size = SHAPES[arch]
    torch.manual_seed(1)
    x = torch.rand(64, channels, size, size, dtype=torch.double)
    recalibrate_batch_norm(model, [(x, None)], lambda t, train: t, num_batches=1)
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o))
             for m in model.modules() if isinstance(m, Sign)]
    with fixed_weights(model, draw_weights(model, sample_seed=3)):
        logits = model.eval()(x)
        folded = fold_thresholds(model)
    for hook in hooks:
        hook.remove()
    assert len(outputs) == len(hooks) and all(set(o.unique().tolist()) == {-1.0, 1.0}
                                              for o in outputs)
    assert not any(isinstance(m, (Sign, nn.modules.batchnorm._BatchNorm)) for m in folded.modules())
    assert sum(isinstance(m, ThresholdSign) for m in folded.modules()) == len(hooks)
    assert torch.equal(folded(x), logits)


@pytest.mark.parametrize("arch", ["lenet", "mlp", "vgg"])
def test_weight_layers_sit_where_the_relu_reference_has_them(tmp_path, arch):
    """A full-precision ReLU network of the same arch initialises every discrete layer of the
    sign network, its softmax layer included (Roth et al. start from such a network)."""
    channels, size = SHAPES[arch]
    relu = build_network(compose_config(tmp_path, "mode=full_precision", f"arch={arch}"),
                         channels, 10, size)
    sign = build_network(compose_config(tmp_path, "activation=sign", f"arch={arch}"),
                         channels, 10, size)
    init_from_full_precision(sign, relu.state_dict(), 0.05, 0.95)
    head = sign.head.distribution.most_probable()
    agree = (head.sign() == relu.head.weight.sign()) | (head == 0)
    assert agree.all() and (head != 0).any()


def test_eval_mode_without_fixed_weights_is_the_most_probable_network(tmp_path):
    model = _sign_network(tmp_path, "mlp").eval()
    x = torch.rand(8, 1, 28, 28)
    with fixed_weights(model, draw_weights(model, None)):
        expected = model(x)
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("arch,extra", [
    ("lenet", []),
    ("mlp", ["activation.propagation=moments"]),
    ("mlp", ["weights=quinary", "mode=binary"]),
])
def test_sign_networks_train_and_report(smoke_config, arch, extra):
    cfg = smoke_config("activation=sign", f"arch={arch}", "init=random", *extra)
    results = train(cfg)
    assert (results["activation"], results["arch"]) == ("sign", arch)
    assert 0 <= results["test_error"] <= 1
    assert len(results["selection"]["candidates"]) == cfg.eval.num_samples + 1
    assert results["recalibrated_bn"] is True
    saved = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "discrete.pt")
    assert "head" in saved["weights"] and "bias" in saved["state_dict"]


def test_sign_network_starts_from_a_relu_reference_and_learns(smoke_config):
    """One epoch of a full-precision ReLU reference, then one of ternary weights and sign
    activations, separate the synthetic classes (chance: 90% error)."""
    cfg = smoke_config("activation=sign", "arch=mlp", "trainer.limit_train_batches=null",
                       "trainer.limit_val_batches=null")
    results = train(cfg)
    assert results["init"] == "pretrained" and results["test_error"] < 0.2, results
    reference = Path(results["init_checkpoint"]).parents[1] / "results.json"
    assert json.loads(reference.read_text())["activation"] == "relu"


def _sign_module(cfg, model: nn.Module) -> LRNetModule:
    return LRNetModule(model, lr=cfg.train.lr, lr_milestones=[], lr_gamma=1.0, weight_decay=0.0,
                       weight_decay_scope="last", logit_lr=cfg.train.logit_lr)


def test_logits_and_the_rest_have_the_authors_learning_rates(tmp_path):
    cfg = compose_config(tmp_path, "activation=sign", "arch=mlp")
    model = build_network(cfg, 1, 10, 28)
    groups = {g["lr"]: g["params"] for g in _sign_module(cfg, model).parameter_groups()}
    logits = [p for layer in discrete_layers(model).values() for p in layer.distribution.parameters()]
    assert sorted(groups) == [1e-3, 1e-2]
    assert {id(p) for p in groups[1e-2]} == {id(p) for p in logits}
    assert len(groups[1e-3]) == len(list(model.parameters())) - len(logits)


def test_batch_norm_statistics_are_those_of_the_discrete_network_after_training(smoke_config):
    cfg = smoke_config("activation=sign", "arch=mlp")
    dm = build_datamodule(cfg.dataset, batch_size=cfg.train.batch_size, seed=0)
    model = build_network(cfg, dm.in_channels, dm.num_classes, dm.image_size)
    random_init(model, 0.05, 0.95)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[BatchNormReestimation(2)])
    trainer.fit(_sign_module(cfg, model), datamodule=dm)
    assert all(bn.momentum == 0.1 for bn in batch_norms(model))  # restored for training
    trained = [bn.running_mean.clone() for bn in batch_norms(model)]
    with fixed_weights(model, draw_weights(model, None)):
        recalibrate_batch_norm(model, dm.calibration_dataloader(), dm.batch_transform, 2)
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(trained, batch_norms(model)))


@pytest.mark.parametrize("overrides,match", [
    (["mode=full_precision"], r"^activation=sign .* mode\.layers\._target_ builds "
                              r"FullPrecisionLayers: use mode=ternary or mode=binary"),
    (["mode=twn"], r"mode\.layers\._target_ builds QuantizedLayers"),
    (["mode=gumbel_ternary"], r"mode\.layers\._target_ builds SampledWeightLayers"),
    (["mode.first_layer=full_precision"], r"mode\.first_layer builds FullPrecisionLayers"),
    (["arch=resnet18"], "arch='resnet18'"),
])
def test_what_sign_networks_cannot_do_is_refused(tmp_path, overrides, match):
    cfg = compose_config(tmp_path, "activation=sign", *overrides)
    with pytest.raises(ConfigError, match=match):
        build_network(cfg, 1, 10, 28)


@pytest.mark.parametrize("override,match", [
    ("activation.propagation=exact", r"activation\.propagation='exact' is not allowed: choose "
                                     r"'relaxed' or 'moments'"),
    ("activation.temperature=0", r"activation\.temperature=0\.0 is not allowed: use a positive"),
    ("activation.bn_reestimation_batches=-1", r"activation\.bn_reestimation_batches=-1"),
])
def test_the_schema_refuses_bad_sign_options(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose_config(tmp_path, "activation=sign", override))
