"""Where the platform keeps its files. Dagster-free, so notebooks and the CLI share it.

``PERTURB_ASSETS_DATA_ROOT`` overrides the data root; the default is ``./data`` relative to
the working directory, which is the repository root for ``dagster dev`` and the CLI.
:func:`compute_budget` says how many cores a run uses and how steps share them.

Layout under the data root::

    downloads/<dataset>.zip    downloaded GEARS archives (with a .sha256 sidecar)
    gears/<dataset>/           unpacked or simulated GEARS folders (perturb_processed.h5ad)
    datasets/<name>/ | <name>.h5ad   user datasets: each becomes a partition
    embeddings/                user-supplied gene-embedding files
    annotations/               user-supplied GO annotation files (GAF or GMT)
    reports/                   the benchmark report (HTML, figures, tables)
    assets/<asset>/<partition>/     materialised assets, versioned (see core/io/store.py)
    models/<asset>/<partition>/     fitted models, versioned

``PERTURB_ASSETS_STORAGE_URL`` moves ``assets/`` and ``models/`` elsewhere, e.g. to
``s3://bucket/perturb``: that is what steps running on different machines share.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

DATA_ROOT_ENV = "PERTURB_ASSETS_DATA_ROOT"
#: Where asset values and model files are stored (default: the data root); e.g. s3://bucket/x.
STORAGE_URL_ENV = "PERTURB_ASSETS_STORAGE_URL"


def data_root() -> Path:
    """The data root: ``$PERTURB_ASSETS_DATA_ROOT`` or ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV, "data")).expanduser().resolve()


def storage_url() -> str:
    """Where asset values and model files live: ``$PERTURB_ASSETS_STORAGE_URL`` or the data
    root."""
    return os.environ.get(STORAGE_URL_ENV, "").strip() or str(data_root())


CORES_ENV = "PERTURB_ASSETS_CORES"
CONCURRENT_ENV = "PERTURB_ASSETS_MAX_CONCURRENT"
EXECUTOR_ENV = "PERTURB_ASSETS_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")


@dataclass(frozen=True)
class ComputeBudget:
    """How many cores a run may use and how they are shared between steps.

    ``concurrent_steps`` steps run side by side (the multiprocess executor's ``max_concurrent``;
    1 in process) and each step's parallel work (random-forest trees, kNN, BLAS) gets
    ``jobs_per_step = cores // concurrent_steps`` threads, so the run never asks for more
    threads than cores.
    """

    cores: int
    concurrent_steps: int

    @property
    def jobs_per_step(self) -> int:
        return max(1, self.cores // self.concurrent_steps)


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r}: expected a positive integer (unset it for {default})")
    return int(raw)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def executor_kind() -> str:
    """``$PERTURB_ASSETS_EXECUTOR``: ``in_process`` (default), ``multiprocess`` or ``k8s``."""
    kind = os.environ.get(EXECUTOR_ENV, "in_process")
    if kind not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}; use one of {', '.join(EXECUTORS)}")
    return kind


def compute_budget() -> ComputeBudget:
    """The budget from ``$PERTURB_ASSETS_CORES`` (default: the available cores) and
    ``$PERTURB_ASSETS_MAX_CONCURRENT`` (multiprocess executor only; default: as many steps as
    cores). In process, and in a Kubernetes step pod, one step has the cores to itself.

    Raises
    ------
    ValueError
        If a variable is not a positive integer, more cores are asked for than this machine
        gives the process (outside Kubernetes, whose step pods size themselves), or more steps
        than cores.
    """
    cores = _positive_int_env(CORES_ENV, available_cores())
    if cores > available_cores() and executor_kind() != "k8s":
        raise ValueError(
            f"{CORES_ENV}={cores} exceeds the {available_cores()} cores this machine gives the "
            f"process: threads would oversubscribe them (unset {CORES_ENV} to use them all)"
        )
    shared = executor_kind() == "multiprocess"
    concurrent = _positive_int_env(CONCURRENT_ENV, cores if shared else 1)
    if not shared and concurrent != 1:
        raise ValueError(
            f"{CONCURRENT_ENV}={concurrent} needs {EXECUTOR_ENV}=multiprocess (in process and "
            "in a Kubernetes pod one step runs at a time)"
        )
    if concurrent > cores:
        raise ValueError(
            f"{CONCURRENT_ENV}={concurrent} exceeds {CORES_ENV}={cores}: steps would "
            "oversubscribe the cores"
        )
    return ComputeBudget(cores, concurrent)


#: The packages whose versions every materialisation records (and the lineage audit shows).
RECORDED_PACKAGES = (
    "perturb_assets",
    "dagster",
    "scanpy",
    "anndata",
    "scikit-learn",
    "numpy",
    "pandas",
    "scipy",
    "torch",
    "cell-gears",
    "scgpt",
)


@functools.cache
def package_versions() -> dict[str, str]:
    """Installed versions of :data:`RECORDED_PACKAGES` (``not installed`` when absent)."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
