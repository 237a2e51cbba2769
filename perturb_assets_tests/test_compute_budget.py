"""The compute budget: steps side by side × threads per step never exceeds the cores."""

import pytest

from perturb_assets import config
from perturb_assets.config import ComputeBudget, compute_budget
from perturb_assets.defs.resources import build_resources


@pytest.fixture
def env(monkeypatch):
    # The budget is computed as on an 8-core machine, whatever this one has.
    monkeypatch.setattr(config, "available_cores", lambda: 8)
    for name in (
        "PERTURB_ASSETS_EXECUTOR",
        "PERTURB_ASSETS_CORES",
        "PERTURB_ASSETS_MAX_CONCURRENT",
    ):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"PERTURB_ASSETS_{name.upper()}", value)

    return set_env


def test_in_process_one_step_gets_every_core(env):
    env(cores="6")
    assert compute_budget() == ComputeBudget(cores=6, concurrent_steps=1)
    assert compute_budget().jobs_per_step == 6


@pytest.mark.parametrize(
    ("cores", "concurrent", "jobs"), [("2", None, 1), ("8", "2", 4), ("8", "3", 2), ("3", "3", 1)]
)
def test_multiprocess_shares_the_cores_between_steps(env, cores, concurrent, jobs):
    env(
        executor="multiprocess",
        cores=cores,
        **({"max_concurrent": concurrent} if concurrent else {}),
    )
    budget = compute_budget()
    assert budget.jobs_per_step == jobs
    assert budget.jobs_per_step * budget.concurrent_steps <= budget.cores


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cores": "two"}, "PERTURB_ASSETS_CORES='two': expected a positive integer"),
        ({"cores": "0"}, "PERTURB_ASSETS_CORES='0'"),
        ({"executor": "multiprocess", "cores": "2", "max_concurrent": "4"}, "exceeds"),
        ({"max_concurrent": "2"}, "needs PERTURB_ASSETS_EXECUTOR=multiprocess"),
        ({"executor": "threads"}, "PERTURB_ASSETS_EXECUTOR='threads'; use one of"),
        ({"cores": "64"}, "PERTURB_ASSETS_CORES=64 exceeds the 8 cores this machine gives"),
    ],
)
def test_bad_settings_name_the_variable(env, values, message):
    env(**values)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        compute_budget()


def test_resources_carry_the_budget_and_cap_blas_only_when_steps_share_cores(tmp_path):
    alone = build_resources(tmp_path, budget=ComputeBudget(cores=4, concurrent_steps=1))["compute"]
    shared = build_resources(tmp_path, budget=ComputeBudget(cores=4, concurrent_steps=2))["compute"]
    assert (alone.jobs_per_step, alone.limit_blas) == (4, False)
    assert (shared.jobs_per_step, shared.limit_blas) == (2, True)
