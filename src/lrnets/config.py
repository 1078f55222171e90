"""The configs and how they are composed.

The YAML files live inside the package (``lrnets/conf/``), so an installed lrnets trains from any
folder; ``lrnets-train`` / ``python train.py`` compose them with Hydra, and so does everything
else here that needs a config (the table scripts, the reference run, the tests).
"""
from __future__ import annotations

import re
from contextlib import nullcontext
from pathlib import Path

from typing import Callable, Mapping

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from lrnets.decisive import MOVED
from lrnets.errors import ConfigError
from lrnets.schema import in_file, listed, wrong_type  # importing it puts the schema in Hydra's ConfigStore

CONF_DIR = Path(__file__).resolve().parent / "conf"
PRIMARY = "train"  # conf/train.yaml: the entry config


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config ``lrnets-train OVERRIDES`` runs (Hydra's own ``hydra.*`` settings aside),
    composed over its schema (``lrnets.schema``). Overrides that do not compose, values of the
    wrong type among them, raise ``ConfigError``."""
    inside_app = GlobalHydra.instance().is_initialized()  # lrnets-train has set Hydra up already
    with nullcontext() if inside_app else initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        try:
            return compose(PRIMARY, overrides=[o for o in overrides
                                               if not o.lstrip("+~").startswith("hydra.")])
        except HydraException as err:
            typed = wrong_type(err.__cause__, overrides) \
                if isinstance(err.__cause__, ValidationError) else None
            if typed:
                raise ConfigError(typed) from None
            raise ConfigError(f"the overrides {' '.join(overrides)} do not compose: "
                              f"{_allowed(err, overrides)}") from None


def _allowed(err: HydraException, overrides: list[str] | tuple[str, ...]) -> str:
    """Hydra's composition error in one line, with what is allowed: a group's options, the
    options of the node an unknown key was set in, or the new place of a moved option."""
    message = str(err)
    lines = message.splitlines()
    text = lines[0]
    grid = re.match(r"In 'weights/(\w+)'", text)
    if grid and "full_key: mode.layers.distribution" in message:  # its layers' schema has none
        return (f"weights={grid.group(1)} sets the weight distribution of a discrete mode, and "
                f"this mode's layers take none: use mode=ternary or mode=binary with it")
    if text.endswith("raised while composing config:"):  # a YAML file against its schema
        return in_file(message)
    starts = [i for i, line in enumerate(lines) if line.startswith("Available options in")]
    if starts:  # an unknown option of a group: Hydra lists the group's options, tab-indented
        options = []
        for line in lines[starts[0] + 1:]:
            if not line.startswith("\t"):
                break
            options.append(line.strip())
        return f"{text}; allowed: {', '.join(options)}"
    moved = [f"{old} is now {new}" for old, new in MOVED.items()
             if any(o.lstrip("+~").startswith(old + "=") for o in overrides)]
    if moved:
        return f"{text} ({'; '.join(moved)})"
    unknown = re.match(r"Could not override '(.+)'\.", text)
    if unknown and "." in unknown.group(1):
        parent, key = unknown.group(1).rsplit(".", 1)
        try:
            node = OmegaConf.select(compose(PRIMARY, overrides=[
                o for o in overrides if not o.lstrip("+~").startswith(unknown.group(1) + "=")
                and not o.lstrip("+~").startswith("hydra.")]), parent)
        except HydraException:
            node = None
        if isinstance(node, DictConfig):
            options = listed(node)
            return f"{text} {parent} has no option {key}; its options: {options or 'none'}"
    cause = str(err.__cause__).splitlines() if err.__cause__ is not None else []
    return f"{text} ({cause[0]})" if cause else text  # Hydra's reason, where it gave one


def code_of(group: str, node: Mapping, key: str, earlier: Mapping[str, str]) -> Callable:
    """The function the config node of ``group`` names by its dotted path under ``key``
    (``dataset.reader``, ``arch.builder``, ``activation.blocks``, ``init.start``), so that code
    is chosen by data, not by a name switched on. A node recorded by an earlier version, which
    has no ``key``, names its code by its ``name`` only: ``earlier`` maps those names to their
    code. ``ConfigError`` naming the option when the path does not import, or is not given."""
    example = next(iter(earlier.values()))
    option, path = f"{group}.{key}", node.get(key)
    if path is None and node["name"] not in earlier:
        raise ConfigError(f"{group}={node['name']!r} has no {option}, and no {group} of that name "
                          f"existed before {option} did (those were {', '.join(earlier)}): "
                          f"give {option}, the dotted path of its function, such as {example}.")
    path = path or earlier[node["name"]]
    try:
        return get_method(path)
    except Exception as err:  # Hydra's ImportError / ValueError variants
        raise ConfigError(f"{option}={path!r} cannot be imported ({str(err).splitlines()[0]}): "
                          f"give the dotted path of a function, such as {example}.") from None


def group_choices(group: str) -> list[str]:
    """The options of a config group: ``group_choices("mode")`` is every mode."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
