"""Lightning data modules: in-memory tensors (MNIST, Fashion-MNIST, CIFAR-10, synthetic) and
ImageFolder trees (ImageNet).

Each module holds a training split, a validation split held out of the training set (used to
choose the sampled discrete network, sec. 4.4), the test set, and the ``batch_transform`` that
the Lightning module applies on the device. The validation split is drawn with a fixed seed, so
it is the same for every run seed.
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from lrnets.data.files import Arrays, DataError
from lrnets.data.transforms import Passthrough
from lrnets.seeding import EpochShuffledSampler

SPLIT_SEED = 0


class TensorPairs(Dataset):
    """Images and labels in memory; a batch of indices is one tensor index (``__getitems__``),
    not a Python loop over examples."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, device=self.labels.device)
        return self.images[idx], self.labels[idx]

    def to_(self, device: torch.device) -> None:
        """Keep the tensors on ``device`` (an accelerator), so batches never cross the bus."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)


def _already_batched(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def split_off(count: int, val_size: int, option: str = "dataset.val_size") -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and validation parts of ``count`` training examples."""
    if not 0 < val_size < count - 1:
        raise DataError(f"{option}={val_size} is not allowed: the validation split is held out of "
                        f"the {count} training examples, so it needs between 1 and {count - 2} "
                        f"(batch norm trains on batches of 2 examples at least).")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[val_size:], order[:val_size]


class _Loaders(pl.LightningDataModule):
    """Data loaders over ``self.train_set``, ``self.val_set``, ``self.test_set``."""

    train_set: Dataset
    val_set: Dataset
    test_set: Dataset
    batch_transform: nn.Module
    collate = None

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def on_after_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        """Inputs become float (and augmented while training) on the device (``batch_transform``)."""
        x, y = batch
        return self.batch_transform(x, train=self.trainer.training), y

    def _loader(self, dataset: Dataset, shuffle: bool, seed_offset: int = 0) -> DataLoader:
        """Shuffled loaders draw a new order every epoch from (seed, epoch) alone, so a resumed
        run sees the batches an uninterrupted one would (``lrnets.seeding``). The generator
        seeds worker processes, and keeps loaders from drawing on the global random stream."""
        seed = self.seed + seed_offset
        sampler = EpochShuffledSampler(dataset, seed) if shuffle else None
        # Batch norm cannot train on a final batch of one example: drop that one, only that.
        drop_last = shuffle and len(dataset) % self.batch_size == 1
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
                          generator=torch.Generator().manual_seed(seed),
                          num_workers=self.num_workers, collate_fn=self.collate,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def calibration_dataloader(self) -> DataLoader:
        """Training images in a fixed shuffled order, for re-estimating batch-norm statistics."""
        return self._loader(self.train_set, shuffle=True, seed_offset=1)


class InMemoryDataModule(_Loaders):
    """Data sets that fit in memory as one uint8 tensor each."""

    collate = staticmethod(_already_batched)

    def __init__(self, train: Arrays, test: Arrays, batch_transform: nn.Module, num_classes: int,
                 val_size: int, batch_size: int, seed: int, num_workers: int = 0,
                 on_device: bool = False):
        super().__init__(batch_size, num_workers, seed)
        self.on_device = on_device
        (x, y), (x_test, y_test) = train, test
        train_idx, val_idx = split_off(len(y), val_size)
        self.train_set = TensorPairs(x[train_idx], y[train_idx])
        self.val_set = TensorPairs(x[val_idx], y[val_idx])
        self.test_set = TensorPairs(x_test, y_test)
        self.batch_transform = batch_transform
        self.in_channels, self.image_size = x.shape[1], x.shape[-1]
        self.num_classes = num_classes

    def setup(self, stage: str) -> None:
        """With ``on_device``, move the uint8 data sets to the device that trains."""
        if self.on_device:
            for dataset in (self.train_set, self.val_set, self.test_set):
                dataset.to_(self.trainer.strategy.root_device)


def _load_image(path: str) -> Image.Image:
    """torchvision's image reader, with an error that names a file it cannot read."""
    try:
        return datasets.folder.default_loader(path)
    except OSError as err:  # PIL's UnidentifiedImageError and truncated files included
        raise DataError(f"dataset=imagenet: the image {path} cannot be read ({err}); replace "
                        f"or remove it.") from None


class ImageFolderDataModule(_Loaders):
    """ImageNet-style trees ``<root>/train/<class>/*`` and ``<root>/val/<class>/*`` (sec. 5.3):
    shorter side ``resize``, random ``image_size`` crop and flip for training, centre crop for
    validation and test, mean/std normalisation."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, root: Path, image_size: int, resize: int, val_size: int, batch_size: int,
                 seed: int, num_workers: int):
        super().__init__(batch_size, num_workers, seed)
        normalize = [transforms.ToTensor(), transforms.Normalize(self.MEAN, self.STD)]
        train_tf = transforms.Compose([transforms.Resize(resize), transforms.RandomCrop(image_size),
                                       transforms.RandomHorizontalFlip(), *normalize])
        test_tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(image_size),
                                      *normalize])
        train_aug, train_plain = (self._folder(root / "train", tf) for tf in (train_tf, test_tf))
        train_idx, val_idx = split_off(len(train_aug), val_size)
        self.train_set = Subset(train_aug, train_idx.tolist())
        self.val_set = Subset(train_plain, val_idx.tolist())
        self.test_set = self._folder(root / "val", test_tf)
        if self.test_set.classes != train_aug.classes:
            raise DataError(f"dataset.root={root}: train/ and val/ hold different classes "
                            f"({len(train_aug.classes)} and {len(self.test_set.classes)}).")
        self.batch_transform = Passthrough()
        self.in_channels, self.image_size = 3, image_size
        self.num_classes = len(train_aug.classes)

    @staticmethod
    def _folder(path: Path, tf: transforms.Compose) -> datasets.ImageFolder:
        if not path.is_dir():
            raise DataError(f"dataset=imagenet: {path} is not a folder; dataset.root must hold "
                            f"train/<class>/*.JPEG and val/<class>/*.JPEG.")
        try:
            return datasets.ImageFolder(str(path), transform=tf, loader=_load_image)
        except FileNotFoundError as err:
            raise DataError(f"dataset=imagenet: {err} (in {path}); every class folder needs at "
                            f"least one image.") from None
