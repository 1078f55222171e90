"""The paper's figures, computed from trained runs and drawn with matplotlib
(``scripts/make_figures.py``).

- Figures 1 and 2 (sec. 3.2, 4.2): the pre-activation z = sum_j w_j h_j of one neuron for a
  fixed input h, with the discrete weights w explicitly sampled many times, against the
  Gaussian N(m, v^2) the local reparameterization trick trains with (eq. 4: m = sum_j E[w_j] h_j,
  v^2 = sum_j Var[w_j] h_j^2, plus the layer's ``eps`` as in training). The Kolmogorov-Smirnov
  distance between the two measures the approximation: close to 0 when the central limit
  theorem holds, up to 1 when the weights are nearly deterministic (Fig. 2a).
- Figure 3 (sec. 5.4): the first 25 kernels of the first layer (most probable weights).
- Figure 4 (Appendix A): training curves of two runs (LR vs Gumbel-softmax weights).
- Figures 5 and 6 (Appendix B): the average entropy of every layer through training, and the
  histogram of P(w = 0) of the last convolution at initialisation and at the end.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from lrnets.data import build_datamodule
from lrnets.errors import ConfigError
from lrnets.models.architectures import Network
from lrnets.nn.layers import DiscreteConv2d, DiscreteLayer, GaussianMethod
from lrnets.paper.cells import run_folder
from lrnets.run_folder import NETWORK, TENSORBOARD, read_config, read_results
from lrnets.training.callbacks import first_layer_kernels
from lrnets.training.evaluation import discrete_layers, draw_weights, fixed_weights
from lrnets.training.initialization import init_from_full_precision, load_network_state
from lrnets.training.run import build_network
from lrnets.training.summary import layer_names


@dataclass
class LoadedRun:
    """A finished run: its config, results, trained network and a batch of test inputs."""

    folder: Path
    cfg: DictConfig
    results: dict
    model: Network
    inputs: Tensor
    shape: tuple[int, int, int]  # in_channels, num_classes, image_size: what builds the network


def load_run(path: str | Path, batch: int = 64) -> LoadedRun:
    """The run in ``path`` (a run folder or its ``checkpoints/network.pt``), its network in
    eval mode and the first ``batch`` test images as the network sees them."""
    folder = run_folder(path)
    cfg = read_config(folder)
    dm = build_datamodule(cfg.dataset, batch_size=batch, seed=cfg.seed, num_workers=0)
    shape = (dm.in_channels, dm.num_classes, dm.image_size)
    model = build_network(cfg, *shape)
    model.load_state_dict(load_network_state(folder / NETWORK))
    images, _ = next(iter(dm.test_dataloader()))
    return LoadedRun(folder, cfg, read_results(folder) or {}, model.eval(),
                     dm.batch_transform(images, train=False), shape)


def initial_network(run: LoadedRun) -> Network:
    """The run's network as training started: the distributions set by eq. 6-8 from the
    full-precision network the run recorded (``init_checkpoint``)."""
    checkpoint = run.results.get("init_checkpoint")
    if checkpoint is None or not Path(checkpoint).is_file():
        raise ConfigError(f"{run.folder} does not say which full-precision network it started "
                          f"from (init={run.results.get('init')}); the initial distributions "
                          f"are rebuilt from it, so use a run with init=pretrained.")
    model = build_network(run.cfg, *run.shape)
    init_from_full_precision(model, load_network_state(checkpoint), run.cfg.init.p_min,
                             run.cfg.init.p_max)
    return model.eval()


# Figures 1 and 2 -------------------------------------------------------------------------------

@torch.no_grad()
def layer_inputs(model: Network, names: list[str], x: Tensor) -> dict[str, Tensor]:
    """The input each named layer receives when the most probable discrete network (sec. 4.4)
    runs on ``x`` in eval mode."""
    layers = dict(model.named_modules())
    captured: dict[str, Tensor] = {}
    hooks = [layers[name].register_forward_pre_hook(
        lambda module, args, name=name: captured.__setitem__(name, args[0])) for name in names]
    try:
        with fixed_weights(model, draw_weights(model, None)):
            model.eval()
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def receptive_fields(layer: DiscreteLayer, h: Tensor) -> Tensor:
    """The inputs of every neuron of ``layer``: shape (batch, fan_in, positions), fan_in ordered
    as the flattened weight of one output channel."""
    if isinstance(layer, DiscreteConv2d):
        return F.unfold(h, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                        stride=layer.stride)
    return h.unsqueeze(-1)


@dataclass(frozen=True)
class Neuron:
    image: int
    channel: int
    position: int


def choose_neuron(layer: DiscreteLayer, fields: Tensor, generator: torch.Generator) -> Neuron:
    """A random output channel at a random (image, position) whose inputs are at least half
    non-zero (a neuron over blank background or dead units has a constant pre-activation and
    says nothing about the approximation); the fullest receptive field if there is none."""
    filled = (fields != 0).float().mean(1)
    candidates = (filled >= 0.5).nonzero()
    if len(candidates) == 0:
        candidates = (filled == filled.max()).nonzero()
    image, position = candidates[torch.randint(len(candidates), (1,), generator=generator)][0]
    channel = torch.randint(layer.distribution.shape[0], (1,), generator=generator)
    return Neuron(int(image), int(channel), int(position))


def ks_distance(samples: Tensor, mean: float, std: float) -> float:
    """Kolmogorov-Smirnov distance sup_x |F_samples(x) - Phi((x - mean) / std)|."""
    x = samples.double().sort().values
    cdf = torch.special.ndtr((x - mean) / max(std, 1e-30))
    n = len(x)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - cdf
    below = cdf - torch.arange(n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


@dataclass
class Preactivation:
    """One neuron's pre-activation: explicit weight samples and the LRT Gaussian."""

    layer: str
    neuron: Neuron
    fan_in: int
    nonzero_inputs: int
    samples: Tensor
    mean: float
    std: float

    @property
    def ks_distance(self) -> float:
        return ks_distance(self.samples, self.mean, self.std)

    def summary(self) -> dict:
        return {"layer": self.layer, **asdict(self.neuron), "fan_in": self.fan_in,
                "nonzero_inputs": self.nonzero_inputs, "draws": len(self.samples),
                "lrt_mean": self.mean, "lrt_std": self.std,
                "sampled_mean": float(self.samples.mean()), "sampled_std": float(self.samples.std()),
                "ks_distance": self.ks_distance}


@torch.no_grad()
def preactivation(name: str, layer: DiscreteLayer, fields: Tensor, neuron: Neuron, draws: int,
                  generator: torch.Generator) -> Preactivation:
    """``draws`` pre-activations of ``neuron`` with the weights of its output channel sampled
    from their distributions, and the Gaussian of eq. 4 for the same inputs."""
    h = fields[neuron.image, :, neuron.position].double()
    dist = layer.distribution
    probs = dist.probs()[neuron.channel].reshape(len(h), -1).double()
    values = dist.values.double()
    chunk = max(1, 2 ** 22 // len(h))  # at most ~4M weights sampled at once
    samples = torch.cat([
        h @ values[torch.multinomial(probs, min(chunk, draws - start), replacement=True,
                                     generator=generator)]
        for start in range(0, draws, chunk)])
    mean_w, var_w = (t[neuron.channel].flatten().double() for t in dist.moments())
    eps = layer.method.eps if isinstance(layer.method, GaussianMethod) else 0.0
    variance = float(h.square() @ var_w) + eps
    return Preactivation(name, neuron, len(h), int((h != 0).sum()), samples,
                         float(h @ mean_w), math.sqrt(variance))


def first_and_last_layers(model: Network) -> dict[str, str]:
    """Names of the first and the last discrete (hidden) layer."""
    names = list(discrete_layers(model))
    if not names:
        raise ConfigError("the network has no discrete layers: Figures 1, 2, 5 and 6 need a "
                          "discrete (binary or ternary) run.")
    return {"first": names[0], "last": names[-1]}


def neuron_preactivations(model: Network, x: Tensor, which: dict[str, str], draws: int,
                          seed: int, neurons: dict[str, Neuron] | None = None
                          ) -> dict[str, Preactivation]:
    """Figure 1 data for the network input ``x`` and the layers ``which`` maps a panel to;
    ``neurons`` fixes the neurons (the same neuron in two runs, Figure 2), else they are drawn
    with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    layers = discrete_layers(model)
    inputs = layer_inputs(model, list(which.values()), x)
    out = {}
    for panel, name in which.items():
        fields = receptive_fields(layers[name], inputs[name])
        neuron = neurons[panel] if neurons else choose_neuron(layers[name], fields, generator)
        out[panel] = preactivation(name, layers[name], fields, neuron, draws, generator)
    return out


def ks_noise_level(draws: int) -> float:
    """The KS distance that ``draws`` samples of the Gaussian itself stay below 95% of the
    time (1.358 / sqrt(n)): smaller distances are sampling noise."""
    return 1.358 / math.sqrt(draws)


def plot_preactivations(panels: dict[str, Preactivation], titles: dict[str, str]) -> Figure:
    """Histograms of the sampled pre-activations with the LRT Gaussian density over them."""
    fig = Figure(figsize=(5 * len(panels), 3.8), layout="constrained")
    for ax, (panel, p) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        ax.hist(p.samples.numpy(), bins=80, density=True, color="tab:blue", alpha=0.6,
                label="sampled discrete weights")
        low, high = (min(float(p.samples.min()), p.mean - 4 * p.std),
                     max(float(p.samples.max()), p.mean + 4 * p.std))
        x = torch.linspace(low, high, 400, dtype=torch.float64)
        density = torch.exp(-0.5 * ((x - p.mean) / p.std) ** 2) / (p.std * math.sqrt(2 * math.pi))
        ax.plot(x.numpy(), density.numpy(), color="tab:red", label="LRT Gaussian (eq. 4)")
        ax.set_title(f"{titles[panel]}\n{p.layer}, fan-in {p.fan_in}, KS {p.ks_distance:.3f}",
                     fontsize=9)
        ax.set_xlabel("pre-activation z")
        ax.legend(fontsize=7)
    return fig


# Figure 3 -------------------------------------------------------------------------------------

def plot_kernels(models: dict[str, Network]) -> Figure:
    """The first 25 first-layer kernels of each network: most probable discrete weights (black
    -1, gray 0, white +1) or real weights scaled to [-1, 1] (``first_layer_kernels``)."""
    fig = Figure(figsize=(3 * len(models), 3.3), layout="constrained")
    for ax, (title, model) in zip(fig.subplots(1, len(models), squeeze=False)[0], models.items()):
        with torch.no_grad():
            grid = first_layer_kernels(model)
        if grid is None:
            raise ConfigError(f"the {title} network has no convolution: Figure 3 shows "
                              f"first-layer kernels.")
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    return fig


# Figures 4, 5 and 6 ---------------------------------------------------------------------------

def scalars(folder: Path, prefix: str) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars of a run whose tag starts with ``prefix``: tag -> [(step, value)]."""
    events = EventAccumulator(str(folder / TENSORBOARD), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if tag.startswith(prefix)}


@torch.no_grad()
def entropy_curves(run: LoadedRun) -> dict[str, list[float]]:
    """Average entropy (nats) of every discrete layer: at initialisation, then after every
    epoch (the ``entropy/<layer>`` scalars ``DistributionMonitor`` logs)."""
    network = initial_network(run)
    labels = layer_names(network)  # the tags' names; runs before them: the module names
    logged = scalars(run.folder, "entropy/")
    return {labels[name]: [float(layer.distribution.entropy().mean())]
            + [value for _, value in logged.get(f"entropy/{labels[name]}",
                                                logged.get(f"entropy/{name}", []))]
            for name, layer in discrete_layers(network).items()}


def plot_entropy(curves: dict[str, dict[str, list[float]]]) -> Figure:
    """One panel per layer: average entropy against the epoch, one line per run."""
    layers = list(next(iter(curves.values())))
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, layer in zip(axes, layers):
        for label, run_curves in curves.items():
            ax.plot(range(len(run_curves[layer])), run_curves[layer], marker=".", label=label)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("epoch (0: initialisation)")
        ax.set_ylabel("average entropy (nats)")
        ax.ticklabel_format(axis="y", useOffset=False)
    for ax in axes[len(layers):]:
        ax.axis("off")
    axes[0].legend(fontsize=7)
    return fig


def last_convolution(model: Network) -> str:
    convs = [name for name, layer in discrete_layers(model).items() if isinstance(layer, DiscreteConv2d)]
    if not convs:
        raise ConfigError("the network has no discrete convolution: Figure 6 shows the last one.")
    return convs[-1]


@torch.no_grad()
def p_zero(layer: DiscreteLayer) -> Tensor:
    """P(w = 0) of every weight of a layer whose weight set holds 0 (ternary)."""
    dist = layer.distribution
    zero = (dist.values == 0).nonzero()
    if len(zero) == 0:
        raise ConfigError(f"weights in {dist.values.tolist()} have no 0: Figure 6 shows "
                          f"P(w = 0) of a ternary run.")
    return dist.probs()[..., int(zero[0])].flatten()


def plot_histograms(histograms: dict[str, Tensor], xlabel: str) -> Figure:
    fig = Figure(figsize=(3.6 * len(histograms), 3), layout="constrained")
    for ax, (title, values) in zip(fig.subplots(1, len(histograms), squeeze=False)[0],
                                   histograms.items()):
        ax.hist(values.numpy(), bins=50, range=(0, 1), color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
    return fig


def plot_training_curves(runs: dict[str, Path], tags: list[str]) -> tuple[Figure, dict]:
    """One panel per TensorBoard tag (``train/loss``, ``val/acc``, ...) against the training
    step, one line per run; returns the figure and the plotted points."""
    points = {label: scalars(folder, "") for label, folder in runs.items()}
    fig = Figure(figsize=(4.5 * len(tags), 3.3), layout="constrained")
    for ax, tag in zip(fig.subplots(1, len(tags), squeeze=False)[0], tags):
        for label, run_points in points.items():
            steps, values = zip(*run_points[tag]) if run_points.get(tag) else ((), ())
            ax.plot(steps, values, marker=".", label=label)
        ax.set_title(tag)
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    return fig, {label: {tag: p.get(tag, []) for tag in tags} for label, p in points.items()}


class FigureWriter:
    """Writes ``<out>/<name>.png`` and ``<name>.json`` and logs the figure to TensorBoard
    (``<out>/tensorboard``, tag ``<name>``)."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.tensorboard = SummaryWriter(str(out / TENSORBOARD))

    def save(self, name: str, fig: Figure, data: dict) -> dict[str, str]:
        png, data_json = self.out / f"{name}.png", self.out / f"{name}.json"
        fig.savefig(png, dpi=120)
        data_json.write_text(json.dumps(data, indent=2) + "\n")
        self.tensorboard.add_figure(name, fig, close=False)
        self.tensorboard.flush()
        return {"png": str(png), "json": str(data_json)}

    def close(self) -> None:
        self.tensorboard.close()
