"""Initialising discrete weight distributions from a full-precision network (sec. 4.1).

Each discrete layer's pretrained weight tensor is divided by its standard deviation (so it
lies mostly in [-1, 1]) and handed to the layer's distribution, which applies eq. 6-8 with
p_min / p_max clipping, or, for a straight-through layer, becomes its latent weight.
Batch-norm parameters and the last layer are not transferred (a discrete last layer, as in
sign networks, is); a full-precision layer kept in a discrete network (the first layer of
binary ResNet-18) gets the pretrained weight as it is.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lrnets.errors import ConfigError, reason
from lrnets.nn.layers import DiscreteLayer
from lrnets.nn.quantized_layers import QuantizedLayer
from lrnets.run_folder import NETWORK

_ALLOWED = ("Give a full-precision run's folder, its checkpoints/network.pt or a Lightning .ckpt "
            "file, or leave init.checkpoint=null to train (or reuse) the full-precision reference "
            "automatically.")


def network_file(path: str | Path) -> Path:
    """The network file ``init.checkpoint`` names (a run folder stands for its
    ``checkpoints/network.pt``), checked to exist and not be empty."""
    path = Path(path)
    if path.is_dir() and (path / NETWORK).is_file():  # a run folder
        path = path / NETWORK
    elif path.is_dir():
        raise ConfigError(f"init.checkpoint={str(path)!r} is a folder without "
                          f"checkpoints/network.pt, not a run's folder. {_ALLOWED}")
    if not path.is_file():
        raise ConfigError(f"init.checkpoint={str(path)!r} does not exist. {_ALLOWED}")
    if path.stat().st_size == 0:
        raise ConfigError(f"init.checkpoint={str(path)!r} could not be read as a PyTorch "
                          f"checkpoint: the file is empty (0 bytes). {_ALLOWED}")
    return path


def load_network_state(path: str | Path) -> dict[str, Tensor]:
    """Read a network state dict from a file written by a run (``checkpoints/network.pt``)
    or from a Lightning checkpoint (``*.ckpt``, keys prefixed with ``model.``)."""
    path = network_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for unreadable files
        raise ConfigError(f"init.checkpoint={str(path)!r} could not be read as a PyTorch "
                          f"checkpoint ({reason(err)}). {_ALLOWED}") from None
    state = payload.get("state_dict", payload)
    prefix = "model."
    if any(key.startswith(prefix) for key in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _target_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers that receive pretrained weights: every conv / linear layer of the body, and
    the softmax layer when it is discrete (sign networks, Roth et al. 2019)."""
    body = model.body if hasattr(model, "body") else model
    layers = {
        f"body.{name}": module
        for name, module in body.named_modules()
        if isinstance(module, (DiscreteLayer, nn.Conv2d, nn.Linear))
    }
    if isinstance(getattr(model, "head", None), DiscreteLayer):
        layers["head"] = model.head
    return layers


@torch.no_grad()
def init_from_full_precision(model: nn.Module, state: dict[str, Tensor], p_min: float,
                             p_max: float) -> None:
    """Initialise ``model``'s body from the full-precision ``state`` (eq. 6-8).

    Raises ``ConfigError`` naming every layer whose weight is missing or has another shape.
    """
    layers = _target_layers(model)
    problems = []
    for name, layer in layers.items():
        weight = state.get(f"{name}.weight")
        expected = layer.distribution.shape if isinstance(layer, DiscreteLayer) else tuple(layer.weight.shape)
        if weight is None:
            problems.append(f"{name} (missing)")
        elif tuple(weight.shape) != expected:
            problems.append(f"{name} (checkpoint {tuple(weight.shape)}, model {expected})")
    if problems:
        raise ConfigError(
            "init.checkpoint does not match the architecture being trained: "
            + "; ".join(problems)
            + ". Use a full-precision checkpoint of the same arch and dataset, or init=random."
        )
    for name, layer in layers.items():
        weight = state[f"{name}.weight"].float()
        if isinstance(layer, DiscreteLayer):
            layer.distribution.init_from_weights(weight / weight.std(), p_min, p_max)
        elif isinstance(layer, QuantizedLayer):
            layer.init_from_weights(weight / weight.std())
        else:
            layer.weight.copy_(weight)


def random_start(model: nn.Module, cfg: DictConfig, resuming: bool) -> dict:
    """``init=random`` (``init.start``): ``random_init`` with ``init.p_min`` / ``init.p_max``; a
    run that resumes overwrites it from its checkpoint."""
    random_init(model, cfg.init.p_min, cfg.init.p_max)
    return {"init": "random"}


def random_init(model: nn.Module, p_min: float, p_max: float) -> None:
    """Initialise every discrete layer as if from a random unit-variance Gaussian weight."""
    for module in model.modules():
        if isinstance(module, DiscreteLayer):
            module.distribution.random_init(p_min, p_max)
        elif isinstance(module, QuantizedLayer):
            module.init_from_weights(torch.randn_like(module.weight))
