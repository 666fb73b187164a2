"""vLLM's command line as the operator renders it, read into a simulated replica."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.sim.args import SimArgsError, build_replica, parse_serve_args, replica_from_vllm_args

HUB = str(Path(__file__).resolve().parents[1] / "fixtures" / "hub")
VERIFIER = "meta-llama/Llama-3.1-8B-Instruct"
DRAFTER = "RedHatAI/Llama-3.1-8B-Instruct-speculator.eagle3"


def spec(**fields: object) -> str:
    return json.dumps({"model": DRAFTER, "method": "eagle3", **fields})


def test_the_operators_command_line_builds_a_speculative_replica() -> None:
    args = parse_serve_args(
        ["serve", VERIFIER, "--tensor-parallel-size", "2", "--speculative-config",
         spec(num_speculative_tokens=4), "--max-model-len=16384", "--max-num-seqs", "128",
         "--gpu-memory-utilization", "0.85", "--port", "8001", "--served-model-name", "a", "b",
         "--enable-prefix-caching", "--no-enable-logging-iteration-details", "--hub-mirror", HUB]
    )  # fmt: skip
    assert args.served_model_names == ("a", "b")
    assert args.ignored == ("enable-prefix-caching", "no-enable-logging-iteration-details")
    replica = build_replica(args)
    engine = replica.engine
    assert engine.replica.tp == 2
    assert engine.num_speculative_tokens == 4
    assert engine.max_model_len == 16384 and engine.max_num_seqs == 128
    assert engine.max_num_batched_tokens == 8192  # vLLM's H100 default for the server
    assert replica.drafter_ref == DRAFTER


def test_serving_a_speculators_repo_serves_its_verifier() -> None:
    replica = build_replica(parse_serve_args([DRAFTER, "--hub-mirror", HUB]))
    assert replica.verifier_ref == VERIFIER
    assert replica.engine.num_speculative_tokens == 3  # the speculator's own default


def test_no_speculative_config_means_no_drafting() -> None:
    replica = replica_from_vllm_args(VERIFIER, ["--max-model-len", "4096"], hub_mirror=HUB)
    assert not replica.engine.speculative and replica.engine.replica.drafter is None


def test_dynamic_k_table_is_read_from_the_speculative_config() -> None:
    table = [[1, 8, 4], [9, 1024, 0]]
    replica = replica_from_vllm_args(
        VERIFIER,
        ["--speculative-config", spec(num_speculative_tokens=4,
                                      num_speculative_tokens_per_batch_size=table)],
        hub_mirror=HUB,
    )  # fmt: skip
    assert replica.engine.k_for(4) == 4 and replica.engine.k_for(20) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([VERIFIER, "--bogus", "1"], "unrecognized vLLM argument --bogus"),
        ([], "missing the model"),
        ([VERIFIER, "--tensor-parallel-size", "two"], "expects an integer"),
        ([VERIFIER, "--speculative-config", "{not json"], "not valid JSON"),
        ([VERIFIER, "--speculative-config", spec(tensor_parallel_size=2)], "draft_tensor_par"),
        ([VERIFIER, "--speculative-config", spec(wat=1)], "unknown keys wat"),
        ([VERIFIER, "--gpu-memory-utilization", "1.5"], "must be in"),
        ([VERIFIER, "--alpha", "0.5", "--acceptance-profile", "code"], "not both"),
        ([VERIFIER, "--acceptance-profile", "poetry"], "unknown acceptance profile"),
        ([VERIFIER, "--time-scale", "0"], "must be positive"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_command_lines_get_one_clear_message(argv: list[str], message: str) -> None:
    with pytest.raises(SimArgsError, match=message):
        parse_serve_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["org/missing", "--hub-mirror", HUB], "not found in the mirror"),
        ([VERIFIER, "--hub-mirror", HUB, "--gpu", "TPU"], "unknown GPU type"),
        ([VERIFIER, "--hub-mirror", HUB, "--tensor-parallel-size", "3"], "not divisible"),
        ([VERIFIER, "--hub-mirror", HUB, "--speculative-config", '{"method": "ngram"}'],
         "needs a 'model'"),
        (["meta-llama/Llama-3.3-70B-Instruct", "--hub-mirror", HUB], "raise TP"),
        ([VERIFIER, "--hub-mirror", HUB, "--max-model-len", "999999"], "max_position"),
    ],
)  # fmt: skip
def test_models_the_hardware_cannot_serve_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(SimArgsError, match=message):
        build_replica(parse_serve_args(argv))
