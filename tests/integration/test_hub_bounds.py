"""Resolution for untrusted tenants, against the loopback Hub and the real huggingface_hub.

What one credential resolved is never served to another; the caches stay
bounded; files over the cap are refused before download (and again on disk);
hostile configs end in a HubError.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubserver import FIXTURES, HubServer
from specops.hub import (
    GatedModel,
    HubError,
    HubUnavailable,
    InvalidModelConfig,
    ModelFileTooLarge,
    Resolver,
)

pytestmark = pytest.mark.integration

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen3-8B"
MiB = 1024 * 1024


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_fixtures()
        yield server


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's HF token and cache out of the tests."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SPECOPS_HUB_MIRROR", raising=False)


def gate(hub: HubServer, repo: str, *tokens: str) -> None:
    hub.repos[repo].gated = True
    hub.repos[repo].allowed_tokens = set(tokens)


# --------------------------------------------------------------------------- credentials


def test_a_gated_resolution_is_never_served_to_another_credential(
    hub: HubServer, tmp_path: Path
) -> None:
    gate(hub, LLAMA, "hf_a")
    resolver = Resolver(implicit_token=False)

    def resolve(token: str | None) -> object:
        return resolver.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path, token=token)

    granted = resolve("hf_a")
    for other in (None, "hf_b"):
        before = len(hub.requests)
        with pytest.raises(GatedModel):
            resolve(other)
        assert len(hub.requests) > before, "the refusal must come from the Hub, not a cache"
    before = len(hub.requests)
    assert resolve("hf_a") == granted
    assert len(hub.requests) == before, "the granted token is still served from the cache"


def test_a_pinned_commit_in_the_shared_hf_cache_needs_the_hubs_consent(
    hub: HubServer, tmp_path: Path
) -> None:
    """huggingface_hub returns a cached file at a commit SHA without asking the Hub."""
    gate(hub, LLAMA, "hf_a")
    sha = hub.repos[LLAMA].refs["main"]
    Resolver(implicit_token=False).resolve(
        LLAMA, sha, endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_a"
    )
    fresh = Resolver(implicit_token=False)
    with pytest.raises(GatedModel):
        fresh.resolve(LLAMA, sha, endpoint=hub.endpoint, cache_dir=tmp_path)
    with pytest.raises(GatedModel):
        fresh.resolve(LLAMA, sha, endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_b")


def test_the_operator_never_lends_hf_token_from_its_environment(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate(hub, LLAMA, "hf_env")
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    with pytest.raises(GatedModel):
        Resolver(implicit_token=False).resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert "Bearer hf_env" not in {r.authorization for r in hub.requests}


def test_the_clis_implicit_token_is_a_credential_of_its_own(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate(hub, LLAMA, "hf_env")
    resolver = Resolver()
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert resolver.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path).source == "hub"
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(GatedModel):
        resolver.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)


# --------------------------------------------------------------------------- bounded caches


def test_the_caches_hold_at_most_max_entries(hub: HubServer, tmp_path: Path) -> None:
    repos = [f"org/model-{i}" for i in range(6)]
    config = (FIXTURES / QWEN / "config.json").read_bytes()
    for repo in repos:
        hub.add_repo(repo, {"config.json": config})
    resolver = Resolver(max_entries=3)
    for repo in repos:
        resolver.resolve(repo, endpoint=hub.endpoint, cache_dir=tmp_path)
    stats = resolver.cache_stats()
    assert stats.revisions == 3 and stats.commits == 3
    assert stats.config_bytes == 3 * len(config)
    before = len(hub.requests)
    resolver.resolve(repos[0], endpoint=hub.endpoint, cache_dir=tmp_path)
    assert len(hub.requests) > before, "the oldest entry was evicted"
    before = len(hub.requests)
    resolver.resolve(repos[-1], endpoint=hub.endpoint, cache_dir=tmp_path)
    assert len(hub.requests) == before, "the newest is still cached"


def test_the_config_cache_is_bounded_by_bytes(hub: HubServer, tmp_path: Path) -> None:
    config = (FIXTURES / QWEN / "config.json").read_bytes()
    for i in range(4):
        hub.add_repo(f"org/m{i}", {"config.json": config})
    resolver = Resolver(max_cached_bytes=2 * len(config) + 1)
    for i in range(4):
        resolver.resolve(f"org/m{i}", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert resolver.cache_stats().commits == 2
    assert resolver.cache_stats().config_bytes <= 2 * len(config) + 1


def test_forget_unused_drops_every_credentials_entries(hub: HubServer, tmp_path: Path) -> None:
    resolver = Resolver(implicit_token=False)
    for token in (None, "hf_a"):
        for repo in (LLAMA, QWEN):
            resolver.resolve(repo, endpoint=hub.endpoint, cache_dir=tmp_path, token=token)
    assert resolver.cache_stats().commits == 4
    assert resolver.forget_unused([QWEN]) == 4  # two revisions, two commits of LLAMA
    stats = resolver.cache_stats()
    assert (stats.revisions, stats.commits) == (2, 2)
    before = len(hub.requests)
    resolver.resolve(LLAMA, endpoint=hub.endpoint, cache_dir=tmp_path)
    assert len(hub.requests) > before


# --------------------------------------------------------------------------- size caps


def blobs(cache: Path) -> list[int]:
    return [p.stat().st_size for p in cache.rglob("*") if p.is_file() and "blobs" in p.parts]


def test_a_50_mb_config_on_the_hub_is_refused_before_download(
    hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/huge", {"config.json": b'{"pad": "' + b"x" * (50 * MiB) + b'"}'})
    with pytest.raises(ModelFileTooLarge, match=r"not downloaded") as err:
        Resolver().resolve("org/huge", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert err.value.permanent
    assert not [p for p in hub.paths("GET") if p.startswith("/org/huge/resolve/")]
    assert all(size < MiB for size in blobs(tmp_path))


def test_a_config_over_the_cap_in_the_hf_cache_is_refused_offline(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub (or whoever filled the cache) may have put anything there."""
    config = json.dumps({"hidden_size": 8, "pad": "x" * (5 * MiB)}).encode()
    hub.add_repo("org/big", {"config.json": config})
    roomy = Resolver(max_file_bytes=8 * MiB)
    assert roomy.resolve("org/big", endpoint=hub.endpoint, cache_dir=tmp_path).source == "hub"
    with pytest.raises(ModelFileTooLarge):
        Resolver().resolve("org/big", endpoint=hub.endpoint, cache_dir=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFileTooLarge, match="HF cache"):
        Resolver().resolve("org/big", endpoint=hub.endpoint, cache_dir=tmp_path)


def test_a_hub_that_lies_about_the_size_is_still_refused(hub: HubServer, tmp_path: Path) -> None:
    repo = hub.add_repo("org/liar", {"config.json": b'{"hidden_size": 8}'})
    sha = repo.refs["main"]
    big = b'{"pad": "' + b"x" * (20 * MiB) + b'"}'

    def swap_on_download(method: str, path: str) -> None:
        if method == "GET" and path.startswith("/org/liar/resolve/"):
            repo.commits[sha]["config.json"] = big

    hub.on_request = swap_on_download
    with pytest.raises(HubUnavailable, match="not the one it announced") as err:
        Resolver().resolve("org/liar", endpoint=hub.endpoint, cache_dir=tmp_path, timeout=5)
    assert "x" * 100 not in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "deeper than 64"),
        (b'{"vocab_size": ' + b"9" * 5_000 + b"}", "more than 100 digits"),
    ],
)
def test_hostile_json_from_the_hub_is_an_invalid_config(
    hub: HubServer, tmp_path: Path, content: bytes, message: str
) -> None:
    hub.add_repo("org/hostile", {"config.json": content})
    with pytest.raises(InvalidModelConfig, match=message):
        Resolver().resolve("org/hostile", endpoint=hub.endpoint, cache_dir=tmp_path)


_names = itertools.count()

HOSTILE = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=3_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=90, max_value=6_000).map(lambda n: b'{"x": ' + b"7" * n + b"}"),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=HOSTILE)
def test_any_config_from_the_hub_resolves_or_raises_a_hub_error(
    hub: HubServer, content: bytes
) -> None:
    repo = f"org/hostile-{next(_names)}"
    hub.add_repo(repo, {"config.json": content})
    with tempfile.TemporaryDirectory() as cache:
        try:
            model = Resolver(max_file_bytes=4096).resolve(
                repo, endpoint=hub.endpoint, cache_dir=cache, timeout=5
            )
        except HubError as exc:
            assert str(exc)
        else:
            assert isinstance(model.config, dict)
    assert os.environ.get("HF_HUB_OFFLINE") is None
