"""The one IO manager: AnnData to zarr, tables to parquet, dicts to JSON, written atomically.

Every asset value lands at ``<data root>/assets/<asset key>/<partition>.<ext>``. A write goes to a
hidden temporary sibling first and is renamed into place only when complete, so a crashed
run never leaves a half-written asset and the previous materialisation survives a failure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core.atomic import atomic_write
from perturb_assets.defs.resources import DataSources

UNPARTITIONED = "__all__"
#: Input metadata: load ``None`` when the upstream asset was never materialised.
ALLOW_MISSING = "allow_missing"
_SUFFIXES = (".zarr", ".parquet", ".json")


def _write_json(obj: Any, tmp: Path) -> None:
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))


class LocalAssetIOManager(dg.ConfigurableIOManager):
    """Stores AnnData as zarr, DataFrames as parquet and dicts/lists as JSON under the data
    root's ``assets/`` folder."""

    data_sources: DataSources

    @property
    def base_dir(self) -> Path:
        return self.data_sources.assets_dir

    def _stem(self, context: dg.InputContext | dg.OutputContext) -> Path:
        key = context.asset_key.path
        partition = context.asset_partition_key if context.has_asset_partitions else UNPARTITIONED
        return Path(self.base_dir, *key, partition)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        stem = self._stem(context)
        if isinstance(obj, ad.AnnData):
            path = _with_suffix(stem, ".zarr")
            atomic_write(path, obj.write_zarr)
        elif isinstance(obj, pd.DataFrame):
            path = _with_suffix(stem, ".parquet")
            atomic_write(path, obj.to_parquet)
        elif isinstance(obj, dict | list):
            path = _with_suffix(stem, ".json")
            atomic_write(path, lambda tmp: _write_json(obj, tmp))
        else:
            raise TypeError(
                f"LocalAssetIOManager cannot store {type(obj).__name__} for asset "
                f"{context.asset_key.to_user_string()}; return AnnData, DataFrame or dict"
            )
        # Other formats left by an earlier code version would shadow this one on load.
        for suffix in _SUFFIXES:
            other = _with_suffix(stem, suffix)
            if suffix != path.suffix and other.exists():
                shutil.rmtree(other) if other.is_dir() else other.unlink()
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            # A fan-in (e.g. benchmark_summary over every dataset): the materialised ones only.
            base = Path(self.base_dir, *context.asset_key.path)
            loaded = {}
            for key in context.asset_partition_keys:
                path = _existing(base / key)
                if path is not None:
                    loaded[key] = _read(path)
            return loaded
        stem = self._stem(context)
        path = _existing(stem)
        if path is None and context.definition_metadata.get(ALLOW_MISSING):
            return None  # an optional input (e.g. a foundation model not trained yet)
        if path is None:
            raise FileNotFoundError(
                f"asset {context.asset_key.to_user_string()} has no stored value at {stem}.*; "
                "materialise it first"
            )
        return _read(path)


def _existing(stem: Path) -> Path | None:
    for suffix in _SUFFIXES:
        path = _with_suffix(stem, suffix)
        if path.exists():
            return path
    return None


def _read(path: Path) -> Any:
    if path.suffix == ".zarr":
        return ad.read_zarr(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return json.loads(path.read_text())


def _with_suffix(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix`` (not ``Path.with_suffix``: a partition key such as ``0.25`` has a
    dot that is not a suffix)."""
    return stem.with_name(stem.name + suffix)
