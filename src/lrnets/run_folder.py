"""The run folder: every file a run writes, by name, and the reader and writer of its results.

    <run>/results.json                 the results record (``write_results`` / ``read_results``)
    <run>/checkpoints/last.ckpt        Lightning's, every epoch (``ckpt_path=last`` continues it)
    <run>/checkpoints/previous.ckpt    the epoch before, the fallback for a damaged last.ckpt
    <run>/checkpoints/network.pt       the trained network's state (weight distributions)
    <run>/checkpoints/discrete.pt      the chosen discrete network (``lrnets-export`` reads it)
    <run>/checkpoints/interrupted.ckpt the state when a signal stopped the run
    <run>/tensorboard/                 TensorBoard events
    <run>/.hydra/config.yaml           the composed config (Hydra's), overrides.yaml beside it

Everything else refers to these names; nothing else spells them.
"""
from __future__ import annotations

import json
from pathlib import Path

CHECKPOINTS = Path("checkpoints")
LAST = CHECKPOINTS / "last.ckpt"
PREVIOUS = CHECKPOINTS / "previous.ckpt"
DAMAGED = CHECKPOINTS / "last.ckpt.damaged"
INTERRUPTED = CHECKPOINTS / "interrupted.ckpt"
NETWORK = CHECKPOINTS / "network.pt"
DISCRETE = CHECKPOINTS / "discrete.pt"
RESULTS = Path("results.json")
TENSORBOARD = Path("tensorboard")
CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"


def read_results(folder: Path) -> dict | None:
    """The results record of the run in ``folder``; None when it has none (yet)."""
    path = Path(folder) / RESULTS
    return json.loads(path.read_text()) if path.is_file() else None


def write_results(folder: Path, results: dict) -> None:
    (Path(folder) / RESULTS).write_text(json.dumps(results, indent=2) + "\n")


def where(folder: Path) -> dict:
    """The run's files, as the results record lists them and the console prints them."""
    return {"run_dir": str(folder), "results": str(folder / RESULTS),
            "checkpoints": str(folder / CHECKPOINTS), "tensorboard": str(folder / TENSORBOARD)}
