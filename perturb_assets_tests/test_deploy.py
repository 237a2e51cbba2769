"""The deployment files: the instance config, the images, the Helm values and the pod a GPU step
gets on Kubernetes. Checked with Dagster's and dagster-k8s's own code wherever they have it."""

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import instance_for_test
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_k8s_job_name, get_user_defined_k8s_config

from perturb_assets.definitions import defs
from perturb_assets.defs.foundation.k8s import GPU_POOL

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PG_URL = "postgresql+psycopg2://dagster:secret@db.internal:5432/dagster"
NAMESPACE = "perturb"
STORAGE_URL = "s3://perturb-assets/benchmark"
IMAGE = "registry.internal/perturb-assets:cuda-test"
GRPC_CMD = ["dagster", "api", "grpc", "-m", "perturb_assets.definitions", "-h", "0.0.0.0"]
GRPC_CMD += ["-p", "3030"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def deploy_env(monkeypatch):
    """The environment deploy/dagster.yaml reads, with dummy values; the run launcher may load
    its Kubernetes settings (this process is not in a cluster)."""
    monkeypatch.setenv("DAGSTER_PG_URL", PG_URL)
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("PERTURB_ASSETS_STORAGE_URL", STORAGE_URL)
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)


@pytest.fixture
def cluster_instance(deploy_env):
    """A real instance from deploy/dagster.yaml: every section but the PostgreSQL storage (no
    database here), which test_instance_config_passes_dagsters_schema checks on its own."""
    config = _load(DEPLOY / "dagster.yaml")
    config.pop("storage")
    with instance_for_test(overrides=config) as instance:
        yield instance


# --- 1. deploy/dagster.yaml -------------------------------------------------------------------


def test_instance_config_passes_dagsters_schema(deploy_env):
    config, custom_class = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    assert custom_class is None
    assert config["storage"] == {"custom": {
        "module": "perturb_assets.instance_storage", "class": "PooledPostgresStorage",
        "config": {"postgres_url": {"env": "DAGSTER_PG_URL"}},
    }}  # fmt: skip
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    # Each configurable class accepts its section, as DagsterInstance would load it.
    custom = config["storage"]["custom"]
    storage = ConfigurableClassData(custom["module"], custom["class"], yaml.dump(custom["config"]))
    assert storage.config_dict == {"postgres_url": {"env": "DAGSTER_PG_URL"}}
    from dagster._config import process_config, resolve_to_config_type
    from dagster_postgres import DagsterPostgresStorage

    storage_class = getattr(importlib.import_module(storage.module_name), storage.class_name)
    assert issubclass(storage_class, DagsterPostgresStorage)  # the rest is dagster-postgres'
    resolved = process_config(
        resolve_to_config_type(storage_class.config_type()), storage.config_dict
    )
    assert resolved.success, resolved.errors
    assert resolved.value["postgres_url"] == PG_URL
    coordinator = ConfigurableClassData(
        config["run_coordinator"]["module"],
        config["run_coordinator"]["class"],
        yaml.dump(config["run_coordinator"].get("config", {})),
    ).rehydrate()
    assert isinstance(coordinator, dg.QueuedRunCoordinator)
    launcher = ConfigurableClassData(
        config["run_launcher"]["module"],
        config["run_launcher"]["class"],
        yaml.dump(config["run_launcher"]["config"]),
    ).rehydrate()
    assert type(launcher) is K8sRunLauncher
    assert launcher.job_namespace == NAMESPACE


def test_cluster_instance_queue_monitoring_and_gpu_pool(cluster_instance):
    instance = cluster_instance
    assert type(instance.run_launcher) is K8sRunLauncher
    assert instance.run_monitoring_enabled
    # Resuming crashed run workers needs a launcher that supports it (checked by Dagster too).
    assert instance.run_monitoring_max_resume_run_attempts > 0
    assert instance.run_launcher.supports_resume_run
    assert instance.run_monitoring_start_timeout_seconds >= 600  # image pull + node scale-up

    concurrency = instance.get_concurrency_config()
    queue = concurrency.run_queue_config
    assert queue is not None and 1 <= queue.max_concurrent_runs <= 20
    assert {limit["key"] for limit in queue.tag_concurrency_limits} >= {
        "dagster/partition",
        "dagster/backfill",
    }
    # One run per dataset partition: a second run on the same partition waits, another
    # partition does not.
    running = [DagsterRun(job_name="main_job", tags={"dagster/partition": "norman"})]
    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, running)
    assert counter.is_blocked(DagsterRun(job_name="foundation_job", tags=running[0].tags))
    assert not counter.is_blocked(
        DagsterRun(job_name="main_job", tags={"dagster/partition": "adamson"})
    )

    # The pools the code location's steps use are exactly the GPU pool, and the instance gives
    # it a limit (the default pool limit, until an operator sets one explicitly).
    pools = {
        step.pool
        for job_name in ("main_job", "foundation_job")
        for step in _plan(job_name).get_all_steps_in_topo_order()
        if step.pool
    }
    assert pools == {GPU_POOL}
    default = concurrency.pool_config.default_pool_limit
    assert default is not None and default >= 1
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(GPU_POOL)
    assert storage.get_concurrency_info(GPU_POOL).limit == default
    assert {(p.name, p.limit) for p in storage.get_pool_limits()} == {(GPU_POOL, default)}


# --- 4. the pod of a GPU step, rendered by dagster-k8s ----------------------------------------


def _plan(job_name: str):
    job = defs.resolve_job_def(job_name)
    return create_execution_plan(job, run_config={}, tags={"dagster/partition": "synthetic"})


def _step_pod(instance, job_name: str, step) -> dict:
    """The Kubernetes Job of one step, built as dagster_k8s's K8sStepHandler builds it: the run
    launcher's settings, then the step's own `dagster-k8s/config` tags."""
    launcher = instance.run_launcher
    run = DagsterRun(job_name=job_name, tags={"dagster/partition": "synthetic"})
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step.tags))
    )
    job_config = context.get_k8s_job_config(None, launcher).with_image(IMAGE)
    name = f"dagster-step-{get_k8s_job_name(run.run_id, step.key)}"
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": job_name, "dagster/op": step.key},
    )
    assert context.namespace == NAMESPACE
    # What the Kubernetes API receives (camelCase, no empty fields).
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)["spec"]["template"]


def test_gpu_step_pod_requests_a_gpu_on_the_gpu_nodes(cluster_instance):
    steps = {s.key: s for s in _plan("foundation_job").get_all_steps_in_topo_order()}
    gpu_steps = [s for s in steps.values() if s.tags.get("device") == "gpu"]
    assert {s.key for s in gpu_steps} == {
        "train_scgpt",
        "train_gears",
        "train_gears_scfoundation_emb",
    }
    for step in gpu_steps:
        assert step.pool == GPU_POOL
        tagged = json.loads(step.tags["dagster-k8s/config"])
        pod = _step_pod(cluster_instance, "foundation_job", step)["spec"]
        (container,) = pod["containers"]
        resources = container["resources"]
        count = tagged["container_config"]["resources"]["limits"]["nvidia.com/gpu"]
        assert int(count) >= 1
        assert resources["limits"]["nvidia.com/gpu"] == count
        assert resources["requests"]["nvidia.com/gpu"] == count
        # The run launcher's CPU/memory requests survive the merge with the step's tags.
        assert resources["requests"]["cpu"] == "1" and resources["requests"]["memory"] == "4Gi"
        assert pod["nodeSelector"] == tagged["pod_spec_config"]["node_selector"]
        assert pod["nodeSelector"], "a GPU pod must be pinned to the GPU node pool"
        tolerations = [
            {k: t[k] for k in ("key", "operator", "effect") if k in t} for t in pod["tolerations"]
        ]
        assert tolerations == tagged["pod_spec_config"]["tolerations"]
        assert tolerations, "GPU nodes are tainted: the pod needs a toleration"
        _assert_common_pod_settings(pod, container)


def test_cpu_step_pod_has_no_gpu(cluster_instance):
    steps = [s for s in _plan("main_job").get_all_steps_in_topo_order()]
    assert not [s for s in steps if s.tags.get("device") == "gpu" or s.pool]
    step = next(s for s in steps if s.key == "train_mean_predictions")
    assert step.tags.get("device") == "cpu"
    pod = _step_pod(cluster_instance, "main_job", step)["spec"]
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"}}
    _assert_common_pod_settings(pod, container)


def _assert_common_pod_settings(pod: dict, container: dict) -> None:
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PERTURB_ASSETS_EXECUTOR"] == "k8s"
    assert env["PERTURB_ASSETS_STORAGE_URL"] == STORAGE_URL
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    assert "DAGSTER_PG_URL" not in env  # a Secret, never a plain value in the Job spec
    secrets = {s["secretRef"]["name"] for s in container["envFrom"]}
    assert secrets == {"perturb-assets-pg", "perturb-assets-s3"}
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert pod["serviceAccountName"] == "dagster"


# --- 2. the images ----------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, buffer = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        keyword, _, rest = (buffer + stripped).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buffer = ""
    assert not buffer, f"{path}: dangling line continuation"
    return out


def _base_image(instructions) -> str:
    args = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
        if keyword == "FROM":
            return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
    raise AssertionError("no FROM")


def _python_snippets(run: str) -> list[str]:
    return re.findall(r"python -c '([^']*)'", run)


def _run_snippet(snippet: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


@pytest.mark.parametrize("flavour", ["cpu", "cuda"])
def test_dockerfile_invariants(flavour):
    path = DEPLOY / "docker" / f"Dockerfile.{flavour}"
    instructions = _instructions(path)
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    base = _base_image(instructions)
    if flavour == "cpu":
        assert base.startswith("python:3.11-slim")
    else:
        assert base.startswith("nvidia/cuda:") and "-runtime-" in base
        assert any("python3.11" in run and "apt-get install" in run for run in runs)

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    nodeps = pyproject["optional-dependencies"]["nodeps"]
    assert "scgpt==0.2.4" in nodeps
    # The nodeps extra is installed with --no-deps, from pyproject.toml, as bootstrap.sh does;
    # running the Dockerfile's own snippet on this repository yields exactly that extra.
    (nodeps_run,) = [run for run in runs if '["nodeps"]' in run]
    assert re.search(r"pip install --no-deps \$\(python -c '[^']*\[\"nodeps\"\]", nodeps_run)
    (snippet,) = [s for s in _python_snippets(nodeps_run) if '["nodeps"]' in s]
    assert _run_snippet(snippet) == nodeps
    for run in runs:  # never the extra with its dependencies, nor scgpt on its own
        assert "[nodeps]" not in run
        assert not re.search(r"pip install(?! --no-deps)[^&|;]*scgpt", run)
    # The dependencies come from the pins of pyproject.toml (torch 2.13.0 among them).
    (deps,) = [s for run in runs for s in _python_snippets(run) if '"\\n".join' in s]
    assert _run_snippet(deps) == pyproject["dependencies"]
    assert "torch==2.13.0" in pyproject["dependencies"]
    assert any("pip install -r /tmp/requirements.txt" in run for run in runs)
    assert any(run.startswith("pip install --no-deps . ") for run in runs)

    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert users[-1].split(":")[0].isdigit()  # runAsNonRoot can verify it
    assert [i for i, (k, _) in enumerate(instructions) if k == "USER"][-1] > max(
        i for i, (k, _) in enumerate(instructions) if k == "RUN"
    )
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    (cmd,) = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert json.loads(cmd) == GRPC_CMD
    assert ("EXPOSE", "3030") in instructions

    # Only the project's sources are copied: never data/, .venv or .dagster_home.
    copied = {
        src
        for keyword, rest in instructions
        if keyword in {"COPY", "ADD"}
        for src in rest.split()[:-1]
        if not src.startswith("--")
    }
    allowed = {"pyproject.toml", "README.md", "perturb_assets", "workspace.yaml"}
    allowed |= {"deploy/dagster.yaml", "deploy/local/dagster.yaml"}
    assert copied <= allowed and "perturb_assets" in copied
    ignored = (DEPLOY / "docker" / f"Dockerfile.{flavour}.dockerignore").read_text().split()
    assert {"data", ".venv", ".dagster_home"} <= set(ignored)


# --- 3. the Helm values -----------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(value):
    if isinstance(value, dict):
        return {_snake(k) if k != "applyLimitPerUniqueValue" else k: _snake_keys(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def test_helm_values():
    values = _load(DEPLOY / "helm" / "values.yaml")
    instance = _load(DEPLOY / "dagster.yaml")

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert "PERTURB_ASSETS_EXECUTOR=k8s" in launcher["envVars"]
    secrets = {s["name"] for s in launcher["envSecrets"]}
    assert secrets == set(instance["run_launcher"]["config"]["env_secrets"])
    # The same run-pod requests as deploy/dagster.yaml's launcher would be overridden by
    # resources on the user deployment: there are none.
    assert launcher["runK8sConfig"]["containerConfig"]["resources"]["requests"]

    # External PostgreSQL, password from a Secret.
    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]

    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    (deployment,) = user["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "perturb_assets.definitions"]
    assert deployment["port"] == 3030
    assert deployment["image"]["repository"] and deployment["image"]["tag"]
    assert "resources" not in deployment
    env = deployment["env"]
    assert env["PERTURB_ASSETS_EXECUTOR"] == "k8s"
    assert env["PERTURB_ASSETS_STORAGE_URL"].startswith("s3://")
    assert {s["name"] for s in deployment["envSecrets"]} == secrets
    assert not {"DAGSTER_PG_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert "DAGSTER_PG_URL" in (DEPLOY / "helm" / "README.md").read_text()

    # The same queue, pools and monitoring as deploy/dagster.yaml.
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)  # the chart refuses
    assert values["concurrency"]["enabled"] is True
    concurrency = {k: v for k, v in values["concurrency"].items() if k != "enabled"}
    assert _snake_keys(concurrency) == instance["concurrency"]
    assert _snake_keys(daemon["runMonitoring"]) == instance["run_monitoring"]
    assert _snake_keys(daemon["runRetries"]) == instance["run_retries"]
    assert values["telemetry"]["enabled"] is False


# --- 5. docs/operations/kubernetes.md ---------------------------------------------------------


def test_the_one_machine_instance_config_in_the_docs_loads(tmp_path, monkeypatch):
    """The single-machine dagster.yaml of docs/operations/kubernetes.md passes Dagster's schema,
    and an instance with its settings (SQLite in place of PostgreSQL) starts: run monitoring with
    the default run launcher, the queue and the pools."""
    text = (REPO / "docs" / "operations" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(# dagster\.yaml, one machine.*?)```", text, re.S)
    assert len(blocks) == 1
    (tmp_path / "dagster.yaml").write_text(blocks[0])
    monkeypatch.setenv("DAGSTER_PG_URL", PG_URL)
    config, _ = dagster_instance_config(str(tmp_path), "dagster.yaml")
    # The same storage as deploy/dagster.yaml's (checked above).
    cluster, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    assert config["storage"] == cluster["storage"]
    assert "run_launcher" not in config
    overrides = {k: v for k, v in config.items() if k != "storage"}
    with instance_for_test(overrides=overrides) as instance:
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs >= 1
        assert instance.get_concurrency_config().pool_config.default_pool_limit >= 1
