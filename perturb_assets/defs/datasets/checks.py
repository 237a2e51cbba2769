"""Blocking asset checks of the dataset layer: bad data never flows downstream.

Every rule is a core function that returns problems (:mod:`perturb_assets.core.gears`,
``splits``, ``pseudobulk``, ``de``); the checks only wrap them.
"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core.datasets import usability_problems
from perturb_assets.core.gears import (
    CONTROL,
    condition_problems,
    schema_problems,
    split_coverage_problems,
    split_overlap_problems,
    value_problems,
    var_problems,
)
from perturb_assets.core.pp import de_table_problems, pseudobulk_problems
from perturb_assets.defs.datasets.assets import de_genes, expression, perturbation_split, pseudobulk
from perturb_assets.defs.metadata import check_result
from perturb_assets.defs.partitions import dataset_partitions


def _check(asset, **kwargs):
    return dg.asset_check(asset=asset, blocking=True, partitions_def=dataset_partitions, **kwargs)


@_check(expression, description="obs/var schema of the GEARS layout and control cells present")
def expression_schema(expression: ad.AnnData) -> dg.AssetCheckResult:
    problems = [
        *schema_problems(expression),
        *condition_problems(expression.obs),
        *var_problems(expression.var_names),
    ]
    return check_result(problems)


@_check(expression, description="X is finite, non-negative and on log scale")
def expression_values(expression: ad.AnnData) -> dg.AssetCheckResult:
    return check_result(value_problems(expression.X, log_scale=True))


@_check(
    expression,
    description="values vary and the split gives the models perturbations to train, select "
    "and be scored on (the rules add-dataset applies before it copies a dataset)",
)
def expression_usable(expression: ad.AnnData) -> dg.AssetCheckResult:
    return check_result(
        [f"{field}: {problem}" for field, problem in usability_problems(expression)]
    )


@_check(perturbation_split, description="no condition in both train and test")
def split_disjoint(perturbation_split: pd.DataFrame) -> dg.AssetCheckResult:
    return check_result(split_overlap_problems(perturbation_split))


@_check(
    perturbation_split,
    additional_ins={"expression": dg.AssetIn("expression")},
    description="every split condition is present in the data, and the reverse",
)
def split_covers_data(
    perturbation_split: pd.DataFrame, expression: ad.AnnData
) -> dg.AssetCheckResult:
    conditions = expression.obs["condition"].astype(str)
    return check_result(split_coverage_problems(perturbation_split, conditions))


@_check(pseudobulk, description="finite means, a ctrl row, and cells behind every condition")
def pseudobulk_valid(pseudobulk: ad.AnnData) -> dg.AssetCheckResult:
    return check_result(pseudobulk_problems(pseudobulk, control=CONTROL))


@_check(
    de_genes,
    additional_ins={"expression": dg.AssetIn("expression")},
    description="DE lists cover every perturbed condition, use measured genes, at most 20 each",
)
def de_genes_valid(de_genes: pd.DataFrame, expression: ad.AnnData) -> dg.AssetCheckResult:
    return check_result(de_table_problems(de_genes, expression))
