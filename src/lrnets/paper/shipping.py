"""The networks the project ships: ``results/<dataset>/<mode>/``, and loading one in a line.

Each shipped cell holds what a user needs and nothing a run folder needs to continue:

    results/<dataset>/<mode>/results.json   the run's results record
    results/<dataset>/<mode>/epochs.csv     its per-epoch curves (``lrnets.training.epochs``)
    results/<dataset>/<mode>/.hydra/        its composed config and overrides, as in the run
    results/<dataset>/<mode>/export/        discrete cells: ``lrnets-export``'s files

Experiments (each a change to a shipped cell's run) are kept as records, not cells:
``results/experiments/<name>/<run>/`` holds a run's results.json, epochs.csv and .hydra/ and
``results/experiments/<name>/README.md`` their table (``scripts/compare_methods.py --record``).
A kept run reads as its run folder does where results, curves and configs are compared or kept
(``compare_methods``, ``--base`` and ``--record`` included), so a record can be tabulated
again, with runs added, after the run folders are gone.

``lrnets-eval results/<dataset>/<mode>/export`` reproduces the shipped test error from those
files alone, and ``lrnets.pretrained("<dataset>_<mode>")`` is the network as a plain module.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

from lrnets.errors import ConfigError
from lrnets.export.writer import export
from lrnets.run_folder import (CONFIG, DISCRETE, OVERRIDES, RESULTS, read_results,
                               write_results)
from lrnets.training.epochs import EPOCHS, has_events, training_seconds, write_epochs_csv

SHIPPED = Path(__file__).resolve().parents[3] / "results"  # the checkout's results/
EXPORT = "export"
EXPERIMENTS = "experiments"  # results/experiments/<name>/: scripts/compare_methods.py --record


def ship_run(run_dir: Path, dest: Path, with_export: bool = True) -> Path:
    """Copy the run in ``run_dir`` into the shipped cell ``dest``, replacing what was there once
    the copy is complete (a run that cannot be shipped leaves ``dest`` as it was): its results,
    curves and composed config; ``with_export=False`` leaves out the export (an experiment's
    record)."""
    results = read_results(run_dir)
    if results is None or results.get("status") != "completed":
        raise ConfigError(f"{run_dir} is not a completed run (no {RESULTS} with status "
                          f"completed): only finished runs are shipped.")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        write_results(partial, {k: v for k, v in results.items() if k != "paths"})  # no folders
        if (run_dir / EPOCHS).is_file() and not has_events(run_dir):
            shutil.copy2(run_dir / EPOCHS, partial / EPOCHS)  # a kept run: its curves as kept
        else:
            write_epochs_csv(run_dir, partial / EPOCHS)
        for kept in (CONFIG, OVERRIDES):
            if (run_dir / kept).is_file():
                (partial / kept).parent.mkdir(exist_ok=True)
                shutil.copy2(run_dir / kept, partial / kept)
        if with_export and (run_dir / DISCRETE).is_file():
            export(run_dir, partial / EXPORT, with_onnx=True)
    except BaseException:
        shutil.rmtree(partial)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    return dest


def shipped_cells(root: Path = SHIPPED) -> dict[str, Path]:
    """``"<dataset>_<mode>"`` -> the cell's folder, for every shipped cell under ``root``
    (``experiments/`` holds records of runs, not cells)."""
    cells = [path.parent for path in sorted(Path(root).glob(f"*/*/{RESULTS}"))
             if path.parts[-3] != EXPERIMENTS]
    return {f"{cell.parent.name}_{cell.name}": cell for cell in cells}


def pretrained(name: str, root: Path | str = SHIPPED) -> nn.Module:
    """A shipped discrete network, in eval mode: ``pretrained("mnist_ternary")``.

    Its discrete layers hold their weights as ``values[codes]`` (``layer.weight()``: values in
    {-1, 0, 1} for a ternary network) and its batch norms are folded into a scale and shift.
    Inputs are images as ``lrnets.data`` transforms them for evaluation (MNIST: pixels in [0, 1],
    N x 1 x 28 x 28)."""
    from lrnets.export.runner import load_export

    cells = {k: v for k, v in shipped_cells(Path(root)).items() if (v / EXPORT).is_dir()}
    if name not in cells:
        raise ConfigError(f"pretrained({name!r}): no such shipped network in {root}; there are "
                          f"{', '.join(sorted(cells)) or 'none'}.")
    return load_export(cells[name] / EXPORT)[0]


def training_hours(cell: Path) -> float | None:
    """The shipped cell's training time in hours (``training_seconds``)."""
    seconds = training_seconds(cell)
    return None if seconds is None else seconds / 3600


def machine() -> str:
    """This machine in one line: CPU, cores, accelerator, torch."""
    import os
    import platform

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
