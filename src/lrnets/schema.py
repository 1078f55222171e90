"""The config schema: each option's type and allowed range, beside each other.

Sections are dataclasses; OmegaConf converts and type-checks each value the composed config
holds (``"3"`` becomes 3, ``"ten"`` for an integer is refused). A field may carry a range
(``allowed(check, text)``), checked after its type. A field a chosen group does not have (the
synthetic data's ``num_classes`` under ``dataset=mnist``, the LR layers' ``eps`` under a
straight-through mode) is skipped. A section holds only the options it lists: another key
(``+mode.x=1``, or a misspelt key of a new YAML file) is refused, except the nodes of objects a
config constructs (``_target_``: their constructor checks their arguments) and the sections
the schema leaves open (``open``: Hydra's paths, the trainer's arguments). Defaults stay in the YAML files: the
schema holds no values. Checked by ``validate`` right after composition, before any file is
written; a wrong value stops the run with one paragraph naming the option, the value and what is
allowed (``ConfigError``, exit status 2).
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from lrnets.errors import ConfigError


def allowed(check: Callable[[Any], bool], text: str) -> Any:
    """A field whose value must also pass ``check``; ``text`` says what is allowed."""
    return field(default=MISSING, metadata={"check": check, "allowed": text})


def described(text: str) -> Any:
    """A field any value of its type may take; ``text`` says what to give when it is unset."""
    return field(default=MISSING, metadata={"allowed": text})


def open_section(reader: str) -> Any:
    """A section the schema does not describe: ``reader`` checks it."""
    return field(default=MISSING, metadata={"open": reader})


def _section(cls: type) -> Any:
    return field(default_factory=cls)


def _one_of(*choices: str) -> Any:
    return allowed(lambda v: v in choices, "choose " + " or ".join(repr(c) for c in choices))


def _at_least(low: float, text: str = "") -> Any:
    return allowed(lambda v: v >= low, text or f"use a value >= {low}")


def _positive(text: str = "use a positive value") -> Any:
    return allowed(lambda v: v > 0, text)


_PROBABILITY = "a probability strictly between 0 and 1"
_EPOCHS = "use a list of epochs >= 0, such as [100, 150]"


@dataclass
class Train:
    epochs: int = _at_least(0, "use a number of epochs >= 0")
    batch_size: int = _at_least(2, "use a batch size >= 2 (batch norm needs 2 examples per "
                                   "batch to train)")
    lr: float = _positive("the learning rate must be positive")
    lr_milestones: List[int] = allowed(lambda v: all(m >= 0 for m in v), _EPOCHS)
    lr_gamma: float = allowed(lambda v: 0 < v <= 1, "use a factor in (0, 1]")
    dropout: float = allowed(lambda v: 0 <= v < 1, "use a drop rate in [0, 1)")
    weight_decay: float = _at_least(0)
    bn_momentum: float = allowed(lambda v: 0 < v <= 1, "use the weight of a new batch in the "
                                 "running statistics, in (0, 1]")
    bn_eps: float = _positive()
    logit_lr: Optional[float] = allowed(lambda v: v is None or v > 0, "use a positive learning "
                                        "rate for the logits, or null for train.lr")


@dataclass
class Dataset:
    name: str = MISSING
    reader: str = MISSING   # a reader's dotted path (lrnets.data.readers)
    root: Optional[str] = MISSING
    download: bool = MISSING
    val_size: int = _at_least(1, "hold out at least 1 training example to choose the network")
    num_workers: int = _at_least(0, "use 0 (load in the main process) or more workers")
    on_device: bool = MISSING
    arch: str = MISSING
    image_size: int = _at_least(1, "use a side of at least 1 pixel")
    resize: int = _at_least(1, "use a side of at least 1 pixel")
    # synthetic data
    num_train: int = _at_least(3, "use at least 3 training examples")
    num_test: int = _at_least(1, "use at least 1 test example")
    channels: int = _at_least(1, "use at least 1 channel")
    num_classes: int = _at_least(2, "a classifier needs at least 2 classes")


@dataclass
class Sampler:  # sampled-weight modes (Gumbel-softmax)
    temperature: float = _positive("use a temperature > 0")
    initial_temperature: Optional[float] = allowed(
        lambda v: v is None or v > 0, "use a temperature > 0, or null for a constant temperature")


@dataclass
class Layers:
    eps: float = _at_least(0, "use a value >= 0 (0 is the paper's sqrt(v^2); the authors' code "
                              "uses 1e-3)")  # LR modes: sqrt(v^2 + eps)
    fused: bool = MISSING
    clip: Optional[float] = allowed(lambda v: v is None or v > 0, "use a positive bound for the "
                                    "latent weights, or null for none")  # straight-through modes
    sampler: Sampler = _section(Sampler)


@dataclass
class Mode:
    name: str = MISSING
    layers: Layers = _section(Layers)
    first_layer: str = _one_of("discrete", "full_precision")
    weight_decay_scope: str = allowed(lambda v: v in ("last", "all"), "choose 'last' (the "
                                      "softmax layer only) or 'all'")


@dataclass
class Regularizer:  # on the weight distributions' logits and probabilities
    name: str = MISSING
    probability_decay: float = _at_least(0)
    beta: float = _at_least(0)


@dataclass
class Arch:
    name: str = MISSING
    builder: str = described("give the dotted path of the function that writes the "
                             "architecture over its blocks, such as "
                             "lrnets.models.architectures.lenet (arch=custom has no default)")


@dataclass
class Activation:  # the sign activation's options (activation=sign)
    name: str = MISSING
    blocks: str = MISSING  # the dotted path of the function that makes the blocks
    lr_layers: str = MISSING  # the class of the LR-net modes' layers (their mode.layers._target_)
    propagation: str = _one_of("relaxed", "moments")
    temperature: float = _positive("use a positive temperature")
    bn_reestimation_batches: int = _at_least(0, "use 0 (keep the running average) or a number "
                                                "of batches")


@dataclass
class Reference:  # the full-precision reference's schedule
    epochs: int = _at_least(0, "use a number of epochs >= 0")
    lr: float = _positive("the learning rate must be positive")
    lr_milestones: List[int] = allowed(lambda v: all(m >= 0 for m in v), _EPOCHS)
    weight_decay: float = _at_least(0)


@dataclass
class Init:
    name: str = MISSING
    start: str = MISSING  # the dotted path of the function that sets the weights
    checkpoint: Optional[str] = MISSING
    p_min: float = allowed(lambda v: 0 < v < 1, _PROBABILITY)
    p_max: float = allowed(lambda v: 0 < v < 1, _PROBABILITY)
    reference: Reference = _section(Reference)


@dataclass
class Eval:
    num_samples: int = _at_least(1, "sample at least 1 network")
    ensemble: int = _at_least(0, "use 0 (no ensemble) or the number of sampled networks to "
                                 "average")
    every_n_epochs: int = _at_least(0, "use 0 (only after training) or a positive number of "
                                       "epochs")
    recalibrate_bn: bool = MISSING
    score_test: bool = MISSING
    recalibration_batches: int = _at_least(1, "use at least 1 batch")
    top5: bool = MISSING


@dataclass
class Config:
    task_name: str = MISSING
    seed: int = MISSING
    ckpt_path: Optional[str] = MISSING
    verbose: bool = MISSING
    train: Train = _section(Train)
    dataset: Dataset = _section(Dataset)
    mode: Mode = _section(Mode)
    regularizer: Regularizer = _section(Regularizer)
    activation: Activation = _section(Activation)
    arch: Arch = _section(Arch)
    init: Init = _section(Init)
    eval: Eval = _section(Eval)
    weights: Any = open_section("the weight grid, read through mode.layers.distribution")
    paths: Any = open_section("Hydra and the run folder")
    trainer: Any = open_section("pytorch_lightning.Trainer")


_KINDS = {int: "use an integer", float: "use a number", bool: "use true or false",
          str: "use a string", Optional[str]: "use a string, or null",
          Optional[float]: "use a number, or null", List[int]: _EPOCHS}  # lr_milestones


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _constructed(cfg: DictConfig, key: str) -> bool:
    """Whether ``cfg[key]`` is a node a config constructs (or a key of the construction)."""
    node = cfg._get_node(key)
    return str(key).startswith("_") or (OmegaConf.is_dict(node) and "_target_" in node)


def _validate(schema: DictConfig, cls: type, cfg: DictConfig, prefix: str) -> None:
    declared = [f.name for f in dataclasses.fields(cls)]
    for key in cfg:
        if key not in declared and not _constructed(cfg, key):
            options = ", ".join(k for k in cfg if k != key and not str(k).startswith("_"))
            where = f"{prefix[:-1]} has" if prefix else "the config has"
            raise ConfigError(f"{prefix}{key}={_plain(cfg._get_node(key))!r} is not allowed: "
                              f"{where} no option {key!r}; "
                              f"{f'its options: {options}' if options else 'it has none'}. "
                              f"Remove it or correct its name.")
    for f in dataclasses.fields(cls):  # first: other values may interpolate an unset one
        if f.name in cfg.keys() and OmegaConf.is_missing(cfg, f.name):  # ??? in its YAML file
            raise ConfigError(f"{prefix}{f.name} is not set: "
                              f"{f.metadata.get('allowed', _KINDS.get(f.type, 'set it'))}.")
    for f in dataclasses.fields(cls):
        if f.name not in cfg or "open" in f.metadata:
            continue
        option, value = prefix + f.name, cfg[f.name]
        if dataclasses.is_dataclass(f.default_factory):  # a section: check what it holds
            if OmegaConf.is_dict(value):
                _validate(schema[f.name], f.default_factory, value, option + ".")
            continue
        raw = _plain(value)
        try:
            schema[f.name] = raw
        except ValidationError:
            raise ConfigError(f"{option}={raw!r} is not allowed: {_KINDS[f.type]}.") from None
        converted = _plain(schema[f.name])
        check = f.metadata.get("check")
        if check is not None and not check(converted):
            raise ConfigError(f"{option}={raw!r} is not allowed: {f.metadata['allowed']}.")
        if converted != raw or type(converted) is not type(raw):
            cfg[f.name] = converted  # the rest of the code reads the schema's types


def validate(cfg: DictConfig) -> None:
    """Convert and check every option the schema lists, then the options that bound each other;
    raise ``ConfigError`` for the first value of the wrong type or outside its range."""
    _validate(OmegaConf.structured(Config), Config, cfg, "")
    if cfg.init.p_min >= cfg.init.p_max:
        raise ConfigError(f"init.p_min={cfg.init.p_min!r} is not allowed: it must be smaller "
                          f"than init.p_max={cfg.init.p_max}.")
