"""A config fuzzer: every configuration either trains and writes its results file, or stops with
one paragraph naming the option (``ConfigError``, exit status 2; an option the chosen groups
lack is Hydra's own refusal, exit status 1). Draws cover every choice of
the config groups and the numeric options' boundaries (zero, negative, tiny, huge, wrong type,
batch sizes that leave a final batch of one, image sizes, validation splits near the training
set's size), each run for a few batches of synthetic data. A failure prints the command line
that reproduces it. The fast suite tries a bounded number of draws; ``-m slow`` many more."""
from __future__ import annotations

import hashlib
import json
import math
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrnets.config import group_choices
from lrnets.errors import ConfigError, RunStopped
from lrnets.training.run import train
from tests.conftest import compose_config


WRONG_TYPES = ["ten", "[1]", "null", "true"]
# option -> values at and beyond its boundaries, besides ordinary ones
NUMERIC = {
    "train.epochs": [0, 1, 2, -1, 2.5],
    "train.batch_size": [-1, 0, 1, 2, 3, 7, 149, 223, 447, 448, 10**6, 3.5],
    "train.lr": [0, -0.01, 1e-12, 0.01, 10.0, 1e30],
    "train.lr_gamma": [0, 0.1, 1, 2],
    "train.lr_milestones": ["[]", "[1]", "[-1]", "[0,0]", "[1.5]"],
    "train.dropout": [0, 0.5, 0.999, 1, -0.1],
    "train.weight_decay": [0, 1e-4, -1, 1e6],
    "train.bn_momentum": [0, 1e-6, 0.1, 1, 2],
    "train.bn_eps": [0, 1e-12, 1e-3, -1],
    "dataset.val_size": [-5, 0, 1, 64, 445, 446, 447, 510, 511, 512],
    "dataset.image_size": [1, 2, 3, 4, 7, 8, 12, 28],
    "dataset.num_classes": [1, 2, 10],
    "mode.layers.eps": [0, 1e-12, 1e-3, -1e-3, 1e6],
    "regularizer.probability_decay": [0, 1e-11, -1, 1e3],
    "regularizer.beta": [0, 1e-6, -1],
    "init.p_min": [0, 1e-9, 0.05, 0.5, 1],
    "init.p_max": [0, 0.5, 0.95, 1 - 1e-9, 1],
    "eval.num_samples": [0, 1, 2, -1],
    "eval.every_n_epochs": [0, 1, -1],
    "eval.recalibrate_bn": ["true", "false"],
    "eval.recalibration_batches": [0, 1, 1000],
}
GROUPS = {
    "mode": group_choices("mode"),
    "arch": [c for c in group_choices("arch") if c != "resnet18"] + ["resnet18"],
    "activation": group_choices("activation"),
    "weights": [None, *group_choices("weights")],  # None: no override (the mode's own weights)
    "init": group_choices("init"),
    "regularizer": [None, *group_choices("regularizer")],  # None: the mode's own
}


def _value(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def configurations(draw) -> list[str]:
    """Hydra overrides: group choices, then a few numeric options at their boundaries."""
    picks = {group: draw(st.sampled_from(choices)) for group, choices in GROUPS.items()}
    overrides = [f"{group}={choice}" for group, choice in picks.items() if choice is not None]
    if "weights=custom" in overrides:
        overrides.append("weights.values=[-1,0,2]")
    options = draw(st.lists(st.sampled_from(sorted(NUMERIC)), max_size=3, unique=True))
    for option in options:
        values = NUMERIC[option] + WRONG_TYPES
        overrides.append(f"{option}={_value(draw(st.sampled_from(values)))}")
    return overrides


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def check_configuration(tmp_path: Path, overrides: list[str], run: str, other_run: Path) -> None:
    """Train ``overrides`` for a few batches; fail, with the command line, unless it completes
    with finite figures and a results file, or is refused with one paragraph naming an option."""
    command = "python train.py " + shlex.join(["dataset=synthetic", "debug=fast", *overrides])
    before = _digest(other_run)
    try:  # refused as it composes (a key or type its schema lacks) or as it starts
        cfg = compose_config(tmp_path, "dataset=synthetic", "debug=fast", "eval.num_samples=1",
                             "trainer.limit_val_batches=1", *overrides, run=run)
        results = train(cfg)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message.strip() and "=" in message, f"{command}: {message!r}"
    except RunStopped as err:  # a diverged loss (train.lr=1e30): said so, recorded as failed
        results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
        assert results["status"] == "failed" and "\n" not in str(err).strip(), f"{command}: {err}"
    except Exception as err:  # anything else is a defect: print how to reproduce it
        raise AssertionError(f"{command} raised {type(err).__name__}: {err}") from err
    else:
        assert results["status"] == "completed", f"{command}: {results['status']}"
        assert (Path(cfg.paths.output_dir) / "results.json").is_file(), command
        errors = [v for k, v in results.items() if k.endswith("_error") and v is not None]
        assert all(math.isfinite(v) for v in errors), f"{command}: {errors}"
    assert _digest(other_run) == before, f"{command} changed the files of another run"


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    """A finished run beside the fuzzed ones, which none of them may touch."""
    tmp = tmp_path_factory.mktemp("other")
    cfg = compose_config(tmp, "dataset=synthetic", "debug=fast", "init=random", "arch=mlp")
    train(cfg)
    return Path(cfg.paths.output_dir)


def _fuzz(max_examples: int):
    def run(tmp_path_factory, other_run):
        counter = iter(range(10**6))

        @settings(max_examples=max_examples, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        @given(configurations())
        def one(overrides):
            tmp = tmp_path_factory.mktemp("fuzz")
            check_configuration(tmp, overrides, f"run{next(counter)}", other_run)

        one()
    return run


test_every_drawn_configuration_trains_or_names_the_option = _fuzz(12)
test_every_drawn_configuration_trains_or_names_the_option_long = pytest.mark.slow(_fuzz(150))
