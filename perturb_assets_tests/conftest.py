"""Shared fixtures. Tests never touch the repo's data/ or .dagster_home/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

from perturb_assets.known_warnings import filterwarnings_lines, ignore_known_warnings

REPO = Path(__file__).resolve().parents[1]

# For code run outside a test (collection, session fixtures' imports).
ignore_known_warnings()


def pytest_configure(config):
    """The known warnings as filterwarnings lines, applied inside every test, so the suite's
    summary lists only warnings nobody has judged harmless yet."""
    for line in filterwarnings_lines():
        config.addinivalue_line("filterwarnings", line)


#: The simulated dataset of the end-to-end tests: big enough for the prior-knowledge signal to
#: show, small enough for CI.
SYNTHETIC_SIM = {"n_cells": 4000, "n_genes": 300, "n_perturbations": 90, "combo_fraction": 0.3,
                 "seed": 0}  # fmt: skip
SWEEP_SIM = {"n_cells": 1500, "n_genes": 150, "n_perturbations": 40}


class SyntheticRun(NamedTuple):
    """The session's shared end-to-end run (:func:`synthetic_run`)."""

    root: Path  # the data root
    instance: object  # the dagster.DagsterInstance of the run's DAGSTER_HOME
    console: list[str]  # what `perturb-assets run main_job` printed, line by line


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> SyntheticRun:
    """``perturb-assets run main_job`` on ``SYNTHETIC_SIM`` as a user runs it (a subprocess
    on a SQLite ``DAGSTER_HOME``, its console kept), then two sweep levels, the cross-dataset
    tables and the report on the same instance, once per session. Tests read it; none may
    change it."""
    import subprocess
    import sys

    import dagster as dg
    import yaml

    import perturb_assets.defs
    from perturb_assets.defs.resources import build_resources

    base = tmp_path_factory.mktemp("synthetic_run")
    home, root = base / "home", base / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy/local/dagster.yaml").read_text())
    config = base / "synthetic.yaml"
    config.write_text(yaml.safe_dump({"ops": {"raw_dataset": {"config": SYNTHETIC_SIM}}}))
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERTURB_ASSETS_DATA_ROOT": str(root)}
    command = [sys.executable, "-m", "perturb_assets.cli", "run", "main_job", "--partition",
               "synthetic", "--config", str(config)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    defs = dg.Definitions.merge(
        dg.load_defs(perturb_assets.defs), dg.Definitions(resources=build_resources(root))
    )
    instance = dg.DagsterInstance.from_config(str(home))
    sweep = defs.resolve_job_def("diversity_sweep_job")
    for level in ("0.00", "1.00"):
        config = {"ops": {"diversity_sweep": {"config": SWEEP_SIM}}}
        assert sweep.execute_in_process(
            partition_key=level, instance=instance, run_config=config
        ).success
    summary = defs.resolve_job_def("benchmark_summary_job").execute_in_process(instance=instance)
    assert summary.success
    return SyntheticRun(root, instance, (done.stdout + done.stderr).splitlines())


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("data_root")
    monkeypatch.setenv("PERTURB_ASSETS_DATA_ROOT", str(root))
    yield root


#: Test modules that share a session fixture: one xdist worker runs each group, so the fixture
#: is materialised once.
SHARED_FIXTURE_GROUPS = {
    "test_analyses_assets": "synthetic_run",
    "test_benchmark_assets": "synthetic_run",
    "test_console": "synthetic_run",
}
#: The slowest modules (``--durations`` on the 2-core machine), started first so that no
#: worker is left with a long module at the end while the other idles.
SLOWEST_FIRST = (
    "test_services_integration",
    "test_foundation_assets",
    "synthetic_run",
    "test_automation",
    "test_foundation_core",
    "test_lineage",
    "test_run_command",
    "test_ui_browser",
    "test_store_concurrency",
    "test_store",
    "test_simulate",
    "test_models",
    "test_docs",
    "test_reproducibility",
)


def _group(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem
    return SHARED_FIXTURE_GROUPS.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist, each module (or group of modules sharing a session fixture) runs on
    one worker, so its fixtures run once; work goes out in collection order (slowest first).
    Grouped here rather than with ``xdist_group`` marks, which xdist 3.8 cannot apply under
    pytest 9 (it sets a node id attribute pytest no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ModuleGroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The slowest modules first (see ``SLOWEST_FIRST``); GPU tests skipped without a GPU."""
    rank = {group: position for position, group in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable: file order kept
    _skip_gpu_tests(items)


def _skip_gpu_tests(items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run through the device machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
