"""Random numbers that depend only on (seed, epoch), so that a resumed run trains exactly as an
uninterrupted one.

A checkpoint restores the weights, the optimiser, the learning-rate schedule and the loop
counters, but not the random streams: the noise of the local reparameterization forward pass
(eq. 4), dropout, augmentation and the order of the training data. Seeding them anew at the start
of every epoch from (seed, epoch) makes epoch k draw the same numbers whether the run started at
epoch 0 or resumed from the checkpoint written after epoch k - 1.
"""
from __future__ import annotations

from typing import Iterator, Sized

import pytorch_lightning as pl
import torch
from torch.utils.data import RandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded ``seed`` (distinct for epochs < 100000)."""
    return seed * 100_000 + epoch


class EpochShuffledSampler(RandomSampler):
    """A new random order every epoch, drawn from (seed, epoch) alone.

    Lightning calls ``set_epoch`` before each training epoch. With several devices it replaces
    a ``RandomSampler`` by a ``DistributedSampler``, which also shuffles by seed and epoch.
    """

    def __init__(self, data_source: Sized, seed: int):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class EpochSeed(pl.Callback):
    """Reseeds torch's global generators (CPU and every GPU) when a training epoch starts."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        torch.manual_seed(epoch_seed(self.seed, trainer.current_epoch))
