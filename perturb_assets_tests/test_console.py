"""The console a user reads: positioned step lines, root causes, no library noise."""

from __future__ import annotations

import re
import threading
import warnings

import dagster as dg
import pytest

from perturb_assets.defs.console import StepTally, progress_console
from perturb_assets.known_warnings import KNOWN_WARNINGS, ignore_known_warnings

STEP_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] \[(\d+)/(\d+)\] (ok  |FAIL|skip) ")


@dg.asset
def upstream() -> int:
    return 1


@dg.asset
def broken(upstream: int) -> int:
    raise ValueError("expression.h5ad: field obs['condition'] is missing")


def _run_in_process(capsys) -> list[str]:
    defs = dg.Definitions(assets=[upstream, broken], loggers={"console": progress_console})
    job = defs.resolve_implicit_global_asset_job_def()
    config = {"loggers": {"console": {"config": {"total_steps": 2}}}}
    result = job.execute_in_process(run_config=config, raise_on_error=False)
    assert not result.success
    return capsys.readouterr().err.splitlines()


def test_a_failing_step_prints_its_position_and_the_root_error(capsys):
    lines = _run_in_process(capsys)
    steps = [line for line in lines if STEP_LINE.match(line)]
    assert [STEP_LINE.match(line).groups() for line in steps] == [
        ("1", "2", "ok  "),
        ("2", "2", "FAIL"),
    ]
    # The cause, not Dagster's "Error occurred while executing op" wrapper.
    assert steps[1].endswith("FAIL broken: ValueError: expression.h5ad: field obs['condition'] "
                             "is missing")  # fmt: skip
    assert not any("DagsterExecutionStepExecutionError" in line for line in lines)


def test_the_tally_counts_steps_finished_in_other_processes(tmp_path):
    path = tmp_path / "finished"
    tallies = [StepTally(path) for _ in range(4)]  # one per step process
    seen: list[int] = []
    threads = [threading.Thread(target=lambda t=t: seen.append(t.add())) for t in tallies * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 21))  # every position once


def test_known_warnings_are_ignored_and_others_stay_visible():
    import dagster as dg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_known_warnings()
        warnings.warn("Parameter `data_version` of initializer `Output.__init__` is in beta",
                      dg.BetaWarning, stacklevel=1)  # fmt: skip
        warnings.warn("Writing zarr v2 data will no longer be the default", UserWarning,
                      stacklevel=1)  # fmt: skip
        warnings.warn("something new", UserWarning, stacklevel=1)
        warnings.warn("Function `something_else` is currently in beta", dg.BetaWarning,
                      stacklevel=1)  # fmt: skip
    assert [str(w.message) for w in caught] == [
        "something new",
        "Function `something_else` is currently in beta",
    ]
    assert all(known.why for known in KNOWN_WARNINGS)


@pytest.fixture(scope="module")
def main_job_console(synthetic_run) -> list[str]:
    """``perturb-assets run main_job --partition synthetic``'s console, as a user reads it
    (the session's shared run, conftest.py)."""
    return synthetic_run.console


def test_main_job_console_has_positions_and_no_library_noise(main_job_console):
    lines = main_job_console
    steps = [STEP_LINE.match(line) for line in lines if STEP_LINE.match(line)]
    total = int(steps[0].group(2))
    assert total > 20 and [int(m.group(1)) for m in steps] == list(range(1, total + 1))
    assert lines[0] == f"[run] main_job synthetic: {total} steps"
    assert re.fullmatch(r"\[run\] main_job synthetic: done in \d+\.\d s", lines[-1])
    noise = ("Warning", "warnings.warn", "Couldn't load partition", "it/s]", "Traceback")
    assert [line for line in lines if any(n in line for n in noise)] == []
    # Every other line is an asset's own message, its step named once.
    for line in lines[1:-1]:
        if not STEP_LINE.match(line):
            assert re.match(r"^\[\d\d:\d\d:\d\d\] ( {2}\w+: |check )", line), line
            assert not re.match(r"^\[.{8}\]   (\w+): \1:", line), line
