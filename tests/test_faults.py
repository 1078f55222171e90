"""Runs that survive faults: resume with ckpt_path=last (also after a real SIGKILL), SIGINT and
SIGTERM, a loss that stops being finite, and reproducible results."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrnets.errors import ConfigError, RunStopped
from lrnets.seeding import EpochShuffledSampler
from lrnets.training.epochs import epoch_rows, training_seconds
from lrnets.training.module import LRNetModule
from lrnets.training.resume import decisive_config
from lrnets.training.run import train
from tests.conftest import REPO, compose_config

DETERMINISTIC = ["mode=ternary", "init=random", "trainer.deterministic=true",
                 "train.lr_milestones=[2]"]
# Epochs long enough (16 batches) to stop a run in the middle of one.
LONG_EPOCHS = ["dataset.num_train=1088", "trainer.limit_train_batches=null", "train.epochs=3"]
TIMING_AND_PLACE = ("wall_time_s", "epoch_time_s", "epochs_timed", "paths", "resumed_from")


def comparable(results: dict) -> dict:
    """A results file without what differs between equal runs: timings and paths."""
    return {k: v for k, v in results.items() if k not in TIMING_AND_PLACE}


def network(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "network.pt", weights_only=True)["state_dict"]


def assert_same_network(a: Path, b: Path) -> None:
    first, second = network(a), network(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_rerun_and_resumed_run_end_with_identical_results(smoke_config):
    """Two runs with the same seed write the same results and weights; so does a run stopped
    after epoch 1 of 3 and continued with ckpt_path=last, which trains epochs 2 and 3 with the
    data order and noise of the run that never stopped."""
    whole = train(smoke_config(*DETERMINISTIC, "train.epochs=3", run="whole"))
    again = train(smoke_config(*DETERMINISTIC, "train.epochs=3", run="again"))
    assert comparable(again) == comparable(whole)
    assert_same_network(Path(again["paths"]["run_dir"]), Path(whole["paths"]["run_dir"]))

    train(smoke_config(*DETERMINISTIC, "train.epochs=1", run="parts"))
    resumed = train(smoke_config(*DETERMINISTIC, "train.epochs=3", "ckpt_path=last", run="parts"))
    run_dir = Path(resumed["paths"]["run_dir"])
    assert resumed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert comparable(resumed) == comparable(whole)
    assert_same_network(run_dir, Path(whole["paths"]["run_dir"]))


def test_training_order_depends_on_seed_and_epoch_only():
    data = range(100)
    sampler = EpochShuffledSampler(data, seed=0)
    sampler.set_epoch(3)
    again = EpochShuffledSampler(data, seed=0)
    again.set_epoch(3)
    assert list(sampler) == list(again) and sorted(sampler) == list(data)
    again.set_epoch(4)
    assert list(again) != list(sampler)
    assert list(EpochShuffledSampler(data, seed=1)) != list(EpochShuffledSampler(data, seed=0))


def test_resume_with_other_settings_is_refused_naming_them(smoke_config):
    train(smoke_config(*DETERMINISTIC, run="run"))
    changed = r"mode\.name='ternary' there, 'binary' now.*train\.lr=0\.01 there, 0\.5 now"
    with pytest.raises(ConfigError, match=changed):
        train(smoke_config(*DETERMINISTIC, "train.lr=0.5", "mode=binary", "ckpt_path=last"))
    with pytest.raises(ConfigError, match=r"trainer\.limit_train_batches=3 there, 2 now"):
        train(smoke_config(*DETERMINISTIC, "trainer.limit_train_batches=2", "ckpt_path=last"))


def test_how_the_maps_are_computed_is_not_a_setting_of_the_experiment(tmp_path):
    """The fused and unfused LR layers compute the same maps, so a run may continue with the
    other form; the layers' eps changes the model and is compared."""
    decisive = decisive_config(compose_config(tmp_path, "mode=ternary"))
    assert "mode.layers.fused" not in decisive and decisive["mode.layers.eps"] == 1e-3


def test_checkpoints_that_recorded_a_setting_no_longer_compared_still_resume(smoke_config):
    """Checkpoints written before ``mode.layers.fused`` left the compared settings hold it, and
    checkpoints written before the trainer's limits joined them do not hold those."""
    train(smoke_config(*DETERMINISTIC, run="run"))
    last = Path(smoke_config(*DETERMINISTIC, run="run").paths.output_dir) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    checkpoint["lrnets_config"]["mode.layers.fused"] = True
    for key in ("trainer.limit_train_batches", "trainer.max_steps"):
        del checkpoint["lrnets_config"][key]
    torch.save(checkpoint, last)
    assert train(smoke_config(*DETERMINISTIC, "ckpt_path=last", run="run"))["status"] == "completed"


def test_a_new_run_does_not_overwrite_an_existing_one(smoke_config):
    first = train(smoke_config(*DETERMINISTIC))
    results = Path(first["paths"]["results"])
    before = results.read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*ckpt_path=last"):
        train(smoke_config(*DETERMINISTIC, "seed=3"))
    assert results.read_bytes() == before


def test_ckpt_path_last_starts_afresh_until_there_is_a_checkpoint(smoke_config, tmp_path):
    assert "resumed_from" not in train(smoke_config(*DETERMINISTIC, "ckpt_path=last"))
    assert "resumed_from" in train(smoke_config(*DETERMINISTIC, "ckpt_path=last"))
    with pytest.raises(ConfigError, match="ckpt_path=.*absent.ckpt is not allowed: there is no"):
        train(smoke_config(*DETERMINISTIC, f"ckpt_path={tmp_path / 'absent.ckpt'}", run="other"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(smoke_config,
                                                                          monkeypatch):
    real_step = LRNetModule.training_step

    def step_that_diverges_in_epoch_2(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * float("nan") if self.current_epoch == 1 else loss

    monkeypatch.setattr(LRNetModule, "training_step", step_that_diverges_in_epoch_2)
    cfg = smoke_config(*DETERMINISTIC, "train.epochs=3")
    with pytest.raises(RunStopped, match="loss became nan in epoch 2.*holds the first 1 epoch"):
        train(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "failed" and results["epochs"] == 1
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    weights = [t for t in last["state_dict"].values() if t.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in weights)


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """The run as a child process. SIGINT gets its default action back in the child: a shell
    starts background jobs (``make test &``, CI runners) with SIGINT ignored, which the child
    would inherit, and Python then never raises KeyboardInterrupt."""
    return subprocess.Popen(
        [sys.executable, "train.py", "dataset=synthetic", "debug=fast", "trainer.accelerator=cpu",
         *DETERMINISTIC, *LONG_EPOCHS, f"hydra.run.dir={run_dir}", *overrides],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_first_epoch(proc: subprocess.Popen, run_dir: Path) -> None:
    """Until the checkpoint of epoch 1 is written (the run is then inside epoch 2)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "no checkpoint after 240 s"
        time.sleep(0.02)


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_uninterrupted_results(tmp_path, smoke_config):
    """SIGKILL in epoch 2 loses that epoch only; resumed, the run ends as one never killed."""
    run_dir = tmp_path / "killed"
    proc = _start(run_dir)
    _wait_for_first_epoch(proc, run_dir)
    time.sleep(1)  # past epoch 2's start (an epoch here takes several seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert not (run_dir / "results.json").exists()

    resumed = train(smoke_config(*DETERMINISTIC, *LONG_EPOCHS, "ckpt_path=last", run="killed"))
    whole = train(smoke_config(*DETERMINISTIC, *LONG_EPOCHS, run="whole"))
    assert comparable(resumed) == comparable(whole)
    assert_same_network(run_dir, tmp_path / "whole")
    # Its training time counts the killed process's epoch too: every epoch once.
    times = [row["epoch_time_s"] for row in epoch_rows(run_dir)]
    assert resumed["epochs_timed"] == 2 and len(times) == 3 and None not in times
    assert training_seconds(run_dir) == pytest.approx(sum(times))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_save_a_checkpoint_and_report_interrupted(tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    _wait_for_first_epoch(proc, run_dir)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted" and results["signal"] == signal.Signals(signum).name
    assert results["epochs"] == 1
    interrupted = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 16)
    assert interrupted["global_step"] >= 16  # in epoch 2, whose steps last.ckpt lacks
    message = stderr[stderr.index("lrnets: interrupted"):]
    assert "Traceback" not in stderr and message.count("\n") == 1
    assert f"ckpt_path=last hydra.run.dir={run_dir}" in message
