"""Op tags that put the GPU-tagged assets on GPU nodes of a Kubernetes deployment.

``dagster-k8s/config`` is read by dagster-k8s's ``k8s_job_executor`` (one pod per step) and
``K8sRunLauncher``; it asks for ``nvidia.com/gpu`` and schedules the pod onto GPU nodes. Each
part is configurable through the environment of the code-location pod:

``PERTURB_ASSETS_GPU_COUNT``
    GPUs per step (default ``1``).
``PERTURB_ASSETS_GPU_NODE_SELECTOR``
    JSON object of node labels (default ``{"nvidia.com/gpu.present": "true"}``).
``PERTURB_ASSETS_GPU_TOLERATIONS``
    JSON list of tolerations (default: tolerate the ``nvidia.com/gpu`` taint).
"""

from __future__ import annotations

import json
import os

GPU_POOL = "gpu"
DEFAULT_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
]


def _json_env(name: str, default: object) -> object:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"environment variable {name}: not valid JSON ({exc}): {value!r}") from exc


def gpu_op_tags() -> dict[str, object]:
    """``device: gpu`` plus the ``dagster-k8s/config`` of a GPU pod."""
    count = os.environ.get("PERTURB_ASSETS_GPU_COUNT", "1")
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"PERTURB_ASSETS_GPU_COUNT must be a positive integer, got {count!r}")
    k8s = {
        "container_config": {
            "resources": {
                "limits": {"nvidia.com/gpu": count},
                "requests": {"nvidia.com/gpu": count},
            }
        },
        "pod_spec_config": {
            "node_selector": _json_env("PERTURB_ASSETS_GPU_NODE_SELECTOR", DEFAULT_NODE_SELECTOR),
            "tolerations": _json_env("PERTURB_ASSETS_GPU_TOLERATIONS", DEFAULT_TOLERATIONS),
        },
    }
    return {"device": "gpu", "dagster-k8s/config": k8s}
