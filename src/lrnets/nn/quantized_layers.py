"""Layers of the straight-through baselines: a real latent weight, a quantised forward weight.

``QuantizedConv2d`` and ``QuantizedLinear`` are ``nn.Conv2d`` / ``nn.Linear`` (same constructor,
no bias by default: batch norm follows every discrete layer) whose forward pass uses
``quantizer(weight)`` (``lrnets.nn.quantizers``) in training and evaluation alike, so the trained
network is one deterministic discrete network. With ``clip`` set, the latent weight is clipped to
[-clip, clip] at initialisation and after every optimizer step (BinaryConnect, Courbariaux et al.
2015, Algorithm 1); ``LRNetModule`` calls ``after_optimizer_step`` for that.

``QuantizedLayers`` is the layer family a mode config instantiates (see ``conf/mode/bwn.yaml``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrnets.nn.quantizers import Quantizer


class QuantizedLayer(nn.Module):
    """Shared behaviour: the quantised weight, initialisation and the clip of the latent weight."""

    weight: nn.Parameter
    quantizer: Quantizer
    clip: float | None

    def quantized_weight(self) -> Tensor:
        return self.quantizer(self.weight)

    @torch.no_grad()
    def discrete_form(self) -> tuple[Tensor, Tensor | None]:
        """The forward weight as int8 indices into ``quantizer.levels`` and, for the scaled
        methods, its scale per output channel: weight = scale[c] * levels[codes] (BWN's alpha_c,
        TWN's alpha repeated), the same numbers as ``quantized_weight``."""
        weight = self.quantized_weight()
        scale = None
        if self.quantizer.multiplications != "none":
            scale = weight.abs().amax(dim=tuple(range(1, weight.dim())))
            scale = torch.where(scale > 0, scale, 1.0)  # a channel of zeros: any scale
            weight = weight / scale.view(-1, *[1] * (weight.dim() - 1))
        matches = weight.unsqueeze(-1) == torch.tensor(self.quantizer.levels, dtype=weight.dtype,
                                                       device=weight.device)
        assert matches.any(-1).all(), "a quantised weight off its levels"
        return matches.to(torch.int8).argmax(-1).to(torch.int8).cpu(), (
            None if scale is None else scale.cpu())

    @torch.no_grad()
    def init_from_weights(self, weight: Tensor) -> None:
        """Set the latent weight from a full-precision weight normalised by its standard
        deviation (as the LR-nets' eq. 6-8 take it, sec. 4.1), clipped when ``clip`` is set."""
        self.weight.copy_(weight)
        self.after_optimizer_step(0.0)

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """Clip the latent weight to [-clip, clip] (BinaryConnect); nothing when ``clip=None``."""
        if self.clip is not None:
            self.weight.clamp_(-self.clip, self.clip)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantizer={self.quantizer}, clip={self.clip}"


class QuantizedConv2d(QuantizedLayer, nn.Conv2d):
    """2-D convolution with a quantised weight; arguments as ``nn.Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = False,
                 padding_mode: str = "zeros", *, quantizer: Quantizer, clip: float | None = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode)
        self.quantizer, self.clip = quantizer, clip

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantizedLinear(QuantizedLayer, nn.Linear):
    """Fully connected layer with a quantised weight; arguments as ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *,
                 quantizer: Quantizer, clip: float | None = None):
        super().__init__(in_features, out_features, bias)
        self.quantizer, self.clip = quantizer, clip

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


class QuantizedLayers:
    """Builds straight-through layers that quantise with ``quantizer`` (clipped at ``clip``)."""

    def __init__(self, quantizer: Quantizer, clip: float | None = None):
        self.quantizer = quantizer
        self.clip = clip

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return QuantizedConv2d(in_channels, out_channels, kernel_size, stride, padding,
                               quantizer=self.quantizer, clip=self.clip)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return QuantizedLinear(in_features, out_features, quantizer=self.quantizer, clip=self.clip)


def quantized_layers(model: nn.Module) -> dict[str, QuantizedLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLayer)}


def weight_multiplications(model: nn.Module) -> str | None:
    """What the quantised layers need beside additions at inference ("none" or "one per output
    channel" for the scaled methods); None for a network without quantised layers."""
    layers = quantized_layers(model).values()
    if not layers:
        return None
    costs = {layer.quantizer.multiplications for layer in layers}
    return "none" if costs == {"none"} else "one per output channel"
