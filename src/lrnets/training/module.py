"""The Lightning module that trains a network of discrete weight distributions (sec. 3-5)."""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrnets.nn.distributions import WeightDistribution


class LRNetModule(pl.LightningModule):
    """Cross-entropy of the stochastic network plus the paper's regularisers.

    loss = mean CE + probability_decay * sum(logits^2) / 2      (ternary, sec. 4.2)
                   + beta * sum p (1 - p)                         (binary, sec. 4.3)
    The probability decay is Adam's (L2) weight decay on the logits: Adam adds its gradient,
    probability_decay * logit, to theirs, which costs no pass over the logits of its own; its
    value is logged with the beta term as ``train/regularizer``. Weight decay is applied by Adam
    to the parameters ``weight_decay_scope`` names: the last (softmax) layer only in discrete
    runs, every weight in full-precision runs.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        lr_milestones: list[int],
        lr_gamma: float,
        weight_decay: float,
        weight_decay_scope: str,
        probability_decay: float = 0.0,
        beta: float = 0.0,
        logit_lr: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.distributions = [m for m in model.modules() if isinstance(m, WeightDistribution)]
        # Latent-weight clips (BinaryConnect) and temperature schedules (Gumbel-softmax).
        self.step_hooks = [m.after_optimizer_step for m in model.modules()
                           if hasattr(m, "after_optimizer_step")]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def regularization(self) -> Tensor:
        """The regulariser the loss differentiates: beta * sum p (1 - p) (sec. 4.3)."""
        return self._summed(self.hparams.beta, lambda dist: dist.beta_density())

    @torch.no_grad()
    def probability_decay_value(self) -> Tensor:
        """probability_decay * sum(logits^2) / 2 (sec. 4.2), the term Adam's decay minimises."""
        return self._summed(self.hparams.probability_decay, lambda dist: dist.logit_l2())

    def _summed(self, coefficient: float, term: Callable[[WeightDistribution], Tensor]) -> Tensor:
        """coefficient * the sum of ``term`` over the network's distributions (0 when it is 0).
        ``term`` calls the distribution's own method, so that a subclass's override is used."""
        total = torch.zeros((), device=self.device)
        if coefficient:
            for dist in self.distributions:
                total = total + coefficient * term(dist)
        return total

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", sync_dist=stage != "train")
        self.log(f"{stage}/acc", acc, prog_bar=True, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        if self.distributions:
            reg = self.regularization()
            self.log("train/regularizer", reg.detach() + self.probability_decay_value())
            loss = loss + reg
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Adam groups: distribution logits (decayed by the probability decay), weight-decayed
        weights, and the rest."""
        hp = self.hparams
        logit_ids = {id(p) for d in self.distributions for p in d.parameters()}
        head = self.model.head
        if hp.weight_decay_scope == "last":  # a discrete softmax layer (sign nets) has no real weight
            decayed_ids = {id(head.weight)} if isinstance(head, nn.Linear) else set()
        else:  # "all": every conv / linear weight
            decayed_ids = {id(m.weight) for m in self.model.modules()
                           if isinstance(m, (nn.Conv2d, nn.Linear))}
        groups: dict[str, list[nn.Parameter]] = {"logits": [], "decayed": [], "other": []}
        for p in self.model.parameters():
            key = "logits" if id(p) in logit_ids else "decayed" if id(p) in decayed_ids else "other"
            groups[key].append(p)
        settings = {
            "logits": {"lr": hp.logit_lr or hp.lr, "weight_decay": hp.probability_decay},
            "decayed": {"lr": hp.lr, "weight_decay": hp.weight_decay},
            "other": {"lr": hp.lr, "weight_decay": 0.0},
        }
        return [{"params": params, **settings[key]} for key, params in groups.items() if params]

    def optimizer_step(self, *args, **kwargs) -> None:
        """Adam's update, then every ``after_optimizer_step(progress)`` hook of the network."""
        super().optimizer_step(*args, **kwargs)
        self._run_step_hooks(self.trainer.global_step + 1)  # this step is counted after the hook

    def on_train_start(self) -> None:
        self._run_step_hooks(self.trainer.global_step)  # a resumed run continues its schedules

    def _run_step_hooks(self, steps_done: int) -> None:
        progress = min(1.0, steps_done / max(1, self.trainer.estimated_stepping_batches))
        for hook in self.step_hooks:
            hook(progress)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=hp.lr, fused=True)  # one kernel
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.lr_milestones), hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
