"""One streamed OpenAI request, timed the way a user experiences it.

We always stream (``stream_options.include_usage`` for exact token counts)
because TTFT and ITL only exist on a stream, and ask for a fixed output
length (``max_tokens`` with ``ignore_eos``) so load levels are comparable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from specops.load.stats import RequestRecord

Api = Literal["completions", "chat"]


@dataclass(frozen=True)
class Endpoint:
    """Where and what to ask: base URL (``http://127.0.0.1:PORT``), model, fixed output."""

    url: str
    model: str
    output_tokens: int
    api: Api = "completions"
    timeout_s: float = 120.0

    def payload(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.output_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"


def _chunk_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    first = choices[0]
    if "delta" in first:
        return str(first["delta"].get("content") or "")
    return str(first.get("text") or "")


async def send(session: aiohttp.ClientSession, endpoint: Endpoint, prompt: str) -> RequestRecord:
    """Send one request; never raises for server or network trouble (recorded as error)."""
    record = RequestRecord(start=time.monotonic())
    streamed_chunks = 0
    try:
        async with session.post(
            endpoint.url.rstrip("/") + endpoint.path,
            json=endpoint.payload(prompt),
            timeout=aiohttp.ClientTimeout(total=endpoint.timeout_s),
        ) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                record.error = f"HTTP {resp.status}: {text}"
                return record
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if _chunk_text(chunk):
                    record.chunk_times.append(time.monotonic())
                    streamed_chunks += 1
                usage = chunk.get("usage")
                if usage:
                    record.output_tokens = int(usage.get("completion_tokens") or 0)
                    record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        record.end = time.monotonic()
        if record.output_tokens == 0:
            record.output_tokens = streamed_chunks
    except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:200]
    return record
