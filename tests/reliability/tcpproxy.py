"""A TCP proxy on loopback whose link the test can cut and restore (a tiny Toxiproxy).

The app's DATABASE_URL points at the proxy; the proxy forwards to PostgreSQL. Modes:

* ``forward``: bytes pass both ways;
* ``cut``: every open connection is aborted and the port refuses new ones (the database
  "went away");
* ``blackhole``: every open connection is aborted; new ones are accepted and then never
  answered (a database host that does not respond: only a connect timeout ends the wait).

It runs its own asyncio loop in a daemon thread; the methods are called from the test thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``target_host``:``target_port``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "forward"
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # --- called from the test thread ---------------------------------------------------------

    def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._thread.start()
        self._call(self._listen())
        return self.port

    def cut(self) -> None:
        """Abort every connection and stop listening: connects are refused."""
        self._call(self._set_mode("cut"))

    def blackhole(self) -> None:
        """Abort every connection; accept new ones but never answer them."""
        self._call(self._set_mode("blackhole"))

    def restore(self) -> None:
        """Forward again, on the same port."""
        self._call(self._set_mode("forward"))

    def close(self) -> None:
        """Stop the proxy, its connections' tasks and its thread."""
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=10)

    # --- inside the loop ---------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, mode: str) -> None:
        self.mode = mode
        for writer in list(self._writers):
            writer.transport.abort()  # RST: the peer sees the connection die at once
        self._writers.clear()
        if mode == "cut" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode != "cut" and self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._set_mode("cut")
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        if self.mode == "blackhole":
            return  # keep it open, say nothing
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or error, then close the other side."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()
