"""``perturb-assets gc``: what killed runs leave behind, cleaned up.

A run killed mid-way (SIGKILL, out of memory, a closed laptop) leaves three things:

- **staging folders, pointer temporaries, retired and unreferenced versions** in the store,
  and scratch folders of dead processes (:func:`perturb_assets.core.io.collect_garbage`):
  never read, since readers follow the ``CURRENT.json`` pointer, but they take space (a
  Random Forest's model is 100+ MB). A version the instance's latest materialisation names is
  kept whatever its age (:func:`recorded_versions`);
- **temporary files** of :func:`perturb_assets.core.io.atomic_write`
  (``.<name>.<pid>-<tag>.tmp<suffix>``, e.g. the MSigDB cache) in the data root;
- **runs shown as STARTED forever** in the instance. On Kubernetes, run monitoring
  (``deploy/dagster.yaml``) marks them failed. On one machine, Dagster's default launcher cannot
  tell a dead run from a slow one, so ``gc`` marks a STARTED run failed when the process that
  started it is gone from this machine.

Everything younger than ``older_than_s`` is left alone, so ``gc`` is safe next to live runs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from perturb_assets.core.io import VersionedStore, collect_garbage, pid_alive

#: ``atomic_write``'s temporary names: ``.<stem>.<pid>-<12 hex>.tmp<suffix>``.
_ATOMIC_TMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]{12}\.tmp")


@dataclass
class Collected:
    """What :func:`collect` removed or marked."""

    store_entries: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)


def stale_temp_files(data_root: Path, older_than_s: float) -> list[Path]:
    """``atomic_write`` temporaries under ``data_root`` whose writer is gone, or that are old."""
    now, stale = time.time(), []
    for path in data_root.rglob(".*.tmp*"):
        match = _ATOMIC_TMP.match(path.name)
        if match and path.is_file() and now - path.stat().st_mtime > older_than_s:
            if not pid_alive(int(match.group(1))) or now - path.stat().st_mtime > 86400:
                stale.append(path)
    return stale


def dead_runs(instance: dg.DagsterInstance, older_than_s: float) -> list[dg.DagsterRun]:
    """STARTED runs of this machine whose process is gone (their RUN_START event's pid).

    Only for instances whose runs start on this machine (Dagster's default launcher): the pid
    of a run pod means nothing here, and run monitoring covers Kubernetes.
    """
    from dagster._core.launcher import DefaultRunLauncher

    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    now, dead = time.time(), []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if record.start_time is None or now - record.start_time < older_than_s:
            continue
        starts = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_START
        ).records
        pid = starts[0].event_log_entry.dagster_event.pid if starts else None
        if pid is not None and not pid_alive(pid):
            dead.append(record.dagster_run)
    return dead


def recorded_versions(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """``{store key: versions}`` the latest materialisation of every asset partition names:
    its stored value (``stored_version``) and its model file (``model_key``, ``model_version``).

    ``gc`` keeps these whatever their age, so it never deletes a version the instance names,
    even after a kill that left the pointer and the instance disagreeing.
    """
    keep: dict[str, set[str]] = {}
    for asset_key in instance.get_asset_keys():
        seen: set[str | None] = set()
        cursor = None
        while True:
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key), limit=500, cursor=cursor
            )
            for record in page.records:
                materialization = record.asset_materialization
                if materialization is None or materialization.partition in seen:
                    continue
                seen.add(materialization.partition)
                _keep_named_versions(keep, asset_key, materialization)
            if not page.has_more:
                break
            cursor = page.cursor
    return keep


def _keep_named_versions(
    keep: dict[str, set[str]], asset_key: dg.AssetKey, materialization: dg.AssetMaterialization
) -> None:
    metadata = materialization.metadata
    stored = metadata.get("stored_version")
    if stored is not None:
        parts = ["assets", *asset_key.path]
        if materialization.partition is not None:
            parts.append(materialization.partition)
        keep.setdefault("/".join(parts), set()).add(str(stored.value))
    model_key, model_version = metadata.get("model_key"), metadata.get("model_version")
    if model_key is not None and model_version is not None:
        keep.setdefault(str(model_key.value), set()).add(str(model_version.value))


def collect(
    store: VersionedStore,
    data_root: Path,
    instance: dg.DagsterInstance | None,
    older_than_s: float = 3600.0,
) -> Collected:
    """Remove what dead writers left and mark dead runs failed (see the module docstring)."""
    protect = recorded_versions(instance) if instance is not None else {}
    done = Collected(store_entries=collect_garbage(store, older_than_s, protect))
    for path in stale_temp_files(data_root, older_than_s):
        path.unlink(missing_ok=True)
        done.temp_files.append(str(path))
    for run in dead_runs(instance, older_than_s) if instance is not None else []:
        instance.report_run_failed(run, "perturb-assets gc: the process of this run is gone")
        done.failed_runs.append(run.run_id)
    return done
