"""Where a dataset's file comes from: the simulator, a GEARS download, or the user's folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from perturb_assets.core import gears
from perturb_assets.core.datasets.catalogue import (
    BUILTIN_DATASETS,
    builtin_dataset_dir,
    discover_user_datasets,
)
from perturb_assets.core.datasets.fetch import fetch_gears_dataset
from perturb_assets.core.simulation.generator import simulate
from perturb_assets.core.simulation.params import SimulationParams
from perturb_assets.core.simulation.presets import preset_params
from perturb_assets.core.simulation.stand_ins import GMT_NAME, write_gears_dataset

__all__ = ["Origin", "RawDataset", "RawManifest", "UnknownDatasetError", "obtain_dataset"]

Origin = Literal["simulator", "dataverse", "user"]
_ORIGINS: tuple[str, ...] = ("simulator", "dataverse", "user")


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
    origin: Origin
    annotations: Path | None = None


@dataclass(frozen=True)
class RawManifest:
    """What the ``raw_dataset`` asset stores: where a dataset's file is and what it was.

    Attributes
    ----------
    dataset
        The partition (dataset name).
    path
        The GEARS ``.h5ad`` file, relative to the data root (an absolute path when it lies
        outside it), so the manifest is the same in every data root.
    sha256
        Its sha256 when it was obtained (``expression`` refuses a file that changed since).
    origin
        ``"simulator"``, ``"dataverse"`` or ``"user"``.
    annotations
        The simulator's GO stand-in (GMT), for simulated datasets; relative like ``path``.
    simulator_config
        The :class:`~perturb_assets.core.simulation.SimulationParams` of a simulated dataset.
    stored
        Where the dataset's folder is kept in a remote store (steps on other machines fetch it).
    """

    dataset: str
    path: str
    sha256: str
    origin: Origin
    annotations: str | None = None
    simulator_config: dict[str, Any] | None = None
    stored: str | None = None

    @property
    def is_simulated(self) -> bool:
        return self.origin == "simulator"

    @classmethod
    def of(
        cls,
        raw: RawDataset,
        dataset: str,
        data_root: str | PathLike,
        sha256: str,
        simulator_config: dict[str, Any] | None = None,
        stored: str | None = None,
    ) -> RawManifest:
        """The manifest of an obtained dataset, its paths relative to ``data_root``."""
        root = Path(data_root)
        annotations = raw.annotations
        return cls(
            dataset=dataset,
            path=_relative(raw.path, root),
            sha256=sha256,
            origin=raw.origin,
            annotations=_relative(annotations, root) if annotations is not None else None,
            simulator_config=simulator_config,
            stored=stored,
        )

    def file(self, data_root: str | PathLike) -> Path:
        """The GEARS file under ``data_root``."""
        return Path(data_root) / self.path

    def annotations_file(self, data_root: str | PathLike) -> Path | None:
        """The simulator's GO stand-in under ``data_root`` (``None`` unless simulated)."""
        return Path(data_root) / self.annotations if self.annotations else None

    def companion_dir(self, data_root: str | PathLike) -> Path | None:
        """The simulator's companion folder (the GEARS file's folder, holding its stand-ins:
        GO GMT, gene programs, gene embeddings, scGPT checkpoint); ``None`` unless simulated."""
        return self.file(data_root).parent if self.is_simulated else None

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON object (fields left unset are left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RawManifest:
        """Read a stored manifest back, naming the field that is missing or wrong."""
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("dataset", "path", "sha256", "origin") if k not in value]
        unknown = sorted(set(value) - known)
        if missing or unknown:
            raise ValueError(
                f"raw_dataset manifest: missing field(s) {missing}, unknown field(s) {unknown}; "
                "re-materialise raw_dataset"
            )
        if value["origin"] not in _ORIGINS:
            raise ValueError(
                f"raw_dataset manifest: origin {value['origin']!r} is not one of {_ORIGINS}"
            )
        return cls(**value)


def _relative(path: Path, root: Path) -> str:
    path, root = Path(path).resolve(), root.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


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
    :func:`~perturb_assets.core.datasets.fetch_gears_dataset`; anything else must be a user
    dataset under ``<root>/datasets``.

    ``progress`` receives the simulator's progress lines.

    Raises
    ------
    UnknownDatasetError
        For a name that is neither built in nor a user dataset.
    perturb_assets.core.io.DownloadError, perturb_assets.core.errors.DatasetError
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
