"""``perturb-assets gc``: what killed runs leave behind, cleaned up.

A run killed mid-way (SIGKILL, out of memory, a closed laptop) leaves three things:

- **staging folders and superseded versions** in the store
  (:func:`perturb_assets.core.io.collect_garbage`): never read, since readers follow the
  ``CURRENT.json`` pointer, but they take space (a Random Forest's model is 100+ MB);
- **temporary files** of :func:`perturb_assets.core.io.atomic_write`
  (``.<name>.<pid>-<tag>.tmp<suffix>``, e.g. the MSigDB cache) in the data root;
- **runs shown as STARTED forever** in the instance. On Kubernetes, run monitoring
  (``deploy/dagster.yaml``) marks them failed. On one machine, Dagster's default launcher cannot
  tell a dead run from a slow one, so ``gc`` marks a STARTED run failed when the process that
  started it is gone from this machine.

Everything younger than ``older_than_s`` is left alone, so ``gc`` is safe next to live runs.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from perturb_assets.core.io import VersionedStore, collect_garbage

#: ``atomic_write``'s temporary names: ``.<stem>.<pid>-<12 hex>.tmp<suffix>``.
_ATOMIC_TMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]{12}\.tmp")


@dataclass
class Collected:
    """What :func:`collect` removed or marked."""

    store_entries: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


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


def collect(
    store: VersionedStore,
    data_root: Path,
    instance: dg.DagsterInstance | None,
    older_than_s: float = 3600.0,
) -> Collected:
    """Remove what dead writers left and mark dead runs failed (see the module docstring)."""
    done = Collected(store_entries=collect_garbage(store, older_than_s))
    for path in stale_temp_files(data_root, older_than_s):
        path.unlink(missing_ok=True)
        done.temp_files.append(str(path))
    for run in dead_runs(instance, older_than_s) if instance is not None else []:
        instance.report_run_failed(run, "perturb-assets gc: the process of this run is gone")
        done.failed_runs.append(run.run_id)
    return done
