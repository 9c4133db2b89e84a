"""Synthetic Food-11 folders in each layout, made in the test (tests/food11_folders.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from food11_folders import write_food11


@pytest.fixture
def make_food11(tmp_path: Path) -> Callable[..., Path]:
    def make(layout: str = "flat", per_class: int = 2, splits=("training", "validation", "evaluation"),
             side: int = 48, name: str = "food11") -> Path:
        return write_food11(tmp_path / name, layout, per_class, splits, side)

    return make


@pytest.fixture(scope="session")
def tiny_food11(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flat (original archive) layout, 4 images per class and split."""
    return write_food11(tmp_path_factory.mktemp("data") / "food11", "flat", per_class=4)
