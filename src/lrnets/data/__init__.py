"""Data sets as Lightning data modules; ``build_datamodule(cfg.dataset, ...)`` is the entry."""
from __future__ import annotations

from omegaconf import DictConfig

from lrnets.config import code_of
from lrnets.data.files import DataError

# The readers of data sets whose config names none: those of runs, discrete.pt files and exports
# written before ``dataset.reader`` existed, which named the data set only.
EARLIER_READERS = {name: f"lrnets.data.readers.{name}"
                   for name in ("mnist", "fashion_mnist", "cifar10", "imagenet", "synthetic")}


def build_datamodule(cfg: DictConfig, batch_size: int, seed: int, num_workers: int = 0):
    """The data module of the ``dataset`` config ``cfg``, from its reader (``dataset.reader``,
    the dotted path of a function of ``lrnets.data.readers``' signature)."""
    reader = code_of("dataset", cfg, "reader", EARLIER_READERS)
    return reader(cfg, batch_size=batch_size, seed=seed, num_workers=num_workers)


__all__ = ["DataError", "build_datamodule"]
