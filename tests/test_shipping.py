"""Shipped networks (``results/<dataset>/<mode>/``): what a shipped cell holds, that its export
alone reproduces the run's test error, and ``lrnets.pretrained`` in one line."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lrnets
from lrnets.errors import ConfigError
from lrnets.export.runner import ExportedConv2d, ExportedLinear, evaluate_export
from lrnets.paper.cells import Cell
from lrnets.paper.shipping import EPOCHS, EXPORT, SHIPPED, ship_run, shipped_cells
from lrnets.paper.tables import TABLE1, build_rows, ship_table
from lrnets.run_folder import CONFIG
from tests.conftest import REPO, SHARED_DATA, compose_config, train_as_cli
from tests.test_figures import load_script

DATA = os.environ.get("LRNETS_DATA") or str(SHARED_DATA)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A short synthetic ternary run, as the table scripts lay it out (<cell>/seed0)."""
    tmp = tmp_path_factory.mktemp("runs")
    train_as_cli(compose_config(tmp, "dataset=synthetic", "debug=fast", "init=random",
                                "mode=ternary", "trainer.log_every_n_steps=1",
                                run="synthetic_ternary/seed0"))
    return tmp


@pytest.fixture(scope="module")
def shipped(runs) -> Path:
    """That run shipped into a results folder of its own."""
    ship_run(runs / "synthetic_ternary" / "seed0", runs / "results" / "synthetic" / "ternary")
    return runs / "results"


def test_a_shipped_cell_holds_results_curves_config_and_export_only(runs, shipped):
    cell = shipped / "synthetic" / "ternary"
    assert sorted(p.name for p in cell.iterdir()) == sorted([EPOCHS, EXPORT, ".hydra",
                                                             "results.json"])
    run = runs / "synthetic_ternary" / "seed0"
    assert (cell / CONFIG).read_text() == (run / CONFIG).read_text()
    results = json.loads((cell / "results.json").read_text())
    assert results["status"] == "completed" and "paths" not in results  # no machine's folders
    with (cell / EPOCHS).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == results["epochs"] and rows[0]["train_loss"]
    assert not list(cell.rglob("*.ckpt")) and not list(cell.rglob("events.out.tfevents.*"))


def test_the_shipped_export_alone_reproduces_the_run(shipped):
    checks = evaluate_export(shipped / "synthetic" / "ternary" / EXPORT, None, 500, "cpu", True,
                             with_numpy=True)
    assert all(check.ok for check in checks), [check.text for check in checks]


def test_pretrained_gives_a_module_with_ternary_weights(shipped):
    model = lrnets.pretrained("synthetic_ternary", root=shipped)
    layers = [m for m in model.modules() if isinstance(m, (ExportedConv2d, ExportedLinear))]
    assert isinstance(model, torch.nn.Module) and not model.training and layers
    for layer in layers:
        assert set(layer.weight().unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_pretrained_names_the_shipped_networks_when_asked_for_another(shipped):
    with pytest.raises(ConfigError, match=r"pretrained\('mnist_ternary'\): no such shipped "
                                          r"network .*there are synthetic_ternary"):
        lrnets.pretrained("mnist_ternary", root=shipped)


def test_an_unfinished_run_is_not_shipped(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="not a completed run"):
        ship_run(tmp_path / "run", tmp_path / "results" / "x" / "y")


def test_the_table_script_ships_its_cells_with_a_readme(runs, tmp_path):
    cells = {("synthetic", "ternary"): Cell("synthetic_ternary", ("dataset=synthetic",
                                                                   "mode=ternary"))}
    rows = build_rows(TABLE1, cells, ["synthetic"], [0], runs)
    readme = ship_table(TABLE1, cells, rows, [0], runs, tmp_path / "results")
    text = readme.read_text()
    assert "| synthetic ternary | `synthetic/ternary` | 1 |" in text and "Machine" in text
    assert (tmp_path / "results" / "synthetic" / "ternary" / EXPORT / "manifest.json").is_file()


def compare_methods(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/compare_methods.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> Path:
    """Two synthetic runs as train.py leaves them (``base``, and ``lr`` with two changes, its
    config without ``eval.choose_across_epochs`` as an earlier version wrote it) and one that
    stopped (``stopped``: its results.json and the base's config), under ``<tmp>/runs``."""
    tmp = tmp_path_factory.mktemp("experiments")
    common = ("dataset=synthetic", "debug=fast", "mode=ternary", "init=random",
              "trainer.log_every_n_steps=1", "eval.ensemble=2")
    for name, extra in (("base", ()), ("lr", ("train.lr=0.02", "eval.recalibrate_bn=true"))):
        train_as_cli(compose_config(tmp, *common, *extra, run=f"runs/{name}"))
    older = tmp / "runs" / "lr" / CONFIG
    older.write_text(re.sub(r"\n  choose_across_epochs: false", "", older.read_text()))
    assert "choose_across_epochs" not in older.read_text()
    (tmp / "runs" / "stopped" / CONFIG).parent.mkdir(parents=True)
    shutil.copy(tmp / "runs" / "base" / CONFIG, tmp / "runs" / "stopped" / CONFIG)
    (tmp / "runs" / "stopped" / "results.json").write_text(json.dumps(
        {"status": "interrupted", "signal": "SIGTERM", "dataset": "synthetic", "mode": "ternary",
         "epochs": 1}))
    return tmp


def test_experiments_are_tabulated_by_their_changes_and_recorded_without_export(experiments):
    """``--base --record``: each run's changes to the base run, read from the composed configs,
    and each completed run's results and curves kept (no export, no checkpoints)."""
    runs, dest = experiments / "runs", experiments / "record"
    proc = compare_methods(str(runs), "--base", str(runs / "base"), "--record", str(dest),
                           "--title", "Two runs")
    assert proc.returncode == 0, proc.stderr
    header, _, *rows = proc.stdout.splitlines()[:5]
    assert header.endswith("| ensemble test error | changes from the base run |")
    assert rows[0].startswith("| base | synthetic | ternary |")
    assert "(2 networks)" in rows[0] and rows[0].endswith("| (the base run) |")
    assert rows[1].startswith("| lr |")
    assert rows[1].endswith("| `eval.recalibrate_bn=true` `train.lr=0.02` |")
    assert rows[2].startswith("| stopped | synthetic | ternary | 1 | interrupted |")
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "base", "lr"]
    for run in ("base", "lr"):
        assert sorted(p.name for p in (dest / run).iterdir()) == sorted([EPOCHS, ".hydra",
                                                                         "results.json"])
        assert "paths" not in json.loads((dest / run / "results.json").read_text())
    readme = (dest / "README.md").read_text()
    assert readme.startswith("# Two runs\n") and header in readme
    assert f"Command: `python scripts/compare_methods.py {runs} --base {runs / 'base'}" in readme


def test_a_record_is_tabulated_again_with_a_run_added_after_its_runs_are_gone(experiments,
                                                                              tmp_path):
    """The record's runs read as their folders did (results and composed configs, the base
    among them); they stay as they were, the added run is kept beside them and the heading
    stays. A record not named among the folders is refused (its runs would be replaced or
    dropped), and a kept run is recorded elsewhere with its curves as kept."""
    runs, dest = experiments / "runs", tmp_path / "record"
    assert compare_methods(str(runs / "base"), "--record", str(dest),
                           "--title", "Kept").returncode == 0
    kept = {p: p.read_bytes() for p in (dest / "runs_base").rglob("*") if p.is_file()}
    forgotten = compare_methods(str(runs / "lr"), "--record", str(dest))
    assert forgotten.returncode == 2 and "holds a record already" in forgotten.stderr
    proc = compare_methods(str(dest), str(runs / "lr"), "--base", str(dest / "runs_base"),
                           "--record", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "README.md").read_text().startswith("# Kept\n")
    rows = proc.stdout.splitlines()[2:4]
    assert rows[0].startswith("| runs_base |") and rows[0].endswith("| (the base run) |")
    assert rows[1].startswith("| runs/lr |")
    assert rows[1].endswith("| `eval.recalibrate_bn=true` `train.lr=0.02` |")
    assert {p: p.read_bytes() for p in (dest / "runs_base").rglob("*") if p.is_file()} == kept
    assert (dest / "runs_lr" / CONFIG).read_text() == (runs / "lr" / CONFIG).read_text()
    again = compare_methods(str(dest), str(runs / "base"), "--record", str(dest))
    assert again.returncode == 2 and "two runs would be kept in" in again.stderr
    elsewhere = tmp_path / "elsewhere"
    assert compare_methods(str(dest), "--record", str(elsewhere)).returncode == 0
    assert (elsewhere / "runs_lr" / EPOCHS).read_bytes() == (dest / "runs_lr" / EPOCHS).read_bytes()


@pytest.mark.parametrize("args,message", [
    (("{runs}", "--record", "{runs}/lr"), "would replace the run"),
    (("{runs}/base", "{runs}/base", "--record", "{tmp}/rec"), "two runs would be kept"),
    (("{runs}/base", "--record", str(SHIPPED / "mnist")), "experiments are kept in"),
])
def test_a_record_replaces_no_run_and_no_shipped_cell(experiments, tmp_path, args, message):
    proc = compare_methods(*(a.format(runs=experiments / "runs", tmp=tmp_path) for a in args))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (experiments / "runs" / "lr" / "base").exists()


def test_a_run_that_cannot_be_shipped_leaves_the_folder_as_it_was(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"status": "completed"}))
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / EPOCHS).write_text("epoch\n")
    with pytest.raises(ConfigError, match="TensorBoard events"):
        ship_run(tmp_path / "run", tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "run"]
    assert (tmp_path / "dest" / EPOCHS).read_text() == "epoch\n"


def test_experiment_records_are_not_shipped_cells(shipped):
    (shipped / "experiments" / "some_run").mkdir(parents=True)
    (shipped / "experiments" / "some_run" / "results.json").write_text("{}")
    try:
        assert list(shipped_cells(shipped)) == ["synthetic_ternary"]
    finally:
        shutil.rmtree(shipped / "experiments")


def test_compare_methods_with_a_base_needs_each_runs_config(shipped, tmp_path):
    cell = shipped / "synthetic" / "ternary"
    (tmp_path / "no_config").mkdir()
    shutil.copy(cell / "results.json", tmp_path / "no_config")
    proc = compare_methods(str(tmp_path), "--base", str(cell))
    assert proc.returncode == 2 and "config.yaml is missing" in proc.stderr


SHIPPED_EXPORTS = sorted(cell / EXPORT for cell in shipped_cells(SHIPPED).values()
                         if (cell / EXPORT).is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("export", SHIPPED_EXPORTS, ids=[p.parent.name for p in SHIPPED_EXPORTS])
def test_every_shipped_network_reproduces_its_test_error(export):
    """``lrnets-eval results/<dataset>/<mode>/export``, for every cell the project ships: the
    same test predictions as the run's chosen network, from the shipped files and the data."""
    manifest = json.loads((export / "manifest.json").read_text())
    if manifest["dataset"] == "mnist" and not Path(DATA, "MNIST", "raw").is_dir():
        pytest.skip(f"no MNIST under {DATA}")
    checks = evaluate_export(export, DATA, 1000, "cpu", True, with_numpy=True)
    assert all(check.ok for check in checks), [check.text for check in checks]


RECORDS = sorted(p.parent for p in (SHIPPED / "experiments").glob("*/README.md"))


@pytest.mark.parametrize("record", RECORDS, ids=[p.name for p in RECORDS])
def test_every_record_is_the_table_of_the_runs_it_keeps(record):
    """``results/experiments/<name>/README.md`` is what ``compare_methods`` tabulates from the
    record's kept runs today (its base run the row that says so): a change to the table or
    to the results a run keeps shows here, not in a stale record."""
    table = [line for line in (record / "README.md").read_text().splitlines()
             if line.startswith("|")]
    base = next(line.split(" | ")[0][2:] for line in table if "(the base run)" in line)
    script = load_script("compare_methods")
    runs = script.collect(record)
    assert script.markdown_table(runs, script.settings(record / base), record / base) == \
        "\n".join(table)
