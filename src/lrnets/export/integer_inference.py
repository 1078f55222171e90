"""Running an exported discrete network in plain NumPy, with integer weights: no torch.

An export (``lrnets-export``) describes its network in ``manifest.json["graph"]``, a list of
operations applied in order to an N x C x H x W float32 batch. This module owns that
description: ``describe`` writes it from the inference network (``lrnets.export.runner``) and
``IntegerNetwork`` runs it. Tensors are named as in the manifest's ``tensors``:

    {"op": "conv", "tensor": T, "discrete": D, "scaled": A, "stride": S, "padding": P}
        D: weights T.codes / T.values (a discrete layer); else T.weight (float32, no bias)
        A: the output times T.scale per channel (BWN and TWN's discrete layers)
    {"op": "linear", "tensor": T, "discrete": D, "scaled": A, "bias": B}   B: T.bias or null
    {"op": "scale_shift", "tensor": T}       x * T.scale + T.shift per channel (a folded BN)
    {"op": "threshold", "tensor": T}         +1 where T.direction * (x - T.threshold) >= 0,
                                             else -1 (batch norm and sign folded, Roth et al.)
    {"op": "relu"}   {"op": "flatten"}   {"op": "global_avg_pool"}
    {"op": "max_pool", "kernel": K, "stride": S, "padding": P}
    {"op": "residual", "body": [ops], "shortcut": [ops]}   relu(body(x) + shortcut(x))
    {"op": "affine", "scale": s, "bias": B}  x * s + B (the sign networks' softmax layer)

A discrete layer's weights are the value set's integer levels: the values times the smallest
k in 1..64 that makes them all integers ({-1, 0, 1} for ternary, {-3, -1, 1, 3} for the
quaternary grid {-1, -1/3, 1/3, 1}), stored as int8, so the layer computes signed sums of its
inputs (x + x + x for a level 3) and, where k > 1, one multiplication by 1 / k per output. The
scaled straight-through baselines (BWN, TWN) multiply each output channel's sums by its scale.
The sums run through float32 matrix products, which are exact integer arithmetic wherever the
inputs are integers (the +-1 activations of sign networks: every sum is far below 2**24), so a
sign network's hidden layers compute in integers and compare against thresholds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lrnets.export.bitpacking import unpack

MANIFEST, WEIGHTS = "manifest.json", "weights.bin"
Graph = list[dict]


def levels_of(values: list[float]) -> tuple[np.ndarray, float]:
    """The integer levels of a value set and the step they are counted in: values = levels *
    step. A value set on no lattice 1 / k (k <= 64) keeps its real values (step 1)."""
    values = np.asarray(values, dtype=np.float64)
    for k in range(1, 65):
        scaled = values * k
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6):
            return np.round(scaled).astype(np.int8), 1.0 / k
    return values.astype(np.float32), 1.0


def read_tensors(folder: Path | str) -> tuple[dict, dict[str, np.ndarray]]:
    """An export's manifest and its tensors by name: a discrete layer's ``codes`` (uint8,
    unpacked) and ``values``, every other tensor float32. Raises OSError (no such files),
    ValueError or KeyError (not an export)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    blob = (folder / WEIGHTS).read_bytes()
    tensors = {}
    for entry in manifest["tensors"]:
        data = blob[entry["offset"]:entry["offset"] + entry["nbytes"]]
        if entry["encoding"] == "packed":
            array = unpack(data, entry["bits"], int(np.prod(entry["shape"])))
        else:
            array = np.frombuffer(data, "<f4").copy()
        tensors[entry["name"]] = array.reshape(entry["shape"])
    return manifest, tensors


def read_graph(folder: Path | str) -> tuple[dict, dict[str, np.ndarray]]:
    """``read_tensors`` of an export whose manifest has its graph (ValueError if it has none)."""
    manifest, tensors = read_tensors(folder)
    if "graph" not in manifest:
        raise ValueError(f"{folder}: the export predates the graph in its manifest; write it "
                         f"again with lrnets-export")
    return manifest, tensors


def describe(model) -> Graph:
    """The graph of an inference network of ``lrnets.export.runner`` (``load_export``, ``fold``)."""
    from torch import nn

    from lrnets.export.runner import ExportedConv2d, ExportedLinear, ScaleShift
    from lrnets.models.architectures import BasicBlock
    from lrnets.models.sign import SignNetwork
    from lrnets.nn.sign_layers import ThresholdSign

    def ops(module: nn.Module, prefix: str) -> Graph:
        if isinstance(module, nn.Sequential):
            return [op for name, child in module.named_children()
                    for op in ops(child, f"{prefix}{name}.")]
        tensor = prefix[:-1]
        layer = {"tensor": tensor, "discrete": isinstance(module, (ExportedConv2d, ExportedLinear)),
                 "scaled": getattr(module, "scale", None) is not None}
        if isinstance(module, (ExportedConv2d, nn.Conv2d)):
            return [{"op": "conv", **layer, "stride": _single(module.stride),
                     "padding": _single(module.padding)}]
        if isinstance(module, (ExportedLinear, nn.Linear)):
            bias = getattr(module, "bias", None)
            return [{"op": "linear", **layer,
                     "bias": f"{tensor}.bias" if bias is not None else None}]
        if isinstance(module, ScaleShift):
            return [{"op": "scale_shift", "tensor": tensor}]
        if isinstance(module, ThresholdSign):
            return [{"op": "threshold", "tensor": tensor}]
        if isinstance(module, nn.MaxPool2d):
            return [{"op": "max_pool", "kernel": _single(module.kernel_size),
                     "stride": _single(module.stride), "padding": _single(module.padding)}]
        if isinstance(module, BasicBlock):
            body = [*ops(module.conv1, f"{prefix}conv1."), *ops(module.bn1, f"{prefix}bn1."),
                    {"op": "relu"}, *ops(module.conv2, f"{prefix}conv2."),
                    *ops(module.bn2, f"{prefix}bn2.")]
            return [{"op": "residual", "body": body,
                     "shortcut": ops(module.shortcut, f"{prefix}shortcut.")}]
        if isinstance(module, nn.ReLU):
            return [{"op": "relu"}]
        if isinstance(module, nn.Flatten):
            return [{"op": "flatten"}]
        if isinstance(module, nn.AdaptiveAvgPool2d) and _single(module.output_size) == 1:
            return [{"op": "global_avg_pool"}]
        if isinstance(module, (nn.Dropout, nn.Identity)):
            return []
        raise ValueError(f"{prefix}: {type(module).__name__} has no operation in the graph")

    graph = [*ops(model.body, "body."), *ops(model.head, "head.")]
    if isinstance(model, SignNetwork):
        graph.append({"op": "affine", "scale": model.scale, "bias": "bias"})
    return graph


def _single(value) -> int:
    """A square kernel's, stride's or padding's one number (PyTorch keeps some as pairs)."""
    return value[0] if isinstance(value, tuple) else value


class IntegerNetwork:
    """An export's network in NumPy: ``IntegerNetwork(folder).predict(images)``."""

    def __init__(self, folder: Path | str):
        self.manifest, self.tensors = read_graph(folder)
        self.levels: dict[str, np.ndarray] = {}  # discrete layer -> integer weights
        self.steps: dict[str, float] = {}

    def weights(self, op: dict) -> tuple[np.ndarray, float]:
        """A layer's weights as float32 for the matrix product, and its step (1 for float)."""
        name = op["tensor"]
        if not op["discrete"]:
            return self.tensors[f"{name}.weight"], 1.0
        if name not in self.levels:
            levels, step = levels_of(self.tensors[f"{name}.values"].tolist())
            self.levels[name] = levels[self.tensors[f"{name}.codes"]]
            self.steps[name] = step
        return self.levels[name].astype(np.float32), self.steps[name]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.manifest["graph"], np.asarray(x, dtype=np.float32))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(-1)

    def _run(self, graph: Graph, x: np.ndarray) -> np.ndarray:
        for op in graph:
            x = getattr(self, f"_{op['op']}")(op, x)
        return x

    def _conv(self, op: dict, x: np.ndarray) -> np.ndarray:
        weight, step = self.weights(op)
        out_channels, _, k, _ = weight.shape
        p, s = op["padding"], op["stride"]
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        n, c, h, w = windows.shape[:4]
        columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * k * k)
        out = self._scaled(op, columns @ weight.reshape(out_channels, -1).T, step)
        return out.reshape(n, h, w, out_channels).transpose(0, 3, 1, 2)

    def _linear(self, op: dict, x: np.ndarray) -> np.ndarray:
        weight, step = self.weights(op)
        out = self._scaled(op, x @ weight.T, step)
        return out + self.tensors[op["bias"]] if op["bias"] else out

    def _scaled(self, op: dict, sums: np.ndarray, step: float) -> np.ndarray:
        """A layer's output from its integer-weighted sums (output channels last): in steps of
        ``step``, times the layer's scale per channel where it has one."""
        if op.get("scaled"):
            return sums * (self.tensors[f"{op['tensor']}.scale"] * np.float32(step))
        return sums if step == 1.0 else sums * np.float32(step)

    def _scale_shift(self, op: dict, x: np.ndarray) -> np.ndarray:
        return x * _channels(self.tensors[f"{op['tensor']}.scale"], x) + _channels(
            self.tensors[f"{op['tensor']}.shift"], x)

    def _threshold(self, op: dict, x: np.ndarray) -> np.ndarray:
        threshold = _channels(self.tensors[f"{op['tensor']}.threshold"], x)
        direction = _channels(self.tensors[f"{op['tensor']}.direction"], x)
        return np.where(direction * (x - threshold) >= 0, 1.0, -1.0).astype(np.float32)

    def _relu(self, op: dict, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)

    def _flatten(self, op: dict, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)

    def _global_avg_pool(self, op: dict, x: np.ndarray) -> np.ndarray:
        return x.mean(axis=(2, 3), keepdims=True)

    def _max_pool(self, op: dict, x: np.ndarray) -> np.ndarray:
        k, s, p = op["kernel"], op["stride"], op["padding"]
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
        return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(4, 5))

    def _residual(self, op: dict, x: np.ndarray) -> np.ndarray:
        return np.maximum(self._run(op["body"], x) + self._run(op["shortcut"], x), 0)

    def _affine(self, op: dict, x: np.ndarray) -> np.ndarray:
        return x * np.float32(op["scale"]) + self.tensors[op["bias"]]


def _channels(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A per-channel vector shaped to broadcast over ``x`` (channels in dimension 1)."""
    return values.reshape((1, -1) + (1,) * (x.ndim - 2))
