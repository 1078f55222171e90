"""The LR-nets paper's figures from trained runs: PNG, JSON with the plotted numbers, TensorBoard.

    python scripts/make_figures.py --figures 1 --run ternary=outputs/runs/<run>     # one run
    python scripts/make_figures.py --figures 3 --run mnist_binary=DIR \\
        --run mnist_ternary=DIR --run mnist_full_precision=DIR
    python scripts/make_figures.py --dry-run           # what would be trained for every figure
    python scripts/make_figures.py --epochs-scale 0.01 +trainer.limit_train_batches=20   # a CPU

Each figure needs runs in named roles. ``--run ROLE=PATH`` gives one (a run folder or its
``checkpoints/network.pt``); a role not given is trained first, as a Hydra multirun like the
table scripts', into ``<runs-dir>/<cell>/seed<N>/`` (a completed run there is reused):

    figure 1  pre-activation of a neuron in the first and last hidden layer, sampled weights vs
              the LRT Gaussian, KS distance per layer      ternary
    figure 2  the same first-layer neuron without and with probability decay
                                                           ternary, ternary_no_decay
    figure 3  first 25 first-layer kernels                 mnist_binary, mnist_ternary,
                                                           mnist_full_precision
    figure 4  Appendix A: LR vs Gumbel-softmax weights, 10 epochs
                                                           lr_10_epochs, gumbel_10_epochs
    figure 5  Appendix B: average entropy per layer through training
                                                           ternary, ternary_no_decay
    figure 6  Appendix B: histogram of P(w=0), last convolution, at initialisation and the end
                                                           ternary, ternary_no_decay

Roles train the paper's CIFAR-10 ternary net (``ternary``; ``ternary_no_decay`` with
``regularizer=none``; the ``*_10_epochs`` ones for 10 epochs, Gumbel-softmax with
``mode=gumbel_ternary``) and its MNIST nets. Figures 5 and 6 rebuild the initial distributions
from the run's full-precision reference (init=pretrained runs). Writes ``<out>/figureN.png``,
``figureN.json`` and ``<out>/tensorboard``. Exits with status 1 when a training failed or a
figure could not be made (the others are made all the same).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf

from lrnets.errors import ConfigError
from lrnets.paper.cells import Cell, check_extra_overrides, run_cells, seed_folder
from lrnets.paper.figures import (FigureWriter, LoadedRun, entropy_curves, first_and_last_layers,
                            initial_network, ks_noise_level, last_convolution, load_run,
                            neuron_preactivations, p_zero, plot_entropy, plot_histograms,
                            plot_kernels, plot_preactivations, plot_training_curves)
from lrnets.training.evaluation import discrete_layers

_CIFAR_TERNARY = "experiment=paper/cifar10_ternary"
ROLES = {
    "ternary": Cell("cifar10_ternary", (_CIFAR_TERNARY,)),
    "ternary_no_decay": Cell("cifar10_ternary_no_decay",
                             (_CIFAR_TERNARY, "regularizer=none")),
    "mnist_binary": Cell("mnist_binary", ("experiment=paper/mnist_binary",)),
    "mnist_ternary": Cell("mnist_ternary", ("experiment=paper/mnist_ternary",)),
    "mnist_full_precision": Cell("mnist_full_precision", ("experiment=paper/mnist_full_precision",)),
    "lr_10_epochs": Cell("cifar10_ternary_10_epochs", (_CIFAR_TERNARY, "train.epochs=10")),
    "gumbel_10_epochs": Cell("cifar10_gumbel_ternary_10_epochs",
                             (_CIFAR_TERNARY, "mode=gumbel_ternary", "train.epochs=10")),
}
Runs = dict[str, LoadedRun]


def figure1(runs: Runs, args: argparse.Namespace) -> tuple:
    run = runs["ternary"]
    panels = neuron_preactivations(run.model, run.inputs, first_and_last_layers(run.model),
                                   args.draws, args.seed)
    fig = plot_preactivations(panels, {"first": "(a) first hidden layer",
                                       "last": "(b) last hidden layer"})
    return fig, {"run": str(run.folder), "draws": args.draws,
                 "ks_noise_level_95": ks_noise_level(args.draws),
                 "layers": {panel: p.summary() for panel, p in panels.items()}}


def figure2(runs: Runs, args: argparse.Namespace) -> tuple:
    with_decay, without = runs["ternary"], runs["ternary_no_decay"]
    first = {"first": first_and_last_layers(with_decay.model)["first"]}
    decayed = neuron_preactivations(with_decay.model, with_decay.inputs, first, args.draws,
                                    args.seed)["first"]
    plain = neuron_preactivations(without.model, without.inputs, first, args.draws, args.seed,
                                  neurons={"first": decayed.neuron})["first"]
    panels = {"without": plain, "with": decayed}
    fig = plot_preactivations(panels, {"without": "(a) without probability decay",
                                       "with": "(b) with probability decay"})
    return fig, {"draws": args.draws, "ks_noise_level_95": ks_noise_level(args.draws),
                 **{panel: {"run": str(run.folder),
                            "probability_decay": OmegaConf.select(  # older runs: mode.*
                                run.cfg, "regularizer.probability_decay",
                                default=OmegaConf.select(run.cfg, "mode.probability_decay")),
                            **panels[panel].summary()}
                    for panel, run in (("without", without), ("with", with_decay))}}


def figure3(runs: Runs, args: argparse.Namespace) -> tuple:
    roles = {"(a) binary": "mnist_binary", "(b) ternary": "mnist_ternary",
             "(c) full precision": "mnist_full_precision"}
    fig = plot_kernels({title: runs[role].model for title, role in roles.items()})
    return fig, {"runs": {title: str(runs[role].folder) for title, role in roles.items()}}


def figure4(runs: Runs, args: argparse.Namespace) -> tuple:
    roles = {"LR (local reparameterization)": "lr_10_epochs",
             "Gumbel-softmax weights": "gumbel_10_epochs"}
    fig, points = plot_training_curves({label: runs[role].folder for label, role in roles.items()},
                                       ["train/loss", "val/loss", "val/acc"])
    return fig, {"curves": points,
                 "test_error": {label: runs[role].results.get("test_error")
                                for label, role in roles.items()},
                 "runs": {label: str(runs[role].folder) for label, role in roles.items()}}


def figure5(runs: Runs, args: argparse.Namespace) -> tuple:
    curves = {"with probability decay": entropy_curves(runs["ternary"]),
              "without probability decay": entropy_curves(runs["ternary_no_decay"])}
    return plot_entropy(curves), {"average_entropy_nats": curves}


def _histogram_summary(p: torch.Tensor) -> dict:
    return {"mean": float(p.mean()), "fraction_below_0.05": float((p < 0.05).float().mean()),
            "fraction_above_0.95": float((p > 0.95).float().mean()),
            "counts_20_bins": torch.histc(p, bins=20, min=0, max=1).int().tolist()}


def figure6(runs: Runs, args: argparse.Namespace) -> tuple:
    with_decay, without = runs["ternary"], runs["ternary_no_decay"]
    layer = last_convolution(with_decay.model)
    histograms = {
        "(a) initialisation": p_zero(discrete_layers(initial_network(with_decay))[layer]),
        "(b) end, with probability decay": p_zero(discrete_layers(with_decay.model)[layer]),
        "(c) end, without probability decay": p_zero(discrete_layers(without.model)[layer]),
    }
    fig = plot_histograms(histograms, f"P(w = 0), {layer}")
    return fig, {"layer": layer, **{title: _histogram_summary(p) for title, p in histograms.items()}}


FIGURES: dict[int, tuple[Callable[[Runs, argparse.Namespace], tuple], tuple[str, ...]]] = {
    1: (figure1, ("ternary",)),
    2: (figure2, ("ternary", "ternary_no_decay")),
    3: (figure3, ("mnist_binary", "mnist_ternary", "mnist_full_precision")),
    4: (figure4, ("lr_10_epochs", "gumbel_10_epochs")),
    5: (figure5, ("ternary", "ternary_no_decay")),
    6: (figure6, ("ternary", "ternary_no_decay")),
}


def role_path(text: str) -> tuple[str, Path]:
    role, sep, path = text.partition("=")
    if not sep or role not in ROLES:
        raise argparse.ArgumentTypeError(f"{text!r}: give ROLE=PATH with ROLE one of "
                                         f"{', '.join(ROLES)}")
    return role, Path(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the runs trained here")
    parser.add_argument("--figures", nargs="+", type=int, choices=sorted(FIGURES),
                        default=sorted(FIGURES))
    parser.add_argument("--run", type=role_path, action="append", default=[],
                        metavar="ROLE=PATH", help="use this run for ROLE instead of training it")
    parser.add_argument("--runs-dir", type=Path, default=Path("outputs/figures/runs"))
    parser.add_argument("--out", type=Path, default=Path("outputs/figures"))
    parser.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                        help="multiply the schedules of the runs trained here by F")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the runs trained here and of the neuron choice")
    parser.add_argument("--draws", type=int, default=10000,
                        help="weight samples per neuron (figures 1, 2)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        return make_figures(args)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


def make_figures(args: argparse.Namespace) -> dict:
    check_extra_overrides(args.overrides)
    given = dict(args.run)
    figures = args.figures
    needed = list(dict.fromkeys(role for n in figures for role in FIGURES[n][1]))
    to_train = [ROLES[role] for role in needed if role not in given]
    runs_dir = args.runs_dir.resolve()
    failed = run_cells(to_train, [args.seed], runs_dir, args.epochs_scale, args.overrides,
                       args.dry_run)
    if args.dry_run:
        return {"failed": failed, "errors": {}, "figures": {}}
    paths = {role: given.get(role) or seed_folder(runs_dir, ROLES[role], args.seed)
             for role in needed}
    loaded: dict[Path, LoadedRun] = {}
    written, errors = {}, {}
    writer = FigureWriter(args.out)
    for n in figures:
        function, roles = FIGURES[n]
        try:
            for role in roles:
                if paths[role] not in loaded:
                    loaded[paths[role]] = load_run(paths[role])
            fig, data = function({role: loaded[paths[role]] for role in roles}, args)
        except ConfigError as err:  # a run that is missing or cannot show this figure
            errors[n] = str(err)
            print(f"figure {n}: not made: {err}", file=sys.stderr)
            continue
        written[n] = writer.save(f"figure{n}", fig, data)
        print(f"figure {n}: {written[n]['png']}")
    writer.close()
    return {"failed": failed, "errors": errors, "figures": written}


if __name__ == "__main__":
    report = main()
    sys.exit(1 if report["failed"] or report["errors"] else 0)
