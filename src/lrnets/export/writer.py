"""Exporting a run's chosen discrete network (``checkpoints/discrete.pt``) for inference.

``lrnets-export CHECKPOINT OUT`` (CHECKPOINT: a run folder or its ``discrete.pt``) writes
the folder OUT:

- ``weights.bin``: the tensors back to back. The discrete layers' weights are packed at the bits
  their value set needs (``lrnets.export.bitpacking``: 1 bit for binary, 2 for ternary); everything
  else is float32, little-endian: each batch norm folded into a scale and a shift per channel
  (in sign networks, batch norm and sign into one threshold per channel), the last layer and,
  where the run kept it so, the first layer.
- ``manifest.json``: the architecture, the value set, each tensor's name, shape, encoding and
  place in ``weights.bin``, the network as a list of operations (``graph``, owned by
  ``lrnets.export.integer_inference``, which runs it in NumPy), the run's chosen network and its test
  accuracy, and a digest of its test predictions (``lrnets-eval`` compares against it).
- ``network.onnx`` with ``--onnx``: the same network as an ONNX graph, weights as uint8 indices.
- ``network.qonnx.onnx`` with ``--qonnx``: the network in QONNX, weights through QONNX's
  quantizers, sign networks' thresholds as MultiThreshold (``lrnets.export.qonnx_export``).

It prints the sizes and the ratio to the same network in float32. ``lrnets.export.runner`` loads it.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from lrnets.errors import ConfigError
from lrnets.export.bitpacking import pack
from lrnets.export.integer_inference import MANIFEST, WEIGHTS, describe
from lrnets.export.runner import (ONNX, QONNX, ExportedConv2d, ExportedLinear, fold, load_export,
                              network_for, predictions_digest, scaled_weight)
from lrnets.nn.distributions import bits_for
from lrnets.training.discrete_checkpoint import read_discrete_network
from lrnets.training.evaluation import batch_norms

def exported_network(saved: dict) -> tuple[nn.Module, dict]:
    """The inference network (``lrnets.export.runner``) holding the weights of ``discrete.pt``, and
    its architecture entry for the manifest."""
    meta = saved["meta"]
    values = next(iter(saved["values"].values()))
    architecture = {key: meta[key] for key in ("arch", "first_layer", "in_channels",
                                                "num_classes", "image_size")}
    architecture["activation"] = meta.get("activation", "relu")
    for code in ("builder", "blocks"):  # discrete.pt files of earlier versions name them only
        if meta.get(code) is not None:  # by arch and activation
            architecture[code] = meta[code]
    architecture["values"] = values
    architecture["scaled"] = "scales" in saved  # BWN, TWN: a scale per output channel
    state = dict(saved["state_dict"])
    for name, indices in saved["weights"].items():
        state[f"{name}.codes"] = indices.to(torch.uint8)
        state[f"{name}.values"] = torch.tensor(saved["values"][name])
        if architecture["scaled"]:
            state[f"{name}.scale"] = saved["scales"][name]
    model = network_for(architecture)
    for bn in batch_norms(model):  # discrete.pt of runs before bn_eps was recorded: PyTorch's
        bn.eps = meta.get("bn_eps", 1e-5)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"the discrete network does not fit the {meta['arch']} architecture: "
                          f"{' '.join(str(err).split())}") from None
    return fold(model), architecture


def _tensor_bytes(name: str, tensor: Tensor, bits: int) -> tuple[dict, bytes]:
    if name.endswith(".codes"):
        return {"encoding": "packed", "bits": bits}, pack(tensor.numpy(), bits)
    return {"encoding": "float32"}, tensor.float().numpy().astype("<f4").tobytes()


def export(source: Path, out: Path, with_onnx: bool = False, with_qonnx: bool = False) -> dict:
    """Write the export of ``source`` (a run folder or ``discrete.pt``) into ``out``; return its
    manifest, with the sizes under ``"size"``."""
    saved = read_discrete_network(source)
    meta = saved["meta"]
    model, architecture = exported_network(saved)
    bits = bits_for(len(architecture["values"]))
    out.mkdir(parents=True, exist_ok=True)
    entries, chunks, offset = [], [], 0
    size = {"discrete_weights": 0, "discrete_bytes": 0, "float_values": 0}
    for name, tensor in model.state_dict().items():
        entry, data = _tensor_bytes(name, tensor, bits)
        entries.append({"name": name, "shape": list(tensor.shape), **entry, "offset": offset,
                        "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
        if entry["encoding"] == "packed":
            size["discrete_weights"] += tensor.numel()
            size["discrete_bytes"] += len(data)
        else:
            size["float_values"] += tensor.numel()
    (out / WEIGHTS).write_bytes(b"".join(chunks))
    manifest = {
        "format": "lrnets-export 1",
        "dataset": meta["dataset"], "mode": meta["mode"], "seed": meta["seed"],
        "architecture": architecture, "data": meta["data"], "chosen": meta["chosen"]["name"],
        "chosen_epoch": meta["chosen"].get("epoch"),  # None in discrete.pt of earlier versions
        "input": "images transformed as for training (lrnets.data: batch_transform, eval mode), "
                 "float32, NCHW",
        "test": {"accuracy": meta["chosen"]["test_acc"],
                 "predictions_sha256": predictions_digest(meta["test_predictions"])},
        "tensors": entries,
        "graph": describe(model),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if with_onnx:
        write_onnx(load_export(out)[0], architecture, out / ONNX)
    if with_qonnx:
        _write_qonnx(out)
    size["export_bytes"] = sum(f.stat().st_size for f in (out / WEIGHTS, out / MANIFEST))
    size["float32_bytes"] = 4 * (size["discrete_weights"] + size["float_values"])
    return {**manifest, "size": size}


def _write_qonnx(out: Path) -> None:
    from lrnets.export.qonnx_export import qonnx_missing, write_qonnx

    try:
        write_qonnx(out, out / QONNX)
    except ImportError as err:
        raise qonnx_missing(err, f" {WEIGHTS} and {MANIFEST} are written in {out}.") from None
    except ValueError as err:
        raise ConfigError(f"--qonnx: {err}. {WEIGHTS} and {MANIFEST} are written in {out}.") \
            from None


class PackedCodes(nn.Module):
    """A discrete layer's weights in the ONNX graph: its codes packed as in ``weights.bin``
    (``bitpacking.pack``: ``8 // bits`` to a byte, the first in the lowest bits), unpacked in
    the graph by integer division and remainder, then looked up in the values."""

    def __init__(self, codes: Tensor, values: Tensor, bits: int, scale: Tensor | None):
        super().__init__()
        packed = torch.frombuffer(bytearray(pack(codes.numpy(), bits)), dtype=torch.uint8)
        self.register_buffer("packed", packed)
        self.register_buffer("places", (2 ** bits) ** torch.arange(8 // bits, dtype=torch.int32))
        self.register_buffer("values", values.clone())
        self.register_buffer("scale", None if scale is None else scale.clone())
        self.shape, self.count, self.base = tuple(codes.shape), codes.numel(), 2 ** bits

    def forward(self) -> Tensor:
        digits = torch.div(self.packed.unsqueeze(-1).to(torch.int32), self.places,
                           rounding_mode="floor")
        codes = torch.remainder(digits, self.base)
        return scaled_weight(self.values[codes.flatten()[:self.count].long()].view(self.shape),
                             self.scale)


def _packed_for_onnx(model: nn.Module, bits: int) -> nn.Module:
    """A copy of ``model`` whose discrete layers take their weights from ``PackedCodes`` (where
    ``bits`` divides 8; 3-bit grids keep one code per byte)."""
    model = copy.deepcopy(model)
    if 8 % bits:
        return model
    for layer in model.modules():
        if isinstance(layer, (ExportedConv2d, ExportedLinear)):
            layer.add_module("packed", PackedCodes(layer.codes, layer.values, bits, layer.scale))
            del layer._buffers["codes"], layer._buffers["values"], layer._buffers["scale"]
            object.__setattr__(layer, "weight", layer.packed)  # before the class's weight()
    return model


def write_onnx(model: nn.Module, architecture: dict, path: Path) -> None:
    """``model`` as an ONNX graph with a dynamic batch size: input ``input``, output ``logits``;
    the discrete weights packed as in ``weights.bin``."""
    example = torch.zeros(2, architecture["in_channels"], architecture["image_size"],
                          architecture["image_size"])
    model = _packed_for_onnx(model, bits_for(len(architecture["values"])))
    torch.onnx.export(model, (example,), str(path), input_names=["input"], verbose=False,
                      output_names=["logits"], dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))


def size_report(manifest: dict, out: Path) -> str:
    size = manifest["size"]
    bits = next(e["bits"] for e in manifest["tensors"] if e["encoding"] == "packed")
    discrete_fp32 = 4 * size["discrete_weights"]
    return (
        f"Exported the {manifest['mode']} {manifest['architecture']['arch']} of the "
        f"{manifest['dataset']} run ({manifest['chosen']}, test error "
        f"{100 * (1 - manifest['test']['accuracy']):.2f}%) to {out}\n"
        f"  discrete layers: {size['discrete_weights']:,} weights at {bits} bit(s): "
        f"{size['discrete_bytes']:,} B, {discrete_fp32 / size['discrete_bytes']:.1f}x smaller "
        f"than float32 ({discrete_fp32:,} B)\n"
        f"  float32 values (folded batch norms, last layer, any full-precision layer): "
        f"{size['float_values']:,} ({4 * size['float_values']:,} B)\n"
        f"  export ({WEIGHTS} + {MANIFEST}): {size['export_bytes']:,} B, "
        f"{size['float32_bytes'] / size['export_bytes']:.1f}x smaller than the float32 network "
        f"({size['float32_bytes']:,} B)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lrnets-export",
        description="Write a run's chosen discrete network with packed weights, for inference "
                    "(lrnets.export.runner, lrnets-eval).")
    parser.add_argument("checkpoint", type=Path,
                        help="a discrete run's folder (LR-net or straight-through baseline) or its "
                             "checkpoints/discrete.pt")
    parser.add_argument("out", type=Path, help="the folder to write")
    parser.add_argument("--onnx", action="store_true",
                        help=f"also write {ONNX} (needs the onnx packages: "
                             f"pip install lrnets[export])")
    parser.add_argument("--qonnx", action="store_true",
                        help=f"also write {QONNX}, the network in QONNX (needs the qonnx "
                             f"package: pip install lrnets[qonnx])")
    args = parser.parse_args(argv)
    try:
        manifest = export(args.checkpoint, args.out, args.onnx, args.qonnx)
    except ConfigError as err:
        print(f"lrnets-export: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(size_report(manifest, args.out))
    for wanted, name in ((args.onnx, ONNX), (args.qonnx, QONNX)):
        if wanted:
            print(f"  {name}: {(args.out / name).stat().st_size:,} B")
