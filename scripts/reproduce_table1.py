"""Table 1 of the LR-nets paper (MNIST, CIFAR-10): train its cells, write our errors next to the
paper's.

    python scripts/reproduce_table1.py --dry-run                 # the commands, nothing run
    python scripts/reproduce_table1.py --seeds 3                 # the paper's schedules (GPU)
    python scripts/reproduce_table1.py --epochs-scale 0.02 --datasets mnist    # a CPU's hours
    python scripts/reproduce_table1.py --datasets cifar10 --epochs-scale 0.01 \\
        +trainer.limit_train_batches=20 eval.num_samples=2        # a few CIFAR-10 batches
    python scripts/reproduce_table1.py --collect outputs/tables/table1_runs --seeds 3

Cells: LR-net binary and ternary and the full-precision reference through
``experiment=paper/<dataset>_<mode>``, and every other mode of ``conf/mode/`` (the baselines)
with ``dataset=<dataset> mode=<mode>``, each one Hydra multirun over the seeds into
``<runs-dir>/<dataset>_<mode>/seed<N>/``. Completed runs there are collected instead of trained
again, so a stopped reproduction continues where it was. Writes ``<out>/table1.md`` and
``table1.csv``: our test error (mean ± std over seeds), the paper's figure, the epochs run and
the seeds, with a footnote when the CIFAR-10 files are not the official release. Exits with
status 1 when a cell's training failed (the table is written all the same).
"""
from __future__ import annotations

import sys

from lrnets.paper.tables import TABLE1, run_table, table_parser


def main(argv: list[str] | None = None) -> dict:
    parser = table_parser(TABLE1, __doc__)
    return run_table(parser, TABLE1, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
