"""The configs and how they are composed.

The YAML files live inside the package (``lrnets/conf/``), so an installed lrnets trains from any
folder; ``lrnets-train`` / ``python train.py`` compose them with Hydra, and so does everything
else here that needs a config (the table scripts, the reference run, the tests).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig

from lrnets.decisive import MOVED
from lrnets.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent / "conf"
PRIMARY = "train"  # conf/train.yaml: the entry config


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config ``lrnets-train OVERRIDES`` runs (Hydra's own ``hydra.*`` settings aside).
    Overrides that do not compose raise ``ConfigError``."""
    inside_app = GlobalHydra.instance().is_initialized()  # lrnets-train has set Hydra up already
    with nullcontext() if inside_app else initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        try:
            return compose(PRIMARY, overrides=[o for o in overrides
                                               if not o.lstrip("+~").startswith("hydra.")])
        except HydraException as err:
            moved = [f"{old} is now {new}" for old, new in MOVED.items()
                     if any(o.lstrip("+~").startswith(old + "=") for o in overrides)]
            hint = f" ({'; '.join(moved)})" if moved else ""
            raise ConfigError(f"the overrides {' '.join(overrides)} do not compose: "
                              f"{str(err).splitlines()[0]}{hint}") from None


def group_choices(group: str) -> list[str]:
    """The options of a config group: ``group_choices("mode")`` is every mode."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
