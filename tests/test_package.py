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
