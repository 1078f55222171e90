"""What a run prints: quiet by default, progress that fits where the output goes, one summary.

- Lightning's start-up lines ("GPU available", tips, its model summary) and dependencies'
  deprecation warnings are silenced unless ``verbose=true``.
- On a terminal, Lightning's progress bar counts epochs as ``Epoch 3/190``; in a file or a batch
  job, one line per epoch instead of bar redraws.
- Choosing the discrete network says what it scores, then its progress: a bar on a terminal, one
  line per scored network in a file.
- The summary names the reported figure (which network, batch norm as trained or re-estimated,
  validation and test), then the spread over the sampled networks and the most probable
  network, both batch-norm variants where both were scored, and where the files are.
"""
from __future__ import annotations

import logging
import sys
import time
import warnings

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from tqdm import tqdm

from lrnets.run_folder import (MOST_PROBABLE, Results, Split, most_probable_error, samples_error,
                               score_key)

_LIGHTNING_INFO = ("pytorch_lightning", "lightning_fabric", "lightning")  # their loggers' roots


def quiet(verbose: bool) -> None:
    """Silence Lightning's informational lines and dependencies' deprecation warnings."""
    if verbose:
        return
    for name in _LIGHTNING_INFO:
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar, its description ``Epoch 3/190``."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(
            f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


class EpochLines(pl.Callback):
    """One line per epoch: ``epoch 3/190, train_loss 0.1234, val_error 1.24%, 41 s`` (the time
    is ``EpochTimer``'s, which runs before it)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if "train/loss" in metrics:
            parts.append(f"train_loss {float(metrics['train/loss']):.4f}")
        if "val/acc" in metrics:
            parts.append(f"val_error {100 * (1 - float(metrics['val/acc'])):.2f}%")
        if "time/epoch_s" in metrics:
            parts.append(f"{float(metrics['time/epoch_s']):.0f} s")
        print(", ".join(parts), flush=True)


def progress_callbacks(enabled: bool) -> tuple[list[pl.Callback], bool]:
    """The progress callbacks for this output, and whether Lightning's bar stays enabled."""
    if not enabled:
        return [], False
    if sys.stdout.isatty():
        return [EpochProgressBar()], True
    return [EpochLines()], False


def choosing_line(num_samples: int, recalibrate_bn: bool) -> str:
    """What the run does after training, said before it does it (sec. 4.4)."""
    bn = ", each with batch norm as trained and re-estimated" if recalibrate_bn else ""
    return (f"Choosing the discrete network: scoring the most probable network and "
            f"{num_samples} sampled networks on the validation and test splits{bn} ...")


class CandidateProgress:
    """The choice of the discrete network, one step per scored candidate (sec. 4.4): a bar on a
    terminal; in a file, one line each, ``network 3/11 (sample_1, batch norm re-estimated):
    val 1.23%, test 1.30%, 4 s``. Called with each candidate's scores."""

    def __init__(self, total: int, recalibrate_bn: bool):
        self.total, self.done, self.recalibrate_bn = total, 0, recalibrate_bn
        self.last = time.monotonic()
        self.bar = tqdm(total=total, desc="Choosing", unit="network", leave=False,
                        file=sys.stdout) if sys.stdout.isatty() else None

    def __call__(self, scores: dict) -> None:
        self.done += 1
        test = scores.get(score_key("test", self.recalibrate_bn))
        figures = (f"val {percent(1 - scores[score_key('val', self.recalibrate_bn)])}, test "
                   f"{percent(None if test is None else 1 - test)}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"{scores['name']}: {figures}")
            self.bar.update()
            if self.done == self.total:
                self.bar.close()
            return
        now, seconds = time.monotonic(), time.monotonic() - self.last
        self.last = now
        bn = ", batch norm re-estimated" if self.recalibrate_bn else ""
        print(f"  network {self.done}/{self.total} ({scores['name']}{bn}): {figures}, "
              f"{seconds:.0f} s", flush=True)


def candidate_progress(num_samples: int, recalibrate_bn: bool,
                       enabled: bool) -> CandidateProgress | None:
    """The progress of choosing among the most probable and ``num_samples`` sampled networks."""
    return CandidateProgress(num_samples + 1, recalibrate_bn) if enabled else None


def percent(value: float | None) -> str:
    """An error fraction in percent, two decimals; a dash for none."""
    return "—" if value is None else f"{100 * value:.2f}%"


def spread(results: Results, split: Split, recalibrated: bool) -> str:
    """Mean ± std of the sampled networks' error on ``split``, in percent."""
    figure = samples_error(results, split, recalibrated)
    return "—" if figure is None else f"{100 * figure[0]:.2f} ± {100 * figure[1]:.2f}%"


def final_lines(results: Results) -> str:
    """The final lines of a run (``results.json``'s figures, in words)."""
    head = f"{results['mode']} {results['arch']} on {results['dataset']}"
    lines = [f"\n{head}: test error {percent(results.get('test_error'))} "
             f"(validation {percent(results.get('val_error'))})"]
    if "chosen" in results:
        bn = "re-estimated" if results.get("recalibrated_bn") else "as trained"
        chosen = "the most probable one" if results["chosen"] == MOST_PROBABLE else results["chosen"]
        lines[0] += f", the network chosen on validation: {chosen}, batch norm {bn}"
        variants = [(False, "as trained")]
        if most_probable_error(results, "test", recalibrated=True) is not None:
            variants.append((True, "re-estimated"))
        for recalibrated, label in variants:
            lines.append(f"  batch norm {label}: sampled networks val "
                         f"{spread(results, 'val', recalibrated)}, test "
                         f"{spread(results, 'test', recalibrated)}; most probable network val "
                         f"{percent(most_probable_error(results, 'val', recalibrated))}, test "
                         f"{percent(most_probable_error(results, 'test', recalibrated))}")
    if "ensemble_size" in results:
        size = results["ensemble_size"]
        lines.append(f"  ensemble of {size} sampled networks (averaged softmax; {size} networks "
                     f"at inference): test {percent(results['ensemble_test_error'])}")
    if "test_error_chosen_across_epochs" in results:
        lines.append(f"  chosen on validation across epochs (eval.choose_across_epochs): test "
                     f"{percent(results['test_error_chosen_across_epochs'])} (validation "
                     f"{percent(results['val_error_chosen_across_epochs'])}) at epoch "
                     f"{results['epoch_chosen_across_epochs']} of those scored from epoch "
                     f"{results['chosen_across_epochs_from']}")
    if "test_error_chosen_on_test" in results:
        lines.append(f"  chosen on the test split, as the authors' code did (eval.score_test; not "
                     f"the reported network): test {percent(results['test_error_chosen_on_test'])}"
                     f" at epoch {results['epoch_chosen_on_test']}")
    paths = results["paths"]
    lines += [f"results:     {paths['results']}", f"checkpoints: {paths['checkpoints']}",
              f"tensorboard: {sys.executable} -m tensorboard.main --logdir {paths['tensorboard']}"]
    return "\n".join(lines)
