"""The suite's own set-up under pytest-xdist (conftest.py)."""

import os

import pytest

from perturb_assets_tests.conftest import THREAD_POOLS_SET


def test_each_worker_s_thread_pools_hold_its_share_of_the_cores(request):
    workerinput = getattr(request.config, "workerinput", None)
    if workerinput is None:
        pytest.skip("runs in a pytest-xdist worker (the suite's default, -n auto)")
    from threadpoolctl import threadpool_info

    share = max(1, len(os.sched_getaffinity(0)) // int(workerinput["workercount"]))
    chosen = [v for v in os.environ[THREAD_POOLS_SET].split(",") if v]  # not the user's own
    assert all(os.environ[v] == str(share) for v in chosen)
    pools = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
    if "OPENBLAS_NUM_THREADS" in chosen:
        assert pools.get("openblas", share) == share
    if "OMP_NUM_THREADS" in chosen:
        assert pools.get("openmp", share) == share
