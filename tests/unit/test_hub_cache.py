"""The resolver's LRU caches: keyed by credential, bounded by entries and bytes, forgetful."""

from __future__ import annotations

import threading

import pytest

from specops.hub import Resolver
from specops.hub.cache import CacheKey, LruCache, credential_key


def key(repo: str, credential: str = "", revision: str = "main") -> CacheKey:
    return CacheKey("", credential, repo, revision)


def test_credential_key_hashes_and_tells_tokens_apart() -> None:
    assert credential_key(None) == credential_key("") == ""
    a, b = credential_key("hf_a"), credential_key("hf_b")
    assert a != b and len(a) == 64
    assert "hf_a" not in a


def test_an_entry_is_found_only_under_its_own_credential() -> None:
    cache: LruCache[str] = LruCache(8)
    cache.put(key("org/m", credential_key("hf_a")), "config")
    assert cache.get(key("org/m", credential_key("hf_a"))) == "config"
    assert cache.get(key("org/m", credential_key("hf_b"))) is None
    assert cache.get(key("org/m", "")) is None


def test_entry_bound_evicts_the_least_recently_used() -> None:
    cache: LruCache[int] = LruCache(3)
    for i in range(3):
        cache.put(key(f"org/m{i}"), i)
    assert cache.get(key("org/m0")) == 0  # m0 is now the most recent
    cache.put(key("org/m3"), 3)
    assert len(cache) == 3
    assert cache.get(key("org/m1")) is None  # the least recently used went
    assert [cache.get(key(f"org/m{i}")) for i in (0, 2, 3)] == [0, 2, 3]


def test_the_bound_holds_under_many_distinct_keys_and_threads() -> None:
    cache: LruCache[int] = LruCache(64, max_weight=10_000)

    def fill(offset: int) -> None:
        for i in range(2_000):
            cache.put(key(f"org/m{offset}-{i}", credential_key(str(i))), i, weight=100)

    threads = [threading.Thread(target=fill, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 64
    assert cache.weight <= 10_000
    assert cache.weight == 100 * len(cache)


def test_weight_bound_evicts_and_an_oversized_entry_is_not_kept() -> None:
    cache: LruCache[str] = LruCache(100, max_weight=1_000)
    cache.put(key("org/a"), "a", weight=600)
    cache.put(key("org/b"), "b", weight=600)
    assert cache.get(key("org/a")) is None and cache.get(key("org/b")) == "b"
    assert cache.weight == 600
    cache.put(key("org/c"), "c", weight=1_001)
    assert cache.get(key("org/c")) is None
    assert cache.get(key("org/b")) == "b"
    cache.put(key("org/b"), "b2", weight=10)  # replacing re-weighs
    assert cache.weight == 10


def test_discard_where_returns_the_memory() -> None:
    cache: LruCache[str] = LruCache(10, max_weight=1_000)
    cache.put(key("org/keep"), "k", weight=100)
    cache.put(key("org/gone", "x"), "g", weight=200)
    cache.put(key("org/gone", "y"), "g", weight=300)
    assert cache.discard_where(lambda k: k.repo == "org/gone") == 2
    assert len(cache) == 1 and cache.weight == 100


def test_a_cache_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError):
        LruCache(0)


def test_resolver_forget_unused_and_stats_start_empty() -> None:
    resolver = Resolver(max_entries=4)
    assert resolver.cache_stats() == (0, 0, 0)
    assert resolver.forget_unused(["org/m"]) == 0
