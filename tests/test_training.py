"""End-to-end runs on synthetic data: every architecture and mode trains and reports."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from lrnets.training.reference import reference_config, reference_key
from lrnets.training.run import train

ARCH_DATA = {
    "lenet": [],
    "mlp": [],
    "vgg": ["dataset.channels=3", "dataset.image_size=32"],
    "resnet18": ["dataset.channels=3", "dataset.image_size=32"],
}


@pytest.mark.parametrize("mode", ["full_precision", "binary", "ternary"])
@pytest.mark.parametrize("arch", list(ARCH_DATA))
def test_every_architecture_and_mode_trains(smoke_config, arch, mode):
    cfg = smoke_config(f"arch={arch}", f"mode={mode}", "init=random", *ARCH_DATA[arch])
    results = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "results.json").read_text()) == results
    assert results["status"] == "completed" and results["arch"] == arch
    assert 0 <= results["test_error"] <= 1 and 0 <= results["val_error"] <= 1
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    if mode != "full_precision":
        assert len(results["selection"]["candidates"]) == cfg.eval.num_samples + 1
        assert results["chosen"] in {c["name"] for c in results["selection"]["candidates"]}


def test_results_record_the_epoch_time(smoke_config):
    results = train(smoke_config("mode=ternary", "init=random", "train.epochs=2"))
    assert results["epochs_timed"] == 2 and 0 < results["epoch_time_s"] < results["wall_time_s"]


def test_discrete_checkpoint_holds_integer_weights(smoke_config):
    cfg = smoke_config("mode=ternary", "init=random")
    train(cfg)
    saved = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "discrete.pt", weights_only=True)
    assert saved["weights"] and all(w.dtype == torch.int8 for w in saved["weights"].values())
    for name, w in saved["weights"].items():
        assert saved["values"][name] == [-1.0, 0.0, 1.0]
        assert 0 <= w.min() and w.max() <= 2
    assert "head.weight" in saved["state_dict"]


def test_pretrained_reference_is_trained_once_and_reused(smoke_config, capsys):
    first = train(smoke_config("mode=ternary", run="ternary"))
    reference = Path(first["init_checkpoint"])
    stamp = reference.stat().st_mtime_ns
    second = train(smoke_config("mode=binary", run="binary"))
    assert second["init_checkpoint"] == str(reference)
    assert reference.stat().st_mtime_ns == stamp
    out = capsys.readouterr().out
    assert out.count("Training the full-precision reference") == 1
    assert "Reusing the full-precision reference" in out
    other_seed = train(smoke_config("mode=binary", "seed=1", run="seed1"))
    assert other_seed["init_checkpoint"] != str(reference)


def test_the_reference_folder_is_named_by_the_settings_that_decide_it(smoke_config):
    """One definition (``lrnets.decisive``) for resume and reference reuse: what a resume may
    change and what only discrete runs read name the same reference; the rest does not."""
    def folder(*overrides: str) -> str:
        return Path(reference_config(smoke_config(*overrides)).paths.output_dir).name

    same = folder("mode=ternary")
    assert folder("mode=binary", "dataset.download=false", "eval.num_samples=3", "init.p_min=0.1",
                  "trainer.precision=bf16-mixed", "mode.layers.fused=true") == same
    assert folder("mode=ternary", "activation=sign") == same  # its logit_lr: no logits there
    for change in ["train.lr_gamma=0.5", "trainer.limit_train_batches=2", "init.reference.epochs=2",
                   "seed=1", "train.bn_eps=0.01", "train.dropout=0.1"]:
        assert folder("mode=ternary", change) != same, change


def test_the_reference_folder_name_does_not_change_when_a_module_moves(smoke_config):
    """References trained before the subpackages (issue 16) keep their folder: the name hashes
    the classes by their first paths (``lrnets.layers.FullPrecisionLayers``)."""
    ref = reference_config(smoke_config("mode=ternary"))
    assert ref.mode.layers._target_ == "lrnets.nn.layers.FullPrecisionLayers"
    key = reference_key(ref)
    ref.mode.layers._target_ = "lrnets.layers.FullPrecisionLayers"
    assert reference_key(ref) == key
    ref.mode.layers._target_ = "lrnets.nn.layers.LRLayers"
    assert reference_key(ref) != key


def test_given_checkpoint_initialises_the_discrete_net(smoke_config):
    reference = train(smoke_config("mode=full_precision", run="fp"))
    ckpt = Path(reference["paths"]["checkpoints"]) / "network.pt"
    results = train(smoke_config("mode=ternary", f"init.checkpoint={ckpt}", run="tern"))
    assert results["init_checkpoint"] == str(ckpt)


def test_learns_the_synthetic_task(smoke_config):
    """Not just running: the paper's recipe (a full-precision start, then ternary training)
    separates the synthetic classes, which chance (90% error) does not."""
    cfg = smoke_config("mode=ternary", "train.epochs=3", "train.lr_milestones=[2]",
                       "init.reference.epochs=3", "trainer.limit_train_batches=null",
                       "trainer.limit_val_batches=null")
    assert train(cfg)["test_error"] < 0.3


def test_bf16_mixed_precision_trains_without_nan(smoke_config):
    results = train(smoke_config("mode=ternary", "init=random", "trainer.precision=bf16-mixed"))
    assert results["status"] == "completed" and 0 <= results["test_error"] <= 1


def test_data_on_device_trains(smoke_config):
    """``dataset.on_device=true`` keeps the tensors on the training device (the CPU here)."""
    results = train(smoke_config("mode=binary", "init=random", "dataset.on_device=true"))
    assert results["status"] == "completed"


def test_imagenet_folder_tree_trains_resnet18(smoke_config, tmp_path):
    """``dataset=imagenet`` on a tiny generated ImageFolder tree (train/ and val/, 2 classes)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, count in (("train", 12), ("val", 4)):
        for cls in ("cat", "dog"):
            folder = tmp_path / "imagenet" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (40, 48, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.JPEG")
    cfg = smoke_config("dataset=imagenet", f"dataset.root={tmp_path / 'imagenet'}", "mode=ternary",
                       "init=random", "dataset.image_size=32", "dataset.resize=36",
                       "dataset.val_size=4", "dataset.num_workers=0", "train.batch_size=8")
    results = train(cfg)
    assert results["arch"] == "resnet18" and results["status"] == "completed"
    assert len(results["selection"]["candidates"]) == cfg.eval.num_samples + 1


def test_the_dashboard_names_layers_as_the_paper_and_logs_initialisation(smoke_config):
    """Per discrete layer (conv1, conv2, fc1): entropy, mean max-probability and flip ratio every
    epoch; histograms at initialisation (step 0) and after each epoch (step = epochs done)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    results = train(smoke_config("mode=ternary", "init=random", "arch=lenet", "train.epochs=2"))
    events = EventAccumulator(results["paths"]["tensorboard"], size_guidance={"histograms": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for layer in ("conv1", "conv2", "fc1"):
        assert {f"entropy/{layer}", f"max_probability/{layer}", f"flip_ratio/{layer}"} <= scalars
    flips = [e.value for e in events.Scalars("flip_ratio/fc1")]
    assert len(flips) == 2 and all(0 <= f <= 1 for f in flips)
    assert [e.step for e in events.Histograms("p_zero/conv1")] == [0, 1, 2]
    assert "final/test_error" in scalars and "hparams/test_error" in scalars
    assert "hp_metric" not in scalars


def test_an_ensemble_of_one_is_its_sampled_network_and_larger_ones_are_reported(smoke_config,
                                                                                capsys):
    one = train(smoke_config("mode=ternary", "init=random", "eval.ensemble=1", run="one"))
    sample_0 = next(c for c in one["selection"]["candidates"] if c["name"] == "sample_0")
    assert one["ensemble_size"] == 1
    assert one["ensemble_test_error"] == pytest.approx(1 - sample_0["test_acc"], abs=1e-6)
    three = train(smoke_config("mode=ternary", "init=random", "eval.ensemble=3",
                               "eval.recalibrate_bn=true", run="three"))
    assert three["ensemble_size"] == 3 and 0 <= three["ensemble_test_error"] <= 1
    assert "ensemble of 3 sampled networks" in capsys.readouterr().out


def test_a_resumed_run_does_not_train_its_reference_again(smoke_config, capsys):
    """Its weights come from its checkpoint: a reference folder that is gone (or named by an
    earlier version) is neither trained nor needed."""
    first = train(smoke_config("mode=ternary", run="run"))
    reference = Path(first["init_checkpoint"])
    shutil.rmtree(reference.parents[1])
    capsys.readouterr()
    resumed = train(smoke_config("mode=ternary", "ckpt_path=last", "train.epochs=2", run="run"))
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    assert resumed["init_checkpoint"] == str(reference)
    assert "full-precision reference" not in capsys.readouterr().out


def test_scoring_the_test_split_reports_the_authors_choice_beside_ours(smoke_config):
    """eval.score_test: the candidates are scored on the test split too, every
    eval.every_n_epochs and at the end, as the authors' code chose its network; the lowest test
    error and its epoch are reported beside the network chosen on validation, which they do not
    change; epochs.csv has the curve, and checkpoints keep the best so far for a resume."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lrnets.training.epochs import epoch_rows

    schedule = ("init=random", "train.epochs=3", "eval.every_n_epochs=1")
    cfg = smoke_config(*schedule, "eval.score_test=true")
    results = train(cfg)
    during = [row["test_error_sampled_best"] for row in epoch_rows(Path(cfg.paths.output_dir))]
    assert len(during) == 3 and None not in during
    final = min(1 - c["test_acc"] for c in results["selection"]["candidates"])
    lowest = min(during + [final])
    assert results["test_error_chosen_on_test"] == pytest.approx(lowest, abs=1e-6)
    assert results["epoch_chosen_on_test"] == next(  # the end is epoch 3 again
        epoch for epoch, error in zip([1, 2, 3, 3], during + [final])
        if error == pytest.approx(lowest))
    saved = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                       map_location="cpu", weights_only=False)["callbacks"]
    assert {"test_error": pytest.approx(min(during)), "epoch": during.index(min(during)) + 1} \
        in [state.get("best_on_test") for state in saved.values()]
    events = EventAccumulator(results["paths"]["tensorboard"])
    events.Reload()
    assert "hparams/test_error_chosen_on_test" in events.Tags()["scalars"]  # compared in sweeps
    plain = train(smoke_config(*schedule, run="plain"))
    assert "test_error_chosen_on_test" not in plain
    assert (plain["test_error"], plain["chosen"]) == (results["test_error"], results["chosen"])


def test_the_network_best_on_validation_across_epochs_is_reported_and_can_be_chosen(smoke_config):
    """Every eval.every_n_epochs the best network on validation is kept (in checkpoints too);
    at the end the best of those and the end's candidates (the end's on a tie, an earlier epoch
    on a tie among them) is reported as test_error_chosen_across_epochs, and with
    eval.choose_across_epochs=true it is the reported and exported network."""
    from lrnets.export.writer import export
    from lrnets.training.epochs import epoch_rows

    schedule = ("init=random", "train.epochs=3", "eval.every_n_epochs=1")
    cfg = smoke_config(*schedule)
    results = train(cfg)
    during = [row["val_error_sampled_best"] for row in epoch_rows(Path(cfg.paths.output_dir))]
    kept = (min(during), during.index(min(during)) + 1)  # the earliest of the lowest
    lowest, epoch = (results["val_error"], 3) if results["val_error"] <= kept[0] + 1e-6 else kept
    assert results["val_error_chosen_across_epochs"] == pytest.approx(lowest, abs=1e-6)
    assert results["epoch_chosen_across_epochs"] == epoch
    assert results["chosen_across_epochs_from"] == 1
    saved = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                       map_location="cpu", weights_only=True)["callbacks"]
    kept = next(state["best_on_val"] for state in saved.values() if "best_on_val" in state)
    assert kept["chosen"]["val_acc"] == pytest.approx(1 - min(during), abs=1e-6)
    assert all(w.dtype == torch.int8 for w in kept["weights"].values())

    across = train(smoke_config(*schedule, "eval.choose_across_epochs=true", run="across"))
    assert across["test_error"] == across["test_error_chosen_across_epochs"] \
        == results["test_error_chosen_across_epochs"]
    assert across["selection"]["chosen"]["epoch"] == epoch
    exported = torch.load(Path(across["paths"]["checkpoints"]) / "discrete.pt",
                          weights_only=True)["meta"]
    assert exported["chosen"]["epoch"] == epoch
    assert export(Path(across["paths"]["checkpoints"]) / "discrete.pt",
                  Path(across["paths"]["run_dir"]) / "export")["chosen_epoch"] == epoch
    if epoch == 3:
        assert results["test_error_chosen_across_epochs"] == results["test_error"]


def test_a_network_kept_from_an_earlier_epoch_is_restored_and_scored(smoke_config):
    """chosen_across_epochs restores the kept network as it was scored (its weights from int8
    indices, its batch norm and the real-valued parameters of its epoch, though training moved
    them on) when it beats the end's on validation, and scores it on the test split; the model
    is the end's again afterwards. A checkpoint of an earlier version, whose kept network lacks
    the real-valued parameters, starts the choice again."""
    from types import SimpleNamespace

    from torch import nn

    from lrnets.training.callbacks import SampledEvaluation
    from lrnets.training.evaluation import (EvalData, accuracy, chosen_network,
                                            select_discrete_network)
    from lrnets.training.run import build_network, chosen_across_epochs

    class Plain(nn.Module):
        def forward(self, x, train=False):
            return x

    model = build_network(smoke_config("mode=ternary", "init=random"), 1, 10, 28)
    loader = [(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))]
    data = EvalData(Plain(), loader, loader, loader)
    earlier = select_discrete_network(model, data, 2, seed=0, recalibrate_bn=True,
                                      recalibration_batches=1)
    scored_then = earlier.chosen["val_acc"]
    earlier.chosen.update(epoch=1, val_acc=1.0)
    callback = SampledEvaluation(1, 2, 0, True, 1)
    callback.best_on_val, callback.scored_from = earlier.packed(model), 1
    with torch.no_grad():  # training moves the distributions and every real parameter on
        for module in model.modules():
            if hasattr(module, "distribution"):
                module.distribution.random_init(0.05, 0.95)
        for name, parameter in model.named_parameters():
            if "distribution" not in name:
                parameter.add_(torch.randn_like(parameter))
    end_state = {k: v.clone() for k, v in model.state_dict().items()}
    final = select_discrete_network(model, data, 2, seed=1)
    final.chosen["epoch"] = 2
    across = chosen_across_epochs(callback, model, final, data)
    assert across.chosen["epoch"] == 1 and across.candidates is final.candidates
    assert all(torch.equal(across.weights[name], w) for name, w in earlier.weights.items())
    assert earlier.state.keys() == across.state.keys() and \
        any(key.startswith("head.") for key in across.state)
    assert all(torch.equal(across.state[key], v) for key, v in earlier.state.items())
    with chosen_network(model, across):
        assert accuracy(model, loader, data.transform) == scored_then
    assert across.chosen["test_acc"] == scored_then  # the test split is the same batch here
    assert all(torch.equal(v, end_state[k]) for k, v in model.state_dict().items())
    final.chosen["val_acc"] = 1.0  # a tie: the end's
    assert chosen_across_epochs(callback, model, final, data) is final
    assert chosen_across_epochs(SampledEvaluation(1, 2, 0, True, 1), model, final, data) is None

    earlier_version = {"best_on_test": None, "best_on_val": {
        "chosen": earlier.chosen, "weights": earlier.indices(model), "batch_norm": {}}}
    callback.load_state_dict(earlier_version)
    assert callback.best_on_val is None and callback.scored_from is None
    callback.load_state_dict(SampledEvaluation.state_dict(
        SimpleNamespace(best_on_test=None, best_on_val=earlier.packed(model), scored_from=1)))
    assert callback.scored_from == 1 and "state" in callback.best_on_val
