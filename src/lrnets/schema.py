"""The config schema: each option's type and allowed range, beside each other, in the ConfigStore.

Each section is a dataclass; each group choice names its own in its defaults list
(``conf/dataset/mnist.yaml``: ``- /schema/dataset/in_memory@dataset``), so Hydra composes every config over
its schema and OmegaConf converts and type-checks each value as it is composed (``"3"``
becomes 3, ``"ten"`` for an integer is refused, and so is a key a choice's YAML file has that
its schema does not). A choice holds only its own options: the synthetic data's
``num_classes`` is not an option of ``dataset=mnist``, the LR layers' ``eps`` not one of a
straight-through mode. Nodes the schema leaves open (``Any``) are the arguments of the
objects a config constructs (``_target_``: their constructor checks them), Hydra's paths, the
trainer's arguments and the weight grid. Defaults stay in the YAML files: the schema holds no
values, except those of the options only some choices set (``train.logit_lr``, ``weights``,
``init.reference`` under ``init=random``), whose ``None`` means what their absence meant before
(``lrnets.decisive.ADDED``).

``validate``, right after composition and before any file is written, checks what composition
cannot: that each group's section was composed over a schema (a YAML file without its schema
line is refused, naming it), the ranges (``allowed(check, text)`` on a field), options left unset (``???``), keys
added with ``+`` that a section does not have (``+mode.x=1``), and options that bound each other.
A wrong value stops the run with one paragraph naming the option, the value and what is allowed
(``ConfigError``, exit status 2); ``wrong_type`` words OmegaConf's type errors so.
"""
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from lrnets.errors import ConfigError


def allowed(check: Callable[[Any], bool], text: str, default: Any = MISSING) -> Any:
    """A field whose value must also pass ``check``; ``text`` says what is allowed."""
    return field(default=default, metadata={"check": check, "allowed": text})


def described(text: str) -> Any:
    """A field any value of its type may take; ``text`` says what to give when it is unset."""
    return field(default=MISSING, metadata={"allowed": text})


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
_SIDE = "use a side of at least 1 pixel"


@dataclass
class Train:  # set by the dataset's config (its schedule)
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
                                        "rate for the logits, or null for train.lr", None)


@dataclass
class Dataset:  # every data set
    name: str = MISSING
    reader: str = MISSING   # a reader's dotted path (lrnets.data.readers)
    root: Optional[str] = MISSING
    download: bool = MISSING
    val_size: int = _at_least(1, "hold out at least 1 training example to choose the network")
    num_workers: int = _at_least(0, "use 0 (load in the main process) or more workers")
    arch: str = MISSING


@dataclass
class InMemoryDataset(Dataset):  # images held in one tensor (MNIST, Fashion-MNIST, CIFAR-10)
    on_device: bool = MISSING


@dataclass
class ImageFolders(Dataset):  # an ImageFolder tree (ImageNet)
    image_size: int = _at_least(1, _SIDE)
    resize: int = _at_least(1, _SIDE)


@dataclass
class SyntheticDataset(InMemoryDataset):
    num_train: int = _at_least(3, "use at least 3 training examples")
    num_test: int = _at_least(1, "use at least 1 test example")
    image_size: int = _at_least(1, _SIDE)
    channels: int = _at_least(1, "use at least 1 channel")
    num_classes: int = _at_least(2, "a classifier needs at least 2 classes")


def _choice(section: str) -> Any:
    """A group's section: the schema of its choice (``schema/<section>/*``) fills it in."""
    return field(default=MISSING, metadata={"schema": section})


@dataclass
class Mode:  # every mode; its layers are one of the families below
    name: str = MISSING
    layers: Any = _choice("layers")
    first_layer: str = _one_of("discrete", "full_precision")
    weight_decay_scope: str = allowed(lambda v: v in ("last", "all"), "choose 'last' (the "
                                      "softmax layer only) or 'all'")


@dataclass
class Constructed:  # a node a config constructs (the full-precision layers: nothing else)
    _target_: str = MISSING


@dataclass
class LRLayers(Constructed):  # the LR-net modes (LRLayers, MomentLayers)
    distribution: Any = MISSING
    eps: float = _at_least(0, "use a value >= 0 (0 is the paper's sqrt(v^2); the authors' code "
                              "uses 1e-3)")  # sqrt(v^2 + eps)
    fused: bool = MISSING


@dataclass
class SampledLayers(Constructed):  # weight samples (Gumbel-softmax, stochastic BC)
    distribution: Any = MISSING
    sampler: Any = MISSING


@dataclass
class GumbelSampler(Constructed):
    temperature: float = _positive("use a temperature > 0")
    initial_temperature: Optional[float] = allowed(
        lambda v: v is None or v > 0, "use a temperature > 0, or null for a constant temperature")


@dataclass
class QuantizedLayers(Constructed):  # straight-through modes
    quantizer: Any = MISSING
    clip: Optional[float] = allowed(lambda v: v is None or v > 0, "use a positive bound for the "
                                    "latent weights, or null for none")


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
class Activation:
    name: str = MISSING
    blocks: str = MISSING  # the dotted path of the function that makes the blocks
    lr_layers: str = MISSING  # the class of the LR-net modes' layers (their mode.layers._target_)


@dataclass
class SignActivation(Activation):  # Roth et al. 2019
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
class Init:  # every initialisation (init=random)
    name: str = MISSING
    start: str = MISSING  # the dotted path of the function that sets the weights
    p_min: float = allowed(lambda v: 0 < v < 1, _PROBABILITY)
    p_max: float = allowed(lambda v: 0 < v < 1, _PROBABILITY)
    # The reference's schedule, only init=pretrained's (below); elsewhere open, as debug=fast
    # shortens it for every init and nothing reads it there.
    reference: Any = None


@dataclass
class PretrainedInit(Init):  # from a full-precision network (init=pretrained)
    checkpoint: Optional[str] = MISSING
    reference: Reference = _section(Reference)


@dataclass
class Weights:  # a weight grid (weights=), read through mode.layers.distribution
    name: str = MISSING
    values: Optional[List[float]] = described("give the grid's values, such as [-1, 0, 1]")
    # null: the mode's own parameterisation (weights=ternary_sigmoid)


@dataclass
class Eval:
    num_samples: int = _at_least(1, "sample at least 1 network")
    ensemble: int = _at_least(0, "use 0 (no ensemble) or the number of sampled networks to "
                                 "average")
    every_n_epochs: int = _at_least(0, "use 0 (only after training) or a positive number of "
                                       "epochs")
    recalibrate_bn: bool = MISSING
    score_test: bool = MISSING
    choose_across_epochs: bool = MISSING
    recalibration_batches: int = _at_least(1, "use at least 1 batch")
    top5: bool = MISSING


@dataclass
class Config:  # conf/train.yaml; each group's section is its choice's schema
    task_name: str = MISSING
    seed: int = MISSING
    ckpt_path: Optional[str] = MISSING
    verbose: bool = MISSING
    train: Train = _section(Train)
    eval: Eval = _section(Eval)
    dataset: Any = _choice("dataset")
    arch: Any = _choice("arch")
    mode: Any = _choice("mode")
    regularizer: Any = _choice("regularizer")
    activation: Any = _choice("activation")
    init: Any = _choice("init")
    weights: Any = None  # a Weights, where weights= is chosen
    paths: Any = MISSING  # Hydra and the run folder
    trainer: Any = MISSING  # pytorch_lightning.Trainer's arguments


# Where the YAML files find them: `- /schema/<section>/<name>@<section>` in a choice's defaults.
SCHEMAS = {"config": Config,
           "dataset/in_memory": InMemoryDataset,
           "dataset/image_folders": ImageFolders, "dataset/synthetic": SyntheticDataset,
           "mode/mode": Mode, "layers/full_precision": Constructed,
           "layers/lr": LRLayers, "layers/sampled": SampledLayers,
           "layers/quantized": QuantizedLayers, "sampler/gumbel": GumbelSampler,
           "regularizer/regularizer": Regularizer, "arch/arch": Arch,
           "activation/activation": Activation, "activation/sign": SignActivation,
           "init/init": Init, "init/pretrained": PretrainedInit, "weights/weights": Weights}
for _path, _node in SCHEMAS.items():
    _group, _, _name = f"schema/{_path}".rpartition("/")
    ConfigStore.instance().store(group=_group, name=_name, node=_node)

def _with_sections(cls: type) -> list[type]:
    return [cls] + [c for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default_factory)
                    for c in _with_sections(f.default_factory)]


_BY_NAME = {c.__name__: c for cls in SCHEMAS.values() for c in _with_sections(cls)}
_KINDS = {int: "use an integer", float: "use a number", bool: "use true or false",
          str: "use a string", Optional[str]: "use a string, or null",
          Optional[float]: "use a number, or null", List[int]: _EPOCHS,  # lr_milestones
          Optional[List[float]]: "use a list of numbers, such as [-1, 0, 1]"}  # weights.values


def listed(names: Any) -> str:
    """A section's option ``names`` as an error lists them: the keys of constructed objects
    (``_target_``, ``_partial_``) left out."""
    return ", ".join(str(n) for n in names if not str(n).startswith("_"))


def _field(cls: type, name: str) -> dataclasses.Field | None:
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def in_file(message: str) -> str:
    """Hydra's error for a YAML file that does not compose over its schema (``In 'weights/quinary':
    ConfigKeyError raised while composing config:`` and OmegaConf's message) in one line: the
    file, the option, and the options its section has where the key is not one of them."""
    lines = [line.strip() for line in message.splitlines()]
    where = re.match(r"In '(.+)':", lines[0])
    key = re.search(r"full_key: (\S+)", message)
    value = re.match(r"Value '(.*)' of type '\w+' could not be converted", lines[1]) \
        if len(lines) > 1 else None
    kind = re.search(r"object_type=(\w+)", message)
    found = _field(_BY_NAME[kind.group(1)], key.group(1).rpartition(".")[2]) \
        if value and key and kind and kind.group(1) in _BY_NAME else None
    if found is not None and found.type in _KINDS:
        return (f"{where.group(1) if where else 'a config file'} sets "
                f"{key.group(1)}={value.group(1)!r}, which is not allowed: {_KINDS[found.type]}")
    unknown = re.match(r"Key '(.+)' not in '(\w+)'", lines[1]) if len(lines) > 1 else None
    if unknown and key and unknown.group(2) in _BY_NAME:
        options = listed(f.name for f in dataclasses.fields(_BY_NAME[unknown.group(2)]))
        section = key.group(1).rpartition(".")[0] or "the config"
        return (f"{where.group(1) if where else 'a config file'} sets {key.group(1)}, which is "
                f"not an option of {section} here (its options: {options or 'none'})")
    return " ".join(lines[:2]) + (f" ({key.group(1)})" if key else "")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def wrong_type(err: ValidationError, overrides: list[str] | tuple[str, ...]) -> str | None:
    """OmegaConf's type error at composition as ``option=value is not allowed: what is``, with
    the value as the override gave it; None for an error of another kind."""
    node, key = err.parent_node, err.key
    if OmegaConf.is_list(node):  # an item of a list option (lr_milestones)
        node, key = node._get_parent(), node._key()
    cls = OmegaConf.get_type(node) if node is not None else None
    found = _field(cls, str(key)) if dataclasses.is_dataclass(cls) else None
    if found is None or found.type not in _KINDS:
        return None
    option = err.full_key.split("[")[0]
    given = [o.value() for o in OverridesParser.create().parse_overrides(list(overrides))
             if o.key_or_group == option]
    return f"{option}={(given[-1] if given else err.value)!r} is not allowed: {_KINDS[found.type]}."


def _validate(cls: type, cfg: DictConfig, prefix: str) -> None:
    declared = [f.name for f in dataclasses.fields(cls)]
    for key in cfg:  # added by +: a section's schema cannot refuse them
        if key not in declared:
            options = listed(k for k in cfg if k != key)
            where = f"{prefix[:-1]} has" if prefix else "the config has"
            raise ConfigError(f"{prefix}{key}={_plain(cfg._get_node(key))!r} is not allowed: "
                              f"{where} no option {key!r}; "
                              f"{f'its options: {options}' if options else 'it has none'}. "
                              f"Remove it or correct its name.")
    for f in dataclasses.fields(cls):  # first: other values may interpolate an unset one
        if OmegaConf.is_missing(cfg, f.name):  # ??? in its YAML file, or a choice that omits it
            raise ConfigError(f"{prefix}{f.name} is not set: "
                              f"{f.metadata.get('allowed', _KINDS.get(f.type, 'set it'))}.")
    for f in dataclasses.fields(cls):
        node = cfg._get_node(f.name)
        kind = OmegaConf.get_type(node) if OmegaConf.is_dict(node) else None
        if "schema" in f.metadata and not dataclasses.is_dataclass(kind):
            section = f.metadata["schema"]
            names = sorted(p.rpartition("/")[2] for p in SCHEMAS if p.startswith(section + "/"))
            raise ConfigError(f"{prefix}{f.name} was not composed over a schema: add "
                              f"'- /schema/{section}/<name>@{prefix}{f.name}' (<name>: "
                              f"{', '.join(names)}) to the defaults list of its YAML file, as "
                              f"the files of lrnets/conf/ have (lrnets.schema).")
        if dataclasses.is_dataclass(kind):  # a section, or a group's choice: what it holds
            _validate(kind, cfg[f.name], f"{prefix}{f.name}.")
        elif "check" in f.metadata and not f.metadata["check"](_plain(cfg[f.name])):
            raise ConfigError(f"{prefix}{f.name}={_plain(cfg[f.name])!r} is not allowed: "
                              f"{f.metadata['allowed']}.")


def validate(cfg: DictConfig) -> None:
    """Check the ranges of every option the schema lists, options left unset and keys added
    that no section has, then the options that bound each other; raise ``ConfigError`` for the
    first. Types were checked as the config was composed."""
    kind = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(kind):
        raise ConfigError("the config was not composed over its schema (lrnets.schema): compose "
                          "it with lrnets.config.compose_config or lrnets-train.")
    _validate(kind, cfg, "")
    if cfg.eval.choose_across_epochs and not cfg.eval.every_n_epochs:
        raise ConfigError("eval.choose_across_epochs=true is not allowed with "
                          "eval.every_n_epochs=0: it chooses among the networks scored every "
                          "eval.every_n_epochs during training; set eval.every_n_epochs to a "
                          "positive number of epochs (10 scores them every 10 epochs), or leave "
                          "eval.choose_across_epochs=false.")
    if cfg.init.p_min >= cfg.init.p_max:
        raise ConfigError(f"init.p_min={cfg.init.p_min!r} is not allowed: it must be smaller "
                          f"than init.p_max={cfg.init.p_max}.")
