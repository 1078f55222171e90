"""Reading the data sets from disk: where they are, what they hold, and clear errors.

The data root is ``dataset.root``, else ``$LRNETS_DATA``, else ``./data`` (torchvision's
download location). MNIST and Fashion-MNIST are the official IDX files under
``<root>/MNIST/raw`` and ``<root>/FashionMNIST/raw``; CIFAR-10 is the python batches under
``<root>/cifar-10-batches-py``. When files are absent and ``dataset.download`` is true,
torchvision's download is tried.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from lrnets.errors import ConfigError

Arrays = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N, C, H, W), int64 labels (N,)


class DataError(ConfigError):
    """Data files that are missing, truncated or inconsistent."""


def data_root(root: str | None) -> Path:
    """``dataset.root``, else ``$LRNETS_DATA``, else ``./data``."""
    return Path(root or os.environ.get("LRNETS_DATA") or "data").expanduser().resolve()


def _missing(name: str, root: Path, expected: str, download: bool, reason: str = "") -> DataError:
    tried = f" The download failed ({reason})." if download else ""
    return DataError(
        f"dataset={name}: no data at {root / expected}.{tried} Put the files there, or point "
        f"dataset.root=DIR (or the LRNETS_DATA environment variable) at a folder that holds "
        f"{expected}; with internet access, dataset.download=true fetches them."
    )


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def load_mnist_like(name: str, cls: type[datasets.MNIST], root: Path,
                    download: bool) -> tuple[Arrays, Arrays]:
    """A data set in MNIST's IDX files, read by its torchvision class ``cls`` (``datasets.MNIST``,
    ``datasets.FashionMNIST``, ...) from ``root/<cls name>/raw``, as (train, test) uint8 tensors
    of shape (N, 1, 28, 28); ``name`` is its ``dataset`` choice, for the messages."""
    raw = f"{cls.__name__}/raw"
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except Exception as err:
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            if not all((root / raw / f).is_file() for f in IDX_FILES):  # absent, not downloaded
                raise _missing(name, root, raw, download, first_line) from None
            raise DataError(
                f"dataset={name}: the IDX files in {root / raw} cannot be read ({first_line}). "
                f"They are truncated or corrupted: replace them with the official files."
            ) from None
        if len(ds.data) != len(ds.targets):
            raise DataError(f"dataset={name}: the IDX files in {root / raw} hold {len(ds.data)} "
                            f"images and {len(ds.targets)} labels for the "
                            f"{'training' if train else 'test'} split; replace them with the "
                            f"official files.")
        splits.append((ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
    return splits[0], splits[1]


CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {name: md5 for name, md5 in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list}


def load_cifar10(root: Path, download: bool) -> tuple[Arrays, Arrays]:
    """CIFAR-10 python batches as (train, test) uint8 tensors of shape (N, 3, 32, 32).

    The batches are checked by shape, labels and counts rather than by checksum, so copies
    re-encoded from another source (like the offline JPEG copy) load, with a warning."""
    folder = root / CIFAR_DIR
    if not folder.is_dir() and download:
        try:
            datasets.CIFAR10(str(root), train=True, download=True)
        except Exception as err:  # no network, most often
            raise _missing("cifar10", root, CIFAR_DIR, True, str(err).splitlines()[0]) from None
    if not folder.is_dir():
        raise _missing("cifar10", root, CIFAR_DIR, False)
    train = _read_cifar_batches(folder, [f"data_batch_{i}" for i in range(1, 6)], 50000)
    test = _read_cifar_batches(folder, ["test_batch"], 10000)
    if not cifar10_matches_release(folder):
        warnings.warn(
            f"CIFAR-10 batches in {folder} do not match the official checksums; they were "
            f"loaded after checking shapes, labels and counts (a re-encoded copy, such as the "
            f"offline JPEG one, gives slightly different accuracies).", stacklevel=2)
    return train, test


def cifar10_matches_release(folder: Path) -> bool:
    """Whether the batches in ``folder`` are the official release (by their MD5 checksums)."""
    return all(check_integrity(str(folder / f), md5) for f, md5 in _CIFAR_FILES.items())


def _read_cifar_batches(folder: Path, names: list[str], count: int) -> Arrays:
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
        except FileNotFoundError:
            raise DataError(f"dataset=cifar10: {path} is missing; the folder {folder} must hold "
                            f"data_batch_1..5 and test_batch.") from None
        except Exception as err:
            raise DataError(f"dataset=cifar10: {path} cannot be read ({type(err).__name__}: "
                            f"{err}); it is truncated or corrupted: write the batches again.") from None
        if len(x) != len(y) or y.min() < 0 or y.max() > 9:
            raise DataError(f"dataset=cifar10: {path} holds {len(x)} images and {len(y)} labels "
                            f"in [{y.min()}, {y.max()}]; expected equal counts and labels 0-9.")
        images.append(torch.from_numpy(x))
        labels.append(torch.from_numpy(y))
    x, y = torch.cat(images), torch.cat(labels)
    if len(x) != count:
        raise DataError(f"dataset=cifar10: {folder} holds {len(x)} images in {names}; "
                        f"expected {count}.")
    return x, y
