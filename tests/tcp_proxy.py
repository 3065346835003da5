"""A small asyncio TCP proxy for fault tests: forwards bytes and can cut every connection at once.

``cut()`` aborts both sides of every live connection with a TCP reset, as a network failure would;
``pause()``/``resume()`` (or ``cut(hold_s=...)``) refuse new connections for a while by closing the
listening socket and opening it again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once, without flushing, and make the peer see a reset rather than an orderly EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side and the upstream side."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client, self.upstream = client, upstream

    def abort(self) -> None:
        _reset(self.client)
        _reset(self.upstream)


class TcpProxy:
    """Listens on ``host:<ephemeral port>`` and forwards every connection to ``target``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._host = host
        self._port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._resume_at: asyncio.TimerHandle | None = None
        self._resuming: asyncio.Task[None] | None = None
        self._closed = False
        self.accepted = 0  # connections forwarded so far
        self.cuts = 0  # connections aborted by cut()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("TcpProxy is not started")
        return self._port

    @property
    def live(self) -> int:
        """How many proxied connections are open now."""
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    def cut(self, hold_s: float = 0.0) -> int:
        """Abort every live connection in both directions; refuse new ones for ``hold_s`` seconds.

        Returns how many connections were cut.
        """
        if hold_s > 0:
            self.pause()
            loop = asyncio.get_running_loop()
            self._resume_at = loop.call_later(hold_s, self._resume_later)
        links, self._links = list(self._links), set()
        for link in links:
            link.abort()
        self.cuts += len(links)
        return len(links)

    def _resume_later(self) -> None:
        self._resume_at = None
        self._resuming = asyncio.get_running_loop().create_task(self.resume())

    def pause(self) -> None:
        """Stop listening: new connections are refused until ``resume()``."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def resume(self) -> None:
        """Listen again on the same port."""
        if self._resume_at is not None:
            self._resume_at.cancel()
            self._resume_at = None
        if self._server is None and self._port and not self._closed:
            await self.start()

    async def close(self) -> None:
        """Stop listening for good and cut what is still connected."""
        if self._resume_at is not None:
            self._resume_at.cancel()
            self._resume_at = None
        if self._resuming is not None:
            await self._resuming
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.cut()
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        if self._server is None:  # paused while we were connecting
            _reset(writer)
            _reset(up_writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.accepted += 1
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            if link in self._links:
                self._links.discard(link)
                link.abort()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction until EOF (passed on as a half-close) or an error (aborts both)."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            link.abort()
