"""Blocking checks of the gene-feature tables (the rule: ``core.features.feature_table_problems``).

A failing check stops both the run that produced the table (its models do not start) and the
automatic refresh (``defs/automation.py``).
"""

import dagster as dg
import pandas as pd

from perturb_assets.core.features import feature_table_problems
from perturb_assets.core.gears import target_genes
from perturb_assets.core.models import FEATURE_SETS, FeatureSetSpec
from perturb_assets.defs.metadata import check_result
from perturb_assets.defs.partitions import dataset_partitions


def _usable_check(spec: FeatureSetSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=spec.asset_name,
        name=f"{spec.name}_features_usable",
        blocking=True,
        partitions_def=dataset_partitions,
        additional_ins={"perturbation_split": dg.AssetIn("perturbation_split")},
        description="finite values, unique gene symbols, and features for at least one "
        "perturbation target (an empty table means no embedding: its models are skipped)",
    )
    def usable(features: pd.DataFrame, perturbation_split: pd.DataFrame) -> dg.AssetCheckResult:
        return check_result(
            feature_table_problems(features, target_genes(perturbation_split.index))
        )

    return usable


feature_checks = [_usable_check(spec) for spec in FEATURE_SETS.values()]
