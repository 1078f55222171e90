"""A run's curves, one row per epoch, read from its TensorBoard events (``epochs.csv``).

Columns: ``epoch`` (1-based), ``train_loss`` (mean of the logged steps of the epoch),
``val_error`` (the stochastic network of LR runs, the network itself otherwise),
``val_error_sampled_best`` / ``_mean`` and ``val_error_most_probable`` (sampled networks and the
most probable one scored on the validation split, on the epochs of ``eval.every_n_epochs``;
earlier versions logged the latter as ``val/acc_mode``), ``test_error_sampled_best`` (the best
of them on the test split, with ``eval.score_test``), ``entropy_<layer>`` (mean entropy
of each discrete layer's weights), ``lr`` (the first parameter group's) and ``epoch_time_s``.
Epochs a resumed run trained again count once, with their last values. A kept run (a record's,
a shipped cell's) holds the CSV without its events.
"""
from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from lrnets.errors import ConfigError
from lrnets.run_folder import TENSORBOARD

# TensorBoard tag -> column; accuracies become errors.
_ACCURACIES = {"val/acc": "val_error", "val/acc_sampled_best": "val_error_sampled_best",
               "val/acc_sampled_mean": "val_error_sampled_mean",
               "val/acc_most_probable": "val_error_most_probable",
               "val/acc_mode": "val_error_most_probable",  # an earlier version's tag
               "test/acc_sampled_best": "test_error_sampled_best"}  # eval.score_test
_VALUES = {"time/epoch_s": "epoch_time_s"}
EPOCHS = "epochs.csv"  # in a kept run's folder


def has_events(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds TensorBoard events (a kept run has its CSV instead)."""
    return any((Path(run_dir) / TENSORBOARD).glob("events.out.tfevents.*"))


def epoch_rows(run_dir: Path) -> list[dict[str, float | int | None]]:
    """The per-epoch rows of the run in ``run_dir`` (its ``tensorboard/`` events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = Path(run_dir) / TENSORBOARD
    if not has_events(run_dir):
        raise ConfigError(f"{run_dir} is not a run folder with TensorBoard events: there is no "
                          f"{events}/events.out.tfevents.* (train.py writes them).")
    scalars: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(events.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                scalars[tag][event.step] = event.value  # later files (a resume) replace
    epoch_at = {step: int(value) for step, value in scalars.pop("epoch", {}).items()}

    def epoch_of(step: int) -> int | None:
        return epoch_at.get(step)

    rows: dict[int, dict] = defaultdict(dict)
    losses: dict[int, list[float]] = defaultdict(list)
    for step, value in scalars.get("train/loss", {}).items():
        if (epoch := epoch_of(step)) is not None:
            losses[epoch].append(value)
    for epoch, values in losses.items():
        rows[epoch]["train_loss"] = statistics.fmean(values)
    for tag, series in scalars.items():
        column = _ACCURACIES.get(tag) or _VALUES.get(tag) or (
            "entropy_" + tag.split("/", 1)[1] if tag.startswith("entropy/") else None)
        for step, value in series.items():
            if column is not None and (epoch := epoch_of(step)) is not None:
                rows[epoch][column] = 1 - value if tag in _ACCURACIES else value
    learning_rates = next((series for tag, series in sorted(scalars.items())
                           if tag.startswith("lr-")), {})
    for epoch, (_, value) in enumerate(sorted(learning_rates.items())):  # one per epoch start
        rows[epoch]["lr"] = value
    columns = ["train_loss", *dict.fromkeys(_ACCURACIES.values()),
               *sorted({c for row in rows.values() for c in row if c.startswith("entropy_")}),
               "lr", *_VALUES.values()]
    last = max((e for e, row in rows.items() if "val_error" in row or "train_loss" in row),
               default=-1)
    return [{"epoch": epoch + 1, **{c: rows[epoch].get(c) for c in columns}}
            for epoch in range(last + 1)]


def write_epochs_csv(run_dir: Path, path: Path) -> Path:
    """``epoch_rows`` of ``run_dir`` as CSV at ``path`` (empty cells where nothing was logged)."""
    rows = epoch_rows(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    return path


def training_seconds(run_dir: Path) -> float | None:
    """The run's training time: the sum of its epochs' times (validation included), of every
    session of a resumed run, from its events or a kept run's CSV; None without either."""
    run_dir = Path(run_dir)
    if has_events(run_dir):
        times = [row["epoch_time_s"] for row in epoch_rows(run_dir)]
    elif (run_dir / EPOCHS).is_file():
        with (run_dir / EPOCHS).open() as f:
            times = [float(row["epoch_time_s"]) for row in csv.DictReader(f)
                     if row.get("epoch_time_s")]
    else:
        return None
    times = [t for t in times if t is not None]
    return sum(times) if times else None
