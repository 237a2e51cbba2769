"""The data sources resource: where raw inputs live and come from, and where results are kept."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from upath import UPath

from perturb_assets.core.io import VersionedStore


@dataclass(frozen=True)
class ModelFile:
    """A stored model file: its key and version in the store, name and sha256, and its URL.

    Stored values keep ``key`` and ``sha256`` (the same in every data root); the URL, which
    names the root, belongs in metadata.
    """

    key: str
    version: str
    filename: str
    sha256: str
    url: str


def model_file_metadata(model: ModelFile) -> dict:
    """The metadata that names a stored model file (``gc`` keeps the version it names)."""
    return {
        "model_file": dg.MetadataValue.path(model.url),
        "model_key": model.key,
        "model_version": model.version,
    }


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
    ) -> ModelFile:
        """``write`` a model file into a scratch folder and store it as the current version
        of :meth:`model_location`."""
        store, location = self.store, self.model_location(asset_name, partition)
        with tempfile.TemporaryDirectory(prefix=f"perturb_model_{os.getpid()}_") as scratch:
            path = Path(scratch) / filename
            write(path)
            stored = store.put(location, path)
        return ModelFile(
            key=store.relative_key(location),
            version=stored.version,
            filename=filename,
            sha256=stored.files[filename],
            url=str(location / stored.version / filename),
        )

    def model_file(self, asset_name: str, partition: str, into: Path) -> Path:
        """A verified local copy of a stored model file (downloaded into ``into`` if remote)."""
        folder = self.store.local_folder(self.model_location(asset_name, partition), into)
        (entry,) = list(folder.iterdir())
        return entry
