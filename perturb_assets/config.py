"""Where the platform keeps its files. Dagster-free, so notebooks and the CLI share it.

``PERTURB_ASSETS_DATA_ROOT`` overrides the data root; the default is ``./data`` relative to
the working directory, which is the repository root for ``dagster dev`` and the CLI.

Layout under the data root::

    downloads/<dataset>.zip    downloaded GEARS archives (with a .sha256 sidecar)
    gears/<dataset>/           unpacked or simulated GEARS folders (perturb_processed.h5ad)
    datasets/<name>/ | <name>.h5ad   user datasets: each becomes a partition
    embeddings/                user-supplied gene-embedding files
    annotations/               user-supplied GO annotation files (GAF or GMT)
    assets/<asset>/<partition>.<ext>  materialised assets (zarr, parquet, json)
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "PERTURB_ASSETS_DATA_ROOT"


def data_root() -> Path:
    """The data root: ``$PERTURB_ASSETS_DATA_ROOT`` or ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV, "data")).expanduser().resolve()
