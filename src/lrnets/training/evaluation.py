"""Evaluating discrete networks drawn from the trained distributions (sec. 4.4).

The trained distributions are sampled ``num_samples`` times, plus the most probable
weights; each candidate is scored on the validation split held out from the training set, the
best one is kept and its test accuracy is reported. Optionally the batch-norm statistics are
re-estimated on each sampled network (the reference code keeps the statistics collected on
the stochastic pre-activations); both figures are reported then.

Candidates are set in place on the one model (no rebuilds), and every sample is drawn from a
generator seeded by (seed, index), so the same candidates come out on every process.

``ensemble_accuracy`` takes sec. 4.4 further: the softmax of N sampled networks averaged (the
candidates ``sample_0`` ... ``sample_<N-1>``), at the cost of running N networks.
"""
from __future__ import annotations

import statistics
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from lrnets.nn.layers import DiscreteLayer
from lrnets.run_folder import MOST_PROBABLE, score_key, selection_key

Reduce = Callable[[Tensor], Tensor]


def discrete_layers(model: nn.Module) -> dict[str, DiscreteLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, DiscreteLayer)}


def draw_weights(model: nn.Module, sample_seed: int | None) -> dict[str, Tensor]:
    """Discrete weights of every discrete layer: the most probable ones when ``sample_seed`` is
    None, else a sample."""
    layers = discrete_layers(model)
    if sample_seed is None:
        return {name: layer.distribution.most_probable() for name, layer in layers.items()}
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(sample_seed)
    return {name: layer.distribution.sample(generator) for name, layer in layers.items()}


@contextmanager
def fixed_weights(model: nn.Module, weights: dict[str, Tensor]) -> Iterator[None]:
    """Run ``model`` as an ordinary network with the given discrete weights."""
    layers = discrete_layers(model)
    for name, weight in weights.items():
        layers[name].fixed_weight = weight
    try:
        yield
    finally:
        for layer in layers.values():
            layer.fixed_weight = None


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def real_state(model: nn.Module, layers: dict[str, nn.Module] | None = None) -> dict[str, Tensor]:
    """Copies of every tensor of ``model``'s state dict outside its discrete layers (``layers``,
    by default ``discrete_layers``): batch-norm statistics and affine parameters, the softmax
    layer, a full-precision first layer; with the discrete weights, the whole of a discrete
    network."""
    layers = discrete_layers(model) if layers is None else layers
    return {key: value.detach().clone() for key, value in model.state_dict().items()
            if not any(key.startswith(f"{name}.") for name in layers)}


def batch_norm_state(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every batch-norm running statistic, keyed as in the model's state dict."""
    names = {id(m): n for n, m in model.named_modules()}
    return {
        f"{names[id(bn)]}.{key}": buf.detach().clone()
        for bn in batch_norms(model)
        for key, buf in bn.named_buffers(recurse=False)
    }


@contextmanager
def preserved_batch_norm(model: nn.Module) -> Iterator[None]:
    saved = batch_norm_state(model)
    momenta = [bn.momentum for bn in batch_norms(model)]
    try:
        yield
    finally:
        model.load_state_dict(saved, strict=False)
        for bn, momentum in zip(batch_norms(model), momenta):
            bn.momentum = momentum


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, loader: Iterable, transform: nn.Module,
                           num_batches: int) -> None:
    """Re-estimate batch-norm statistics as exact averages over ``num_batches`` batches."""
    device = next(model.parameters()).device
    model.eval()
    for bn in batch_norms(model):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    for i, (x, _) in enumerate(loader):
        if i == num_batches:
            break
        model(transform(x.to(device), train=False))
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, transform: nn.Module,
             reduce: Reduce | None = None, top_k: int = 1) -> float:
    """Top-``top_k`` accuracy of ``model`` in eval mode (the label among the ``top_k`` highest
    scores, at most all classes; top-5 for ImageNet, Table 2); ``reduce`` sums counts over
    processes."""
    device = next(model.parameters()).device
    model.eval()
    counts = torch.zeros(2, dtype=torch.long, device=device)  # exact: correct, examples
    for x, y in loader:
        y = y.to(device)
        logits = model(transform(x.to(device), train=False))
        top = logits.topk(min(top_k, logits.shape[-1]), dim=-1).indices
        hits = (top == y.unsqueeze(-1)).any(-1)
        counts += torch.stack([hits.sum(), torch.tensor(len(y), device=device)])
    return _fraction(reduce(counts) if reduce is not None else counts)


def _fraction(counts: Tensor) -> float:
    """correct / examples of a (correct, examples) count, in float64 (float32 would make
    9944 / 10000 read 0.99440002)."""
    correct, examples = counts.tolist()
    return correct / max(examples, 1)


@torch.no_grad()
def predictions(model: nn.Module, loader: Iterable, transform: nn.Module) -> Tensor:
    """The class ``model`` (in eval mode) predicts for every example of ``loader``, on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model(transform(x.to(device), train=False)).argmax(-1).cpu()
                      for x, _ in loader])


@contextmanager
def chosen_network(model: nn.Module, selection: Selection) -> Iterator[None]:
    """Run ``model`` as the network ``select_discrete_network`` chose: its discrete weights and
    every other tensor as it had them (``Selection.state``; the model's own restored
    afterwards)."""
    saved = real_state(model)
    with fixed_weights(model, selection.weights):
        model.load_state_dict(selection.state, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(saved, strict=False)


@dataclass
class EvalData:
    """What scoring candidates needs: the loaders and the batch transform."""

    transform: nn.Module
    val: Iterable
    test: Iterable | None = None
    calibration: Iterable | None = None
    reduce: Reduce | None = None


@dataclass
class Selection:
    """Scores of every candidate and the chosen network: its discrete weights and every other
    tensor as it had them (``real_state``: the batch norm it was scored with, the real-valued
    parameters of the epoch it was drawn at)."""

    candidates: list[dict] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)
    state: dict[str, Tensor] = field(default_factory=dict)

    def summary(self) -> dict:
        """Machine-readable scores: chosen, the most probable network and mean / std over the
        sampled networks."""
        out = {"chosen": self.chosen, "candidates": self.candidates}
        samples = [c for c in self.candidates if c["name"] != MOST_PROBABLE]
        most_probable = next(c for c in self.candidates if c["name"] == MOST_PROBABLE)
        for key in [k for k in most_probable if k != "name"]:
            values = [c[key] for c in samples]
            out[selection_key(key)] = most_probable[key]
            out[selection_key(key, "mean")] = statistics.fmean(values) if values else None
            out[selection_key(key, "std")] = statistics.pstdev(values) if values else None
        return out

    def indices(self, model: nn.Module) -> dict[str, Tensor]:
        """The chosen weights as int8 indices into each layer's value set, on the CPU (integer
        checkpoints)."""
        layers = discrete_layers(model)
        return {name: layers[name].distribution.index_of(w).to(torch.int8).cpu()
                for name, w in self.weights.items()}

    def packed(self, model: nn.Module) -> dict:
        """The choice as a checkpoint keeps it (plain tensors on the CPU): ``chosen``, the
        weights as ``indices`` and the ``state``; ``unpacked`` restores it."""
        return {"chosen": dict(self.chosen), "weights": self.indices(model),
                "state": {key: value.cpu() for key, value in self.state.items()}}

    @classmethod
    def unpacked(cls, packed: dict, model: nn.Module, candidates: list[dict]) -> Selection:
        """A ``packed`` choice on ``model``'s device, beside the scores of ``candidates``."""
        layers = discrete_layers(model)
        device = next(model.parameters()).device
        weights = {name: layers[name].distribution.values[index.to(device).long()]
                   for name, index in packed["weights"].items()}
        return cls(candidates=candidates, chosen=dict(packed["chosen"]), weights=weights,
                   state={key: value.to(device) for key, value in packed["state"].items()})


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of the ``index``-th sampled network of a run with ``seed``."""
    return seed * 1000 + index


@torch.no_grad()
def ensemble_accuracy(model: nn.Module, data: EvalData, num_networks: int, seed: int,
                      recalibrate_bn: bool = False, recalibration_batches: int = 20) -> float:
    """Test accuracy of the average softmax of the first ``num_networks`` sampled networks,
    each with its batch-norm statistics re-estimated when ``recalibrate_bn``."""
    device = next(model.parameters()).device
    total: Tensor | None = None
    for index in range(num_networks):
        with fixed_weights(model, draw_weights(model, sample_seed(seed, index))), \
                preserved_batch_norm(model):
            if recalibrate_bn:
                recalibrate_batch_norm(model, data.calibration, data.transform,
                                       recalibration_batches)
            model.eval()
            probs = torch.cat([model(data.transform(x.to(device), train=False)).softmax(-1)
                               for x, _ in data.test])
        total = probs if total is None else total.add_(probs)
    labels = torch.cat([y for _, y in data.test]).to(device)
    counts = torch.stack([(total.argmax(-1) == labels).sum(),
                          torch.tensor(len(labels), device=device)])
    return _fraction(data.reduce(counts) if data.reduce is not None else counts)


def select_discrete_network(model: nn.Module, data: EvalData, num_samples: int, seed: int,
                            recalibrate_bn: bool = False, recalibration_batches: int = 20,
                            report: Callable[[dict], None] | None = None) -> Selection:
    """Score the most probable and ``num_samples`` sampled networks; keep the best on
    validation.

    With ``recalibrate_bn`` each candidate is scored twice, with the running statistics of
    training and with statistics re-estimated on the candidate; the choice uses the latter.
    ``report`` receives each candidate's scores as they are known (the console's progress).
    """
    selection = Selection()
    best = -1.0
    for index in [None, *range(num_samples)]:  # the most probable network, then the samples
        weights = draw_weights(model, None if index is None else sample_seed(seed, index))
        scores = {"name": MOST_PROBABLE if index is None else f"sample_{index}"}
        with fixed_weights(model, weights), preserved_batch_norm(model):
            for recalibrate in (False, True) if recalibrate_bn else (False,):
                if recalibrate:
                    recalibrate_batch_norm(model, data.calibration, data.transform,
                                           recalibration_batches)
                scores[score_key("val", recalibrate)] = accuracy(model, data.val, data.transform,
                                                                 data.reduce)
                if data.test is not None:
                    scores[score_key("test", recalibrate)] = accuracy(
                        model, data.test, data.transform, data.reduce)
            if scores[score_key("val", recalibrate_bn)] > best:
                best = scores[score_key("val", recalibrate_bn)]
                selection.chosen = {
                    "name": scores["name"],
                    "recalibrated_bn": recalibrate_bn,
                    "val_acc": best,
                    "test_acc": scores.get(score_key("test", recalibrate_bn)),
                }
                selection.weights = weights
                selection.state = real_state(model)
        selection.candidates.append(scores)
        if report is not None:
            report(scores)
    return selection
