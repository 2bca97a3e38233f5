"""Shared test setup: every test starts from the same seeds; `gpu` tests skip themselves without CUDA."""

from __future__ import annotations

import random

import pytest

SEED = 0


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed Python's and torch's generators before every test (verification draws its own secret seeds)."""
    import torch

    random.seed(SEED)
    torch.manual_seed(SEED)
    try:
        import numpy as np
    except ImportError:  # numpy is a dependency, but the seed fixture should not be what breaks first
        return
    np.random.seed(SEED)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)
