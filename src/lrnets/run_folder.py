"""The run folder: every file a run writes, by name, and the reader and writer of its results.

    <run>/results.json                 the results record (``write_results`` / ``read_results``)
    <run>/model_summary.txt            the network in bits (``lrnets.training.summary``)
    <run>/checkpoints/last.ckpt        Lightning's, every epoch (``ckpt_path=last`` continues it)
    <run>/checkpoints/previous.ckpt    the epoch before, the fallback for a damaged last.ckpt
    <run>/checkpoints/network.pt       the trained network's state (weight distributions)
    <run>/checkpoints/discrete.pt      the chosen discrete network (``lrnets-export`` reads it)
    <run>/checkpoints/interrupted.ckpt the state when a signal stopped the run
    <run>/tensorboard/                 TensorBoard events
    <run>/.hydra/config.yaml           the composed config (Hydra's, read by ``read_config``),
                                       overrides.yaml beside it

Everything else refers to these names; nothing else spells them. The results record is the
``Results`` typed dict: ``write_results`` warns of a key it does not declare (and writes it),
and the error figures are named by ``figure_key`` alone (``error_figures`` writes them,
``most_probable_error`` and ``samples_error`` read them).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal, TypedDict

import torch
from omegaconf import DictConfig, OmegaConf

from lrnets.decisive import TARGET, current_class_path, current_layers

CHECKPOINTS = Path("checkpoints")
LAST = CHECKPOINTS / "last.ckpt"
PREVIOUS = CHECKPOINTS / "previous.ckpt"
DAMAGED = CHECKPOINTS / "last.ckpt.damaged"
INTERRUPTED = CHECKPOINTS / "interrupted.ckpt"
NETWORK = CHECKPOINTS / "network.pt"
DISCRETE = CHECKPOINTS / "discrete.pt"
RESULTS = Path("results.json")
SUMMARY = Path("model_summary.txt")
TENSORBOARD = Path("tensorboard")
CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"


Split = Literal["val", "test"]


class Results(TypedDict, total=False):
    """``results.json``. Errors are fractions in [0, 1]; ``test_error`` / ``val_error`` are the
    reported network's: the full-precision network, or the discrete network chosen on
    validation (``chosen``, with batch norm re-estimated when ``recalibrated_bn``)."""

    status: str                 # completed, interrupted or failed
    signal: str                 # interrupted: the signal's name
    error: str                  # failed: what went wrong
    checkpoints: dict           # stopped runs: last (and interrupted) checkpoint
    dataset: str
    arch: str
    mode: str
    weights: str | None
    activation: str
    seed: int
    epochs: int                 # epochs trained
    epochs_configured: int
    body_weights: int           # weights of the layers a discrete run discretises
    init: str                   # default, random or pretrained
    init_checkpoint: str
    world_size: int
    eval_examples: dict         # examples scored per split
    val_error: float
    test_error: float
    test_error_top5: float
    chosen: str                 # most_probable or sample_<i>
    recalibrated_bn: bool
    test_error_chosen_on_test: float  # eval.score_test: the authors' protocol, the lowest test
    epoch_chosen_on_test: int         # error of any network scored at any epoch (not reported)
    val_error_chosen_across_epochs: float   # eval.every_n_epochs: the network best on validation
    test_error_chosen_across_epochs: float  # over the epochs scored and the end (reported with
    epoch_chosen_across_epochs: int         # eval.choose_across_epochs)
    chosen_across_epochs_from: int  # the first of those epochs (later after a resume from an
                                    # earlier version's checkpoint, which did not keep it)
    ensemble_size: int          # eval.ensemble: sampled networks averaged (the cost: N networks)
    ensemble_test_error: float  # their averaged softmax's
    most_probable_val_error: float   # the most probable network, batch norm as trained
    most_probable_test_error: float
    most_probable_val_error_recalibrated: float
    most_probable_test_error_recalibrated: float
    samples_val_error_mean: float     # the sampled networks, mean and std
    samples_val_error_std: float
    samples_test_error_mean: float
    samples_test_error_std: float
    samples_val_error_recalibrated_mean: float
    samples_val_error_recalibrated_std: float
    samples_test_error_recalibrated_mean: float
    samples_test_error_recalibrated_std: float
    selection: dict             # every candidate's scores (``lrnets.training.evaluation.Selection``)
    chosen_by_rank: list
    multiplications: str        # straight-through nets: what inference multiplies
    resumed_from: str
    wall_time_s: float
    epoch_time_s: float
    epochs_timed: int
    paths: dict                 # ``where``


MOST_PROBABLE = "most_probable"  # the candidate of the most probable weights, and its figures' prefix


def score_key(split: Split, recalibrated: bool) -> str:
    """The name of a candidate network's accuracy in ``Selection`` (``lrnets.training.evaluation``):
    ``val_acc``, ``test_acc_recalibrated`` (batch norm re-estimated on the candidate)."""
    return f"{split}_acc" + ("_recalibrated" if recalibrated else "")


def selection_key(score: str, statistic: Literal["mean", "std"] | None = None) -> str:
    """The name of an accuracy in a selection summary (``Selection.summary``): the most probable
    network's ``score`` (a ``score_key``), ``most_probable_val_acc``, or with ``statistic`` that
    of the sampled networks, ``samples_test_acc_recalibrated_mean``."""
    return f"{MOST_PROBABLE}_{score}" if statistic is None else f"samples_{score}_{statistic}"


def figure_key(candidates: Literal["most_probable", "samples"], split: Split, recalibrated: bool,
               statistic: Literal["mean", "std"] | None = None) -> str:
    """The name of an error figure: ``most_probable_test_error_recalibrated``,
    ``samples_val_error_std``."""
    key = f"{candidates}_{split}_error" + ("_recalibrated" if recalibrated else "")
    return key if statistic is None else f"{key}_{statistic}"


def error_figures(selection: dict) -> Results:
    """The errors of the chosen, most probable and sampled networks from the scores of
    ``Selection.summary()`` (accuracies, keyed ``most_probable_val_acc_recalibrated`` and so
    on)."""
    chosen = selection["chosen"]
    figures: Results = {"val_error": 1 - chosen["val_acc"], "test_error": 1 - chosen["test_acc"],
                        "chosen": chosen["name"], "recalibrated_bn": chosen["recalibrated_bn"]}
    for split in ("val", "test"):
        for recalibrated in (False, True):
            acc = score_key(split, recalibrated)
            if selection.get(selection_key(acc)) is None:
                continue
            figures[figure_key(MOST_PROBABLE, split, recalibrated)] = \
                1 - selection[selection_key(acc)]
            if selection[selection_key(acc, "mean")] is not None:
                figures[figure_key("samples", split, recalibrated, "mean")] = \
                    1 - selection[selection_key(acc, "mean")]
                figures[figure_key("samples", split, recalibrated, "std")] = \
                    selection[selection_key(acc, "std")]
    return figures


def most_probable_error(results: Results, split: Split, recalibrated: bool) -> float | None:
    """The most probable network's error on ``split``; None where it was not scored."""
    return results.get(figure_key(MOST_PROBABLE, split, recalibrated))


def samples_error(results: Results, split: Split,
                  recalibrated: bool) -> tuple[float, float] | None:
    """Mean and standard deviation of the sampled networks' error on ``split``; None where none
    was scored."""
    mean = results.get(figure_key("samples", split, recalibrated, "mean"))
    if mean is None:
        return None
    return mean, results[figure_key("samples", split, recalibrated, "std")]


def read_config(folder: Path) -> DictConfig:
    """The composed config of the run in ``folder``, with the classes an earlier version named
    by other paths (``_target_``) in this version's (``lrnets.decisive.current_class_path``),
    and the layers of its sign runs as this version's (``lrnets.decisive.current_layers``)."""
    def current(node: object) -> object:
        if isinstance(node, dict):
            return {key: current_class_path(value) if key == TARGET else current(value)
                    for key, value in node.items()}
        return [current(item) for item in node] if isinstance(node, list) else node

    recorded = current(OmegaConf.to_container(OmegaConf.load(Path(folder) / CONFIG),
                                              resolve=False))
    layers = recorded.get("mode", {}).get("layers")
    if isinstance(layers, dict) and TARGET in layers:
        layers[TARGET] = current_layers(layers[TARGET], recorded.get("activation", {}).get("name"))
    return OmegaConf.create(recorded)


def read_results(folder: Path) -> Results | None:
    """The results record of the run in ``folder`` in this version's names; None when it has
    none (yet)."""
    path = Path(folder) / RESULTS
    return in_current_names(json.loads(path.read_text())) if path.is_file() else None


def in_current_names(results: dict) -> Results:
    """A record of an earlier version, which called the most probable network ``mode``
    (``mode_test_error``, ``chosen: mode``), in this version's names."""
    renamed = {f"{MOST_PROBABLE}_{key[5:]}" if key.startswith("mode_") else key: value
               for key, value in results.items()}
    if renamed.get("chosen") == "mode":
        renamed["chosen"] = MOST_PROBABLE
    return renamed


def rounded(value: object) -> object:
    """Numbers as they mean something: six significant digits, so that an error of k / N
    examples reads 0.0065, not 0.006500000000000061 (exact for splits of up to 10^6 examples
    whose size divides a power of ten, as 5,000, 10,000 and 50,000 do)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


class UndeclaredKeyWarning(RuntimeWarning):
    """A results key ``Results`` does not declare: a programming error, which the test suite
    turns into a failure (pyproject.toml), while a run still writes its record."""


def write_results(folder: Path, results: Results) -> None:
    """Write the record, rounded. A key ``Results`` does not declare is warned about, not
    refused: the results of hours of training are never lost to a missing declaration."""
    undeclared = sorted(set(results) - set(Results.__annotations__))
    if undeclared:
        warnings.warn(f"results.json keys not declared in lrnets.run_folder.Results: "
                      f"{undeclared}", UndeclaredKeyWarning, stacklevel=2)
    (Path(folder) / RESULTS).write_text(json.dumps(rounded(results), indent=2) + "\n")


def epochs_done(folder: Path) -> int:
    """How many epochs the run in ``folder`` has trained: those its ``last.ckpt`` holds (0
    when there is none)."""
    last = Path(folder) / LAST
    if not last.is_file():
        return 0
    return torch.load(last, map_location="cpu", weights_only=True, mmap=True)["epoch"] + 1


def where(folder: Path) -> dict[str, str]:
    """The run's files, as the results record lists them and the console prints them."""
    return {"run_dir": str(folder), "results": str(folder / RESULTS),
            "checkpoints": str(folder / CHECKPOINTS), "tensorboard": str(folder / TENSORBOARD)}
