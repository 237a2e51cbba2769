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


def _executor() -> dg.ExecutorDefinition:
    kind = executor_kind()
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured(
            {
                "max_concurrent": compute_budget().concurrent_steps,
                # Step processes fork from a server that imported the code location once, so
                # a step starts in well under a second instead of re-importing it (~7 s).
                "start_method": {"forkserver": {"preload_modules": [__name__]}},
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
