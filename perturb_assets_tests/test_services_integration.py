"""The main job against real services, as on a cluster where steps share only those.

``perturb-assets run main_job --partition synthetic`` with the multiprocess executor (every step
in its own process), run storage in PostgreSQL and asset values in an S3 bucket, then
``perturb-assets lineage`` on the result: the local proxy for a Kubernetes deployment.
The whole main job runs (40 steps, each forked from a server that imported the code location
once), on a small simulation; the audit explains ``metrics`` back to the dataset file.
``deploy/services.sh`` (sourced by ``deploy/test.sh``) starts the servers on 127.0.0.1 and
exports ``PERTURB_ASSETS_TEST_PG_URL`` and ``PERTURB_ASSETS_TEST_S3_ENDPOINT``; without them
these tests skip. Each run gets a fresh database and a fresh bucket, dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest
import yaml
from dagster import DagsterEventType as Kind

REPO = Path(__file__).resolve().parents[1]
PG_URL_ENV = "PERTURB_ASSETS_TEST_PG_URL"
S3_ENDPOINT_ENV = "PERTURB_ASSETS_TEST_S3_ENDPOINT"
PARTITION = "synthetic"
PREFIX = "perturb"
SMALL = {"n_cells": 1500, "n_genes": 150, "n_perturbations": 20}
CHAIN = ["raw_dataset", "expression", "pseudobulk", "perturbation_split", "train_mean_predictions"]
LEAF = "metrics"
POOLED_STORAGE = {"module": "perturb_assets.instance_storage", "class": "PooledPostgresStorage"}
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

pytestmark = pytest.mark.skipif(
    not (os.environ.get(PG_URL_ENV) and os.environ.get(S3_ENDPOINT_ENV)),
    reason=f"needs {PG_URL_ENV} and {S3_ENDPOINT_ENV}: source deploy/services.sh "
    "(deploy/test.sh does) to start PostgreSQL and an S3 server on 127.0.0.1",
)


@dataclasses.dataclass
class Deployment:
    """One run of the main job: where its instance, data root and bucket are."""

    home: Path
    data: Path
    bucket: str
    env: dict[str, str]
    run: subprocess.CompletedProcess


def _psycopg2_dsn(url: str, database: str | None = None) -> str:
    """``postgresql+psycopg2://...`` (SQLAlchemy's form) as libpq's, optionally another db."""
    parts = urlsplit(url)
    path = f"/{database}" if database else parts.path
    return urlunsplit(("postgresql", parts.netloc, path, parts.query, parts.fragment))


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh database on the test server for this module (dropped afterwards)."""
    psycopg2 = pytest.importorskip("psycopg2")
    url = os.environ[PG_URL_ENV]
    name = f"perturb_it_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(_psycopg2_dsn(url))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(url, name)
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def _s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ[S3_ENDPOINT_ENV], **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }


def _keys(bucket: str) -> list[str]:
    pages = _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    """A fresh bucket on the S3 server for this module (emptied and removed afterwards)."""
    name = f"perturb-it-{uuid.uuid4().hex[:12]}"
    client = _s3_client()
    client.create_bucket(Bucket=name)
    yield name
    keys = _keys(name)
    for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1000 keys
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        client.delete_objects(Bucket=name, Delete={"Objects": batch, "Quiet": True})
    client.delete_bucket(Bucket=name)


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``perturb-assets ARGS`` in a subprocess from the repository root, as a user runs it."""
    command = [sys.executable, "-m", "perturb_assets.cli", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def deployment(pg_url, bucket, tmp_path_factory) -> Deployment:
    """The main job for ``synthetic`` (a small simulation), each step in its own process."""
    root = tmp_path_factory.mktemp("services")
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    data.mkdir()
    # Runs, events, schedules and dynamic partitions in PostgreSQL, one connection per process
    # (deploy/dagster.yaml's storage).
    storage = {"storage": {"custom": {**POOLED_STORAGE, "config": {"postgres_url": pg_url}}}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(storage))
    config = root / "run_config.yaml"
    config.write_text(yaml.safe_dump({"ops": {"raw_dataset": {"config": SMALL}}}))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PERTURB_ASSETS_", "AWS_", "DAGSTER_"))
    }
    env.update(
        AWS,
        DAGSTER_HOME=str(home),
        PERTURB_ASSETS_DATA_ROOT=str(data),
        PERTURB_ASSETS_EXECUTOR="multiprocess",
        PERTURB_ASSETS_STORAGE_URL=f"s3://{bucket}/{PREFIX}",
        AWS_ENDPOINT_URL=os.environ[S3_ENDPOINT_ENV],
    )
    # About 4 min on the 2-core machine beside another test worker: room for a slower CI box.
    run = _cli(env, "run", "main_job", "--partition", PARTITION, "--config", str(config),
               timeout=900)  # fmt: skip
    return Deployment(home, data, bucket, env, run)


def _events(deployment: Deployment) -> tuple[dg.DagsterRun, list[dg.DagsterEvent]]:
    """The run and its Dagster events, read back from PostgreSQL."""
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        storage = instance.get_ref().storage_data
        assert (storage.module_name, storage.class_name) == tuple(POOLED_STORAGE.values())
        [run] = instance.get_runs()
        records = instance.all_logs(run.run_id)
    return run, [r.dagster_event for r in records if r.dagster_event is not None]


def test_the_run_succeeds(deployment):
    assert deployment.run.returncode == 0, deployment.run.stderr[-5000:]


def test_every_asset_value_is_in_the_bucket_and_none_in_the_data_root(deployment):
    assert deployment.run.returncode == 0, deployment.run.stderr[-5000:]
    _, events = _events(deployment)
    materialized = {
        event.asset_key.to_user_string()
        for event in events
        if event.event_type == Kind.ASSET_MATERIALIZATION
    }
    assert {*CHAIN, LEAF} <= materialized and len(materialized) >= 30
    keys = set(_keys(deployment.bucket))
    missing = [
        asset
        for asset in sorted(materialized)
        if f"{PREFIX}/assets/{asset}/{PARTITION}/CURRENT.json" not in keys
    ]
    assert not missing, f"not in s3://{deployment.bucket}/{PREFIX}/assets: {missing}"
    # The pointers' versions and the fitted model are there too.
    for asset in materialized:
        assert any(key.startswith(f"{PREFIX}/assets/{asset}/{PARTITION}/v-") for key in keys)
    assert f"{PREFIX}/models/train_mean_predictions/{PARTITION}/CURRENT.json" in keys
    # The dataset's folder is stored too, for steps on machines without this data root.
    assert any(key.startswith(f"{PREFIX}/raw/") for key in keys), sorted(keys)[:20]
    for local in ("assets", "models"):
        stored = [p for p in (deployment.data / local).rglob("*") if p.is_file()]
        assert not stored, f"asset files in the local data root: {stored[:5]}"


def test_the_run_is_in_postgres_with_every_step_in_its_own_process(deployment):
    assert deployment.run.returncode == 0, deployment.run.stderr[-5000:]
    run, events = _events(deployment)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.job_name == "main_job" and run.tags["dagster/partition"] == PARTITION
    starts = {e.step_key: e.pid for e in events if e.event_type == Kind.STEP_START}
    successes = {e.step_key for e in events if e.event_type == Kind.STEP_SUCCESS}
    workers = {e.step_key for e in events if e.event_type == Kind.STEP_WORKER_STARTING}
    # Every asset and check of the job (expression_expression_schema, ...).
    assert set(CHAIN) < set(starts) and set(starts) == successes == workers
    [run_pid] = {e.pid for e in events if e.event_type == Kind.RUN_START}
    # One process per step, none of them the run's own.
    assert len(set(starts.values())) == len(starts) and run_pid not in starts.values()


def test_lineage_reaches_back_to_the_dataset_file(deployment):
    assert deployment.run.returncode == 0, deployment.run.stderr[-5000:]
    done = _cli(deployment.env, "lineage", LEAF, "--partition", PARTITION, "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["verified"] is True and report["problems"] == []
    assert (report["asset"], report["partition"]) == (LEAF, PARTITION)
    nodes = {node["asset"]: node for node in report["nodes"]}
    assert report["nodes"][0]["asset"] == LEAF and set(CHAIN) < set(nodes)
    run, _ = _events(deployment)
    assert {node["run_id"] for node in report["nodes"]} == {run.run_id}  # the one run's records
    assert all(node["status"] == "ok" and node["partition"] == PARTITION for node in nodes.values())
    # Back to the file: raw_dataset's data version is the simulated dataset file's sha256.
    raw = nodes["raw_dataset"]
    dataset_file = deployment.data / "gears" / PARTITION / "perturb_processed.h5ad"
    file_sha = hashlib.sha256(dataset_file.read_bytes()).hexdigest()
    assert raw["file_sha256"] == raw["data_version"] == file_sha
    [raw_input] = [i for i in nodes["expression"]["inputs"] if i["asset"] == "raw_dataset"]
    assert raw_input["status"] == "ok" and raw_input["parents"][0]["consumed"] == file_sha


def test_pooled_storage_opens_one_connection_per_storage_not_one_per_query(pg_url, monkeypatch):
    import psycopg2
    from dagster_postgres import DagsterPostgresStorage

    from perturb_assets.instance_storage import PooledPostgresStorage

    connects = []
    connect = psycopg2.connect

    def counted(*args, **kwargs):
        connects.append(1)
        return connect(*args, **kwargs)

    monkeypatch.setattr(psycopg2, "connect", counted)
    opened = {}
    for storage_class in (DagsterPostgresStorage, PooledPostgresStorage):
        storage = storage_class(pg_url)
        connects.clear()
        for _ in range(20):
            storage.run_storage.get_runs()
            storage.event_log_storage.get_dynamic_partitions("datasets")
        opened[storage_class.__name__] = len(connects)
        for part in (storage.run_storage, storage.event_log_storage, storage.schedule_storage):
            part.dispose()  # close the pooled connections
    assert opened["DagsterPostgresStorage"] >= 40  # at least one per query
    assert opened["PooledPostgresStorage"] == 2  # one per storage used, for every query
