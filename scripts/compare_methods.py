"""A markdown table of runs, one row per results.json, to compare methods or experiments.

    python train.py -m dataset=mnist mode=binary,ternary,binaryconnect,bwn,twn debug=quickstart
    python scripts/compare_methods.py outputs/multiruns/<date>_<time>

Columns: the run (its folder below the one named), the error of the reported network (the
chosen sample for sampled methods, the one network for straight-through ones), its validation
error, the mode network's and the samples' test errors where the method samples, the
multiplications the discrete layers need when the run states them, and the wall time. Where a
run has them: the ensemble's test error (``eval.ensemble``) and the network chosen on the test
split across epochs (``eval.score_test``, the authors' protocol). Errors use the batch-norm
statistics the run chose by (``eval.recalibrate_bn``).

Experiments, each one change to a base run:

    python scripts/compare_methods.py RUNS... --base BASE_RUN --record results/experiments/NAME

``--base`` adds the column of the settings in which each run differs from ``BASE_RUN`` (those
that decide its results, ``lrnets.decisive``, and its ``eval`` options, read from each run's
composed config). ``--record DEST`` also keeps each completed run's results.json and per-epoch
CSV in ``DEST/<run>/`` (``lrnets.paper.shipping.ship_run``, without an export) and writes the
table with its command to ``DEST/README.md``.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from omegaconf import OmegaConf

from lrnets.console import percent, spread
from lrnets.decisive import decisive_config
from lrnets.paper.shipping import ship_run
from lrnets.run_folder import (CONFIG, RESULTS, Results, most_probable_error, read_config,
                               read_results)

COLUMNS = ["run", "dataset", "mode", "epochs", "test error", "val error",
           "most probable network test error", "samples test error (mean ± std)",
           "multiplications", "wall time"]
ENSEMBLE, ON_TEST = "ensemble test error", "chosen on test (authors' protocol): test error, epoch"


def row(run: str, results: Results) -> list[str]:
    """One table row from a run's results.json (without the optional columns)."""
    recalibrated = bool(results.get("recalibrated_bn"))
    return [run, results["dataset"], results["mode"], str(results["epochs"]),
            percent(results["test_error"]), percent(results["val_error"]),
            percent(most_probable_error(results, "test", recalibrated)),
            spread(results, "test", recalibrated),
            results.get("multiplications", "—"), f"{results['wall_time_s']:.0f} s"]


def settings(folder: Path) -> dict[str, object]:
    """The settings that decide the run's results, and its ``eval`` options (``eval.*``)."""
    cfg = read_config(folder)
    flat = decisive_config(cfg)
    flat.update({f"eval.{key}": value
                 for key, value in OmegaConf.to_container(cfg.eval, resolve=True).items()})
    return flat


def changes(folder: Path, base: dict[str, object]) -> str:
    """``key=value`` for every setting of the run in ``folder`` that differs from ``base``."""
    own = settings(folder)
    keys = sorted(key for key in set(own) | set(base) if own.get(key) != base.get(key))
    return " ".join(f"`{key}={override_value(own.get(key, 'unset'))}`" for key in keys) \
        or "(the base run)"


def override_value(value: object) -> str:
    """A value as an override writes it: ``true``, ``[109]``, ``0.001``, ``ternary``."""
    return value if isinstance(value, str) else json.dumps(value)


def markdown_table(runs: list[tuple[str, Path, Results]], base: Path | None = None) -> str:
    """The table of ``(label, folder, results)`` runs; with ``base``, each run's changes to it."""
    columns = list(COLUMNS)
    extra = {ENSEMBLE: lambda r: percent(r.get("ensemble_test_error")),
             ON_TEST: lambda r: (f"{percent(r['test_error_chosen_on_test'])}, "
                                 f"{r['epoch_chosen_on_test']}")
             if "test_error_chosen_on_test" in r else "—"}
    extra = {name: cell for name, cell in extra.items()
             if any(cell(results) != "—" for _, _, results in runs)}
    columns += list(extra)
    base_settings = None if base is None else settings(base)
    if base_settings is not None:
        columns.append(f"changes from {label_of(base)}")
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for label, folder, results in runs:
        cells = row(label, results) + [cell(results) for cell in extra.values()]
        if base_settings is not None:
            cells.append(changes(folder, base_settings))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collect(folder: Path) -> list[tuple[str, Path, Results]]:
    """Every run under ``folder`` (a sweep, several, or one run), in the order of their paths,
    labelled by their path below ``folder`` (a run named itself: by its last two folders)."""
    files = sorted(folder.rglob(RESULTS.name),  # numbered sweep jobs: 2_... before 10_...
                   key=lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(f))])
    runs = [f.parent for f in files if "references" not in f.parts]
    return [(str(run.relative_to(folder)) if run != folder else label_of(run), run,
             read_results(run)) for run in runs]


def label_of(run: Path) -> str:
    """A run folder named on its own, by its last two folders (``mnist_ternary/seed0``)."""
    return f"{run.parent.name}/{run.name}"


def record(runs: list[tuple[str, Path, Results]], table: str, dest: Path, title: str) -> Path:
    """Keep the completed runs' results and curves under ``dest`` and the table in its
    README.md (with the command that wrote it); returns the README's path."""
    for label, folder, results in runs:
        if results.get("status") == "completed":
            ship_run(folder, dest / label.replace("/", "_"), with_export=False)
    readme = dest / "README.md"
    readme.write_text(f"# {title}\n\n{table}\n\nCommand: "
                      f"`python {shlex.join(['scripts/compare_methods.py', *sys.argv[1:]])}`\n")
    return readme


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders")
    parser.add_argument("--base", type=Path,
                        help="a run folder: add the settings each run changes from it")
    parser.add_argument("--record", type=Path, metavar="DEST",
                        help="keep the runs' results and curves and the table under DEST")
    parser.add_argument("--title", default="Runs compared", help="the heading of DEST/README.md")
    args = parser.parse_args(argv)
    runs = [run for folder in args.folders for run in collect(folder)]
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.folders))}")
    if args.base:
        missing = [str(f / CONFIG) for f in [args.base, *(f for _, f, _ in runs)]
                   if not (f / CONFIG).is_file()]
        if missing:
            parser.error(f"--base compares the runs' composed configs; missing: "
                         f"{', '.join(missing)}")
    table = markdown_table(runs, args.base)
    print(table)
    if args.record:
        print(f"recorded: {record(runs, table, args.record, args.title)}")


if __name__ == "__main__":
    main()
