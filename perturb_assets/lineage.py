"""Lineage audit: explain a materialisation back to its input files and check it is current.

:func:`audit` starts at the latest materialisation of one asset partition and walks every
upstream (asset, partition) it was computed from, down to the dataset file (``raw_dataset``'s
``sha256``) and the observed source files. For each node it collects what Dagster recorded: run,
time, code version, data version, the data version of every input it consumed, and the
``environment`` metadata (package versions) where the IO manager wrote it.

Verification: an input is current when the data version the child recorded for it equals what
Dagster would record if the child ran now, computed from the parent's latest records *in the
partitions the child maps to*. Dagster's input event pointer names the parent's latest record in
*any* partition, so it is shown but never trusted. How Dagster 1.13 records an input
(``dagster/_core/execution/context/data_version_cache.py``):

- unpartitioned parent (an observed file, an unpartitioned asset): its latest data version;
- partitioned parent: sha256 of the concatenated latest data versions of the mapped parent
  partitions that have a materialisation, in partition-key order (one partition for the
  identity mapping, every partition for a fan-in), or, from
  :data:`PARTITION_HASH_LIMIT` partitions on, the parent's latest data version in any partition.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg

from perturb_assets.config import package_versions

if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
    from dagster._core.event_api import EventLogRecord

#: Tags Dagster writes on a materialisation of an asset (``dagster/_core/definitions/
#: data_version.py``); the input tags end with the parent's key, e.g. ``.../raw_dataset``.
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
INPUT_DATA_VERSION_TAG_PREFIX = "dagster/input_data_version/"
INPUT_EVENT_POINTER_TAG_PREFIX = "dagster/input_event_pointer/"
#: Metadata entries: raw_dataset's file checksum and the IO manager's package versions.
FILE_SHA256_METADATA = "sha256"
ENVIRONMENT_METADATA = "environment"
#: Dagster's SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD: from this many mapped parent
#: partitions on, it records the parent's latest data version instead of the per-partition hash.
PARTITION_HASH_LIMIT = 100

Status = Literal["ok", "absent", "stale", "missing", "unrecorded"]
#: Statuses that verify: current, or absent when the child ran and still absent.
CURRENT: tuple[Status, ...] = ("ok", "absent")
EventKind = Literal["materialization", "observation", "missing"]


class LineageError(ValueError):
    """The asset or partition is unknown, or it has no materialisation to audit."""


@dataclasses.dataclass(frozen=True)
class ParentVersion:
    """One parent partition behind an input: the data version the child read and today's.

    ``consumed`` is the parent's latest record before the child's materialisation (``None``
    when there was none); ``current`` its latest record now.
    """

    partition: str | None
    consumed: str | None
    current: str | None


@dataclasses.dataclass(frozen=True)
class InputCheck:
    """One input of a node, checked against its parent's latest records.

    Attributes
    ----------
    asset
        The parent asset key.
    partitions
        The parent partitions the child's partition maps to (``None`` for an unpartitioned
        parent).
    recorded_version
        ``dagster/input_data_version/<parent>`` of the child's materialisation.
    expected_version
        What Dagster would record now, from the parent's latest records.
    event_pointer, pointer_partition
        ``dagster/input_event_pointer/<parent>`` (a storage id) and the partition of the
        record it names, which may be another partition than the mapped one.
    parents
        Consumed and current data version of each mapped parent partition that has a record.
    status
        ``ok``, ``absent`` (no record when the child ran and none now: an optional input such
        as a foundation model not trained, or a source file never observed; nothing changed,
        so it verifies), ``stale`` (the parent changed since), ``missing`` (the child consumed
        a record that is gone, or never had one of a required parent) or ``unrecorded`` (the
        child's record has no input data version for it).
    """

    asset: str
    partitions: tuple[str | None, ...]
    recorded_version: str | None
    expected_version: str | None
    event_pointer: int | None
    pointer_partition: str | None
    parents: tuple[ParentVersion, ...]
    status: Status


@dataclasses.dataclass(frozen=True)
class LineageNode:
    """The latest record of one (asset, partition) in the chain, with its checked inputs.

    ``event`` is ``materialization``, ``observation`` (an observed source file, whose data
    version is the file checksum) or ``missing`` (no record: every other field but the key is
    empty). ``file_sha256`` is the ``sha256`` metadata entry (raw_dataset's dataset file).
    """

    asset: str
    partition: str | None
    event: EventKind
    storage_id: int | None = None
    run_id: str | None = None
    timestamp: str | None = None
    code_version: str | None = None
    current_code_version: str | None = None
    data_version: str | None = None
    file_sha256: str | None = None
    environment: str | None = None
    inputs: tuple[InputCheck, ...] = ()

    @property
    def label(self) -> str:
        return _label(self.asset, self.partition)

    @property
    def status(self) -> Status:
        """``missing`` without a record, else the first input that is not ``ok``, else ok."""
        if self.event == "missing":
            return "missing"
        return next((i.status for i in self.inputs if i.status not in CURRENT), "ok")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}


@dataclasses.dataclass(frozen=True)
class LineageReport:
    """The audit of ``asset[partition]``: every upstream node, root first."""

    asset: str
    partition: str | None
    nodes: tuple[LineageNode, ...]
    current_environment: dict[str, str]

    @property
    def verified(self) -> bool:
        """True when every node has a record and every input is current."""
        return all(node.status == "ok" for node in self.nodes)

    def problems(self) -> list[str]:
        """One line per input that is not current, naming child, parent and versions."""
        return [
            f"{node.label} <- {_input_label(check)}: {check.status}: {_explain(check)}"
            for node, check in self.failed_inputs()
        ]

    def failed_inputs(self) -> list[tuple[LineageNode, InputCheck]]:
        """Every (child node, input) whose input is not ``ok``."""
        return [(n, check) for n in self.nodes for check in n.inputs if check.status not in CURRENT]

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition,
            "verified": self.verified,
            "problems": self.problems(),
            "nodes": [node.to_dict() for node in self.nodes],
            "current_environment": self.current_environment,
        }


def audit(
    instance: dg.DagsterInstance,
    asset_graph: BaseAssetGraph,
    asset_key: dg.AssetKey | str,
    partition: str | None = None,
) -> LineageReport:
    """Audit the latest materialisation of ``asset_key`` in ``partition`` and its whole chain.

    Parameters
    ----------
    instance
        The instance whose event log holds the records (SQLite or PostgreSQL).
    asset_graph
        ``defs.resolve_asset_graph()``: the dependencies and partition mappings.
    asset_key
        The asset to explain, as a key or a user string such as ``"metrics"``.
    partition
        Its partition key; ``None`` for an unpartitioned asset.

    Returns
    -------
    LineageReport
        Every upstream (asset, partition) node, root first, with verified inputs.

    Raises
    ------
    LineageError
        When the asset or partition is unknown, or the partition has no materialisation.
    """
    key = dg.AssetKey.from_user_string(asset_key) if isinstance(asset_key, str) else asset_key
    # Dynamic partitions (and fan-in mappings over them) resolve against this instance.
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        _check_target(instance, asset_graph, key, partition)
        records = _Records(instance)
        if records.latest(key, partition) is None:
            raise LineageError(
                f"{_label(key.to_user_string(), partition)} has no materialisation in this "
                "instance (check $DAGSTER_HOME, or materialise it first)"
            )
        nodes = _walk(records, asset_graph, key, partition)
    return LineageReport(key.to_user_string(), partition, tuple(nodes), current_environment())


def current_environment() -> dict[str, str]:
    """Installed versions of the recorded packages (``not installed`` when absent)."""
    return dict(package_versions())


def _check_target(
    instance: dg.DagsterInstance, graph: BaseAssetGraph, key: dg.AssetKey, partition: str | None
) -> None:
    name = key.to_user_string()
    if not graph.has(key):
        raise LineageError(f"unknown asset {name!r}: not in the code location's asset graph")
    partitions_def = graph.get(key).partitions_def
    if partitions_def is None and partition is not None:
        raise LineageError(f"asset {name!r} is not partitioned; leave out the partition")
    if partitions_def is not None and partition is None:
        raise LineageError(f"asset {name!r} is partitioned; name a partition")
    if partitions_def is not None and not partitions_def.has_partition_key(
        partition, dynamic_partitions_store=instance
    ):
        raise LineageError(f"asset {name!r} has no partition {partition!r}")


class _Records:
    """Latest event records, cached: a node's parents are shared by many children."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance
        self._cache: dict[tuple[dg.AssetKey, str | None, int | None], EventLogRecord | None] = {}

    def latest(
        self, key: dg.AssetKey, partition: str | None, before: int | None = None
    ) -> EventLogRecord | None:
        """The latest record of ``key`` in ``partition`` (``None``: any partition), optionally
        the latest one stored before the storage id ``before``."""
        cache_key = (key, partition, before)
        if cache_key not in self._cache:
            partitions = None if partition is None else [partition]
            self._cache[cache_key] = self._fetch(
                dg.AssetRecordsFilter(key, asset_partitions=partitions, before_storage_id=before)
            )
        return self._cache[cache_key]

    def at(self, key: dg.AssetKey, storage_id: int) -> EventLogRecord | None:
        """The record of ``key`` with this storage id (what an input event pointer names)."""
        return self._fetch(dg.AssetRecordsFilter(key, storage_ids=[storage_id]))

    def _fetch(self, records_filter: dg.AssetRecordsFilter) -> EventLogRecord | None:
        # As Dagster does for input data versions: a materialisation first, else an observation.
        for fetch in (self._instance.fetch_materializations, self._instance.fetch_observations):
            found = fetch(records_filter, limit=1).records
            if found:
                return found[0]
        return None


def _walk(
    records: _Records, graph: BaseAssetGraph, key: dg.AssetKey, partition: str | None
) -> list[LineageNode]:
    """Breadth first from the root, each (asset, partition) once."""
    queue = deque([(key, partition)])
    seen = {(key, partition)}
    nodes = []
    while queue:
        node = _audit_node(records, graph, *queue.popleft())
        nodes.append(node)
        for check in node.inputs:
            parent_key = dg.AssetKey.from_user_string(check.asset)
            for parent in check.parents:
                if (parent_key, parent.partition) not in seen:
                    seen.add((parent_key, parent.partition))
                    queue.append((parent_key, parent.partition))
    return nodes


def _audit_node(
    records: _Records, graph: BaseAssetGraph, key: dg.AssetKey, partition: str | None
) -> LineageNode:
    record = records.latest(key, partition)
    if record is None:
        return LineageNode(key.to_user_string(), partition, "missing")
    event = record.asset_materialization or record.asset_observation
    assert event is not None  # fetch_materializations / fetch_observations return those only
    tags, entries = event.tags or {}, event.metadata
    inputs = tuple(
        _check_input(records, graph, record, key, partition, parent)
        for parent in sorted(graph.get(key).parent_keys, key=lambda k: k.to_user_string())
    )
    return LineageNode(
        asset=key.to_user_string(),
        partition=partition,
        event="materialization" if record.asset_materialization else "observation",
        storage_id=record.storage_id,
        run_id=record.run_id or None,  # a runless observation has an empty run id
        timestamp=datetime.fromtimestamp(record.timestamp, tz=UTC).isoformat(timespec="seconds"),
        code_version=tags.get(CODE_VERSION_TAG),
        current_code_version=graph.get(key).code_version,
        data_version=tags.get(DATA_VERSION_TAG),
        file_sha256=_text(entries.get(FILE_SHA256_METADATA)),
        environment=_text(entries.get(ENVIRONMENT_METADATA)),
        inputs=inputs,
    )


def _check_input(
    records: _Records,
    graph: BaseAssetGraph,
    record: EventLogRecord,
    child: dg.AssetKey,
    child_partition: str | None,
    parent: dg.AssetKey,
) -> InputCheck:
    """The child's recorded input version for ``parent`` against the parent's latest records."""
    name = parent.to_user_string()
    event = record.asset_materialization or record.asset_observation
    tags = (event.tags if event else None) or {}
    partitions = _mapped_partitions(graph, child, child_partition, parent)
    versions = [
        ParentVersion(
            p,
            consumed=_data_version(records.latest(parent, p, before=record.storage_id)),
            current=_data_version(records.latest(parent, p)),
        )
        for p in partitions
    ]
    # Partitions without a record then or now were not read (a fan-in reads what exists, an
    # optional input may be absent): no node for them.
    versions = [v for v in versions if v.consumed is not None or v.current is not None]
    pointer = _storage_id(tags.get(INPUT_EVENT_POINTER_TAG_PREFIX + name))
    pointed = records.at(parent, pointer) if pointer is not None else None
    expected = _expected_version(records, graph, parent, partitions, versions)
    recorded = tags.get(INPUT_DATA_VERSION_TAG_PREFIX + name)
    return InputCheck(
        asset=name,
        partitions=tuple(partitions),
        recorded_version=recorded,
        expected_version=expected,
        event_pointer=pointer,
        pointer_partition=pointed.partition_key if pointed else None,
        parents=tuple(versions),
        status=_status(recorded, expected, versions),
    )


def _mapped_partitions(
    graph: BaseAssetGraph, child: dg.AssetKey, child_partition: str | None, parent: dg.AssetKey
) -> list[str | None]:
    """The parent partitions the child's partition reads, through the graph's mapping."""
    if graph.get(parent).partitions_def is None:
        return [None]
    upstream = graph.get_parent_partition_keys_for_child(child_partition, parent, child)
    return sorted(upstream.partitions_subset.get_partition_keys())


def _expected_version(
    records: _Records,
    graph: BaseAssetGraph,
    parent: dg.AssetKey,
    partitions: Sequence[str | None],
    versions: Iterable[ParentVersion],
) -> str | None:
    """What Dagster records as the input data version if the child ran now (module docstring)."""
    if graph.get(parent).partitions_def is None:
        return next((v.current for v in versions), None)
    if len(partitions) >= PARTITION_HASH_LIMIT:
        return _data_version(records.latest(parent, None))
    joined = "".join(v.current for v in versions if v.current is not None)  # key order
    return hashlib.sha256(joined.encode("utf8")).hexdigest()


def _status(
    recorded: str | None, expected: str | None, versions: Sequence[ParentVersion]
) -> Status:
    if not versions:
        return "absent"
    if all(v.current is None for v in versions):
        return "missing"
    if recorded is None:
        return "unrecorded"
    return "ok" if recorded == expected else "stale"


def _data_version(record: EventLogRecord | None) -> str | None:
    if record is None:
        return None
    event = record.asset_materialization or record.asset_observation
    return (event.tags or {}).get(DATA_VERSION_TAG) if event else None


def _storage_id(tag: str | None) -> int | None:
    # Dagster writes "NULL" when the parent had no record (a never-observed source file).
    return int(tag) if tag and tag.isdigit() else None


def _text(entry: dg.MetadataValue | None) -> str | None:
    return None if entry is None else str(entry.value)


def _label(asset: str, partition: str | None) -> str:
    return asset if partition is None else f"{asset}[{partition}]"


def _input_label(check: InputCheck) -> str:
    if len(check.partitions) == 1:
        return _label(check.asset, check.partitions[0])
    return f"{check.asset}[{len(check.parents)} of {len(check.partitions)} partitions]"


def _short(version: str | None, width: int = 12) -> str:
    return "-" if version is None else version[:width]


def _explain(check: InputCheck) -> str:
    """Why an input is not current: the consumed and current versions, or what is absent."""
    if check.status == "absent":
        return (
            "no record when the child ran and none now (an optional input not materialised, "
            "or a source file never observed)"
        )
    if check.status == "missing":
        return "the parent was never materialised (or observed)"
    if check.status == "unrecorded":
        return "the child's materialisation recorded no data version for it"
    changed = [v for v in check.parents if v.consumed != v.current]
    if not changed:  # e.g. the records the child read were since deleted
        return (
            f"recorded input version {_short(check.recorded_version)}, "
            f"now {_short(check.expected_version)}"
        )
    return "; ".join(
        f"{_label(check.asset, v.partition)} consumed {_short(v.consumed)}, now {_short(v.current)}"
        for v in changed
    )


def format_report(report: LineageReport) -> str:
    """The report as text: one block per node, root first, then the verdict line."""
    lines = [f"Lineage of {_label(report.asset, report.partition)}: {len(report.nodes)} nodes"]
    for node in report.nodes:
        lines += ["", *_format_node(node)]
    if any(node.environment is None and node.event != "missing" for node in report.nodes):
        env = ", ".join(f"{k} {v}" for k, v in report.current_environment.items())
        lines += ["", f"current environment (not recorded by every node): {env}"]
    lines += ["", _verdict(report)]
    return "\n".join(lines)


_MARKS: dict[Status, str] = {
    "ok": "✓",
    "absent": "· absent",
    "stale": "✗ STALE",
    "missing": "✗ MISSING",
    "unrecorded": "? UNRECORDED",
}


def _format_node(node: LineageNode) -> list[str]:
    if node.event == "missing":
        return [f"{node.label}  ✗ MISSING: never materialised"]
    code = node.code_version or "-"
    if node.current_code_version and node.code_version != node.current_code_version:
        code += f" (definition now {node.current_code_version})"
    lines = [
        f"{node.label}  ({node.event})",
        f"  run            {node.run_id or '-'}  at {node.timestamp}",
        f"  code version   {code}",
    ]
    if node.event == "observation":
        lines.append(f"  observed file checksum  {node.data_version or '-'}")
    else:
        lines.append(f"  data version   {node.data_version or '-'}")
    if node.file_sha256:
        lines.append(f"  file sha256    {node.file_sha256}")
    if node.inputs:
        lines.append("  inputs")
        lines += [f"    {_format_input(check)}" for check in node.inputs]
    lines.append(f"  environment    {node.environment or 'not recorded'}")
    return lines


def _format_input(check: InputCheck) -> str:
    label = f"{_MARKS[check.status]} {_input_label(check)}"
    if check.status != "ok":
        return f"{label}: {_explain(check)}"
    single = check.parents[0].consumed if len(check.parents) == 1 else None
    version = _short(single or check.recorded_version)
    pointer = ""
    if check.event_pointer is not None:
        pointer = f"  (event pointer #{check.event_pointer}"
        pointer += f" -> {_label(check.asset, check.pointer_partition)})"
    return f"{label}  {version}{pointer}"


def _verdict(report: LineageReport) -> str:
    failed = report.failed_inputs()
    if not failed:
        n_inputs = sum(len(node.inputs) for node in report.nodes)
        return (
            f"Verdict: OK: {len(report.nodes)} nodes, {n_inputs} inputs, every input is the "
            "parent's latest data version"
        )
    counts = ", ".join(
        f"{sum(check.status == s for _, check in failed)} {s}"
        for s in ("stale", "missing", "unrecorded")
    )
    return "\n".join([f"Verdict: NOT VERIFIED: {counts}", *(f"  {p}" for p in report.problems())])
