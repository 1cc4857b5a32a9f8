"""Serve an :class:`Emulator` over real HTTP/1.1 (keep-alive) on a loopback address.

aiohttp's low-level server on an event loop of its own thread: one thread parses, dispatches
and answers every connection, so an emulator costs a fraction of a millisecond of CPU per
request (the standard library's threading server cost ~0.8 ms, most of it threads fighting
over the GIL, which slowed the client it was meant to measure). An emulator that sleeps on
purpose (``Faults.latency_ms`` / ``slow_rate``) is dispatched on a thread pool instead, so
slow answers overlap as they would on a real API.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from aiohttp import web

from reverse_etl.sandbox.base import Emulator
from reverse_etl.sandbox.http import Request, Response

LOOPBACK = "127.0.0.1"
SLOW_WORKERS = 64  # requests that may sleep at once (a slow answer each)

# A client that hangs up mid-answer is what the emulators are for; aiohttp would log each one.
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


class SandboxServer:
    """Run one emulator on ``127.0.0.1`` in a background thread.

    ``port=0`` picks a free ephemeral port; :attr:`url` tells where it listens (the socket is
    bound at construction). Leaving the context (or :meth:`stop`) saves the emulator's state if
    it has a ``state_path``.
    """

    def __init__(self, emulator: Emulator, *, host: str = LOOPBACK, port: int = 0) -> None:
        self.emulator = emulator
        self._host = host
        self._socket = socket.create_server((host, port), backlog=128)
        self._port = int(self._socket.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._slow = ThreadPoolExecutor(max_workers=SLOW_WORKERS, thread_name_prefix=f"sandbox-{emulator.name}-slow")
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{emulator.name}", daemon=True)
        self._ready = threading.Event()
        self._stopped = False
        self._failed: BaseException | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- the loop --------------------------------------------------------------------------
    async def _open(self) -> tuple[web.Server, asyncio.Server]:
        web_server = web.Server(self._handle, access_log=None, handler_cancellation=False)
        return web_server, await self._loop.create_server(web_server, sock=self._socket)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            web_server, server = self._loop.run_until_complete(self._open())
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.run_until_complete(web_server.shutdown(0.1))
            self._loop.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.content.read()  # every size: the emulators enforce their API's own limits
        incoming = Request.build(request.method, request.path_qs, dict(request.headers), body)
        faults = self.emulator.faults
        if faults.latency_ms or faults.slow_rate:
            answer = await self._loop.run_in_executor(self._slow, self._dispatch, incoming)
        else:
            answer = self._dispatch(incoming)
        if answer is None:  # an injected dropped connection (or a lost reply): no answer at all
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        headers = dict(answer.headers)
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    def _dispatch(self, request: Request) -> Response | None:
        try:
            return self.emulator.dispatch(request)
        except Exception as exc:  # an emulator bug must still answer, as a 500
            return Response.json(500, {"message": f"emulator error: {exc!r}"})

    # --- start / stop ----------------------------------------------------------------------
    def start(self) -> SandboxServer:
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise RuntimeError(f"the {self.emulator.name} sandbox did not start: {self._failed!r}") from self._failed
        return self

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
            else:
                self._socket.close()
            self._slow.shutdown(wait=False, cancel_futures=True)
        self.emulator.save()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (``retl sandbox serve``)."""
        self.start()
        try:
            while self._thread.is_alive():
                self._thread.join(0.2)
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
