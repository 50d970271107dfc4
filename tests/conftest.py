"""Fixtures shared by several test modules, and the ``slow`` marker."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from kwta_demo.testing import write_image_folder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: starts processes, servers or a browser (seconds to minutes each); "
                   "`-m 'not slow'` leaves them out")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10-shaped image folder: 2 synthetic images per class in train/ and test/."""
    return write_image_folder(tmp_path_factory.mktemp("images"), 2, splits=("train", "test"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module: tiny models gain nothing from threads, a shared
    CPU makes two slow, and bit-identity holds for one thread count only (a CPU's parallel
    reductions are summed in an order that depends on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KWTA_CHECKPOINTS at an empty folder: no shipped checkpoint is found by name."""
    folder = tmp_path / "no-checkpoints"
    monkeypatch.setenv("KWTA_CHECKPOINTS", str(folder))
    return folder


@pytest.fixture
def script():
    """``script(name)``: a module of ``scripts/``, imported from its folder as it runs there
    (its helpers, such as ``doc_markers``, lie beside it)."""
    folder = str(Path(__file__).resolve().parents[1] / "scripts")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module
