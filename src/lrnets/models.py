"""The paper's architectures (sec. 5), built from a layer family so one definition serves
full-precision, LR-net and later weight schemes alike.

Every network is ``Network(body, head)``: ``body`` holds the layers whose weights are
discretised (batch norm after each of them), ``head`` is the last, always full-precision,
softmax layer (freshly Xavier-initialised, the only layer with weight decay in discrete runs).
``first`` builds the first layer, so it can stay full precision (binary ResNet-18).
"""
from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn


class LayerFamily(Protocol):
    discrete: bool

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module: ...

    def linear(self, in_features: int, out_features: int) -> nn.Module: ...


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


def _conv_bn_relu(layers: LayerFamily, cin: int, cout: int, k: int, stride: int = 1,
                  padding: int = 0) -> list[nn.Module]:
    return [layers.conv(cin, cout, k, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _fc_bn_relu_dropout(layers: LayerFamily, fin: int, fout: int, dropout: float) -> list[nn.Module]:
    return [layers.linear(fin, fout), nn.BatchNorm1d(fout), nn.ReLU(inplace=True), nn.Dropout(dropout)]


def lenet_side(image_size: int) -> int:
    """Side of lenet's last feature map: its 5x5 convolutions keep the size (the authors'
    ``padding='SAME'``), each 2x2 max pool halves it (28 -> 14 -> 7 on MNIST)."""
    return image_size // 2 // 2


def lenet(first: LayerFamily, layers: LayerFamily, in_channels: int, num_classes: int,
          image_size: int, dropout: float) -> Network:
    """32C5 - MP2 - 64C5 - MP2 - 512FC - softmax (eq. 9) as the authors' MNIST code builds it:
    'same' convolutions, so the 512-unit layer sees 64 x 7 x 7 = 3136 inputs on MNIST."""
    side = lenet_side(image_size)
    body = nn.Sequential(
        *_conv_bn_relu(first, in_channels, 32, 5, padding=2), nn.MaxPool2d(2),
        *_conv_bn_relu(layers, 32, 64, 5, padding=2), nn.MaxPool2d(2),
        nn.Flatten(),
        *_fc_bn_relu_dropout(layers, 64 * side * side, 512, dropout),
    )
    return Network(body, nn.Linear(512, num_classes))


def vgg(first: LayerFamily, layers: LayerFamily, in_channels: int, num_classes: int,
        image_size: int, dropout: float) -> Network:
    """(2x128C3) - MP2 - (2x256C3) - MP2 - (2x512C3) - MP2 - 1024FC - softmax (eq. 10)."""
    blocks: list[nn.Module] = []
    cin = in_channels
    for i, width in enumerate((128, 128, 256, 256, 512, 512)):
        blocks += _conv_bn_relu(first if i == 0 else layers, cin, width, 3, padding=1)
        if i % 2 == 1:
            blocks.append(nn.MaxPool2d(2))
        cin = width
    side = image_size // 8
    body = nn.Sequential(*blocks, nn.Flatten(),
                         *_fc_bn_relu_dropout(layers, 512 * side * side, 1024, dropout))
    return Network(body, nn.Linear(1024, num_classes))


def mlp(first: LayerFamily, layers: LayerFamily, in_channels: int, num_classes: int,
        image_size: int, dropout: float) -> Network:
    """Permutation-invariant 784-1200-1200-10 MLP (Roth et al. 2019)."""
    fin = in_channels * image_size * image_size
    body = nn.Sequential(
        nn.Flatten(),
        *_fc_bn_relu_dropout(first, fin, 1200, dropout),
        *_fc_bn_relu_dropout(layers, 1200, 1200, dropout),
    )
    return Network(body, nn.Linear(1200, num_classes))


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


def resnet18(first: LayerFamily, layers: LayerFamily, in_channels: int, num_classes: int,
             image_size: int, dropout: float) -> Network:
    """ResNet-18 (He et al. 2016) as used for ImageNet in sec. 5.3; no dropout is used there,
    so ``dropout`` adds one before the softmax layer only when it is positive."""
    stages: list[nn.Module] = [*_conv_bn_relu(first, in_channels, 64, 7, 2, 3),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, width in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        stages += [BasicBlock(layers, cin, width, stride), BasicBlock(layers, width, width, 1)]
        cin = width
    stages += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        stages.append(nn.Dropout(dropout))
    return Network(nn.Sequential(*stages), nn.Linear(512, num_classes))


def configure_batch_norm(model: nn.Module, momentum: float, eps: float) -> None:
    """Give every batch norm of ``model`` the running-average ``momentum`` (PyTorch's sense:
    the weight of the new batch; TensorFlow's ``decay`` is 1 - momentum) and ``eps``."""
    for bn in model.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.momentum, bn.eps = momentum, eps


ARCHITECTURES = {"lenet": lenet, "vgg": vgg, "mlp": mlp, "resnet18": resnet18}
