"""The model summary in bits: counts, value sets, bits, memory and MACs per layer."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lrnets.training.run import build_network, train
from lrnets.training.summary import layer_rows, main
from tests.conftest import compose_config


def _rows(tmp_path, *overrides, size=28):
    cfg = compose_config(tmp_path, "dataset=synthetic", *overrides)
    model = build_network(cfg, 1, 10, size)
    return {r.name: r for r in layer_rows(model, torch.zeros(1, 1, size, size))}


def test_the_papers_mnist_lenet_in_bits(tmp_path):
    """800 + 51,200 + 3136 x 512 ternary weights at 2 bits; a full-precision softmax layer;
    MACs: 28x28 outputs of 32 channels with 25 inputs each, and so on."""
    rows = _rows(tmp_path, "mode=ternary", "arch=lenet")
    assert list(rows) == ["conv1", "conv2", "fc1", "fc2"]
    assert [rows[n].weights for n in rows] == [800, 51_200, 3136 * 512, 5120]
    assert [rows[n].bits for n in rows] == [2, 2, 2, 32]
    assert rows["conv1"].values == "{-1, 0, 1}" and rows["fc2"].values == "float32"
    assert rows["conv1"].macs == 28 * 28 * 32 * 25 and rows["conv2"].macs == 14 * 14 * 64 * 800
    assert rows["fc1"].macs == 3136 * 512 and rows["fc1"].memory_bytes == 3136 * 512 / 4
    assert [rows[n].multiplications for n in rows] == ["none"] * 3 + ["every weight"]


@pytest.mark.parametrize("overrides, values, bits, multiplications", [
    (["mode=binary"], "{-1, 1}", 1, "none"),
    (["mode=twn"], "a*{-1, 0, 1}", 2, "one per output channel"),
    (["mode=binaryconnect"], "{-1, 1}", 1, "none"),
    (["mode=ternary", "weights=quinary"], "{-1, -0.5, 0, 0.5, 1}", 3, "every weight"),
])
def test_each_kind_of_weight_is_summarised(tmp_path, overrides, values, bits, multiplications):
    row = _rows(tmp_path, *overrides, "arch=lenet")["conv2"]
    assert (row.values, row.bits, row.multiplications) == (values, bits, multiplications)


def test_a_run_writes_its_summary_and_the_command_reads_the_run(smoke_config, capsys):
    cfg = smoke_config("mode=binary", "init=random")
    run = Path(train(cfg)["paths"]["run_dir"])
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # as lrnets-train's Hydra writes it
    summary = (run / "model_summary.txt").read_text()
    assert summary.startswith("layer") and "{-1, 1}" in summary and "smaller than in float32" in summary
    capsys.readouterr()
    main([str(run)])
    assert capsys.readouterr().out == summary


def test_the_command_refuses_what_is_not_a_run_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lrnets.training.summary", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "is not a run folder" in proc.stderr
    assert "Traceback" not in proc.stderr
