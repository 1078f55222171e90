"""Configurations an outside check found to fail (issue 18): each either trains or stops with
one paragraph naming the option; none loses work already written."""
import json
from pathlib import Path

import pytest
import torch

from lrnets.data import build_datamodule
from lrnets.errors import ConfigError
from lrnets.nn.distributions import TernaryWeights
from lrnets.nn.layers import DiscreteConv2d, LocalReparameterization
from lrnets.training.run import train


def test_a_final_training_batch_of_one_example_is_dropped(smoke_config):
    """448 training examples = 3 x 149 + 1: batch norm after the fully connected layer cannot
    train on the last one, so the epoch has 149 batches of 3 and the run completes."""
    cfg = smoke_config("arch=mlp", "init=random", "train.batch_size=3",
                       "trainer.limit_train_batches=1.0")
    dm = build_datamodule(cfg.dataset, batch_size=3, seed=0)
    dm.setup("fit")
    sizes = [len(y) for _, y in dm.train_dataloader()]
    assert len(sizes) == 149 and set(sizes) == {3}
    assert train(cfg)["status"] == "completed"
    assert (Path(cfg.paths.output_dir) / "results.json").is_file()


def test_other_final_batches_are_kept(smoke_config):
    cfg = smoke_config("train.batch_size=5")
    dm = build_datamodule(cfg.dataset, batch_size=5, seed=0)
    assert [len(y) for _, y in dm.train_dataloader()][-1] == 448 % 5


def test_a_batch_size_that_cannot_train_is_refused(smoke_config):
    with pytest.raises(ConfigError, match=r"train\.batch_size=1 is not allowed: use a batch "
                                          r"size >= 2 \(batch norm"):
        train(smoke_config("train.batch_size=1", "init=random"))


def test_a_training_split_of_one_example_is_refused(smoke_config):
    with pytest.raises(Exception, match=r"dataset\.val_size=511 is not allowed.*between 1 and 510"):
        train(smoke_config("dataset.val_size=511", "init=random"))


def test_the_papers_form_without_eps_has_finite_gradients_on_blank_patches():
    """eps = 0 (sqrt(v^2), the paper's eq. 4): where an input patch is all zero v = 0, and the
    gradient there is 0, not noise / 0 times h^2 = 0 (NaN)."""
    torch.manual_seed(0)
    layer = DiscreteConv2d(2, 4, 3, padding=1, distribution=TernaryWeights,
                           method=LocalReparameterization(eps=0.0))
    x = torch.rand(2, 2, 8, 8)
    x[:, :, :4] = 0  # the top half of every image is blank
    layer(x).square().sum().backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_negative_eps_is_refused(smoke_config):
    """Found by the config fuzzer: sqrt(v^2 + eps) with eps < 0 is NaN where v^2 < -eps."""
    with pytest.raises(ConfigError, match=r"mode\.layers\.eps=-0\.001 is not allowed: use a value >= 0"):
        train(smoke_config("init=random", "mode.layers.eps=-1e-3"))


def test_the_papers_form_without_eps_trains(smoke_config):
    results = train(smoke_config("init=random", "mode.layers.eps=0", "dataset.image_size=12",
                                 "train.epochs=2"))
    assert results["status"] == "completed"


@pytest.mark.parametrize("arch,size,smallest", [("lenet", 3, 4), ("vgg", 5, 8)])
def test_an_image_too_small_for_the_architecture_names_the_smallest_size(smoke_config, arch,
                                                                         size, smallest):
    with pytest.raises(ConfigError, match=rf"dataset\.image_size={size} is not allowed: "
                                          rf"arch={arch} needs images of at least {smallest} x "):
        train(smoke_config(f"arch={arch}", f"dataset.image_size={size}", "init=random"))


def test_an_empty_file_or_a_folder_as_init_checkpoint(smoke_config, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"could not be read .*the file is empty \(0 bytes\)"):
        train(smoke_config(f"init.checkpoint={tmp_path / 'empty.pt'}", run="empty"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"is a folder without checkpoints/network\.pt"):
        train(smoke_config(f"init.checkpoint={tmp_path / 'folder'}", run="folder"))


def test_a_run_folder_as_init_checkpoint(smoke_config):
    reference = smoke_config("mode=full_precision", run="reference")
    train(reference)
    results = train(smoke_config(f"init.checkpoint={reference.paths.output_dir}"))
    assert results["init_checkpoint"].endswith("checkpoints/network.pt")


def test_a_damaged_last_checkpoint_falls_back_to_the_epoch_before(smoke_config, capfd):
    cfg = smoke_config("init=random", "train.epochs=2")
    train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    assert torch.load(checkpoints / "previous.ckpt", weights_only=True)["epoch"] == 0
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    results = train(smoke_config("init=random", "train.epochs=3", "ckpt_path=last"))
    assert "cannot be read" in capfd.readouterr().err
    assert results["status"] == "completed" and results["epochs"] == 3
    assert results["resumed_from"].endswith("previous.ckpt")
    assert (checkpoints / "last.ckpt.damaged").is_file()
    assert json.loads((checkpoints.parent / "results.json").read_text())["epochs"] == 3


def test_a_damaged_last_checkpoint_without_a_previous_one_is_refused(smoke_config):
    cfg = smoke_config("init=random")
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"cannot be read as a checkpoint .*no .*previous\.ckpt"):
        train(smoke_config("init=random", "ckpt_path=last"))
    assert last.is_file()
