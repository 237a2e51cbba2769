"""The code location: everything under ``defs/`` plus the resources and executor.

Environment:
- ``PERTURB_ASSETS_DATA_ROOT``: data root (default ``./data``).
- ``PERTURB_ASSETS_EXECUTOR``: ``in_process`` (default: no per-step process start-up, which
  costs more than most steps on a laptop), ``multiprocess`` or ``k8s``.
"""

from __future__ import annotations

import os

import dagster as dg

import perturb_assets.defs
from perturb_assets.defs.console import progress_console
from perturb_assets.defs.resources import default_resources


def _executor() -> dg.ExecutorDefinition:
    kind = os.environ.get("PERTURB_ASSETS_EXECUTOR", "in_process")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": 2})
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"PERTURB_ASSETS_EXECUTOR={kind!r}; use 'in_process', 'multiprocess' or 'k8s'")


defs = dg.Definitions.merge(
    dg.load_defs(perturb_assets.defs),
    dg.Definitions(
        resources=default_resources(),
        executor=_executor(),
        # One line per finished step on the console; the UI keeps every event.
        loggers={"console": progress_console},
    ),
)
