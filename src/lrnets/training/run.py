"""One training run, from a composed config to a results file.

Data, network and initialisation are built from the config; Lightning trains the weight
distributions; the discrete network is chosen on the validation split (sec. 4.4) and its test
accuracy is reported. Every run folder holds ``.hydra/``, ``checkpoints/`` (Lightning's
``last.ckpt``, the trained ``network.pt`` and, for discrete runs, ``discrete.pt`` with integer
weights), ``tensorboard/`` and ``results.json``.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger

from lrnets.console import (candidate_progress, choosing_line, final_lines, progress_callbacks,
                            quiet)
from lrnets.config import CONF_DIR, code_of
from lrnets.data import build_datamodule
from lrnets.decisive import decisive_config
from lrnets.errors import ConfigError
from lrnets.models.architectures import Network, configure_batch_norm, network
from lrnets.nn.layers import FullPrecisionLayers, DiscreteLayer
from lrnets.nn.quantized_layers import quantized_layers, weight_multiplications
from lrnets.run_folder import (CHECKPOINTS, DISCRETE, INTERRUPTED, LAST, NETWORK, TENSORBOARD,
                               SUMMARY, Results, error_figures, rounded, where,
                               write_results)
from lrnets.schema import validate
from lrnets.seeding import EpochSeed
from lrnets.training.callbacks import (BatchNormReestimation, DistributionMonitor, EpochTimer,
                                      FlushEvents, SampledEvaluation, lower_on_test,
                                      lowest_on_test)
from lrnets.training.cpu_memory import keep_freed_memory
from lrnets.training.discrete_checkpoint import (discrete_meta, save_discrete_network,
                                        save_quantized_network)
from lrnets.training.distributed import all_ranks, examples_counted, rank_shard
from lrnets.training.evaluation import (EvalData, Selection, accuracy, chosen_network,
                                        discrete_layers, ensemble_accuracy, predictions,
                                        select_discrete_network)
from lrnets.training.faults import FiniteLoss, InterruptCheckpoint, stopped_run
from lrnets.training.initialization import (init_from_full_precision, load_network_state,
                                           network_file)
from lrnets.training.module import LRNetModule
from lrnets.training.reference import obtain_reference, reference_config
from lrnets.training.resume import LastCheckpoint, RecordConfig, resume_checkpoint, resume_hint
from lrnets.training.summary import summary_text


def build_network(cfg: DictConfig, in_channels: int, num_classes: int, image_size: int) -> Network:
    """The architecture ``cfg.arch`` with ``cfg.activation``'s blocks, made of the layers
    ``cfg.mode.layers`` builds."""
    _check_named_builder(cfg)
    layers = instantiate(cfg.mode.layers)
    first = FullPrecisionLayers() if cfg.mode.first_layer == "full_precision" else layers
    model = network(cfg.arch, cfg.activation, first, layers, in_channels, num_classes,
                    image_size, cfg.train.dropout)
    configure_batch_norm(model, cfg.train.bn_momentum, cfg.train.bn_eps)
    return model


def _check_named_builder(cfg: DictConfig) -> None:
    """Refuse an ``arch.builder`` other than the one of the architecture its name stands for
    (``conf/arch/<name>.yaml``): the name decides a run's results and its reference folder, so
    another function under it would reuse that architecture's reference and read as it in
    tables."""
    named = CONF_DIR / "arch" / f"{cfg.arch.name}.yaml"
    if cfg.arch.get("builder") is None or not named.is_file():
        return
    own = OmegaConf.load(named).get("builder")
    if own is not None and own != cfg.arch.builder:
        raise ConfigError(f"arch.builder={cfg.arch.builder!r} is not allowed with "
                          f"arch={cfg.arch.name}, whose function is {own} (the name decides the "
                          f"results and the reference): train another function as arch=custom "
                          f"arch.builder={cfg.arch.builder}, or give it a config of its own.")


def _fits(cfg: DictConfig, in_channels: int, num_classes: int, image_size: int) -> bool:
    """Whether the network for ``image_size`` runs a forward pass (of two blank images)."""
    model = build_network(cfg, in_channels, num_classes, image_size).eval()
    try:
        model(torch.zeros(2, in_channels, image_size, image_size))
    except RuntimeError:  # a kernel larger than its input, a pool of nothing
        return False
    return True


def check_image_size(cfg: DictConfig, in_channels: int, num_classes: int, image_size: int) -> None:
    """Refuse an image the architecture cannot take (its feature maps would shrink below a
    kernel), naming the smallest size that works; the random streams stay as they were."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        if _fits(cfg, in_channels, num_classes, image_size):
            return
        smallest = next((size for size in range(image_size + 1, 257)
                         if _fits(cfg, in_channels, num_classes, size)), None)
    option = "dataset.image_size" if "image_size" in cfg.dataset else f"dataset={cfg.dataset.name}"
    allowed = f"at least {smallest} x {smallest} pixels" if smallest else "larger images"
    raise ConfigError(f"{option}={image_size} is not allowed: arch={cfg.arch.name} needs images of "
                      f"{allowed} (in smaller ones its feature maps shrink below a kernel).")


def body_weight_count(model: nn.Module) -> int:
    """Number of weights in the network's body, the layers a discrete run discretises (the
    softmax layer aside): 1,657,632 for the paper's MNIST lenet (800 + 51,200 + 3136 x 512)."""
    count = 0
    for layer in model.body.modules():
        if isinstance(layer, DiscreteLayer):
            count += torch.Size(layer.distribution.shape).numel()
        elif isinstance(layer, (nn.Conv2d, nn.Linear)):
            count += layer.weight.numel()
    return count


# The starts of configs written before ``init.start`` existed, which named the init only.
EARLIER_STARTS = {"pretrained": "lrnets.training.run.start_from_reference",
                  "random": "lrnets.training.initialization.random_start"}


def initialise(model: Network, cfg: DictConfig, resuming: bool) -> dict:
    """Set the weight distributions (sec. 4.1) by the function ``init.start`` names, called as
    ``start(model, cfg, resuming)``; returns what the results file records."""
    if not discrete_layers(model) and not quantized_layers(model):
        return {"init": "default"}
    return code_of("init", cfg.init, "start", EARLIER_STARTS)(model, cfg, resuming)


def start_from_reference(model: Network, cfg: DictConfig, resuming: bool) -> dict:
    """``init=pretrained``: eq. 6-8 applied to ``init.checkpoint``'s weights, or to those of the
    full-precision reference (``lrnets.training.reference``, trained first if there is none). A
    run that resumes takes its weights from its checkpoint: it neither trains nor loads a
    reference (one named by an earlier version's folder name would otherwise be trained again)."""
    init = cfg.init
    if resuming:
        checkpoint = init.checkpoint or Path(reference_config(cfg).paths.output_dir) / NETWORK
        return {"init": "pretrained", "init_checkpoint": str(checkpoint)}
    checkpoint = network_file(init.checkpoint) if init.checkpoint else obtain_reference(cfg, train)
    init_from_full_precision(model, load_network_state(checkpoint), init.p_min, init.p_max)
    return {"init": "pretrained", "init_checkpoint": str(checkpoint)}


def build_trainer(cfg: DictConfig, out: Path, discrete: bool) -> pl.Trainer:
    callbacks: list[pl.Callback] = [
        # last.ckpt after every epoch (save_last=True alone writes it when training ends)
        LastCheckpoint(dirpath=out / LAST.parent, filename=LAST.stem, enable_version_counter=False),
        LearningRateMonitor(logging_interval="epoch"),
        EpochSeed(cfg.seed), RecordConfig(cfg), FiniteLoss(), InterruptCheckpoint(out / INTERRUPTED),
        EpochTimer(), FlushEvents(),
    ]
    if discrete:
        callbacks.append(DistributionMonitor())
        if cfg.eval.every_n_epochs:
            ev = cfg.eval
            callbacks.append(SampledEvaluation(ev.every_n_epochs, ev.num_samples, cfg.seed,
                                               ev.recalibrate_bn, ev.recalibration_batches,
                                               ev.score_test))
        if cfg.activation.get("bn_reestimation_batches"):  # activation=sign
            callbacks.append(BatchNormReestimation(cfg.activation.bn_reestimation_batches))
    progress, bar = progress_callbacks(cfg.trainer.enable_progress_bar)
    logger = TensorBoardLogger(save_dir=str(out), name=str(TENSORBOARD), version="",
                               default_hp_metric=False)  # the final errors fill HPARAMS instead
    return instantiate(cfg.trainer, callbacks=callbacks + progress, logger=logger,
                       default_root_dir=str(out), enable_progress_bar=bar)


def train(cfg: DictConfig) -> dict:
    """Run the experiment ``cfg`` describes; return (and write) its results."""
    validate(cfg)
    quiet(cfg.verbose)
    started = time.time()
    out = Path(cfg.paths.output_dir)
    resume_from = resume_checkpoint(cfg, out)
    (out / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    dm = build_datamodule(cfg.dataset, batch_size=cfg.train.batch_size, seed=cfg.seed,
                          num_workers=cfg.dataset.num_workers)
    check_image_size(cfg, dm.in_channels, dm.num_classes, dm.image_size)
    model = build_network(cfg, dm.in_channels, dm.num_classes, dm.image_size)
    init_info = initialise(model, cfg, resuming=resume_from is not None)
    discrete = bool(discrete_layers(model))
    module = LRNetModule(
        model, lr=cfg.train.lr, lr_milestones=list(cfg.train.lr_milestones),
        lr_gamma=cfg.train.lr_gamma, weight_decay=cfg.train.weight_decay,
        weight_decay_scope=cfg.mode.weight_decay_scope, probability_decay=cfg.regularizer.probability_decay,
        beta=cfg.regularizer.beta, logit_lr=cfg.train.logit_lr,
    )
    trainer = build_trainer(cfg, out, discrete)
    if trainer.is_global_zero:  # instead of Lightning's summary
        text = summary_text(model, torch.zeros(1, dm.in_channels, dm.image_size, dm.image_size))
        (out / SUMMARY).write_text(text + "\n")
        print(text, flush=True)
    if isinstance(trainer.accelerator, CPUAccelerator):
        keep_freed_memory()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume_from)
    except BaseException as err:
        _record_stop(err, trainer, cfg, out)
        raise
    if trainer.is_global_zero:
        torch.save({"state_dict": model.state_dict()}, out / NETWORK)
    trainer.strategy.barrier()  # other ranks may load it next (the reference of a discrete run)

    results: Results = {
        "status": "completed", "dataset": cfg.dataset.name, "arch": cfg.arch.name,
        "mode": cfg.mode.name, "weights": cfg.weights.name if cfg.weights else None,
        "activation": cfg.activation.name, "seed": cfg.seed, "epochs": trainer.current_epoch,
        "epochs_configured": cfg.train.epochs, "body_weights": body_weight_count(model),
        **init_info,
    }
    data = EvalData(dm.batch_transform, rank_shard(dm.val_dataloader(), trainer),
                    rank_shard(dm.test_dataloader(), trainer), dm.calibration_dataloader(),
                    reduce=lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
    results["world_size"] = trainer.world_size
    results["eval_examples"] = {"val": examples_counted(data.val, trainer),
                                "test": examples_counted(data.test, trainer)}
    if discrete:
        ev = cfg.eval
        if trainer.is_global_zero:
            print(choosing_line(ev.num_samples, ev.recalibrate_bn), flush=True)
        progress = candidate_progress(ev.num_samples, ev.recalibrate_bn,
                                      cfg.trainer.enable_progress_bar and trainer.is_global_zero)
        selection = select_discrete_network(model, data, ev.num_samples, cfg.seed,
                                            ev.recalibrate_bn, ev.recalibration_batches, progress)
        selection.chosen["epoch"] = trainer.current_epoch
        scored = sampled_evaluation(trainer)
        if (across := chosen_across_epochs(scored, model, selection, data)) is not None:
            results.update(across_epochs_figures(across.chosen, scored.scored_from))
            if ev.choose_across_epochs:
                selection = across
        summary = selection.summary()
        results.update(error_figures(summary))
        results["selection"] = summary
        results["chosen_by_rank"] = all_ranks(summary["chosen"]["name"], trainer)
        results.update(chosen_on_test(cfg, trainer, scored, summary["candidates"]))
        if ev.ensemble:
            results["ensemble_size"] = ev.ensemble
            results["ensemble_test_error"] = 1 - ensemble_accuracy(
                model, data, ev.ensemble, cfg.seed, ev.recalibrate_bn, ev.recalibration_batches)
        if trainer.is_global_zero:
            with chosen_network(model, selection):
                test_predictions = predictions(model, dm.test_dataloader(), dm.batch_transform)
            save_discrete_network(out / DISCRETE, model, selection,
                                  discrete_meta(cfg, dm, summary["chosen"], test_predictions))
    else:
        val_acc = accuracy(model, data.val, data.transform, data.reduce)
        test_acc = accuracy(model, data.test, data.transform, data.reduce)
        results["val_error"], results["test_error"] = 1 - val_acc, 1 - test_acc
        if quantized_layers(model) and trainer.is_global_zero:  # a straight-through baseline
            chosen = {"name": "straight_through", "val_acc": val_acc, "test_acc": test_acc}
            test_predictions = predictions(model, dm.test_dataloader(), dm.batch_transform)
            save_quantized_network(out / DISCRETE, model,
                                   discrete_meta(cfg, dm, chosen, test_predictions))
    if cfg.eval.top5:  # Table 2 (ImageNet): top-5 error of the reported network
        with chosen_network(model, selection) if discrete else nullcontext():
            results["test_error_top5"] = 1 - accuracy(model, data.test, data.transform,
                                                      data.reduce, top_k=5)
    if (multiplications := weight_multiplications(model)) is not None:  # straight-through nets
        results["multiplications"] = multiplications
    if resume_from is not None:
        results["resumed_from"] = str(resume_from)
    results["wall_time_s"] = round(time.time() - started, 1)
    results.update(next(c for c in trainer.callbacks if isinstance(c, EpochTimer)).summary())
    results["paths"] = where(out)
    results = rounded(results)  # as the file holds it
    _log_final(trainer, cfg, results)
    if trainer.is_global_zero:
        write_results(out, results)
        print(final_lines(results))
    return results


def sampled_evaluation(trainer: pl.Trainer) -> SampledEvaluation | None:
    """The run's ``SampledEvaluation`` (``eval.every_n_epochs``); None without one."""
    return next((c for c in trainer.callbacks if isinstance(c, SampledEvaluation)), None)


def chosen_on_test(cfg: DictConfig, trainer: pl.Trainer, scored: SampledEvaluation | None,
                   candidates: list[dict]) -> Results:
    """``eval.score_test``: the authors' protocol, the lowest test error of any network scored
    during training (``scored``) or at the end (``candidates``), and its epoch (the earlier on a
    tie); nothing without it."""
    if not cfg.eval.score_test:
        return {}
    best = lower_on_test(scored.best_on_test if scored is not None else None,
                         lowest_on_test(candidates, cfg.eval.recalibrate_bn, trainer.current_epoch))
    return {"test_error_chosen_on_test": best["test_error"], "epoch_chosen_on_test": best["epoch"]}


def chosen_across_epochs(scored: SampledEvaluation | None, model: nn.Module, final: Selection,
                         data: EvalData) -> Selection | None:
    """The network best on validation among all candidates scored, during training
    (``scored.best_on_val``, every ``eval.every_n_epochs``) and at the end (``final``; it wins
    a tie), its test accuracy scored; None when no epoch was scored during training. The
    authors' code chose across epochs too (on the test split)."""
    if scored is None or scored.best_on_val is None:
        return None
    if scored.best_on_val["chosen"]["val_acc"] <= final.chosen["val_acc"]:
        return final
    across = Selection.unpacked(scored.best_on_val, model, final.candidates)
    with chosen_network(model, across):
        across.chosen["test_acc"] = accuracy(model, data.test, data.transform, data.reduce)
    return across


def across_epochs_figures(chosen: dict, scored_from: int) -> Results:
    """The results file's figures of the network ``chosen_across_epochs`` returns, chosen among
    the epochs from ``scored_from`` on."""
    return {"val_error_chosen_across_epochs": 1 - chosen["val_acc"],
            "test_error_chosen_across_epochs": 1 - chosen["test_acc"],
            "epoch_chosen_across_epochs": chosen["epoch"],
            "chosen_across_epochs_from": scored_from}


def _record_stop(err: BaseException, trainer: pl.Trainer, cfg: DictConfig, out: Path) -> None:
    """If ``err`` is an interruption or a diverged loss (``lrnets.training.faults``), write the results
    file with that status and raise ``RunStopped``; otherwise return."""
    stop = stopped_run(err, trainer, out, resume_hint(out))
    if stop is None:
        return
    results = {"dataset": cfg.dataset.name, "arch": cfg.arch.name, "mode": cfg.mode.name,
               "seed": cfg.seed, **stop.results, "epochs_configured": cfg.train.epochs,
               "paths": where(out)}
    if trainer.is_global_zero:
        write_results(out, results)
    raise stop.error from None


def _log_final(trainer: pl.Trainer, cfg: DictConfig, results: Results) -> None:
    """The final errors in TensorBoard: beside the training curves (``final/*``, on their step
    axis) and in the HPARAMS tab with the settings that decide the run (``hparams/*``), so
    that the runs of a sweep are compared there."""
    experiment = getattr(trainer.logger, "experiment", None)
    if experiment is None or not trainer.is_global_zero:
        return
    errors = {key: value for key, value in results.items() if isinstance(value, float)
              and (key.endswith("_error") or key == "test_error_chosen_on_test")}
    for key, value in errors.items():
        experiment.add_scalar(f"final/{key}", value, trainer.global_step)
    settings = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                for key, value in decisive_config(cfg).items()}
    trainer.logger.log_hyperparams(settings, {f"hparams/{key}": v for key, v in errors.items()})
    experiment.flush()
