"""Command line: ``lrnets-train`` (= ``python train.py``) with Hydra overrides."""
from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from lrnets.config import CONF_DIR, PRIMARY, compose_config
from lrnets.errors import ConfigError, RunStopped
from lrnets.run_folder import CONFIG
from lrnets.training.faults import sigterm_raises, signal_number
from lrnets.training.resume import resume_hint
from lrnets.training.run import train


def main() -> None:
    """``lrnets-train OVERRIDES``: overrides that do not compose (an unknown option, a moved one
    such as ``mode.beta``, a value of the wrong type) print one paragraph and exit with status 2
    before Hydra starts; for a multirun (``-m``), every value of each sweep is checked so."""
    args = sys.argv[1:]
    overrides = [arg for arg in args if "=" in arg and not arg.startswith("-")]
    try:
        for job in sweep_values(overrides) if {"-m", "--multirun"} & set(args) else [overrides]:
            compose_config(job)
    except ConfigError as err:
        print(f"lrnets: error: {err}", file=sys.stderr)
        sys.exit(2)
    run()


def sweep_values(overrides: list[str]) -> list[list[str]]:
    """Jobs of the sweep ``overrides`` that hold every value of each sweep at least once (the
    other sweeps at their first value); none where Hydra's parser cannot list them (it then
    reports them itself)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        values = [list(o.sweep_string_iterator()) if o.is_sweep_override()
                  else [o.get_value_element_as_str()] for o in parsed]
    except Exception:  # Hydra's grammar errors, sweeps it cannot enumerate (interval)
        return []
    keys = [o.get_key_element() for o in parsed]
    first = [f"{key}={vals[0]}" for key, vals in zip(keys, values)]
    return [first] + [first[:i] + [f"{keys[i]}={value}"] + first[i + 1:]
                      for i, vals in enumerate(values) for value in vals[1:]]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=PRIMARY)
def run(cfg: DictConfig) -> None:
    """Train one configuration. A bad value prints one paragraph and exits with status 2; a run
    stopped early (``lrnets.training.faults``) says how to continue and exits with a non-zero status."""
    try:
        with sigterm_raises():
            train(cfg)
    except ConfigError as err:
        print(f"lrnets: error: {err}", file=sys.stderr)
        remove_if_nothing_written(Path(cfg.paths.output_dir))
        sys.exit(2)
    except RunStopped as err:
        print(f"lrnets: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt as err:  # SIGINT or SIGTERM while loading data or evaluating
        signum = signal_number(err)
        print(f"lrnets: interrupted by {signal.Signals(signum).name} outside the training loop; "
              f"no results were written. If checkpoints/last.ckpt exists: "
              f"{resume_hint(Path(cfg.paths.output_dir))}", file=sys.stderr)
        sys.exit(128 + signum)


def remove_if_nothing_written(folder: Path) -> None:
    """A rejected command leaves no run folder behind: remove ``folder`` when it holds nothing
    but what Hydra writes at the start (``.hydra/``) and empty folders."""
    if folder.is_dir() and all(p.is_dir() or p.relative_to(folder).parts[0] == CONFIG.parent.name
                               for p in folder.rglob("*")):
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
