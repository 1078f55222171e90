"""The baseline methods (BinaryConnect, BWN, TWN, straight-through ternary, Gumbel-softmax):
quantisers and samplers against hand-computed values, their layers, and every baseline mode
trained end to end (synthetic data here, MNIST in the ``slow`` tests)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrnets.errors import ConfigError
from lrnets.models.architectures import Network
from lrnets.nn.distributions import HardSigmoidBinaryWeights, TernaryWeights
from lrnets.nn.layers import DiscreteLinear
from lrnets.nn.quantized_layers import QuantizedConv2d, QuantizedLinear, quantized_layers
from lrnets.nn.quantizers import Binary, ScaledBinary, ScaledTernary, Ternary
from lrnets.nn.sampled_layers import GumbelSoftmaxSample, StraightThroughSample
from lrnets.training.evaluation import draw_weights, fixed_weights
from lrnets.training.initialization import init_from_full_precision
from lrnets.training.module import LRNetModule
from lrnets.training.reference import obtain_reference
from lrnets.training.run import build_network, train
from tests.conftest import REPO, compose_config
from tests.test_real_data import DATA, needs_mnist

STRAIGHT_THROUGH_MODES = {"binaryconnect": "none", "bwn": "one per output channel",
                          "twn": "one per output channel", "ste_ternary": "none"}
SAMPLED_MODES = ["binaryconnect_stochastic", "gumbel_ternary"]


def _forward_and_grad(quantizer, weight, upstream):
    w = torch.tensor(weight, requires_grad=True)
    q = quantizer(w)
    (q * torch.tensor(upstream)).sum().backward()
    return q.detach(), w.grad


# Quantisers: forward values and straight-through gradients, computed by hand.

def test_binary_is_sign_with_plus_one_at_zero_and_passes_gradients_through():
    q, grad = _forward_and_grad(Binary(), [-0.3, 0.0, 0.7, 2.0], [1.0, 2.0, 3.0, 4.0])
    assert q.tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_ternary_zeroes_up_to_the_threshold_and_passes_gradients_through():
    weight, upstream = [-0.75, -0.5, 0.25, 0.5, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    q, grad = _forward_and_grad(Ternary(0.5), weight, upstream)
    assert q.tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0]
    assert grad.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_scaled_binary_uses_the_mean_absolute_value_per_output_channel():
    """Channel 0: w = (0.5, -1.5), alpha = 1; channel 1: w = (3, 0), alpha = 1.5.
    dL/dw_j = alpha g_j + (sum_i g_i sign_i) sign(w_j) / n, with d|w|/dw = 0 at w = 0:
    channel 0: (1 + (1 - 2) / 2, 2 - (1 - 2) / 2) = (0.5, 2.5);
    channel 1: (1.5 * 3 + 7 / 2, 1.5 * 4 + 0) = (8, 6)."""
    weight = [[[[0.5, -1.5]]], [[[3.0, 0.0]]]]  # (out, in, kh, kw) = (2, 1, 1, 2)
    q, grad = _forward_and_grad(ScaledBinary(), weight, [[[[1.0, 2.0]]], [[[3.0, 4.0]]]])
    assert q.flatten().tolist() == [1.0, -1.0, 1.5, 1.5]
    assert grad.flatten().tolist() == [0.5, 2.5, 8.0, 6.0]


def test_scaled_ternary_thresholds_at_0_7_mean_abs_with_one_scale_per_layer():
    """mean|w| = 8.5 / 8, delta = 0.74375: kept 2, -3, 0.75, 1, -1 (sum 7.75, alpha = 1.55), in
    both rows (one scale per layer). With g = (4, 1, ..., 1), sum_i g_i t_i = 4, so
    dL/dw_j = 1.55 g_j + 4 t_j / 5."""
    weight = [[2.0, -0.25, 0.5, -3.0], [0.75, 1.0, 0.0, -1.0]]
    upstream = [[4.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    q, grad = _forward_and_grad(ScaledTernary(0.7), weight, upstream)
    t = torch.tensor([[1.0, 0.0, 0.0, -1.0], [1.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(q, 1.55 * t)
    expected_grad = [[7.0, 1.55, 1.55, 0.75], [2.35, 2.35, 1.55, 0.75]]
    torch.testing.assert_close(grad, torch.tensor(expected_grad))


# Stochastic BinaryConnect and Gumbel-softmax: distributions and samplers.

def test_hard_sigmoid_binary_weights_probabilities_init_and_clip():
    dist = HardSigmoidBinaryWeights((5,))
    with torch.no_grad():
        dist.latent.copy_(torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert dist.probs()[:, 1].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert dist.mean().tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert dist.variance().tolist() == [0.0, 0.75, 1.0, 0.75, 0.0]
    dist.init_from_weights(torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0]), p_min=0.05, p_max=0.95)
    torch.testing.assert_close(dist.latent.detach(), torch.tensor([-0.9, -0.5, 0.0, 0.5, 0.9]))
    with torch.no_grad():
        dist.latent.copy_(torch.tensor([-1.5, 0.3, 2.0, -0.2, 1.0]))
    dist.after_optimizer_step(0.5)
    torch.testing.assert_close(dist.latent.detach(), torch.tensor([-1.0, 0.3, 1.0, -0.2, 1.0]))


def test_straight_through_sample_is_a_binary_sample_with_identity_gradient():
    """P(+1) = (1 + 0.5) / 2 = 0.75; 40000 draws: std of the frequency 0.0022, bound 4 sigma."""
    torch.manual_seed(0)
    dist = HardSigmoidBinaryWeights((40000,))
    with torch.no_grad():
        dist.latent.fill_(0.5)
    sample = StraightThroughSample().sample(dist)
    assert set(sample.unique().tolist()) == {-1.0, 1.0}
    assert abs((sample == 1).float().mean().item() - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 40000)
    upstream = torch.randn(40000)
    (sample * upstream).sum().backward()
    assert torch.equal(dist.latent.grad, upstream)


def test_gumbel_softmax_sample_at_low_temperature_samples_the_distribution():
    """P(-1, 0, 1) = (0.2, 0.5, 0.3); at temperature 1e-3 the relaxed sample is one-hot except
    where the two largest perturbed log-probabilities lie within about 0.01 (under 1% of draws),
    so the rounded values occur with these frequencies (4 sigma of 30000 draws each)."""
    torch.manual_seed(0)
    n = 30000
    dist = TernaryWeights((n,))
    with torch.no_grad():
        dist.a.fill_(0.0)                      # P(w = 0) = 0.5
        dist.b.fill_(math.log(0.3 / 0.2))      # P(w = 1 | w != 0) = 0.6
    weight = GumbelSoftmaxSample(temperature=1e-3).sample(dist)
    assert (weight - weight.round()).abs().gt(1e-4).float().mean() < 0.01
    for value, p in [(-1.0, 0.2), (0.0, 0.5), (1.0, 0.3)]:
        freq = (weight.round() == value).float().mean().item()
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_gumbel_softmax_gradient_reaches_both_logits():
    torch.manual_seed(0)
    dist = TernaryWeights((100,))
    dist.init_from_weights(torch.randn(100), 0.05, 0.95)
    GumbelSoftmaxSample(temperature=0.1).sample(dist).sum().backward()
    for logit in (dist.a, dist.b):
        assert torch.isfinite(logit.grad).all() and logit.grad.abs().sum() > 0


def test_gumbel_temperature_anneals_geometrically_over_the_run():
    sampler = GumbelSoftmaxSample(temperature=0.1, initial_temperature=1.0)
    assert sampler.temperature == 1.0
    for progress, expected in [(0.0, 1.0), (0.5, math.sqrt(0.1)), (1.0, 0.1)]:
        sampler.after_optimizer_step(progress)
        assert sampler.temperature == pytest.approx(expected, rel=1e-12)
    constant = GumbelSoftmaxSample(temperature=0.1)
    constant.after_optimizer_step(0.5)
    assert constant.temperature == 0.1


# Layers.

def test_quantized_layers_apply_the_quantizer_and_clip_their_latent_weight():
    torch.manual_seed(0)
    conv = QuantizedConv2d(2, 3, 3, padding=1, quantizer=Binary(), clip=1.0)
    x = torch.randn(4, 2, 5, 5)
    assert torch.equal(conv(x), F.conv2d(x, torch.where(conv.weight >= 0, 1.0, -1.0), padding=1))
    pretrained = torch.linspace(-3, 3, 54).view(3, 2, 3, 3)
    conv.init_from_weights(pretrained)
    assert torch.equal(conv.weight.detach(), pretrained.clamp(-1, 1))
    with torch.no_grad():
        conv.weight.mul_(4)
    conv.after_optimizer_step(0.5)
    assert conv.weight.abs().max() == 1.0
    linear = QuantizedLinear(6, 2, quantizer=ScaledBinary())  # no clip: weights stay as they are
    linear.init_from_weights(torch.full((2, 6), 3.0))
    linear.after_optimizer_step(0.5)
    assert torch.equal(linear(torch.ones(1, 6)), torch.full((1, 2), 18.0))
    assert linear.bias is None


def test_sampled_layer_with_fixed_weights_is_an_ordinary_layer():
    torch.manual_seed(0)
    layer = DiscreteLinear(8, 3, distribution=TernaryWeights, method=GumbelSoftmaxSample())
    layer.distribution.random_init(0.05, 0.95)
    x = torch.randn(5, 8)
    weights = draw_weights(layer, sample_seed=3)
    with fixed_weights(layer, weights):
        assert torch.equal(layer(x), F.linear(x, weights[""]))
    assert not torch.equal(layer(x), layer(x))  # training forward: a new relaxed sample each time


def test_pretrained_weights_become_latent_weights_divided_by_their_std(tmp_path):
    full = build_network(compose_config(tmp_path, "mode=full_precision"), 1, 10, 28)
    state = full.state_dict()
    for mode, clip in [("bwn", None), ("binaryconnect", 1.0)]:
        model = build_network(compose_config(tmp_path, f"mode={mode}"), 1, 10, 28)
        init_from_full_precision(model, state, 0.05, 0.95)
        layers = quantized_layers(model)
        assert len(layers) == 3
        for name, layer in layers.items():
            weight = state[f"{name}.weight"]
            expected = weight / weight.std()
            if clip is not None:
                expected = expected.clamp(-clip, clip)
            torch.testing.assert_close(layer.weight.detach(), expected)


# Every mode end to end on synthetic data.

@pytest.fixture(scope="module")
def shared_references(tmp_path_factory):
    """One folder of full-precision references for the runs of this file (trained once)."""
    return f"paths.reference_dir={tmp_path_factory.mktemp('references')}"


@pytest.mark.parametrize("mode", [*STRAIGHT_THROUGH_MODES, *SAMPLED_MODES])
def test_baseline_mode_trains_from_the_reference_and_writes_results(smoke_config, shared_references,
                                                                    mode):
    cfg = smoke_config(f"mode={mode}", shared_references)
    results = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "results.json").read_text()) == results
    assert results["mode"] == mode and results["init"] == "pretrained"
    assert 0 <= results["test_error"] <= 1 and 0 <= results["val_error"] <= 1
    if mode in STRAIGHT_THROUGH_MODES:
        assert results["multiplications"] == STRAIGHT_THROUGH_MODES[mode]
        assert "selection" not in results
    else:
        assert len(results["selection"]["candidates"]) == cfg.eval.num_samples + 1
    assert (out / "checkpoints" / "discrete.pt").is_file()  # every discrete network exports


@pytest.mark.parametrize("mode,latent", [("binaryconnect", "weight"),
                                         ("binaryconnect_stochastic", "distribution.latent")])
def test_binaryconnect_latent_weights_stay_clipped_during_training(smoke_config, shared_references,
                                                                  mode, latent):
    """Adam's first steps move every weight by about the learning rate, so weights initialised
    at (or within 0.1 of) the clip bound would leave [-1, 1] without the clip after each step."""
    cfg = smoke_config(f"mode={mode}", "train.lr=0.1", shared_references)
    train(cfg)
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "network.pt")["state_dict"]
    latents = [v for k, v in state.items()  # the discrete layers, not batch norm or the head
               if k.startswith("body.") and k.endswith(latent) and v.dim() > 1]
    assert len(latents) == 3
    assert max(w.abs().max().item() for w in latents) <= 1.0
    assert any((w.abs() == 1.0).any() for w in latents)


class _ProgressRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen: list[float] = []

    def forward(self, x):
        return x

    def after_optimizer_step(self, progress: float) -> None:
        self.seen.append(progress)


def test_module_calls_step_hooks_with_the_fraction_of_steps_done():
    """At the start (0) and after each of 2 epochs x 3 optimizer steps (k / 6): what the
    BinaryConnect clip and the Gumbel-softmax temperature schedule are driven by."""
    recorder = _ProgressRecorder()
    model = Network(nn.Sequential(nn.Linear(4, 8), recorder), nn.Linear(8, 2))
    module = LRNetModule(model, lr=0.01, lr_milestones=[], lr_gamma=0.1, weight_decay=0.0,
                         weight_decay_scope="last")
    data = DataLoader(TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,))), batch_size=4)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    assert recorder.seen == pytest.approx([k / 6 for k in range(7)])


@pytest.mark.parametrize("override,option", [
    ("mode=gumbel_ternary mode.layers.sampler.temperature=0", "mode.layers.sampler.temperature"),
    ("mode=gumbel_ternary mode.layers.sampler.initial_temperature=-1",
     "mode.layers.sampler.initial_temperature"),
    ("mode=binaryconnect mode.layers.clip=0", "mode.layers.clip"),
])
def test_bad_baseline_options_are_config_errors(smoke_config, override, option):
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        train(smoke_config(*override.split()))


def test_compare_methods_tabulates_a_sweep_in_job_order(tmp_path):
    common = {"dataset": "mnist", "epochs": 1, "val_error": 0.02, "wall_time_s": 61.0}
    runs = {
        "2_mnist_twn": {**common, "mode": "twn", "test_error": 0.0183,
                        "multiplications": "one per output channel"},
        "10_mnist_ternary": {**common, "mode": "ternary", "test_error": 0.0123,
                             "recalibrated_bn": True, "mode_test_error_recalibrated": 0.0125,
                             "samples_test_error_recalibrated_mean": 0.0131,
                             "samples_test_error_recalibrated_std": 0.0004},
    }
    for folder, results in runs.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, "scripts/compare_methods.py", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | dataset | mode |")
    assert lines[2] == ("| 2_mnist_twn | mnist | twn | 1 | 1.83% | 2.00% | — | — | "
                        "one per output channel | 61 s |")
    assert lines[3] == ("| 10_mnist_ternary | mnist | ternary | 1 | 1.23% | 2.00% | 1.25% | "
                        "1.31 ± 0.04% | — | 61 s |")


# MNIST (slow): every method from the same shortened full-precision reference.

SHORT = ["dataset=mnist", "debug=quickstart", f"dataset.root={DATA}",
         "++trainer.limit_train_batches=100"]


@pytest.fixture(scope="module")
def mnist_reference(tmp_path_factory):
    """A full-precision reference of 100 batches (of 215 per epoch), shared by the runs below."""
    return obtain_reference(compose_config(tmp_path_factory.mktemp("mnist"), *SHORT), train)


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("mode", [*STRAIGHT_THROUGH_MODES, *SAMPLED_MODES])
def test_mnist_baseline_learns_from_the_reference(tmp_path, mnist_reference, mode):
    """100 batches of the reference (1.5% test error here), then 100 of the method: measured
    1.7% (ste_ternary) to 2.6% (binaryconnect_stochastic) on this machine, except
    binaryconnect, whose deterministic sign flips make it swing between 1.9% (1 thread) and
    4.4% (2 threads: another summation order) after so few steps. Under 6% leaves room for
    that and other platforms' numerics; a method that does not learn stays near 90%."""
    cfg = compose_config(tmp_path, *SHORT, f"mode={mode}", f"init.checkpoint={mnist_reference}",
                         "eval.num_samples=2")
    results = train(cfg)
    assert results["test_error"] < 0.06, results
