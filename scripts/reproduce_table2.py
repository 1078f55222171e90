"""Table 2 of the LR-nets paper (ImageNet, ResNet-18, top-1 and top-5): train its cells, write
our errors next to the paper's.

    python scripts/reproduce_table2.py --dry-run --imagenet-root /data/imagenet
    python scripts/reproduce_table2.py --imagenet-root /data/imagenet --modes binary ternary
    python scripts/reproduce_table2.py --collect outputs/tables/table2_runs
    python scripts/reproduce_table2.py --smoke      # no ImageNet: a generated tree, minutes on a CPU

The ImageNet root holds ImageFolder trees ``train/<class>/`` and ``val/<class>/`` (the paper's
validation set is the test set here; the validation split that chooses the sampled network is
held out of train/). Cells, folders, collection and options are those of
``reproduce_table1.py``; every run also reports its top-5 error (``eval.top5=true``). ``--smoke``
checks the whole pipeline on a generated 6-class tree of 32x32 images with one-batch epochs
(LR binary, LR ternary and full precision unless ``--modes`` says otherwise); its numbers mean
nothing. Writes ``<out>/table2.md`` and ``table2.csv`` (``table2_smoke.*`` for ``--smoke``).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from PIL import Image

from lrnets.paper.cells import override_key
from lrnets.paper.tables import TABLE2, run_table, table_parser

SMOKE_MODES = ["binary", "ternary", "full_precision"]


def smoke_overrides(root: Path) -> list[str]:
    """Settings that make a ResNet-18 cell take seconds on a CPU."""
    return [f"dataset.root={root}", "dataset.image_size=32", "dataset.resize=36",
            "dataset.val_size=8", "dataset.num_workers=0", "train.batch_size=8", "train.epochs=1",
            "init.reference.epochs=1", "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
            "eval.num_samples=1"]


def make_tiny_imagefolder(root: Path, classes: int = 6, train: int = 10, val: int = 3,
                          size: int = 40) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``: noisy images of one colour
    per class, written once."""
    if (root / "val").is_dir():
        return root
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(classes, 3, 1, 1, generator=generator)
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = 0.3 * torch.randn(3, size, size, generator=generator)
                pixels = (255 * (colours[c] + noise).clamp(0, 1)).to(torch.uint8)
                Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return root


def main(argv: list[str] | None = None) -> dict:
    parser = table_parser(TABLE2, __doc__)
    parser.add_argument("--imagenet-root", type=Path, help="folder with train/ and val/")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny generated ImageFolder tree and one-batch runs (no ImageNet)")
    args = parser.parse_args(argv)
    spec = TABLE2
    if args.smoke:
        root = make_tiny_imagefolder(args.out / "tiny_imagenet")
        args.overrides = [*smoke_overrides(root), *args.overrides]
        args.modes = args.modes or SMOKE_MODES
        if args.runs_dir == parser.get_default("runs_dir"):
            args.runs_dir = args.out / "table2_smoke_runs"
        spec = dataclasses.replace(TABLE2, name="table2_smoke",
                                   title=TABLE2.title + " (smoke run on generated images)")
    elif args.imagenet_root or args.dry_run:  # a dry run shows where the root goes
        args.overrides = [f"dataset.root={args.imagenet_root or 'IMAGENET_ROOT'}", *args.overrides]
    elif not (args.collect or any(override_key(o) == "dataset.root" for o in args.overrides)):
        parser.error("give --imagenet-root DIR (train/ and val/ ImageFolder trees), or --smoke "
                     "to check the pipeline on generated images")
    return run_table(parser, spec, args)


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
