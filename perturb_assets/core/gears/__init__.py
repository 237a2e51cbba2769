"""The GEARS dataset format and split, stated once (stage 1: every other stage builds on it).

- ``format``: file name, condition grammar (``ctrl``, ``A+ctrl``, ``A+B``), control label,
  ``TARGET_SUM``, ``N_TOP_DE``, the ``obs`` GEARS expects;
- ``validation``: problems of a dataset as values, and the loaders' raising checks;
- ``split``: cell-gears' "simulation" train/val/test split of the conditions, recomputed."""

from perturb_assets.core.gears.format import (
    CONTROL,
    FILENAME,
    HEAVY_UNS_KEYS,
    LOG1P_MAX,
    N_TOP_DE,
    REQUIRED_OBS,
    TARGET_SUM,
    UNS_DE_KEYS,
    UNS_KEY,
    condition_name,
    gears_obs,
    parse_condition,
    target_genes,
)
from perturb_assets.core.gears.split import (
    SPLITS,
    SUBGROUPS,
    check_split_parameters,
    simulation_split,
    split_coverage_problems,
    split_overlap_problems,
    split_summary,
)
from perturb_assets.core.gears.validation import (
    Problem,
    anndata_problems,
    condition_problems,
    is_log_scale,
    scan_values,
    schema_problems,
    validate_expression,
    validate_gears_anndata,
    value_problems,
    var_problems,
)

__all__ = [
    "CONTROL",
    "FILENAME",
    "HEAVY_UNS_KEYS",
    "LOG1P_MAX",
    "N_TOP_DE",
    "Problem",
    "REQUIRED_OBS",
    "SPLITS",
    "SUBGROUPS",
    "TARGET_SUM",
    "UNS_DE_KEYS",
    "UNS_KEY",
    "anndata_problems",
    "check_split_parameters",
    "condition_name",
    "condition_problems",
    "gears_obs",
    "is_log_scale",
    "parse_condition",
    "scan_values",
    "schema_problems",
    "simulation_split",
    "split_coverage_problems",
    "split_overlap_problems",
    "split_summary",
    "target_genes",
    "validate_expression",
    "validate_gears_anndata",
    "value_problems",
    "var_problems",
]
