"""Data sets as Lightning data modules; ``build_datamodule(cfg.dataset, ...)`` is the entry."""
from __future__ import annotations

from omegaconf import DictConfig

from lrnets.config import code_at
from lrnets.data.files import DataError

# The readers of data sets whose config names none: those of runs, discrete.pt files and exports
# written before ``dataset.reader`` existed, which named the data set only.
EARLIER_READERS = {name: f"lrnets.data.readers.{name}"
                   for name in ("mnist", "fashion_mnist", "cifar10", "imagenet", "synthetic")}


def build_datamodule(cfg: DictConfig, batch_size: int, seed: int, num_workers: int = 0):
    """The data module of the ``dataset`` config ``cfg``, from its reader (``dataset.reader``,
    the dotted path of a function of ``lrnets.data.readers``' signature)."""
    path = cfg.get("reader") or EARLIER_READERS.get(cfg.name)
    if path is None:
        raise DataError(f"dataset.name={cfg.name!r} names no reader: give dataset.reader, the "
                        f"dotted path of a reader function (see lrnets.data.readers).")
    reader = code_at("dataset.reader", path, "lrnets.data.readers.mnist")
    return reader(cfg, batch_size=batch_size, seed=seed, num_workers=num_workers)


__all__ = ["DataError", "build_datamodule"]
