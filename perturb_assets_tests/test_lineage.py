"""The lineage audit explains a materialisation back to the dataset file and flags stale edges.

Two dataset partitions are materialised into one persistent instance (SQLite in a temp dir;
PostgreSQL too when ``PERTURB_ASSETS_TEST_PG_URL`` names a throwaway database).
"""

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions import data_version as dagster_data_version

import perturb_assets.defs
from perturb_assets import lineage
from perturb_assets.cli import main as cli_main
from perturb_assets.config import RECORDED_PACKAGES
from perturb_assets.definitions import defs
from perturb_assets.defs.partitions import register_datasets
from perturb_assets.defs.resources import build_resources
from perturb_assets.lineage import InputCheck, LineageNode, LineageReport, audit, format_report

A, B = "synthetic", "adamson_like"  # two simulated partitions; A is the one changed
SMALL = {"n_cells": 2500, "n_genes": 200, "n_perturbations": 40}
CHAIN = ["raw_dataset", "expression", "pseudobulk", "perturbation_split", "train_mean_predictions"]
ASSETS = list(dg.load_defs(perturb_assets.defs).assets)
GRAPH = defs.resolve_asset_graph()
PG_URL_ENV = "PERTURB_ASSETS_TEST_PG_URL"


@dataclasses.dataclass
class Deployment:
    """A populated instance: its DAGSTER_HOME, data root and the run id of each step."""

    instance: dg.DagsterInstance
    home: Path
    data: Path
    runs: dict[str, str]


def _materialize(
    instance: dg.DagsterInstance, data: Path, selection: list[str], partition: str, **config: int
) -> str:
    raw_config = {"raw_dataset": {"config": {**SMALL, **config}}}
    result = dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        resources=build_resources(data),
        instance=instance,
        run_config={"ops": raw_config if "raw_dataset" in selection else {}},
    )
    assert result.success
    return result.run_id


def _populate(instance: dg.DagsterInstance, home: Path, data: Path) -> Deployment:
    """Both chains, then pseudobulk[A] again: its input event pointer for expression now names
    expression[B]'s record (the latest of any partition), while its data is unchanged."""
    register_datasets(instance, [A, B])
    runs = {p: _materialize(instance, data, CHAIN, p) for p in (A, B)}
    runs["pseudobulk_again"] = _materialize(instance, data, ["pseudobulk"], A)
    return Deployment(instance, home, data, runs)


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield _populate(instance, home, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> Iterator[Deployment]:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"set {PG_URL_ENV} (a postgresql+psycopg2:// URL) to audit a PostgreSQL one")
    home = tmp_path_factory.mktemp("dagster_home_pg")
    # Runs, events and schedules in PostgreSQL (dagster_postgres's storages).
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {url!r}\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        yield _populate(instance, home, tmp_path_factory.mktemp("data_pg"))


@pytest.fixture(scope="module")
def stale(sqlite, tmp_path_factory) -> Iterator[Deployment]:
    """A copy of the SQLite deployment whose raw_dataset[A] was re-simulated (another seed)."""
    home = tmp_path_factory.mktemp("stale") / "home"
    shutil.copytree(sqlite.home, home)
    data = tmp_path_factory.mktemp("stale_data")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = _materialize(instance, data, ["raw_dataset"], A, seed=12345)
        yield Deployment(instance, home, data, {**sqlite.runs, "raw_again": run})


def _by_asset(report: LineageReport) -> dict[str, LineageNode]:
    return {node.asset: node for node in report.nodes}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_audit_explains_a_prediction_back_to_the_dataset_file(request, backend):
    deployment: Deployment = request.getfixturevalue(backend)
    report = audit(deployment.instance, GRAPH, "train_mean_predictions", A)
    assert report.verified, report.problems()
    nodes = _by_asset(report)
    assert report.nodes[0].asset == "train_mean_predictions" and set(nodes) == set(CHAIN)
    assert {node.partition for node in report.nodes} == {A}
    # Explained back to the file: raw_dataset's checksum is the file's, and what expression read.
    dataset_file = deployment.data / "gears" / A / "perturb_processed.h5ad"
    file_sha = hashlib.sha256(dataset_file.read_bytes()).hexdigest()
    raw = nodes["raw_dataset"]
    assert raw.file_sha256 == raw.data_version == file_sha
    [raw_input] = nodes["expression"].inputs
    assert raw_input.asset == "raw_dataset" and raw_input.parents[0].consumed == file_sha
    # Dagster records a partitioned input as sha256 of the mapped partitions' versions.
    assert raw_input.recorded_version == hashlib.sha256(file_sha.encode()).hexdigest()
    for node in report.nodes:
        assert node.event == "materialization"
        assert node.code_version == GRAPH.get(dg.AssetKey(node.asset)).code_version
        assert node.environment is None or f"dagster {dg.__version__}" in node.environment
    assert nodes["pseudobulk"].run_id == deployment.runs["pseudobulk_again"]
    assert {nodes[a].run_id for a in set(CHAIN) - {"pseudobulk"}} == {deployment.runs[A]}
    # The pointer names another partition's record: shown, not trusted; the edge is current.
    [expression_input] = nodes["pseudobulk"].inputs
    assert (expression_input.pointer_partition, expression_input.status) == (B, "ok")
    assert report.current_environment["dagster"] == dg.__version__


def test_a_re_materialised_parent_is_stale_in_its_partition_only(sqlite, stale):
    before = _by_asset(audit(sqlite.instance, GRAPH, "pseudobulk", A))["raw_dataset"]
    report = audit(stale.instance, GRAPH, "pseudobulk", A)
    now = _by_asset(report)["raw_dataset"]
    assert now.run_id == stale.runs["raw_again"] and now.data_version != before.data_version
    assert not report.verified
    [(child, check)] = report.failed_inputs()
    assert (child.label, check.asset, check.status) == (f"expression[{A}]", "raw_dataset", "stale")
    [version] = check.parents
    assert (version.consumed, version.current) == (before.data_version, now.data_version)
    [problem] = report.problems()
    assert problem.startswith(f"expression[{A}] <- raw_dataset[{A}]: stale: ")
    assert before.data_version[:12] in problem and now.data_version[:12] in problem
    # Partition B read its own raw_dataset record, which did not change.
    assert audit(stale.instance, GRAPH, "pseudobulk", B).verified


def _cli(deployment: Deployment, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    status = cli_main(["lineage", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_json_report_has_every_field(sqlite, monkeypatch, capsys):
    status, out, _ = _cli(
        sqlite, monkeypatch, capsys, "train_mean_predictions", "--partition", A, "--json"
    )
    report = json.loads(out)
    assert status == 0 and report["verified"] is True and report["problems"] == []
    assert (report["asset"], report["partition"]) == ("train_mean_predictions", A)
    node_fields = {f.name for f in dataclasses.fields(LineageNode)} | {"status"}
    input_fields = {f.name for f in dataclasses.fields(InputCheck)}
    for node in report["nodes"]:
        assert set(node) == node_fields and node["status"] == "ok" and node["run_id"]
        assert all(set(check) == input_fields for check in node["inputs"])
    raw = next(node for node in report["nodes"] if node["asset"] == "raw_dataset")
    assert raw["file_sha256"] == raw["data_version"] and len(raw["file_sha256"]) == 64
    assert set(report["current_environment"]) == set(RECORDED_PACKAGES)


def test_cli_exit_statuses(sqlite, stale, monkeypatch, capsys):
    status, out, _ = _cli(sqlite, monkeypatch, capsys, "pseudobulk", "--partition", B)
    assert (
        status == 0
        and f"✓ raw_dataset[{B}]" in out
        and out.rstrip().endswith("every input is the parent's latest data version")
    )
    status, out, _ = _cli(stale, monkeypatch, capsys, "pseudobulk", "--partition", A)
    assert status == 1 and f"✗ STALE raw_dataset[{A}]" in out
    assert "Verdict: NOT VERIFIED: 1 stale, 0 missing, 0 unrecorded" in out
    status, _, err = _cli(sqlite, monkeypatch, capsys, "pseudobulk", "--partition", "norman_like")
    assert status == 2 and "asset 'pseudobulk' has no partition 'norman_like'" in err
    status, _, err = _cli(sqlite, monkeypatch, capsys, "no_such_asset", "--partition", A)
    assert status == 2 and "unknown asset 'no_such_asset'" in err
    status, _, err = _cli(sqlite, monkeypatch, capsys, "pseudobulk")
    assert status == 2 and "name a partition" in err


# A fan-in on a tiny graph: an unpartitioned child of every partition of a partitioned parent.
LETTERS = dg.StaticPartitionsDefinition(["a", "b", "c"])


class LeafConfig(dg.Config):
    value: int = 1


@dg.asset(partitions_def=LETTERS)
def leaf(context: dg.AssetExecutionContext, config: LeafConfig) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{context.partition_key}{config.value}")
    )


@dg.asset(deps=[dg.AssetDep(leaf, partition_mapping=dg.AllPartitionMapping())])
def total() -> dg.MaterializeResult:
    return dg.MaterializeResult()


def test_fan_in_maps_to_every_consumed_parent_partition(tmp_path):
    graph = dg.Definitions(assets=[leaf, total]).resolve_asset_graph()
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        for letter in ("a", "b"):  # c is never materialised: not an input of total
            dg.materialize([leaf], partition_key=letter, instance=instance)
        dg.materialize([leaf, total], selection=[total], instance=instance)
        report = audit(instance, graph, "total")
        assert report.verified, report.problems()
        assert [n.label for n in report.nodes] == ["total", "leaf[a]", "leaf[b]"]
        dg.materialize(
            [leaf],
            partition_key="b",
            instance=instance,
            run_config={"ops": {"leaf": {"config": {"value": 2}}}},
        )
        [(_, check)] = audit(instance, graph, "total").failed_inputs()
    assert check.partitions == ("a", "b", "c") and check.status == "stale"
    assert [
        (v.partition, v.consumed, v.current) for v in check.parents if v.consumed != v.current
    ] == [("b", "b1", "b2")]


def test_format_shows_a_recorded_environment_else_the_current_one():
    node = LineageNode("raw_dataset", A, "materialization", data_version="f" * 64)
    recorded = dataclasses.replace(node, environment="perturb_assets 0.1.0, dagster 1.13.27")
    text = format_report(LineageReport("raw_dataset", A, (recorded,), {"dagster": "9.9"}))
    assert "environment    perturb_assets 0.1.0, dagster 1.13.27" in text
    assert "current environment" not in text
    text = format_report(LineageReport("raw_dataset", A, (node,), {"dagster": "9.9"}))
    assert "environment    not recorded" in text
    assert "current environment (not recorded by every node): dagster 9.9" in text


def test_the_tags_read_are_dagsters():
    """A Dagster upgrade that renames a tag or the hashing threshold fails here first."""
    assert lineage.CODE_VERSION_TAG == dagster_data_version.CODE_VERSION_TAG
    assert lineage.DATA_VERSION_TAG == dagster_data_version.DATA_VERSION_TAG
    prefixes = (lineage.INPUT_DATA_VERSION_TAG_PREFIX, lineage.INPUT_EVENT_POINTER_TAG_PREFIX)
    assert prefixes == (
        dagster_data_version.INPUT_DATA_VERSION_TAG_PREFIX + "/",
        dagster_data_version.INPUT_EVENT_POINTER_TAG_PREFIX + "/",
    )
    threshold = dagster_data_version.SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD
    assert lineage.PARTITION_HASH_LIMIT == threshold
