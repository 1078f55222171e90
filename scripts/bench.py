"""Speed benchmark: training and evaluation steps of full-precision and LR networks, the data
path, and the cost of choosing a sampled network, all in one process.

    python scripts/bench.py                          # CPU: LeNet at batch 256, VGG at batch 32
    python scripts/bench.py --device cuda --nets vgg:256 lenet:256
    python scripts/bench.py --tiny --out /tmp/bench.json   # seconds; what CI runs

The two-convolution cost of the local reparameterization trick bounds an LR training step at
about twice the full-precision step of the same network (issue: "Speed"); the table gives the
ratios LR / full precision measured here, with the training steps of the compared networks
timed in alternation. It also times the networks' linear maps alone (forward and backward of
every convolution and matrix product, the LR layers' two maps of eq. 4 from fixed weight
moments): their ratio is the part of the bound no other work can lower. Writes JSON with
medians, spreads and ratios.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lrnets.config import compose_config
from lrnets.data.modules import InMemoryDataModule
from lrnets.data.synthetic import synthetic_arrays
from lrnets.data.transforms import CifarTransform, UnitRange
from lrnets.nn.layers import DiscreteLayer, GaussianMethod
from lrnets.training.cpu_memory import keep_freed_memory
from lrnets.training.evaluation import EvalData, accuracy, draw_weights, fixed_weights, select_discrete_network
from lrnets.training.module import LRNetModule
from lrnets.training.run import build_network

MODES = ("full_precision", "binary", "ternary")
SHAPES = {"lenet": (1, 28), "mlp": (1, 28), "vgg": (3, 32), "resnet18": (3, 224)}


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> dict:
    """Median and spread (min, max) of ``repeats`` calls in seconds, after ``warmup`` calls."""
    return timed_together({"": fn}, device, warmup, repeats)[""]


def timed_together(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                   repeats: int) -> dict[str, dict]:
    """``timed`` for several functions whose times are compared: their calls alternate, so
    that a machine slowing down or speeding up during the run shifts all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "repeats": repeats} for name, t in times.items()}


def saved_activation_bytes(fn: Callable[[], object], parameters: list[torch.Tensor]) -> int:
    """Bytes of the storages autograd keeps for the backward pass during ``fn``, each counted
    once (the activation memory of a training step; measurable on any device). Parameters are
    not counted: they are kept anyway."""
    kept = {p.untyped_storage().data_ptr() for p in parameters}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in kept:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def network(arch: str, mode: str, overrides: list[str]):
    mode_overrides = [] if mode == "full_precision" else overrides  # the reference as it is
    cfg = compose_config([f"arch={arch}", f"mode={mode}", "paths.output_dir=.", *mode_overrides])
    channels, size = SHAPES[arch]
    return build_network(cfg, channels, 10, size), cfg


class TrainingSetup(NamedTuple):
    module: LRNetModule
    forward_loss: Callable[[], torch.Tensor]
    train_step: Callable[[], None]
    x: torch.Tensor


def training_setup(arch: str, mode: str, batch: int, device: torch.device, args,
                   bf16: bool | None = None) -> TrainingSetup:
    """The network of ``mode``, its training step (forward, backward, the run's Adam) on a
    random batch, and that batch; autocast to bfloat16 where ``bf16`` (default: ``--bf16``)."""
    bf16 = args.bf16 if bf16 is None else bf16
    model, cfg = network(arch, mode, args.override)
    model.to(device)
    module = LRNetModule(model, lr=1e-3, lr_milestones=[], lr_gamma=1.0, weight_decay=1e-4,
                         weight_decay_scope=cfg.mode.weight_decay_scope,
                         probability_decay=cfg.regularizer.probability_decay, beta=cfg.regularizer.beta).to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    channels, size = SHAPES[arch]
    x = torch.randn(batch, channels, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def forward_loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return F.cross_entropy(model(x), y) + module.regularization()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_loss().backward()
        optimizer.step()

    return TrainingSetup(module, forward_loss, train_step, x)


def linear_maps_step(model: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
    """Forward and backward of the network's linear maps alone, each on the input it gets in a
    forward pass of ``x``, with random output gradients; an LR layer's maps (eq. 4) take its
    weight moments as fixed leaves, so their computation is not counted."""
    inputs: dict[nn.Module, torch.Tensor] = {}
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, DiscreteLayer))]
    hooks = [m.register_forward_pre_hook(lambda m, a: inputs.setdefault(m, a[0].detach().clone()))
             for m in layers]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    calls, leaves = [], []
    for layer in layers:
        h = inputs[layer].requires_grad_(layer is not layers[0])  # the data: no gradient
        if isinstance(layer, DiscreteLayer):
            moments = [t.detach().requires_grad_() for t in layer.distribution.moments()]
            fused = isinstance(layer.method, GaussianMethod) and layer.method.fused
            calls.append(lambda layer=layer, h=h, moments=moments, fused=fused:
                         layer.moment_maps(h, *moments, fused))
            leaves += [h, *moments]
        else:
            calls.append(lambda layer=layer, h=h: (layer(h),))
            leaves += [h, *layer.parameters()]
    with torch.no_grad():
        grads = [[torch.randn_like(o) for o in call()] for call in calls]

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None  # as the training step's zero_grad(set_to_none=True)
        for call, grad in zip(calls, grads):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = call()
            torch.autograd.backward(outputs, grad)

    return step


def bench_networks(arch: str, batch: int, device: torch.device, args) -> list[dict]:
    """One row per mode; the training steps of the modes are timed together, and so are their
    linear maps alone."""
    setups = {mode: training_setup(arch, mode, batch, device, args) for mode in args.modes}
    for setup in setups.values():
        setup.module.train()
    steps = timed_together({mode: s.train_step for mode, s in setups.items()}, device,
                           args.warmup, args.repeats)
    maps = timed_together({mode: linear_maps_step(s.module.model, s.x, args.bf16)
                           for mode, s in setups.items()}, device, args.warmup, args.repeats)
    rows = []
    for mode, (module, forward_loss, train_step, x) in setups.items():
        row = {"arch": arch, "mode": mode, "batch": batch, "train_step": steps[mode],
               "linear_maps_step": maps[mode]}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            train_step()
            row["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        row["activation_bytes"] = saved_activation_bytes(forward_loss, list(module.parameters()))
        model = module.model.eval()
        with torch.no_grad(), fixed_weights(model, draw_weights(model, None)):
            row["eval_step"] = timed(lambda: model(x), device, args.warmup, args.repeats)
        rows.append(row)
    return rows


def bench_precisions(arch: str, batch: int, device: torch.device, args) -> list[dict]:
    """Each mode's training step in float32 and autocast to bfloat16, timed in alternation (the
    same seed, so the same network and batch): one row per mode with both and their ratio."""
    rows = []
    for mode in args.modes:
        setups = {}
        for bf16 in (False, True):
            torch.manual_seed(0)
            setups["bf16" if bf16 else "fp32"] = training_setup(arch, mode, batch, device, args,
                                                                bf16)
        steps = timed_together({name: s.train_step for name, s in setups.items()}, device,
                               args.warmup, args.repeats)
        rows.append({"arch": arch, "mode": mode, "batch": batch, **steps,
                     "speedup": steps["fp32"]["median_s"] / steps["bf16"]["median_s"]})
    return rows


def bench_data(name: str, device: torch.device, count: int, batch: int, args) -> dict:
    """Images per second of the in-memory uint8 path with augmentation on ``device``, and of
    torchvision's per-image path for comparison."""
    channels, size, transform = {"mnist": (1, 28, UnitRange()),
                                 "cifar10": (3, 32, CifarTransform())}[name]
    train, test = synthetic_arrays(count, 16, channels, size, 10)
    dm = InMemoryDataModule(train, test, transform, 10, val_size=16, batch_size=batch, seed=0)

    def epoch() -> None:
        for xb, _ in dm.train_dataloader():
            transform(xb.to(device, non_blocking=True), train=True)

    per_image = {"mnist": None, "cifar10": _torchvision_cifar}[name]
    row = {"data": name, "images": len(dm.train_set), "batch": batch,
           "device_path": timed(epoch, device, 1, args.repeats)}
    row["device_path_images_per_s"] = len(dm.train_set) / row["device_path"]["median_s"]
    if per_image is not None:
        images = dm.train_set.images[: min(2048, len(dm.train_set))]
        t = timed(lambda: per_image(images), device, 0, 1)
        row["torchvision_per_image_images_per_s"] = len(images) / t["median_s"]
    return row


def _torchvision_cifar(images: torch.Tensor) -> None:
    from torchvision import transforms as T
    tf = T.Compose([T.ToPILImage(), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                    T.ToTensor()])
    for image in images:
        tf(image)


def bench_selection(device: torch.device, num_samples: int, args) -> dict:
    """Seconds of choosing among ``num_samples`` sampled networks plus the mode, against as many
    plain validation passes of a sampled network: the sampling itself must cost almost nothing.
    (A sample, not the mode: on a CPU the mode network of these untrained distributions runs
    faster than their samples, 0.61 s against 0.76 s a pass here, which is not overhead.)"""
    model, _ = network("lenet", "ternary", args.override)
    model.to(device).eval()
    train, test = synthetic_arrays(64, args.val_images, 1, 28, 10)
    dm = InMemoryDataModule(train, test, UnitRange(), 10, val_size=32, batch_size=256, seed=0)
    data = EvalData(dm.batch_transform, dm.test_dataloader())
    with fixed_weights(model, draw_weights(model, 1)):
        plain = timed(lambda: accuracy(model, data.val, data.transform), device, 1, args.repeats)
    select = timed(lambda: select_discrete_network(model, data, num_samples, seed=0), device, 0,
                   max(1, args.repeats // 3))
    passes = num_samples + 1
    return {"num_samples": num_samples, "val_images": args.val_images,
            "selection_s": select["median_s"], "plain_pass_s": plain["median_s"],
            "ratio_to_plain_passes": select["median_s"] / (passes * plain["median_s"])}


def ratios(rows: list[dict]) -> None:
    """Add LR / full-precision ratios of step times and memory to every LR row."""
    reference = {(r["arch"], r["batch"]): r for r in rows if r["mode"] == "full_precision"}
    for r in rows:
        fp = reference.get((r["arch"], r["batch"]))
        if fp is None or r is fp:
            continue
        r["ratio_train_step"] = r["train_step"]["median_s"] / fp["train_step"]["median_s"]
        r["ratio_linear_maps_step"] = (r["linear_maps_step"]["median_s"]
                                       / fp["linear_maps_step"]["median_s"])
        r["ratio_eval_step"] = r["eval_step"]["median_s"] / fp["eval_step"]["median_s"]
        r["ratio_activation_bytes"] = r["activation_bytes"] / fp["activation_bytes"]
        if "peak_memory_bytes" in r:
            r["ratio_peak_memory"] = r["peak_memory_bytes"] / fp["peak_memory_bytes"]


def print_table(report: dict) -> None:
    print(f"\nnetworks on {report['device']} ({report['torch']}, {report['threads']} threads)")
    print(f"{'arch':9}{'mode':15}{'batch':>6}{'train ms':>10}{'maps ms':>9}{'eval ms':>9}"
          f"{'act MB':>8}{'train x':>9}{'maps x':>8}{'mem x':>7}")
    for r in report["networks"]:
        mem = r.get("ratio_peak_memory", r.get("ratio_activation_bytes"))
        print(f"{r['arch']:9}{r['mode']:15}{r['batch']:>6}{1e3 * r['train_step']['median_s']:>10.1f}"
              f"{1e3 * r['linear_maps_step']['median_s']:>9.1f}"
              f"{1e3 * r['eval_step']['median_s']:>9.1f}{r['activation_bytes'] / 2**20:>8.1f}"
              f"{r.get('ratio_train_step', 1.0):>9.2f}{r.get('ratio_linear_maps_step', 1.0):>8.2f}"
              f"{mem or 1.0:>7.2f}")
    for d in report["data"]:
        tv = d.get("torchvision_per_image_images_per_s")
        print(f"data {d['data']:8} {d['device_path_images_per_s']:>12,.0f} images/s on the device path"
              + (f", {tv:,.0f} images/s torchvision per-image" if tv else ""))
    for r in report["precisions"]:
        print(f"{r['arch']:9}{r['mode']:15}{r['batch']:>6} train step float32 "
              f"{1e3 * r['fp32']['median_s']:.1f} ms, bfloat16 {1e3 * r['bf16']['median_s']:.1f} ms: "
              f"{r['speedup']:.2f}x")
    if (s := report["selection"]) is not None:
        print(f"choosing among {s['num_samples']} samples + mode: {s['ratio_to_plain_passes']:.2f}x "
              f"the time of {s['num_samples'] + 1} plain validation passes")


def _net(spec: str) -> tuple[str, int]:
    """``lenet:256`` -> ("lenet", 256)."""
    arch, batch = spec.split(":")
    return arch, int(batch)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--nets", nargs="+", default=["lenet:256", "vgg:32"],
                        help="ARCH:BATCH pairs (archs: %s)" % ", ".join(SHAPES))
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="autocast the steps to bfloat16")
    parser.add_argument("--compare-bf16", action="store_true",
                        help="also time each training step in float32 and bfloat16 in alternation")
    parser.add_argument("--data-images", type=int, default=50000, help="0: no data rows")
    parser.add_argument("--val-images", type=int, default=5000)
    parser.add_argument("--num-samples", type=int, default=10, help="0: no selection row")
    parser.add_argument("--override", nargs="*", default=[],
                        help="Hydra overrides for the discrete networks (not the full-precision "
                             "reference), e.g. mode.layers.fused=false")
    parser.add_argument("--tiny", action="store_true", help="seconds-long run (CI)")
    parser.add_argument("--out", default="outputs/bench/bench.json")
    args = parser.parse_args(argv)
    if args.tiny:
        args.nets, args.warmup, args.repeats = ["lenet:8"], 1, 2
        args.data_images, args.val_images, args.num_samples = 512, 256, 2
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as a training run on a CPU does
    torch.manual_seed(0)
    rows = []
    for spec in args.nets:
        rows += bench_networks(*_net(spec), device, args)
    ratios(rows)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "bf16": args.bf16,
        "overrides": args.override, "networks": rows,
        "data": [bench_data(name, device, args.data_images, 256, args)
                 for name in ("mnist", "cifar10") if args.data_images],
        "selection": bench_selection(device, args.num_samples, args) if args.num_samples else None,
        "precisions": [row for spec in args.nets if args.compare_bf16
                       for row in bench_precisions(*_net(spec), device, args)],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten: {out}")
    return report


if __name__ == "__main__":
    main()
