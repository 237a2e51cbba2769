"""The code location: everything under ``defs/`` plus the resources and executor.

Environment:
- ``PERTURB_ASSETS_DATA_ROOT``: data root (default ``./data``).
- ``PERTURB_ASSETS_EXECUTOR``: ``in_process`` (default: no per-step process start-up, which
  costs more than most steps on a laptop), ``multiprocess`` or ``k8s``.
- ``PERTURB_ASSETS_CORES`` and ``PERTURB_ASSETS_MAX_CONCURRENT``: the compute budget
  (:func:`perturb_assets.config.compute_budget`): steps side by side × threads per step never
  exceeds the cores.
"""

from __future__ import annotations

import dagster as dg

import perturb_assets.defs
from perturb_assets.config import compute_budget, executor_kind
from perturb_assets.defs.console import progress_console
from perturb_assets.defs.resources import default_resources

#: What steps import on first use: the model files' skops (which imports every scikit-learn
#: estimator, and torch), pyarrow's parquet reader, the instance's storage modules, fsspec's
#: S3 and Dagster's PostgreSQL storage where installed. Imported once by the fork server, so
#: every step process inherits them: on the services test's 49 steps, about 1 s a step. (The
#: fork server skips a module that is not installed.)
STEP_PRELOAD_MODULES = (
    __name__,
    "skops.io",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "dagster._core.storage.runs",
    "dagster._core.storage.event_log",
    "s3fs",
    "dagster_postgres",
)


def _executor() -> dg.ExecutorDefinition:
    kind = executor_kind()
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured(
            {
                "max_concurrent": compute_budget().concurrent_steps,
                # Step processes fork from a server that imported the code location once, so
                # a step starts in well under a second instead of re-importing it (~7 s).
                "start_method": {"forkserver": {"preload_modules": list(STEP_PRELOAD_MODULES)}},
            }
        )
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor


defs = dg.Definitions.merge(
    dg.load_defs(perturb_assets.defs),
    dg.Definitions(
        resources=default_resources(),
        executor=_executor(),
        # One line per finished step on the console; the UI keeps every event.
        loggers={"console": progress_console},
    ),
)
