"""What the operator renders is what the twin runs.

Every golden Deployment from ``specops.render`` is turned into the pod the
ReplicaSet would create; the pod runner must pick it up, hand the simulator
the rendered ``vllm serve`` arguments (minus where to listen), and the
simulator must accept them and size the same replica; the rendered Service
must select the pod, so its front door has it as a backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from specops.podrunner import plan
from specops.sim.args import build_replica, parse_serve_args

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = sorted((ROOT / "golden" / "render").glob("*.yaml"))
HUB = ROOT / "fixtures" / "hub"


def rendered(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    return deployment, service


# gpu-type label of the kwok node the scheduler would pick for a product selector.
PRODUCT_TO_TYPE = {"NVIDIA-A100-SXM4-80GB": "A100-80GB", "NVIDIA-H100-80GB-HBM3": "H100-80GB"}


def node_gpu(selector: dict[str, str]) -> str:
    if plan.GPU_TYPE_LABEL in selector:
        return selector[plan.GPU_TYPE_LABEL]
    return PRODUCT_TO_TYPE[selector.get("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")]


def pod_of(deployment: dict[str, Any], node: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "metadata": {
            **template["metadata"],
            "name": f"{deployment['metadata']['name']}-abc12",
            "namespace": deployment["metadata"].get("namespace", "llm"),
            "uid": "uid-1",
        },
        "spec": {**template["spec"], "nodeName": node},
        "status": {"phase": "Running"},
    }


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_rendered_pod_runs_its_own_args_on_the_simulator(path: Path) -> None:
    deployment, service = rendered(path)
    gpu = node_gpu(deployment["spec"]["template"]["spec"].get("nodeSelector") or {})
    nodes = {
        "n": {
            "metadata": {
                "name": "n",
                "labels": {plan.GPU_TYPE_LABEL: gpu},
                "annotations": {plan.KWOK_ANNOTATION: "fake"},
            }
        }
    }
    pod = pod_of(deployment, "n")
    pod["metadata"]["namespace"] = service["metadata"].get("namespace", "llm")
    replicas, skipped = plan.replicas([pod], nodes)
    assert skipped == []
    [replica] = replicas.values()

    container = next(c for c in pod["spec"]["containers"] if c["name"] == "vllm")
    rendered_args = container["args"]
    assert "--port" in rendered_args  # and the runner replaces it with its own
    argv = plan.simulator_argv(replica, 4242, hub_mirror=str(HUB))
    assert argv[argv.index("--port") + 1] == "4242"
    assert argv.count("--port") == 1

    parsed = parse_serve_args(argv[1:])  # after "serve"
    assert parsed.port == 4242
    assert parsed.gpu == gpu
    sim = build_replica(parsed)
    tp = int(rendered_args[rendered_args.index("--tensor-parallel-size") + 1])
    assert sim.engine.replica.tp == tp
    speculating = "--speculative-config" in rendered_args
    assert sim.engine.speculative is speculating

    assert plan.front_doors([service])[
        f"{pod['metadata']['namespace']}/{service['metadata']['name']}"
    ].selects(replica)
    labels = plan.target_labels(replica)
    assert labels["app_kubernetes_io_instance"] == deployment["metadata"]["name"]
