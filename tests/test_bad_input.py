"""Bad input gives one clear paragraph and a non-zero exit, and loses nothing already written:
config values, init checkpoints and data files."""
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from PIL import Image
from torchvision import datasets

from lrnets import config
from lrnets.config import CONF_DIR
from lrnets.data import DataError
from lrnets.data.files import IDX_FILES, load_cifar10, load_mnist_like
from lrnets.data.modules import ImageFolderDataModule
from lrnets.errors import ConfigError
from lrnets.schema import validate
from lrnets.training.run import train
from tests.conftest import REPO, compose_config


@pytest.mark.parametrize("override,status,message", [
    ("mode=quaternary", 2, "Could not find 'mode/quaternary'; allowed: binary, binaryconnect"),
    ("train.epoch=3", 2, "train has no option epoch; its options: epochs, batch_size"),
    ("train.epochs=ten", 2, "train.epochs='ten' is not allowed: use an integer"),
    ("-m seed=1,abc", 2, "seed='abc' is not allowed: use an integer"),  # each sweep value
], ids=["unknown-choice", "unknown-key", "wrong-type", "multirun"])
def test_command_line_rejects_bad_config_in_one_paragraph(tmp_path, override, status, message):
    proc = subprocess.run([sys.executable, "train.py", "dataset=synthetic", *override.split(),
                           f"paths.log_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == status
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished (untrained) full-precision MLP run: its folder and its files' contents."""
    cfg = compose_config(tmp_path_factory.mktemp("finished"), "dataset=synthetic", "debug=fast",
                         "arch=mlp", "mode=full_precision", "train.epochs=0")
    train(cfg)
    return cfg


def _contents(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("overrides,message", [
    (["init.p_min=0.9", "init.p_max=0.5"], r"init\.p_min=0\.9 .*smaller than init\.p_max=0\.5"),
    (["init.p_min=0"], r"init\.p_min=0\.0 .*strictly between 0 and 1"),
    (["init.p_max=1.5"], r"init\.p_max=1\.5 .*strictly between 0 and 1"),
    (["train.epochs=-1"], r"train\.epochs=-1 .*>= 0"),
    (["regularizer.probability_decay=-0.001"], r"regularizer\.probability_decay=-0\.001 .*>= 0"),
    (["train.weight_decay=-1"], r"train\.weight_decay=-1\.0 .*>= 0"),
    (["train.lr=0"], r"train\.lr=0\.0 .*must be positive"),
    (["eval.num_samples=0"], r"eval\.num_samples=0 .*at least 1"),
    (["eval.choose_across_epochs=true", "eval.every_n_epochs=0"],
     r"eval\.choose_across_epochs=true is not allowed with eval\.every_n_epochs=0: .*positive"),
    (["train.lr=fast"], r"train\.lr='fast' .*use a number"),
    (["eval.num_samples=2.5"], r"eval\.num_samples=2\.5 .*use an integer"),
    (["train.lr_milestones=10"], r"train\.lr_milestones=10 .*list of epochs"),
    (["dataset.num_classes=ten"], r"dataset\.num_classes='ten' .*use an integer"),
    (["dataset.num_classes=1"], r"dataset\.num_classes=1 .*at least 2 classes"),
    (["dataset.val_size=-5"], r"dataset\.val_size=-5 .*at least 1 training example"),
    (["init.reference.lr_milestones=[1.5]"], r"init\.reference\.lr_milestones=\[1\.5\] .*list"),
    (["eval.recalibrate_bn=maybe"], r"eval\.recalibrate_bn='maybe' .*true or false"),
    (["train.logit_lr=0"], r"train\.logit_lr=0\.0 .*positive learning rate for the logits"),
    (["+mode.x=1"], r"mode\.x=1 is not allowed: mode has no option 'x'; its options: name, "
                    r"layers, first_layer, weight_decay_scope\."),  # added keys nothing reads
    (["+eval.ensemble_size=2"], r"eval\.ensemble_size=2 .*eval has no option 'ensemble_size'"),
    (["+mode.layers.foo=2"], r"mode\.layers has no option 'foo'; it has none\."),
    (["+seeds=3"], r"seeds=3 is not allowed: the config has no option 'seeds'"),
])
def test_out_of_range_values_are_refused_before_anything_is_written(finished_run, overrides,
                                                                    message):
    """Also when continuing an existing run: its files stay as they were."""
    out = Path(finished_run.paths.output_dir)
    before = _contents(out)
    with pytest.raises(ConfigError, match=message):  # as it composes, or as the run starts
        train(compose_config(out.parent, "dataset=synthetic", "debug=fast", "arch=mlp",
                             "mode=full_precision", "ckpt_path=last", *overrides))
    assert _contents(out) == before


def test_validation_split_as_large_as_the_training_set(smoke_config):
    with pytest.raises(DataError, match=r"dataset\.val_size=512 is not allowed.*between 1 and 510"):
        train(smoke_config("dataset.val_size=512", "init=random"))


def test_init_checkpoint_missing_unreadable_or_of_another_architecture(finished_run, smoke_config,
                                                                       tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        train(smoke_config(f"init.checkpoint={tmp_path / 'absent.pt'}", run="absent"))
    (tmp_path / "broken.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="could not be read"):
        train(smoke_config(f"init.checkpoint={tmp_path / 'broken.pt'}", run="broken"))
    mlp = Path(finished_run.paths.output_dir) / "checkpoints" / "network.pt"
    with pytest.raises(ConfigError, match=r"does not match the architecture.*body\.0 \(missing\)"):
        train(smoke_config("arch=lenet", f"init.checkpoint={mlp}", run="other_arch"))


def test_missing_data_says_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"no data at .*MNIST/raw.*dataset\.root=DIR.*LRNETS_DATA"):
        load_mnist_like("mnist", datasets.MNIST, tmp_path, download=False)

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"no data at .*The download failed.*LRNETS_DATA"):
        load_mnist_like("fashion_mnist", datasets.FashionMNIST, tmp_path, download=True)


def _write_idx(raw: Path, train_images_kept: int) -> None:
    """Tiny MNIST IDX files (100 training, 20 test images), the training images cut short."""
    raw.mkdir(parents=True)
    for name, count, kept in ((IDX_FILES[0], 100, train_images_kept), (IDX_FILES[2], 20, 20)):
        header = struct.pack(">IIII", 2051, count, 28, 28)
        (raw / name).write_bytes(header + bytes(kept * 28 * 28))
    for name, count in ((IDX_FILES[1], 100), (IDX_FILES[3], 20)):
        (raw / name).write_bytes(struct.pack(">II", 2049, count) + bytes(count))


def test_truncated_or_corrupted_idx_files(tmp_path):
    _write_idx(tmp_path / "MNIST" / "raw", train_images_kept=100)
    (train, _), (test, _) = load_mnist_like("mnist", datasets.MNIST, tmp_path, download=False)
    assert (len(train), len(test)) == (100, 20)  # the tiny files themselves are fine
    _write_idx(tmp_path / "cut" / "MNIST" / "raw", train_images_kept=50)
    with pytest.raises(DataError, match="cannot be read.*truncated or corrupted"):
        load_mnist_like("mnist", datasets.MNIST, tmp_path / "cut", download=True)
    (tmp_path / "MNIST" / "raw" / IDX_FILES[2]).write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read.*truncated or corrupted"):
        load_mnist_like("mnist", datasets.MNIST, tmp_path, download=False)


def test_truncated_or_corrupted_cifar_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}
    whole = pickle.dumps(batch)
    (folder / "data_batch_1").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"data_batch_1 cannot be read.*truncated or corrupted"):
        load_cifar10(tmp_path, download=False)
    (folder / "data_batch_1").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"data_batch_1 cannot be read"):
        load_cifar10(tmp_path, download=False)


def _image_tree(root: Path, classes: dict[str, int]) -> None:
    """``root/{train,val}/<class>/<i>.png``: ``classes[name]`` small random images each."""
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (10, 12, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")


def test_image_folder_with_an_empty_class(tmp_path):
    _image_tree(tmp_path, {"cat": 3, "dog": 0})
    with pytest.raises(DataError, match="dog.*every class folder needs at least one image"):
        ImageFolderDataModule(tmp_path, 8, 8, 1, 2, 0, 0)


def test_image_folder_with_an_unreadable_image(tmp_path, smoke_config):
    _image_tree(tmp_path / "tree", {"cat": 3, "dog": 3})
    bad = tmp_path / "tree" / "train" / "dog" / "broken.png"
    bad.write_bytes(b"not an image")
    cfg = smoke_config("dataset=imagenet", f"dataset.root={tmp_path / 'tree'}", "arch=mlp",
                       "mode=full_precision", "dataset.image_size=8", "dataset.resize=8",
                       "dataset.val_size=1", "dataset.num_workers=0", "train.batch_size=2")
    with pytest.raises(DataError, match=f"the image {bad} cannot be read"):
        train(cfg)


def test_a_yaml_file_is_checked_against_its_schema_and_must_name_one(tmp_path):
    """A value of the wrong type in a config file is named with the file and what is allowed;
    a group's file without its schema line is refused, naming the line to add."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "experiment" / "bad.yaml").write_text("# @package _global_\ntrain:\n  epochs: ten\n")
    (conf / "dataset" / "bare.yaml").write_text(
        (conf / "dataset" / "synthetic.yaml").read_text().replace(
            "  - /schema/dataset/synthetic@dataset", ""))
    with initialize_config_dir(str(conf), version_base="1.3"):
        with pytest.raises(ConfigError, match=r"experiment/bad sets train\.epochs='ten', which "
                                              r"is not allowed: use an integer"):
            config.compose_config(["experiment=bad"])
        with pytest.raises(ConfigError, match=r"^dataset was not composed over a schema: add "
                                              r"'- /schema/dataset/<name>@dataset'"):
            validate(config.compose_config(["dataset=bare"]))


def test_a_custom_grid_without_values_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match=r"^weights\.values is not set: give the grid's values"):
        validate(compose_config(tmp_path, "weights=custom"))
