"""Tests of perturb_assets.core.datasets: loading, validation, normalisation, user datasets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturb_assets.core.datasets import (
    BUILTIN_DATASETS,
    add_user_dataset,
    dataset_summary,
    discover_user_datasets,
    is_valid_dataset_name,
    load_gears_dataset,
    validate_dataset_name,
)
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears import FILENAME as GEARS_FILENAME
from perturb_assets.core.gears import UNS_KEY, validate_expression, validate_gears_anndata
from perturb_assets.core.pp import is_log_normalized, normalize_expression

N_CELLS = 50
N_GENES = 20
GENE_NAMES = [f"G{i}" for i in range(N_GENES)]
# Enough perturbations for the split to leave 2+ to train on (the usability rule of add-dataset).
CONDITIONS = ["ctrl", "G0+ctrl", "G1+ctrl", "G2+ctrl", "G3+ctrl", "G4+ctrl", "G0+G1"]


def make_counts(n_cells: int = N_CELLS, n_genes: int = N_GENES, seed: int = 0) -> np.ndarray:
    """Poisson counts with at least one count per cell."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=(n_cells, n_genes)).astype(np.float32)
    counts[:, 0] += 1
    return counts


def make_adata(
    *,
    conditions: list[str] | None = None,
    raw: bool = False,
    gears_annotations: bool = True,
    sparse: bool = True,
    seed: int = 0,
) -> ad.AnnData:
    """Small GEARS-like AnnData: 50 cells x 20 genes, conditions cycling over CONDITIONS."""
    conds = conditions or CONDITIONS
    counts = make_counts(seed=seed)
    if raw:
        x = counts
    else:
        x = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)
    obs = pd.DataFrame(
        {"condition": pd.Categorical([conds[i % len(conds)] for i in range(N_CELLS)])},
        index=[f"cell{i}" for i in range(N_CELLS)],
    )
    var = pd.DataFrame(index=[f"ENSG{i:011d}" for i in range(N_GENES)])
    if gears_annotations:
        obs["cell_type"] = "K562"
        var["gene_name"] = GENE_NAMES
    return ad.AnnData(X=sp.csr_matrix(x) if sparse else x, obs=obs, var=var)


def write_h5ad(adata: ad.AnnData, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return path


def write_gears_folder(adata: ad.AnnData, folder: Path) -> Path:
    write_h5ad(adata, folder / GEARS_FILENAME)
    return folder


def assert_dataset_error(exc: pytest.ExceptionInfo, path: Path, field: str) -> None:
    message = str(exc.value)
    assert path.name in message
    assert field in message
    assert exc.value.field == field


# ----------------------------------------------------------------------------- bad inputs


def _drop_condition(adata: ad.AnnData) -> ad.AnnData:
    del adata.obs["condition"]
    return adata


def _set_x(adata: ad.AnnData, positions: list[int], value: float) -> ad.AnnData:
    adata.X.data[positions] = value
    return adata


def _infinite_dense(_: ad.AnnData) -> ad.AnnData:
    adata = make_adata(sparse=False)
    adata.X[0, 0] = np.inf
    return adata


def _duplicate_var(adata: ad.AnnData) -> ad.AnnData:
    names = list(adata.var_names)
    names[5] = names[4]
    adata.var_names = names
    return adata


# (case, how to break a valid dataset, the field named, text the message must hold)
BAD_INPUTS = [
    ("missing_condition", _drop_condition, "obs['condition']", "missing"),
    ("no_control", lambda a: make_adata(conditions=["G0+ctrl", "G0+G1"]), "obs['condition']",
     "control"),
    ("negative", lambda a: _set_x(a, [3], -1.0), "X", "1 negative"),
    ("nan", lambda a: _set_x(a, [1, 5], np.nan), "X", "2 NaN"),
    ("infinite", _infinite_dense, "X", "1 infinite"),
    ("duplicate_var", _duplicate_var, "var_names", "'ENSG00000000004'"),
    ("three_genes", lambda a: make_adata(conditions=["ctrl", "G0+G1+G2"]), "obs['condition']",
     "G0+G1+G2"),
    ("empty_gene", lambda a: make_adata(conditions=["ctrl", "G0+"]), "obs['condition']",
     "'G0+'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "breaker", "field", "text"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_names_file_and_field(tmp_path: Path, case, breaker, field, text) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about non-unique var names
        path = write_h5ad(breaker(make_adata()), tmp_path / f"{case}.h5ad")
        with pytest.raises(DatasetError) as exc:
            load_gears_dataset(path)
    assert_dataset_error(exc, path, field)
    assert text in str(exc.value)


def test_truncated_h5ad(tmp_path: Path) -> None:
    path = write_h5ad(make_adata(), tmp_path / "trunc.h5ad")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as exc:
        load_gears_dataset(path)
    assert_dataset_error(exc, path, "file")
    message = str(exc.value)
    assert "truncated or corrupt" in message
    assert "re-download" in message


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.h5ad"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(DatasetError) as exc:
        load_gears_dataset(path)
    assert_dataset_error(exc, path, "file")
    assert "truncated or corrupt" in str(exc.value)


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.h5ad"
    with pytest.raises(DatasetError) as exc:
        load_gears_dataset(path)
    assert_dataset_error(exc, path, "path")
    assert "does not exist" in str(exc.value)


def test_folder_without_h5ad(tmp_path: Path) -> None:
    folder = tmp_path / "emptyfolder"
    folder.mkdir()
    with pytest.raises(DatasetError) as exc:
        load_gears_dataset(folder)
    assert_dataset_error(exc, folder, GEARS_FILENAME)


def test_in_memory_validation_has_no_path() -> None:
    adata = make_adata()
    adata.X.data[0] = -2.0
    with pytest.raises(DatasetError) as exc:
        validate_expression(adata)
    assert exc.value.path is None
    assert "<in-memory AnnData>" in str(exc.value)
    with pytest.raises(DatasetError):
        validate_gears_anndata(adata)


# ----------------------------------------------------------------------------- loading


def test_load_gears_folder(tmp_path: Path) -> None:
    folder = write_gears_folder(make_adata(), tmp_path / "myset")
    adata = load_gears_dataset(folder)
    assert adata.shape == (N_CELLS, N_GENES)
    assert isinstance(adata.obs["condition"].dtype, pd.CategoricalDtype)
    assert set(adata.obs["condition"].cat.categories) == set(CONDITIONS)
    assert adata.uns[UNS_KEY]["filled_fields"] == ["obs['condition_name']"]
    # GEARS rule: '1+1' for two-part conditions (also 'A+ctrl'), '1' for ctrl.
    names = dict(zip(adata.obs["condition"], adata.obs["condition_name"], strict=True))
    assert names["ctrl"] == "K562_ctrl_1"
    assert names["G0+ctrl"] == "K562_G0+ctrl_1+1"
    assert names["G0+G1"] == "K562_G0+G1_1+1"
    assert sp.issparse(adata.X)


def test_load_bare_raw_h5ad_fills_fields(tmp_path: Path) -> None:
    path = write_h5ad(make_adata(raw=True, gears_annotations=False), tmp_path / "raw.h5ad")
    adata = load_gears_dataset(path)
    filled = adata.uns[UNS_KEY]["filled_fields"]
    assert filled == ["var['gene_name']", "obs['cell_type']", "obs['condition_name']"]
    assert list(adata.var["gene_name"]) == list(adata.var_names)
    assert set(adata.obs["cell_type"]) == {"unknown"}
    assert adata.obs["condition_name"].iloc[0] == "unknown_ctrl_1"
    # The filled AnnData can be written again.
    adata.write_h5ad(tmp_path / "again.h5ad")


def test_unmeasured_target_is_counted_not_an_error(tmp_path: Path) -> None:
    conds = ["ctrl", "G0+ctrl", "G1+ctrl", "G0+G1", "NOTMEASURED+ctrl", "G2+NOTMEASURED"]
    path = write_h5ad(make_adata(conditions=conds), tmp_path / "unmeasured.h5ad")
    summary = dataset_summary(load_gears_dataset(path))
    assert summary["n_cells"] == N_CELLS
    assert summary["n_genes"] == N_GENES
    assert summary["n_conditions"] == 6
    assert summary["n_single"] == 3
    assert summary["n_combo"] == 2
    assert summary["n_control_cells"] == sum(
        1 for i in range(N_CELLS) if conds[i % len(conds)] == "ctrl"
    )
    assert summary["n_targets"] == 4
    assert summary["n_targets_measured"] == 3
    assert summary["unmeasured_targets"] == ["NOTMEASURED"]
    assert summary["is_sparse"] is True
    assert summary["is_log_normalized"] is True


# ----------------------------------------------------------------------------- normalisation


def test_raw_counts_are_normalized() -> None:
    raw = make_adata(raw=True)
    counts = raw.X.toarray().copy()
    assert not is_log_normalized(raw)
    out = normalize_expression(raw)
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    assert sp.issparse(out.X)
    np.testing.assert_allclose(out.X.toarray(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), counts)
    assert out.uns[UNS_KEY]["normalization"] == "normalize_total_1e4_log1p"
    assert is_log_normalized(out)
    # The input is not modified.
    np.testing.assert_array_equal(raw.X.toarray(), counts)
    assert "counts" not in raw.layers


def test_dense_raw_counts_become_sparse() -> None:
    out = normalize_expression(make_adata(raw=True, sparse=False))
    assert sp.isspmatrix_csr(out.X) or isinstance(out.X, sp.csr_array)


def test_log_data_left_unchanged() -> None:
    log = make_adata()
    before = log.X.toarray().copy()
    assert is_log_normalized(log)
    out = normalize_expression(log)
    np.testing.assert_array_equal(out.X.toarray(), before)
    assert "counts" not in out.layers
    assert out.uns[UNS_KEY]["normalization"] == "already_log_normalized"
    assert out is not log


def test_normalized_but_not_logged_is_refused() -> None:
    adata = make_adata(raw=True)
    adata.X = adata.X * 1000.5
    with pytest.raises(DatasetError, match="neither raw counts"):
        normalize_expression(adata)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "", "UPPER", "1abc", "_x", "a-b", "a b", "a.h5ad", "x" * 65, "é", None],
)
def test_invalid_dataset_names(name: object) -> None:
    assert not is_valid_dataset_name(name)
    with pytest.raises(ValueError, match="invalid dataset name"):
        validate_dataset_name(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "norman", "my_screen_2024", "x" * 64])
def test_valid_dataset_names(name: str) -> None:
    assert validate_dataset_name(name) == name


def test_builtin_datasets() -> None:
    assert {k: v.file_id for k, v in BUILTIN_DATASETS.items()} == {
        "adamson": 6154417,
        "norman": 6154020,
        "replogle_k562_essential": 7458695,
        "replogle_rpe1_essential": 7458694,
        "synthetic": None,
        # simulator presets shaped like the four above (test_presets.py)
        "adamson_like": None,
        "norman_like": None,
        "k562_like": None,
        "rpe1_like": None,
    }
    assert all(validate_dataset_name(k) == k == v.name for k, v in BUILTIN_DATASETS.items())


# ----------------------------------------------------------------------------- user datasets


def test_discover_user_datasets(tmp_path: Path) -> None:
    base = tmp_path / "datasets"
    write_gears_folder(make_adata(), base / "screen_a")
    write_h5ad(make_adata(), base / "screen_b.h5ad")
    write_h5ad(make_adata(), base / "Bad-Name.h5ad")
    write_h5ad(make_adata(), base / "norman.h5ad")
    (base / "no_h5ad").mkdir()
    (base / ".tmp-x-123").mkdir()
    (base / "README.txt").write_text("notes")
    with pytest.warns(UserWarning) as record:
        found = discover_user_datasets(tmp_path)
    assert found == {"screen_a": base / "screen_a", "screen_b": base / "screen_b.h5ad"}
    messages = " ".join(str(w.message) for w in record)
    assert "Bad-Name" in messages
    assert "built-in" in messages
    assert "no_h5ad" in messages


def test_discover_without_datasets_folder(tmp_path: Path) -> None:
    assert discover_user_datasets(tmp_path) == {}


def test_add_user_dataset_file_and_folder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    src_file = write_h5ad(make_adata(raw=True, gears_annotations=False), tmp_path / "in.h5ad")
    src_folder = write_gears_folder(make_adata(), tmp_path / "gears_in")
    p1 = add_user_dataset(src_file, "raw_screen", root)
    p2 = add_user_dataset(src_folder, "gears_screen", root)
    assert p1 == root / "datasets" / "raw_screen.h5ad"
    assert p2 == root / "datasets" / "gears_screen"
    assert (p2 / GEARS_FILENAME).is_file()
    assert discover_user_datasets(root) == {"gears_screen": p2, "raw_screen": p1}
    assert load_gears_dataset(p1).n_obs == N_CELLS
    assert sorted(os.listdir(root / "datasets")) == ["gears_screen", "raw_screen.h5ad"]


def test_add_user_dataset_refuses_overwrite_and_builtin(tmp_path: Path) -> None:
    root = tmp_path / "root"
    src = write_h5ad(make_adata(), tmp_path / "in.h5ad")
    add_user_dataset(src, "screen", root)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        add_user_dataset(src, "screen", root)
    with pytest.raises(ValueError, match="built-in"):
        add_user_dataset(src, "norman", root)
    with pytest.raises(ValueError, match="invalid dataset name"):
        add_user_dataset(src, "../evil", root)
    # overwrite=True replaces (here: file form by folder form).
    folder = write_gears_folder(make_adata(seed=3), tmp_path / "gears_in")
    out = add_user_dataset(folder, "screen", root, overwrite=True)
    assert out == root / "datasets" / "screen"
    assert sorted(os.listdir(root / "datasets")) == ["screen"]


def test_add_user_dataset_link(tmp_path: Path) -> None:
    src = write_h5ad(make_adata(), tmp_path / "root" / "raw" / "big.h5ad")
    out = add_user_dataset(src, "linked", tmp_path / "root", link=True)
    assert out.is_symlink()
    assert out.resolve() == src.resolve()


def test_a_link_that_leaves_the_data_root_is_refused(tmp_path: Path) -> None:
    src = write_h5ad(make_adata(), tmp_path / "elsewhere" / "big.h5ad")
    with pytest.raises(ValueError, match="inside the data root"):
        add_user_dataset(src, "linked", tmp_path / "root", link=True)
    assert not (tmp_path / "root" / "datasets" / "linked.h5ad").exists()
    # and a link planted by hand is not a dataset
    (tmp_path / "root" / "datasets").mkdir(parents=True, exist_ok=True)
    (tmp_path / "root" / "datasets" / "planted.h5ad").symlink_to(src)
    with pytest.warns(UserWarning, match="outside the data root"):
        assert "planted" not in discover_user_datasets(tmp_path / "root")


def test_add_corrupt_dataset_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    good = write_h5ad(make_adata(), tmp_path / "good.h5ad")
    add_user_dataset(good, "existing", root)
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        add_user_dataset(bad, "broken", root)
    with pytest.raises(DatasetError):
        add_user_dataset(bad, "existing", root, overwrite=True)
    assert sorted(os.listdir(root / "datasets")) == ["existing.h5ad"]
    assert load_gears_dataset(root / "datasets" / "existing.h5ad").n_obs == N_CELLS


def test_add_failure_during_copy_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import perturb_assets.core.datasets.catalogue as catalogue

    def failing_copy(src: object, dst: object) -> None:
        Path(str(dst)).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(catalogue.shutil, "copyfile", failing_copy)
    src = write_gears_folder(make_adata(), tmp_path / "gears_in")
    with pytest.raises(OSError, match="disk full"):
        add_user_dataset(src, "screen", tmp_path / "root")
    assert os.listdir(tmp_path / "root" / "datasets") == []


# --- add-dataset refuses what the pipeline would reject later -------------------------------


def test_add_refuses_non_integer_counts_before_copying(tmp_path: Path) -> None:
    adata = make_adata(raw=True)
    adata.X = sp.csr_matrix(adata.X.toarray().astype(np.float32) * 1.5 + 30.25)  # not integers
    src = write_h5ad(adata, tmp_path / "scaled.h5ad")
    with pytest.raises(DatasetError) as exc:
        add_user_dataset(src, "scaled", tmp_path / "root")
    assert_dataset_error(exc, src, "X")
    assert not (tmp_path / "root" / "datasets").exists() or not any(
        (tmp_path / "root" / "datasets").iterdir()
    )


def test_add_refuses_a_dataset_too_small_to_split(tmp_path: Path) -> None:
    src = write_h5ad(make_adata(conditions=["ctrl", "G0+ctrl"]), tmp_path / "one.h5ad")
    with pytest.raises(DatasetError) as exc:
        add_user_dataset(src, "one", tmp_path / "root")
    assert_dataset_error(exc, src, "obs['condition']")
    assert "at least 2 train" in str(exc.value)


@pytest.mark.filterwarnings("ignore:Some cells have zero counts")  # all zeros, on purpose
def test_add_refuses_a_constant_matrix(tmp_path: Path) -> None:
    adata = make_adata(raw=True)
    adata.X = sp.csr_matrix(adata.shape, dtype=np.float32)  # all zeros
    src = write_h5ad(adata, tmp_path / "zeros.h5ad")
    with pytest.raises(DatasetError, match="nothing varies") as exc:
        add_user_dataset(src, "zeros", tmp_path / "root")
    assert_dataset_error(exc, src, "X")
