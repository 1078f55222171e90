"""An export's network in QONNX, the low-bit ONNX dialect that FINN and hls4ml read.

``lrnets-export RUN OUT --qonnx`` writes ``network.qonnx.onnx`` from the export's graph
(``lrnets.export.integer_inference``): each discrete layer's weights pass through a QONNX weight
quantizer that states their value set, batch norms are folded (``Mul`` and ``Add`` per channel),
and a sign network's batch norm and sign are one ``MultiThreshold`` per channel (Roth et al.).

- Binary weights {-a, a}: ``BipolarQuant(w, a)``. BWN and TWN's scales are the quantizers'
  scales, one per output channel.
- Any other grid, levels * step with integer levels (ternary {-1, 0, 1}: step 1; the quaternary
  {-1, -1/3, 1/3, 1}: levels {-3, -1, 1, 3}, step 1/3): ``Quant(w, step, 0, bits)``, signed, narrow
  range [-(2^(bits-1) - 1), 2^(bits-1) - 1], with the fewest bits that hold the levels.
- sign(direction * (x - threshold)): ``MultiThreshold(direction * x, direction * threshold)`` with
  ``out_scale`` 2 and ``out_bias`` -1, so its one step gives -1 below and +1 at or above.

Activations of ReLU networks stay float32, as in the float graph. The input ``input`` has a
batch of one (QONNX tools work on fixed shapes; ``lrnets-eval --qonnx`` sets its own); the
output is ``logits``. Reading and writing need the ``qonnx`` package (``lrnets[qonnx]``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lrnets.errors import ConfigError, reason
from lrnets.export.integer_inference import Graph, levels_of, read_graph

QONNX_DOMAIN = "qonnx.custom_op.general"


def qonnx_missing(err: ImportError, more: str) -> ConfigError:
    """The one paragraph of ``--qonnx`` without the qonnx package (``more``: what was kept)."""
    return ConfigError(f"--qonnx needs the qonnx package ({reason(err)}): pip install "
                       f"'lrnets[qonnx]'.{more}")


class _Writer:
    """Nodes and initializers of the graph being written, with fresh tensor names."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.tensors, self.nodes, self.initializers, self.count = tensors, [], [], 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def constant(self, hint: str, array) -> str:
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(
            np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, domain: str = "", **attributes) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], domain=domain, **attributes))
        return out

    def weight(self, op: dict) -> str:
        """A layer's weight tensor: float32, or a discrete layer's values through its quantizer."""
        tensor = op["tensor"]
        if not op["discrete"]:
            return self.constant(f"{tensor}.weight", self.tensors[f"{tensor}.weight"])
        values = self.tensors[f"{tensor}.values"]
        levels, step = levels_of(values.tolist())
        if levels.dtype != np.int8:
            raise ValueError(f"{tensor}: the value set {values.tolist()} lies on no grid "
                             f"levels / k (k <= 64), which QONNX's Quant node needs")
        unit, scale = values[self.tensors[f"{tensor}.codes"]], np.float32(step)
        if op.get("scaled"):  # BWN, TWN: the quantizer's scale per output channel
            channels = self.tensors[f"{tensor}.scale"].reshape((-1,) + (1,) * (unit.ndim - 1))
            unit, scale = unit * channels, channels * scale
        weight = self.constant(f"{tensor}.weight", unit)
        if sorted(set(levels.tolist())) == [-1, 1]:
            return self.node("BipolarQuant", [weight, self.constant("scale", scale)],
                             f"{tensor}.binary", QONNX_DOMAIN)
        bits = int(np.abs(levels).max()).bit_length() + 1
        return self.node("Quant", [weight, self.constant("scale", scale),
                                   self.constant("zero_point", 0.0),
                                   self.constant("bits", bits)],
                         f"{tensor}.quantized", QONNX_DOMAIN, signed=1, narrow=1,
                         rounding_mode="ROUND")

    def channels(self, hint: str, values: np.ndarray, ndim: int) -> str:
        """A per-channel vector as a constant broadcasting over an ``ndim``-dimensional tensor."""
        return self.constant(hint, values.reshape((1, -1) + (1,) * (ndim - 2)))

    def run(self, graph: Graph, x: str, ndim: int) -> tuple[str, int]:
        for op in graph:
            x, ndim = getattr(self, f"_{op['op']}")(op, x, ndim)
        return x, ndim

    def _conv(self, op, x, ndim):
        p, s = op["padding"], op["stride"]
        return self.node("Conv", [x, self.weight(op)], op["tensor"], pads=[p, p, p, p],
                         strides=[s, s]), ndim

    def _linear(self, op, x, ndim):
        inputs = [x, self.weight(op)]
        if op["bias"]:
            inputs.append(self.constant(op["bias"], self.tensors[op["bias"]]))
        return self.node("Gemm", inputs, op["tensor"], transB=1), ndim

    def _scale_shift(self, op, x, ndim):
        t = op["tensor"]
        x = self.node("Mul", [x, self.channels(f"{t}.scale", self.tensors[f"{t}.scale"], ndim)],
                      f"{t}.scaled")
        return self.node("Add", [x, self.channels(f"{t}.shift", self.tensors[f"{t}.shift"],
                                                  ndim)], t), ndim

    def _threshold(self, op, x, ndim):
        t = op["tensor"]
        direction = self.tensors[f"{t}.direction"]
        if (direction < 0).any():
            x = self.node("Mul", [x, self.channels(f"{t}.direction", direction, ndim)],
                          f"{t}.directed")
        thresholds = (direction * self.tensors[f"{t}.threshold"]).reshape(-1, 1)
        return self.node("MultiThreshold", [x, self.constant(f"{t}.threshold", thresholds)], t,
                         QONNX_DOMAIN, out_scale=2.0, out_bias=-1.0,
                         data_layout="NCHW" if ndim == 4 else "NC"), ndim

    def _relu(self, op, x, ndim):
        return self.node("Relu", [x], "relu"), ndim

    def _flatten(self, op, x, ndim):
        return self.node("Flatten", [x], "flatten", axis=1), 2

    def _global_avg_pool(self, op, x, ndim):
        return self.node("GlobalAveragePool", [x], "global_avg_pool"), ndim

    def _max_pool(self, op, x, ndim):
        k, s, p = op["kernel"], op["stride"], op["padding"]
        return self.node("MaxPool", [x], "max_pool", kernel_shape=[k, k], strides=[s, s],
                         pads=[p, p, p, p]), ndim

    def _residual(self, op, x, ndim):
        body, _ = self.run(op["body"], x, ndim)
        shortcut, _ = self.run(op["shortcut"], x, ndim)
        return self.node("Relu", [self.node("Add", [body, shortcut], "residual")], "relu"), ndim

    def _affine(self, op, x, ndim):
        x = self.node("Mul", [x, self.constant("scale", op["scale"])], "scaled")
        return self.node("Add", [x, self.constant(op["bias"], self.tensors[op["bias"]])],
                         "affine"), ndim


def write_qonnx(folder: Path, path: Path) -> None:
    """The network of the export ``folder`` as QONNX at ``path``, its shapes inferred."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    manifest, tensors = read_graph(folder)
    arch = manifest["architecture"]
    writer = _Writer(tensors)
    logits, _ = writer.run(manifest["graph"], "input", 4)
    writer.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    graph = helper.make_graph(
        writer.nodes, f"lrnets {manifest['mode']} {arch['arch']} ({manifest['dataset']})",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       [1, arch["in_channels"], arch["image_size"],
                                        arch["image_size"]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, arch["num_classes"]])],
        writer.initializers)
    model = helper.make_model(graph, producer_name="lrnets", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)])
    ModelWrapper(model).transform(InferShapes()).save(str(path))


class QonnxRunner:
    """``network.qonnx.onnx`` run by qonnx's executor, on batches of any size."""

    def __init__(self, path: Path):
        from qonnx.core.modelwrapper import ModelWrapper

        self.model, self.batch = ModelWrapper(str(path)), 1

    def logits(self, x: np.ndarray) -> np.ndarray:
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes

        if len(x) != self.batch:  # qonnx executes fixed shapes: set the batch, infer again
            del self.model.graph.value_info[:]
            self.model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = len(x)
            self.model.set_tensor_shape("input", list(x.shape))
            self.model = self.model.transform(InferShapes())
            self.batch = len(x)
        return execute_onnx(self.model, {"input": np.asarray(x, np.float32)})["logits"]
