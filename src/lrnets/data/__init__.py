"""Data sets as Lightning data modules; ``build_datamodule(cfg.dataset, ...)`` is the entry."""
from __future__ import annotations

from omegaconf import DictConfig

from lrnets.data.files import DataError, data_root, load_cifar10, load_mnist_like
from lrnets.data.modules import ImageFolderDataModule, InMemoryDataModule
from lrnets.data.synthetic import synthetic_arrays
from lrnets.data.transforms import CifarTransform, UnitRange

DATASETS = ("mnist", "fashion_mnist", "cifar10", "imagenet", "synthetic")


def build_datamodule(cfg: DictConfig, batch_size: int, seed: int, num_workers: int = 0):
    """The data module for the ``dataset`` config group ``cfg``."""
    name = cfg.name
    if name == "imagenet":
        return ImageFolderDataModule(data_root(cfg.root), cfg.image_size, cfg.resize, cfg.val_size,
                                     batch_size, seed, num_workers)
    if name in ("mnist", "fashion_mnist"):
        train, test = load_mnist_like(name, data_root(cfg.root), cfg.download)
        transform, classes = UnitRange(), 10
    elif name == "cifar10":
        train, test = load_cifar10(data_root(cfg.root), cfg.download)
        transform, classes = CifarTransform(), 10
    elif name == "synthetic":
        train, test = synthetic_arrays(cfg.num_train, cfg.num_test, cfg.channels, cfg.image_size,
                                       cfg.num_classes)
        transform, classes = UnitRange(), cfg.num_classes
    else:
        raise DataError(f"dataset.name={name!r} is not a data set: choose one of {list(DATASETS)}.")
    return InMemoryDataModule(train, test, transform, classes, cfg.val_size, batch_size, seed,
                              num_workers, on_device=cfg.get("on_device", False))


__all__ = ["DATASETS", "DataError", "build_datamodule"]
