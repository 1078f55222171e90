"""Running an exported discrete network (``lrnets-export``) in plain PyTorch, and ``lrnets-eval``.

The network is the run's architecture from ``lrnets.models.architectures`` built from ordinary modules:
every discrete layer holds its weights as indices into the value set (``codes``, uint8) and the
values, and convolves with ``values[codes]``, weights in {-1, 0, 1} for a ternary net (times one
scale per output channel for the straight-through baselines BWN and TWN); every batch
norm is folded into one scale and shift per channel (``ScaleShift``), or, followed by a sign
(Roth et al.'s sign networks), into one threshold per channel (``ThresholdSign``); the last
layer, and a full-precision first layer, keep their float32 weights.

``lrnets-eval EXPORT`` runs it on the test split of the run's data set and checks that its
predictions are the ones the run's chosen network made (sec. 4.4), example by example; with
``--onnx`` it runs ``network.onnx`` with onnxruntime too, with ``--numpy`` the torch-free
integer runner (``lrnets.export.integer_inference``), with ``--qonnx`` ``network.qonnx.onnx`` in qonnx's
executor (``lrnets.export.qonnx_export``), and compares them with PyTorch.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from lrnets.data import build_datamodule
from lrnets.errors import ConfigError, reason
from lrnets.export.integer_inference import MANIFEST, WEIGHTS, read_tensors
from lrnets.models.architectures import network
from lrnets.nn.layers import FullPrecisionLayers
from lrnets.nn.sign_layers import fold_thresholds
from lrnets.training.evaluation import predictions

ONNX, QONNX = "network.onnx", "network.qonnx.onnx"


class _ExportedWeights(nn.Module):
    """A weight tensor stored as ``codes`` (uint8 indices) into ``values`` and, where ``scaled``
    (the straight-through baselines BWN and TWN), times one ``scale`` per output channel."""

    def __init__(self, shape: tuple[int, ...], num_values: int, scaled: bool):
        super().__init__()
        self.register_buffer("codes", torch.zeros(shape, dtype=torch.uint8))
        self.register_buffer("values", torch.zeros(num_values))
        self.register_buffer("scale", torch.ones(shape[0]) if scaled else None)

    def weight(self) -> Tensor:
        return scaled_weight(self.values[self.codes.long()], self.scale)


def scaled_weight(weight: Tensor, scale: Tensor | None) -> Tensor:
    """``scale[c] * weight`` over output channels c (dimension 0); ``weight`` without a scale."""
    return weight if scale is None else scale.view(-1, *[1] * (weight.dim() - 1)) * weight


class ExportedConv2d(_ExportedWeights):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, num_values: int, scaled: bool = False):
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), num_values,
                         scaled)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight(), None, self.stride, self.padding)


class ExportedLinear(_ExportedWeights):
    def __init__(self, in_features: int, out_features: int, num_values: int,
                 scaled: bool = False):
        super().__init__((out_features, in_features), num_values, scaled)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight())


class ExportedLayers:
    """The layer family (``lrnets.models.architectures.LayerFamily``) of exported discrete layers."""

    fixed = True  # their weights are fixed values: no training method, no moments

    def __init__(self, num_values: int, scaled: bool = False):
        self.num_values, self.scaled = num_values, scaled

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return ExportedConv2d(in_channels, out_channels, kernel_size, stride, padding,
                              self.num_values, self.scaled)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return ExportedLinear(in_features, out_features, self.num_values, self.scaled)


class ScaleShift(nn.Module):
    """A batch norm folded into ``scale * x + shift`` per channel (dimension 1).

    It is evaluated by PyTorch's batch-norm kernel with mean 0, variance 1 and eps 0, which
    computes exactly that with the arithmetic the folded batch norm used, so on the CPU the
    outputs equal those of the batch norm bit for bit.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(num_features))
        self.register_buffer("shift", torch.zeros(num_features))
        self.register_buffer("zero", torch.zeros(num_features), persistent=False)
        self.register_buffer("one", torch.ones(num_features), persistent=False)

    @classmethod
    @torch.no_grad()
    def fold(cls, bn: nn.modules.batchnorm._BatchNorm) -> ScaleShift:
        """scale = gamma / sqrt(var + eps), shift = beta - mean * scale (one rounding, as the
        kernel's fused multiply-add)."""
        folded = cls(bn.num_features)
        scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
        folded.scale.copy_(scale)
        folded.shift.copy_(bn.bias.double() - bn.running_mean.double() * scale.double())
        return folded

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.zero, self.one, self.scale, self.shift, False, 0.0, 0.0)


def fold_batch_norms(model: nn.Module) -> None:
    """Replace every batch norm of ``model`` by its ``ScaleShift``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, ScaleShift.fold(child))


def network_for(architecture: dict) -> nn.Module:
    """The architecture an export's manifest describes, with its batch norms still in place:
    its ``builder`` over the blocks of its activation's ``blocks`` (for manifests of earlier
    versions, which name neither, those of its ``arch`` and ``activation``), made of exported
    layers."""
    layers = ExportedLayers(len(architecture["values"]), architecture.get("scaled", False))
    first = FullPrecisionLayers() if architecture["first_layer"] == "full_precision" else layers
    arch = {"name": architecture["arch"], "builder": architecture.get("builder")}
    activation = {"name": architecture.get("activation", "relu"),
                  "blocks": architecture.get("blocks")}
    return network(arch, activation, first, layers, architecture["in_channels"],
                   architecture["num_classes"], architecture["image_size"], dropout=0.0)


def fold(model: nn.Module) -> nn.Module:
    """``model`` in its inference form, in eval mode: each batch norm followed by a sign folded
    into one threshold per channel (``fold_thresholds``), every other batch norm into a scale
    and a shift (``fold_batch_norms``)."""
    model = fold_thresholds(model)
    fold_batch_norms(model)
    return model


def predictions_digest(classes: Tensor) -> str:
    """SHA-256 of predicted classes (int64, little-endian), to compare them without the data."""
    return hashlib.sha256(classes.to(torch.int64).numpy().astype("<i8").tobytes()).hexdigest()


def load_export(folder: Path) -> tuple[nn.Module, dict]:
    """The network of an export folder (in eval mode) and its manifest."""
    folder = Path(folder)
    try:
        manifest, tensors = read_tensors(folder)
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{folder} is not an export written by lrnets-export "
                          f"({reason(err)}).") from None
    except (KeyError, TypeError, ValueError) as err:  # a damaged or foreign export
        raise _damaged(folder, err) from None
    try:
        model = fold(network_for(manifest["architecture"]))
        model.load_state_dict({name: torch.from_numpy(array) for name, array in tensors.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise _damaged(folder, err) from None
    return model.eval(), manifest


def _damaged(folder: Path, err: Exception) -> ConfigError:
    return ConfigError(f"{folder} holds a damaged or incomplete export: its {MANIFEST} and "
                       f"{WEIGHTS} do not make a network ({reason(err)[:300]}). Write it again "
                       f"with lrnets-export RUN {folder}.")


@dataclass
class Check:
    """One line of ``lrnets-eval``'s report and whether it passed."""

    text: str
    ok: bool


def evaluate_export(folder: Path, data_root: str | None, batch_size: int, device: str,
                    with_onnx: bool, with_numpy: bool = False,
                    with_qonnx: bool = False) -> list[Check]:
    """Score the export on its test split; compare with the run's predictions (and with
    onnxruntime's, NumPy's, qonnx's)."""
    model, manifest = load_export(folder)
    model.to(device)
    data = {**manifest["data"], **({"root": data_root} if data_root else {})}
    dm = build_datamodule(OmegaConf.create(data), batch_size=batch_size, seed=0)
    loader = dm.test_dataloader()
    classes = predictions(model, loader, dm.batch_transform)
    labels = torch.cat([y for _, y in loader])
    run = manifest["test"]
    checks = [Check(f"{manifest['mode']} {manifest['architecture']['arch']} "
                    f"({manifest['chosen']}) on the {manifest['dataset']} test split: "
                    f"{(classes == labels).sum()} of {len(labels)} correct, error "
                    f"{100 * (classes != labels).float().mean():.2f}% (the run: "
                    f"{100 * (1 - run['accuracy']):.2f}%)", True)]
    same = predictions_digest(classes) == run["predictions_sha256"]
    checks.append(Check(f"predictions {'identical to' if same else 'DIFFERENT from'} those of the "
                        f"run's chosen network (SHA-256 of {len(classes)} classes)", same))
    if with_onnx:
        checks.append(_compare_onnx(folder / ONNX, model, loader, dm.batch_transform, device))
    if with_numpy:
        checks.append(_compare_numpy(folder, classes, loader, dm.batch_transform))
    if with_qonnx:
        checks.append(_compare_qonnx(folder / QONNX, classes, loader, dm.batch_transform))
    return checks


def _compare_numpy(folder: Path, expected: Tensor, loader, transform: nn.Module) -> Check:
    """The integer runner's predictions on the test split against PyTorch's (``expected``)."""
    from lrnets.export.integer_inference import IntegerNetwork

    try:
        network = IntegerNetwork(folder)
    except ValueError as err:
        raise ConfigError(str(err) + ".") from None
    return _agreement("NumPy integer inference (lrnets.export.integer_inference)", network.logits,
                      expected, loader, transform)


def _compare_qonnx(path: Path, expected: Tensor, loader, transform: nn.Module) -> Check:
    """qonnx's executor's predictions on the test split against PyTorch's (``expected``)."""
    from lrnets.export.qonnx_export import QonnxRunner, qonnx_missing

    try:
        runner = QonnxRunner(path)
    except ImportError as err:
        raise qonnx_missing(err, "") from None
    except Exception as err:  # missing, damaged or foreign: onnx's and qonnx's own exceptions
        raise ConfigError(f"{path} cannot be read as QONNX ({reason(err)[:300]}); write it "
                          f"again with lrnets-export RUN {path.parent} --qonnx.") from None
    return _agreement(f"QONNX ({path.name}, qonnx's executor)", runner.logits, expected, loader,
                      transform)


def _agreement(runner: str, logits, expected: Tensor, loader, transform: nn.Module) -> Check:
    """How many of the test split's predictions of a NumPy ``logits`` function are PyTorch's."""
    classes = np.concatenate([logits(transform(x, train=False).numpy()).argmax(-1)
                              for x, _ in loader])
    same = int((torch.from_numpy(classes) == expected).sum())
    return Check(f"{runner}: {same} of {len(expected)} predictions as PyTorch's",
                 same == len(expected))


def _compare_onnx(path: Path, model: nn.Module, loader, transform: nn.Module, device: str) -> Check:
    import onnxruntime  # the `export` extra

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # missing, damaged or foreign: onnxruntime's own exception types
        raise ConfigError(f"{path} cannot be run by onnxruntime ({reason(err)[:300]}); write it "
                          f"again with lrnets-export RUN {path.parent} --onnx.") from None
    differing, count, difference, scale = 0, 0, 0.0, 0.0
    with torch.no_grad():
        for x, _ in loader:
            inputs = transform(x.to(device), train=False)
            expected = model(inputs).cpu()
            logits = torch.from_numpy(session.run(None, {"input": inputs.cpu().numpy()})[0])
            differing += int((logits.argmax(-1) != expected.argmax(-1)).sum())
            count += len(x)
            difference = max(difference, float((logits - expected).abs().max()))
            scale = max(scale, float(expected.abs().max()))
    return Check(f"onnxruntime ({path.name}): {count - differing} of {count} predictions as "
                 f"PyTorch's; logits differ by at most {difference / scale:.1e} of the largest",
                 differing == 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lrnets-eval",
        description="Run an export of lrnets-export on the test split of its data set and check "
                    "that it makes the predictions of the run's chosen network.")
    parser.add_argument("export", type=Path, help="the folder lrnets-export wrote")
    parser.add_argument("--data-root", help="the data folder (default: the run's dataset.root, "
                        "else $LRNETS_DATA, else ./data)")
    parser.add_argument("--onnx", action="store_true",
                        help="also run network.onnx with onnxruntime and compare")
    parser.add_argument("--numpy", action="store_true",
                        help="also run the network in NumPy with integer weights "
                             "(lrnets.export.integer_inference) and compare")
    parser.add_argument("--qonnx", action="store_true",
                        help=f"also run {QONNX} with qonnx's executor and compare")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.exit(2, f"lrnets-eval: error: --batch-size {args.batch_size} is not allowed: use "
                       f"a batch size >= 1.\n")
    try:
        checks = evaluate_export(args.export, args.data_root, args.batch_size, args.device,
                                 args.onnx, args.numpy, args.qonnx)
    except ConfigError as err:
        print(f"lrnets-eval: error: {err}", file=sys.stderr)
        sys.exit(2)
    for check in checks:
        print(check.text)
    sys.exit(0 if all(check.ok for check in checks) else 1)
