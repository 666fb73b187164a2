"""render(): golden output, Kubernetes 1.34 schema validity, vLLM flags, pod security.

Golden files live in ``tests/golden/render/``; regenerate them with
``UPDATE_GOLDEN=1 pytest tests/unit/test_render.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from specops.api.v1alpha1 import (
    PlanStatus,
    ResolvedModelStatus,
    ResolvedStatus,
    SpeculativeDeployment,
)
from specops.render import (
    RenderDecision,
    RenderError,
    RenderOptions,
    render,
    selector_labels,
    selector_string,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
VLLM_LISTS = GOLDEN / "vllm-0.33.0"
K8S = "1.34"
UID = "6b1f0e3c-2a4d-4e8f-9c7b-1d2e3f405060"
SHA_A = "0123456789abcdef0123456789abcdef01234567"
SHA_B = "89abcdef0123456789abcdef0123456789abcdef"
LABEL_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
}


def resource(
    spec: dict[str, Any], name: str = "qwen3-8b", uid: str | None = UID
) -> SpeculativeDeployment:
    metadata: dict[str, Any] = {"name": name, "namespace": "llm"}
    if uid:
        metadata["uid"] = uid
    return SpeculativeDeployment.model_validate(
        {
            "apiVersion": "serving.specops.dev/v1alpha1",
            "kind": "SpeculativeDeployment",
            "metadata": metadata,
            "spec": spec,
        }
    )


def resolved_for(sd: SpeculativeDeployment) -> ResolvedStatus:
    spec = sd.spec
    return ResolvedStatus(
        verifier=ResolvedModelStatus(
            model=spec.verifier.model, revision=spec.verifier.revision, sha=SHA_A
        ),
        speculator=None
        if spec.speculator is None
        else ResolvedModelStatus(
            model=spec.speculator.model, revision=spec.speculator.revision, sha=SHA_B
        ),
    )


def plan_for(tp: int, verifier_gib: float = 15.3, drafter_gib: float = 1.9) -> PlanStatus:
    return PlanStatus(
        tensor_parallel_size=tp,
        gpus_per_replica=tp,
        gpu_type="H100-80GB",
        gpu_memory_gib=79.2,
        usable_memory_gib=round(79.2 * 0.9 * tp, 2),
        verifier_weights_gib=verifier_gib,
        speculator_weights_gib=drafter_gib,
        activation_reserve_gib=4.0,
        kv_budget_gib=50.0,
        kv_bytes_per_token=147456,
        max_model_len=40960,
        max_concurrent_sequences=8,
        explanation=["hand-written plan for tests"],
    )


QWEN = {
    "verifier": {"model": "Qwen/Qwen3-8B"},
    "speculator": {"model": "RedHatAI/Qwen3-8B-speculator.eagle3"},
    "gpu": {"type": "H100-80GB"},
}
LLAMA_70B = {
    "verifier": {"model": "meta-llama/Llama-3.3-70B-Instruct", "revision": "main"},
    "speculator": {
        "model": "RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3",
        "numSpeculativeTokens": 3,
    },
    "gpu": {
        "type": "A100-80GB",
        "productLabel": "nvidia.com/gpu.product",
        "productValue": "NVIDIA-A100-SXM4-80GB",
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
        ],
    },
    "tensorParallelSize": 4,
    "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
    "speculation": {"mode": "Auto", "perBatchSizeTable": True},
    "vllm": {
        "extraArgs": ["--enable-prefix-caching"],
        "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "INFO"}],
    },
    "modelCache": {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs", "size": "400Gi"},
    "hfTokenSecretRef": {"name": "hf-token"},
    "resources": {"cpu": "16", "memory": "128Gi"},
    "monitoring": {"podMonitor": True, "serviceMonitor": True, "labels": {"release": "prom"}},
    "podSecurity": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
}
GPT_OSS_PLAIN = {
    "verifier": {"model": "openai/gpt-oss-20b"},
    "gpu": {"memoryGiB": 94, "resourceName": "nvidia.com/gpu"},
    "replicas": 2,
    "modelCache": {"existingClaimName": "shared-models"},
}
#: Both tenant-reach options on: the NetworkPolicy child and VLLM_API_KEY from a Secret.
QWEN_LOCKED_DOWN = {
    **QWEN,
    "vllm": {"apiKeySecretRef": {"name": "qwen-api-key"}},
    "networkPolicy": {"enabled": True, "allowFromNamespaces": ["ingress-nginx"]},
}

CASES: dict[str, tuple[str, dict[str, Any], int, RenderDecision]] = {
    "qwen3-8b-speculating": ("qwen3-8b", QWEN, 1, RenderDecision(True, 3, 1)),
    "qwen3-8b-speculation-off": ("qwen3-8b", QWEN, 1, RenderDecision(False, None, 1)),
    "llama-3.3-70b-tp4-shared-cache": (
        "llama-70b",
        LLAMA_70B,
        4,
        RenderDecision(True, 3, 2, speculative_table=[(1, 16, 3), (17, 64, 2), (65, 1024, 0)]),
    ),
    "gpt-oss-20b-plain": ("gpt-oss-20b", GPT_OSS_PLAIN, 1, RenderDecision(False, None, 2)),
    "qwen3-8b-locked-down": ("qwen3-8b", QWEN_LOCKED_DOWN, 1, RenderDecision(True, 3, 1)),
}


def render_case(case: str) -> list[dict[str, Any]]:
    name, spec, tp, decision = CASES[case]
    sd = resource(spec, name=name)
    return render(sd, resolved_for(sd), plan_for(tp), decision, options=RenderOptions())


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=True, width=100)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_file(case: str) -> None:
    path = GOLDEN / "render" / f"{case}.yaml"
    text = dump(render_case(case))
    assert "&id" not in text, "objects must not share dicts (YAML anchors, aliasing bugs)"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs: review, then UPDATE_GOLDEN=1"


# A minimal schema for the Prometheus Operator objects (CRDs unknown to kubernetes-validate).
MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"enum": ["PodMonitor", "ServiceMonitor"]},
        "metadata": {"type": "object", "required": ["name", "labels"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "podMetricsEndpoints": {"$ref": "#/$defs/endpoints"},
                "endpoints": {"$ref": "#/$defs/endpoints"},
            },
        },
    },
    "$defs": {
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "port": {"type": "string"},
                    "path": {"type": "string"},
                    "interval": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"},
                },
            },
        }
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_validates_against_kubernetes_1_34(case: str) -> None:
    for obj in render_case(case):
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            jsonschema.Draft202012Validator(MONITOR_SCHEMA).validate(obj)
        else:
            assert kubernetes_validate.validate(obj, K8S, strict=True) == K8S


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_has_labels_and_an_owner(case: str) -> None:
    objects = render_case(case)
    for obj in objects:
        meta = obj["metadata"]
        assert set(meta["labels"]) >= LABEL_KEYS, obj["kind"]
        assert meta["labels"]["app.kubernetes.io/name"] == "vllm"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "specops"
        assert meta["namespace"] == "llm"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "serving.specops.dev/v1alpha1",
                "kind": "SpeculativeDeployment",
                "name": meta["labels"]["app.kubernetes.io/instance"],
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    pod = by_kind(objects, "Deployment")["spec"]["template"]
    assert set(pod["metadata"]["labels"]) >= LABEL_KEYS


def test_no_owner_reference_without_a_uid() -> None:
    sd = resource(QWEN, uid=None)
    objects = render(sd, resolved_for(sd), plan_for(1), RenderDecision(True, 3, 1))
    assert all("ownerReferences" not in o["metadata"] for o in objects)


def read_list(name: str) -> set[str]:
    return {line.strip() for line in (VLLM_LISTS / name).read_text().splitlines() if line.strip()}


def vllm_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "vllm")


def speculative_config_of(args: list[str]) -> dict[str, Any] | None:
    if "--speculative-config" not in args:
        return None
    loaded: dict[str, Any] = json.loads(args[args.index("--speculative-config") + 1])
    return loaded


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_vllm_flag_and_speculative_key_exists_in_vllm_0_33(case: str) -> None:
    flags = read_list("engine_args.txt") | read_list("frontend_args.txt")
    keys = read_list("speculative_config_fields.txt")
    container = vllm_container(render_case(case))
    assert container["command"] == ["vllm"]
    args = container["args"]
    assert args[0] == "serve"
    rendered_flags = [a for a in args if a.startswith("--")]
    assert rendered_flags, "the test must see flags to check"
    for flag in rendered_flags:
        name = flag[2:].split("=", 1)[0].replace("-", "_")
        assert name in flags, f"{flag} is not a vLLM 0.33.0 flag"
    config = speculative_config_of(args)
    if config is not None:
        assert set(config) <= keys, set(config) - keys
        forbidden = {"tensor_parallel_size", "target_model_config", "draft_model_config"}
        assert not set(config) & forbidden, "vLLM rejects these inside --speculative-config"


def test_speculative_config_is_compact_sorted_json_pinned_to_the_drafter_sha() -> None:
    args = vllm_container(render_case("qwen3-8b-speculating"))["args"]
    raw = args[args.index("--speculative-config") + 1]
    assert raw == (
        '{"method":"eagle3","model":"RedHatAI/Qwen3-8B-speculator.eagle3",'
        f'"num_speculative_tokens":3,"revision":"{SHA_B}"}}'
    )
    assert args[1:4] == ["Qwen/Qwen3-8B", "--revision", SHA_A]


def test_speculation_off_drops_the_speculative_config_but_keeps_the_download() -> None:
    objects = render_case("qwen3-8b-speculation-off")
    assert speculative_config_of(vllm_container(objects)["args"]) is None
    pod = by_kind(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["specops.dev/speculation"] == "off"
    names = [c["name"] for c in pod["spec"]["initContainers"]]
    assert names == ["download-verifier", "download-speculator"], "so turning it on is fast"


def test_mode_never_skips_the_drafter_download() -> None:
    sd = resource({**QWEN, "speculation": {"mode": "Never"}})
    objects = render(sd, resolved_for(sd), plan_for(1), RenderDecision(False, None, 1))
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["download-verifier"]


def test_batch_size_table_goes_into_the_speculative_config() -> None:
    config = speculative_config_of(
        vllm_container(render_case("llama-3.3-70b-tp4-shared-cache"))["args"]
    )
    assert config is not None
    assert config["num_speculative_tokens_per_batch_size"] == [
        [1, 16, 3],
        [17, 64, 2],
        [65, 1024, 0],
    ]


@pytest.mark.parametrize(("case", "tp"), [(c, v[2]) for c, v in sorted(CASES.items())])
def test_gpus_shared_memory_and_memory_follow_the_plan(case: str, tp: int) -> None:
    objects = render_case(case)
    container = vllm_container(objects)
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == str(tp)
    assert resources["limits"]["nvidia.com/gpu"] == str(tp)
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == str(tp)
    volumes = {
        v["name"]: v for v in by_kind(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{2 * tp}Gi"}
    request_gi = int(resources["requests"]["memory"].removesuffix("Gi"))
    assert resources["limits"]["memory"] == f"{request_gi + 2 * tp}Gi"


def test_startup_probe_allows_a_long_model_load() -> None:
    container = vllm_container(render_case("qwen3-8b-speculating"))
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert 20 * 60 <= budget <= 30 * 60
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_models_download_at_pinned_shas_and_vllm_runs_offline() -> None:
    objects = render_case("llama-3.3-70b-tp4-shared-cache")
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    downloads = pod["initContainers"]
    assert [d["command"][:5] for d in downloads] == [
        ["hf", "download", "meta-llama/Llama-3.3-70B-Instruct", "--revision", SHA_A],
        [
            "hf",
            "download",
            "RedHatAI/Llama-3.3-70B-Instruct-speculator.eagle3",
            "--revision",
            SHA_B,
        ],
    ]
    for download in downloads:
        env = {e["name"]: e for e in download["env"]}
        assert env["HF_HOME"]["value"] == "/models/hf"
        assert env["HF_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}
        }
    env = {e["name"]: e.get("value") for e in vllm_container(objects)["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"] == "/models/hf"
    assert "HF_TOKEN" not in env, "the server never needs the token"
    claim = by_kind(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_read_write_once_cache_is_one_ephemeral_claim_per_pod() -> None:
    objects = render_case("qwen3-8b-speculating")
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    template = cache["ephemeral"]["volumeClaimTemplate"]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    # (15.3 + 1.9) x 1.25 + 10 = 31.5 -> 32 GiB
    assert template["spec"]["resources"]["requests"]["storage"] == "32Gi"
    assert set(template["metadata"]["labels"]) >= LABEL_KEYS


RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The checks of the "restricted" Pod Security Standard (Kubernetes 1.34)."""
    problems = []
    pod_ctx = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(key)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    pod_seccomp = pod_ctx.get("seccompProfile", {}).get("type")
    for container in pod.get("initContainers", []) + pod["containers"]:
        ctx = container.get("securityContext", {})
        name = container["name"]
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities added")
        if not (
            ctx.get("runAsNonRoot") or (pod_ctx.get("runAsNonRoot") and "runAsNonRoot" not in ctx)
        ):
            problems.append(f"{name}: runAsNonRoot")
        if ctx.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        if ctx.get("seccompProfile", {}).get("type", pod_seccomp) not in (
            "RuntimeDefault",
            "Localhost",
        ):
            problems.append(f"{name}: seccompProfile")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize("case", sorted(CASES))
def test_pods_meet_the_restricted_pod_security_standard(case: str) -> None:
    pod = by_kind(render_case(case), "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


def test_restricted_check_catches_a_root_privileged_pod() -> None:
    pod = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"privileged": True, "runAsUser": 0}}],
    }
    assert len(restricted_violations(pod)) >= 6


def test_no_fixed_uid_unless_the_user_asks() -> None:
    pod = by_kind(render_case("qwen3-8b-speculating"), "Deployment")["spec"]["template"]["spec"]
    assert "runAsUser" not in json.dumps(pod)
    pinned = by_kind(render_case("llama-3.3-70b-tp4-shared-cache"), "Deployment")
    assert pinned["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000


def test_node_selection_and_gpu_toleration() -> None:
    pod = by_kind(render_case("qwen3-8b-speculating"), "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"specops.dev/gpu-type": "H100-80GB"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    pod = by_kind(render_case("llama-3.3-70b-tp4-shared-cache"), "Deployment")["spec"]["template"][
        "spec"
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert len(pod["tolerations"]) == 2
    pod = by_kind(render_case("gpt-oss-20b-plain"), "Deployment")["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod, "no GPU type and no product value: nothing to select on"


def test_replicas_strategy_service_and_budget() -> None:
    objects = render_case("llama-3.3-70b-tp4-shared-cache")
    deploy = by_kind(objects, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert deploy["spec"]["selector"]["matchLabels"] == selector_labels("llama-70b")
    svc = by_kind(objects, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == selector_labels("llama-70b")
    assert by_kind(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert by_kind(objects, "PodMonitor")["metadata"]["labels"]["release"] == "prom"
    assert selector_string("x") == (
        "app.kubernetes.io/component=server,app.kubernetes.io/instance=x,app.kubernetes.io/name=vllm"
    )


def test_rollout_is_overridable() -> None:
    sd = resource({**QWEN, "rollout": {"maxSurge": 1, "maxUnavailable": 0}})
    deploy = by_kind(
        render(sd, resolved_for(sd), plan_for(1), RenderDecision(True, 3, 1)), "Deployment"
    )
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_rendering_is_deterministic_and_the_hash_tracks_the_pod_spec() -> None:
    first = dump(render_case("qwen3-8b-speculating"))
    assert first == dump(render_case("qwen3-8b-speculating"))
    on = by_kind(render_case("qwen3-8b-speculating"), "Deployment")["spec"]["template"]
    off = by_kind(render_case("qwen3-8b-speculation-off"), "Deployment")["spec"]["template"]
    key = "specops.dev/config-hash"
    assert on["metadata"]["annotations"][key] != off["metadata"]["annotations"][key]


@pytest.mark.parametrize(
    ("spec", "plan", "decision", "message"),
    [
        pytest.param(
            {k: v for k, v in QWEN.items() if k != "speculator"},
            plan_for(1),
            RenderDecision(True, 3, 1),
            "no resolved spec.speculator",
            id="speculation on without a drafter",
        ),
        pytest.param(
            QWEN,
            plan_for(1).model_copy(update={"gpus_per_replica": 2}),
            RenderDecision(True, 3, 1),
            "one GPU per tensor-parallel rank",
            id="a plan whose GPU count is not its TP",
        ),
        pytest.param(
            QWEN, plan_for(1), RenderDecision(True, 3, -1), "negative", id="negative replicas"
        ),
        pytest.param(
            {**QWEN, "speculation": {"mode": "Never"}},
            plan_for(1),
            RenderDecision(True, 3, 1),
            "Never",
            id="speculation on against mode Never",
        ),
        pytest.param(
            QWEN,
            plan_for(1),
            RenderDecision(True, 3, 1, speculative_table=[(8, 4, 2)]),
            "band",
            id="a batch-size band upside down",
        ),
    ],
)
def test_contradictory_inputs_raise_render_error(
    spec: dict[str, Any], plan: PlanStatus, decision: RenderDecision, message: str
) -> None:
    sd = resource(spec)
    with pytest.raises(RenderError, match=message):
        render(sd, resolved_for(sd), plan, decision)
