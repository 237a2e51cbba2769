"""The dataset partition: built-in GEARS datasets, ``synthetic`` and every user dataset.

Partitions are dynamic (``DynamicPartitionsDefinition("datasets")``), stored in the instance,
so a dataset dropped into ``<data root>/datasets/`` (or added with ``perturb-assets
add-dataset``) appears without a restart or a reload of the code location:
``dataset_sensor`` (in ``defs/jobs.py``) registers it and requests its main-job run.
``perturb-assets run`` registers the partition it is asked for itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from perturb_assets.config import data_root
from perturb_assets.core.datasets import BUILTIN_DATASETS, discover_user_datasets

DATASETS = "datasets"
dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASETS)


def dataset_names() -> list[str]:
    """Built-in names first, then the user datasets on disk now, in sorted order."""
    return [*BUILTIN_DATASETS, *sorted(discover_user_datasets(data_root()))]


def register_datasets(
    instance: dg.DagsterInstance, names: Iterable[str] | None = None
) -> list[str]:
    """Add the dataset partitions the instance does not have yet.

    Parameters
    ----------
    instance
        The Dagster instance that stores the partitions.
    names
        Datasets to register; default :func:`dataset_names`.

    Returns
    -------
    list of str
        The names that were added (already registered ones are left alone).
    """
    known = set(instance.get_dynamic_partitions(DATASETS))
    new = [n for n in (dataset_names() if names is None else names) if n not in known]
    if new:
        instance.add_dynamic_partitions(DATASETS, new)
    return new


def instance_with_datasets(names: Iterable[str] | None = None) -> dg.DagsterInstance:
    """An ephemeral instance (tests, scripts) with the dataset partitions registered."""
    instance = dg.DagsterInstance.ephemeral()
    register_datasets(instance, names)
    return instance
