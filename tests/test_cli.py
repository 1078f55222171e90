"""The command line: `python train.py ...`, `lrnets-train`, errors without tracebacks."""
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

FAST = ["dataset=synthetic", "debug=fast", "trainer.accelerator=cpu", "init=random"]


def _train(tmp_path, *args, flags=()):
    return subprocess.run([sys.executable, "train.py", *flags, *FAST, f"paths.log_dir={tmp_path}",
                           *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_train_py_runs_and_prints_where_results_are(tmp_path):
    proc = _train(tmp_path, "mode=ternary")
    assert proc.returncode == 0, proc.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("_synthetic_ternary")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["mode"] == "ternary"
    assert f"results:     {run_dir / 'results.json'}" in proc.stdout
    assert "-m tensorboard.main --logdir" in proc.stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_multirun_sweeps(tmp_path):
    proc = _train(tmp_path, "mode=binary,ternary", flags=["-m"])
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.parent.name for p in (tmp_path / "multiruns").glob("*/*/results.json"))
    assert runs == ["0_synthetic_binary", "1_synthetic_ternary"]


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("lrnets-train")
    proc = subprocess.run([str(script), "dataset=synthetic", "--cfg", "job"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "name: synthetic" in proc.stdout


def test_bad_value_is_one_paragraph_and_exit_2(tmp_path):
    proc = _train(tmp_path, "init.p_min=0.99")
    assert proc.returncode == 2
    assert "init.p_min=0.99" in proc.stderr and "init.p_max" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "runs").iterdir())  # a rejected command leaves no run folder


def test_overrides_that_do_not_compose_are_one_paragraph_and_exit_2(tmp_path):
    """Before Hydra starts: an unknown option names its node's options, an unknown group choice
    the group's, a moved option its new place; no run folder is left."""
    for override, allowed in [("mode.bta=1", "its options: name, layers"),
                              ("arch=x", "allowed: auto, custom, lenet, mlp"),
                              ("mode.beta=0.1", "mode.beta is now regularizer.beta")]:
        proc = _train(tmp_path, override)
        assert proc.returncode == 2, (override, proc.stderr)
        err = proc.stderr.strip()
        assert override in err and allowed in err and "\n" not in err, err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_the_console_is_quiet_one_line_per_epoch_in_a_file(tmp_path):
    proc = _train(tmp_path, "mode=ternary", "trainer.enable_progress_bar=true",
                  "eval.recalibrate_bn=true")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for noise in ("GPU available", "TPU available", "Tip:", "Total Flops", "Seed set",
                  "deprecated", "\r"):
        assert noise not in out, noise
    assert "epoch 1/1, train_loss" in proc.stdout  # stdout is a pipe: lines, not a bar
    choosing = [line for line in proc.stdout.splitlines() if line.startswith("  network ")]
    assert [line.split(" (")[0] for line in choosing] == [
        f"  network {i}/3" for i in (1, 2, 3)]  # the most probable and 2 sampled networks
    assert "(most_probable, batch norm re-estimated): val " in choosing[0]
    assert "the network chosen on validation" in proc.stdout
    assert "batch norm as trained: sampled networks" in proc.stdout
    assert "batch norm re-estimated: sampled networks" in proc.stdout
    [run_dir] = (tmp_path / "runs").iterdir()
    assert not (run_dir / "cli.log").exists()  # nothing logged, no empty log file
