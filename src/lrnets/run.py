"""One training run, from a composed config to a results file.

Data, network and initialisation are built from the config; Lightning trains the weight
distributions; the discrete network is chosen on the validation split (sec. 4.4) and its test
accuracy is reported. Every run folder holds ``.hydra/``, ``checkpoints/`` (Lightning's
``last.ckpt``, the trained ``network.pt`` and, for discrete runs, ``discrete.pt`` with integer
weights), ``tensorboard/`` and ``results.json``.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from lrnets.callbacks import DistributionMonitor, SampledEvaluation
from lrnets.checks import check_config
from lrnets.data import build_datamodule
from lrnets.distributed import all_ranks, examples_counted, rank_shard
from lrnets.errors import ConfigError
from lrnets.evaluation import (EvalData, Selection, accuracy, chosen_network, discrete_layers,
                               select_discrete_network)
from lrnets.initialization import init_from_full_precision, load_network_state, random_init
from lrnets.layers import FullPrecisionLayers
from lrnets.models import ARCHITECTURES, Network
from lrnets.module import LRNetModule
from lrnets.quantized_layers import quantized_layers, weight_multiplications
from lrnets.reference import NETWORK_FILE, obtain_reference


def build_network(cfg: DictConfig, in_channels: int, num_classes: int, image_size: int) -> Network:
    """The architecture ``cfg.arch.name`` made of the layers ``cfg.mode.layers`` builds."""
    if cfg.arch.name not in ARCHITECTURES:
        raise ConfigError(
            f"arch={cfg.arch.name!r} is not an architecture: choose one of {sorted(ARCHITECTURES)}."
        )
    layers = instantiate(cfg.mode.layers)
    first = FullPrecisionLayers() if cfg.mode.first_layer == "full_precision" else layers
    return ARCHITECTURES[cfg.arch.name](first, layers, in_channels, num_classes, image_size,
                                        cfg.train.dropout)


def initialise(model: Network, cfg: DictConfig) -> dict:
    """Set the weight distributions (sec. 4.1); returns what the results file records."""
    if not discrete_layers(model) and not quantized_layers(model):
        return {"init": "default"}
    init = cfg.init
    if init.name == "random":
        random_init(model, init.p_min, init.p_max)
        return {"init": "random"}
    checkpoint = init.checkpoint or obtain_reference(cfg, train)
    init_from_full_precision(model, load_network_state(checkpoint), init.p_min, init.p_max)
    return {"init": "pretrained", "init_checkpoint": str(checkpoint)}


def build_trainer(cfg: DictConfig, out: Path, discrete: bool) -> pl.Trainer:
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    if discrete:
        callbacks.append(DistributionMonitor())
        if cfg.eval.every_n_epochs:
            ev = cfg.eval
            callbacks.append(SampledEvaluation(ev.every_n_epochs, ev.num_samples, cfg.seed,
                                               ev.recalibrate_bn, ev.recalibration_batches))
    logger = TensorBoardLogger(save_dir=str(out), name="tensorboard", version="")
    return instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(out))


def save_discrete_network(path: Path, model: Network, selection: Selection, meta: dict) -> None:
    """The chosen network: integer weights (indices into the value set, int8), its batch-norm
    statistics and every other parameter; loadable with ``torch.load(weights_only=True)``."""
    layers = discrete_layers(model)
    state = {k: v for k, v in model.state_dict().items()
             if not any(k.startswith(f"{name}.") for name in layers)}
    state.update(selection.batch_norm)
    torch.save({
        "weights": {name: layers[name].distribution.index_of(w).to(torch.int8).cpu()
                    for name, w in selection.weights.items()},
        "values": {name: layer.distribution.values.tolist() for name, layer in layers.items()},
        "state_dict": {k: v.cpu() for k, v in state.items()},
        "meta": meta,
    }, path)


def train(cfg: DictConfig) -> dict:
    """Run the experiment ``cfg`` describes; return (and write) its results."""
    check_config(cfg)
    started = time.time()
    out = Path(cfg.paths.output_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    dm = build_datamodule(cfg.dataset, batch_size=cfg.train.batch_size, seed=cfg.seed,
                          num_workers=cfg.dataset.num_workers)
    model = build_network(cfg, dm.in_channels, dm.num_classes, dm.image_size)
    init_info = initialise(model, cfg)
    discrete = bool(discrete_layers(model))
    module = LRNetModule(
        model, lr=cfg.train.lr, lr_milestones=list(cfg.train.lr_milestones),
        lr_gamma=cfg.train.lr_gamma, weight_decay=cfg.train.weight_decay,
        weight_decay_scope=cfg.mode.weight_decay_scope, probability_decay=cfg.mode.probability_decay,
        beta=cfg.mode.beta, logit_lr=cfg.train.get("logit_lr"),
    )
    trainer = build_trainer(cfg, out, discrete)
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
    if trainer.is_global_zero:
        torch.save({"state_dict": model.state_dict()}, out / NETWORK_FILE)
    trainer.strategy.barrier()  # other ranks may load it next (the reference of a discrete run)

    results: dict = {
        "status": "completed", "dataset": cfg.dataset.name, "arch": cfg.arch.name,
        "mode": cfg.mode.name, "seed": cfg.seed, "epochs": trainer.current_epoch,
        "epochs_configured": cfg.train.epochs, **init_info,
    }
    data = EvalData(dm.batch_transform, rank_shard(dm.val_dataloader(), trainer),
                    rank_shard(dm.test_dataloader(), trainer), dm.calibration_dataloader(),
                    reduce=lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
    results["world_size"] = trainer.world_size
    results["eval_examples"] = {"val": examples_counted(data.val, trainer),
                                "test": examples_counted(data.test, trainer)}
    if discrete:
        ev = cfg.eval
        selection = select_discrete_network(model, data, ev.num_samples, cfg.seed,
                                            ev.recalibrate_bn, ev.recalibration_batches)
        summary = selection.summary()
        results.update(_errors(summary))
        results["selection"] = summary
        results["chosen_by_rank"] = all_ranks(summary["chosen"]["name"], trainer)
        if trainer.is_global_zero:
            save_discrete_network(out / "checkpoints" / "discrete.pt", model, selection,
                                  {k: results[k] for k in ("dataset", "arch", "mode", "seed")})
    else:
        results["val_error"] = 1 - accuracy(model, data.val, data.transform, data.reduce)
        results["test_error"] = 1 - accuracy(model, data.test, data.transform, data.reduce)
    if (multiplications := weight_multiplications(model)) is not None:  # straight-through nets
        results["multiplications"] = multiplications
    if cfg.eval.top5:  # Table 2 (ImageNet): top-5 error of the reported network
        with chosen_network(model, selection) if discrete else nullcontext():
            results["test_error_top5"] = 1 - accuracy(model, data.test, data.transform,
                                                      data.reduce, top_k=5)
    results["wall_time_s"] = round(time.time() - started, 1)
    results["paths"] = {
        "run_dir": str(out), "results": str(out / "results.json"),
        "checkpoints": str(out / "checkpoints"), "tensorboard": str(out / "tensorboard"),
    }
    _log_final(trainer, results)
    if trainer.is_global_zero:
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        _print_summary(results)
    return results


def _errors(summary: dict) -> dict:
    """Test and validation errors of the chosen, mode and sampled networks."""
    err = {"val_error": 1 - summary["chosen"]["val_acc"], "test_error": 1 - summary["chosen"]["test_acc"],
           "chosen": summary["chosen"]["name"], "recalibrated_bn": summary["chosen"]["recalibrated_bn"]}
    for key, value in summary.items():
        if key.startswith(("mode_", "samples_")) and value is not None and "acc" in key:
            name = key.replace("_acc", "_error")
            err[name] = value if key.endswith("_std") else 1 - value
    return err


def _log_final(trainer: pl.Trainer, results: dict) -> None:
    """The final test figures, in TensorBoard next to the training curves."""
    experiment = getattr(trainer.logger, "experiment", None)
    if experiment is None or not trainer.is_global_zero:
        return
    for key, value in results.items():
        if key.endswith("_error") and isinstance(value, float):
            experiment.add_scalar(f"final/{key}", value, trainer.current_epoch)
    experiment.flush()


def _print_summary(results: dict) -> None:
    paths = results["paths"]
    figures = ", ".join(f"{k} {100 * v:.2f}%" for k, v in results.items()
                        if k.endswith("_error") and isinstance(v, float) and "_std" not in k)
    print(
        f"\n{results['mode']} {results['arch']} on {results['dataset']}: {figures}\n"
        f"results:     {paths['results']}\n"
        f"checkpoints: {paths['checkpoints']}\n"
        f"tensorboard: tensorboard --logdir {paths['tensorboard']}"
    )
