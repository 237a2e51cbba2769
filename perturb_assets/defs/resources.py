"""Resources, defined once: where files live and where datasets come from.

:func:`build_resources` is the one place that decides which resources a deployment gets; the
code location, the tests and the CLI all call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from perturb_assets.config import ComputeBudget, compute_budget, data_root


class DataSources(dg.ConfigurableResource):
    """Where raw inputs live and come from, and where the platform keeps its files.

    Attributes
    ----------
    data_root
        Root folder for raw downloads, user datasets, embeddings, annotations, materialised
        assets (``assets/``) and fitted models (``models/``).
    dataverse_url_template
        Download URL with a ``{file_id}`` placeholder. Harvard Dataverse answers 403 at times;
        point this at a mirror (or set ``PERTURB_ASSETS_DATAVERSE_URL``) when it does.
        Empty means the core default.
    """

    data_root: str
    dataverse_url_template: str = ""

    @property
    def root(self) -> Path:
        return Path(self.data_root)

    @property
    def assets_dir(self) -> Path:
        """Where the IO manager stores asset values."""
        return self.root / "assets"

    def model_file(self, asset_name: str, partition: str) -> Path:
        """Where a prediction asset keeps its fitted model."""
        return self.root / "models" / asset_name / f"{partition}.skops"


class Compute(dg.ConfigurableResource):
    """The threads one step may use (:class:`perturb_assets.config.ComputeBudget`).

    Attributes
    ----------
    jobs_per_step
        ``n_jobs`` of random forests and kNN.
    limit_blas
        Also cap BLAS / OpenMP threads in the step's process at ``jobs_per_step`` (when steps
        run side by side; alone, a step's BLAS may use every core).
    """

    jobs_per_step: int = 1
    limit_blas: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.limit_blas:
            from threadpoolctl import threadpool_limits

            # Process-wide and kept for the step's lifetime (the step owns its process).
            self._blas_limit = threadpool_limits(self.jobs_per_step)


def build_resources(
    root: str | Path | None = None,
    dataverse_url_template: str = "",
    budget: ComputeBudget | None = None,
) -> dict:
    """The resources of a local deployment rooted at ``root`` (default: the data root).

    The IO manager and the model files read the same :class:`DataSources`, so one setting
    moves everything. ``budget`` defaults to :func:`perturb_assets.config.compute_budget`.
    """
    # Imported here: the IO manager module needs DataSources from this one.
    from perturb_assets.defs.io_managers import LocalAssetIOManager

    sources = DataSources(
        data_root=str(Path(root) if root is not None else data_root()),
        dataverse_url_template=dataverse_url_template,
    )
    budget = budget or compute_budget()
    resources: dict[str, Any] = {
        "data_sources": sources,
        "io_manager": LocalAssetIOManager(data_sources=sources),
        "compute": Compute(
            jobs_per_step=budget.jobs_per_step, limit_blas=budget.concurrent_steps > 1
        ),
    }
    return resources


def default_resources() -> dict:
    """Resources of the code location: the data root and mirror from the environment."""
    return build_resources(
        dataverse_url_template=dg.EnvVar("PERTURB_ASSETS_DATAVERSE_URL").get_value("") or ""
    )
