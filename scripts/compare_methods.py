"""A markdown table of the runs of a sweep, one row per results.json, to compare methods.

    python train.py -m dataset=mnist mode=binary,ternary,binaryconnect,bwn,twn debug=quickstart
    python scripts/compare_methods.py outputs/multiruns/<date>_<time>

Columns: the error of the reported network (the chosen sample for sampled methods, the one
network for straight-through ones), its validation error, the mode network's and the samples'
test errors where the method samples, the multiplications the discrete layers need when the
run states them, and the wall time. Errors use the batch-norm statistics the run chose by
(``eval.recalibrate_bn``).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from lrnets.console import percent, spread
from lrnets.run_folder import RESULTS, Results, most_probable_error, read_results

COLUMNS = ["dataset", "mode", "epochs", "test error", "val error", "most probable network test error",
           "samples test error (mean ± std)", "multiplications", "wall time"]


def row(results: Results) -> list[str]:
    """One table row from a run's results.json."""
    recalibrated = bool(results.get("recalibrated_bn"))
    return [results["dataset"], results["mode"], str(results["epochs"]),
            percent(results["test_error"]), percent(results["val_error"]),
            percent(most_probable_error(results, "test", recalibrated)),
            spread(results, "test", recalibrated),
            results.get("multiplications", "—"), f"{results['wall_time_s']:.0f} s"]


def markdown_table(runs: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(results)) + " |" for results in runs]
    return "\n".join(lines)


def collect(folder: Path) -> list[Results]:
    """Every results.json under ``folder`` (a sweep, or several), in the order of their paths."""
    files = sorted(folder.rglob(RESULTS.name),  # numbered sweep jobs: 2_... before 10_...
                   key=lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(f))])
    return [read_results(f.parent) for f in files if "references" not in f.parts]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders")
    args = parser.parse_args(argv)
    runs = [results for folder in args.folders for results in collect(folder)]
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.folders))}")
    print(markdown_table(runs))


if __name__ == "__main__":
    main()
