"""The dataset partition: built-in GEARS datasets, ``synthetic`` and every user dataset.

User datasets are discovered when the code location loads, so a folder or ``.h5ad`` dropped
into ``<data root>/datasets/`` (or added with ``perturb-assets add-dataset``) appears as a
partition after a reload of the code location.
"""

from __future__ import annotations

import dagster as dg

from perturb_assets.config import data_root
from perturb_assets.core.datasets import BUILTIN_DATASETS, discover_user_datasets


def dataset_names() -> list[str]:
    """Built-in names first, then user datasets in sorted order."""
    return [*BUILTIN_DATASETS, *sorted(discover_user_datasets(data_root()))]


dataset_partitions = dg.StaticPartitionsDefinition(dataset_names())
