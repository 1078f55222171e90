"""Stopping a run cleanly when it is interrupted or its loss stops being finite.

- SIGINT (Ctrl-C) and SIGTERM (``kill``, cluster schedulers): ``InterruptCheckpoint`` saves the
  state of that moment to ``checkpoints/interrupted.ckpt``, while ``checkpoints/last.ckpt`` keeps
  the last complete epoch, from which ``ckpt_path=last`` continues exactly. The results file says
  ``status: interrupted`` and the process exits with 128 + the signal number, as a shell reports
  a death by that signal.
- A NaN or infinite training loss (``FiniteLoss``) stops the run at that step with
  ``status: failed``. Checkpoints are written at epoch ends only, so ``last.ckpt`` still holds
  the last epoch whose losses were all finite. (Lightning's ``EarlyStopping(check_finite=True)``
  looks at epoch ends only, after which that epoch's weights would be saved.)

``stopped_run`` turns what ended the run into the results file's entries and a ``RunStopped``
error for the command line.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lrnets.errors import RunStopped
from lrnets.run_folder import INTERRUPTED, LAST, epochs_done

class Terminated(KeyboardInterrupt):
    """SIGTERM raised as an exception, so that it unwinds the run as Ctrl-C does."""

    signum = signal.SIGTERM


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (also outside Lightning's fit loop)."""
    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def signal_number(exception: BaseException) -> int | None:
    """The signal behind ``exception``: SIGINT or SIGTERM, else None."""
    if isinstance(exception, KeyboardInterrupt):
        return getattr(exception, "signum", signal.SIGINT)
    if isinstance(exception, SIGTERMException):  # Lightning's own SIGTERM handling
        return signal.SIGTERM
    return None


class InterruptCheckpoint(pl.Callback):
    """On SIGINT or SIGTERM during fitting: save the state to ``path`` and note the signal."""

    def __init__(self, path: Path):
        self.path = path
        self.signum: int | None = None

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule,
                     exception: BaseException) -> None:
        self.signum = signal_number(exception)
        if self.signum is not None:
            trainer.save_checkpoint(self.path, weights_only=False)


class TrainingDiverged(Exception):
    """The training loss is NaN or infinite."""


class FiniteLoss(pl.Callback):
    """Stops training at the first step whose loss is not finite."""

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                           outputs: dict | None, batch: object, batch_idx: int) -> None:
        loss = outputs.get("loss") if outputs else None  # None: a skipped step
        if loss is not None and not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss.item()} in epoch "
                                   f"{trainer.current_epoch + 1}, step {trainer.global_step}")


@dataclass
class StoppedRun:
    """Why a run stopped early: the results file's entries and the error to raise."""

    results: dict
    error: RunStopped


def stopped_run(exception: BaseException, trainer: pl.Trainer, out: Path,
                resume_hint: str) -> StoppedRun | None:
    """What ``exception``, raised while fitting, means for the run; None for errors that are
    neither an interruption nor a diverged loss."""
    signum = next(cb.signum for cb in trainer.callbacks if isinstance(cb, InterruptCheckpoint))
    last = out / LAST
    epochs = epochs_done(out)
    if epochs:
        kept = f"{last} holds the first {epochs} epoch(s)."
    else:
        kept, resume_hint = "No epoch was complete.", "Run the same command again to start over."
    results = {"epochs": epochs, "checkpoints": {"last": str(last) if epochs else None}}
    if signum is not None:
        name = signal.Signals(signum).name
        results["checkpoints"]["interrupted"] = str(out / INTERRUPTED)
        reason = (f"interrupted by {name}; the state of that moment is in {out / INTERRUPTED}. "
                  f"{kept}")
        return StoppedRun({"status": "interrupted", "signal": name, **results},
                          RunStopped(reason, resume_hint, 128 + signum))
    if isinstance(exception, TrainingDiverged):
        reason = (f"{exception}, and the run stopped. {kept} Lower the learning rate (train.lr) "
                  f"or check the inputs.")
        return StoppedRun({"status": "failed", "error": str(exception), **results},
                          RunStopped(reason, resume_hint, 1))
    return None
