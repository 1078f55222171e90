"""Per-batch input transforms, applied on the device the model runs on.

Images travel as uint8 tensors and become floats here, so that augmentation costs one
vectorised operation per batch instead of per-image work in the data loader. Every
transform is called as ``transform(x, train)``; ``train`` switches augmentation on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UnitRange(nn.Module):
    """Pixels in [0, 1], no augmentation (MNIST, sec. 5.1)."""

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        return x.float().div_(255)


class Passthrough(nn.Module):
    """Batches that the data loader already made float and normalised (ImageNet)."""

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        return x


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """Subtract each image's mean and divide by its std, floored at 1/sqrt(#pixels) as in
    ``tf.image.per_image_standardization`` (which the authors' CIFAR-10 input uses)."""
    flat = x.flatten(1)
    mean = flat.mean(1)
    std = flat.std(1, unbiased=False).clamp_min(flat.shape[1] ** -0.5)
    return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


def random_crop_flip(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding``, crop a random window of the original size per image and flip
    half of the images horizontally: ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip``
    for a whole batch at once, as one gather of every output pixel from the padded images
    (works on uint8, before the conversion to float)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
    flip = torch.rand(n, 1, 1, device=x.device) < 0.5
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    cols = torch.where(flip, w - 1 - cols, cols) + left
    rows = torch.arange(h, device=x.device).view(1, h, 1) + top
    index = (rows * padded.shape[-1] + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


class CifarTransform(nn.Module):
    """CIFAR-10 (sec. 5.2): train: pad 4, random 32x32 crop, random flip; then per-image
    standardisation (train and test)."""

    def __init__(self, padding: int = 4):
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        if train:
            x = random_crop_flip(x, self.padding)
        return per_image_standardization(x.float().div_(255))
