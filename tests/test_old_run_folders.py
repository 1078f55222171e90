"""Run folders written before the redesign (issue 16) still resume, export and feed the tables.

``tests/fixtures/binary_run_8e9f2a4/`` was made by the code at commit 8e9f2a4 with
``python train.py dataset=synthetic debug=fast init=random mode=binary dataset.image_size=4
dataset.num_train=64 dataset.num_test=32 dataset.val_size=16 train.batch_size=16`` (a binary
LeNet at 4 x 4 pixels, the smallest there is); its network.pt and TensorBoard events were left
out to keep it small. Its ``.hydra/config.yaml`` names the classes by their paths of that time.
"""
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lrnets.export import export
from lrnets.inference import main as eval_main
from lrnets.reproduce import Cell
from lrnets.run import train
from lrnets.tables import TABLE1, cell_row
from tests.conftest import compose_config

FIXTURE = Path(__file__).parent / "fixtures" / "binary_run_8e9f2a4"


@pytest.fixture
def old_run(tmp_path) -> Path:
    folder = tmp_path / "synthetic_binary" / "seed0"
    shutil.copytree(FIXTURE, folder)
    return folder


def test_an_old_run_resumes_for_more_epochs(old_run):
    overrides = list(OmegaConf.load(old_run / ".hydra" / "overrides.yaml"))
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
    assert row.ours["test_error"] == (87.5, None)
