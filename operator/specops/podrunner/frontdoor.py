"""A loopback HTTP front door per managed Service (the twin's kube-proxy + gateway).

It forwards any request to one ready replica and streams the answer back
chunk by chunk, so Server-Sent Events arrive as the simulator produces them
and TTFT measured through the door is the replica's TTFT.
"""

from __future__ import annotations

import logging
import socket

import aiohttp
from aiohttp import web

from specops.podrunner.balance import Backend, LeastOutstanding

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def _forwardable(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {k: v for k, v in items if k.lower() not in _HOP_BY_HOP}


class FrontDoor:
    """Listens on ``127.0.0.1:port`` and spreads requests over ``backends``."""

    def __init__(self, key: str, session: aiohttp.ClientSession) -> None:
        self.key = key
        self.backends: list[Backend] = []
        self._session = session
        self._balancer = LeastOutstanding()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.served = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Bind a kernel-chosen loopback port (no race with other processes)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A closing door (Service deleted, runner stopping) gives streams 2 s, not
        # aiohttp's default 60 s, so it never stalls the reconcile loop.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        log.info("front door for %s listening on %s", self.key, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        backend = self._balancer.pick(self.backends)
        if backend is None:
            return web.json_response(
                {"error": {"message": f"no ready replica behind {self.key}", "code": 503}},
                status=503,
            )
        backend.outstanding += 1
        response: web.StreamResponse | None = None
        try:
            body = await request.read()
            async with self._session.request(
                request.method,
                backend.url + request.rel_url.path_qs,
                data=body,
                headers=_forwardable(request.headers),
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status, headers=_forwardable(upstream.headers)
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                self.served += 1
                return response
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            if response is not None:
                raise  # headers already sent: let the client see a broken stream
            return web.json_response(
                {"error": {"message": f"replica {backend.key}: {exc}", "code": 502}}, status=502
            )
        finally:
            backend.outstanding -= 1
