"""Resources, defined once, and the one switch that picks them for a deployment.

:func:`build_resources` decides which resources a deployment gets; the code location
(:func:`default_resources`), the tests and the CLI all call it. The resources themselves:

- :class:`DataSources` (``data_sources.py``): the data root, the storage URL, the mirror;
- :class:`StoreIOManager` (``io_manager.py``): every asset value in the versioned store;
- :class:`Compute` (``compute.py``): threads per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from perturb_assets.config import STORAGE_URL_ENV, ComputeBudget, compute_budget, data_root
from perturb_assets.defs.resources.compute import Compute
from perturb_assets.defs.resources.data_sources import DataSources, ModelFile, model_file_metadata
from perturb_assets.defs.resources.io_manager import ALLOW_MISSING, StoreIOManager

__all__ = [
    "ALLOW_MISSING",
    "Compute",
    "DataSources",
    "ModelFile",
    "StoreIOManager",
    "build_resources",
    "default_resources",
    "model_file_metadata",
]


def build_resources(
    root: str | Path | None = None,
    dataverse_url_template: str = "",
    budget: ComputeBudget | None = None,
    storage_url: str = "",
) -> dict:
    """The resources of a local deployment rooted at ``root`` (default: the data root).

    The IO manager and the model files read the same :class:`DataSources`, so one setting
    moves everything; ``storage_url`` moves the stored values alone (e.g. to a bucket).
    ``budget`` defaults to :func:`perturb_assets.config.compute_budget`.
    """
    sources = DataSources(
        data_root=str(Path(root) if root is not None else data_root()),
        storage_url=storage_url,
        dataverse_url_template=dataverse_url_template,
    )
    budget = budget or compute_budget()
    resources: dict[str, Any] = {
        "data_sources": sources,
        "io_manager": StoreIOManager(data_sources=sources),
        "compute": Compute(
            jobs_per_step=budget.jobs_per_step, limit_blas=budget.concurrent_steps > 1
        ),
    }
    return resources


def default_resources() -> dict:
    """Resources of the code location: the data root and mirror from the environment."""
    return build_resources(
        dataverse_url_template=dg.EnvVar("PERTURB_ASSETS_DATAVERSE_URL").get_value("") or "",
        storage_url=dg.EnvVar(STORAGE_URL_ENV).get_value("") or "",
    )
