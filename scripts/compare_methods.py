"""A markdown table of runs, one row per results.json, to compare methods or experiments.

    python train.py -m dataset=mnist mode=binary,ternary,binaryconnect,bwn,twn debug=quickstart
    python scripts/compare_methods.py outputs/multiruns/<date>_<time>

Columns: the run (its folder below the one named), the error of the reported network (the
chosen sample for sampled methods, the one network for straight-through ones), its validation
error, the mode network's and the samples' test errors where the method samples, the
multiplications the discrete layers need when the run states them, and the training time (the
summed epoch times of all its sessions, ``lrnets.training.epochs.training_seconds``; a run
without curves: its results' wall time, that of its last session). Where a
run has them: the ensemble's test error (``eval.ensemble``), that of the network chosen on
validation across epochs (``eval.every_n_epochs``) and of the network chosen on the test split
across epochs (``eval.score_test``, the authors' protocol). Errors use the batch-norm
statistics the run chose by (``eval.recalibrate_bn``).

Experiments, each one change to a base run:

    python scripts/compare_methods.py RUNS... --base BASE_RUN --record results/experiments/NAME

``--base`` adds the column of the settings in which each run differs from ``BASE_RUN`` (those
that decide its results, ``lrnets.decisive``, and its ``eval`` options, read from each run's
composed config; an ``eval`` option a run's version did not have reads as this version's
default, which keeps the behaviour from before the option).
``--record DEST`` also keeps each completed run's results.json, per-epoch CSV and composed
config in ``DEST/<run>/`` (the run's label, ``/`` written ``_``;
``lrnets.paper.shipping.ship_run``, without an export) and writes the table with its command to
``DEST/README.md``. In the checkout's results/ a record goes to ``results/experiments/<name>``.
A record is read as the runs it keeps, so runs are added to it after their predecessors' folders
are gone by naming it among the folders, its base run included:

    python scripts/compare_methods.py results/experiments/NAME NEW_RUN \
        --base results/experiments/NAME/BASE --record results/experiments/NAME

A record not named among the folders is refused (its runs would be replaced or left out of
its table); its heading stays unless ``--title`` is given.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lrnets.config import CONF_DIR
from lrnets.console import percent, spread
from lrnets.decisive import decisive_config
from lrnets.errors import ConfigError
from lrnets.paper.shipping import EXPERIMENTS, SHIPPED, ship_run
from lrnets.run_folder import (CONFIG, RESULTS, Results, most_probable_error, read_config,
                               read_results)
from lrnets.training.epochs import training_seconds

COLUMNS = ["run", "dataset", "mode", "epochs", "test error", "val error",
           "most probable network test error", "samples test error (mean ± std)",
           "multiplications", "training time"]
Run = tuple[str, Path, Results]  # (label, folder, results)


def row(label: str, folder: Path, results: Results) -> list[str]:
    """One table row from the run in ``folder`` (without the optional columns); a run that has
    not completed is named so in its test error's place."""
    recalibrated = bool(results.get("recalibrated_bn"))
    status = results.get("status", "completed")
    test = percent(results.get("test_error")) if status == "completed" else status
    seconds = training_seconds(folder)
    seconds = results.get("wall_time_s") if seconds is None else seconds
    return [label, results.get("dataset", "—"), results.get("mode", "—"),
            str(results.get("epochs", "—")), test, percent(results.get("val_error")),
            percent(most_probable_error(results, "test", recalibrated)),
            spread(results, "test", recalibrated),
            results.get("multiplications", "—"), "—" if seconds is None else f"{seconds:.0f} s"]


def ensemble_error(results: Results) -> str:
    """``eval.ensemble``: the test error of the sampled networks' average softmax."""
    if "ensemble_test_error" not in results:
        return "—"
    return f"{percent(results['ensemble_test_error'])} ({results['ensemble_size']} networks)"


def chosen_across_epochs(results: Results) -> str:
    """The test error of the network best on validation over every scored epoch, and its
    epoch."""
    if "test_error_chosen_across_epochs" not in results:
        return "—"
    return (f"{percent(results['test_error_chosen_across_epochs'])}, epoch "
            f"{results['epoch_chosen_across_epochs']}")


def chosen_on_test(results: Results) -> str:
    """``eval.score_test``: the lowest test error of any network scored, and its epoch."""
    if "test_error_chosen_on_test" not in results:
        return "—"
    error, epoch = results["test_error_chosen_on_test"], results["epoch_chosen_on_test"]
    return f"{percent(error)}, epoch {epoch}"


OPTIONAL = {"ensemble test error": ensemble_error,
            "chosen on validation across epochs": chosen_across_epochs,
            "chosen on test (authors' protocol, optimistic)": chosen_on_test}


def settings(folder: Path) -> dict[str, object]:
    """The settings that decide the run's results, and its ``eval`` options (``eval.*``, this
    version's defaults for those its version did not have);
    ``ConfigError`` for a composed config that is missing or cannot be read."""
    if not (folder / CONFIG).is_file():
        raise ConfigError(f"--base compares the runs' composed configs: {folder / CONFIG} is "
                          f"missing.")
    try:
        cfg = read_config(folder)
        flat = decisive_config(cfg)
        defaults = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "train.yaml").eval)
        own = OmegaConf.to_container(cfg.eval, resolve=True)
        flat.update({f"eval.{key}": value for key, value in {**defaults, **own}.items()})
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{folder / CONFIG} is not a run's composed config that can be read "
                          f"({type(err).__name__}: {err}).") from None
    return flat


def changes(own: dict[str, object], base: dict[str, object]) -> str:
    """``key=value`` for every setting in ``own`` that differs from ``base``."""
    keys = sorted(key for key in set(own) | set(base) if own.get(key) != base.get(key))
    return " ".join(f"`{key}={override_value(own.get(key, 'unset'))}`" for key in keys) \
        or "no change in the settings that decide results or in eval"


def override_value(value: object) -> str:
    """A value as an override writes it: ``true``, ``[109]``, ``0.001``, ``ternary``."""
    return value if isinstance(value, str) else json.dumps(value)


def markdown_table(runs: list[Run], base: dict[str, object] | None = None,
                   base_folder: Path | None = None) -> str:
    """The table of ``runs``; with the ``base`` run's ``settings`` (its folder ``base_folder``),
    each run's changes to it."""
    optional = {name: cell for name, cell in OPTIONAL.items()
                if any(cell(results) != "—" for _, _, results in runs)}
    columns = COLUMNS + list(optional) + ([] if base is None else ["changes from the base run"])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for label, folder, results in runs:
        cells = row(label, folder, results) + [cell(results) for cell in optional.values()]
        if base is not None:
            cells.append("(the base run)" if folder.resolve() == base_folder.resolve()
                         else changes(settings(folder), base))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collect(folder: Path) -> list[Run]:
    """Every run under ``folder`` (a sweep, several, or one run) but references, in the order
    of their paths, labelled by their path below ``folder`` (a run named itself: by its last
    two folders, ``mnist_ternary/seed0``)."""
    files = sorted(folder.rglob(RESULTS.name),  # numbered sweep jobs: 2_... before 10_...
                   key=lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(f))])
    runs = [f.parent for f in files if "references" not in f.parts]
    whole = folder.resolve()
    return [(str(run.relative_to(folder)) if run != folder else f"{whole.parent.name}/{whole.name}",
             run, read_results(run)) for run in runs]


def record_folders(runs: list[Run], dest: Path) -> dict[Path, Path]:
    """Where ``--record DEST`` keeps each completed run: ``DEST/<label with / as _>``, except a
    run read from where it would be kept (a run of the record itself, which stays as it is).
    Raises ``ConfigError`` where two runs would share a folder, where one would be kept over or
    inside a run being read, where a run kept in ``DEST`` earlier is not read (``DEST`` not
    named among the folders: it would be replaced or dropped from the table), and for a
    ``DEST`` in the shipped cells' folder other than ``results/experiments/<name>``."""
    shipped = SHIPPED.resolve()
    where = dest.resolve()
    if where.is_relative_to(shipped) and where.parent != shipped / EXPERIMENTS:
        raise ConfigError(f"--record {dest}: in {shipped} experiments are kept in "
                          f"{shipped / EXPERIMENTS}/<name>, not among the shipped cells.")
    read = {folder.resolve() for _, folder, _ in runs}
    earlier = [path for path in (where.iterdir() if where.is_dir() else ())
               if (path / RESULTS).is_file() or path.name == "README.md"]
    if earlier and not any(folder.is_relative_to(where) for folder in read):
        raise ConfigError(f"--record {dest}: it holds a record already ({earlier[0]}) and none "
                          f"of its runs is among the folders given; name {dest} among them to "
                          f"add runs to it, or record into another folder.")
    folders: dict[Path, Path] = {}
    taken: set[Path] = set()
    for label, folder, results in runs:
        if results.get("status") != "completed":
            continue
        kept = dest / label.replace("/", "_")
        if kept in taken:
            raise ConfigError(f"--record {dest}: two runs would be kept in {kept}; give folders "
                              f"whose runs have different names.")
        taken.add(kept)
        if kept.resolve() == folder.resolve():
            continue
        if kept.exists():
            raise ConfigError(f"--record {dest}: {kept} holds a run kept earlier that would be "
                              f"replaced by {folder}; remove {kept} first to keep the run anew.")
        if kept.resolve().is_relative_to(folder.resolve()) or \
                folder.resolve().is_relative_to(kept.resolve()):
            raise ConfigError(f"--record {dest}: {kept} would replace the run {folder} it is "
                              f"read from; record into another folder.")
        folders[folder] = kept
    return folders


def record(runs: list[Run], table: str, dest: Path, title: str | None, command: str) -> Path:
    """Keep the completed runs' results and curves under ``dest`` (``record_folders``) and the
    table in its README.md with ``command`` under ``title`` (None: the record's heading so far,
    or "Runs compared"); returns the README's path."""
    for folder, kept in record_folders(runs, dest).items():
        ship_run(folder, kept, with_export=False)
    dest.mkdir(parents=True, exist_ok=True)  # where no run has completed
    readme = dest / "README.md"
    if title is None:
        heading = readme.read_text().partition("\n")[0] if readme.is_file() else ""
        title = heading[2:] if heading.startswith("# ") else "Runs compared"
    readme.write_text(f"# {title}\n\n{table}\n\nCommand: `{command}`\n")
    return readme


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders")
    parser.add_argument("--base", type=Path,
                        help="a run folder: add the settings each run changes from it")
    parser.add_argument("--record", type=Path, metavar="DEST",
                        help="keep the runs' results and curves and the table under DEST")
    parser.add_argument("--title",
                        help="with --record: the heading of DEST/README.md (default: its "
                             "heading so far, or 'Runs compared')")
    args = parser.parse_args(argv)
    runs = [run for folder in args.folders for run in collect(folder)]
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.folders))}")
    try:
        table = markdown_table(runs, settings(args.base) if args.base else None, args.base)
        print(table)
        if args.record:
            command = shlex.join(["python", "scripts/compare_methods.py",
                                  *(sys.argv[1:] if argv is None else argv)])
            print(f"recorded: {record(runs, table, args.record, args.title, command)}")
    except ConfigError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
