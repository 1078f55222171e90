"""Training the runs behind the paper's tables and figures (``scripts/reproduce_table*.py``,
``scripts/make_figures.py``).

A *cell* is one training configuration, the Hydra overrides of one table entry or figure panel,
repeated over seeds. Its runs are ordinary run folders ``<runs_dir>/<cell>/seed<N>/``, trained by
one ``lrnets-train -m ... seed=0,1,...`` multirun per cell. A seed whose folder holds a completed
``results.json`` is collected, not trained again; one that stopped midway is continued
(``ckpt_path=last``). ``scale`` shortens every schedule of a cell proportionally (machines
without a GPU): ``train.epochs``, ``train.lr_milestones`` and the full-precision reference's
``init.reference.epochs`` / ``lr_milestones``, each at least one epoch.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lrnets.config import compose_config
from lrnets.errors import ConfigError
from lrnets.run_folder import CONFIG, LAST, NETWORK, read_results

TRAIN = [sys.executable, "-m", "lrnets.cli"]  # lrnets-train, also where only the package is installed
SCHEDULES = (("train.epochs", "train.lr_milestones"),
             ("init.reference.epochs", "init.reference.lr_milestones"))
# Set by the scripts for every run; a user override of them would be lost or break the layout.
RESERVED = ("seed", "ckpt_path", "hydra.sweep.dir", "hydra.sweep.subdir")


@dataclass(frozen=True)
class Cell:
    """One training configuration: its folder name and its Hydra overrides."""

    name: str
    overrides: tuple[str, ...]


def override_key(override: str) -> str:
    """The config key an override sets: ``train.epochs`` for ``train.epochs=5``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*groups: list[str] | tuple[str, ...]) -> list[str]:
    """The overrides of all groups, a later one replacing an earlier one of the same key
    (Hydra refuses a key given twice)."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            merged.pop(override_key(override), None)
            merged[override_key(override)] = override
    return list(merged.values())


def check_extra_overrides(extra: list[str]) -> None:
    """Refuse overrides the scripts set themselves, naming the option to use instead."""
    for override in extra:
        if override_key(override) in RESERVED:
            raise ConfigError(f"{override!r} is set by the script for every run: use --seeds for "
                              f"seeds and --runs-dir for the output folders.")


def scale_epochs(epochs: int, scale: float) -> int:
    return max(1, round(epochs * scale))


def scaled_schedule(cfg: DictConfig, scale: float) -> list[str]:
    """Overrides that shorten ``cfg``'s schedules by ``scale`` (none for ``scale == 1``)."""
    if scale == 1:
        return []
    overrides = []
    for epochs_key, milestones_key in SCHEDULES:
        epochs = OmegaConf.select(cfg, epochs_key)
        if epochs is None:  # init=random: no reference
            continue
        milestones = sorted({scale_epochs(m, scale) for m in OmegaConf.select(cfg, milestones_key)})
        overrides += [f"{epochs_key}={scale_epochs(epochs, scale)}",
                      f"{milestones_key}=[{','.join(map(str, milestones))}]"]
    return overrides


def seed_folder(runs_dir: Path, cell: Cell, seed: int | str) -> Path:
    return runs_dir / cell.name / f"seed{seed}"


def sweep_command(cell: Cell, overrides: list[str], seeds: list[int], runs_dir: Path,
                  resume: bool) -> list[str]:
    """``train.py -m`` over ``seeds`` into ``<runs_dir>/<cell>/seed<N>``."""
    return [*TRAIN, "-m", *overrides,
            f"seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={runs_dir / cell.name}",
            "hydra.sweep.subdir=seed${seed}", *(["ckpt_path=last"] if resume else [])]


@dataclass
class CellPlan:
    """What is left to do for one cell: its overrides and the commands still to run."""

    cell: Cell
    overrides: list[str]
    epochs: int
    commands: list[list[str]]


def plan_cell(cell: Cell, seeds: list[int], runs_dir: Path, scale: float,
              extra: list[str]) -> CellPlan:
    """The commands that train the seeds of ``cell`` not yet completed in ``runs_dir``.

    Raises ``ConfigError`` when a completed run there was trained for another number of
    epochs than this plan's: it belongs to another schedule and must not be mixed in.
    """
    schedule = scaled_schedule(compose_config(merge_overrides(cell.overrides, extra)), scale)
    overrides = merge_overrides(cell.overrides, schedule, extra)
    epochs = compose_config(overrides).train.epochs
    fresh, resume = [], []
    for seed in seeds:
        folder = seed_folder(runs_dir, cell, seed)
        results = read_results(folder)
        if results is not None and results.get("status") == "completed":
            if results["epochs_configured"] != epochs:
                raise ConfigError(
                    f"{folder} holds a run of {results['epochs_configured']} epochs, this "
                    f"schedule has {epochs}: use another --runs-dir for this schedule (or "
                    f"--collect {runs_dir} to tabulate the runs there).")
        elif results is not None and results.get("status") == "failed":
            continue  # a diverged loss: reported, not retried (delete the folder to retry)
        elif (folder / LAST).is_file():
            resume.append(seed)
        else:
            fresh.append(seed)
    commands = [sweep_command(cell, overrides, group, runs_dir, resume=is_resume)
                for group, is_resume in ((fresh, False), (resume, True)) if group]
    return CellPlan(cell, overrides, epochs, commands)


def run_cells(cells: list[Cell], seeds: list[int], runs_dir: Path, scale: float, extra: list[str],
              dry_run: bool) -> list[str]:
    """Train what the cells lack, one cell after another; with ``dry_run`` only print the
    commands. Returns the names of the cells whose training command failed."""
    failed = []
    for cell in cells:
        for command in plan_cell(cell, seeds, runs_dir, scale, extra).commands:
            print(f"$ {shlex.join(command)}", flush=True)
            if not dry_run and subprocess.run(command).returncode != 0:
                print(f"cell {cell.name}: the command above failed; going on with the next cell.",
                      file=sys.stderr, flush=True)
                failed.append(cell.name)
    return failed


def cell_runs(runs_dir: Path, cell: Cell, seeds: list[int]) -> dict[int, dict | None]:
    """The results file of every seed of ``cell`` (None where there is none)."""
    return {seed: read_results(seed_folder(runs_dir, cell, seed)) for seed in seeds}


def run_folder(path: str | Path) -> Path:
    """The run folder of ``path``: a run folder itself or its ``checkpoints/network.pt``."""
    path = Path(path)
    folder = path.parents[1] if path.is_file() else path
    if not (folder / NETWORK).is_file() or not (folder / CONFIG).is_file():
        raise ConfigError(f"{path} is not a finished run: a run folder holds "
                          f"{NETWORK} and {CONFIG} (train.py writes both).")
    return folder
