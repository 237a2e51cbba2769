"""``perturb-assets gc`` after a SIGKILL: the run is marked failed, the leftovers are removed,
the stored values stay readable. And ``add-dataset`` with a taken name: a message, not a
traceback."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from perturb_assets.cli import main
from perturb_assets.core.io import STAGING_PREFIX, VersionedStore

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _kill_once_started(home: Path, env: dict) -> None:
    """Start the main job in a CLI process and SIGKILL it while its run is STARTED."""
    command = [sys.executable, "-m", "perturb_assets.cli", "run", "main_job"]
    process = subprocess.Popen(
        [*command, "--partition", "synthetic"], env=env, cwd=REPO, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            assert process.poll() is None and time.time() < deadline, "the run never started"
            time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_gc_after_a_sigkill(tmp_path, monkeypatch, capsys):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERTURB_ASSETS_DATA_ROOT": str(data)}
    store = VersionedStore(data)
    store.put(store.key("assets", "kept"), pd.DataFrame({"x": [1.0]}))
    _kill_once_started(home, env)

    # What dead writers leave: a staging folder, an atomic_write temporary of a dead process.
    (data / "assets" / "kept" / f"{STAGING_PREFIX}1-dead").mkdir()
    tmp_file = data / "annotations" / f".msigdb.{_dead_pid()}-0123456789ab.tmp.parquet"
    tmp_file.parent.mkdir(parents=True, exist_ok=True)
    tmp_file.write_bytes(b"half")
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    assert main(["gc", "--older-than", "0"]) == 0
    out = capsys.readouterr().out
    assert "runs marked failed: 1" in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE
    assert not tmp_file.exists()
    assert not list(data.rglob(f"{STAGING_PREFIX}*"))
    assert store.read("assets", "kept")["x"].item() == 1.0


def test_gc_leaves_young_files_and_live_writers_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PERTURB_ASSETS_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    live = tmp_path / f".x.{os.getpid()}-0123456789ab.tmp.parquet"  # this process: alive
    live.write_bytes(b"in progress")
    assert main(["gc", "--older-than", "0"]) == 0
    assert live.exists()


def test_add_dataset_with_a_taken_name_is_a_message(tmp_path, monkeypatch, capsys):
    from perturb_assets.core.simulation import simulate_perturbseq, write_gears_dataset

    monkeypatch.setenv("PERTURB_ASSETS_DATA_ROOT", str(tmp_path / "data"))
    source = write_gears_dataset(
        simulate_perturbseq(n_cells=400, n_genes=60, n_perturbations=8), tmp_path / "sim"
    )
    assert main(["add-dataset", str(source), "--name", "mine"]) == 0
    assert main(["add-dataset", str(source), "--name", "mine"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: user dataset 'mine' already exists") and "--overwrite" in err
    assert "Traceback" not in err


def test_gc_never_deletes_the_version_the_instance_names(tmp_path):
    """A kill right after a pointer swap leaves the store ahead of the instance: the pointer
    names a version no materialisation recorded. gc keeps the one the instance names."""
    from perturb_assets.defs.resources import build_resources
    from perturb_assets.maintenance import collect, recorded_versions

    @dg.asset
    def table() -> pd.DataFrame:
        return pd.DataFrame({"x": [1.0]})

    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.materialize([table], instance=instance, resources=build_resources(tmp_path))
        named = result.asset_materializations_for_node("table")[0].metadata["stored_version"].value
        assert recorded_versions(instance) == {"assets/table": {named}}
        store = VersionedStore(tmp_path)
        key = store.key("assets", "table")
        store.put(key, pd.DataFrame({"x": [2.0]}))  # the swap of a run killed before its event
        pointer = store.current(key)
        pointer["retired"] = {named: time.time() - 7200}
        (Path(key.path) / "CURRENT.json").write_text(__import__("json").dumps(pointer))
        collect(store, tmp_path, instance, older_than_s=0)
        assert (Path(key.path) / named).is_dir()
