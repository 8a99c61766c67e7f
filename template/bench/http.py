"""A minimal HTTP/1.1 GET client over asyncio streams, with keep-alive.

The load generators run in one process on one core, next to a service that may answer
thousands of requests a second: a general-purpose client such as httpx spends several times
more CPU per request than this, and would measure itself instead of the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

# What a failed request raises: the connection broke, was refused, or the answer was garbled.
REQUEST_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass(frozen=True)
class Target:
    """Where the service listens."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL, got {url!r}")
        return cls(parts.hostname, parts.port or 80)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection, opened on first use and again after the server closes it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> Answer:
        reused = self._streams is not None
        try:
            return await self._get(path)
        except REQUEST_ERRORS:
            self.close()
            if not reused:
                raise
        # The server may close an idle keep-alive connection just as a request goes out.
        return await self._get(path)

    async def _get(self, path: str) -> Answer:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.target.host, self.target.port)
        reader, writer = self._streams
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.target.host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_head(head)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, body)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x answer: {status_line!r}")
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from this service
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def get_once(url: str, path: str, seconds: float = 10) -> Answer:
    """One request on a connection of its own."""
    connection = Connection(Target.parse(url))
    try:
        async with asyncio.timeout(seconds):
            return await connection.get(path)
    finally:
        connection.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop where it is installed (uvicorn[standard] brings it): the sender
    then spends less of its core on the event loop itself."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
