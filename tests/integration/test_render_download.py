"""The rendered download init containers really fetch the pinned commits, and vLLM's
offline lookups then find them: run against a loopback Hub with the real ``hf`` CLI.

The containers' own ``command`` and ``env`` are executed (only ``HF_HOME`` is
moved under a temporary directory, via ``RenderOptions.cache_mount_path``, and
``HF_ENDPOINT`` points at the loopback Hub), so a wrong flag, a pattern that
does not exclude, or a revision that is not pinned fails here, not in a GPU pod
twenty minutes into a rollout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from hubserver import HubServer, git_blob_sha
from specops.api.v1alpha1 import (
    PlanStatus,
    ResolvedModelStatus,
    ResolvedStatus,
    SpeculativeDeployment,
)
from specops.render import RenderDecision, RenderOptions, render

pytestmark = pytest.mark.integration

HF = Path(sys.executable).parent / "hf"
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)/?$")
TOKEN = "hf_loopback_token"
VERIFIER_FILES = {
    "config.json": b'{"architectures": ["Qwen3ForCausalLM"]}',
    "tokenizer.json": b"{}",
    "model-00001-of-00001.safetensors": b"verifier weights",
    "original/consolidated.00.pth": b"duplicate weights nobody needs",
}
DRAFTER_FILES = {
    "config.json": b'{"speculators_model_type": "eagle3"}',
    "model.safetensors": b"drafter weights",
}


def with_tree_listing(hub: HubServer) -> None:
    """Add ``GET /api/models/{repo}/tree/{rev}``, which ``hf download`` lists files with.

    The shared stand-in serves only what SpecOps' resolver calls; the download
    the pods run needs the listing too, answered as the Hub does.
    """
    base: Any = hub._httpd.RequestHandlerClass

    class TreeHandler(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:
            match = TREE.match(unquote(urlsplit(self.path).path))
            if match is None:
                super().do_GET()
                return
            hub._record("GET", unquote(urlsplit(self.path).path), None)
            repo = hub.repos.get(match["repo"])
            sha = repo.lookup(match["rev"]) if repo is not None else None
            if repo is None or sha is None:
                self._error(404, "RevisionNotFound", "Invalid rev id", body=True)
                return
            items = [
                {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha(data)}
                for name, data in sorted(repo.commits[sha].items())
            ]
            payload = json.dumps(items).encode()
            self._send(200, payload, body=True, headers={"Content-Type": "application/json"})

    hub._httpd.RequestHandlerClass = TreeHandler


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer()
    with_tree_listing(server)
    with server:
        yield server


def rendered(hub: HubServer, cache: Path, token_ref: bool) -> tuple[list[dict[str, Any]], str, str]:
    verifier = hub.add_repo("acme/chat-8b", VERIFIER_FILES, gated=token_ref, allowed_tokens={TOKEN})
    drafter = hub.add_repo("acme/chat-8b-speculator.eagle3", DRAFTER_FILES)
    v_sha, d_sha = verifier.lookup("main"), drafter.lookup("main")
    assert v_sha and d_sha
    # A newer commit on main must not be what the pods download: they pin the SHA.
    verifier.add_commit({**VERIFIER_FILES, "config.json": b'{"moved": true}'})
    spec: dict[str, Any] = {
        "verifier": {"model": "acme/chat-8b"},
        "speculator": {"model": "acme/chat-8b-speculator.eagle3"},
        "gpu": {"type": "H100-80GB"},
    }
    if token_ref:
        spec["hfTokenSecretRef"] = {"name": "hf", "key": "token"}
    resource = SpeculativeDeployment.model_validate({"metadata": {"name": "chat"}, "spec": spec})
    resolved = ResolvedStatus(
        verifier=ResolvedModelStatus(model="acme/chat-8b", revision="main", sha=v_sha),
        speculator=ResolvedModelStatus(
            model="acme/chat-8b-speculator.eagle3", revision="main", sha=d_sha
        ),
    )
    plan = PlanStatus(
        tensor_parallel_size=1,
        gpus_per_replica=1,
        gpu_memory_gib=79.2,
        usable_memory_gib=71.3,
        verifier_weights_gib=15.3,
        activation_reserve_gib=2.3,
        kv_budget_gib=50,
        kv_bytes_per_token=147456,
        max_model_len=32768,
        max_concurrent_sequences=11,
    )
    options = RenderOptions(hf_endpoint=hub.endpoint, cache_mount_path=str(cache))
    objects = render(resource, resolved, plan, RenderDecision(True, 3, 1), options=options)
    return objects, v_sha, d_sha


def container_env(container: dict[str, Any], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet would build it (secret refs resolved)."""
    env = {"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1"}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[(ref["name"], ref["key"])]
    env["HOME"] = env["HF_HOME"]  # /tmp in the pod; keep the test's writes in tmp_path
    return env


def run_init_containers(
    objects: list[dict[str, Any]], secrets: dict[tuple[str, str], str]
) -> list[subprocess.CompletedProcess[str]]:
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    results = []
    for container in pod["initContainers"]:
        command = container["command"]
        assert command[0] == "hf"
        results.append(
            subprocess.run(
                [str(HF), *command[1:]],
                env=container_env(container, secrets),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        )
    return results


def test_downloads_land_at_the_pinned_shas_and_vllm_finds_them_offline(
    hub: HubServer, tmp_path: Path
) -> None:
    objects, v_sha, d_sha = rendered(hub, tmp_path, token_ref=False)
    for result in run_init_containers(objects, secrets={}):
        assert result.returncode == 0, result.stderr

    snapshots = tmp_path / "hf" / "hub"
    verifier_dir = snapshots / "models--acme--chat-8b" / "snapshots" / v_sha
    drafter_dir = snapshots / "models--acme--chat-8b-speculator.eagle3" / "snapshots" / d_sha
    assert (verifier_dir / "config.json").read_bytes() == VERIFIER_FILES["config.json"]
    assert (drafter_dir / "model.safetensors").is_file()
    assert not (verifier_dir / "original").exists(), "original/* is excluded"

    # vLLM's view: the server container's env (HF_HUB_OFFLINE=1), its --revision and the
    # speculative config's model/revision, looked up the way vLLM's loaders do.
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    server = pod["containers"][0]
    args = server["args"]
    spec_config = json.loads(args[args.index("--speculative-config") + 1])
    lookups = [
        (args[1], args[args.index("--revision") + 1]),
        (spec_config["model"], spec_config["revision"]),
    ]
    env = container_env(server, secrets={})
    assert env["HF_HUB_OFFLINE"] == "1"
    before = len(hub.requests)
    code = (
        "import sys\n"
        "from huggingface_hub import hf_hub_download, snapshot_download\n"
        "for repo, rev in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    print(hf_hub_download(repo, 'config.json', revision=rev))\n"
        "    print(snapshot_download(repo, revision=rev,"
        " allow_patterns=['*.safetensors', '*.json']))\n"
    )
    flat = [item for pair in lookups for item in pair]
    result = subprocess.run(
        [sys.executable, "-c", code, *flat],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(verifier_dir) in result.stdout and str(drafter_dir) in result.stdout
    assert len(hub.requests) == before, "offline lookups must not reach the Hub"


def test_gated_verifier_downloads_with_the_token_from_the_secret(
    hub: HubServer, tmp_path: Path
) -> None:
    objects, _, _ = rendered(hub, tmp_path, token_ref=True)
    results = run_init_containers(objects, secrets={("hf", "token"): TOKEN})
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]


def test_gated_verifier_without_access_fails_the_init_container(
    hub: HubServer, tmp_path: Path
) -> None:
    objects, _, _ = rendered(hub, tmp_path, token_ref=True)
    results = run_init_containers(objects, secrets={("hf", "token"): "wrong"})
    assert results[0].returncode != 0
