"""A fake PostgreSQL server on loopback, for the failures a real server cannot be made to show on demand.

It speaks just enough of the wire protocol (https://www.postgresql.org/docs/current/protocol-flow.html)
for a client to reach the point of failure:

- `silent`: accepts the TCP connection, reads what the client sends, and never answers.
- `refuse_at_startup(code, message)`: declines SSL and GSS encryption ('N'), reads the startup
  packet and answers it with a FATAL ErrorResponse, as PostgreSQL does when it is starting up,
  full, or refuses the database or the password; then closes the connection.

Each server runs in a thread of its own on a free port until its block ends; what it does to a
new connection is its `session`, which a test may change between requests.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

SSL_REQUEST = 80877103  # the "protocol version" numbers of the two encryption requests
GSSENC_REQUEST = 80877104


Session = Callable[[socket.socket], None]


@dataclass
class FakeServer:
    host: str
    port: int
    session: Session

    def url(self, database: str = "app") -> str:
        return f"postgresql://postgres:secret@{self.host}:{self.port}/{database}"


def error_response(severity: str, code: str, message: str) -> bytes:
    """An ErrorResponse ('E'): severity (S, and V, which is never localised), SQLSTATE (C), message (M)."""
    fields = ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message))
    body = b"".join(kind + value.encode() + b"\0" for kind, value in fields) + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def read_exactly(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection")
        data += chunk
    return data


def read_startup_packet(connection: socket.socket) -> bytes:
    """The client's startup packet, after declining any encryption request it sends first."""
    while True:
        (length,) = struct.unpack("!I", read_exactly(connection, 4))
        packet = read_exactly(connection, length - 4)
        (version,) = struct.unpack("!I", packet[:4])
        if version in (SSL_REQUEST, GSSENC_REQUEST):
            connection.sendall(b"N")  # no encryption here: the client goes on in the clear
            continue
        return packet


def refuse_at_startup(code: str, message: str) -> Session:
    """A session that answers the startup packet with FATAL `code` and hangs up."""

    def session(connection: socket.socket) -> None:
        read_startup_packet(connection)
        connection.sendall(error_response("FATAL", code, message))

    return session


def silent(connection: socket.socket) -> None:
    """A session that reads until the client gives up, and never says a word."""
    while connection.recv(4096):
        pass


@contextmanager
def fake_postgres(session: Session) -> Iterator[FakeServer]:
    """Serve the server's session to every client on a free loopback port, a thread per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = FakeServer("127.0.0.1", listener.getsockname()[1], session)
    stopping = threading.Event()
    open_connections: list[socket.socket] = []

    def serve(connection: socket.socket, session: Session) -> None:
        with connection, suppress(OSError):
            session(connection)

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:  # the listener was closed: the block ended
                return
            open_connections.append(connection)
            threading.Thread(target=serve, args=(connection, server.session), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stopping.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        for connection in open_connections:  # ends the silent sessions' reads
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        acceptor.join(timeout=5)
