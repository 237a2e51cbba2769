"""The compute resource: how many threads one step may use."""

from __future__ import annotations

import dagster as dg


class Compute(dg.ConfigurableResource):
    """The threads one step may use (:class:`perturb_assets.config.ComputeBudget`).

    Attributes
    ----------
    jobs_per_step
        ``n_jobs`` of random forests and kNN.
    limit_blas
        Also cap BLAS / OpenMP threads in the step's process at ``jobs_per_step`` (when steps
        run side by side; alone, a step's BLAS may use every core).
    """

    jobs_per_step: int = 1
    limit_blas: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.limit_blas:
            from threadpoolctl import threadpool_limits

            # Process-wide and kept for the step's lifetime (the step owns its process).
            self._blas_limit = threadpool_limits(self.jobs_per_step)
