"""Command line: ``lrnets-train`` (= ``python train.py``) with Hydra overrides."""
from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lrnets.config import CONF_DIR, PRIMARY, compose_config
from lrnets.errors import ConfigError, RunStopped
from lrnets.run_folder import CONFIG
from lrnets.training.faults import sigterm_raises, signal_number
from lrnets.training.resume import resume_hint
from lrnets.training.run import train


def main() -> None:
    """``lrnets-train OVERRIDES``: overrides that do not compose (an unknown option, a moved one
    such as ``mode.beta``) print one paragraph and exit with status 2 before Hydra starts; a
    multirun (``-m``) leaves them to Hydra."""
    args = sys.argv[1:]
    if not {"-m", "--multirun"} & set(args):
        try:
            compose_config([arg for arg in args if "=" in arg and not arg.startswith("-")])
        except ConfigError as err:
            print(f"lrnets: error: {err}", file=sys.stderr)
            sys.exit(2)
    run()


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
