"""The scheduler model: batching, KV admission, preemption, speculation, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops import gpus, modelarch
from specops import perfmodel as pm
from specops.sim import acceptance as acc
from specops.sim import engine as eng

HUB = Path(__file__).resolve().parents[1] / "fixtures" / "hub"


def arch(ref: str) -> modelarch.ModelArch:
    return modelarch.from_config(json.loads((HUB / ref / "config.json").read_text()))


REPLICA = pm.Replica.build(
    arch("meta-llama/Llama-3.1-8B-Instruct"),
    gpus.lookup("H100"),
    1,
    arch("RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"),
)


def config(**overrides: object) -> eng.EngineConfig:
    values: dict[str, object] = {
        "replica": REPLICA,
        "num_gpu_blocks": 20_000,
        "max_model_len": 8192,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "acceptance": acc.profile("chat"),
        "seed": 7,
    }
    values.update(overrides)
    return eng.EngineConfig(**values)  # type: ignore[arg-type]


def test_two_runs_with_one_seed_are_identical() -> None:
    workload = eng.Workload(200, (100, 900), (50, 300), rate=30.0, seed=3)
    a = eng.simulate(config(num_speculative_tokens=3), workload)
    b = eng.simulate(config(num_speculative_tokens=3), workload)
    assert a == b
    c = eng.simulate(config(num_speculative_tokens=3, seed=8), workload)
    assert c.accepted_tokens != a.accepted_tokens


def test_every_request_gets_exactly_its_output_tokens() -> None:
    workload = eng.Workload(50, 300, (1, 40), concurrency=8, seed=1)
    result = eng.simulate(config(num_speculative_tokens=4), workload)
    assert len(result.records) == 50
    for record in result.records:
        assert record.output_tokens == workload.length(
            workload.output_tokens, eng.PURPOSE_OUTPUT, record.number
        )
        assert 0 <= record.queue_time <= record.ttft <= record.e2e


def test_speculation_counters_match_the_acceptance_profile() -> None:
    profile = acc.flat(0.7)
    result = eng.simulate(
        config(num_speculative_tokens=3, acceptance=profile),
        eng.Workload(100, 200, 400, concurrency=16, seed=2),
    )
    assert result.draft_tokens == 3 * result.drafts
    assert result.acceptance_length == pytest.approx(profile.acceptance_length(3), rel=0.03)
    per_pos = result.accepted_per_position
    assert per_pos[0] >= per_pos[1] >= per_pos[2]
    assert sum(per_pos) == result.accepted_tokens
    assert per_pos[1] / per_pos[0] == pytest.approx(0.7, rel=0.05)


def test_batch_one_tpot_is_the_perfmodel_step() -> None:
    result = eng.simulate(config(), eng.Workload(3, 100, 200, concurrency=1))
    step = pm.decode_step_seconds(REPLICA, 1, 200)
    assert result.mean("tpot") == pytest.approx(step, rel=0.02)


def test_max_num_seqs_caps_the_batch_and_queues_the_rest() -> None:
    result = eng.simulate(config(max_num_seqs=4), eng.Workload(16, 100, 100, concurrency=16))
    assert result.mean_batch <= 4
    assert max(r.queue_time for r in result.records) > 0


def test_full_kv_cache_queues_then_preempts_by_recompute() -> None:
    # 40 blocks = 640 tokens: four 100-token prompts fit, their growth does not.
    result = eng.simulate(
        config(num_gpu_blocks=40, max_num_seqs=8), eng.Workload(8, 100, 200, concurrency=8)
    )
    assert result.preemptions > 0
    assert all(r.output_tokens == 200 for r in result.records)
    assert any(r.preemptions for r in result.records)


def test_chunked_prefill_splits_a_long_prompt() -> None:
    engine = eng.Engine(config(max_num_batched_tokens=512))
    engine.add_request(2000, 10)
    first = engine.step(0.0)
    assert first is not None and first.prompt_tokens == 512 and not first.events
    while True:
        step = engine.step(0.0)
        assert step is not None
        if step.events:
            assert step.events[0].first
            break


def test_dynamic_k_table_turns_drafting_off_at_high_batch() -> None:
    cfg = config(num_speculative_tokens=3, k_by_batch_size=((1, 4, 3), (5, 1024, 0)))
    assert cfg.k_for(2) == 3 and cfg.k_for(10) == 0
    low = eng.simulate(cfg, eng.Workload(8, 100, 100, concurrency=1))
    high = eng.simulate(cfg, eng.Workload(64, 100, 100, concurrency=32))
    assert low.drafts > 0
    assert high.drafts < high.steps  # most steps ran with k = 0


def test_too_long_requests_are_refused_with_vllms_message() -> None:
    engine = eng.Engine(config(max_model_len=1000))
    with pytest.raises(ValueError, match="maximum context length is 1000"):
        engine.add_request(900, 200)


def test_weights_that_do_not_fit_leave_no_kv_cache() -> None:
    v = arch("meta-llama/Llama-3.3-70B-Instruct")
    replica = pm.Replica.build(v, gpus.lookup("H100"), 1)
    blocks = eng.kv_cache_blocks(
        replica,
        gpu_memory_utilization=0.9,
        weights_bytes=v.weight_bytes(),
        kv_bytes_per_token=v.kv_bytes_per_token(),
        activation_reserve_gib=eng.profiled_reserve_gib(
            v, 1, max_num_batched_tokens=8192, max_num_seqs=1024
        ),
    )
    assert blocks == 0
    with pytest.raises(ValueError, match="no memory left"):
        config(num_gpu_blocks=blocks)


def test_vllm_default_limits_depend_on_the_card() -> None:
    assert eng.vllm_default_limits(79.2, "H100-80GB") == (8192, 1024)
    assert eng.vllm_default_limits(79.2, "A100-80GB") == (2048, 256)
    assert eng.vllm_default_limits(22.0, "L4-24GB") == (2048, 256)


def test_explicit_prompt_lengths_cycle_over_requests() -> None:
    workload = eng.Workload(5, output_tokens=4, concurrency=2, prompt_lengths=(10, 300))
    result = eng.simulate(config(), workload)
    assert [r.prompt_tokens for r in result.records] == [10, 300, 10, 300, 10]
    with pytest.raises(ValueError, match="prompt lengths"):
        eng.Workload(1, concurrency=1, prompt_lengths=(0,))


def test_a_request_can_bring_its_own_acceptance_profile() -> None:
    engine = eng.Engine(config(num_speculative_tokens=3, acceptance=acc.flat(0.0)))
    always = engine.add_request(10, 40, profile=acc.flat(1.0))
    never = engine.add_request(10, 40)
    accepted = 0
    while engine.has_work():
        step = engine.step(0.0)
        assert step is not None
        accepted += step.accepted_tokens
    assert always.decode_steps < never.decode_steps
    assert never.decode_steps == 39  # one token per step after the prefill token
    assert accepted == 3 * always.decode_steps  # every draft of the flat-1.0 request


def _drain(engine: eng.Engine, now: float = 0.0) -> float:
    while engine.has_work():
        step = engine.step(now)
        assert step is not None
        now = step.end
    return now


def _prefill_of_next_step(engine: eng.Engine, now: float) -> int:
    step = engine.step(now)
    assert step is not None
    return step.prompt_tokens


def test_a_cached_prefix_is_reused_until_allocation_evicts_it() -> None:
    engine = eng.Engine(config(num_gpu_blocks=100, num_speculative_tokens=0))
    engine.add_request(480, 1, cache_as="a")  # 30 full blocks stay cached
    now = _drain(engine)
    assert engine.kv_usage == 0.0  # cached blocks are free (vLLM's free queue)
    # 70 never-used blocks are taken first, so a 1,120-token request leaves "a" whole
    engine.add_request(1120, 1)
    now = _drain(engine, now)
    engine.add_request(600, 1, prefix="a", prefix_tokens=480)
    assert _prefill_of_next_step(engine, now) == 600 - 30 * eng.BLOCK_SIZE


def test_memory_pressure_evicts_the_least_recently_freed_prefix_first() -> None:
    engine = eng.Engine(config(num_gpu_blocks=100, num_speculative_tokens=0))
    engine.add_request(640, 1, cache_as="old")  # 40 blocks
    now = _drain(engine)
    engine.add_request(640, 1, cache_as="new")  # 40 more
    now = _drain(engine, now)
    engine.add_request(800, 1)  # 50 blocks: 20 never used, then 30 of "old"
    now = _drain(engine, now)
    engine.add_request(700, 1, prefix="new", prefix_tokens=640)
    assert _prefill_of_next_step(engine, now) == 700 - 40 * eng.BLOCK_SIZE
    now = _drain(engine, now)
    engine.add_request(700, 1, prefix="old", prefix_tokens=640)
    # 30 of its 40 blocks were evicted (a prefix shrinks from its end)
    assert _prefill_of_next_step(engine, now) == 700 - 10 * eng.BLOCK_SIZE


def test_a_preempted_request_recomputes_only_what_was_evicted() -> None:
    engine = eng.Engine(config(num_gpu_blocks=64, num_speculative_tokens=0))
    first = engine.add_request(496, 100)
    second = engine.add_request(496, 100)
    now = 0.0
    recomputed: list[int] = []
    while engine.has_work():
        step = engine.step(now)
        assert step is not None
        now = step.end
        if second in step.admitted and second.preemptions:
            recomputed.append(step.prefill_tokens)
    assert second.preemptions == 1 and first.preemptions == 0
    assert first.output == second.output == 100
    # The victim had 512 tokens of work in 32 full blocks. While it waited,
    # the survivor's growth (to 38 blocks) evicted only a few blocks from the
    # victim's cached tail, so the victim recomputes that tail, not everything.
    [tokens] = recomputed
    size = eng.BLOCK_SIZE
    assert 2 * size <= tokens <= 8 * size
