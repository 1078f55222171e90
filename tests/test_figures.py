"""Figures (scripts/make_figures.py, lrnets.paper.figures): the Figure 1 distance separates a network
where the Gaussian approximation holds from one where it cannot, and the script draws every
figure from runs."""
import importlib.util
import json

import pytest
import torch
from PIL import Image

from lrnets.data.synthetic import synthetic_arrays
from lrnets.data.transforms import UnitRange
from lrnets.paper.figures import first_and_last_layers, ks_distance, ks_noise_level, neuron_preactivations
from lrnets.training.evaluation import discrete_layers
from lrnets.training.run import build_network
from tests.conftest import REPO


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh_ternary_net(smoke_config):
    """A LeNet with distributions from eq. 6-8 on random weights, and synthetic test images."""
    cfg = smoke_config("mode=ternary")
    torch.manual_seed(0)
    model = build_network(cfg, 1, 10, 28)
    for layer in discrete_layers(model).values():
        layer.distribution.random_init(cfg.init.p_min, cfg.init.p_max)
    images, _ = synthetic_arrays(32, 8, 1, 28, 10)[0]
    return model.eval(), UnitRange()(images)


def distances(model, x) -> dict[str, float]:
    panels = neuron_preactivations(model, x, first_and_last_layers(model), draws=20000, seed=0)
    return {panel: p.ks_distance for panel, p in panels.items()}


def test_ks_distance_matches_known_cases():
    gaussian = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    assert ks_distance(gaussian, 0.0, 1.0) < ks_noise_level(20000)
    assert ks_distance(gaussian, 1.0, 1.0) == pytest.approx(0.383, abs=0.02)  # Phi(0.5) - Phi(-0.5)
    assert ks_distance(torch.zeros(100), 0.0, 1.0) == pytest.approx(0.5)


def test_figure1_distance_is_small_where_the_clt_holds(smoke_config):
    model, x = fresh_ternary_net(smoke_config)
    for panel, distance in distances(model, x).items():
        assert distance < 0.06, (panel, distance)


def test_figure1_distance_is_large_for_nearly_deterministic_weights(smoke_config):
    model, x = fresh_ternary_net(smoke_config)
    with torch.no_grad():  # every weight almost surely one value: no randomness left to average
        for layer in discrete_layers(model).values():
            for logit in layer.distribution.logits():
                logit.copy_(12 * torch.randn_like(logit).sign())
    for panel, distance in distances(model, x).items():
        assert distance > 0.3, (panel, distance)


@pytest.mark.slow
def test_make_figures_draws_every_figure_from_runs(trained_run, tmp_path):
    ternary = trained_run("ternary", "mode=ternary")
    runs = {
        "ternary": ternary / "checkpoints" / "network.pt",  # a checkpoint stands for its run
        "mnist_ternary": ternary, "lr_10_epochs": ternary,
        "mnist_binary": trained_run("binary", "mode=binary"),
        "mnist_full_precision": trained_run("fp", "mode=full_precision"),
    }
    runs["ternary_no_decay"] = runs["gumbel_10_epochs"] = trained_run(  # figure 4 plots any two runs
        "no_decay", "mode=ternary", "regularizer=none")
    out = tmp_path / "figures"
    report = load_script("make_figures").main(
        ["--out", str(out), "--draws", "2000", *(f"--run={role}={path}" for role, path in runs.items())])
    assert not report["failed"] and not report["errors"]
    assert sorted(report["figures"]) == [1, 2, 3, 4, 5, 6]
    for n in range(1, 7):
        with Image.open(out / f"figure{n}.png") as image:
            image.load()
            assert image.width > 300 and image.height > 200
        assert json.loads((out / f"figure{n}.json").read_text())
    figure1 = json.loads((out / "figure1.json").read_text())
    assert set(figure1["layers"]) == {"first", "last"}
    assert all(0 <= p["ks_distance"] <= 1 for p in figure1["layers"].values())
    figure2 = json.loads((out / "figure2.json").read_text())
    assert figure2["with"]["channel"] == figure2["without"]["channel"]  # the same neuron
    assert figure2["without"]["probability_decay"] == 0
    assert len(json.loads((out / "figure5.json").read_text())["average_entropy_nats"]) == 2
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_make_figures_trains_the_runs_it_lacks(tmp_path):
    report = load_script("make_figures").main(
        ["--figures", "1", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
         "--draws", "2000", "dataset=synthetic", "debug=fast", f"paths.log_dir={tmp_path}"])
    assert report["figures"][1] and not report["failed"]
    assert (tmp_path / "runs" / "cifar10_ternary" / "seed0" / "results.json").is_file()
