"""Continuing a run where it stopped: ``ckpt_path=last`` with ``hydra.run.dir`` set to its folder.

Lightning's ModelCheckpoint writes ``checkpoints/last.ckpt`` at the end of every epoch, so a run
killed in the middle of an epoch loses that epoch at most. Every checkpoint also records the
settings that decide the results (``RecordConfig``); a resume that changes one of them is
refused, naming it, because it would be another experiment (``lrnets.decisive`` says which
settings decide). With the per-epoch seeds of ``lrnets.seeding`` the resumed run then ends
with the results of an uninterrupted one.

The checkpoint of the epoch before is kept as ``checkpoints/previous.ckpt``: when ``last.ckpt``
cannot be read (a disk error, a copy cut short), ``ckpt_path=last`` continues from it with a
warning, losing two epochs at most.

Without a checkpoint yet, ``ckpt_path=last`` starts the run from the beginning, so that jobs a
cluster may requeue can always pass it. A new run (``ckpt_path=null``) does not start in a
folder that already holds one: it would overwrite that run's checkpoints and results.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from lrnets.decisive import decides, decisive_config, in_current_names
from lrnets.errors import ConfigError, reason
from lrnets.run_folder import DAMAGED, LAST, PREVIOUS

CONFIG_KEY = "lrnets_config"
# Decisive, but a finished run may be continued for more epochs.
MAY_CHANGE = {"train.epochs"}


class RecordConfig(pl.Callback):
    """Stores ``decisive_config`` in every checkpoint, for ``resume_checkpoint`` to compare."""

    def __init__(self, cfg: DictConfig):
        self.config = decisive_config(cfg)

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule,
                           checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config


class LastCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint after every epoch (``last.ckpt``), the one before it moved to
    ``previous.ckpt`` instead of overwritten."""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if trainer.is_global_zero and os.path.isfile(filepath):
            os.replace(filepath, Path(filepath).with_name(PREVIOUS.name))
        super()._save_checkpoint(trainer, filepath)


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _readable_last(out: Path) -> tuple[Path, dict]:
    """``last.ckpt`` and its contents, or, when it cannot be read, ``previous.ckpt`` (with a
    warning; the damaged file is kept as ``last.ckpt.damaged``)."""
    last, previous = out / LAST, out / PREVIOUS
    try:
        return last, _load(last)
    except Exception as err:  # torch raises several unrelated types for unreadable files
        damage = reason(err)
        if not previous.is_file():
            raise ConfigError(f"ckpt_path=last: {last} cannot be read as a checkpoint ({damage}) "
                              f"and there is no {PREVIOUS} to fall back to; start a new run "
                              f"in another folder.") from None
    try:
        saved = _load(previous)
    except Exception as err:
        raise ConfigError(f"ckpt_path=last: neither {last} ({damage}) nor {previous} "
                          f"({type(err).__name__}) can be read as a checkpoint; start a new run "
                          f"in another folder.") from None
    os.replace(last, out / DAMAGED)
    print(f"Warning: {last} cannot be read ({damage}); it is kept as {out / DAMAGED} and the run "
          f"continues from {previous}, one epoch earlier.", file=sys.stderr, flush=True)
    return previous, saved


def resume_hint(out: Path) -> str:
    return f"Continue with the same overrides plus: ckpt_path=last hydra.run.dir={out}"


def resume_checkpoint(cfg: DictConfig, out: Path) -> Path | None:
    """The checkpoint that ``cfg.ckpt_path`` names, checked to come from the same experiment;
    None for a fresh run. ``last`` is ``<out>/checkpoints/last.ckpt``, or a fresh run while there
    is none (so that jobs a cluster may requeue can always pass it)."""
    option, last = cfg.ckpt_path, out / LAST
    if option is None and last.is_file():
        raise ConfigError(
            f"The run folder {out} already holds a run ({LAST}); a new run there would "
            f"overwrite it. Continue that run with ckpt_path=last, or give the new run "
            f"another folder (hydra.run.dir=DIR, or leave it out for a new dated one).")
    if option == "last" and not last.is_file():
        print(f"ckpt_path=last: there is no {last} yet, so the run starts from the beginning.")
        return None
    if option is None:
        return None
    if option == "last":
        path, saved = _readable_last(out)
    else:
        path = Path(option)
        if not path.is_file():
            raise ConfigError(f"ckpt_path={option} is not allowed: there is no such file. Give "
                              f"last (the run folder's {LAST}) or the path of a Lightning "
                              f"checkpoint.")
        try:
            saved = _load(path)
        except Exception as err:  # torch raises several unrelated types for unreadable files
            raise ConfigError(f"ckpt_path={option}: {path} cannot be read as a checkpoint "
                              f"({reason(err)}).") from None
    _check_same_experiment(saved.get(CONFIG_KEY), decisive_config(cfg), option, path)
    return path


def _check_same_experiment(saved: dict | None, current: dict, option: str, path: Path) -> None:
    if saved is None:  # a checkpoint written by another program
        return
    # Left out: what may change, what a checkpoint of an earlier version recorded but no longer
    # decides, and the trainer's settings when it is older than their record.
    saved = in_current_names(saved)
    trainer_recorded = any(key.startswith("trainer.") for key in saved)

    def compared(key: str) -> bool:
        return decides(key) and key not in MAY_CHANGE and (trainer_recorded
                                                           or not key.startswith("trainer."))

    saved = {key: value for key, value in saved.items() if compared(key)}
    current = {key: value for key, value in current.items() if compared(key)}
    differences = [f"{key}={saved.get(key, '(unset)')!r} there, {current.get(key, '(unset)')!r} now"
                   for key in sorted(saved.keys() | current.keys())
                   if saved.get(key) != current.get(key)]
    if differences:
        raise ConfigError(
            f"ckpt_path={option}: {path} comes from a run with other settings: "
            + "; ".join(differences)
            + ". Repeat the overrides that run was started with (only train.epochs, the data "
            "location, eval.*, mode.layers.fused and trainer.* other than its limits may change), "
            "or start a new run.")
