"""Where a dataset's file comes from: the simulator, a GEARS download, or the user's folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

from perturb_assets.core import gears
from perturb_assets.core.datasets import (
    BUILTIN_DATASETS,
    builtin_dataset_dir,
    discover_user_datasets,
)
from perturb_assets.core.download import fetch_gears_dataset
from perturb_assets.core.presets import preset_params
from perturb_assets.core.simulate import GMT_NAME, SimulationParams, simulate, write_gears_dataset

__all__ = ["RawDataset", "UnknownDatasetError", "obtain_dataset"]


class UnknownDatasetError(ValueError):
    """A dataset name that is neither built in nor a user dataset."""


@dataclass(frozen=True)
class RawDataset:
    """The h5ad file of a dataset and where it came from.

    Attributes
    ----------
    path
        The GEARS ``.h5ad`` file.
    origin
        ``"simulator"``, ``"dataverse"`` or ``"user"``.
    annotations
        The simulator's GO stand-in (a GMT file), for simulated datasets only.
    """

    path: Path
    origin: Literal["simulator", "dataverse", "user"]
    annotations: Path | None = None


def obtain_dataset(
    name: str,
    data_root: str | PathLike,
    *,
    url_template: str | None = None,
    simulation: SimulationParams | None = None,
    progress: Callable[[str], None] | None = None,
) -> RawDataset:
    """Simulate, download or find dataset ``name`` under ``data_root``.

    A built-in dataset without a download (``synthetic`` and the other simulator presets) is
    simulated with ``simulation`` (the preset of that name when ``None``) into
    ``<root>/gears/<name>``; the other built-in
    datasets are fetched from Dataverse (or the mirror ``url_template``) by
    :func:`~perturb_assets.core.download.fetch_gears_dataset`; anything else must be a user
    dataset under ``<root>/datasets``.

    ``progress`` receives the simulator's progress lines.

    Raises
    ------
    UnknownDatasetError
        For a name that is neither built in nor a user dataset.
    perturb_assets.core.download.DownloadError, perturb_assets.core.errors.DatasetError
        From the download or the validation of a downloaded dataset.
    """
    root = Path(data_root)
    builtin = BUILTIN_DATASETS.get(name)
    if builtin is not None and not builtin.is_downloadable:
        folder = builtin_dataset_dir(name, root)
        write_gears_dataset(simulate(simulation or preset_params(name), progress), folder)
        return RawDataset(folder / gears.FILENAME, "simulator", folder / GMT_NAME)
    if builtin is not None:
        folder = fetch_gears_dataset(name, root, url_template=url_template or None)
        return RawDataset(folder / gears.FILENAME, "dataverse")
    user = discover_user_datasets(root)
    if name not in user:
        raise UnknownDatasetError(
            f"dataset {name!r} is neither built in ({sorted(BUILTIN_DATASETS)}) nor under "
            f"{root / 'datasets'}"
        )
    path = Path(user[name])
    return RawDataset(path / gears.FILENAME if path.is_dir() else path, "user")
