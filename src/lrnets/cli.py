"""Command line: ``lrnets-train`` (= ``python train.py``) with Hydra overrides."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lrnets.errors import ConfigError, RunStopped
from lrnets.faults import sigterm_raises, signal_number
from lrnets.reference import CONF_DIR
from lrnets.resume import resume_hint
from lrnets.run import train


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    """Train one configuration. A bad value prints one paragraph and exits with status 2; a run
    stopped early (``lrnets.faults``) says how to continue and exits with a non-zero status."""
    try:
        with sigterm_raises():
            train(cfg)
    except ConfigError as err:
        print(f"lrnets: error: {err}", file=sys.stderr)
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


if __name__ == "__main__":
    main()
