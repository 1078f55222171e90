"""Two CPU processes (gloo) under Lightning's DDP: same chosen sample on both ranks, one results
file, each evaluation example counted once, metrics equal to a one-process evaluation."""
import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from lrnets.data import build_datamodule
from lrnets.training.evaluation import accuracy, fixed_weights
from lrnets.training.run import build_network
from tests.conftest import REPO, compose_config


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    proc = subprocess.run(
        [sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
         "dataset=synthetic", "debug=fast", "mode=ternary", f"paths.log_dir={tmp}",
         f"hydra.run.dir={tmp / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc


def test_one_results_file_and_one_reference(ddp_run):
    tmp, proc = ddp_run
    assert sorted(p.relative_to(tmp).parts[0] for p in tmp.rglob("results.json")) == ["references", "run"]
    [reference] = (tmp / "references").iterdir()
    assert json.loads((reference / "results.json").read_text())["world_size"] == 2
    assert proc.stdout.count("Reusing the full-precision reference") == 0  # trained once, together


def test_every_rank_chose_the_same_sample_and_counted_each_example_once(ddp_run):
    tmp, _ = ddp_run
    results = json.loads((tmp / "run" / "results.json").read_text())
    assert results["world_size"] == 2
    assert len(results["chosen_by_rank"]) == 2 and len(set(results["chosen_by_rank"])) == 1
    cfg = compose_config(tmp, "dataset=synthetic")
    assert results["eval_examples"] == {"val": cfg.dataset.val_size, "test": cfg.dataset.num_test}


def test_metrics_equal_a_one_process_evaluation_of_the_chosen_network(ddp_run):
    tmp, _ = ddp_run
    results = json.loads((tmp / "run" / "results.json").read_text())
    cfg = OmegaConf.load(tmp / "run" / ".hydra" / "config.yaml")
    saved = torch.load(tmp / "run" / "checkpoints" / "discrete.pt", weights_only=True)
    dm = build_datamodule(cfg.dataset, batch_size=cfg.train.batch_size, seed=cfg.seed)
    model = build_network(cfg, dm.in_channels, dm.num_classes, dm.image_size)
    model.load_state_dict(saved["state_dict"], strict=False)
    weights = {name: torch.tensor(saved["values"][name])[index.long()]
               for name, index in saved["weights"].items()}
    with fixed_weights(model, weights):
        test_acc = accuracy(model, dm.test_dataloader(), dm.batch_transform)
    assert abs((1 - test_acc) - results["test_error"]) < 1e-6


def test_slurm_launcher_config_composes(tmp_path):
    from hydra import compose, initialize_config_dir

    from lrnets.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8",
                                          "trainer.num_nodes=2", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) \
        == ("gpu", 2, 8, 8)
    assert launcher.max_num_timeout > 0
    assert (cfg.trainer.strategy, cfg.trainer.devices, cfg.trainer.num_nodes) == ("ddp", 8, 2)
