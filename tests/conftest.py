"""Shared pytest fixtures. Keep this file small: one fixture per shared resource."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory from $GAPBENCH_DATA; skips the test when it is not set or absent."""
    value = os.environ.get("GAPBENCH_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("GAPBENCH_DATA is not set to an existing directory (e.g. export "
                    "GAPBENCH_DATA=/work/shared/data)")
    return Path(value)


@pytest.fixture(scope="session")
def mnist(data_dir):
    """The full MNIST Dataset (60k train / 10k test) on CPU, loaded once per session; skips if absent."""
    from gapbench.data import load_data
    if not (data_dir / "mnist").is_dir():
        pytest.skip(f"MNIST is not available under {data_dir / 'mnist'}")
    torch.set_num_threads(1)
    return load_data("mnist", data_dir=data_dir)   # a corrupt copy fails loudly rather than skipping
