"""Each data set's reader: the function its config names in ``dataset.reader``.

A reader takes the ``dataset`` config and the loader settings and returns the Lightning data
module (``lrnets.data.modules``). Adding a data set is its config (``conf/dataset/<name>.yaml``,
over the schema of its kind, ``- /schema/dataset/in_memory@dataset``, with
``reader: lrnets.data.readers.<name>`` or a reader of its own anywhere importable) and, where
none fits, its reader.
"""
from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig
from torch import nn
from torchvision import datasets

from lrnets.data.files import Arrays, data_root, load_cifar10, load_mnist_like
from lrnets.data.modules import ImageFolderDataModule, InMemoryDataModule
from lrnets.data.synthetic import synthetic_arrays
from lrnets.data.transforms import CifarTransform, UnitRange


def _in_memory(cfg: DictConfig, data: tuple[Arrays, Arrays], transform: nn.Module,
               num_classes: int, batch_size: int, seed: int,
               num_workers: int) -> InMemoryDataModule:
    train, test = data
    return InMemoryDataModule(train, test, transform, num_classes, cfg.val_size, batch_size, seed,
                              num_workers, on_device=cfg.get("on_device", False))


def mnist(cfg: DictConfig, batch_size: int, seed: int, num_workers: int) -> pl.LightningDataModule:
    """MNIST (sec. 5.1): pixels in [0, 1]."""
    data = load_mnist_like("mnist", datasets.MNIST, data_root(cfg.root), cfg.download)
    return _in_memory(cfg, data, UnitRange(), 10, batch_size, seed, num_workers)


def fashion_mnist(cfg: DictConfig, batch_size: int, seed: int,
                  num_workers: int) -> pl.LightningDataModule:
    """Fashion-MNIST: pixels in [0, 1]."""
    data = load_mnist_like("fashion_mnist", datasets.FashionMNIST, data_root(cfg.root),
                           cfg.download)
    return _in_memory(cfg, data, UnitRange(), 10, batch_size, seed, num_workers)


def cifar10(cfg: DictConfig, batch_size: int, seed: int,
            num_workers: int) -> pl.LightningDataModule:
    """CIFAR-10 (sec. 5.2): ``CifarTransform``'s normalisation and augmentation."""
    return _in_memory(cfg, load_cifar10(data_root(cfg.root), cfg.download), CifarTransform(),
                      10, batch_size, seed, num_workers)


def synthetic(cfg: DictConfig, batch_size: int, seed: int,
              num_workers: int) -> pl.LightningDataModule:
    """Generated images of ``cfg.num_classes`` classes (tests, smoke runs)."""
    data = synthetic_arrays(cfg.num_train, cfg.num_test, cfg.channels, cfg.image_size,
                            cfg.num_classes)
    return _in_memory(cfg, data, UnitRange(), cfg.num_classes, batch_size, seed, num_workers)


def imagenet(cfg: DictConfig, batch_size: int, seed: int,
             num_workers: int) -> pl.LightningDataModule:
    """ImageNet-style image folders (sec. 5.3)."""
    return ImageFolderDataModule(data_root(cfg.root), cfg.image_size, cfg.resize, cfg.val_size,
                                 batch_size, seed, num_workers)
