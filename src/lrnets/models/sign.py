"""Sign networks (Roth et al., ECML PKDD 2019): the architectures of ``lrnets.models.architectures`` built
from ``SignBlocks``, discrete weights and sign activations trained by probabilistic forward
propagation.

The blocks follow the authors' code, conv -> 2x2 max pool -> batch norm -> sign and
FC -> batch norm -> sign -> dropout, and each weight layer sits at the same position of
``body`` as in the ReLU network of the same name, so a full-precision ReLU reference
initialises it (``lrnets.training.initialization``). The softmax layer is discrete too: discrete
weights, a real bias, its output scaled by 1 / sqrt(fan-in) (the authors' output normalisation)
and, in training, a Gaussian sample of its pre-activation fed to the softmax.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from lrnets.errors import ConfigError
from lrnets.models.architectures import LayerFamily
from lrnets.nn.layers import DiscreteLinear
from lrnets.nn.moments import Gaussian
from lrnets.nn.sign_layers import (GaussianMaxPool2d, MomentBatchNorm1d, MomentBatchNorm2d,
                                MomentDropout, MomentFlatten, MomentLayers, Sign)

SignFactory = Callable[[], Sign]


class SignNetwork(nn.Module):
    """A body of discrete layers with sign activations and a discrete softmax layer."""

    def __init__(self, body: nn.Module, head: DiscreteLinear):
        super().__init__()
        self.body = body
        self.head = head
        self.bias = nn.Parameter(torch.zeros(head.out_features))
        self.scale = head.in_features ** -0.5

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.body(x))
        if isinstance(out, Gaussian):
            out = out.sample(self.head.method.eps)
        return out * self.scale + self.bias


class SignBlocks:
    """Roth et al.'s blocks, in the authors' order: conv -> (2x2 max pool) -> batch norm -> sign,
    FC -> batch norm -> sign -> dropout, over Gaussian moments; a discrete softmax layer."""

    def __init__(self, first: LayerFamily, layers: LayerFamily, sign: SignFactory):
        self.first, self.layers, self.sign = first, layers, sign

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
             pool: bool = False, first: bool = False) -> list[nn.Module]:
        pooling = [GaussianMaxPool2d()] if pool else []
        family = self.first if first else self.layers
        return [family.conv(cin, cout, k, stride, padding), *pooling, MomentBatchNorm2d(cout),
                self.sign()]

    def fc(self, fin: int, fout: int, dropout: float, first: bool = False) -> list[nn.Module]:
        family = self.first if first else self.layers
        return [family.linear(fin, fout), MomentBatchNorm1d(fout), self.sign(),
                MomentDropout(dropout)]

    def flatten(self) -> nn.Module:
        return MomentFlatten()

    def residual(self, cin: int, cout: int, stride: int) -> nn.Module:
        raise ConfigError("arch='resnet18' has no sign-activation version (its residual sums are "
                          "not propagated as moments): with activation=sign choose an "
                          "architecture without residual blocks, such as lenet, vgg or mlp.")

    def network(self, body: nn.Module, features: int, num_classes: int) -> SignNetwork:
        return SignNetwork(body, self.layers.linear(features, num_classes))


def sign_blocks(first: LayerFamily, layers: LayerFamily, activation: Mapping) -> SignBlocks:
    """``activation=sign``'s blocks over the families ``first`` (first layer) and ``layers``,
    which ``activation=sign`` makes moment-propagating (``MomentLayers``); ``activation`` gives
    the sign's ``propagation`` and ``temperature``. Families of fixed weights (``fixed``: an
    exported network) are taken as they are: their layers map tensors to tensors, and a sign of
    a tensor is the hard sign. Raises ``ConfigError`` for other families."""
    if getattr(first, "fixed", False) and getattr(layers, "fixed", False):
        return SignBlocks(first, layers, Sign)
    for family, option in ((layers, "mode.layers._target_"), (first, "mode.first_layer")):
        if not isinstance(family, MomentLayers):
            raise ConfigError(
                f"activation=sign trains weight distributions by probabilistic forward "
                f"propagation, so every layer must be an LR-net layer propagating moments "
                f"(lrnets.nn.sign_layers.MomentLayers), and {option} builds "
                f"{type(family).__name__}: use mode=ternary or mode=binary (optionally with "
                f"weights=...), which take the family activation=sign names, and "
                f"mode.first_layer=discrete (a real-valued layer followed by a sign gets no "
                f"gradient).")
    return SignBlocks(first, layers, partial(Sign, activation["propagation"],
                                             activation["temperature"]))
