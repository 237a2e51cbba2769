"""The data sources resource: where raw inputs live and come from, and where results are kept."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from upath import UPath

from perturb_assets.core.io import VersionedStore


class DataSources(dg.ConfigurableResource):
    """Where raw inputs live and come from, and where the platform keeps its results.

    Attributes
    ----------
    data_root
        Local folder for raw downloads, user datasets, embeddings, annotations and reports.
    storage_url
        Where every asset value (``assets/``) and fitted model file (``models/``) is stored,
        versioned and verified (:class:`perturb_assets.core.io.VersionedStore`): a local
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
