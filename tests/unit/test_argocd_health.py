"""The Argo CD health check (manifests/argocd/health.lua), run by a real Lua interpreter.

Argo CD evaluates the script with gopher-lua, a Lua 5.1; lupa's Lua 5.1 runtime runs
the same body with the live object as the global ``obj``. The first table is statuses
the real operator wrote (``tests/fixtures/argocd/statuses.yaml``, captured from
``specops run`` reconciles on the local control plane); the second covers the cases a
short run does not reach, in the operator's own condition and reason names. Every
sample is validated against the status model, so one the operator could never write
fails here instead of passing vacuously.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from specops.api.v1alpha1 import SpeculativeDeploymentStatus

lupa = pytest.importorskip("lupa.lua51")

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "manifests" / "argocd" / "health.lua"
ARGOCD_CM = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.serving.specops.dev_SpeculativeDeployment"
T0 = "2026-11-28T12:00:00Z"


def run_health(obj: dict[str, Any]) -> dict[str, str]:
    """Evaluate health.lua the way Argo CD does: `obj` global, the chunk returns a table."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(HEALTH_LUA.read_text())
    return {key: str(value) for key, value in result.items()}


def cond(type_: str, status: str, reason: str, message: str = "", gen: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T0,
        "observedGeneration": gen,
    }


def resource(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.specops.dev/v1alpha1",
        "kind": "SpeculativeDeployment",
        "metadata": {"name": "qwen3-8b", "namespace": "llm", "generation": generation},
        "spec": {"verifier": {"model": "Qwen/Qwen3-8B"}, "gpu": {"type": "H100-80GB"}},
    }
    if status is not None:
        SpeculativeDeploymentStatus.model_validate(status)  # a status the operator could write
        obj["status"] = status
    return obj


REAL = yaml.safe_load((ROOT / "tests" / "fixtures" / "argocd" / "statuses.yaml").read_text())


@pytest.mark.parametrize("sample", REAL, ids=[s["scenario"] for s in REAL])
def test_health_of_statuses_the_operator_wrote(sample: dict[str, Any]) -> None:
    obj = resource(sample["metadata"]["generation"], sample["status"])
    health = run_health(obj)
    assert health["status"] == sample["expect"], health["message"]
    assert health["message"]


ALL_GOOD = [
    cond("ModelsResolved", "True", "Resolved"),
    cond("Compatible", "True", "Compatible"),
    cond("SpeculationActive", "True", "ModeAlways"),
    cond("Ready", "True", "Available", "1/1 replicas available"),
]
CHECKED = ALL_GOOD[:2]


def status(*conditions: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"observedGeneration": generation, "conditions": list(conditions)}


CASES = [
    pytest.param(
        resource(1, None),
        "Progressing",
        "Waiting for the SpecOps operator",
        id="a resource without status is waiting for the operator",
    ),
    pytest.param(
        resource(2, status(*ALL_GOOD)),
        "Progressing",
        "observe generation 2",
        id="a status of an older generation is progressing",
    ),
    pytest.param(
        resource(1, status(*ALL_GOOD)),
        "Healthy",
        "1/1 replicas available",
        id="ready for the current generation is healthy",
    ),
    pytest.param(
        resource(
            1,
            status(
                *CHECKED,
                cond("SpeculationActive", "False", "AcceptanceLow", "acceptance 0.31 < 0.4"),
                cond("MetricsAvailable", "False", "PrometheusUnreachable"),
                cond("Ready", "True", "Available"),
            ),
        ),
        "Healthy",
        "Ready True (Available)",
        id="speculation off and metrics missing are still healthy",
    ),
    pytest.param(
        resource(1, status(*CHECKED, cond("Ready", "True", "ScaledToZero"))),
        "Healthy",
        "ScaledToZero",
        id="scaled to zero on purpose is healthy",
    ),
    pytest.param(
        resource(
            1,
            status(
                cond("ModelsResolved", "Unknown", "HubUnavailable", "retrying in 30s"),
                cond("Ready", "False", "NoWorkload"),
            ),
        ),
        "Degraded",
        "NoWorkload",
        id="no workload at all while the hub is down is degraded",
    ),
    pytest.param(
        resource(
            2,
            status(
                cond("ModelsResolved", "Unknown", "HubUnavailable", "retrying in 30s", gen=2),
                cond("Ready", "True", "AvailableOldGeneration", "serving generation 1", gen=2),
                generation=2,
            ),
        ),
        "Progressing",
        "HubUnavailable",
        id="an update waiting for the hub keeps serving and is progressing",
    ),
    pytest.param(
        resource(
            2,
            status(
                cond("ModelsResolved", "False", "ModelNotFound", "no such repo", gen=2),
                cond("Ready", "True", "AvailableOldGeneration", "serving generation 1", gen=2),
                generation=2,
            ),
        ),
        "Degraded",
        "ModelsResolved False (ModelNotFound): no such repo",
        id="an update naming a missing model is degraded although the old one serves",
    ),
    pytest.param(
        resource(
            1,
            status(
                *CHECKED,
                cond("ReplicasSchedulable", "False", "InsufficientGPUs", "1 pod(s) cannot fit"),
                cond("Ready", "False", "ReplicasNotAvailable"),
            ),
        ),
        "Degraded",
        "InsufficientGPUs",
        id="pods that cannot be scheduled are degraded",
    ),
    pytest.param(
        resource(1, status(*CHECKED, cond("Ready", "False", "RollingOut", "1/2 available"))),
        "Progressing",
        "RollingOut",
        id="a rollout in progress is progressing",
    ),
    pytest.param(
        resource(1, status(*CHECKED, cond("Ready", "False", "ProgressDeadlineExceeded", "stuck"))),
        "Degraded",
        "ProgressDeadlineExceeded",
        id="a rollout past its deadline is degraded",
    ),
    *(
        pytest.param(
            resource(1, status(*CHECKED, cond("Ready", "False", reason, "Service ns/x"))),
            "Degraded",
            reason,
            id=f"a child that could not be written is degraded ({reason})",
        )
        for reason in ("ObjectNotOwned", "ApplyRejected", "ReconcileError")
    ),
    pytest.param(
        resource(1, status(*CHECKED, cond("Ready", "Unknown", "Pending"))),
        "Progressing",
        "Ready Unknown (Pending)",
        id="ready unknown is progressing",
    ),
    pytest.param(
        resource(1, status(*CHECKED)),
        "Progressing",
        "Waiting for the Ready condition",
        id="no ready condition yet is progressing",
    ),
    pytest.param(
        resource(
            3,
            status(
                cond("ModelsResolved", "False", "ModelNotFound", gen=2),
                cond("Ready", "True", "Available", gen=3),
                generation=3,
            ),
        ),
        "Healthy",
        "Ready True",
        id="a failure about an older generation is ignored",
    ),
    pytest.param(
        resource(3, status(cond("Ready", "True", "Available", gen=2), generation=3)),
        "Progressing",
        "Waiting for the Ready condition",
        id="a stale ready condition is progressing",
    ),
]


@pytest.mark.parametrize(("obj", "status", "message"), CASES)
def test_health(obj: dict[str, Any], status: str, message: str) -> None:
    health = run_health(obj)
    assert health["status"] == status
    assert message in health["message"]


def test_argocd_cm_installs_exactly_health_lua() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"][HEALTH_KEY] == HEALTH_LUA.read_text()


def test_argocd_applications_point_at_this_repository_layout() -> None:
    """The Applications name paths that exist here, so a sync finds the chart and examples."""
    operator = yaml.safe_load(
        (ROOT / "manifests/argocd/specops-operator.application.yaml").read_text()
    )
    assert operator["kind"] == "Application"
    assert (ROOT / operator["spec"]["source"]["path"] / "Chart.yaml").exists()
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]
    example = yaml.safe_load((ROOT / "manifests/argocd/example.application.yaml").read_text())
    examples_dir = ROOT / example["spec"]["source"]["path"]
    pattern = example["spec"]["source"]["directory"]["include"]
    matched = sorted(examples_dir.glob(pattern))
    assert matched, f"{pattern} matches nothing in {examples_dir}"
    for path in matched:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "SpeculativeDeployment"
