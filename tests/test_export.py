"""Exported discrete networks: packed weights, folded batch norms, the plain-PyTorch inference
module, lrnets-export / lrnets-eval, the ONNX graph checked with onnxruntime, the NumPy integer
runner and the QONNX graph run by qonnx's executor."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lrnets.data import build_datamodule
from lrnets.errors import ConfigError
from lrnets.export.bitpacking import pack, unpack
from lrnets.export.integer_inference import levels_of
from lrnets.export.runner import ExportedConv2d, ExportedLinear, evaluate_export, load_export
from lrnets.export.runner import main as eval_main
from lrnets.export.writer import export
from lrnets.export.writer import main as export_main
from lrnets.nn.distributions import bits_for
from lrnets.nn.quantized_layers import quantized_layers
from lrnets.nn.sign_layers import ThresholdSign
from lrnets.training.evaluation import fixed_weights
from lrnets.training.run import build_network, train
from tests.conftest import compose_config

SMALL_RGB = ["dataset.channels=3", "dataset.image_size=8"]  # VGG and ResNet-18 fit 8x8 images


@pytest.mark.parametrize("num_values", [2, 3, 4, 5, 17])
def test_codes_survive_packing(num_values):
    bits = bits_for(num_values)
    codes = torch.randint(0, num_values, (1001,), generator=torch.Generator().manual_seed(0))
    data = pack(codes.numpy(), bits)
    assert len(data) == -(-1001 * bits // 8)
    assert (unpack(data, bits, 1001) == codes.numpy()).all()
    assert (bits_for(2), bits_for(3), bits_for(4), bits_for(5)) == (1, 2, 2, 3)


@pytest.fixture(scope="module")
def ternary_run(tmp_path_factory):
    """One short ternary LeNet run on synthetic data, shared by the tests of this file."""
    cfg = compose_config(tmp_path_factory.mktemp("ternary"), "dataset=synthetic", "debug=fast",
                         "init=random", "mode=ternary")
    train(cfg)
    return cfg


def _training_side_logits(cfg, run_dir: Path, images: torch.Tensor) -> torch.Tensor:
    """The run's chosen network as training left it: LR layers with the chosen weights fixed."""
    saved = torch.load(run_dir / "checkpoints" / "discrete.pt", weights_only=True)
    meta = saved["meta"]
    model = build_network(cfg, meta["in_channels"], meta["num_classes"], meta["image_size"])
    trained = torch.load(run_dir / "checkpoints" / "network.pt", weights_only=True)["state_dict"]
    model.load_state_dict(trained)
    model.load_state_dict(saved["state_dict"], strict=False)
    weights = {name: torch.tensor(saved["values"][name])[indices.long()]
               for name, indices in saved["weights"].items()}
    with fixed_weights(model, weights), torch.no_grad():
        return model.eval()(images)


@pytest.mark.parametrize("overrides,bits,ratio", [
    (None, 2, 15),
    (["mode=binary", "arch=mlp", "mode.first_layer=full_precision"], 1, 30),
], ids=["ternary-lenet", "binary-mlp-fp-first"])
def test_export_runs_the_chosen_network_with_discrete_weights(ternary_run, smoke_config, tmp_path,
                                                              overrides, bits, ratio):
    if overrides is None:
        cfg = ternary_run
    else:
        cfg = smoke_config("init=random", *overrides)
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    manifest = export(run_dir, tmp_path / "export", with_qonnx=True)
    size = manifest["size"]
    assert 4 * size["discrete_weights"] / size["discrete_bytes"] >= ratio
    packed = [e for e in manifest["tensors"] if e["encoding"] == "packed"]
    assert packed and all(e["bits"] == bits for e in packed)
    assert manifest["tensors"][-1]["name"] == "head.bias" and not any(
        "running" in e["name"] for e in manifest["tensors"])

    model, _ = load_export(tmp_path / "export")
    discrete = [m for m in model.modules() if isinstance(m, (ExportedConv2d, ExportedLinear))]
    allowed = {-1.0, 1.0} if bits == 1 else {-1.0, 0.0, 1.0}
    assert discrete and all(set(m.weight().unique().tolist()) <= allowed for m in discrete)
    dm = build_datamodule(cfg.dataset, batch_size=128, seed=0)
    images = dm.batch_transform(next(iter(dm.test_dataloader()))[0])
    with torch.no_grad():
        exported = model(images)
    expected = _training_side_logits(cfg, run_dir, images)
    assert torch.equal(exported.argmax(-1), expected.argmax(-1))
    torch.testing.assert_close(exported, expected, rtol=1e-5, atol=1e-5)
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", False, with_numpy=True,
                             with_qonnx=True)
    assert all(check.ok for check in checks), [check.text for check in checks]
    quantizers = _qonnx_ops(tmp_path / "export")
    assert quantizers.count("BipolarQuant" if bits == 1 else "Quant") == len(discrete)


@pytest.mark.slow
@pytest.mark.parametrize("arch,overrides", [
    ("vgg", ["mode=ternary"]),
    ("resnet18", ["mode=binary", "mode.first_layer=full_precision"]),
])
def test_every_architecture_exports(smoke_config, tmp_path, arch, overrides):
    """Untrained (train.epochs=0) networks: the export rebuilds the architecture, shortcuts and
    batch norms included, and reproduces the run's test predictions."""
    cfg = smoke_config("init=random", f"arch={arch}", "train.epochs=0", *SMALL_RGB, *overrides)
    train(cfg)
    export(Path(cfg.paths.output_dir), tmp_path / "export", with_qonnx=True)
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", False, with_numpy=True,
                             with_qonnx=True)
    assert all(check.ok for check in checks), [check.text for check in checks]


@pytest.mark.parametrize("overrides", [[], ["arch=mlp", "weights=quinary"]],
                         ids=["ternary-lenet", "quinary-mlp"])
def test_sign_networks_export_as_thresholds(smoke_config, tmp_path, overrides):
    """Roth et al.'s sign networks: every batch norm and sign folded into one threshold per
    channel, discrete weights throughout (the softmax layer too); the export, and the NumPy
    runner computing their hidden layers in integers, make the run's test predictions."""
    cfg = smoke_config("init=random", "activation=sign", *overrides)
    train(cfg)
    manifest = export(Path(cfg.paths.output_dir), tmp_path / "export", with_qonnx=True)
    ops = [op["op"] for op in manifest["graph"]]
    assert "threshold" in ops and "scale_shift" not in ops and "relu" not in ops
    assert ops[-2:] == ["linear", "affine"] and manifest["graph"][-2]["discrete"]
    assert manifest["architecture"]["activation"] == "sign"
    model, _ = load_export(tmp_path / "export")
    assert any(isinstance(m, ThresholdSign) for m in model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", False, with_numpy=True,
                             with_qonnx=True)
    assert all(check.ok for check in checks), [check.text for check in checks]
    qonnx_ops = _qonnx_ops(tmp_path / "export")
    assert qonnx_ops.count("MultiThreshold") == ops.count("threshold")
    assert "BatchNormalization" not in qonnx_ops and "Relu" not in qonnx_ops
    # the manifest names the code that builds the network; one of an earlier version, which
    # names its architecture and activation only, builds the same network from those names
    architecture = manifest["architecture"]
    assert architecture["blocks"] == "lrnets.models.sign.sign_blocks"
    assert architecture["builder"].startswith("lrnets.models.architectures.")
    path = tmp_path / "export" / "manifest.json"
    earlier = json.loads(path.read_text())
    del earlier["architecture"]["blocks"], earlier["architecture"]["builder"]
    path.write_text(json.dumps(earlier))
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", False)
    assert all(check.ok for check in checks), [check.text for check in checks]


def _qonnx_ops(folder: Path) -> list[str]:
    import onnx

    return [node.op_type for node in onnx.load(str(folder / "network.qonnx.onnx")).graph.node]


@pytest.mark.parametrize("values,levels,step", [
    ([-1.0, 1.0], [-1, 1], 1.0), ([-1.0, 0.0, 1.0], [-1, 0, 1], 1.0),
    ([-1.0, -1 / 3, 1 / 3, 1.0], [-3, -1, 1, 3], 1 / 3),
    ([-1.0, -0.5, 0.0, 0.5, 1.0], [-2, -1, 0, 1, 2], 0.5),
])
def test_discrete_weights_run_as_integer_levels(values, levels, step):
    found, found_step = levels_of(values)
    assert found.dtype == np.int8 and found.tolist() == levels and found_step == pytest.approx(step)
    off_lattice, one = levels_of([-1.0, 0.0, 2 ** 0.5])
    assert off_lattice.dtype == np.float32 and one == 1.0


def test_the_integer_runner_needs_no_torch(ternary_run, tmp_path):
    """lrnets.export.integer_inference runs an export in a process where torch cannot be imported."""
    export(Path(ternary_run.paths.output_dir), tmp_path / "export")
    dm = build_datamodule(ternary_run.dataset, batch_size=128, seed=0)
    images = dm.batch_transform(next(iter(dm.test_dataloader()))[0], train=False)
    np.save(tmp_path / "images.npy", images.numpy())
    model, _ = load_export(tmp_path / "export")
    with torch.no_grad():
        expected = model(images).argmax(-1).numpy()
    script = ("import sys; sys.modules['torch'] = None; import numpy as np; "
              "from lrnets.export.integer_inference import IntegerNetwork; "
              f"net = IntegerNetwork({str(tmp_path / 'export')!r}); "
              f"np.save({str(tmp_path / 'classes.npy')!r}, "
              f"net.predict(np.load({str(tmp_path / 'images.npy')!r})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (np.load(tmp_path / "classes.npy") == expected).all()


def test_eval_notices_other_predictions(ternary_run, tmp_path):
    export(Path(ternary_run.paths.output_dir), tmp_path / "export")
    manifest_path = tmp_path / "export" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["test"]["predictions_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", False)
    assert not checks[-1].ok and "DIFFERENT" in checks[-1].text


@pytest.mark.parametrize("mode,levels,scaled", [
    ("binaryconnect", {-1.0, 1.0}, False), ("ste_ternary", {-1.0, 0.0, 1.0}, False),
    ("bwn", {-1.0, 1.0}, True), ("twn", {-1.0, 0.0, 1.0}, True),
])
def test_straight_through_baselines_export_their_network(smoke_config, tmp_path, mode, levels,
                                                         scaled):
    """A baseline's one deterministic network: its weights as indices into the quantiser's levels
    and, for BWN and TWN, one scale per output channel (alpha_c; TWN's alpha repeated), the same
    numbers as the trained layers' forward weights; the export and its runners reproduce the
    run's test predictions."""
    cfg = smoke_config("init=random", f"mode={mode}")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    saved = torch.load(run_dir / "checkpoints" / "discrete.pt", weights_only=True)
    assert ("scales" in saved) == scaled
    model = build_network(cfg, 1, 10, cfg.dataset.image_size)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "network.pt",
                                     weights_only=True)["state_dict"])
    for name, layer in quantized_layers(model).items():
        assert set(saved["values"][name]) == levels
        unit = torch.tensor(saved["values"][name])[saved["weights"][name].long()]
        scale = saved["scales"][name].view(-1, *[1] * (unit.dim() - 1)) if scaled else 1.0
        assert torch.equal(scale * unit, layer.quantized_weight().detach())
    if mode == "twn":  # one alpha per layer
        assert all(len(set(scales.tolist())) <= 2 for scales in saved["scales"].values())
    export(run_dir, tmp_path / "export", with_onnx=True, with_qonnx=True)
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", True, with_numpy=True,
                             with_qonnx=True)
    assert all(check.ok for check in checks), [check.text for check in checks]


def test_export_of_what_is_not_a_discrete_network_says_so(smoke_config, tmp_path):
    with pytest.raises(ConfigError, match="is not a discrete network"):
        export(tmp_path / "nothing", tmp_path / "export")
    cfg = smoke_config("mode=full_precision", "train.epochs=0")
    train(cfg)
    with pytest.raises(ConfigError, match="full-precision runs have none"):
        export(Path(cfg.paths.output_dir), tmp_path / "export")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        export(tmp_path / "garbage.pt", tmp_path / "export")


@pytest.mark.slow
def test_export_and_eval_commands_with_onnx(ternary_run, tmp_path):
    """lrnets-export prints the sizes; lrnets-eval reproduces the run's test predictions, and
    onnxruntime those of PyTorch."""
    bin_dir = Path(sys.executable).parent
    out = tmp_path / "export"
    exported = subprocess.run([bin_dir / "lrnets-export", ternary_run.paths.output_dir, out,
                               "--onnx", "--qonnx"], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    assert "16.0x smaller than float32" in exported.stdout and "network.onnx" in exported.stdout
    assert "network.qonnx.onnx" in exported.stdout
    evaluated = subprocess.run([bin_dir / "lrnets-eval", out, "--onnx", "--qonnx"],
                               capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "predictions identical to those of the run's chosen network" in evaluated.stdout
    assert "onnxruntime (network.onnx): 128 of 128 predictions as PyTorch's" in evaluated.stdout
    assert "QONNX (network.qonnx.onnx, qonnx's executor): 128 of 128" in evaluated.stdout
    # the graph holds the codes packed as weights.bin does (uint8 codes would make it 3.9x)
    assert (out / "network.onnx").stat().st_size < 1.2 * (out / "weights.bin").stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["mode=binary"], ["weights=quaternary"],
                                       ["weights=quinary"]], ids=["1-bit", "2-bit", "3-bit"])
def test_onnx_of_every_code_width_predicts_as_pytorch(smoke_config, tmp_path, overrides):
    """Packed codes (1 and 2 bits), and the one code per byte of 3-bit grids, in the graph."""
    cfg = smoke_config("init=random", "train.epochs=0", *overrides)
    train(cfg)
    export(Path(cfg.paths.output_dir), tmp_path / "export", with_onnx=True)
    checks = evaluate_export(tmp_path / "export", None, 64, "cpu", True)
    assert all(check.ok for check in checks), [check.text for check in checks]


def _damaged(folder: Path, tmp_path: Path, name: str, **files: bytes) -> Path:
    """A copy of the export ``folder`` with some files replaced (empty bytes: removed)."""
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    for file, content in files.items():
        path = copy / file.replace("_", ".")
        path.unlink()
        if content:
            path.write_bytes(content)
    return copy


def test_export_and_eval_refuse_wrong_inputs_in_one_paragraph(ternary_run, smoke_config,
                                                              tmp_path, capsys):
    """Every wrong input: exit status 2, one paragraph naming what was given, no traceback."""
    run = Path(ternary_run.paths.output_dir)
    good = tmp_path / "good"
    export_main([str(run), str(good)])
    full = smoke_config("mode=full_precision", "arch=mlp", run="full")
    train(full)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    manifest = (good / "manifest.json").read_bytes()
    weights = (good / "weights.bin").read_bytes()
    bad_onnx = tmp_path / "bad_onnx"
    shutil.copytree(good, bad_onnx)
    (bad_onnx / "network.onnx").write_bytes(b"not an ONNX graph")
    (bad_onnx / "network.qonnx.onnx").write_bytes(b"not an ONNX graph")
    cases = [
        (export_main, [str(tmp_path / "absent"), str(tmp_path / "o1")]),
        (export_main, [full.paths.output_dir, str(tmp_path / "o2")]),
        (export_main, [str(tmp_path / "empty.pt"), str(tmp_path / "o3")]),
        (export_main, [str(tmp_path / "text.pt"), str(tmp_path / "o4")]),
        (eval_main, [str(tmp_path / "absent")]),
        (eval_main, [str(run)]),  # a run folder, not an export
        (eval_main, [str(_damaged(good, tmp_path, "no_manifest", manifest_json=b""))]),
        (eval_main, [str(_damaged(good, tmp_path, "bad_json", manifest_json=b"{"))]),
        (eval_main, [str(_damaged(good, tmp_path, "empty_json", manifest_json=b"{}"))]),
        (eval_main, [str(_damaged(good, tmp_path, "cut", weights_bin=weights[:100]))]),
        (eval_main, [str(_damaged(good, tmp_path, "other_arch",
                                  manifest_json=manifest.replace(b'lenet', b'mlp')))]),
        (eval_main, [str(good), "--batch-size", "0"]),
        (eval_main, [str(good), "--onnx"]),  # exported without network.onnx
        (eval_main, [str(bad_onnx), "--onnx"]),
        (eval_main, [str(good), "--qonnx"]),  # exported without network.qonnx.onnx
        (eval_main, [str(bad_onnx), "--qonnx"]),
        (eval_main, [str(_damaged(good, tmp_path, "no_graph", manifest_json=json.dumps(
            {k: v for k, v in json.loads(manifest).items() if k != "graph"}).encode())),
            "--numpy"]),  # an export of an earlier version
    ]
    for main, argv in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2, (argv, err)
        assert "error:" in err and "\n" not in err and "Traceback" not in err, (argv, err)


def test_qonnx_without_the_package_says_which_extra(ternary_run, tmp_path, monkeypatch, capsys):
    """--qonnx without qonnx installed: one paragraph naming the extra, the export itself kept."""
    for name in [name for name in sys.modules if name.split(".")[0] == "qonnx"] + ["qonnx"]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of any of them fails
    for main, argv in ((export_main, [ternary_run.paths.output_dir, str(tmp_path), "--qonnx"]),
                       (eval_main, [str(tmp_path), "--qonnx"])):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and "lrnets[qonnx]" in err and "\n" not in err, err
    assert (tmp_path / "weights.bin").exists() and (tmp_path / "manifest.json").exists()
