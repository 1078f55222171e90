"""What decides a run's results: one definition, read by resume (a checkpoint continues only
under the settings it was trained with) and by reference reuse (the folder of the
full-precision reference, ``lrnets.training.reference``).

Everything in the composed config decides the results except ``NOT_DECISIVE``: where outputs
and data are, how the run is executed (including the LR layers' fused form, which computes
the same maps), what it does after training; a group choice's name decides, not the path of
its code (``dataset.reader``, ``arch.builder``, ``activation.blocks``, ``init.start``;
``activation.lr_layers`` decides through the ``mode.layers._target_`` it fills in). Of the
trainer, only how much it trains decides (``trainer.limit_train_batches``,
``trainer.max_steps``), not devices, precision or logging.
The regulariser's coefficients decide, not its name; the options the schema gives every config
(``ADDED``: ``train.logit_lr``, ``weights``, ``init.reference`` under ``init=random``,
``weights.values``) only where they are set. ``in_current_names`` translates the
settings older versions recorded under other names (``MOVED``, the weight distribution), the
classes they named by the paths of the modules before the subpackages (``MOVED_MODULES``) and
the layers of their sign runs (``current_layers``).
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

NOT_DECISIVE = ("ckpt_path", "paths", "trainer", "eval", "task_name", "verbose", "dataset.root",
                "dataset.num_workers", "dataset.download", "dataset.on_device", "dataset.reader",
                "arch.builder", "activation.blocks", "activation.lr_layers", "init.start",
                "mode.layers.fused", "regularizer.name")
DECISIVE_TRAINER = ("trainer.limit_train_batches", "trainer.max_steps")
MOVED = {"mode.probability_decay": "regularizer.probability_decay",  # the regularizer= group
         "mode.beta": "regularizer.beta"}
# The modules configs name classes from (``_target_``), by their paths before the subpackages.
MOVED_MODULES = {f"lrnets.{name}": f"lrnets.nn.{name}" for name in
                 ("layers", "distributions", "sampled_layers", "quantized_layers", "quantizers")}
# Options the schema gives every config since it is in the ConfigStore (lrnets.schema), with
# the value that means what their absence meant: left out of the decisive settings where they
# hold it, so that runs and references recorded without them still match.
ADDED = {"train.logit_lr": None,  # train.lr for the logits too
         "weights": None,  # the mode's own weight distribution
         "init.reference": None,  # init=random: no reference
         "weights.values": None}  # weights=ternary_sigmoid: the mode's parameterisation
TARGET = "_target_"
LR_LAYERS, MOMENT_LAYERS = "lrnets.nn.layers.LRLayers", "lrnets.nn.sign_layers.MomentLayers"


def _moved(path: object, modules: dict[str, str]) -> object:
    if not isinstance(path, str):
        return path
    module, _, name = path.rpartition(".")
    return f"{modules[module]}.{name}" if module in modules else path


def current_class_path(path: object) -> object:
    """A ``_target_`` as this version names it (``lrnets.layers.LRLayers`` ->
    ``lrnets.nn.layers.LRLayers``); other values as they are."""
    return _moved(path, MOVED_MODULES)


def current_layers(target: object, activation: object) -> object:
    """A recorded ``mode.layers._target_`` (in current class paths) as this version composes it:
    earlier versions recorded a sign run's layers as the LR-net mode's ``LRLayers`` and made them
    moment-propagating in code; ``activation=sign`` now names ``MomentLayers`` there
    (``activation.lr_layers``)."""
    return MOMENT_LAYERS if activation == "sign" and target == LR_LAYERS else target


def first_class_path(path: object) -> object:
    """The inverse of ``current_class_path``: a ``_target_`` as the first versions named it.
    The reference folders' names hash the settings in these names, so that references trained
    before the subpackages are still found."""
    return _moved(path, {new: old for old, new in MOVED_MODULES.items()})


def in_current_names(recorded: dict[str, object]) -> dict[str, object]:
    """A decisive config an earlier version recorded, in this version's names: the ``MOVED``
    settings, and the weight distribution of ``weights=``, which earlier versions recorded as
    ``weights.distribution.*`` (and spliced into the layers in code, over the mode's recorded
    ``mode.layers.distribution.*``) and this version composes as ``mode.layers.distribution.*``;
    the layers of sign runs (``current_layers``); classes by their current paths
    (``current_class_path``)."""
    current = {MOVED.get(key, key): current_class_path(value) if key.endswith(TARGET) else value
               for key, value in recorded.items()}
    old, new = "weights.distribution.", "mode.layers.distribution."
    layers = "mode.layers._target_"
    if layers in current:
        current[layers] = current_layers(current[layers], current.get("activation.name"))
    spliced = {key[len(old):]: value for key, value in current.items() if key.startswith(old)}
    if spliced:
        current = {key: value for key, value in current.items()
                   if not key.startswith((old, new))}
        current.update({new + key: value for key, value in spliced.items()})
    return current


def within(key: str, settings: tuple[str, ...]) -> bool:
    """Whether the setting ``key`` (``a.b.c``) is one of ``settings`` or lies inside one."""
    return any(key == part or key.startswith(part + ".") for part in settings)


def decides(key: str) -> bool:
    """Whether the setting ``key`` (``a.b.c``) decides a run's results."""
    return key in DECISIVE_TRAINER or not within(key, NOT_DECISIVE)


def decisive_config(cfg: DictConfig) -> dict[str, object]:
    """The settings that decide a run's results, flattened to ``{"train.lr": 0.01, ...}``
    (the trainer's always present, None where unset; the ``ADDED`` ones only where set)."""
    flat: dict[str, object] = {}

    def visit(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif decides(prefix) and not (prefix in ADDED and value == ADDED[prefix]):
            flat[prefix] = value

    # The groups left out are not resolved: their interpolations (``${hydra:...}``) need not
    # resolve here.
    visit("", {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key])
               else cfg[key] for key in cfg if key not in NOT_DECISIVE})
    flat.update({key: OmegaConf.select(cfg, key) for key in DECISIVE_TRAINER})
    return flat
