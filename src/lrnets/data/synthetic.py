"""Generated images for tests and smoke runs: one random template per class plus noise, so a
network can learn it in a few batches."""
from __future__ import annotations

import torch

from lrnets.data.files import Arrays


def synthetic_arrays(num_train: int, num_test: int, channels: int, image_size: int,
                     num_classes: int, seed: int = 0) -> tuple[Arrays, Arrays]:
    """(train, test) uint8 images ``clip(0.5 + 0.3 template[y] + 0.15 noise)`` and labels."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, channels, image_size, image_size, generator=g)

    def draw(n: int) -> Arrays:
        y = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.randn(n, channels, image_size, image_size, generator=g)
        x = (0.5 + 0.3 * templates[y] + 0.15 * noise).clamp(0, 1)
        return (x * 255).round().to(torch.uint8), y

    return draw(num_train), draw(num_test)
