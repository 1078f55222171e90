"""Run folders written before the redesign (issue 16) still resume, export and feed the tables.

``fixtures/run_before_redesign.tar.xz`` (0.9 MB) is the run folder the code at commit 8e9f2a4,
the last before the redesign, wrote for ``python train.py dataset=synthetic debug=fast
init=random mode=binary dataset.image_size=4 dataset.num_train=64 dataset.num_test=32
dataset.val_size=16 train.batch_size=16 trainer.accelerator=cpu``: a binary LeNet at 4 x 4
pixels, the smallest there is, kept as written (its TensorBoard event files aside) so the test
does not depend on that code still running. Its ``.hydra/config.yaml`` names the classes by
their paths of that time. To make it again: ``git archive 8e9f2a4 src conf train.py``, run that
command there with ``PYTHONPATH=src``, and tar the run folder's contents.
"""
import json
import tarfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lrnets.export.runner import main as eval_main
from lrnets.export.writer import export
from lrnets.paper.cells import Cell
from lrnets.paper.tables import TABLE1, cell_row
from lrnets.run_folder import read_config
from lrnets.training.run import build_network, train
from lrnets.training.summary import main as summary_main, summary_text
from tests.conftest import compose_config

FIXTURE = Path(__file__).parent / "fixtures" / "run_before_redesign.tar.xz"


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A fresh copy of the old run folder, laid out as a table's cell (``<cell>/seed0``)."""
    folder = tmp_path / "synthetic_binary" / "seed0"
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(folder, filter="data")
    return folder


def test_an_old_run_resumes_for_more_epochs(old_run):
    overrides = [o for o in OmegaConf.load(old_run / ".hydra" / "overrides.yaml")
                 if not o.startswith(("hydra.", "trainer.accelerator"))]
    cfg = compose_config(old_run.parent, *overrides, "ckpt_path=last", "train.epochs=2",
                         run=old_run.name)
    results = train(cfg)
    assert results["status"] == "completed" and results["epochs"] == 2
    assert json.loads((old_run / "results.json").read_text())["epochs"] == 2


def test_an_old_run_exports_and_its_export_reproduces_it(old_run, tmp_path, capsys):
    export(old_run, tmp_path / "export")
    with pytest.raises(SystemExit) as stop:
        eval_main([str(tmp_path / "export")])
    assert stop.value.code == 0 and "identical" in capsys.readouterr().out


def test_an_old_run_feeds_the_tables(old_run):
    cell = Cell("synthetic_binary", ("dataset=synthetic", "mode=binary"))
    row = cell_row(TABLE1, cell, "synthetic", "binary", [0], old_run.parents[1])
    assert row.seeds == 1 and row.epochs_run == [1]
    test_error = json.loads((old_run / "results.json").read_text())["test_error"]
    assert row.ours["test_error"] == (100 * test_error, None)


def test_an_old_runs_config_names_this_versions_classes(old_run, capsys):
    """Its ``.hydra/config.yaml`` names ``lrnets.layers.LRLayers``; the summary and the figures
    read it through ``read_config``, which names the classes where they are now."""
    recorded = OmegaConf.load(old_run / ".hydra" / "config.yaml")
    assert recorded.mode.layers._target_ == "lrnets.layers.LRLayers"
    cfg = read_config(old_run)
    assert cfg.mode.layers._target_ == "lrnets.nn.layers.LRLayers"
    assert cfg.mode.layers.distribution._target_ == "lrnets.nn.distributions.BinaryWeights"
    assert "fc1" in summary_text(build_network(cfg, 1, 10, 4), torch.zeros(1, 1, 4, 4))
    summary_main([str(old_run)])  # lrnets-summary RUN
    assert "fc1" in capsys.readouterr().out
