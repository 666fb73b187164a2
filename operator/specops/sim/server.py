"""The real-time face of the twin: vLLM's OpenAI server on loopback, over the engine.

One asyncio task drives :class:`~specops.sim.engine.Engine`: it runs a step,
sleeps until the step's simulated end (divided by ``--time-scale``), then
hands each request its tokens and updates the Prometheus metrics. Handlers
only enqueue requests and wait on per-request queues, so a replica costs a
few wake-ups per simulated step and many can share two cores.

Endpoints, as vLLM serves them: ``/health`` (503 until the simulated model
load time has passed), ``/v1/models``, ``/v1/completions`` and
``/v1/chat/completions`` (SSE streaming or not, ``usage`` filled in,
``max_tokens``, ``ignore_eos`` and ``min_tokens``), ``/metrics``; plus
``/control`` (loopback only) to change acceptance or inject slowness while
running, for tests of the control loop. With an API key (``--api-key`` or
``VLLM_API_KEY``) every ``/v1/*`` request needs ``Authorization: Bearer <key>``
and gets vLLM's 401 ``{"error": "Unauthorized"}`` without it; ``/health``,
``/metrics`` and ``OPTIONS`` stay open, as in vLLM.

Tokens are synthetic: one prompt token per whitespace-separated word (chat
adds 3 per message for the template), and generated text is made of plain
words, one per token. Without ``ignore_eos`` a request "stops" after a
length drawn from the seeded RNG (uniform, mean ``--mean-output-tokens``),
at least ``min_tokens`` and at most ``max_tokens``. A request may name its
task's acceptance profile (``"acceptance_profile": "code"``, an extension
field) to mix tasks in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from specops.sim import acceptance
from specops.sim.args import SimulatedReplica
from specops.sim.engine import Engine, Request, StepResult
from specops.sim.metrics import VllmMetrics

log = logging.getLogger(__name__)

PURPOSE_LENGTH = 11
PURPOSE_WORD = 12
CHAT_TOKENS_PER_MESSAGE = 3

_WORD_TEXT = (
    "the of and to in is that for it as with was on be by at this from or an are not have "
    "but they which one you all were her she there would their we him been has when who will "
    "more no if out so said what up its about into than them can only other new some could "
    "time these two may then do first any my now such like our over man me even most made"
)
WORDS = tuple(_WORD_TEXT.split())
"""The synthetic vocabulary of generated text."""


def count_tokens(text: str) -> int:
    """Synthetic tokenizer: one token per whitespace-separated word, at least one."""
    return max(1, len(text.split()))


class ApiError(Exception):
    """An error answered in OpenAI's error format."""

    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass
class _Pending:
    """A request's mailbox: the driver puts (tokens, finished) tuples here."""

    request: Request
    queue: asyncio.Queue[tuple[int, bool]] = field(default_factory=asyncio.Queue)
    produced: int = 0


class SimServer:
    """One simulated replica serving HTTP on 127.0.0.1."""

    def __init__(self, replica: SimulatedReplica) -> None:
        self.replica = replica
        args = replica.args
        self.model_names = args.served_model_names
        self.engine = Engine(replica.engine)
        self.base_efficiencies = replica.engine.efficiencies
        self.metrics = VllmMetrics(
            self.model_names[0],
            max_model_len=replica.engine.max_model_len,
            num_spec_tokens=replica.engine.num_speculative_tokens,
        )
        self.time_scale = args.time_scale
        self.load_time_s = args.load_time_s
        self.mean_output_tokens = args.mean_output_tokens
        self.seed = args.seed
        self.slowdown = args.slowdown
        self._pending: dict[int, _Pending] = {}
        self._wake = asyncio.Event()
        self._t0 = 0.0
        self._driver: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._created = int(time.time())
        self._requests_seen = 0
        self.failure: str | None = None
        self._api_key = args.api_key
        self.app = self._build_app()

    # ---- time ---------------------------------------------------------------
    def virtual_now(self) -> float:
        """Simulated seconds since start (wall seconds times the time scale)."""
        return (time.monotonic() - self._t0) * self.time_scale

    def ready(self) -> bool:
        return self.virtual_now() >= self.load_time_s

    # ---- lifecycle ----------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth, self._errors])
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/control", self.control_get)
        app.router.add_post("/control", self.control_post)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._t0 = time.monotonic()
        self._driver = asyncio.create_task(self._drive())

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver

    async def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:``port`` (0 picks a free port); returns the bound port."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- the engine loop ----------------------------------------------------
    async def _drive(self) -> None:
        """Step the engine in simulated time, sleeping so it keeps pace with the wall clock.

        While the engine stays busy, steps are chained back to back in
        simulated time: a late wake-up of this task (at ``--time-scale 20`` one
        millisecond is 20 simulated ones) delays delivery a little but never
        adds to the latencies the replica reports. Only an idle engine jumps
        its clock to "now".
        """
        try:
            await self._drive_steps()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the model must not leave clients hanging
            log.exception("simulated engine failed")
            self.failure = f"simulated engine failed: {exc!r}"
            for pending in self._pending.values():
                pending.queue.put_nowait((-1, True))

    async def _drive_steps(self) -> None:
        chained = False
        while True:
            if not self.engine.has_work():
                chained = False
                self.metrics.set_idle_gauges(0, 0, self.engine.kv_usage)
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self.engine.clock if chained else self.virtual_now()
            result = self.engine.step(now)
            if result is None and self.engine.waiting:
                # Only requests that arrived after the chained clock: catch up to them.
                result = self.engine.step(max(now, self.virtual_now()))
            if result is None:
                chained = False
                self._wake.clear()
                await self._wake.wait()
                continue
            chained = True
            delay = self._t0 + result.end / self.time_scale - time.monotonic()
            await asyncio.sleep(max(delay, 0.0))  # yields to handlers even when lagging
            self._deliver(result)

    def _deliver(self, result: StepResult) -> None:
        self.metrics.observe_step(result)
        for event in result.events:
            pending = self._pending.get(event.request.number)
            if pending is not None:
                pending.queue.put_nowait((event.tokens, event.finished))

    # ---- middleware and helpers -----------------------------------------------
    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """vLLM's rule: with a key, ``/v1/*`` (not OPTIONS) needs the exact Bearer header."""
        if self._api_key is None or request.method == "OPTIONS":
            return await handler(request)
        if not request.path.startswith("/v1"):
            return await handler(request)
        sent = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(sent, f"Bearer {self._api_key}".encode()):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return web.json_response(
                {
                    "error": {
                        "message": exc.message,
                        "type": exc.kind,
                        "param": None,
                        "code": exc.status,
                    }
                },
                status=exc.status,
            )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    def _check_ready_and_model(self, body: dict[str, Any]) -> None:
        if self.failure is not None:
            raise ApiError(500, self.failure, "InternalServerError")
        if not self.ready():
            raise ApiError(503, "the model is still loading", "ServiceUnavailableError")
        model = body.get("model")
        if model is not None and model not in self.model_names:
            raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")

    def _word(self, number: int, index: int) -> str:
        u = acceptance.uniform(self.seed, PURPOSE_WORD, number, index)
        return WORDS[int(u * len(WORDS))]

    def _plan_output(
        self, number: int, max_tokens: int, ignore_eos: bool, min_tokens: int
    ) -> tuple[int, bool]:
        """(tokens to generate, ends naturally) for one request."""
        if ignore_eos:
            return max_tokens, False
        u = acceptance.uniform(self.seed, PURPOSE_LENGTH, number)
        natural = max(1 + int(u * 2 * self.mean_output_tokens), min_tokens)
        if natural >= max_tokens:
            return max_tokens, False
        return natural, True

    @staticmethod
    def _int_param(body: dict[str, Any], name: str, default: int | None) -> int | None:
        value = body.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ApiError(400, f"{name} must be a non-negative integer, got {value!r}")
        return value

    # ---- endpoints ------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if self.failure is not None:
            return web.Response(status=500, text=self.failure)
        if not self.ready():
            return web.Response(status=503, text="loading")
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        data: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": self._created,
                "owned_by": "vllm",
                "root": self.replica.verifier_ref,
                "parent": None,
                "max_model_len": self.replica.engine.max_model_len,
                "permission": [],
            }
            for name in self.model_names
        ]
        return web.json_response({"object": "list", "data": data})

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        if not self.engine.has_work():
            self.metrics.set_idle_gauges(0, 0, self.engine.kv_usage)
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def _control_state(self) -> dict[str, Any]:
        profile = self.engine.acceptance
        return {
            "acceptance_profile": profile.name if profile else None,
            "conditional_acceptance": list(profile.conditional[:8]) if profile else None,
            "slowdown": self.slowdown,
            "num_speculative_tokens": self.replica.engine.num_speculative_tokens,
            "virtual_time_s": round(self.virtual_now(), 6),
            "running": len(self.engine.running),
            "waiting": len(self.engine.waiting),
        }

    @staticmethod
    def _loopback_only(request: web.Request) -> None:
        remote = request.remote or ""
        try:
            if ipaddress.ip_address(remote).is_loopback:
                return
        except ValueError:
            pass
        raise ApiError(403, "the control endpoint answers loopback clients only", "Forbidden")

    async def control_get(self, request: web.Request) -> web.Response:
        self._loopback_only(request)
        return web.json_response(self._control_state())

    async def control_post(self, request: web.Request) -> web.Response:
        """Change acceptance (``acceptance_profile`` | ``alpha``) or ``slowdown`` at runtime."""
        self._loopback_only(request)
        body = await self._json(request)
        unknown = set(body) - {"acceptance_profile", "alpha", "slowdown"}
        if unknown:
            raise ApiError(400, f"unknown control fields: {', '.join(sorted(unknown))}")
        if "acceptance_profile" in body and "alpha" in body:
            raise ApiError(400, "give acceptance_profile or alpha, not both")
        try:
            if "acceptance_profile" in body:
                self.engine.set_acceptance(acceptance.profile(str(body["acceptance_profile"])))
            if "alpha" in body:
                alpha = body["alpha"]
                if isinstance(alpha, bool) or not isinstance(alpha, int | float):
                    raise ValueError("alpha must be a number")
                self.engine.set_acceptance(acceptance.flat(float(alpha)))
            if "slowdown" in body:
                factor = body["slowdown"]
                if isinstance(factor, bool) or not isinstance(factor, int | float) or factor <= 0:
                    raise ValueError("slowdown must be a positive number")
                self.slowdown = float(factor)
                self.engine.set_efficiencies(self.base_efficiencies.perturbed(self.slowdown))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        log.info("control: %s", body)
        return web.json_response(self._control_state())

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        self._check_ready_and_model(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, str):
            prompt_tokens = count_tokens(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompt_tokens = len(prompt)
        else:
            raise ApiError(400, "prompt must be a string, a list of one string, or token ids")
        max_tokens = self._int_param(body, "max_tokens", 16) or 16
        return await self._generate(request, body, prompt_tokens, max_tokens, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        self._check_ready_and_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages must be a non-empty list")
        prompt_tokens = 0
        for message in messages:
            if not isinstance(message, dict):
                raise ApiError(400, "each message must be an object")
            content = message.get("content") or ""
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            prompt_tokens += CHAT_TOKENS_PER_MESSAGE + len(str(content).split())
        remaining = self.replica.engine.max_model_len - prompt_tokens
        limit = self._int_param(body, "max_completion_tokens", None)
        if limit is None:
            limit = self._int_param(body, "max_tokens", None)
        max_tokens = limit if limit else max(1, remaining)
        return await self._generate(request, body, prompt_tokens, max_tokens, chat=True)

    async def _generate(
        self,
        http: web.Request,
        body: dict[str, Any],
        prompt_tokens: int,
        max_tokens: int,
        *,
        chat: bool,
    ) -> web.StreamResponse:
        n = body.get("n", 1)
        if n != 1:
            raise ApiError(400, "the simulator serves n=1 only")
        min_tokens = self._int_param(body, "min_tokens", 0) or 0
        if min_tokens > max_tokens:
            raise ApiError(400, f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})")
        number = self._requests_seen
        self._requests_seen += 1
        length, natural = self._plan_output(
            number, max_tokens, bool(body.get("ignore_eos", False)), min_tokens
        )
        max_len = self.replica.engine.max_model_len
        if prompt_tokens + max_tokens > max_len:
            raise ApiError(
                400,
                f"This model's maximum context length is {max_len} tokens. However, you "
                f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of the "
                "messages or completion.",
            )
        task = body.get("acceptance_profile")
        profile = None
        if task is not None:
            try:
                profile = acceptance.profile(str(task))
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        engine_request = self.engine.add_request(
            prompt_tokens,
            length,
            arrival=self.virtual_now(),
            natural_stop=natural,
            profile=profile,
        )
        pending = _Pending(engine_request)
        self._pending[engine_request.number] = pending
        self._wake.set()
        model = str(body.get("model") or self.model_names[0])
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{self.seed:x}{number:08x}"
        created = int(time.time())
        try:
            if body.get("stream"):
                options = body.get("stream_options") or {}
                usage_chunk = isinstance(options, dict) and bool(options.get("include_usage"))
                return await self._stream(
                    http, pending, number, rid, created, model, chat, usage_chunk, prompt_tokens
                )
            return await self._complete(pending, number, rid, created, model, chat, prompt_tokens)
        except (ConnectionResetError, asyncio.CancelledError):
            log.info("client went away; request %s aborted", rid)
            raise
        finally:
            self._pending.pop(engine_request.number, None)
            if engine_request.finished_at is None:
                self.engine.abort(engine_request)
                self.metrics.observe_finished(engine_request)

    async def _next(self, pending: _Pending) -> tuple[int, bool]:
        tokens, finished = await pending.queue.get()
        if tokens < 0:
            raise ApiError(500, self.failure or "simulated engine failed", "InternalServerError")
        return tokens, finished

    def _finish_reason(self, pending: _Pending) -> str:
        return pending.request.finish_reason or "length"

    def _usage(self, prompt_tokens: int, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    async def _complete(
        self,
        pending: _Pending,
        number: int,
        rid: str,
        created: int,
        model: str,
        chat: bool,
        prompt_tokens: int,
    ) -> web.Response:
        words: list[str] = []
        while True:
            tokens, finished = await self._next(pending)
            words.extend(self._word(number, pending.produced + i) for i in range(tokens))
            pending.produced += tokens
            if finished:
                break
        text = " ".join(words)
        reason = self._finish_reason(pending)
        choice: dict[str, Any]
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return web.json_response(
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": self._usage(prompt_tokens, pending.produced),
            }
        )

    async def _stream(
        self,
        http: web.Request,
        pending: _Pending,
        number: int,
        rid: str,
        created: int,
        model: str,
        chat: bool,
        usage_chunk: bool,
        prompt_tokens: int,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(http)
        kind = "chat.completion.chunk" if chat else "text_completion"

        async def send(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
            chunk: dict[str, Any] = {
                "id": rid,
                "object": kind,
                "created": created,
                "model": model,
                "choices": choices,
            }
            if usage is not None:
                chunk["usage"] = usage
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        if chat:
            await send(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
            )
        while True:
            tokens, finished = await self._next(pending)
            start = pending.produced
            pending.produced += tokens
            text = "".join(
                (" " if start + i else "") + self._word(number, start + i) for i in range(tokens)
            )
            reason = self._finish_reason(pending) if finished else None
            if chat:
                await send([{"index": 0, "delta": {"content": text}, "finish_reason": reason}])
            else:
                await send([{"index": 0, "text": text, "logprobs": None, "finish_reason": reason}])
            if finished:
                break
        if usage_chunk:
            await send([], self._usage(prompt_tokens, pending.produced))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def serve_forever(replica: SimulatedReplica, port: int) -> None:
    """Run one replica until cancelled (SIGTERM/SIGINT end it cleanly)."""
    server = SimServer(replica)
    bound = await server.start(port)
    log.info(
        "simulating %s on %s x%d at 127.0.0.1:%d (time scale %g, load time %gs)",
        replica.verifier_ref,
        replica.gpu.name,
        replica.engine.replica.tp,
        bound,
        server.time_scale,
        server.load_time_s,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
