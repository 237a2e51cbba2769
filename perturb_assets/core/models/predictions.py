"""Prediction tables: every model's test-set predictions in one self-describing layout.

A prediction table is an AnnData with one observation per predicted condition:

* ``X``: predicted pseudo-bulk expression (float64, the genes of the pseudo-bulk table);
* ``obs``: ``condition``, and ``model``, ``features`` and ``protocol`` on every row, so each
  row says where it came from, plus optional per-condition flags (e.g. ``fallback``: the
  additive model used Train Mean for it); a table may hold several models (a user's files);
  a model fine-tuned with several seeds has one block of rows per seed, told apart by
  ``obs['seed']`` (:func:`seeded_prediction_table`; :func:`split_by_seed`);
* ``var``: the genes (``var_names`` as in the dataset, ``gene_name`` where known).

Baselines, foundation models and predictions a user brings all produce this layout, and
:func:`perturb_assets.core.evaluation.evaluate_models` scores any of them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears.format import LOG1P_MAX
from perturb_assets.core.gears.validation import is_log_scale

__all__ = [
    "IDENTITY_COLUMNS",
    "prediction_folder_problems",
    "prediction_frame",
    "prediction_identity",
    "prediction_table",
    "combine_tables",
    "read_user_predictions",
    "seeded_prediction_table",
    "split_by_model",
    "split_by_seed",
    "user_prediction_files",
]

#: The ``obs`` columns that say which model, features and protocol made a row.
IDENTITY_COLUMNS: tuple[str, ...] = ("model", "features", "protocol")
#: The ``obs`` column of the seed that made a row (models trained with a seed).
SEED_COLUMN = "seed"


def prediction_table(
    predictions: pd.DataFrame,
    *,
    model: str,
    features: str,
    protocol: str,
    var: pd.DataFrame | None = None,
    flags: Mapping[str, Iterable[str]] | None = None,
) -> AnnData:
    """Wrap a conditions × genes frame of predictions as a prediction table.

    Parameters
    ----------
    predictions
        Predicted pseudo-bulk expression; index = conditions, columns = gene ids.
    model, features, protocol
        Written on every row (``features`` is ``"none"`` for a model without features).
    var
        Gene annotation indexed by gene id (e.g. the pseudo-bulk table's ``var``); its rows for
        ``predictions.columns`` become ``var``.
    flags
        Flag name -> conditions for which it is true; each becomes a boolean ``obs`` column.

    Returns
    -------
    anndata.AnnData
        The prediction table.
    """
    conditions = predictions.index.astype(str)
    obs = pd.DataFrame({"condition": conditions}, index=pd.Index(conditions, name="obs_name"))
    for column, value in zip(IDENTITY_COLUMNS, (model, features, protocol), strict=True):
        obs[column] = value
    for flag, conditions in (flags or {}).items():
        obs[flag] = obs.index.isin(list(conditions))
    genes = pd.Index(predictions.columns.astype(str))
    table_var = pd.DataFrame(index=genes) if var is None else var.reindex(genes)
    x = predictions.to_numpy(np.float64).reshape(len(obs), len(genes))
    return AnnData(X=x, obs=obs, var=table_var)


def seeded_prediction_table(
    predictions: Mapping[int, pd.DataFrame], **identity: str | pd.DataFrame | None
) -> AnnData:
    """One block of rows per seed (``obs['seed']``) of :func:`prediction_table`.

    ``predictions`` maps each seed to its conditions × genes frame; ``identity`` holds
    :func:`prediction_table`'s keywords. ``obs_names`` are ``<condition>|seed<seed>``.
    """
    import anndata as ad

    blocks = []
    for seed, frame in predictions.items():
        block = prediction_table(frame, **identity)
        block.obs[SEED_COLUMN] = int(seed)
        block.obs_names = [f"{c}|seed{seed}" for c in block.obs["condition"]]
        blocks.append(block)
    return ad.concat(blocks, merge="same")


def split_by_seed(table: AnnData) -> list[tuple[int | None, AnnData]]:
    """``(seed, rows)`` per seed of a one-model table; ``[(None, table)]`` without seeds."""
    if SEED_COLUMN not in table.obs:
        return [(None, table)]
    seeds = table.obs[SEED_COLUMN].astype(int)
    return [(int(s), table[(seeds == s).to_numpy()]) for s in pd.unique(seeds)]


def prediction_frame(table: AnnData) -> pd.DataFrame:
    """The predictions of a one-model table as a conditions × genes frame."""
    frame = table.to_df()
    frame.index = pd.Index(table.obs["condition"].astype(str).to_numpy(), name="condition")
    return frame


def combine_tables(tables: list[AnnData], var: pd.DataFrame) -> AnnData:
    """Several prediction tables (of the same genes) in one; an empty table without any."""
    if not tables:
        empty = pd.DataFrame(columns=var.index, dtype=float)
        return prediction_table(empty, model="", features="", protocol="", var=var)
    import anndata as ad

    named = []
    for table in tables:  # unique row names before concatenating (anndata warns otherwise)
        table = table.copy()
        table.obs_names = [f"{m}|{c}" for m, c in zip(table.obs["model"], table.obs["condition"],
                                                        strict=True)]  # fmt: skip
        named.append(table)
    return ad.concat(named, merge="same")


def split_by_model(table: AnnData) -> list[AnnData]:
    """One table per (model, features, protocol) of a table that holds several models."""
    if table.n_obs == 0:
        return []
    keys = table.obs[list(IDENTITY_COLUMNS)].astype(str).agg("\x1f".join, axis=1)
    return [table[(keys == key).to_numpy()].copy() for key in pd.unique(keys)]


def prediction_identity(table: AnnData) -> dict[str, str]:
    """``model``, ``features`` and ``protocol`` of a non-empty table (one value each)."""
    identity = {}
    for column in IDENTITY_COLUMNS:
        values = table.obs[column].astype(str).unique()
        if len(values) != 1:
            raise ValueError(f"prediction table obs[{column!r}] holds {list(values)}, not one")
        identity[column] = str(values[0])
    return identity


# ---------------------------------------------------------------------------------------------
# Predictions a user brings
# ---------------------------------------------------------------------------------------------

#: Where a user drops prediction files: ``<data root>/predictions/<dataset>/<model>.<suffix>``.
PREDICTIONS_SUBDIR = "predictions"
PREDICTION_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".h5ad")
#: ``features`` and ``protocol`` of a user's prediction rows.
USER_LABEL = "user"
_MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


#: ``uns`` key of a user's prediction table listing the files it could not accept.
REJECTED_KEY = "rejected_files"
REJECTED_COLUMNS: tuple[str, ...] = ("file", "field", "problem")


def user_prediction_files(data_root: str | PathLike, dataset: str) -> list[Path]:
    """Every file in ``dataset``'s prediction folder, sorted (hidden files skipped); a file
    of another type is listed too, so that it is reported rather than skipped in silence."""
    folder = Path(data_root) / PREDICTIONS_SUBDIR / dataset
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_prediction_folder(
    data_root: str | PathLike, dataset: str, profiles: AnnData
) -> tuple[AnnData, pd.DataFrame]:
    """Every prediction file of ``dataset`` read into one table, and the files it refused.

    A bad file blocks only itself: it is left out and listed (``file``, ``field``,
    ``problem``) instead of failing the whole folder, so every other model is still scored.
    The table carries that list in ``uns['rejected_files']`` when it is not empty.
    """
    tables, rejected = [], []
    for path in user_prediction_files(data_root, dataset):
        if path.suffix not in PREDICTION_SUFFIXES:
            problem = (
                f"{path.suffix or 'no suffix'} is not read: use {', '.join(PREDICTION_SUFFIXES)}"
            )
            rejected.append((path.name, "file type", problem))
            continue
        try:
            tables.append(read_user_predictions(path, profiles))
        except DatasetError as exc:
            rejected.append((path.name, exc.field, exc.problem))
    combined = combine_tables(tables, profiles.var)
    refused = pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS))
    if len(refused):
        combined.uns[REJECTED_KEY] = refused
    return combined, refused


def rejected_files(table: AnnData | None) -> pd.DataFrame:
    """The files a user's prediction table could not accept (empty when none)."""
    if table is None or REJECTED_KEY not in table.uns:
        return pd.DataFrame(columns=list(REJECTED_COLUMNS))
    return pd.DataFrame(table.uns[REJECTED_KEY]).reindex(columns=list(REJECTED_COLUMNS))


def prediction_folder_problems(data_root: str | PathLike, datasets: Iterable[str]) -> list[str]:
    """Folders or files under ``<root>/predictions`` that belong to no known dataset."""
    base, known = Path(data_root) / PREDICTIONS_SUBDIR, set(datasets)
    if not base.is_dir():
        return []
    return [
        f"{entry}: dataset: no dataset named {entry.name!r} (known: {sorted(known)}); "
        f"put a dataset's predictions in {base}/<dataset>/<model>.parquet"
        for entry in sorted(base.iterdir())
        if not entry.name.startswith(".") and (not entry.is_dir() or entry.name not in known)
    ]


def read_user_predictions(path: str | PathLike, profiles: AnnData) -> AnnData:
    """A user's prediction file, checked against the dataset, as a prediction table.

    Accepted: conditions × genes as parquet (conditions in the index or a ``condition``
    column) or CSV (first column = condition), or a per-cell ``.h5ad`` with
    ``obs['condition']``, averaged per condition. Genes are the dataset's gene ids
    (``var_names``) or its symbols (``var['gene_name']``). The model is the file's stem.

    Parameters
    ----------
    path
        The file.
    profiles
        The dataset's pseudo-bulk profiles (:func:`perturb_assets.core.pp.pseudobulk.
        pseudobulk_profiles`): its conditions and genes.

    Raises
    ------
    DatasetError
        Naming the file and the field: a bad model name, an unreadable file, repeated or
        unknown conditions, genes missing, NaN or infinite values, values above the log scale.
    """
    path = Path(path)
    if not _MODEL_NAME.fullmatch(path.stem):
        raise DatasetError(
            path,
            "file name",
            f"{path.stem!r} is not a model name: use 1-64 "
            "lowercase letters, digits or '_', starting with a letter",
        )
    frame = _read_prediction_frame(path)
    frame = _match_genes(frame, profiles, path)
    _check_conditions(frame.index, profiles.obs_names, path)
    _check_values(frame.to_numpy(np.float64), path)
    return prediction_table(
        frame, model=path.stem, features=USER_LABEL, protocol=USER_LABEL, var=profiles.var
    )


def _read_prediction_frame(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".h5ad":
            return _per_cell_means(path)
        if path.suffix == ".csv":
            frame = pd.read_csv(path, index_col=0)
        else:
            frame = pd.read_parquet(path)
            if "condition" in frame.columns:
                frame = frame.set_index("condition")
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be read: {exc}") from exc
    frame.index = frame.index.astype(str)
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DatasetError(path, f"column {non_numeric[0]!r}", "is not numeric")
    return frame


def _per_cell_means(path: Path) -> pd.DataFrame:
    import anndata as ad

    from perturb_assets.core.pp.pseudobulk import pseudobulk

    cells = ad.read_h5ad(path)
    if "condition" not in cells.obs.columns:
        raise DatasetError(path, "obs['condition']", "column is missing; every cell needs one")
    return pseudobulk(cells, groupby="condition")


def _match_genes(frame: pd.DataFrame, profiles: AnnData, path: Path) -> pd.DataFrame:
    """Columns as the dataset's gene ids, in its order; symbols are mapped through gene_name."""
    columns = pd.Index(frame.columns.astype(str))
    if not columns.is_unique:
        raise DatasetError(
            path, "genes", f"repeated gene columns: {list(columns[columns.duplicated()][:5])}"
        )
    ids = pd.Index(profiles.var_names.astype(str))
    if "gene_name" in profiles.var and not columns.isin(ids).any():
        symbol_to_id = pd.Series(ids, index=profiles.var["gene_name"].astype(str))
        symbol_to_id = symbol_to_id[~symbol_to_id.index.duplicated()]
        columns = pd.Index(symbol_to_id.reindex(columns).fillna("").to_numpy())
    frame = frame.set_axis(columns, axis=1)
    missing = ids.difference(columns)
    if len(missing):
        raise DatasetError(
            path,
            "genes",
            f"{len(missing)} of the dataset's {len(ids)} genes "
            f"are missing, e.g. {list(missing[:5])}",
        )
    return frame[ids]


def _check_conditions(conditions: pd.Index, known: pd.Index, path: Path) -> None:
    if not conditions.is_unique:
        repeated = list(conditions[conditions.duplicated()].unique()[:5])
        raise DatasetError(path, "conditions", f"repeated conditions: {repeated}")
    unknown = conditions.difference(known)
    if len(unknown):
        raise DatasetError(
            path,
            "conditions",
            f"{len(unknown)} condition(s) not in the dataset, e.g. {list(unknown[:5])}",
        )


def _check_values(values: np.ndarray, path: Path) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        raise DatasetError(path, "values", f"{int((~finite).sum())} NaN or infinite value(s)")
    if values.size and not is_log_scale(float(values.max())):
        raise DatasetError(
            path,
            "values",
            f"maximum {values.max():.4g} is above the log scale "
            f"({LOG1P_MAX:.4g}): predict log1p-normalised expression",
        )
