"""The paper's architectures (sec. 5), each written once over its building blocks.

An architecture (``lenet``, ``vgg``, ``mlp``, ``resnet18``) says which blocks follow each other;
a ``Blocks`` object says what a block is. ``ReLUBlocks`` makes the paper's networks: conv ->
batch norm -> ReLU (-> 2x2 max pool), FC -> batch norm -> ReLU -> dropout, and a full-precision
softmax layer (``Network``). Its layer families decide the weights: full precision, LR-net
(``lrnets.nn.layers``), straight-through (``lrnets.nn.quantized_layers``), sampled
(``lrnets.nn.sampled_layers``) or the exported discrete layers (``lrnets.export.runner``); ``first``
builds the first layer, so it can stay full precision (binary ResNet-18). The sign-activation
networks of Roth et al. are the same architectures with ``lrnets.models.sign.SignBlocks``.
Every weight layer sits at the same position of ``body`` whatever the blocks, so a ReLU
network's state initialises any other (``lrnets.training.initialization``).

A config names the code it builds by dotted paths, not by names switched on: ``arch.builder``
the architecture's function, ``activation.blocks`` the function that makes its blocks
(``relu_blocks``, ``lrnets.models.sign.sign_blocks``); ``network`` puts them together. Adding
an architecture is its function, here or in any module: ``arch=custom arch.builder=<its dotted
path>`` trains it with no other file; ``conf/arch/<name>.yaml`` gives it a name of its own.
"""
from __future__ import annotations

from typing import Callable, Mapping, Protocol

from torch import Tensor, nn

from lrnets.config import code_of


class LayerFamily(Protocol):
    """Builds a network's weight layers: full precision, LR, straight-through, exported. A
    family whose layers hold fixed weights (exported networks) says so by ``fixed = True``."""

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module: ...

    def linear(self, in_features: int, out_features: int) -> nn.Module: ...


class Blocks(Protocol):
    """The building blocks an architecture is written in. ``first=True`` marks the network's
    first weight layer (built by the first-layer family)."""

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
             pool: bool = False, first: bool = False) -> list[nn.Module]: ...

    def fc(self, fin: int, fout: int, dropout: float, first: bool = False) -> list[nn.Module]: ...

    def flatten(self) -> nn.Module: ...

    def residual(self, cin: int, cout: int, stride: int) -> nn.Module: ...

    def network(self, body: nn.Module, features: int, num_classes: int) -> nn.Module: ...


class Network(nn.Module):
    """A body of (possibly discrete) layers followed by the full-precision softmax layer."""

    def __init__(self, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.body = body
        self.head = head
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class BasicBlock(nn.Module):
    """ResNet basic block; the 1x1 projection is a discrete layer too (sec. 5.3)."""

    def __init__(self, layers: LayerFamily, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = layers.conv(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = layers.conv(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(layers.conv(cin, cout, 1, stride, 0), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ReLUBlocks:
    """The paper's blocks: batch norm and ReLU after every weight layer, max pooling last."""

    def __init__(self, first: LayerFamily, layers: LayerFamily):
        self.first, self.layers = first, layers

    def _family(self, first: bool) -> LayerFamily:
        return self.first if first else self.layers

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
             pool: bool = False, first: bool = False) -> list[nn.Module]:
        pooling = [nn.MaxPool2d(2)] if pool else []
        return [self._family(first).conv(cin, cout, k, stride, padding), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True), *pooling]

    def fc(self, fin: int, fout: int, dropout: float, first: bool = False) -> list[nn.Module]:
        return [self._family(first).linear(fin, fout), nn.BatchNorm1d(fout), nn.ReLU(inplace=True),
                nn.Dropout(dropout)]

    def flatten(self) -> nn.Module:
        return nn.Flatten()

    def residual(self, cin: int, cout: int, stride: int) -> nn.Module:
        return BasicBlock(self.layers, cin, cout, stride)

    def network(self, body: nn.Module, features: int, num_classes: int) -> Network:
        return Network(body, nn.Linear(features, num_classes))


def lenet_side(image_size: int) -> int:
    """Side of lenet's last feature map: its 5x5 convolutions keep the size (the authors'
    ``padding='SAME'``), each 2x2 max pool halves it (28 -> 14 -> 7 on MNIST)."""
    return image_size // 2 // 2


def lenet(blocks: Blocks, in_channels: int, num_classes: int, image_size: int,
          dropout: float) -> nn.Module:
    """32C5 - MP2 - 64C5 - MP2 - 512FC - softmax (eq. 9) as the authors' MNIST code builds it:
    'same' convolutions, so the 512-unit layer sees 64 x 7 x 7 = 3136 inputs on MNIST."""
    side = lenet_side(image_size)
    body = nn.Sequential(
        *blocks.conv(in_channels, 32, 5, padding=2, pool=True, first=True),
        *blocks.conv(32, 64, 5, padding=2, pool=True),
        blocks.flatten(),
        *blocks.fc(64 * side * side, 512, dropout),
    )
    return blocks.network(body, 512, num_classes)


def vgg(blocks: Blocks, in_channels: int, num_classes: int, image_size: int,
        dropout: float) -> nn.Module:
    """(2x128C3) - MP2 - (2x256C3) - MP2 - (2x512C3) - MP2 - 1024FC - softmax (eq. 10)."""
    layers: list[nn.Module] = []
    cin = in_channels
    for i, width in enumerate((128, 128, 256, 256, 512, 512)):
        layers += blocks.conv(cin, width, 3, padding=1, pool=i % 2 == 1, first=i == 0)
        cin = width
    side = image_size // 8
    body = nn.Sequential(*layers, blocks.flatten(),
                         *blocks.fc(512 * side * side, 1024, dropout))
    return blocks.network(body, 1024, num_classes)


def mlp(blocks: Blocks, in_channels: int, num_classes: int, image_size: int,
        dropout: float) -> nn.Module:
    """Permutation-invariant 784-1200-1200-10 MLP (Roth et al. 2019)."""
    body = nn.Sequential(
        blocks.flatten(),
        *blocks.fc(in_channels * image_size * image_size, 1200, dropout, first=True),
        *blocks.fc(1200, 1200, dropout),
    )
    return blocks.network(body, 1200, num_classes)


def resnet18(blocks: Blocks, in_channels: int, num_classes: int, image_size: int,
             dropout: float) -> nn.Module:
    """ResNet-18 (He et al. 2016) as used for ImageNet in sec. 5.3; no dropout is used there,
    so ``dropout`` adds one before the softmax layer only when it is positive."""
    stages: list[nn.Module] = [*blocks.conv(in_channels, 64, 7, 2, 3, first=True),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, width in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        stages += [blocks.residual(cin, width, stride), blocks.residual(width, width, 1)]
        cin = width
    stages += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        stages.append(nn.Dropout(dropout))
    return blocks.network(nn.Sequential(*stages), 512, num_classes)


def configure_batch_norm(model: nn.Module, momentum: float, eps: float) -> None:
    """Give every batch norm of ``model`` the running-average ``momentum`` (PyTorch's sense:
    the weight of the new batch; TensorFlow's ``decay`` is 1 - momentum) and ``eps``."""
    for bn in model.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.momentum, bn.eps = momentum, eps


def relu_blocks(first: LayerFamily, layers: LayerFamily, activation: Mapping) -> ReLUBlocks:
    """``activation=relu``'s blocks. ``activation`` (the config's node) is every blocks
    function's third argument; ReLU has no options, so it is not read."""
    return ReLUBlocks(first, layers)


Architecture = Callable[[Blocks, int, int, int, float], nn.Module]

# The code of the choices that configs and discrete networks written before ``arch.builder``
# and ``activation.blocks`` existed named by their names only.
EARLIER_BUILDERS = {name: f"{__name__}.{name}" for name in ("lenet", "vgg", "mlp", "resnet18")}
EARLIER_BLOCKS = {"relu": f"{__name__}.relu_blocks", "sign": "lrnets.models.sign.sign_blocks"}


def network(arch: Mapping, activation: Mapping, first: LayerFamily, layers: LayerFamily,
            in_channels: int, num_classes: int, image_size: int, dropout: float) -> nn.Module:
    """The architecture ``arch`` (a config's node, or a discrete network's record of it) that
    ``arch.builder`` writes, made of the blocks ``activation.blocks`` makes from the layer
    families ``first`` (the first weight layer) and ``layers`` (every other one)."""
    blocks = code_of("activation", activation, "blocks", EARLIER_BLOCKS)(first, layers, activation)
    build: Architecture = code_of("arch", arch, "builder", EARLIER_BUILDERS)
    return build(blocks, in_channels, num_classes, image_size, dropout)
