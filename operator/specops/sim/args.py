"""vLLM's command line, read the way ``vllm serve`` reads it, into a simulated replica.

The twin must run exactly what the operator rendered for vLLM, so it takes
the same arguments: ``serve <model> --tensor-parallel-size N
--speculative-config '<json>' --max-model-len ... --max-num-seqs ...
--gpu-memory-utilization ... --port ... --served-model-name ...``. Flags
vLLM 0.33.0 knows but the simulator does not model are ignored with a log
line; flags vLLM does not know are an error, as they would be for vLLM
(lists in ``specops/data/vllm-0.33.0``). Simulator options (``--gpu``,
``--seed``, ``--time-scale``, ...) are parsed alongside.

Model configs come from a mirror directory laid out ``<org>/<repo>/config.json``
(``--hub-mirror`` or ``SPECOPS_HUB_MIRROR``) or a local directory: never from
the network.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from specops import gpus, modelarch, perfmodel
from specops.sim import acceptance
from specops.sim.engine import (
    EngineConfig,
    kv_cache_blocks,
    profiled_reserve_gib,
    served_weight_bytes,
    vllm_default_limits,
)

log = logging.getLogger(__name__)

MIRROR_ENV = "SPECOPS_HUB_MIRROR"
#: vLLM's API key variable (``--api-key`` wins over it, as in recent vLLM releases).
API_KEY_ENV = "VLLM_API_KEY"
DEFAULT_PORT = 8000
DEFAULT_LOAD_TIME_S = 2.0
DEFAULT_MEAN_OUTPUT_TOKENS = 256


class SimArgsError(ValueError):
    """A command line or model the simulator cannot serve; the message says why."""


@cache
def _names(filename: str) -> frozenset[str]:
    text = (
        resources.files("specops")
        .joinpath(f"data/vllm-0.33.0/{filename}")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def vllm_flags() -> frozenset[str]:
    """Every ``vllm serve`` flag of vLLM 0.33.0, without the leading dashes (``-`` form)."""
    return frozenset(
        name.replace("_", "-") for name in _names("engine_args.txt") | _names("frontend_args.txt")
    )


def speculative_config_fields() -> frozenset[str]:
    """Keys vLLM 0.33.0 accepts inside ``--speculative-config``."""
    return _names("speculative_config_fields.txt")


_SIM_OPTIONS = {
    # name: (takes a value, default)
    "gpu": "H100-80GB",
    "hub-mirror": None,
    "time-scale": "1",
    "acceptance-profile": None,
    "alpha": None,
    "load-time": str(DEFAULT_LOAD_TIME_S),
    "mean-output-tokens": str(DEFAULT_MEAN_OUTPUT_TOKENS),
    "slowdown": "1",
}
"""Simulator options accepted next to vLLM's flags (``--seed`` is vLLM's own)."""

_MODELLED = {
    "model",
    "tensor-parallel-size",
    "speculative-config",
    "max-model-len",
    "max-num-seqs",
    "max-num-batched-tokens",
    "gpu-memory-utilization",
    "port",
    "host",
    "served-model-name",
    "seed",
    "block-size",
    "api-key",
}
_SHORT = {"-tp": "tensor-parallel-size", "-O": "compilation-config"}
_BOOLEAN_PREFIXES = ("enable-", "disable-", "no-", "enforce-", "trust-", "skip-", "allow-")


@dataclass(frozen=True)
class ServeArgs:
    """The parsed command line: vLLM's settings that matter and the simulator's options."""

    model: str
    served_model_names: tuple[str, ...]
    tensor_parallel_size: int = 1
    speculative_config: dict[str, Any] | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    port: int = DEFAULT_PORT
    seed: int = 0
    gpu: str = "H100-80GB"
    hub_mirror: str | None = None
    time_scale: float = 1.0
    acceptance_profile: str | None = None
    alpha: float | None = None
    load_time_s: float = DEFAULT_LOAD_TIME_S
    mean_output_tokens: int = DEFAULT_MEAN_OUTPUT_TOKENS
    slowdown: float = 1.0
    ignored: tuple[str, ...] = ()
    #: Required as ``Authorization: Bearer`` on ``/v1/*`` when set; never in a repr or log.
    api_key: str | None = field(default=None, repr=False)


def _split(argv: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Positional arguments and ``{flag: [values...]}`` in vLLM's ``--a-b value`` syntax."""
    positional: list[str] = []
    flags: dict[str, list[str]] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if item in _SHORT:
            item = "--" + _SHORT[item]
        if not item.startswith("--") or item == "--":
            positional.append(item)
            continue
        name, eq, value = item[2:].partition("=")
        name = name.replace("_", "-")
        values: list[str] = []
        if eq:
            values.append(value)
        else:
            # A flag takes the following non-flag words as its values (booleans take none;
            # --served-model-name takes several).
            while i < len(items) and not (items[i].startswith("--") or items[i] in _SHORT):
                values.append(items[i])
                i += 1
                if name != "served-model-name":
                    break
        flags.setdefault(name, []).extend(values or ["true"])
    return positional, flags


def _one(flags: dict[str, list[str]], name: str) -> str | None:
    values = flags.get(name)
    return values[-1] if values else None


def _int(flags: dict[str, list[str]], name: str, *, minimum: int = 1) -> int | None:
    text = _one(flags, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise SimArgsError(f"--{name} expects an integer, got {text!r}") from None
    if value < minimum:
        raise SimArgsError(f"--{name} must be >= {minimum}, got {value}")
    return value


def _float(flags: dict[str, list[str]], name: str, default: float, *, low: float = 0.0) -> float:
    text = _one(flags, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SimArgsError(f"--{name} expects a number, got {text!r}") from None
    if not math.isfinite(value) or value < low:
        raise SimArgsError(f"--{name} must be a finite number >= {low:g}, got {text}")
    return value


def parse_serve_args(argv: Sequence[str]) -> ServeArgs:
    """Parse ``[serve] <model> [vLLM flags] [simulator options]``; :class:`SimArgsError` if bad."""
    positional, flags = _split(argv)
    if positional and positional[0] == "serve":
        positional = positional[1:]
    model = _one(flags, "model")
    if positional:
        if len(positional) > 1:
            raise SimArgsError(f"unexpected arguments: {' '.join(positional[1:])}")
        model = positional[0]
    if not model:
        raise SimArgsError("missing the model to serve: specops sim serve <model> [flags]")

    known = vllm_flags()
    ignored: list[str] = []
    for name in flags:
        if name in _SIM_OPTIONS or name in _MODELLED:
            continue
        if name in known or (
            name.startswith("no-") and name[3:] in known
        ):  # argparse's --no-<flag> booleans
            ignored.append(name)
            continue
        raise SimArgsError(f"unrecognized vLLM argument --{name} (not a vLLM 0.33.0 flag)")
    for name in ignored:
        log.info("ignoring vLLM flag --%s: not modelled by the simulator", name)

    spec_text = _one(flags, "speculative-config")
    spec: dict[str, Any] | None = None
    if spec_text is not None:
        spec = parse_speculative_config(spec_text)

    names = tuple(flags.get("served-model-name") or ()) or (model,)
    tp = _int(flags, "tensor-parallel-size") or 1
    utilization = _float(flags, "gpu-memory-utilization", 0.9, low=0.0)
    if not 0 < utilization <= 1:
        raise SimArgsError(f"--gpu-memory-utilization must be in (0, 1], got {utilization}")
    port = _int(flags, "port", minimum=0)
    seed = _int(flags, "seed", minimum=0)
    host = _one(flags, "host")
    if host is not None and host not in ("127.0.0.1", "localhost"):
        log.info("serving on 127.0.0.1 instead of --host %s: the simulator is loopback-only", host)
    profile = _one(flags, "acceptance-profile")
    if profile is not None:
        try:
            acceptance.profile(profile)
        except ValueError as exc:
            raise SimArgsError(str(exc)) from None
    alpha_text = _one(flags, "alpha")
    alpha = None
    if alpha_text is not None:
        alpha = _float(flags, "alpha", 0.0)
        if alpha > 1:
            raise SimArgsError(f"--alpha must be within [0, 1], got {alpha}")
    if profile is not None and alpha is not None:
        raise SimArgsError("give --acceptance-profile or --alpha, not both")
    time_scale = _float(flags, "time-scale", 1.0)
    if time_scale <= 0:
        raise SimArgsError("--time-scale must be positive")
    slowdown = _float(flags, "slowdown", 1.0)
    if slowdown <= 0:
        raise SimArgsError("--slowdown must be positive")
    return ServeArgs(
        model=model,
        served_model_names=names,
        tensor_parallel_size=tp,
        speculative_config=spec,
        max_model_len=_int(flags, "max-model-len"),
        max_num_seqs=_int(flags, "max-num-seqs"),
        max_num_batched_tokens=_int(flags, "max-num-batched-tokens"),
        gpu_memory_utilization=utilization,
        block_size=_int(flags, "block-size") or 16,
        port=DEFAULT_PORT if port is None else port,
        seed=seed or 0,
        gpu=_one(flags, "gpu") or "H100-80GB",
        hub_mirror=_one(flags, "hub-mirror") or os.environ.get(MIRROR_ENV) or None,
        time_scale=time_scale,
        acceptance_profile=profile,
        alpha=alpha,
        load_time_s=_float(flags, "load-time", DEFAULT_LOAD_TIME_S),
        mean_output_tokens=_int(flags, "mean-output-tokens") or DEFAULT_MEAN_OUTPUT_TOKENS,
        slowdown=slowdown,
        ignored=tuple(ignored),
        api_key=_one(flags, "api-key") or os.environ.get(API_KEY_ENV) or None,
    )


def parse_speculative_config(text: str) -> dict[str, Any]:
    """The ``--speculative-config`` JSON, checked the way vLLM checks it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimArgsError(f"--speculative-config is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise SimArgsError("--speculative-config must be a JSON object")
    if "tensor_parallel_size" in value:
        raise SimArgsError(
            "--speculative-config: 'tensor_parallel_size' is not accepted; "
            "use 'draft_tensor_parallel_size'"
        )
    unknown = sorted(set(value) - speculative_config_fields())
    if unknown:
        raise SimArgsError(f"--speculative-config: unknown keys {', '.join(unknown)}")
    k = value.get("num_speculative_tokens")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise SimArgsError("--speculative-config: num_speculative_tokens must be an integer >= 0")
    table = value.get("num_speculative_tokens_per_batch_size")
    if table is not None:
        _k_table(table)
    return value


def _k_table(table: object) -> tuple[tuple[int, int, int], ...]:
    error = SimArgsError(
        "--speculative-config: num_speculative_tokens_per_batch_size must be a list of "
        "[lo, hi, k] integer triples"
    )
    if not isinstance(table, list):
        raise error
    out = []
    for row in table:
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)
        ):
            raise error
        out.append((row[0], row[1], row[2]))
    return tuple(out)


# ---- models -----------------------------------------------------------------


def load_config(ref: str, mirror: str | None) -> dict[str, Any]:
    """``config.json`` of ``ref`` from the mirror or a local directory (never the network)."""
    candidates: list[Path] = []
    if mirror:
        candidates.append(Path(mirror).expanduser() / ref)
    candidates.append(Path(ref).expanduser())
    for directory in candidates:
        path = directory / "config.json"
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SimArgsError(f"cannot read {path}: {exc}") from None
            if not isinstance(config, dict):
                raise SimArgsError(f"{path} is not a JSON object")
            return config
    where = f"in the mirror {mirror} or " if mirror else ""
    raise SimArgsError(
        f"model {ref!r} not found {where}as a local directory with config.json "
        f"(set --hub-mirror or {MIRROR_ENV})"
    )


def _arch(config: dict[str, Any], ref: str) -> modelarch.ModelArch:
    try:
        return modelarch.from_config(config)
    except modelarch.ConfigError as exc:
        raise SimArgsError(f"{ref}: {exc}") from None


@dataclass(frozen=True)
class SimulatedReplica:
    """A fully resolved replica: the engine configuration and what the server reports."""

    args: ServeArgs
    verifier_ref: str
    drafter_ref: str | None
    engine: EngineConfig
    gpu: gpus.GpuType


def build_replica(args: ServeArgs) -> SimulatedReplica:
    """Resolve models and hardware into an :class:`EngineConfig` as vLLM would size it."""
    try:
        gpu = gpus.lookup(args.gpu)
    except gpus.UnknownGpuError as exc:
        raise SimArgsError(str(exc)) from None
    config = load_config(args.model, args.hub_mirror)
    spec = dict(args.speculative_config or {})
    verifier_ref = args.model
    drafter_ref: str | None = None
    drafter_cfg: dict[str, Any] | None = None
    if modelarch.is_speculators_config(config):
        # `vllm serve <speculator>`: serve its verifier, draft with the speculator.
        verifier_name = config.get("speculators_config", {}).get("verifier", {}).get("name_or_path")
        if not isinstance(verifier_name, str) or not verifier_name:
            raise SimArgsError(f"{args.model}: speculators config names no verifier")
        drafter_ref, drafter_cfg = args.model, config
        verifier_ref = verifier_name
        config = load_config(verifier_name, args.hub_mirror)
        if args.speculative_config:
            log.info("ignoring --speculative-config: a speculators model defines its own")
        methods = drafter_cfg.get("speculators_config", {}).get("proposal_methods")
        k_default = 3
        if isinstance(methods, list) and methods and isinstance(methods[0], dict):
            k_default = int(methods[0].get("speculative_tokens", 3))
        spec = {"model": args.model, "num_speculative_tokens": k_default}
    elif spec:
        drafter_ref = spec.get("model")
        if not isinstance(drafter_ref, str) or not drafter_ref:
            raise SimArgsError(
                "--speculative-config needs a 'model' (the simulator models drafter-based "
                "methods: eagle, eagle3, draft_model, mtp-style speculators)"
            )
        drafter_cfg = load_config(drafter_ref, args.hub_mirror)

    verifier = _arch(config, verifier_ref)
    drafter = _arch(drafter_cfg, drafter_ref or "") if drafter_cfg is not None else None
    tp = args.tensor_parallel_size
    if verifier.num_attention_heads % tp:
        raise SimArgsError(
            f"{verifier.num_attention_heads} attention heads are not divisible by "
            f"--tensor-parallel-size {tp}"
        )
    draft_tp = spec.get("draft_tensor_parallel_size")
    if draft_tp is not None and draft_tp not in (1, tp):
        raise SimArgsError(
            f"draft_tensor_parallel_size must be 1 or the target's {tp}, got {draft_tp}"
        )
    replica = perfmodel.Replica.build(verifier, gpu, tp, drafter, draft_tp=draft_tp)

    max_len = args.max_model_len or verifier.max_position_embeddings
    if max_len > verifier.max_position_embeddings:
        raise SimArgsError(
            f"--max-model-len {max_len} exceeds the model's max_position_embeddings "
            f"{verifier.max_position_embeddings}"
        )
    default_tokens, default_seqs = vllm_default_limits(gpu.memory_gib, gpu.name)
    max_num_seqs = args.max_num_seqs or default_seqs
    max_num_batched_tokens = args.max_num_batched_tokens or max(default_tokens, 1)
    weights = served_weight_bytes(verifier, drafter)
    kv_per_token = float(verifier.kv_bytes_per_token())
    if drafter is not None:
        kv_per_token += drafter.kv_bytes_per_token()
    blocks = kv_cache_blocks(
        replica,
        gpu_memory_utilization=args.gpu_memory_utilization,
        weights_bytes=weights,
        kv_bytes_per_token=kv_per_token,
        activation_reserve_gib=profiled_reserve_gib(
            verifier,
            tp,
            max_num_batched_tokens=max_num_batched_tokens,
            max_num_seqs=max_num_seqs,
        ),
        block_size=args.block_size,
    )
    if blocks * args.block_size < max_len:
        raise SimArgsError(
            f"the KV cache holds {blocks * args.block_size} tokens on {tp} x {gpu.name} at "
            f"gpu-memory-utilization {args.gpu_memory_utilization}, less than max-model-len "
            f"{max_len} (vLLM refuses to start); raise TP or lower --max-model-len"
        )
    k = int(spec.get("num_speculative_tokens") or 0) if drafter is not None else 0
    table = (
        _k_table(spec["num_speculative_tokens_per_batch_size"])
        if spec.get("num_speculative_tokens_per_batch_size")
        else ()
    )
    if drafter is not None and not k and not table:
        raise SimArgsError("--speculative-config needs num_speculative_tokens")
    profile = (
        acceptance.flat(args.alpha)
        if args.alpha is not None
        else acceptance.profile(args.acceptance_profile or "chat")
    )
    eff = replica.default_efficiencies()
    if args.slowdown != 1.0:
        eff = eff.perturbed(args.slowdown)
    engine = EngineConfig(
        replica=replica,
        num_gpu_blocks=blocks,
        max_model_len=max_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        num_speculative_tokens=k,
        k_by_batch_size=table,
        acceptance=profile if drafter is not None else None,
        efficiencies=eff,
        seed=args.seed,
        block_size=args.block_size,
    )
    return SimulatedReplica(
        args=args, verifier_ref=verifier_ref, drafter_ref=drafter_ref, engine=engine, gpu=gpu
    )


def replica_from_vllm_args(
    model: str,
    vllm_args: Iterable[str] = (),
    *,
    gpu: str = "H100-80GB",
    hub_mirror: str | Path | None = None,
    seed: int = 0,
    acceptance_profile: str | None = None,
    alpha: float | None = None,
) -> SimulatedReplica:
    """The library entry point for virtual-time runs: a model, vLLM's flags and a GPU."""
    args = parse_serve_args([model, *vllm_args])
    args = replace(
        args,
        gpu=gpu,
        hub_mirror=str(hub_mirror) if hub_mirror is not None else args.hub_mirror,
        seed=seed or args.seed,
        acceptance_profile=acceptance_profile or args.acceptance_profile,
        alpha=alpha if alpha is not None else args.alpha,
    )
    return build_replica(args)
