"""lrnets is a package: its wheel holds the configs, and ``pip install .`` (not editable) gives an
``lrnets-train`` that trains from any folder."""
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from lrnets.config import CONF_DIR
from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources, so that the checkout gets no build/ folder."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__",
                                                                               "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(source)], check=True, timeout=600)
    return next(out.glob("lrnets-*.whl"))


@pytest.mark.slow
def test_the_wheel_holds_every_config(wheel):
    shipped = {Path(n).relative_to("lrnets/conf") for n in zipfile.ZipFile(wheel).namelist()
               if n.startswith("lrnets/conf/")}
    assert shipped == {p.relative_to(CONF_DIR) for p in CONF_DIR.rglob("*.yaml")}


@pytest.mark.slow
def test_an_installed_lrnets_trains_from_another_folder(wheel, tmp_path):
    """A fresh environment with the wheel installed; the dependencies (torch, ...) are this
    environment's, seen through a .pth file rather than installed again."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True)
    Path(purelib.stdout.strip(), "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=600)
    where = subprocess.run([python, "-c", "import lrnets; print(lrnets.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout  # the installed copy, not src/
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([venv / "bin" / "lrnets-train", "dataset=synthetic", "debug=fast",
                           "init=random", "trainer.accelerator=cpu", "paths.log_dir=runs",
                           "hydra.run.dir=runs/one"], cwd=elsewhere, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (elsewhere / "runs" / "one" / "results.json").is_file()


# What each subpackage may import from lrnets: ``top`` is the top-level modules that hold the
# contracts every layer shares (errors, config, schema, decisive, run_folder, console, seeding);
# cli.py and the package's __init__ sit above everything.
LAYERS = {
    "nn": {"nn", "errors"},  # no architecture, config, run or file format
    "models": {"models", "nn", "errors", "config"},  # config: the code a config names
    "data": {"data", "top"},
    "training": {"training", "models", "nn", "data", "top"},
    "export": {"export", "training", "models", "nn", "data", "top"},
    "paper": {"paper", "export", "training", "models", "nn", "data", "top"},
    "top": {"top"},
}
# What the torch-only layers may import from outside lrnets and the standard library.
THIRD_PARTY = {"nn": {"torch"}, "models": {"torch"}}


def _layer(module: str) -> str:
    """``lrnets.nn.layers`` -> ``nn``; ``lrnets.errors`` -> ``top``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (REPO / "src" / "lrnets" / parts[1]).is_dir() else "top"


def test_each_subpackage_imports_only_the_layers_below_it_and_nn_only_torch():
    import ast

    src = REPO / "src"
    wrong = []
    for path in sorted((src / "lrnets").rglob("*.py")):
        module = ".".join(path.relative_to(src).with_suffix("").parts)
        if module in ("lrnets.__init__", "lrnets.cli"):
            continue
        layer = _layer(module.removesuffix(".__init__"))
        allowed = LAYERS[layer]
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            for imported in names:
                package = imported.split(".")[0]
                if imported.startswith("lrnets."):
                    ok = _layer(imported) in allowed or imported.removeprefix("lrnets.") in allowed
                else:
                    ok = (layer not in THIRD_PARTY or package in sys.stdlib_module_names
                          or package in THIRD_PARTY[layer])
                if not ok:
                    wrong.append(f"{module} imports {imported}")
    assert not wrong, wrong
