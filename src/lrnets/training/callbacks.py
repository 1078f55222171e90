"""Lightning callbacks that log what belongs to the discrete layers (Appendix B, Fig. 3), the
epoch timer and the flush of the TensorBoard events at every epoch."""
from __future__ import annotations

import statistics
import time

import pytorch_lightning as pl
import torch
from torch import nn
from torchvision.utils import make_grid

from lrnets.nn.layers import DiscreteConv2d
from lrnets.run_folder import score_key, selection_key
from lrnets.training.distributed import rank_shard
from lrnets.training.evaluation import (EvalData, batch_norms, discrete_layers, draw_weights,
                                        fixed_weights, recalibrate_batch_norm,
                                        select_discrete_network)
from lrnets.training.summary import layer_names


class EpochTimer(pl.Callback):
    """Seconds of every training epoch this process runs, its validation included, logged as
    ``time/epoch_s``; their median, times a schedule's epochs, projects the schedule's time."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        pl_module.log("time/epoch_s", self.seconds[-1])

    def summary(self) -> dict:
        """``epoch_time_s`` (the median) and ``epochs_timed`` for results.json."""
        median = round(statistics.median(self.seconds), 2) if self.seconds else None
        return {"epoch_time_s": median, "epochs_timed": len(self.seconds)}


class FlushEvents(pl.Callback):
    """Writes the TensorBoard events out at the start of every epoch, when everything of the
    epoch before is logged: a process killed in an epoch then leaves the curves of every epoch
    its ``last.ckpt`` holds, which the writer would otherwise keep in memory for up to two
    minutes (``lrnets.training.epochs`` reads them, the run's training time included)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.logger is not None:
            trainer.logger.experiment.flush()


class DistributionMonitor(pl.Callback):
    """What the weight distributions do, in TensorBoard, per discrete layer named as the paper
    names it (``conv1``, ``fc1``; ``lrnets.training.summary.layer_names``):

    - every epoch: the mean entropy (Appendix B), the mean probability of the most probable
      value, and the flip ratio, the share of weights whose most probable value changed since
      the epoch before (since initialisation after the first);
    - at initialisation (step 0) and after every epoch (step = epochs done): histograms of
      P(w=0) and P(w=1|w!=0) and the first layer's kernels (most probable weights: black -1,
      gray 0, white +1), so that before and after can be compared.
    """

    def __init__(self):
        self._modes: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        layers = self._layers(module)
        self._modes = {name: layer.distribution.probs().argmax(-1).to(torch.uint8)
                       for name, layer in layers.items()}
        if trainer.global_step == 0:  # not again when a run resumes
            self._images(trainer, module, layers, step=0)

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        layers = self._layers(module)
        for name, layer in layers.items():
            probs = layer.distribution.probs()
            top, mode = probs.max(-1)
            mode = mode.to(torch.uint8)
            module.log(f"entropy/{name}", layer.distribution.entropy().mean(), sync_dist=True)
            module.log(f"max_probability/{name}", top.mean(), sync_dist=True)
            if name in self._modes:
                flips = (mode != self._modes[name]).float().mean()
                module.log(f"flip_ratio/{name}", flips, sync_dist=True)
            self._modes[name] = mode
        self._images(trainer, module, layers, step=trainer.current_epoch + 1)

    @staticmethod
    def _layers(module: pl.LightningModule) -> dict:
        names = layer_names(module.model)
        return {names[name]: layer for name, layer in discrete_layers(module.model).items()}

    @staticmethod
    def _images(trainer: pl.Trainer, module: pl.LightningModule, layers: dict, step: int) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if (experiment is None or not hasattr(experiment, "add_histogram")
                or not trainer.is_global_zero):
            return
        for name, layer in layers.items():
            for key, p in layer.distribution.bernoulli_probabilities().items():
                experiment.add_histogram(f"{key}/{name}", p, step)
        kernels = first_layer_kernels(module.model)
        if kernels is not None:
            experiment.add_image("first_layer_kernels", kernels, step)


def first_layer_kernels(model: nn.Module, count: int = 25) -> torch.Tensor | None:
    """The first ``count`` kernels (first input channel) of the first convolution as a grid in
    [0, 1]: most probable weights of a discrete layer (Fig. 3), scaled real weights otherwise;
    None for a network without convolutions."""
    first = next((m for m in model.modules() if isinstance(m, (DiscreteConv2d, nn.Conv2d))), None)
    if first is None:
        return None
    weight = first.distribution.most_probable() if isinstance(first, DiscreteConv2d) else first.weight
    kernels = weight.detach()[:count, :1].float()
    kernels = kernels / kernels.abs().amax().clamp_min(1e-12)
    return make_grid(0.5 + 0.5 * kernels, nrow=5, padding=1, pad_value=0.5)


class SampledEvaluation(pl.Callback):
    """Every ``every_n_epochs`` epochs, score the sampled and the most probable networks on
    validation and log the best, the mean and the most probable one's accuracy
    (``val/acc_sampled_best``, ``val/acc_sampled_mean``, ``val/acc_most_probable``).

    The network best on validation so far is kept in ``best_on_val`` (``Selection.packed``,
    the earlier on a tie): the choice across epochs (``lrnets.training.run.chosen_across_epochs``,
    reported beside the choice at the end, or instead of it with ``eval.choose_across_epochs``).

    With ``score_test`` they are scored on the test split too, as the authors' code chose its
    network (7 samples scored on the test set every 4,000 steps, the best kept): the best test
    accuracy is logged (``test/acc_sampled_best``) and the lowest test error so far kept in
    ``best_on_test``; it never chooses the network a run reports. Checkpoints keep both records,
    so a resumed run goes on with them."""

    def __init__(self, every_n_epochs: int, num_samples: int, seed: int, recalibrate_bn: bool,
                 recalibration_batches: int, score_test: bool = False):
        self.every_n_epochs, self.score_test = every_n_epochs, score_test
        self.kwargs = dict(num_samples=num_samples, seed=seed, recalibrate_bn=recalibrate_bn,
                           recalibration_batches=recalibration_batches)
        self.best_on_test: dict | None = None  # {"test_error": ..., "epoch": ...}
        self.best_on_val: dict | None = None   # Selection.packed, chosen["epoch"] its epoch
        self.scored_from: int | None = None    # the first epoch best_on_val compared

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or epoch % self.every_n_epochs:
            return
        dm = trainer.datamodule
        data = EvalData(dm.batch_transform, rank_shard(dm.val_dataloader(), trainer),
                        rank_shard(dm.test_dataloader(), trainer) if self.score_test else None,
                        dm.calibration_dataloader(),
                        reduce=lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        selection = select_discrete_network(module.model, data, **self.kwargs)
        selection.chosen["epoch"] = epoch
        if self.scored_from is None:
            self.scored_from = epoch
        if self.best_on_val is None or \
                selection.chosen["val_acc"] > self.best_on_val["chosen"]["val_acc"]:
            self.best_on_val = selection.packed(module.model)
        summary = selection.summary()
        key = score_key("val", self.kwargs["recalibrate_bn"])
        module.log("val/acc_sampled_best", summary["chosen"]["val_acc"])
        most_probable = summary[selection_key(key)]
        module.log("val/acc_sampled_mean", summary[selection_key(key, "mean")] or most_probable)
        module.log("val/acc_most_probable", most_probable)
        if self.score_test:
            now = lowest_on_test(summary["candidates"], self.kwargs["recalibrate_bn"], epoch)
            module.log("test/acc_sampled_best", 1 - now["test_error"])
            self.best_on_test = lower_on_test(self.best_on_test, now)

    def state_dict(self) -> dict:
        return {"best_on_test": self.best_on_test, "best_on_val": self.best_on_val,
                "scored_from": self.scored_from}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_on_test = state_dict.get("best_on_test")
        # Earlier versions' checkpoints have no best_on_val, or one without the real-valued
        # parameters ("batch_norm" in place of "state"): the choice across epochs then starts
        # again at the first epoch scored after this resume (scored_from says which).
        best = state_dict.get("best_on_val")
        self.best_on_val = best if best is not None and "state" in best else None
        self.scored_from = state_dict.get("scored_from") if self.best_on_val is not None else None


def lowest_on_test(candidates: list[dict], recalibrated: bool, epoch: int) -> dict:
    """``{"test_error", "epoch"}`` of the lowest test error among ``candidates`` scored at
    ``epoch`` (``Selection`` scores), with batch norm as the selection uses it (re-estimated when
    ``recalibrated``)."""
    return {"test_error": 1 - max(c[score_key("test", recalibrated)] for c in candidates),
            "epoch": epoch}


def lower_on_test(best: dict | None, now: dict) -> dict:
    """The lower of two ``lowest_on_test`` records; ``best`` (the earlier) on a tie."""
    return now if best is None or now["test_error"] < best["test_error"] else best


class BatchNormReestimation(pl.Callback):
    """Sign networks (Roth et al. 2019, as the authors' code): once an epoch's training batches
    are done, before validation and after the last epoch, re-estimate the batch-norm running
    statistics on the discrete network (most probable weights, hard sign) over ``num_batches``
    training batches. Validation then scores that discrete network."""

    def __init__(self, num_batches: int):
        self.num_batches = num_batches
        self.stale = False

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args) -> None:
        self.stale = True

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._reestimate(trainer, module)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._reestimate(trainer, module)

    def _reestimate(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.stale:
            return
        model, dm = module.model, trainer.datamodule
        was_training = model.training
        momenta = [bn.momentum for bn in batch_norms(model)]
        with fixed_weights(model, draw_weights(model, None)):
            recalibrate_batch_norm(model, dm.calibration_dataloader(), dm.batch_transform,
                                   self.num_batches)
        for bn, momentum in zip(batch_norms(model), momenta):
            bn.momentum = momentum
        model.train(was_training)
        self.stale = False
