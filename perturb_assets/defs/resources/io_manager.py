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
from perturb_assets.core.io import NotStoredError, VersionedStore, check_key_part
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

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        _check_partition(context)
        super().handle_output(context, obj)

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if obj is None:  # an asset that stores its result elsewhere returns None
            return
        stored = self._store.put(path, obj, protect=_recorded_versions(context))
        context.add_output_metadata(
            {
                "stored_version": stored.version,
                "content_sha256": stored.sha256,
                "stored_bytes": stored.bytes,
                "environment": environment(),
            }
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        return self._store.get(path)  # NotStoredError when never stored

    def path_exists(self, path: UPath) -> bool:
        return self._store.exists(path)

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions and not context.has_partition_key:
            # A fan-in (an unpartitioned run reading a partitioned asset, e.g. benchmark_summary
            # over every dataset): {partition: value} of the materialised ones, however many.
            # Only "never stored" means "not an input": a damaged value fails the step.
            values = {}
            for partition, path in self._get_paths_for_partitions(context).items():
                check_key_part(partition, f"partition of {context.asset_key.to_user_string()}")
                try:
                    values[partition] = self._store.get(path)
                except NotStoredError:
                    continue
            return values
        _check_partition(context)
        optional = bool((context.definition_metadata or {}).get(ALLOW_MISSING))
        if optional and not self._store.exists(self._input_path(context)):
            # An optional input not materialised yet (a foundation model not trained): Dagster's
            # own check would log "Couldn't load partition ..." at WARNING for an expected case.
            context.log.debug(f"optional input {context.asset_key.to_user_string()}: not stored")
            return None
        try:
            return super().load_input(context)
        except NotStoredError:
            if optional:
                return None  # removed between the check and the read
            partition = f" (partition {context.partition_key})" if context.has_partition_key else ""
            raise NotStoredError(
                f"asset {context.asset_key.to_user_string()}{partition} has no stored value at "
                f"{self._get_path_without_extension(context)}; materialise it first"
            ) from None

    def _input_path(self, context: dg.InputContext) -> UPath:
        if context.has_asset_partitions:
            (path,) = self._get_paths_for_partitions(context).values()
            return path
        return self._get_path(context)


def _check_partition(context: dg.InputContext | dg.OutputContext) -> None:
    """Refuse a partition key that is not a plain name before anything is read or written (a
    dynamic partition added as ``../expression/x`` must not reach another asset's folder)."""
    if context.has_asset_partitions and context.has_partition_key:
        check_key_part(context.partition_key, f"partition of {context.asset_key.to_user_string()}")


def _recorded_versions(context: dg.OutputContext) -> set[str]:
    """The stored version the instance's latest materialisation of this output names: kept
    whatever its age, so the instance and the store never disagree about a deleted version."""
    try:
        instance = context.step_context.instance
        partition = context.partition_key if context.has_partition_key else None
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=context.asset_key,
                asset_partitions=[partition] if partition is not None else None,
            ),
            limit=1,
        ).records
    except Exception:  # no instance (a direct call in a test): nothing recorded to keep
        return set()
    if not records:
        return set()
    version = records[0].asset_materialization.metadata.get("stored_version")
    return {version.value} if version is not None else set()


class StoreIOManager(dg.ConfigurableIOManagerFactory):
    """Stores every asset value under ``data_sources.storage_url`` (default: the data root)."""

    data_sources: DataSources

    def create_io_manager(self, context: dg.InitResourceContext) -> _VersionedUPathIOManager:
        return _VersionedUPathIOManager(self.data_sources.store)
