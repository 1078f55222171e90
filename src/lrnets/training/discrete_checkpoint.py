"""The chosen discrete network of a run, ``checkpoints/discrete.pt``: its writer and its reader.

    {"weights":    {layer: int8 indices into the layer's value set},
     "values":     {layer: the value set, e.g. [-1.0, 0.0, 1.0]},
     "scales":     {layer: one scale per output channel} (the scaled straight-through baselines,
                   BWN and TWN: weight = scale[c] * values[index]; absent otherwise),
     "state_dict": every other tensor (batch norms as the chosen network had them, the softmax
                   layer, a full-precision first layer),
     "meta":       what rebuilds the network and its test data without the run folder, and the
                   chosen network's predicted class for every test example}

loadable with ``torch.load(weights_only=True)``. ``lrnets.export.writer`` reads it. A LR-net's is its
chosen sample (``save_discrete_network``), a straight-through baseline's its one deterministic
network (``save_quantized_network``).
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from lrnets.errors import ConfigError, reason
from lrnets.models.architectures import Network
from lrnets.nn.quantized_layers import quantized_layers
from lrnets.run_folder import DISCRETE
from lrnets.training.evaluation import Selection, discrete_layers, real_state


def save_discrete_network(path: Path, model: Network, selection: Selection, meta: dict) -> None:
    """The chosen network: integer weights (indices into the value set, int8) and every other
    tensor as it had them (``Selection.state``); loadable with
    ``torch.load(weights_only=True)``."""
    layers = discrete_layers(model)
    _save(path, selection.state, meta, weights=selection.indices(model),
          values={name: layer.distribution.values.tolist() for name, layer in layers.items()})


def save_quantized_network(path: Path, model: Network, meta: dict) -> None:
    """A straight-through baseline's network (``lrnets.nn.quantized_layers``): its quantised weights
    as indices into the quantiser's levels, with the scales of BWN and TWN."""
    layers = quantized_layers(model)
    forms = {name: layer.discrete_form() for name, layer in layers.items()}
    scales = {name: scale for name, (_, scale) in forms.items() if scale is not None}
    _save(path, real_state(model, layers), meta,
          weights={name: codes for name, (codes, _) in forms.items()},
          values={name: list(layer.quantizer.levels) for name, layer in layers.items()},
          **({"scales": scales} if scales else {}))


def _save(path: Path, state: dict, meta: dict, **entries) -> None:
    """``entries`` (weights, values, scales) with every other tensor of the network (``state``,
    ``real_state``) and ``meta``."""
    torch.save({**entries, "state_dict": {k: v.cpu() for k, v in state.items()}, "meta": meta},
               path)


def discrete_meta(cfg: DictConfig, dm: pl.LightningDataModule, chosen: dict,
                  test_predictions: torch.Tensor) -> dict:
    """What ``discrete.pt`` records besides the weights: enough to rebuild the network and its
    test data without the run's folder, and the chosen network's predicted class for every test
    example, which an export must reproduce (``lrnets.export.writer``)."""
    return {
        "dataset": cfg.dataset.name, "arch": cfg.arch.name, "builder": cfg.arch.get("builder"),
        "mode": cfg.mode.name, "seed": cfg.seed,
        "activation": OmegaConf.select(cfg, "activation.name", default="relu"),
        "blocks": OmegaConf.select(cfg, "activation.blocks"),
        "first_layer": cfg.mode.first_layer, "in_channels": dm.in_channels,
        "num_classes": dm.num_classes, "image_size": dm.image_size, "bn_eps": cfg.train.bn_eps,
        "data": OmegaConf.to_container(cfg.dataset, resolve=True), "chosen": chosen,
        "test_predictions": test_predictions,
    }


# What a reader needs from "meta"; a discrete.pt without one of these is of an older version.
_META = ("arch", "first_layer", "in_channels", "num_classes", "image_size", "data", "chosen",
         "test_predictions")


def read_discrete_network(source: Path) -> dict:
    """The contents of a run's ``discrete.pt`` (``source``: the file or the run folder)."""
    path = source / DISCRETE if source.is_dir() else source
    if not path.is_file():
        raise ConfigError(f"CHECKPOINT={source} is not a discrete network: give the folder of a "
                          f"discrete run (LR-net or straight-through baseline) or its {DISCRETE} "
                          f"(full-precision runs have none).")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for unreadable files
        raise ConfigError(f"CHECKPOINT={path} cannot be read ({reason(err)}).") from None
    meta = saved.get("meta", {}) if isinstance(saved, dict) else {}
    missing = [key for key in _META if key not in meta]
    if missing:
        raise ConfigError(f"CHECKPOINT={path} lacks {', '.join(missing)}: it is not a discrete.pt "
                          f"of this version. Rerun the run's evaluation (ckpt_path=last in its "
                          f"folder) to write it again.")
    return saved
