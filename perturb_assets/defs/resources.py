"""Resources, defined once: where files live and where datasets come from."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from perturb_assets.config import data_root


class DataSources(dg.ConfigurableResource):
    """Where raw inputs live and come from.

    Attributes
    ----------
    data_root
        Root folder for raw downloads, user datasets, embeddings and annotations.
    dataverse_url_template
        Download URL with a ``{file_id}`` placeholder. Harvard Dataverse answers 403 at times;
        point this at a mirror (or set ``PERTURB_ASSETS_DATAVERSE_URL``) when it does.
        Empty means the core default.
    """

    data_root: str
    dataverse_url_template: str = ""

    @property
    def root(self) -> Path:
        return Path(self.data_root)


def default_data_sources() -> DataSources:
    return DataSources(
        data_root=str(data_root()),
        dataverse_url_template=dg.EnvVar("PERTURB_ASSETS_DATAVERSE_URL").get_value(""),
    )
