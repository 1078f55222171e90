"""Shared fixtures: configs composed as ``train.py`` composes them, writing under tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from lrnets import config
from lrnets.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def compose_config(tmp_path: Path, *overrides: str, run: str = "run") -> DictConfig:
    """The config ``python train.py OVERRIDES`` would run, with its output in ``tmp_path``;
    ``ConfigError`` where they do not compose (``lrnets.config.compose_config``)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return config.compose_config([
            f"paths.output_dir={tmp_path / run}", f"paths.log_dir={tmp_path}",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", *overrides])


@pytest.fixture
def smoke_config(tmp_path):
    """Compose a seconds-long synthetic-data run: ``smoke_config(*overrides, run=name)``."""
    def make(*overrides: str, run: str = "run") -> DictConfig:
        return compose_config(tmp_path, "dataset=synthetic", "debug=fast", *overrides, run=run)
    return make


def train_as_cli(cfg: DictConfig) -> Path:
    """Train ``cfg`` and leave its folder as ``train.py`` does, with its ``.hydra/config.yaml``;
    returns the folder."""
    from lrnets.run_folder import CONFIG
    from lrnets.training.run import train

    train(cfg)
    out = Path(cfg.paths.output_dir)
    (out / CONFIG).parent.mkdir()
    OmegaConf.save(cfg, out / CONFIG)
    return out


@pytest.fixture
def trained_run(smoke_config):
    """A trained synthetic run's folder (``train_as_cli``): ``trained_run(name, *overrides)``."""
    return lambda name, *overrides: train_as_cli(smoke_config(*overrides, run=name))
