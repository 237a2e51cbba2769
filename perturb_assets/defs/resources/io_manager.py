"""The one IO manager: every asset value in the versioned store, local or in a bucket.

Built on Dagster's ``UPathIOManager`` (paths, partitions, fan-in loads) with
:class:`perturb_assets.core.io.VersionedStore` doing the writing and reading: AnnData as
zarr, tables as parquet, dicts and lists as JSON, at ``<storage>/assets/<asset key>/<partition>``
(``__all__`` style paths for unpartitioned assets are Dagster's own: the asset key alone). A
write is crash-safe and a read is verified against the sha256 of every file (see core/io/store.py).
Each materialisation records the stored version, its sha256 and the package versions that
wrote it (``environment``) in its metadata, for lineage audits.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from upath import UPath

from perturb_assets.config import package_versions
from perturb_assets.core.io import VersionedStore
from perturb_assets.defs.resources.data_sources import DataSources

#: Input metadata: load ``None`` when the upstream asset (or partition) was never materialised.
#: Dagster's own ``UPathIOManager`` key, so partitioned and unpartitioned inputs behave alike.
ALLOW_MISSING = "allow_missing_partitions"


def environment() -> str:
    """``"perturb_assets 0.1.0, dagster 1.13.27, ..."``: the versions that wrote a value."""
    return ", ".join(f"{name} {version}" for name, version in package_versions().items())


class _VersionedUPathIOManager(dg.UPathIOManager):
    """``UPathIOManager`` whose paths are keys of a :class:`VersionedStore`."""

    extension = ""  # a key is a folder of versions; each version carries its own format

    def __init__(self, store: VersionedStore) -> None:
        super().__init__(base_path=store.key("assets"))
        self._store = store

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if obj is None:  # an asset that stores its result elsewhere returns None
            return
        stored = self._store.put(path, obj)
        context.add_output_metadata(
            {
                "stored_version": stored.version,
                "content_sha256": stored.sha256,
                "stored_bytes": stored.bytes,
                "environment": environment(),
            }
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        return self._store.get(path)  # FileNotFoundError when never stored

    def path_exists(self, path: UPath) -> bool:
        return self._store.exists(path)

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions and not context.has_partition_key:
            # A fan-in (an unpartitioned run reading a partitioned asset, e.g. benchmark_summary
            # over every dataset): {partition: value} of the materialised ones, however many.
            values = {}
            for partition, path in self._get_paths_for_partitions(context).items():
                try:
                    values[partition] = self._store.get(path)
                except FileNotFoundError:  # not materialised: not an input
                    continue
            return values
        try:
            return super().load_input(context)
        except FileNotFoundError:
            if (context.definition_metadata or {}).get(ALLOW_MISSING):
                return None  # an optional input (e.g. a foundation model not trained yet)
            raise FileNotFoundError(
                f"asset {context.asset_key.to_user_string()} has no stored value at "
                f"{self._get_path_without_extension(context)}; materialise it first"
            ) from None


class StoreIOManager(dg.ConfigurableIOManagerFactory):
    """Stores every asset value under ``data_sources.storage_url`` (default: the data root)."""

    data_sources: DataSources

    def create_io_manager(self, context: dg.InitResourceContext) -> _VersionedUPathIOManager:
        return _VersionedUPathIOManager(self.data_sources.store)
