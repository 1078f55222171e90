"""The paper's Tables 1 and 2 next to this framework's results (``scripts/reproduce_table*.py``).

A table has one cell per (data set, mode): the LR-nets and the full-precision reference through
their ``experiment=paper/<dataset>_<mode>`` configs, and every other mode of ``conf/mode/`` (the
baselines) with ``dataset=<dataset> mode=<mode>``. Each cell's error is the mean and standard
deviation over seeds of the runs' ``results.json`` (``test_error``: the discrete network chosen
on the validation split, sec. 4.4). The only figures typed in here are the paper's own, in
``TABLE1`` and ``TABLE2``, and the tables label them as the paper's.
"""
from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from lrnets.config import CONF_DIR, compose_config, group_choices
from lrnets.console import percent
from lrnets.data.files import CIFAR_DIR, cifar10_matches_release, data_root
from lrnets.errors import ConfigError
from lrnets.paper.cells import (Cell, cell_runs, check_extra_overrides, run_cells,
                              seed_folder)
from lrnets.paper.shipping import EXPORT, machine, ship_run, training_hours
from lrnets.run_folder import (NETWORK, OVERRIDES, Results, epochs_done, most_probable_error,
                               read_results)

DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}


@dataclass(frozen=True)
class PaperRow:
    """One method of the paper's table: its name there, the mode of ``conf/mode/`` that
    implements it (None where the framework has none) and its errors in percent, keyed by
    (data set, metric)."""

    method: str
    mode: str | None
    errors: dict[tuple[str, str], float]


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    datasets: tuple[str, ...]
    metrics: tuple[tuple[str, str], ...]  # (results.json key, column label)
    paper: tuple[PaperRow, ...]
    overrides: tuple[str, ...] = ()       # added to every cell


def _row(method: str, mode: str | None, **errors: float) -> PaperRow:
    """``mnist__test_error=1.29`` style keywords to a ``PaperRow``."""
    return PaperRow(method, mode, {tuple(k.split("__")): v for k, v in errors.items()})


# Shayer et al. 2018, Table 1 (MNIST, CIFAR-10); BinaryConnect's MNIST figure is 1.29 +- 0.08.
TABLE1 = TableSpec(
    "table1", "Table 1: test error (%) on MNIST and CIFAR-10", ("mnist", "cifar10"),
    (("test_error", "error"),),
    (
        _row("BinaryConnect", "binaryconnect", mnist__test_error=1.29, cifar10__test_error=9.9),
        _row("BNN", None, mnist__test_error=1.4, cifar10__test_error=10.15),
        _row("Binary Weight Network", "bwn", mnist__test_error=0.95, cifar10__test_error=9.82),
        _row("LR-net, binary", "binary", mnist__test_error=0.53, cifar10__test_error=6.82),
        _row("Ternary Weight Network", "twn", mnist__test_error=0.65, cifar10__test_error=7.44),
        _row("LR-net, ternary", "ternary", mnist__test_error=0.50, cifar10__test_error=6.74),
        _row("Full precision reference", "full_precision", mnist__test_error=0.52,
             cifar10__test_error=6.63),
    ),
)

# Shayer et al. 2018, Table 2 (ImageNet, ResNet-18).
TABLE2 = TableSpec(
    "table2", "Table 2: test error (%) on ImageNet, ResNet-18", ("imagenet",),
    (("test_error", "top-1"), ("test_error_top5", "top-5")),
    (
        _row("Binary-Weight-Network", "bwn", imagenet__test_error=39.2,
             imagenet__test_error_top5=17.0),
        _row("XNOR-Net", None, imagenet__test_error=48.8, imagenet__test_error_top5=26.8),
        _row("LR-net, binary", "binary", imagenet__test_error=40.1,
             imagenet__test_error_top5=17.7),
        _row("Ternary Weight Network", "twn", imagenet__test_error=38.2,
             imagenet__test_error_top5=15.8),
        _row("LR-net, ternary", "ternary", imagenet__test_error=36.5,
             imagenet__test_error_top5=15.2),
        _row("Full precision reference", "full_precision", imagenet__test_error=30.43,
             imagenet__test_error_top5=10.76),
    ),
    overrides=("eval.top5=true",),
)


def available_modes() -> list[str]:
    """Every mode the framework has (``conf/mode/*.yaml``)."""
    return group_choices("mode")


def table_modes(spec: TableSpec, modes: list[str]) -> list[str]:
    """``modes`` in table order: the paper's rows first, then the others alphabetically."""
    paper = [row.mode for row in spec.paper if row.mode in modes]
    return paper + sorted(set(modes) - set(paper))


def table_cells(spec: TableSpec, modes: list[str], datasets: list[str], runs_dir: Path
                ) -> dict[tuple[str, str], Cell]:
    """One cell per (data set, mode): ``experiment=paper/<dataset>_<mode>`` where that config
    exists (the paper's settings), else ``dataset=<dataset> mode=<mode>``.

    When the table has the full-precision cell, it comes first and is the reference the other
    cells of its data set start from (the same seed's ``network.pt``): the paper's reference
    row and the initialisation of the discrete rows are one network, trained once."""
    cells = {}
    for dataset in datasets:
        reference = "full_precision" in modes
        for mode in sorted(modes, key=lambda m: m != "full_precision"):
            experiment = f"paper/{dataset}_{mode}"
            if (CONF_DIR / "experiment" / f"{experiment}.yaml").is_file():
                base = [f"experiment={experiment}"]
            else:
                base = [f"dataset={dataset}", f"mode={mode}"]
            if reference and mode != "full_precision":
                network = (seed_folder(runs_dir, Cell(f"{dataset}_full_precision", ()), "${seed}")
                           / NETWORK)
                base.append(f"init.checkpoint={network}")
            cells[dataset, mode] = Cell(f"{dataset}_{mode}", (*base, *spec.overrides))
    return cells


@dataclass
class CellRow:
    """One row of a table: the paper's figures and what the runs of a cell measured."""

    dataset: str
    method: str
    mode: str
    paper: dict[str, float | None]
    ours: dict[str, tuple[float, float | None] | None] = field(default_factory=dict)
    seeds: int = 0
    seeds_planned: int = 0
    epochs_run: list[int] = field(default_factory=list)
    epochs_full: int | None = None
    epoch_time_s: float | None = None
    status: str = ""
    overrides: str = ""

    @property
    def projected_hours(self) -> float | None:
        """The full schedule's training time at the runs' median epoch time."""
        if self.epoch_time_s is None or self.epochs_full is None:
            return None
        return self.epoch_time_s * self.epochs_full / 3600


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value), in percent."""
    percent = [100 * v for v in values]
    return statistics.fmean(percent), statistics.stdev(percent) if len(percent) > 1 else None


def _run_overrides(folder: Path, cell: Cell) -> list[str]:
    """The overrides a run was started with beyond its cell's and its seed (the shortened
    schedule, limits, ...), from ``.hydra/overrides.yaml``."""
    path = folder / OVERRIDES
    if not path.is_file():
        return []
    skip = set(cell.overrides) | {"ckpt_path=last"}
    return [o for o in OmegaConf.load(path) if o not in skip and not o.startswith("seed=")]


def cell_row(spec: TableSpec, cell: Cell, dataset: str, mode: str, seeds: list[int],
             runs_dir: Path) -> CellRow:
    paper = next((r for r in spec.paper if r.mode == mode), None)
    row = CellRow(dataset, paper.method if paper else mode, mode,
                  {key: paper.errors.get((dataset, key)) if paper else None
                   for key, _ in spec.metrics}, seeds_planned=len(seeds))
    row.epochs_full = compose_config(list(cell.overrides)).train.epochs
    runs = cell_runs(runs_dir, cell, seeds)
    done = {s: r for s, r in runs.items() if r is not None and r.get("status") == "completed"}
    row.seeds = len(done)
    row.epochs_run = sorted({r["epochs"] for r in done.values()})
    epoch_times = [r["epoch_time_s"] for r in done.values() if r.get("epoch_time_s")]
    row.epoch_time_s = statistics.median(epoch_times) if epoch_times else None
    for key, _ in spec.metrics:
        values = [r[key] for r in done.values() if r.get(key) is not None]
        row.ours[key] = mean_std(values) if values else None
    problems = [f"seed {s}: {_state(seed_folder(runs_dir, cell, s), r, row.epochs_full)}"
                for s, r in runs.items() if s not in done]
    row.status = "; ".join(problems) or "ok"
    overrides = {" ".join(_run_overrides(seed_folder(runs_dir, cell, s), cell)) for s in done}
    row.overrides = " | ".join(sorted(overrides))
    return row


def _state(folder: Path, results: dict | None, epochs: int) -> str:
    """What an unfinished run is: stopped or failed (its results say), in progress, not run."""
    if results is not None:
        return results.get("status")
    try:
        trained = epochs_done(folder)
    except Exception:  # noqa: BLE001 -- a checkpoint being written; torch raises several types
        return "in progress"
    return f"in progress, {trained} of {epochs} epochs" if trained else "not run"


def paper_only_rows(spec: TableSpec, datasets: list[str]) -> list[CellRow]:
    """The paper's methods that have no mode here (BNN, XNOR-Net): the paper's figure only."""
    return [CellRow(dataset, row.method, "—",
                    {key: row.errors.get((dataset, key)) for key, _ in spec.metrics},
                    status="no such mode in conf/mode/")
            for dataset in datasets for row in spec.paper if row.mode is None]


def build_rows(spec: TableSpec, cells: dict[tuple[str, str], Cell], datasets: list[str],
               seeds: list[int], runs_dir: Path) -> list[CellRow]:
    """The cells' rows and the paper's rows without a mode, by data set in the paper's order."""
    rows = paper_only_rows(spec, datasets)
    rows += [cell_row(spec, cell, dataset, mode, seeds, runs_dir)
             for (dataset, mode), cell in cells.items()]
    order = {row.method: i for i, row in enumerate(spec.paper)}
    rows.sort(key=lambda r: (datasets.index(r.dataset), order.get(r.method, len(order)), r.method))
    return rows


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ours(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "—"
    mean, std = value
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _epochs(row: CellRow) -> str:
    """``2 of 190`` (or ``1–2 of 190`` when seeds differ): epochs run, of the full schedule."""
    if not row.epochs_run:
        return "—"
    run = "–".join(str(e) for e in dict.fromkeys((row.epochs_run[0], row.epochs_run[-1])))
    return f"{run} of {row.epochs_full}"


def _timing(row: CellRow) -> str:
    """``41.2 s, 2.17 h``: the median epoch time and the full schedule projected from it."""
    if row.projected_hours is None:
        return "—"
    return f"{row.epoch_time_s:.1f} s, {row.projected_hours:.2f} h"


def projection_note(rows: list[CellRow]) -> str | None:
    """The whole table's projected training time, one seed per cell, on this machine."""
    timed = [row for row in rows if row.projected_hours is not None]
    if not timed:
        return None
    untimed = [f"{row.dataset} {row.mode}" for row in rows
               if row.projected_hours is None and row.mode != "—"]
    text = (f"Projected training time of the full schedules, one seed per cell: "
            f"{sum(row.projected_hours for row in timed):.1f} h, the sum over cells of the "
            f"median epoch time (validation included) times the paper config's epochs; the "
            f"final sampling and test evaluation are not counted.")
    if untimed:
        text += f" Cells without a timed epoch, not counted: {', '.join(untimed)}."
    return text


def cifar10_note(rows: list[CellRow]) -> str | None:
    """A footnote when the CIFAR-10 files the runs read (``dataset.root``, else
    ``$LRNETS_DATA``, else ``./data``, at the time the table is written) are not the official
    release, such as the offline JPEG re-encoding."""
    if not any(row.dataset == "cifar10" and row.seeds for row in rows):
        return None
    folder = data_root(compose_config(["dataset=cifar10"]).dataset.root) / CIFAR_DIR
    if not folder.is_dir() or cifar10_matches_release(folder):
        return None
    return (f"CIFAR-10: the batches in {folder} are not the official release (their checksums "
            f"differ; the offline copy is a JPEG re-encoding of the images), so these errors "
            f"are not exactly comparable with the paper's.")


def markdown(spec: TableSpec, rows: list[CellRow], seeds: list[int], runs_dir: Path) -> str:
    """One table per data set; distinct override sets of the runs become numbered notes."""
    error_columns = [name if len(spec.metrics) == 1 else f"{name}, {label}"
                     for _, label in spec.metrics for name in ("ours", "paper")]
    header = ["method", "mode", *error_columns, "epochs run", "epoch time, full schedule",
              "seeds", "runs' overrides", "status"]
    override_sets = sorted({row.overrides for row in rows if row.overrides})
    notes = {text: f"[{i + 1}]" for i, text in enumerate(override_sets)}
    lines = [f"# {spec.title}", "",
             "*ours*: test error of the discrete network chosen on the validation split "
             "(sec. 4.4; the network itself for full-precision and straight-through runs), mean "
             "± sample standard deviation over seeds. *paper*: the figure printed in Shayer, Levi "
             "& Fetaya (ICLR 2018), not measured here. *epochs run of N*: N is the paper "
             "config's full schedule.", ""]
    for dataset in dict.fromkeys(row.dataset for row in rows):
        lines += [f"## {DATASET_NAMES.get(dataset, dataset)}", "",
                  "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for row in (r for r in rows if r.dataset == dataset):
            errors = [c for key, _ in spec.metrics
                      for c in (_ours(row.ours.get(key)), _percent(row.paper[key]))]
            seeds_text = f"{row.seeds}/{row.seeds_planned}" if row.seeds_planned else "—"
            lines.append("| " + " | ".join([row.method, row.mode, *errors, _epochs(row),
                                            _timing(row), seeds_text,
                                            notes.get(row.overrides, ""), row.status]) + " |")
        lines.append("")
    if notes:
        lines += ["Runs' overrides beyond the cell's config and seed:", ""]
        lines += [f"- {mark} `{text}`" for text, mark in notes.items()]
        lines.append("")
    for note in (projection_note(rows), cifar10_note(rows)):
        if note:
            lines += [f"Note: {note}", ""]
    lines.append(f"Seeds {', '.join(map(str, seeds))}; runs in `{runs_dir}`; written "
                 f"{datetime.now():%Y-%m-%d %H:%M}.")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, spec: TableSpec, rows: list[CellRow]) -> None:
    fields = ["dataset", "method", "mode"]
    for key, _ in spec.metrics:
        fields += [f"{key}_mean_percent", f"{key}_std_percent", f"paper_{key}_percent"]
    fields += ["seeds", "seeds_planned", "epochs_run", "epochs_full_schedule", "epoch_time_s",
               "projected_full_schedule_h", "overrides", "status"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            record = {"dataset": row.dataset, "method": row.method, "mode": row.mode,
                      "seeds": row.seeds, "seeds_planned": row.seeds_planned,
                      "epochs_run": " ".join(map(str, row.epochs_run)),
                      "epochs_full_schedule": row.epochs_full, "epoch_time_s": row.epoch_time_s,
                      "projected_full_schedule_h": row.projected_hours, "overrides": row.overrides,
                      "status": row.status}
            for key, _ in spec.metrics:
                mean, std = row.ours.get(key) or (None, None)
                record.update({f"{key}_mean_percent": mean, f"{key}_std_percent": std,
                               f"paper_{key}_percent": row.paper[key]})
            writer.writerow(record)


def write_table(spec: TableSpec, rows: list[CellRow], seeds: list[int], runs_dir: Path,
                out: Path) -> tuple[Path, Path]:
    """``<out>/<table>.md`` and ``<out>/<table>.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    md, table_csv = out / f"{spec.name}.md", out / f"{spec.name}.csv"
    md.write_text(markdown(spec, rows, seeds, runs_dir))
    write_csv(table_csv, spec, rows)
    return md, table_csv


def table_parser(spec: TableSpec, doc: str) -> argparse.ArgumentParser:
    """The command line of a table script: ``doc`` (the script's docstring) as description and
    epilog, and the options both table scripts share."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=doc.split("\n\n", 1)[1])
    add_table_arguments(parser, spec)
    return parser


def run_table(parser: argparse.ArgumentParser, spec: TableSpec, args: argparse.Namespace) -> dict:
    """``reproduce_table``, a ``ConfigError`` reported as the script's usage error (status 2)."""
    try:
        return reproduce_table(spec, args)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


def add_table_arguments(parser: argparse.ArgumentParser, spec: TableSpec) -> None:
    """The options both table scripts share."""
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every run, e.g. +trainer.limit_train_batches=20")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per cell (default 1)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                        help="multiply every schedule (epochs, milestones, the reference's) by F")
    parser.add_argument("--modes", nargs="+", metavar="MODE",
                        help="modes of conf/mode/ to run (default: all of them)")
    parser.add_argument("--datasets", nargs="+", choices=spec.datasets, default=list(spec.datasets))
    parser.add_argument("--runs-dir", type=Path, default=Path(f"outputs/tables/{spec.name}_runs"),
                        help="where the runs go, one folder per cell and seed; completed runs "
                             "there are collected, not run again")
    parser.add_argument("--collect", type=Path, metavar="DIR",
                        help="run nothing: tabulate the runs already in DIR (a --runs-dir)")
    parser.add_argument("--out", type=Path, default=Path("outputs/tables"),
                        help=f"folder of {spec.name}.md and {spec.name}.csv")
    parser.add_argument("--ship", type=Path, metavar="DIR",
                        help="also copy each completed cell's seed 0 into DIR/<dataset>/<mode>/ "
                             "(results.json, epochs.csv, the export) and write DIR/README.md, "
                             "the table with training times, the machine and the commands")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def reproduce_table(spec: TableSpec, args: argparse.Namespace) -> dict:
    """Train the cells' missing runs (unless ``--collect`` or ``--dry-run``), then write the
    table. Raises ``ConfigError`` for unknown modes and bad overrides."""
    check_extra_overrides(args.overrides)
    known = available_modes()
    unknown = sorted(set(args.modes or []) - set(known))
    if unknown:
        raise ConfigError(f"--modes {' '.join(unknown)}: no such mode; conf/mode/ has "
                          f"{', '.join(known)}.")
    modes = table_modes(spec, args.modes or known)
    seeds = list(range(args.seeds))
    runs_dir = (args.collect or args.runs_dir).resolve()
    cells = table_cells(spec, modes, args.datasets, runs_dir)
    failed = [] if args.collect else run_cells(list(cells.values()), seeds, runs_dir,
                                               args.epochs_scale, args.overrides, args.dry_run)
    if args.dry_run:
        return {"failed": failed}
    rows = build_rows(spec, cells, args.datasets, seeds, runs_dir)
    md, table_csv = write_table(spec, rows, seeds, runs_dir, args.out)
    print(md.read_text())
    print(f"written: {md}, {table_csv}")
    if args.ship:
        print(f"shipped: {ship_table(spec, cells, rows, seeds, runs_dir, args.ship)}")
    return {"markdown": str(md), "csv": str(table_csv), "failed": failed,
            "rows": [asdict(row) for row in rows]}


def other_networks(results: Results) -> str:
    """The shipped cell's reported test error and those of the networks it did not report: the
    most probable one, the ensemble, the one chosen on validation across epochs, and the one
    chosen on the test split (``eval.score_test``, the authors' protocol)."""
    text = percent(results.get("test_error"))
    recalibrated = bool(results.get("recalibrated_bn"))
    if (most_probable := most_probable_error(results, "test", recalibrated)) is not None:
        bn = "re-estimated" if recalibrated else "as trained"
        text += f"; most probable {percent(most_probable)} (batch norm {bn})"
    if "ensemble_size" in results:
        text += f"; ensemble of {results['ensemble_size']} {percent(results['ensemble_test_error'])}"
    if "test_error_chosen_across_epochs" in results:
        text += (f"; chosen on validation across epochs "
                 f"{percent(results['test_error_chosen_across_epochs'])} at epoch "
                 f"{results['epoch_chosen_across_epochs']}")
    if "test_error_chosen_on_test" in results:
        text += (f"; chosen on test (the authors' protocol, optimistic) "
                 f"{percent(results['test_error_chosen_on_test'])} at epoch "
                 f"{results['epoch_chosen_on_test']}")
    return text


def ship_table(spec: TableSpec, cells: dict[tuple[str, str], Cell], rows: list[CellRow],
               seeds: list[int], runs_dir: Path, dest: Path) -> Path:
    """Ship every completed cell's seed 0 (``lrnets.paper.shipping``) and write ``dest/README.md``:
    the table, then per shipped cell its training time, export size and test errors
    (``other_networks``), the machine and the command that made the table. Returns the
    README's path."""
    lines = ["## Shipped cells", "",
             "| cell | folder | epochs | training time | export | test error: chosen on validation; "
             "other networks |", "| --- | --- | --- | --- | --- | --- |"]
    for (dataset, mode), cell in cells.items():
        folder = seed_folder(runs_dir, cell, 0)
        results = read_results(folder)
        if results is None or results.get("status") != "completed":
            continue
        shipped = ship_run(folder, dest / dataset / mode)
        hours = training_hours(shipped)
        export = shipped / EXPORT
        size = (f"{sum(f.stat().st_size for f in export.iterdir()) / 1e6:.2f} MB"
                if export.is_dir() else "— (full precision)")
        lines.append(f"| {dataset} {mode} | `{shipped.relative_to(dest)}` | {results['epochs']} | "
                     f"{'—' if hours is None else f'{hours:.2f} h'} | {size} | "
                     f"{other_networks(results)} |")
    lines += ["", "*training time*: the sum of the epochs' times, validation included (final "
              "sampling and test evaluation not counted).", "",
              f"Machine (where the table was collected; the runs were trained there): "
              f"{machine()}.", "",
              f"Command: `python {shlex.join(sys.argv)}`",
              ""]
    readme = dest / "README.md"
    readme.write_text(markdown(spec, rows, seeds, runs_dir) + "\n" + "\n".join(lines))
    return readme
