import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturb_assets.core.io import VersionedStore, atomic_write


def test_atomic_write_replaces_file(tmp_path):
    path = tmp_path / "a" / "x.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"v": 1})))
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"v": 2})))
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failed_write_keeps_previous_value_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1.0]}).to_parquet(path)

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert pd.read_parquet(path)["a"].tolist() == [1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_atomic_write_refuses_folders(tmp_path):
    """Folders cannot be swapped atomically in place: the store's versioned folders do it."""
    adata = ad.AnnData(sp.csr_matrix(np.ones((3, 2), dtype=np.float32)))
    with pytest.raises(IsADirectoryError, match="core.io.VersionedStore"):
        atomic_write(tmp_path / "e.zarr", adata.write_zarr)
    assert list(tmp_path.iterdir()) == []


def test_partition_keys_with_dots_are_stored_apart(tmp_path):
    import dagster as dg

    from perturb_assets.defs.resources import build_resources

    levels = dg.StaticPartitionsDefinition(["0.25", "0.50"])

    @dg.asset(partitions_def=levels)
    def level(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame({"level": [float(context.partition_key)]})

    for key in levels.get_partition_keys():
        assert dg.materialize(
            [level], partition_key=key, resources=build_resources(tmp_path)
        ).success
    stored = sorted(p.name for p in (tmp_path / "assets" / "level").iterdir())
    assert stored == ["0.25", "0.50"]
    assert VersionedStore(tmp_path).read("assets", "level", "0.50")["level"].item() == 0.5
