"""Table scripts (scripts/reproduce_table1.py, reproduce_table2.py; lrnets.paper.cells,
lrnets.paper.tables): shortened schedules, the multirun commands, tables from results files."""
import csv
import json

import pytest
import torch
from torch import nn

from lrnets.config import compose_config
from lrnets.errors import ConfigError
from lrnets.paper.cells import Cell, merge_overrides, plan_cell, scaled_schedule
from lrnets.paper.tables import TABLE1, available_modes, cell_row, other_networks, table_cells
from lrnets.training.evaluation import accuracy
from tests.test_figures import load_script


def test_epochs_scale_shortens_every_schedule_to_at_least_one_epoch():
    cfg = compose_config(["experiment=paper/mnist_ternary"])
    assert scaled_schedule(cfg, 0.01) == [
        "train.epochs=2", "train.lr_milestones=[1]",
        "init.reference.epochs=1", "init.reference.lr_milestones=[1]"]
    assert scaled_schedule(cfg, 0.5)[:2] == ["train.epochs=95", "train.lr_milestones=[50]"]
    assert scaled_schedule(cfg, 1.0) == []


def test_table_discrete_cells_start_from_the_full_precision_cell(tmp_path):
    cells = table_cells(TABLE1, ["ternary", "full_precision", "twn"], ["mnist"], tmp_path)
    assert [cell.name for cell in cells.values()] == ["mnist_full_precision", "mnist_ternary",
                                                      "mnist_twn"]
    reference = f"init.checkpoint={tmp_path}/mnist_full_precision/seed${{seed}}/checkpoints/network.pt"
    assert not any(o.startswith("init.checkpoint") for o in cells["mnist", "full_precision"].overrides)
    assert reference in cells["mnist", "ternary"].overrides
    assert reference in cells["mnist", "twn"].overrides
    alone = table_cells(TABLE1, ["ternary"], ["mnist"], tmp_path)  # trains its own reference
    assert alone["mnist", "ternary"].overrides == ("experiment=paper/mnist_ternary",)


def test_later_overrides_replace_earlier_ones_of_the_same_key():
    assert merge_overrides(["a=1", "b=2"], ["+a=3", "c=4"]) == ["b=2", "+a=3", "c=4"]


def test_table1_dry_run_prints_one_multirun_per_cell(tmp_path, capsys):
    report = load_script("reproduce_table1").main(
        ["--dry-run", "--datasets", "mnist", "--seeds", "2", "--epochs-scale", "0.01",
         "--runs-dir", str(tmp_path), "+trainer.limit_train_batches=5"])
    assert report["failed"] == []
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert len(commands) == len(available_modes())  # every mode of conf/mode/, baselines too
    for mode in available_modes():
        [command] = [c for c in commands if f"/mnist_{mode} " in c]
        assert " -m " in command and "seed=0,1" in command and "limit_train_batches=5" in command
        lr_net = mode in ("binary", "ternary", "full_precision")
        assert (f"experiment=paper/mnist_{mode}" if lr_net else f"mode={mode}") in command
    ternary = next(c for c in commands if "experiment=paper/mnist_ternary" in c)
    assert "train.epochs=2" in ternary and "init.reference.epochs=1" in ternary
    assert not any(tmp_path.iterdir())  # nothing ran


def _fake_run(folder, status="completed", epochs=2, test_error=0.01, epoch_time_s=None):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(
        {"status": status, "epochs": epochs, "epochs_configured": epochs, "test_error": test_error,
         "epoch_time_s": epoch_time_s}))


def test_collect_writes_our_errors_next_to_the_papers(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    _fake_run(runs / "mnist_ternary" / "seed0", test_error=0.01, epoch_time_s=36.0)
    _fake_run(runs / "mnist_ternary" / "seed1", test_error=0.02, epoch_time_s=40.0)
    _fake_run(runs / "mnist_binary" / "seed0", test_error=0.03, epoch_time_s=18.0)
    _fake_run(runs / "mnist_binary" / "seed1", status="failed")
    _fake_run(runs / "cifar10_ternary" / "seed0", test_error=0.2)
    cifar = tmp_path / "data" / "cifar-10-batches-py"  # not the official release
    cifar.mkdir(parents=True)
    monkeypatch.setenv("LRNETS_DATA", str(tmp_path / "data"))
    out = tmp_path / "tables"
    load_script("reproduce_table1").main(["--collect", str(runs), "--seeds", "2", "--modes",
                                          "ternary", "binary", "--out", str(out)])
    md = (out / "table1.md").read_text()
    # median epoch time x 190 epochs: 38 s -> 2.01 h, 18 s -> 0.95 h
    assert "| LR-net, ternary | ternary | 1.50 ± 0.71 | 0.50 | 2 of 190 | 38.0 s, 2.01 h | 2/2 |" in md
    assert "| LR-net, binary | binary | 3.00 | 0.53 | 2 of 190 | 18.0 s, 0.95 h | 1/2 |" in md
    assert "seed 1: failed" in md
    assert "| LR-net, ternary | ternary | 20.00 | 6.74 | 2 of 290 | — | 1/2 |" in md
    assert "one seed per cell: 3.0 h" in md
    assert "not counted: cifar10 binary, cifar10 ternary." in md
    assert "| BNN | — | — | 1.40 |" in md  # the paper's row without a mode here
    assert "not measured here" in md and "JPEG re-encoding" in md
    rows = list(csv.DictReader((out / "table1.csv").open()))
    ternary = next(r for r in rows if r["dataset"] == "mnist" and r["mode"] == "ternary")
    assert float(ternary["test_error_mean_percent"]) == pytest.approx(1.5)
    assert float(ternary["paper_test_error_percent"]) == 0.5 and ternary["seeds"] == "2"
    assert float(ternary["projected_full_schedule_h"]) == pytest.approx(38 * 190 / 3600)


def test_runs_of_another_schedule_are_not_mixed_in(tmp_path):
    cell = Cell("mnist_ternary", ("experiment=paper/mnist_ternary",))
    _fake_run(tmp_path / "mnist_ternary" / "seed0", epochs=5)
    with pytest.raises(ConfigError, match="another --runs-dir"):
        plan_cell(cell, [0], tmp_path, 0.01, [])
    assert plan_cell(cell, [0, 1], tmp_path, 5 / 190, []).commands[0][-3] == "seed=1"


def test_table2_asks_for_imagenet_and_dry_runs_without_it(tmp_path, capsys):
    script = load_script("reproduce_table2")
    with pytest.raises(SystemExit) as stop:
        script.main([])
    assert stop.value.code == 2 and "--imagenet-root" in capsys.readouterr().err
    script.main(["--dry-run", "--modes", "ternary", "--runs-dir", str(tmp_path)])
    [command] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert "experiment=paper/imagenet_ternary" in command and "eval.top5=true" in command
    assert "dataset.root=IMAGENET_ROOT" in command


class FixedScores(nn.Module):
    """Scores 6, 5, ..., 0 for classes 0..6 whatever the input."""

    def __init__(self):
        super().__init__()
        self.scores = nn.Parameter(torch.arange(6.0, -1, -1))

    def forward(self, x):
        return self.scores.expand(len(x), -1)


def test_top5_accuracy_counts_the_label_among_the_five_highest_scores():
    loader = [(torch.zeros(2, 1), torch.tensor([4, 5]))]  # the 5th and the 6th highest score
    top = {k: accuracy(FixedScores(), loader, lambda x, train: x, top_k=k) for k in (1, 5, 10)}
    assert top == {1: 0.0, 5: 0.5, 10: 1.0}


@pytest.mark.slow
def test_table1_trains_missing_runs_then_collects_them(tmp_path, capsys):
    args = ["--modes", "ternary", "--datasets", "mnist", "--seeds", "2",
            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "dataset=synthetic", "debug=fast", f"paths.log_dir={tmp_path}"]
    script = load_script("reproduce_table1")
    assert script.main(args)["failed"] == []
    md = (tmp_path / "out" / "table1.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| LR-net, ternary |"))
    assert " ± " in row and "| 1 of 190 | " in row and "| 2/2 |" in row
    assert "one seed per cell:" in md  # the runs timed their epochs
    capsys.readouterr()
    script.main(args)  # everything is there: nothing is trained again
    assert "$ " not in capsys.readouterr().out


@pytest.mark.slow
def test_table2_smoke_run_reports_top1_and_top5(tmp_path):
    report = load_script("reproduce_table2").main(
        ["--smoke", "--modes", "ternary", "--out", str(tmp_path), f"paths.log_dir={tmp_path}"])
    assert report["failed"] == []
    [row] = [r for r in report["rows"] if r["mode"] == "ternary"]
    assert row["seeds"] == 1 and row["ours"]["test_error"] and row["ours"]["test_error_top5"]
    assert row["ours"]["test_error_top5"][0] <= row["ours"]["test_error"][0]
    assert (tmp_path / "table2_smoke.md").is_file() and (tmp_path / "table2_smoke.csv").is_file()


def test_a_run_in_progress_is_named_so_in_the_table(tmp_path):
    checkpoints = tmp_path / "synthetic_binary" / "seed0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"epoch": 4}, checkpoints / "last.ckpt")  # 5 epochs trained
    cell = Cell("synthetic_binary", ("dataset=synthetic", "mode=binary"))
    row = cell_row(TABLE1, cell, "synthetic", "binary", [0, 1], tmp_path)
    assert row.status == f"seed 0: in progress, 5 of {row.epochs_full} epochs; seed 1: not run"


def test_a_shipped_cell_lists_the_networks_it_did_not_report():
    """results/README.md's shipped cells: the reported test error, then the most probable
    network's (with the batch norm of the choice), the ensemble's and, with eval.score_test,
    the one the authors' protocol would have chosen on the test split."""
    results = {"test_error": 0.0067, "recalibrated_bn": True, "ensemble_size": 10,
               "most_probable_test_error": 0.006, "most_probable_test_error_recalibrated": 0.0063,
               "ensemble_test_error": 0.0054, "test_error_chosen_on_test": 0.0051,
               "epoch_chosen_on_test": 130}
    assert other_networks(results) == (
        "0.67%; most probable 0.63% (batch norm re-estimated); ensemble of 10 0.54%; chosen on "
        "test (the authors' protocol, optimistic) 0.51% at epoch 130")
    assert other_networks({"test_error": 0.0056}) == "0.56%"
