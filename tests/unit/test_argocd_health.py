"""The Argo CD health check (manifests/argocd/health.lua), run by a real Lua interpreter.

Argo CD evaluates the script with gopher-lua, a Lua 5.1; lupa's Lua 5.1 runtime runs
the same body with the live object as the global ``obj``. The status samples are
validated against the operator's status model first, so a sample the operator could
never write fails here instead of passing vacuously.
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


ALL_GOOD = [
    cond("Resolved", "True", "Resolved"),
    cond("Compatible", "True", "Compatible"),
    cond("Planned", "True", "Planned"),
    cond("Ready", "True", "ReplicasReady", "1/1 replicas ready"),
    cond("Speculating", "True", "AcceptanceHigh"),
]

CASES = [
    pytest.param(
        resource(1, None),
        "Progressing",
        "Waiting for the SpecOps operator",
        id="a resource without status is waiting for the operator",
    ),
    pytest.param(
        resource(2, {"observedGeneration": 1, "conditions": ALL_GOOD}),
        "Progressing",
        "observe generation 2",
        id="a status of an older generation is progressing",
    ),
    pytest.param(
        resource(1, {"observedGeneration": 1, "conditions": ALL_GOOD}),
        "Healthy",
        "1/1 replicas ready",
        id="ready for the current generation is healthy",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    *ALL_GOOD[:3],
                    cond("Ready", "True", "ReplicasReady"),
                    cond("Speculating", "False", "AcceptanceLow", "acceptance 0.31 < 0.4"),
                ],
            },
        ),
        "Healthy",
        "Ready True",
        id="speculation turned off by policy is still healthy",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    cond("Resolved", "False", "ModelNotFound", "Qwen/Qwen3-9B does not exist")
                ],
            },
        ),
        "Degraded",
        "Resolved False (ModelNotFound): Qwen/Qwen3-9B does not exist",
        id="a model that cannot be resolved is degraded",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    cond("Resolved", "True", "Resolved"),
                    cond("Compatible", "False", "VocabularyMismatch", "drafter vocab differs"),
                ],
            },
        ),
        "Degraded",
        "VocabularyMismatch",
        id="an incompatible drafter is degraded",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    *ALL_GOOD[:2],
                    cond("Planned", "False", "DoesNotFit", "needs 9 GPUs"),
                ],
            },
        ),
        "Degraded",
        "DoesNotFit",
        id="no GPU plan is degraded",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    *ALL_GOOD[:3],
                    cond("Ready", "False", "ReplicasNotReady", "0/1 ready"),
                    cond("Progressing", "True", "RollingOut", "new pods loading weights"),
                ],
            },
        ),
        "Progressing",
        "new pods loading weights",
        id="a rollout in progress is progressing",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [
                    *ALL_GOOD[:3],
                    cond("Ready", "False", "ReplicasNotReady", "0/1 ready"),
                    cond("Progressing", "False", "ProgressDeadlineExceeded", "stuck"),
                ],
            },
        ),
        "Degraded",
        "ReplicasNotReady",
        id="not ready and not progressing is degraded",
    ),
    pytest.param(
        resource(
            1,
            {
                "observedGeneration": 1,
                "conditions": [*ALL_GOOD[:3], cond("Ready", "Unknown", "Pending")],
            },
        ),
        "Progressing",
        "Ready Unknown (Pending)",
        id="ready unknown is progressing",
    ),
    pytest.param(
        resource(1, {"observedGeneration": 1, "conditions": ALL_GOOD[:3]}),
        "Progressing",
        "Waiting for the Ready condition",
        id="no ready condition yet is progressing",
    ),
    pytest.param(
        resource(
            3,
            {
                "observedGeneration": 3,
                "conditions": [
                    cond("Resolved", "False", "ModelNotFound", gen=2),
                    cond("Ready", "True", "ReplicasReady", gen=3),
                ],
            },
        ),
        "Healthy",
        "Ready True",
        id="a failure about an older generation is ignored",
    ),
    pytest.param(
        resource(
            3,
            {
                "observedGeneration": 3,
                "conditions": [cond("Ready", "True", "ReplicasReady", gen=2)],
            },
        ),
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
