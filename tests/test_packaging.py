"""The package installs from a wheel and runs outside the checkout, with its data files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed (without its dependencies, which this
    environment has) into a folder of its own."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)], check=True,
                   capture_output=True)
    (wheel,) = out.glob("kwta_demo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "kwta_demo/reporting/published.json" in names
    assert sum(n.startswith("kwta_demo/data/gallery_sample/test/") for n in names) == 100
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    return target


def run_outside(target: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_installed_package_imports_and_runs_its_commands(installed, tmp_path):
    where = run_outside(installed, tmp_path, "-c", "import kwta_demo; print(kwta_demo.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(installed))  # not the checkout's copy
    helped = run_outside(installed, tmp_path, "-m", "kwta_demo", "--help")
    assert helped.returncode == 0 and "train" in helped.stdout and "pipeline" in helped.stdout
    data = run_outside(installed, tmp_path, "-c", (
        "from kwta_demo.data.cifar10 import GALLERY_SAMPLE, load_cifar10;"
        "from kwta_demo.reporting.published import DATA;"
        "print(len(load_cifar10('test', GALLERY_SAMPLE).labels), DATA.is_file())"))
    assert data.returncode == 0, data.stderr
    assert data.stdout.split() == ["100", "True"]
