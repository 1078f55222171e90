"""A model summary in bits (as larq's): per weight layer its kind, weight count, value set, bits
per weight, memory, what it multiplies at inference and its multiply-accumulates; totals and the
ratio to the same network in float32.

    lrnets-summary outputs/runs/2026-12-02/10-00-00       # a run folder
    lrnets-summary dataset=cifar10 mode=binary            # overrides, as lrnets-train takes them

Every run prints it at its start and writes it to its folder (``run_folder.SUMMARY``). Layers are
named as the paper names them: ``conv1``, ``conv2``, ... and ``fc1``, ``fc2``, ... in the order
the network applies them (the last ``fc`` is the softmax layer).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lrnets.config import compose_config
from lrnets.data import build_datamodule
from lrnets.errors import ConfigError
from lrnets.nn.distributions import bits_for
from lrnets.nn.layers import DiscreteConv2d, DiscreteLayer
from lrnets.nn.quantized_layers import QuantizedLayer
from lrnets.run_folder import CONFIG, read_config
from lrnets.schema import validate

FLOAT_BITS = 32
UNIT_VALUES = {-1.0, 0.0, 1.0}


@dataclass
class LayerRow:
    """One weight layer of the summary."""

    name: str
    kind: str             # conv or linear
    weights: int
    values: str           # the value set, "float32" for real weights
    bits: int             # per weight
    multiplications: str  # none, one per output channel, every weight
    macs: int             # multiply-accumulates (additions only where multiplications is none)

    @property
    def memory_bytes(self) -> float:
        return self.weights * self.bits / 8


def layer_names(model: nn.Module) -> dict[str, str]:
    """Module name -> the paper's name: ``conv1``, ... and ``fc1``, ... in the network's order."""
    names, counts = {}, {"conv": 0, "fc": 0}
    for name, module in model.named_modules():
        if _is_weight_layer(module):
            kind = "conv" if isinstance(module, (nn.Conv2d, DiscreteConv2d)) else "fc"
            counts[kind] += 1
            names[name] = f"{kind}{counts[kind]}"
    return names


def _is_weight_layer(module: nn.Module) -> bool:
    return isinstance(module, (DiscreteLayer, nn.Conv2d, nn.Linear))


def _number(value: float) -> str:
    return f"{value:.3g}"


def _weight_kind(module: nn.Module) -> tuple[int, str, int, str]:
    """Weight count, value set, bits per weight and multiplications of a weight layer."""
    if isinstance(module, DiscreteLayer):
        values = module.distribution.values.tolist()
        count = torch.Size(module.distribution.shape).numel()
        products = "none" if set(values) <= UNIT_VALUES else "every weight"
        return count, "{" + ", ".join(map(_number, values)) + "}", bits_for(len(values)), products
    count = module.weight.numel()
    if isinstance(module, QuantizedLayer):
        quantizer = module.quantizer
        levels = "{" + ", ".join(map(_number, quantizer.levels)) + "}"
        scaled = quantizer.multiplications != "none"
        return (count, f"a*{levels}" if scaled else levels, bits_for(len(quantizer.levels)),
                quantizer.multiplications)
    return count, "float32", FLOAT_BITS, "every weight"


@torch.no_grad()
def layer_rows(model: nn.Module, example: Tensor) -> list[LayerRow]:
    """The summary rows of ``model``'s weight layers; ``example``: one input (1 x C x H x W) of
    the data it takes, run once to find each layer's output size for the MACs."""
    names = layer_names(model)
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Size] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            outputs.setdefault(name, out.shape)
        return hook

    hooks = [modules[name].register_forward_hook(record(name)) for name in names]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]):
            model.eval()(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    rows = []
    for name, label in names.items():
        module = modules[name]
        count, values, bits, products = _weight_kind(module)
        out_channels = outputs[name][1]
        macs = count // out_channels * outputs[name].numel()  # each output sums fan-in products
        kind = "conv" if label.startswith("conv") else "linear"
        rows.append(LayerRow(label, kind, count, values, bits, products, macs))
    return rows


def other_parameters(model: nn.Module) -> int:
    """Real-valued parameters outside the weight layers' weights (batch norms, biases)."""
    inside = {id(m.weight) for m in model.modules()
              if _is_weight_layer(m) and not isinstance(m, DiscreteLayer)}
    discrete = {id(p) for m in model.modules() if isinstance(m, DiscreteLayer)
                for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in inside | discrete)


def _size(num_bytes: float) -> str:
    return f"{num_bytes / 1024:,.1f} KiB" if num_bytes < 1024 ** 2 else f"{num_bytes / 1024 ** 2:,.2f} MiB"


def summary_text(model: nn.Module, example: Tensor) -> str:
    """The summary as a fixed-width table with totals."""
    rows = layer_rows(model, example)
    header = ["layer", "kind", "weights", "values", "bits", "memory", "multiplications", "MACs"]
    table = [header] + [[r.name, r.kind, f"{r.weights:,}", r.values, str(r.bits),
                         _size(r.memory_bytes), r.multiplications, f"{r.macs:,}"] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    weights = sum(r.weights for r in rows)
    memory = sum(r.memory_bytes for r in rows)
    others = other_parameters(model)
    float_memory = (weights + others) * FLOAT_BITS / 8
    total = memory + others * FLOAT_BITS / 8
    per_weight = sum(r.macs for r in rows if r.multiplications == "every weight")
    lines += ["",
              f"weights: {weights:,} in {_size(memory)}; other real parameters (batch norm, biases): "
              f"{others:,} in {_size(others * FLOAT_BITS / 8)}",
              f"total: {_size(total)}, {float_memory / total:.1f}x smaller than in float32 "
              f"({_size(float_memory)})",
              f"MACs per example: {sum(r.macs for r in rows):,}, of which "
              f"{sum(r.macs for r in rows) - per_weight:,} are additions without a "
              f"multiplication per weight"]
    return "\n".join(lines)


def _config(target: list[str]) -> DictConfig:
    """The config of a run folder (its ``.hydra/config.yaml``, checked when it ran, perhaps by an
    earlier version's schema) or composed from overrides and checked."""
    if len(target) == 1 and "=" not in target[0]:
        folder = Path(target[0])
        if not folder.is_dir():
            raise ConfigError(f"RUN={folder} is not a folder. Give a run's folder or overrides "
                              f"such as dataset=mnist mode=ternary.")
        if not (folder / CONFIG).is_file():
            raise ConfigError(f"RUN={folder} is not a run folder: it has no {CONFIG}. Give a "
                              f"run's folder or overrides such as dataset=mnist mode=ternary.")
        return read_config(folder)
    cfg = compose_config(target)
    validate(cfg)
    return cfg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lrnets-summary", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="*", metavar="RUN|OVERRIDE",
                        help="a run folder, or overrides as lrnets-train takes them")
    args = parser.parse_args(argv)
    from lrnets.training.run import build_network  # run.py prints this summary: imported when called

    try:
        cfg = _config(args.target)
        dm = build_datamodule(cfg.dataset, batch_size=1, seed=cfg.seed)
        model = build_network(cfg, dm.in_channels, dm.num_classes, dm.image_size)
        example = torch.zeros(1, dm.in_channels, dm.image_size, dm.image_size)
        print(summary_text(model, example))
    except ConfigError as err:
        print(f"lrnets-summary: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
