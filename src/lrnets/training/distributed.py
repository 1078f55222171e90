"""What stays correct under data parallelism (Lightning DDP): evaluation shards without
padding, so every example is counted once when counts are summed over ranks, and a check that
every rank chose the same sampled network."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset


def rank_shard(loader: DataLoader, trainer: pl.Trainer) -> DataLoader:
    """The examples ``rank, rank + world_size, ...`` of ``loader``'s data set, in order.

    Unlike ``DistributedSampler`` this pads nothing, so summed counts cover each example once."""
    if trainer.world_size == 1:
        return loader
    dataset = loader.dataset
    indices = list(range(trainer.global_rank, len(dataset), trainer.world_size))
    return DataLoader(Subset(dataset, indices), batch_size=loader.batch_size,
                      collate_fn=loader.collate_fn, num_workers=loader.num_workers)


def examples_counted(loader: DataLoader, trainer: pl.Trainer) -> int:
    """How many examples the ranks' shards of one split hold together."""
    count = torch.tensor(float(len(loader.dataset)), device=trainer.strategy.root_device)
    return int(trainer.strategy.reduce(count, reduce_op="sum"))


def all_ranks(value: object, trainer: pl.Trainer) -> list:
    """``value`` as every rank has it (rank order); ``[value]`` in a single process."""
    if trainer.world_size == 1 or not dist.is_initialized():
        return [value]
    gathered: list = [None] * trainer.world_size
    dist.all_gather_object(gathered, value)
    return gathered
