"""Blocking asset checks of the dataset layer: bad data never flows downstream.

The check logic is plain functions over core objects (``*_problems``), so it is tested
without Dagster; the checks only wrap them.
"""

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core.conditions import CONTROL
from perturb_assets.defs.datasets.assets import (
    N_TOP_DE,
    de_genes,
    expression,
    perturbation_split,
    pseudobulk,
)
from perturb_assets.defs.partitions import dataset_partitions

# log1p of a 1e4-normalised profile stays far below this; raw counts do not.
MAX_LOG_VALUE = 20.0


def _values(x) -> np.ndarray:
    return x.data if sp.issparse(x) else np.asarray(x)


def expression_schema_problems(adata: ad.AnnData) -> list[str]:
    problems = []
    for col in ("condition", "cell_type", "condition_name"):
        if col not in adata.obs:
            problems.append(f"obs['{col}'] missing")
    if "gene_name" not in adata.var:
        problems.append("var['gene_name'] missing")
    if not adata.var_names.is_unique:
        problems.append("var_names are not unique")
    if "condition" in adata.obs and not (adata.obs["condition"] == CONTROL).any():
        problems.append("no control cells")
    return problems


def expression_value_problems(adata: ad.AnnData) -> list[str]:
    values = _values(adata.X)
    problems = []
    if not np.isfinite(values).all():
        problems.append(f"{int((~np.isfinite(values)).sum())} non-finite values in X")
    if values.size and np.nanmin(values) < 0:
        problems.append("negative values in X")
    if values.size and np.nanmax(values) > MAX_LOG_VALUE:
        problems.append(f"max of X is {np.nanmax(values):.1f} > {MAX_LOG_VALUE}: not log scale")
    return problems


def split_overlap_problems(split: pd.DataFrame) -> list[str]:
    problems = []
    if not split.index.is_unique:
        problems.append(
            f"conditions listed twice: {list(split.index[split.index.duplicated()][:5])}"
        )
    train = set(split.index[split["split"] == "train"])
    test = set(split.index[split["split"] == "test"])
    if both := sorted(train & test):
        problems.append(f"in both train and test: {both[:5]}")
    return problems


def split_coverage_problems(split: pd.DataFrame, adata: ad.AnnData) -> list[str]:
    in_data = set(adata.obs["condition"].astype(str))
    in_split = set(split.index)
    problems = []
    if missing := sorted(in_split - in_data):
        problems.append(f"split conditions absent from the data: {missing[:5]}")
    if unsplit := sorted(in_data - in_split):
        problems.append(f"data conditions without a split: {unsplit[:5]}")
    return problems


def pseudobulk_problems(table: pd.DataFrame) -> list[str]:
    problems = []
    if CONTROL not in table.index:
        problems.append("no ctrl row (control mean)")
    if not np.isfinite(table.to_numpy(dtype=float)).all():
        problems.append("non-finite values")
    if (table["n_cells"] <= 0).any():
        problems.append("a condition with no cells")
    return problems


def de_problems(table: pd.DataFrame, adata: ad.AnnData) -> list[str]:
    problems = []
    if unknown := sorted(set(table["gene_id"]) - set(adata.var_names)):
        problems.append(f"genes not in var_names: {unknown[:5]}")
    expected = set(adata.obs["condition"].astype(str)) - {CONTROL}
    for (method, targets), group in table.groupby(["method", "targets"]):
        if missing := sorted(expected - set(group["condition"])):
            problems.append(f"{method}/{targets}: conditions without DE genes: {missing[:5]}")
        if group.groupby("condition").size().max() > N_TOP_DE:
            problems.append(f"{method}/{targets}: more than {N_TOP_DE} genes in a list")
    return problems


def _result(problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )


def _check(asset, **kwargs):
    return dg.asset_check(asset=asset, blocking=True, partitions_def=dataset_partitions, **kwargs)


@_check(expression, description="obs/var schema of the GEARS layout and control cells present")
def expression_schema(expression: ad.AnnData) -> dg.AssetCheckResult:
    return _result(expression_schema_problems(expression))


@_check(expression, description="X is finite, non-negative and on log scale")
def expression_values(expression: ad.AnnData) -> dg.AssetCheckResult:
    return _result(expression_value_problems(expression))


@_check(perturbation_split, description="no condition in both train and test")
def split_disjoint(perturbation_split: pd.DataFrame) -> dg.AssetCheckResult:
    return _result(split_overlap_problems(perturbation_split))


@_check(
    perturbation_split,
    additional_ins={"expression": dg.AssetIn("expression")},
    description="every split condition is present in the data, and the reverse",
)
def split_covers_data(
    perturbation_split: pd.DataFrame, expression: ad.AnnData
) -> dg.AssetCheckResult:
    return _result(split_coverage_problems(perturbation_split, expression))


@_check(pseudobulk, description="finite means, a ctrl row, and cells behind every condition")
def pseudobulk_valid(pseudobulk: pd.DataFrame) -> dg.AssetCheckResult:
    return _result(pseudobulk_problems(pseudobulk))


@_check(
    de_genes,
    additional_ins={"expression": dg.AssetIn("expression")},
    description="DE lists cover every perturbed condition, use measured genes, at most 20 each",
)
def de_genes_valid(de_genes: pd.DataFrame, expression: ad.AnnData) -> dg.AssetCheckResult:
    return _result(de_problems(de_genes, expression))
