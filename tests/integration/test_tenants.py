"""Untrusted tenants: each attack of issue 11, tried as a tenant would, fails.

The set-up is a shared cluster as a platform team runs it: SpecOps installed
with its Helm chart in cluster scope (the widest RBAC it ships), the operator
running as a real ``specops run`` process under a token of the chart's
ServiceAccount, at ``--log-level DEBUG``. Two tenants, ``a`` and ``b``, each act
through a ServiceAccount that may only manage SpeculativeDeployments (and read
their status and Events) in its own namespace; a third namespace holds a
Secret nobody else should see. The Hub is the loopback stand-in, serving a
gated repo (access with the tenant's or the operator's token) and repos whose
``config.json`` is hostile.

Every secret value is a marker string: the last test looks for each of them
(and its base64) in everything a tenant or an operator of the cluster can read:
statuses, Events, the operator's log at DEBUG and its ``/metrics``.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chart_harness import install, new_release, run, token_kubeconfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from operator_harness import (
    GROUP,
    MIRROR,
    PLURAL,
    VERSION,
    Kube,
    OperatorProcess,
    install_crd,
    resource,
    stays_quiet,
    wait_for,
)

from hubserver import HubServer
from specops.devcluster import Cluster

pytestmark = pytest.mark.integration

TENANT_TOKEN = "hf_TENANTMARKER0a1b2c3d4e5f"
PLAIN_MARKER = "hf_PLAINMARKER9z8y7x6w5v"
VICTIM_MARKER = "hf_VICTIMMARKER1q2w3e4r5t"
OPERATOR_TOKEN = "hf_OPERATORMARKER6y7u8i9o"
MARKERS = (TENANT_TOKEN, PLAIN_MARKER, VICTIM_MARKER, OPERATOR_TOKEN)

GATED = "gated-org/Qwen3-8B"
QWEN_CONFIG = (MIRROR / "Qwen" / "Qwen3-8B" / "config.json").read_bytes()
HOSTILE = ("hostile/huge", "hostile/deep", "hostile/bigint", "hostile/not-utf8")


def _hostile_files() -> dict[str, bytes]:
    """Built when the suite runs, not at import (the first is 80 MB): a config bigger
    than the operator's 512Mi memory limit once parsed, which the cap must refuse
    unread; nesting deeper than any parser's recursion; an integer past Python's
    int-str limit; bytes that are not UTF-8."""
    return dict(
        zip(
            HOSTILE,
            (
                b'{"architectures": ["X"], "pad": [' + b"0," * 40_000_000 + b"0]}",
                b"[" * 200_000 + b"]" * 200_000,
                b'{"hidden_size": 1' + b"0" * 5000 + b"}",
                b'{"model_type": "\xff\xfe"}',
            ),
            strict=True,
        )
    )


#: A tenant may manage SpeculativeDeployments and read what the operator says about them.
TENANT_RULES = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["*"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]


@dataclass
class World:
    cluster: Cluster
    admin: client.ApiClient
    hub: HubServer
    operator: OperatorProcess
    ops: str
    a: str
    b: str
    victim: str
    tenant_a: client.ApiClient
    tenant_b: client.ApiClient

    def kube(self, namespace: str) -> Kube:
        return Kube(self.admin, namespace)

    def create_as(self, tenant: client.ApiClient, namespace: str, name: str, spec: Any) -> Any:
        body = resource(name, spec)
        body["metadata"]["namespace"] = namespace
        return client.CustomObjectsApi(tenant).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )


def _api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def _namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        {"metadata": {"name": name, "labels": {"specops.dev/test-namespace": "true"}}}
    )

    def has_default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_for(f"ServiceAccount default in {name}", has_default_sa, timeout=60)
    return name


def _tenant(cluster: Cluster, admin: client.ApiClient, namespace: str, path: Path) -> Path:
    """ServiceAccount ``tenant`` that may only manage SpeculativeDeployments here."""
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "tenant"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "tenant"}, "rules": TENANT_RULES})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "tenant"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    )
    return token_kubeconfig(cluster, admin, namespace, "tenant", path)


def _secret(core: client.CoreV1Api, namespace: str, name: str, value: str, labelled: bool) -> None:
    labels = {"serving.specops.dev/hub-token": "true"} if labelled else {}
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": name, "labels": labels}, "stringData": {"HF_TOKEN": value}},
    )


@pytest.fixture(scope="module")
def world(kube_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tenants")
    hub = HubServer()
    hub.add_fixtures()
    hub.add_repo(
        GATED,
        {"config.json": QWEN_CONFIG},
        gated=True,
        allowed_tokens={TENANT_TOKEN, OPERATOR_TOKEN},
    )
    for repo, data in _hostile_files().items():
        hub.add_repo(repo, {"config.json": data})
    with kube_cluster.api_client() as admin, hub:
        core = client.CoreV1Api(admin)
        install_crd(admin)
        ops, a, b, victim = (_namespace(core, p) for p in ("t-ops", "t-a", "t-b", "t-victim"))
        release = new_release()
        operator: OperatorProcess | None = None
        try:
            install(kube_cluster, admin, release, ops, "rbac.scope=cluster", "replicaCount=1")
            sa_config = token_kubeconfig(kube_cluster, admin, ops, f"{release}-specops", tmp / "op")
            _secret(core, a, "hf", TENANT_TOKEN, labelled=True)
            _secret(core, a, "plain", PLAIN_MARKER, labelled=False)
            _secret(core, victim, "victim-token", VICTIM_MARKER, labelled=True)
            operator = OperatorProcess(
                str(sa_config),
                ops,
                tmp,
                hub_endpoint=hub.endpoint,
                mirror=None,
                extra_env={"SPECOPS_LOG_LEVEL": "DEBUG", "SPECOPS_HUB_TOKEN": OPERATOR_TOKEN},
                extra_args=["--namespace", a, "--namespace", b],
            )
            operator.start()
            yield World(
                kube_cluster,
                admin,
                hub,
                operator,
                ops,
                a,
                b,
                victim,
                _api_client(_tenant(kube_cluster, admin, a, tmp / "tenant-a")),
                _api_client(_tenant(kube_cluster, admin, b, tmp / "tenant-b")),
            )
        finally:
            if operator is not None:
                operator.stop()
                print(f"--- operator log (tail) ---\n{operator.logs()}")
            run(kube_cluster, "helm", "uninstall", release, "-n", ops, "--wait", check=False)
            for name in (ops, a, b, victim):
                try:
                    core.delete_namespace(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise


def _plain(model: str = "Qwen/Qwen3-8B", **spec: Any) -> dict[str, Any]:
    """A spec without speculation: a Deployment of one GPU at most."""
    return {
        "verifier": {"model": model},
        "gpu": {"type": "H100-80GB"},
        "speculation": {"mode": "Never"},
        **spec,
    }


def _condition_with_reason(kube: Kube, name: str, reason: str) -> dict[str, Any] | None:
    for cond in (kube.get(name).get("status") or {}).get("conditions") or []:
        if cond.get("reason") == reason:
            return dict(cond)
    return None


def _wait_reason(kube: Kube, name: str, reason: str, timeout: float = 60.0) -> dict[str, Any]:
    def explain() -> str:
        return json.dumps((kube.get(name).get("status") or {}).get("conditions"), indent=1)

    return wait_for(
        f"{name}: a condition with reason {reason}",
        lambda: _condition_with_reason(kube, name, reason),
        timeout=timeout,
        explain=explain,
    )


# --------------------------------------------------------------------------- the set-up is real


def test_tenants_really_are_confined_to_their_namespace(world: World) -> None:
    """Without this the suite would prove nothing: the tenants are not admins."""
    own = client.CoreV1Api(world.tenant_a)
    with pytest.raises(ApiException) as secrets:
        own.list_namespaced_secret(world.a)
    assert secrets.value.status == 403
    with pytest.raises(ApiException) as elsewhere:
        world.create_as(world.tenant_a, world.b, "intruder", _plain())
    assert elsewhere.value.status == 403


# --------------------------------------------------------------------------- Secrets


@pytest.mark.parametrize(
    "name",
    [
        "../../t-victim/secrets/victim-token",
        "..",
        "victim-token/../../x",
        "a/b",
        "x%2F..%2Fy",
        "Victim_Token",
    ],
)
def test_a_secret_reference_cannot_leave_the_namespace(world: World, name: str) -> None:
    spec = _plain(hfTokenSecretRef={"name": name})
    with pytest.raises(ApiException) as refused:
        world.create_as(world.tenant_a, world.a, f"walk-{uuid.uuid4().hex[:6]}", spec)
    assert refused.value.status == 422, refused.value.body
    assert "hfTokenSecretRef.name" in str(refused.value.body)


def test_an_unlabelled_secret_is_as_absent_as_a_missing_one(world: World) -> None:
    kube = world.kube(world.a)
    world.create_as(
        world.tenant_a, world.a, "plain", _plain(GATED, hfTokenSecretRef={"name": "plain"})
    )
    world.create_as(
        world.tenant_a, world.a, "absent", _plain(GATED, hfTokenSecretRef={"name": "absent"})
    )
    plain = _wait_reason(kube, "plain", "TokenSecretNotFound")
    absent = _wait_reason(kube, "absent", "TokenSecretNotFound")
    assert plain["status"] == absent["status"] == "False"
    # One message for both: whether an unlabelled Secret exists is not revealed.
    assert plain["message"].replace("plain", "X") == absent["message"].replace("absent", "X")
    assert "serving.specops.dev/hub-token" in plain["message"]
    sent = [r.authorization or "" for r in world.hub.requests]
    assert not any(PLAIN_MARKER in header for header in sent), "an unlabelled Secret was used"


def test_a_gated_model_needs_the_tenants_own_token(world: World) -> None:
    """Tenant a resolves the gated repo with its token; tenant b, with none, is refused
    (neither a's cached resolution nor the operator's own token serves b)."""
    kube_a, kube_b = world.kube(world.a), world.kube(world.b)
    world.create_as(
        world.tenant_a, world.a, "gated", _plain(GATED, hfTokenSecretRef={"name": "hf"})
    )
    kube_a.wait_condition("gated", "ModelsResolved", "True", timeout=60)
    world.create_as(world.tenant_b, world.b, "gated", _plain(GATED))
    refused = kube_b.wait_condition("gated", "ModelsResolved", "False", timeout=60)
    assert refused["reason"] == "GatedModel", refused
    operator_token_used = [
        r.path
        for r in world.hub.requests
        if GATED in r.path and OPERATOR_TOKEN in (r.authorization or "")
    ]
    assert not operator_token_used, "the operator's token was spent on a tenant's resource"


# --------------------------------------------------------------------------- the operator's files


#: The first refusal's message with the path blanked; every other refusal must match it.
_LOCAL_PATH_MESSAGES: dict[str, str] = {}


@pytest.mark.parametrize("path", ["/etc", "/proc/self", "/nonexistent-4f1e/x"])
def test_local_paths_are_refused_without_saying_whether_they_exist(world: World, path: str) -> None:
    kube = world.kube(world.b)
    name = f"path-{uuid.uuid4().hex[:6]}"
    world.create_as(world.tenant_b, world.b, name, _plain(path))
    refused = kube.wait_condition(name, "ModelsResolved", "False", timeout=60)
    assert refused["reason"] == "LocalPathNotAllowed", refused
    baseline = _LOCAL_PATH_MESSAGES.setdefault("message", refused["message"].replace(path, "P"))
    assert refused["message"].replace(path, "P") == baseline


# --------------------------------------------------------------------------- managed vLLM flags


@pytest.mark.parametrize(
    "extra",
    [
        ["--tensor_parallel_size=8"],
        ["-tp", "4"],
        ["--tensor-parallel=8"],
        ["--max-model", "77"],
        ["-sc", '{"method":"ngram"}'],
        ["--speculative_config", '{"method":"ngram"}'],
        ["--speculative-config.num_speculative_tokens", "9"],
        ["--config", "/etc/passwd"],
        ["--port=9000"],
        ["--revision", "main"],
        ["--served_model_name", "other"],
    ],
)
def test_managed_flags_cannot_be_overridden(world: World, extra: list[str]) -> None:
    """Refused at admission (CEL), or else by the operator with a condition; never rendered."""
    kube = world.kube(world.a)
    name = f"flags-{uuid.uuid4().hex[:6]}"
    try:
        world.create_as(world.tenant_a, world.a, name, _plain(vllm={"extraArgs": extra}))
    except ApiException as exc:
        assert exc.status == 422, exc.body
        assert "extraArgs" in str(exc.body)
        return
    refused = kube.wait_condition(name, "Compatible", "False", timeout=60)
    assert refused["reason"] == "InvalidSpec", refused
    assert kube.deployment(name) is None


def test_a_served_model_name_cannot_smuggle_a_flag(world: World) -> None:
    """Rendered as ``--served-model-name VALUE``: a VALUE that vLLM reads as a dotted
    option would swallow the managed flag after it."""
    spec = _plain(servedModelName="--hf-overrides.x")
    with pytest.raises(ApiException) as refused:
        world.create_as(world.tenant_a, world.a, f"name-{uuid.uuid4().hex[:6]}", spec)
    assert refused.value.status == 422, refused.value.body
    assert "servedModelName" in str(refused.value.body)


# --------------------------------------------------------------------------- objects we do not own


def test_objects_the_resource_does_not_own_are_never_taken_over(world: World) -> None:
    kube = world.kube(world.a)
    squatter = {
        "metadata": {"name": "squatter", "labels": {"app": "squatter"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "squatter"}},
            "template": {
                "metadata": {"labels": {"app": "squatter"}},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    }
    created = kube.apps.create_namespaced_deployment(world.a, squatter)

    def settled() -> Any:
        live = kube.apps.read_namespaced_deployment("squatter", world.a)
        return live if live.status.observed_generation == created.metadata.generation else None

    # The deployment controller writes the status once after creation: only what
    # changes after that (and after a quiet moment) can be the operator's doing.
    wait_for("the squatter's status", settled)
    stays_quiet(
        "the squatter before the tenant acts",
        lambda: kube.apps.read_namespaced_deployment("squatter", world.a).metadata.resource_version,
        2.0,
    )
    before = kube.apps.read_namespaced_deployment("squatter", world.a)
    world.create_as(world.tenant_a, world.a, "squatter", _plain())
    _wait_reason(kube, "squatter", "ObjectNotOwned")
    wait_for("an ObjectNotOwned Event", lambda: "ObjectNotOwned" in kube.event_reasons("squatter"))
    after = kube.apps.read_namespaced_deployment("squatter", world.a)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert not after.metadata.owner_references
    managers = {m.manager for m in after.metadata.managed_fields or []}
    assert "specops" not in managers, managers


# --------------------------------------------------------------------------- stopping the operator


def test_hostile_configs_cost_only_their_own_resource(world: World) -> None:
    kube_a, kube_b = world.kube(world.a), world.kube(world.b)
    for index, repo in enumerate(HOSTILE):
        world.create_as(world.tenant_b, world.b, f"hostile-{index}", _plain(repo))
    world.create_as(world.tenant_a, world.a, "healthy", _plain())
    for index, repo in enumerate(HOSTILE):
        refused = kube_b.wait_condition(f"hostile-{index}", "ModelsResolved", "False", timeout=90)
        assert refused["message"], repo
    kube_a.wait_condition("healthy", "Compatible", "True", timeout=90)
    wait_for("the healthy resource's Deployment", lambda: kube_a.deployment("healthy"))
    assert world.operator.proc is not None and world.operator.proc.poll() is None
    peak_kib = _peak_rss_kib(world.operator)
    assert peak_kib < 512 * 1024, f"operator peaked at {peak_kib // 1024} MiB (chart limit 512Mi)"


def _peak_rss_kib(operator: OperatorProcess) -> int:
    assert operator.proc is not None
    for line in Path(f"/proc/{operator.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


# --------------------------------------------------------------------------- properties

_FLAGISH = st.text(alphabet='-_.=tpscmodelrvxO0123456789{}:" ', min_size=1, max_size=40)
_NAMEISH = st.text(alphabet="abcxyz-./_%09AZ", min_size=1, max_size=30)
_MODELISH = st.one_of(
    st.sampled_from(["Qwen/Qwen3-8B", GATED, "/etc", "~root", "./x", "org/..", "a/b/c"]),
    st.text(min_size=1, max_size=60),
)


@st.composite
def _hostile_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "verifier": {"model": draw(_MODELISH), "revision": draw(_NAMEISH)},
        "gpu": {"type": draw(st.sampled_from(["H100-80GB", "L4-24GB", "B200-180GB"]))},
        "speculation": {"mode": draw(st.sampled_from(["Never", "Auto", "Always"]))},
    }
    if draw(st.booleans()):
        spec["speculator"] = {"model": draw(_MODELISH)}
    if draw(st.booleans()):
        spec["hfTokenSecretRef"] = {"name": draw(_NAMEISH), "key": draw(_NAMEISH)}
    if draw(st.booleans()):
        spec["vllm"] = {"extraArgs": draw(st.lists(_FLAGISH, max_size=4))}
    if draw(st.booleans()):
        spec["maxModelLen"] = draw(st.integers(min_value=-5, max_value=10**12))
    return spec


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=_hostile_specs())
def test_hostile_specs_end_in_a_refusal_or_a_condition(world: World, spec: dict[str, Any]) -> None:
    """Whatever a tenant writes is refused by the API server or answered with conditions
    for its generation; never a crash, a hang or silence."""
    kube = world.kube(world.b)
    name = f"prop-{uuid.uuid4().hex[:8]}"
    try:
        world.create_as(world.tenant_b, world.b, name, spec)
    except ApiException as exc:
        assert exc.status in (400, 422), exc.body
        return
    try:
        wait_for(f"{name}: conditions for generation 1", lambda: _answered(kube, name), timeout=60)
    finally:
        client.CustomObjectsApi(world.admin).delete_namespaced_custom_object(
            GROUP, VERSION, world.b, PLURAL, name
        )
    assert world.operator.proc is not None and world.operator.proc.poll() is None


def _answered(kube: Kube, name: str) -> bool:
    conditions = (kube.get(name).get("status") or {}).get("conditions") or []
    return bool(conditions) and all(c.get("observedGeneration") == 1 for c in conditions)


_CONFIG_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def _hostile_configs(draw: st.DrawFn) -> bytes:
    """Real config.json with hostile edits, or hostile bytes outright."""
    base = json.loads(QWEN_CONFIG)
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=4)):
        base[key] = draw(_CONFIG_VALUES)
    data = json.dumps(base).encode()
    return draw(
        st.sampled_from(
            [
                data,
                data[: len(data) // 2],
                b"[" * 5000 + data,
                data.replace(b"4096", b"4096" + b"9" * 5000, 1),
            ]
        )
    )


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=_hostile_configs())
def test_hostile_config_files_end_in_a_condition(world: World, config: bytes) -> None:
    kube = world.kube(world.b)
    repo = f"hostile/p{uuid.uuid4().hex[:8]}"
    world.hub.add_repo(repo, {"config.json": config})
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    world.create_as(world.tenant_b, world.b, name, _plain(repo))
    try:
        wait_for(f"{name}: conditions for generation 1", lambda: _answered(kube, name), timeout=60)
    finally:
        client.CustomObjectsApi(world.admin).delete_namespaced_custom_object(
            GROUP, VERSION, world.b, PLURAL, name
        )
    assert world.operator.proc is not None and world.operator.proc.poll() is None


# --------------------------------------------------------------------------- what leaks


def test_no_secret_value_reaches_anything_a_tenant_or_admin_reads(world: World) -> None:
    """Runs last: every marker, plain or base64, is absent from statuses, Events, the
    operator's DEBUG log and its metrics; and no cycle ended in a traceback."""
    texts: dict[str, str] = {}
    for namespace in (world.a, world.b):
        listed = client.CustomObjectsApi(world.admin).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )
        texts[f"statuses in {namespace}"] = json.dumps(
            [item.get("status") for item in listed["items"]]
        )
        events = client.CoreV1Api(world.admin).list_namespaced_event(namespace).items
        texts[f"events in {namespace}"] = "\n".join(f"{e.reason} {e.message}" for e in events)
    texts["operator log"] = world.operator.log_path.read_text()
    url = f"http://127.0.0.1:{world.operator.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        texts["metrics"] = response.read().decode()
    assert "DEBUG" in texts["operator log"], "the operator did not log at DEBUG: proves nothing"
    for marker in MARKERS:
        encoded = base64.b64encode(marker.encode()).decode()
        for where, text in texts.items():
            assert marker not in text, f"{marker} leaked into {where}"
            assert encoded not in text, f"base64 of {marker} leaked into {where}"
    assert "Traceback" not in texts["operator log"], texts["operator log"][-4000:]
