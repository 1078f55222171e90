"""Command line: ``lrnets-train`` (= ``python train.py``) with Hydra overrides."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from lrnets.errors import ConfigError
from lrnets.reference import CONF_DIR
from lrnets.run import train


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    """Train one configuration; a bad value prints one paragraph and exits with status 2."""
    try:
        train(cfg)
    except ConfigError as err:
        print(f"lrnets: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
