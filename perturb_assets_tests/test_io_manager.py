import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturb_assets.core.atomic import atomic_write


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


def test_atomic_write_replaces_zarr_directory(tmp_path):
    path = tmp_path / "e.zarr"
    for value in (1.0, 2.0):
        adata = ad.AnnData(sp.csr_matrix(np.full((3, 2), value, dtype=np.float32)))
        atomic_write(path, adata.write_zarr)
    assert ad.read_zarr(path).X.toarray().max() == 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["e.zarr"]
