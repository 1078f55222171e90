"""The full-precision reference network that discrete runs start from (sec. 4.1).

A discrete run with ``init=pretrained`` and no ``init.checkpoint`` looks for a reference trained
with the same settings that decide its weights (data, architecture, seed, the reference schedule
and the rest of ``train.*``, ``lrnets.decisive``) under ``paths.reference_dir``; if there is
none it trains one there first (an ordinary full-precision run with the ``init.reference``
schedule: the reference code's Adam 1e-3, x0.1 every 50 epochs) and every later discrete run
reuses it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from lrnets.config import compose_config
from lrnets.decisive import TARGET, decisive_config, first_class_path
from lrnets.errors import RunStopped
from lrnets.run_folder import LAST, NETWORK


def reference_key(ref_cfg: DictConfig) -> str:
    """Folder name of the reference run ``ref_cfg``: readable, plus a short hash of the settings
    that decide its weights (``lrnets.decisive``, as resume compares them), with classes named
    as the first versions named them (``first_class_path``), so that the hash of a reference
    does not change when a module moves."""
    decisive = {key: first_class_path(value) if key.endswith(TARGET) else value
                for key, value in decisive_config(ref_cfg).items()}
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:10]
    return f"{ref_cfg.dataset.name}_{ref_cfg.arch.name}_seed{ref_cfg.seed}_{digest}"


def reference_config(cfg: DictConfig) -> DictConfig:
    """The config of the reference run: this run's data and architecture, full precision with
    ReLU activations (also for sign networks, as Roth et al. start from one), the
    ``init.reference`` schedule, its own output folder, no sampled evaluation."""
    schedule = cfg.init.reference
    ref = OmegaConf.merge(cfg, {
        "train": {"epochs": schedule.epochs, "lr": schedule.lr,
                  "lr_milestones": list(schedule.lr_milestones),
                  "weight_decay": schedule.weight_decay},
        "ckpt_path": None,
    })
    plain = compose_config(["mode=full_precision", "activation=relu"])
    # Replaced, not merged; what only discrete runs read (the initialisation, the logits'
    # learning rate) is the plain config's, so that it does not name another reference.
    ref.mode, ref.regularizer, ref.init = plain.mode, plain.regularizer, plain.init
    ref.train.logit_lr, ref.weights = None, None
    ref.activation = plain.activation  # sign nets start from ReLU
    ref.paths.output_dir = str(Path(cfg.paths.reference_dir) / reference_key(ref))
    return ref


def obtain_reference(cfg: DictConfig, train: Callable[[DictConfig], dict]) -> Path:
    """Path of the reference network's weights, training the reference first if needed."""
    ref_cfg = reference_config(cfg)
    folder = Path(ref_cfg.paths.output_dir)
    path = folder / NETWORK
    if path.is_file():
        print(f"Reusing the full-precision reference {path}")
        return path
    if (folder / LAST).is_file():  # an earlier training of it stopped
        ref_cfg.ckpt_path = "last"
        print(f"Continuing the full-precision reference in {folder} from its last epoch.")
    else:
        print(f"Training the full-precision reference into {folder} "
              "(later discrete runs with the same data, arch, seed and training settings reuse "
              "it).")
    try:
        train(ref_cfg)
    except RunStopped as err:
        raise RunStopped(f"The full-precision reference trained first for this run stopped: "
                         f"{err.reason}", "Run the same command again to continue it.",
                         err.exit_code) from None
    return path
