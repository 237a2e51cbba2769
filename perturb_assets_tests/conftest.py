"""Shared fixtures. Tests never touch the repo's data/ or .dagster_home/."""

from __future__ import annotations

import pytest

from perturb_assets.known_warnings import ignore_known_warnings

# Installed before any test: pytest copies these filters into each test's warning capture, so
# the suite's summary lists only warnings nobody has judged harmless yet.
ignore_known_warnings()


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("data_root")
    monkeypatch.setenv("PERTURB_ASSETS_DATA_ROOT", str(root))
    yield root


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run through the device machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
