"""Resources, defined once: where files live and where datasets come from.

:func:`build_resources` is the one place that decides which resources a deployment gets; the
code location, the tests and the CLI all call it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from perturb_assets.config import STORAGE_URL_ENV, ComputeBudget, compute_budget, data_root
from perturb_assets.core.store import VersionedStore


class DataSources(dg.ConfigurableResource):
    """Where raw inputs live and come from, and where the platform keeps its results.

    Attributes
    ----------
    data_root
        Local folder for raw downloads, user datasets, embeddings, annotations and reports.
    storage_url
        Where every asset value (``assets/``) and fitted model file (``models/``) is stored,
        versioned and verified (:class:`perturb_assets.core.store.VersionedStore`): a local
        folder, or ``s3://bucket/prefix`` / ``gs://...`` (credentials and endpoint from the
        environment, e.g. ``AWS_ENDPOINT_URL``). Empty means ``data_root``.
    dataverse_url_template
        Download URL with a ``{file_id}`` placeholder. Harvard Dataverse answers 403 at times;
        point this at a mirror (or set ``PERTURB_ASSETS_DATAVERSE_URL``) when it does.
        Empty means the core default.
    """

    data_root: str
    storage_url: str = ""
    dataverse_url_template: str = ""

    @property
    def root(self) -> Path:
        return Path(self.data_root)

    @property
    def store(self) -> VersionedStore:
        """The versioned store of asset values and model files."""
        return VersionedStore(self.storage_url or self.data_root)

    def model_location(self, asset_name: str, partition: str) -> UPath:
        """Where a prediction asset keeps its fitted model (a versioned file)."""
        return self.store.key("models", asset_name, partition)

    def put_model_file(
        self, asset_name: str, partition: str, filename: str, write: Callable[[Path], object]
    ) -> tuple[str, str]:
        """``write`` a model file into a scratch folder and store it as the current version
        of :meth:`model_location`; its stored URL and sha256."""
        location = self.model_location(asset_name, partition)
        with tempfile.TemporaryDirectory(prefix="perturb_model_") as scratch:
            path = Path(scratch) / filename
            write(path)
            stored = self.store.put(location, path)
        return str(location / stored.version / filename), stored.files[filename]

    def model_file(self, asset_name: str, partition: str, into: Path) -> Path:
        """A verified local copy of a stored model file (downloaded into ``into`` if remote)."""
        folder = self.store.local_folder(self.model_location(asset_name, partition), into)
        (entry,) = list(folder.iterdir())
        return entry


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
    storage_url: str = "",
) -> dict:
    """The resources of a local deployment rooted at ``root`` (default: the data root).

    The IO manager and the model files read the same :class:`DataSources`, so one setting
    moves everything; ``storage_url`` moves the stored values alone (e.g. to a bucket).
    ``budget`` defaults to :func:`perturb_assets.config.compute_budget`.
    """
    # Imported here: the IO manager module needs DataSources from this one.
    from perturb_assets.defs.io_managers import StoreIOManager

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
