"""Sign networks (Roth et al., ECML PKDD 2019): the architectures of ``lrnets.models`` with
discrete weights and sign activations, trained by probabilistic forward propagation.

The blocks follow the authors' code, conv -> 2x2 max pool -> batch norm -> sign and
FC -> batch norm -> sign -> dropout, and each weight layer sits at the same position of
``body`` as in the ReLU network of the same name, so a full-precision ReLU reference
initialises it (``lrnets.initialization``). The softmax layer is discrete too: discrete
weights, a real bias, its output scaled by 1 / sqrt(fan-in) (the authors' output normalisation)
and, in training, a Gaussian sample of its pre-activation fed to the softmax.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from lrnets.errors import ConfigError
from lrnets.layers import LRLayers
from lrnets.models import LayerFamily, lenet_side
from lrnets.moments import Gaussian
from lrnets.sign_layers import (PROPAGATIONS, GaussianMaxPool2d, MomentBatchNorm1d,
                                MomentBatchNorm2d, MomentDropout, MomentFlatten, MomentLayers,
                                MomentLinear, Sign)

SignFactory = Callable[[], Sign]


class SignNetwork(nn.Module):
    """A body of discrete layers with sign activations and a discrete softmax layer."""

    def __init__(self, body: nn.Module, head: MomentLinear):
        super().__init__()
        self.body = body
        self.head = head
        self.bias = nn.Parameter(torch.zeros(head.out_features))
        self.scale = head.in_features ** -0.5

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.body(x))
        if isinstance(out, Gaussian):
            out = out.sample(self.head.eps)
        return out * self.scale + self.bias


def _conv_block(layers: MomentLayers, sign: SignFactory, cin: int, cout: int, k: int,
                padding: int = 0, pool: bool = False) -> list[nn.Module]:
    pooling = [GaussianMaxPool2d()] if pool else []
    return [layers.conv(cin, cout, k, 1, padding), *pooling, MomentBatchNorm2d(cout), sign()]


def _fc_block(layers: MomentLayers, sign: SignFactory, fin: int, fout: int,
              dropout: float) -> list[nn.Module]:
    return [layers.linear(fin, fout), MomentBatchNorm1d(fout), sign(), MomentDropout(dropout)]


def sign_lenet(first: MomentLayers, layers: MomentLayers, sign: SignFactory, in_channels: int,
               num_classes: int, image_size: int, dropout: float) -> SignNetwork:
    """32C5 - MP2 - 64C5 - MP2 - 512FC - softmax, as ``models.lenet``."""
    side = lenet_side(image_size)
    body = nn.Sequential(
        *_conv_block(first, sign, in_channels, 32, 5, padding=2, pool=True),
        *_conv_block(layers, sign, 32, 64, 5, padding=2, pool=True),
        MomentFlatten(),
        *_fc_block(layers, sign, 64 * side * side, 512, dropout),
    )
    return SignNetwork(body, layers.linear(512, num_classes))


def sign_vgg(first: MomentLayers, layers: MomentLayers, sign: SignFactory, in_channels: int,
             num_classes: int, image_size: int, dropout: float) -> SignNetwork:
    """(2x128C3) - MP2 - (2x256C3) - MP2 - (2x512C3) - MP2 - 1024FC - softmax, as ``models.vgg``."""
    blocks: list[nn.Module] = []
    cin = in_channels
    for i, width in enumerate((128, 128, 256, 256, 512, 512)):
        blocks += _conv_block(first if i == 0 else layers, sign, cin, width, 3, padding=1,
                              pool=i % 2 == 1)
        cin = width
    side = image_size // 8
    body = nn.Sequential(*blocks, MomentFlatten(),
                         *_fc_block(layers, sign, 512 * side * side, 1024, dropout))
    return SignNetwork(body, layers.linear(1024, num_classes))


def sign_mlp(first: MomentLayers, layers: MomentLayers, sign: SignFactory, in_channels: int,
             num_classes: int, image_size: int, dropout: float) -> SignNetwork:
    """Permutation-invariant 784-1200-1200-10 MLP, as ``models.mlp``."""
    fin = in_channels * image_size * image_size
    body = nn.Sequential(
        MomentFlatten(),
        *_fc_block(first, sign, fin, 1200, dropout),
        *_fc_block(layers, sign, 1200, 1200, dropout),
    )
    return SignNetwork(body, layers.linear(1200, num_classes))


SIGN_ARCHITECTURES = {"lenet": sign_lenet, "vgg": sign_vgg, "mlp": sign_mlp}


def build_sign_network(arch: str, first: LayerFamily, layers: LayerFamily, in_channels: int,
                       num_classes: int, image_size: int, dropout: float, propagation: str,
                       temperature: float) -> SignNetwork:
    """The sign network ``arch`` whose layers draw their weights as the LR-net families
    ``first`` (first layer) and ``layers`` do; raises ``ConfigError`` for what it cannot build."""
    if arch not in SIGN_ARCHITECTURES:
        raise ConfigError(f"arch={arch!r} has no sign-activation version: with activation=sign "
                          f"choose one of {sorted(SIGN_ARCHITECTURES)}.")
    if not (isinstance(first, LRLayers) and isinstance(layers, LRLayers)):
        raise ConfigError(
            "activation=sign trains weight distributions by probabilistic forward propagation, "
            "so every layer must be an LR-net layer: use mode=ternary or mode=binary (optionally "
            "with weights=...) and mode.first_layer=discrete (a real-valued layer followed by a "
            "sign gets no gradient).")
    if propagation not in PROPAGATIONS:
        raise ConfigError(f"activation.propagation={propagation!r} is not allowed: choose one of "
                          f"{list(PROPAGATIONS)}.")
    if not temperature > 0:
        raise ConfigError(f"activation.temperature={temperature!r} is not allowed: use a "
                          "positive temperature.")
    sign = partial(Sign, propagation, temperature)
    return SIGN_ARCHITECTURES[arch](MomentLayers.like(first), MomentLayers.like(layers), sign,
                                    in_channels, num_classes, image_size, dropout)
