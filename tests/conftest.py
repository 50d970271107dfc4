"""Fixtures shared by several test modules, and the ``slow`` marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from kwta_demo.testing import write_image_folder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: starts processes, servers or a browser (seconds to minutes each); "
                   "`-m 'not slow'` leaves them out")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10-shaped image folder: 2 synthetic images per class in train/ and test/."""
    return write_image_folder(tmp_path_factory.mktemp("images"), 2, splits=("train", "test"))
