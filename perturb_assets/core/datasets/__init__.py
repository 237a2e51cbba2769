"""The datasets (stage 5): which exist, where each comes from, how it is loaded.

- ``catalogue``: the built-in datasets and the user's (``<data root>/datasets``), names,
  :func:`add_user_dataset`;
- ``sources``: :func:`obtain_dataset` (simulate, download or find) and :class:`RawManifest`,
  what the ``raw_dataset`` asset stores;
- ``fetch``: downloading a built-in GEARS dataset; ``loading``: reading one as the platform
  stores it (the ``expression`` asset)."""

from perturb_assets.core.datasets.catalogue import (
    BUILTIN_DATASETS,
    DATASETS_SUBDIR,
    GEARS_SUBDIR,
    BuiltinDataset,
    add_user_dataset,
    builtin_dataset_dir,
    discover_user_datasets,
    is_valid_dataset_name,
    user_datasets_dir,
    validate_dataset_name,
)
from perturb_assets.core.datasets.fetch import (
    DOWNLOADS_SUBDIR,
    PROVENANCE_FILENAME,
    archive_path,
    fetch_gears_dataset,
)
from perturb_assets.core.datasets.loading import (
    dataset_summary,
    load_expression,
    load_gears_dataset,
)
from perturb_assets.core.datasets.sources import (
    Origin,
    RawDataset,
    RawManifest,
    UnknownDatasetError,
    obtain_dataset,
)
from perturb_assets.core.datasets.usability import (
    MIN_TRAIN_PERTURBATIONS,
    usability_problems,
)

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "DATASETS_SUBDIR",
    "DOWNLOADS_SUBDIR",
    "GEARS_SUBDIR",
    "MIN_TRAIN_PERTURBATIONS",
    "Origin",
    "PROVENANCE_FILENAME",
    "RawDataset",
    "RawManifest",
    "UnknownDatasetError",
    "add_user_dataset",
    "archive_path",
    "builtin_dataset_dir",
    "dataset_summary",
    "discover_user_datasets",
    "fetch_gears_dataset",
    "is_valid_dataset_name",
    "load_expression",
    "load_gears_dataset",
    "obtain_dataset",
    "usability_problems",
    "user_datasets_dir",
    "validate_dataset_name",
]
