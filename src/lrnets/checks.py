"""Checks of config values that would otherwise fail late or silently (one paragraph each)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from lrnets.errors import ConfigError

# Numeric options and their type; command-line values arrive as whatever YAML makes of them.
INTEGERS = ("seed", "train.epochs", "train.batch_size", "dataset.val_size", "eval.num_samples",
            "eval.every_n_epochs", "eval.recalibration_batches")
NUMBERS = ("train.lr", "train.lr_gamma", "train.dropout", "train.weight_decay",
           "train.bn_momentum", "train.bn_eps",
           "mode.probability_decay", "mode.beta", "init.p_min", "init.p_max")


def _require(ok: bool, option: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{option}={value!r} is not allowed: {allowed}.")


def _check_types(cfg: DictConfig) -> None:
    for option in INTEGERS + NUMBERS:
        value = OmegaConf.select(cfg, option)
        kinds = int if option in INTEGERS else (int, float)
        _require(isinstance(value, kinds) and not isinstance(value, bool), option, value,
                 "use an integer" if option in INTEGERS else "use a number")
    milestones = cfg.train.lr_milestones
    _require(OmegaConf.is_list(milestones) and all(type(m) is int for m in milestones),
             "train.lr_milestones", milestones, "use a list of epochs, such as [100, 150]")


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value of the wrong type or outside its range."""
    _check_types(cfg)
    train, init, mode, ev = cfg.train, cfg.init, cfg.mode, cfg.eval
    _require(train.epochs >= 0, "train.epochs", train.epochs, "use a number of epochs >= 0")
    _require(train.batch_size >= 2, "train.batch_size", train.batch_size,
             "use a batch size >= 2 (batch norm needs 2 examples per batch to train)")
    _require(train.lr > 0, "train.lr", train.lr, "the learning rate must be positive")
    _require(0 < train.lr_gamma <= 1, "train.lr_gamma", train.lr_gamma, "use a factor in (0, 1]")
    _require(all(m >= 0 for m in train.lr_milestones), "train.lr_milestones",
             list(train.lr_milestones), "milestones are epochs >= 0")
    _require(0 <= train.dropout < 1, "train.dropout", train.dropout, "use a drop rate in [0, 1)")
    _require(0 < train.bn_momentum <= 1, "train.bn_momentum", train.bn_momentum,
             "use the weight of a new batch in the running statistics, in (0, 1]")
    _require(train.bn_eps > 0, "train.bn_eps", train.bn_eps, "use a positive value")
    _require(train.weight_decay >= 0, "train.weight_decay", train.weight_decay, "use a value >= 0")
    _require(mode.probability_decay >= 0, "mode.probability_decay", mode.probability_decay,
             "use a value >= 0")
    _require(mode.beta >= 0, "mode.beta", mode.beta, "use a value >= 0")
    _require(mode.first_layer in ("discrete", "full_precision"), "mode.first_layer",
             mode.first_layer, "choose 'discrete' or 'full_precision'")
    _require(mode.weight_decay_scope in ("last", "all"), "mode.weight_decay_scope",
             mode.weight_decay_scope, "choose 'last' (the softmax layer only) or 'all'")
    eps = mode.layers.get("eps")  # LR modes: sqrt(v^2 + eps)
    _require(eps is None or (isinstance(eps, (int, float)) and eps >= 0), "mode.layers.eps", eps,
             "use a value >= 0 (0 is the paper's sqrt(v^2); the authors' code uses 1e-3)")
    clip = mode.layers.get("clip")  # straight-through modes
    _require(clip is None or clip > 0, "mode.layers.clip", clip,
             "use a positive bound for the latent weights, or null for none")
    sampler = mode.layers.get("sampler") or {}  # sampled-weight modes (Gumbel-softmax)
    if "temperature" in sampler:
        _require(sampler.temperature is not None and sampler.temperature > 0,
                 "mode.layers.sampler.temperature", sampler.temperature, "use a temperature > 0")
    initial = sampler.get("initial_temperature")
    _require(initial is None or initial > 0, "mode.layers.sampler.initial_temperature", initial,
             "use a temperature > 0, or null for a constant temperature")
    _require(0 < init.p_min < 1, "init.p_min", init.p_min, "a probability strictly between 0 and 1")
    _require(0 < init.p_max < 1, "init.p_max", init.p_max, "a probability strictly between 0 and 1")
    _require(init.p_min < init.p_max, "init.p_min", init.p_min,
             f"it must be smaller than init.p_max={init.p_max}")
    _require(ev.num_samples >= 1, "eval.num_samples", ev.num_samples, "sample at least 1 network")
    _require(ev.every_n_epochs >= 0, "eval.every_n_epochs", ev.every_n_epochs,
             "use 0 (only after training) or a positive number of epochs")
    _require(ev.recalibration_batches >= 1, "eval.recalibration_batches",
             ev.recalibration_batches, "use at least 1 batch")
