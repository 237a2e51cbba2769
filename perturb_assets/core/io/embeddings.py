"""Gene-embedding files: where they are looked for, and reading them safely.

A user puts ``<data root>/embeddings/<name>.{parquet,csv,tsv,pkl,pickle}`` (genes × dimensions);
a simulated dataset brings stand-ins in its companion folder. :func:`read_embedding` reads any of
these layouts, finds the gene column, checks the values and refuses pickles outside a trusted
folder (a pickle runs code when it is loaded).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perturb_assets.core.errors import DatasetError
from perturb_assets.core.io.annotations import GENE_INDEX_NAME

__all__ = [
    "EMBEDDINGS_SUBDIR",
    "EMBEDDING_SUFFIXES",
    "embedding_file",
    "embedding_files",
    "read_embedding",
    "user_embedding_file",
]
_PICKLE_SUFFIXES = (".pickle", ".pkl")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_EMBEDDING_GENE_COLUMNS = ("gene", "gene_name", "gene_symbol", "genesymbol", "symbol")
EMBEDDINGS_SUBDIR = "embeddings"
#: Accepted suffixes of a gene-embedding file, in order of preference.
EMBEDDING_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".tsv", ".pkl", ".pickle")


def embedding_file(
    name: str,
    data_root: str | os.PathLike[str],
    companion_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The gene-embedding file of feature set ``name``, or ``None``.

    A simulated dataset's stand-in ``<companion_dir>/embeddings/<name>.parquet`` wins;
    otherwise ``<root>/embeddings/<name>`` with the first of :data:`EMBEDDING_SUFFIXES`.
    """
    if companion_dir is not None:
        stand_in = Path(companion_dir) / EMBEDDINGS_SUBDIR / f"{name}.parquet"
        if stand_in.exists():
            return stand_in
    return user_embedding_file(name, data_root)


def embedding_files(
    data_root: str | os.PathLike[str], companion_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Every gene-embedding file: a simulated dataset's stand-ins (in ``companion_dir``), then
    every file in ``<root>/embeddings/`` with an accepted suffix (the registered ones and any
    the user adds), by name (the file's stem; a stand-in wins)."""
    found: dict[str, Path] = {}
    stand_ins = Path(companion_dir) / EMBEDDINGS_SUBDIR if companion_dir is not None else None
    for folder in (stand_ins, Path(data_root) / EMBEDDINGS_SUBDIR):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(Path(folder).iterdir()):
            if path.suffix in EMBEDDING_SUFFIXES and not path.name.startswith("."):
                found.setdefault(path.stem, path)
    return found


def user_embedding_file(name: str, data_root: str | os.PathLike[str]) -> Path | None:
    """``<root>/embeddings/<name>.{parquet,csv,tsv,pkl,pickle}``, the first that exists."""
    for suffix in EMBEDDING_SUFFIXES:
        path = Path(data_root) / EMBEDDINGS_SUBDIR / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def read_embedding(
    path: str | os.PathLike[str],
    trusted_root: str | os.PathLike[str] | None = None,
    dtype: type[np.floating] = np.float64,
) -> pd.DataFrame:
    """Read a gene-embedding table (genes × dimensions) from a user file.

    Accepted formats, chosen by suffix:

    * ``.parquet`` / ``.pq``: genes in a column named ``gene`` (or ``gene_name``,
      ``gene_symbol``, ``genesymbol``, ``symbol``), else in the (string) index; every other
      column is a dimension.
    * ``.csv`` (comma), ``.tsv`` / ``.txt`` (tab): a header row; the first column holds the genes,
      the others the dimensions.
    * ``.pickle`` / ``.pkl``: a pickled ``dict`` ``{gene: vector}`` as scELMo publishes its
      GPT-3.5 gene embeddings (a pickled DataFrame is accepted too); dimensions are named
      ``dim1`` ... ``dimD``.

    **Trust assumption for pickles.** Unpickling runs arbitrary code stored in the file, so a
    pickle is only read when it lies inside ``trusted_root``, the folder that holds the user's
    own data (symlinks are resolved before the check). The caller vouches that everything under
    that folder was put there by the user from a source they trust (e.g. the scELMo download).
    Without ``trusted_root``, or for a pickle outside it, nothing is unpickled and
    :class:`PermissionError` is raised. Prefer converting pickles to parquet once.

    Parameters
    ----------
    path
        The embedding file.
    trusted_root
        Folder whose pickles may be loaded; ignored for parquet and CSV.
    dtype
        Float dtype of the result (``np.float32`` halves the memory of large tables).

    Returns
    -------
    pandas.DataFrame
        Genes (index, name ``gene_name``, unique, non-empty strings) × dimensions (string
        column names), finite floats.

    Raises
    ------
    PermissionError
        For a pickle without ``trusted_root`` or outside it.
    DatasetError
        Naming the file and the field: unknown suffix, unreadable file, no gene, repeated or
        empty gene names, non-numeric or non-finite values, vectors of different lengths.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        _check_trusted(path, trusted_root)
        table = _embedding_from_pickle(path)
    elif suffix in _PARQUET_SUFFIXES:
        table = _embedding_from_parquet(path)
    elif suffix in _CSV_SUFFIXES:
        table = _embedding_from_csv(path, sep="," if suffix == ".csv" else "\t")
    else:
        raise DatasetError(
            path,
            "file suffix",
            f"{suffix!r} is not supported; use .parquet, .csv, .tsv or .pickle/.pkl",
        )
    return _validate_embedding(table, path, dtype)


def _check_trusted(path: Path, trusted_root: str | os.PathLike[str] | None) -> None:
    """Refuse to unpickle a file that is not inside ``trusted_root``."""
    if trusted_root is None:
        raise PermissionError(
            f"{path}: refusing to unpickle without trusted_root (unpickling runs code from the "
            "file); pass the folder of your own data as trusted_root or convert the embedding "
            "to parquet/csv"
        )
    root = Path(trusted_root).resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise PermissionError(
            f"{path}: refusing to unpickle a file outside the trusted folder {root} "
            "(unpickling runs code from the file)"
        )


def _embedding_from_pickle(path: Path) -> pd.DataFrame:
    """Unpickle ``{gene: vector}`` (or a DataFrame); the caller checked the trust root."""
    try:
        with open(path, "rb") as handle:
            obj = pickle.load(handle)  # only reached inside the trusted root
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be unpickled: {exc}") from exc
    if isinstance(obj, pd.DataFrame):
        return obj
    if not isinstance(obj, Mapping):
        raise DatasetError(
            path, "pickle", f"expected a dict {{gene: vector}}, got {type(obj).__name__}"
        )
    if not obj:
        raise DatasetError(path, "pickle", "the dict is empty (no gene)")
    rows: list[np.ndarray] = []
    genes: list[Any] = []
    length: int | None = None
    first_gene: Any = None
    for gene, vector in obj.items():
        try:
            arr = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DatasetError(path, f"vector of gene {gene!r}", f"is not numeric: {exc}") from exc
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
        if arr.ndim != 1:
            raise DatasetError(
                path, f"vector of gene {gene!r}", f"is not one-dimensional (shape {arr.shape})"
            )
        if length is None:
            length, first_gene = arr.shape[0], gene
        elif arr.shape[0] != length:
            raise DatasetError(
                path,
                f"vector of gene {gene!r}",
                f"has length {arr.shape[0]}, but gene {first_gene!r} has length {length}",
            )
        genes.append(gene)
        rows.append(arr)
    return pd.DataFrame(
        np.vstack(rows),
        index=pd.Index(genes, dtype=object),
        columns=[f"dim{i + 1}" for i in range(length or 0)],
    )


def _embedding_from_parquet(path: Path) -> pd.DataFrame:
    """Read a parquet embedding; genes from a gene column or the index."""
    try:
        table = pd.read_parquet(path)
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be read as parquet: {exc}") from exc
    gene_cols = [c for c in _EMBEDDING_GENE_COLUMNS if c in table.columns]
    if gene_cols:
        return table.set_index(gene_cols[0])
    if isinstance(table.index, pd.RangeIndex) or not all(isinstance(g, str) for g in table.index):
        raise DatasetError(
            path,
            "gene column",
            f"no column named one of {list(_EMBEDDING_GENE_COLUMNS)} and the index does not "
            "hold gene symbols",
        )
    return table


def _embedding_from_csv(path: Path, sep: str) -> pd.DataFrame:
    """Read a delimited embedding; the first column holds the genes."""
    try:
        table = pd.read_csv(path, sep=sep, index_col=0)
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be read as delimited text: {exc}") from exc
    return table


def _validate_embedding(table: pd.DataFrame, path: Path, dtype: type[np.floating]) -> pd.DataFrame:
    """Check genes and values of an embedding table and return it as floats."""
    if table.shape[0] == 0:
        raise DatasetError(path, "genes", "the embedding holds no gene")
    if table.shape[1] == 0:
        raise DatasetError(path, "dimensions", "the embedding has no dimension column")
    genes = pd.Index(table.index)
    bad = [g for g in genes if not isinstance(g, str) or not g.strip()]
    if bad:
        raise DatasetError(
            path, "gene names", f"{len(bad)} empty or non-string gene name(s), e.g. {bad[:5]}"
        )
    if not genes.is_unique:
        dup = genes[genes.duplicated()].unique().tolist()
        raise DatasetError(path, "gene names", f"{len(dup)} gene(s) repeat, e.g. {dup[:10]}")
    columns = [str(c) for c in table.columns]
    if len(set(columns)) != len(columns):
        raise DatasetError(path, "dimension columns", "column names repeat")
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            raise DatasetError(
                path, f"column {col!r}", f"is not numeric (dtype {table[col].dtype})"
            )
    values = table.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = (int(i[0]) for i in np.nonzero(~finite))
        raise DatasetError(
            path,
            f"gene {genes[row]!r}, column {columns[col]!r}",
            f"value {values[row, col]} is not finite ({int((~finite).sum())} such value(s))",
        )
    return pd.DataFrame(
        values.astype(dtype, copy=False),
        index=pd.Index(genes, name=GENE_INDEX_NAME, dtype=object),
        columns=pd.Index(columns),
    )
