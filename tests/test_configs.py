"""Every choice of every config group composes, and what it describes can be built."""
import dataclasses
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from lrnets.config import CONF_DIR, compose_config as compose
from lrnets.data import build_datamodule
from lrnets.errors import ConfigError
from lrnets.schema import validate
from lrnets.nn.quantized_layers import quantized_layers
from lrnets.training.evaluation import discrete_layers
from lrnets.training.run import body_weight_count, build_network, initialise
from tests.conftest import compose_config

# The groups each of whose choices names its schema (trainer's, paths' and debug's are open)
SCHEMA_CHECKED = ["arch", "mode", "activation", "init", "dataset", "regularizer", "weights"]
GROUPS = ["arch", "mode", "weights", "activation", "init", "trainer", "debug", "dataset",
          "regularizer"]
CHOICES = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment" / "paper").glob("*.yaml"))


def _build(cfg):
    """The config's network for 3 x 32 x 32 images, a size every architecture takes (a data
    module's own shape needs its files; a run checks it against the network, check_image_size)."""
    return build_network(cfg, 3, 10, 32)


@pytest.mark.parametrize("group,choice", CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_group_choice_composes_and_builds(tmp_path, group, choice):
    extra = {("dataset", "imagenet"): ["dataset.root=/nonexistent"],
             ("weights", "custom"): ["weights.values=[-1,0,1]"],
             ("arch", "custom"): ["arch.builder=lrnets.models.architectures.mlp"]
             }.get((group, choice), [])
    cfg = compose_config(tmp_path, f"{group}={choice}", *extra)
    validate(cfg)
    if group in SCHEMA_CHECKED:  # composed over the schema its YAML file names
        assert dataclasses.is_dataclass(OmegaConf.get_type(cfg[group]))
    if group == "mode":
        assert dataclasses.is_dataclass(OmegaConf.get_type(cfg.mode.layers))
    if group == "debug":  # a global package: it shortens the schedule
        assert cfg.train.epochs == 1 and cfg.init.reference.epochs == 1
    if group in ("arch", "mode", "weights", "activation", "dataset"):
        model = _build(cfg)
        discrete = discrete_layers(model) or quantized_layers(model)
        assert bool(discrete) == (cfg.mode.name != "full_precision")
    if group == "trainer":
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert trainer.max_epochs == cfg.train.epochs


@pytest.mark.parametrize("overrides,message", [
    (["dataset=mnist", "dataset.num_classes=5"], r"dataset has no option num_classes; its "
                                                  r"options: name, reader, .*on_device"),
    (["mode=twn", "mode.layers.eps=0"], r"mode\.layers has no option eps; its options: "
                                        r"quantizer, clip"),
    (["mode=gumbel_ternary", "mode.layers.sampler.temperature=hot"],
     r"^mode\.layers\.sampler\.temperature='hot' is not allowed: use a number\.$"),
    (["init=random", "init.checkpoint=x.pt"], r"init has no option checkpoint"),
    (["activation=relu", "activation.temperature=2"], r"activation has no option temperature"),
])
def test_a_choice_holds_only_its_own_options_as_it_composes(tmp_path, overrides, message):
    """Each group choice composes over its own schema (lrnets.schema), not one schema holding
    the options of every choice."""
    with pytest.raises(ConfigError, match=message):
        compose_config(tmp_path, *overrides)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_paper_experiment_composes_and_builds(tmp_path, name):
    extra = ["dataset.root=/nonexistent"] if name.startswith("imagenet") else []
    cfg = compose_config(tmp_path, f"experiment=paper/{name}", *extra)
    dataset, mode = name.split("_", 1)
    assert (cfg.dataset.name, cfg.mode.name) == (dataset, mode)
    _build(cfg)


def test_paper_defaults_are_the_papers():
    cfg = compose_config(Path("/tmp"), "dataset=mnist", "mode=ternary")
    assert (cfg.train.epochs, cfg.train.lr, list(cfg.train.lr_milestones)) == (190, 0.01, [100])
    assert (cfg.train.batch_size, cfg.train.dropout, cfg.train.weight_decay) == (256, 0.5, 1e-4)
    assert (cfg.regularizer.probability_decay, cfg.init.p_min, cfg.init.p_max) == (1e-11, 0.05, 0.95)
    assert cfg.arch.name == "lenet" and cfg.eval.num_samples == 10
    cifar = compose_config(Path("/tmp"), "dataset=cifar10", "mode=binary")
    assert (cifar.arch.name, cifar.train.epochs, list(cifar.train.lr_milestones)) == ("vgg", 290, [170])
    assert cifar.regularizer.beta == 1e-6


def test_paper_mnist_network_is_the_authors():
    """'same' 5x5 convolutions (oranshayer/LRnets, mnist/ternary/mnist.py): 28 -> 28 -> 14 ->
    14 -> 7, a 3136 x 512 fully connected layer, 1,657,632 discrete weights; batch norm with
    TensorFlow's defaults (decay 0.999, epsilon 1e-3)."""
    cfg = compose_config(Path("/tmp"), "experiment=paper/mnist_ternary", "init=random")
    model = build_network(cfg, 1, 10, 28)
    assert [tuple(layer.distribution.shape) for layer in discrete_layers(model).values()] == [
        (32, 1, 5, 5), (64, 32, 5, 5), (512, 3136)]
    assert body_weight_count(model) == 1_657_632
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 3 and all((bn.momentum, bn.eps) == (0.001, 1e-3) for bn in norms)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_synthetic_data_module_builds():
    cfg = compose_config(Path("/tmp"), "dataset=synthetic")
    dm = build_datamodule(cfg.dataset, batch_size=32, seed=0)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and y.shape == (32,)
    assert len(dm.val_set) == cfg.dataset.val_size


def test_an_option_that_moved_is_named_with_its_new_place():
    with pytest.raises(ConfigError, match=r"mode\.beta is now regularizer\.beta"):
        compose(["mode=binary", "mode.beta=0"])


def half_the_synthetic_classes(cfg, batch_size, seed, num_workers):
    """A reader of this test: the synthetic data set with half its classes."""
    from lrnets.data.readers import synthetic

    return synthetic(OmegaConf.merge(cfg, {"num_classes": cfg.num_classes // 2}), batch_size,
                     seed, num_workers)


def test_a_data_set_is_read_by_the_reader_its_config_names(tmp_path):
    """dataset.reader: a dotted path, so a new data set is its config and its reader; a path
    that does not import is one paragraph naming it; configs of earlier versions (no reader)
    read their data set by its name."""
    cfg = compose_config(tmp_path, "dataset=synthetic",
                         "dataset.reader=tests.test_configs.half_the_synthetic_classes")
    assert build_datamodule(cfg.dataset, batch_size=8, seed=0).num_classes == 5
    cfg.dataset.reader = "lrnets.data.readers.no_such_reader"
    with pytest.raises(ConfigError, match=r"dataset\.reader='lrnets\.data\.readers\.no_such_reader"
                                          r"' cannot be imported"):
        build_datamodule(cfg.dataset, batch_size=8, seed=0)
    earlier = OmegaConf.create({k: v for k, v in cfg.dataset.items() if k != "reader"})
    assert build_datamodule(earlier, batch_size=8, seed=0).num_classes == 10


def two_layer_mlp(blocks, in_channels, num_classes, image_size, dropout):
    """An architecture of this test, written over its blocks as lrnets' own are."""
    body = nn.Sequential(blocks.flatten(),
                         *blocks.fc(in_channels * image_size ** 2, 16, dropout, first=True))
    return blocks.network(body, 16, num_classes)


@pytest.mark.parametrize("mode,activation", [("ternary", "relu"), ("full_precision", "relu"),
                                             ("binary", "sign")])
def test_an_architecture_is_the_function_its_config_names(tmp_path, mode, activation):
    """arch.builder: a dotted path, so a new architecture is its function alone (arch=custom,
    whose name is that path), built by every mode and activation; a path that does not import,
    or none, or another function under a named architecture's name, is one paragraph naming it; configs of earlier versions (no builder) build their
    architecture by its name, and one of an unknown name is refused."""
    cfg = compose_config(tmp_path, f"mode={mode}", f"activation={activation}", "arch=custom",
                         "arch.builder=tests.test_configs.two_layer_mlp")
    assert cfg.arch.name == "tests.test_configs.two_layer_mlp"  # decides its reference's folder
    model = build_network(cfg, 1, 10, 8)
    assert body_weight_count(model) == 64 * 16
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    cfg.arch.builder = "lrnets.models.architectures.no_such_net"
    with pytest.raises(ConfigError, match=r"arch\.builder='lrnets\.models\.architectures\."
                                          r"no_such_net' cannot be imported"):
        build_network(cfg, 1, 10, 8)
    with pytest.raises(ConfigError, match=r"^arch\.builder is not set: give the dotted path"):
        validate(compose_config(tmp_path, "arch=custom"))
    with pytest.raises(ConfigError, match=r"^arch\.builder='tests\.test_configs\.two_layer_mlp' "
                                          r"is not allowed with arch=lenet, whose function is "
                                          r"lrnets\.models\.architectures\.lenet"):
        build_network(compose_config(tmp_path, f"mode={mode}", f"activation={activation}",
                                     "arch.builder=tests.test_configs.two_layer_mlp"), 1, 10, 8)
    earlier = compose_config(tmp_path, f"mode={mode}", f"activation={activation}", "arch=mlp")
    del earlier.arch.builder, earlier.activation.blocks
    assert body_weight_count(build_network(earlier, 1, 10, 8)) == 64 * 1200 + 1200 * 1200
    earlier.arch.name = "tiny"
    with pytest.raises(ConfigError, match=r"^arch='tiny' has no arch\.builder, .*\(those were "
                                          r"lenet, vgg, mlp, resnet18\): give arch\.builder"):
        build_network(earlier, 1, 10, 8)


def test_a_sign_run_recorded_by_an_earlier_version_reads_as_this_versions():
    """Earlier versions recorded a sign run's layers as the LR-net mode's LRLayers (made
    moment-propagating in code); activation=sign now sets MomentLayers. Resume and reference
    reuse compare them as equal; ReLU runs keep LRLayers."""
    from lrnets.decisive import decisive_config, first_class_path, in_current_names

    current = decisive_config(compose(["mode=binary", "activation=sign"]))
    assert current["mode.layers._target_"] == "lrnets.nn.sign_layers.MomentLayers"
    recorded = {**current, "mode.layers._target_": first_class_path("lrnets.nn.layers.LRLayers")}
    assert in_current_names(recorded) == current
    relu = decisive_config(compose(["mode=binary"]))
    assert in_current_names(relu) == relu and relu["mode.layers._target_"].endswith("LRLayers")


def test_an_earlier_sign_run_folder_builds_its_network(tmp_path):
    """read_config of a sign run an earlier version wrote (LRLayers under the old module path,
    no builder, blocks or lr_layers) builds the moment-propagating network it trained."""
    from lrnets.nn.sign_layers import MomentPropagation
    from lrnets.run_folder import CONFIG, read_config

    recorded = OmegaConf.to_container(compose_config(tmp_path, "mode=binary", "activation=sign",
                                                     "arch=mlp"), resolve=True)
    recorded["mode"]["layers"]["_target_"] = "lrnets.layers.LRLayers"
    for section, key in (("arch", "builder"), ("activation", "blocks"),
                         ("activation", "lr_layers"), ("init", "start")):
        del recorded[section][key]
    (tmp_path / CONFIG).parent.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(recorded), tmp_path / CONFIG)
    model = build_network(read_config(tmp_path), 1, 10, 8)
    assert all(isinstance(layer.method, MomentPropagation)
               for layer in discrete_layers(model).values())


def test_a_weights_choice_recorded_by_an_earlier_version_reads_as_this_versions():
    """Earlier versions spliced weights= into the layers in code and recorded the distribution
    as weights.distribution.* beside the mode's own; this version composes it into
    mode.layers.distribution, and resume compares the two in its names; the classes by the
    paths of their modules before the subpackages."""
    from lrnets.decisive import decisive_config, first_class_path, in_current_names

    current = decisive_config(compose(["mode=ternary", "weights=quinary"]))
    assert current["mode.layers.distribution._target_"].endswith("CategoricalWeights")
    recorded = {key.replace("mode.layers.distribution.", "weights.distribution."):
                first_class_path(value) if key.endswith("_target_") else value
                for key, value in current.items()}
    assert recorded["mode.layers._target_"] == "lrnets.layers.LRLayers"  # before the subpackages
    recorded.update({"mode.layers.distribution._target_": "lrnets.distributions.TernaryWeights",
                     "mode.layers.distribution._partial_": True, "mode.beta": 0.0})
    recorded.pop("regularizer.beta")
    assert in_current_names(recorded) == current


def start_at_zero(model, cfg, resuming):
    """An ``init.start`` of this test: every discrete weight most probably 0."""
    for layer in discrete_layers(model).values():
        layer.distribution.init_from_weights(torch.zeros(layer.distribution.shape),
                                             cfg.init.p_min, cfg.init.p_max)
    return {"init": "zero"}


def test_the_weights_are_set_by_the_function_init_start_names(tmp_path):
    """init.start: a dotted path, called as start(model, cfg, resuming); configs of earlier
    versions (no start) set the weights by the init's name."""
    cfg = compose_config(tmp_path, "init=random", "arch=mlp",
                         "init.start=tests.test_configs.start_at_zero")
    model = build_network(cfg, 1, 10, 8)
    assert initialise(model, cfg, resuming=False) == {"init": "zero"}
    for layer in discrete_layers(model).values():
        assert torch.all(layer.distribution.most_probable() == 0)
    del cfg.init.start
    assert initialise(model, cfg, resuming=False) == {"init": "random"}
    assert any(torch.any(layer.distribution.most_probable() != 0)
               for layer in discrete_layers(model).values())
