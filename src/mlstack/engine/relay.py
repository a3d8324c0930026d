"""Reaching a port inside the stack's network from this machine, through the engine's API.

A stack on a remote engine publishes PostgreSQL and S3 on the server's loopback only: nothing on
the laptop can connect to them. As `kubectl port-forward` does, each local connection becomes an
exec into a relay container on the stack's network (a Python one-liner that connects to the
service by its in-network name and copies bytes both ways), carried over the same connection the
engine is reached by (ssh, TLS). No port is opened on the server and no key leaves the engine's
own transport. Nothing here imports docker: the engine hands in a function that opens one exec.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Protocol

# Runs in the relay container: stdin -> service, service -> stdout, until either side ends.
RELAY_SCRIPT = (
    "import os,socket,sys,threading\n"
    "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),10)\n"
    "def up():\n"
    " while True:\n"
    "  b=os.read(0,65536)\n"
    "  if not b: break\n"
    "  s.sendall(b)\n"
    " s.shutdown(socket.SHUT_WR)\n"
    "threading.Thread(target=up,daemon=True).start()\n"
    "o=sys.stdout.buffer\n"
    "while True:\n"
    " b=s.recv(65536)\n"
    " if not b: break\n"
    " o.write(b);o.flush()\n"
)
_HEADER = struct.Struct(">BxxxL")  # Docker's multiplexed stream: kind (1 out, 2 err), size
_CHUNK = 65536


def relay_command(host: str, port: int) -> list[str]:
    """The exec that relays one connection to `host:port` inside the network."""
    return ["python", "-S", "-c", RELAY_SCRIPT, host, str(port)]


class Stream(Protocol):
    """The raw socket of an attached exec (plain, TLS or an ssh pipe)."""

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class _OneCallAtATime:
    """A TLS socket shared by a relay's two threads, one reading and one writing. OpenSSL takes
    one call at a time on a connection: a read and a write at once end some streams early (a
    relayed connection closed before its first byte, in 14-30 % of them against Docker 20.10).
    A read waits for data outside the lock, then takes it under the lock without blocking."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._timeout = sock.gettimeout()

    def recv(self, size: int, /) -> bytes:
        while True:
            with self._lock:
                if self._sock.pending():
                    return self._sock.recv(size)
            if self._sock.fileno() < 0:
                return b""  # closed by the other side of the relay
            select.select([self._sock], [], [], 1.0)
            with self._lock:
                self._sock.setblocking(False)
                try:
                    return self._sock.recv(size)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                finally:
                    self._sock.settimeout(self._timeout)

    def sendall(self, data: bytes, /) -> None:
        with self._lock:
            self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()


def one_call_at_a_time(stream: Stream) -> Stream:
    """`stream`, safe for one reader and one writer thread (a TLS socket is wrapped)."""
    return _OneCallAtATime(stream) if isinstance(stream, ssl.SSLSocket) else stream


def _read_exact(stream: Stream, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _demultiplex(stream: Stream, client: socket.socket, errors: list[bytes]) -> None:
    """The exec's stdout frames, as plain bytes to the local client; stderr kept for the log."""
    while True:
        header = _read_exact(stream, _HEADER.size)
        if header is None:
            return
        kind, size = _HEADER.unpack(header)
        payload = _read_exact(stream, size)
        if payload is None:
            return
        if kind == 1:
            client.sendall(payload)
        else:
            errors.append(payload)


def _upload(client: socket.socket, stream: Stream) -> None:
    while True:
        data = client.recv(_CHUNK)
        if not data:
            return
        stream.sendall(data)


class Forwarder:
    """A listener on 127.0.0.1 whose every connection is relayed through a new exec stream."""

    def __init__(self, open_stream: Callable[[], Stream], what: str) -> None:
        self._open_stream = open_stream
        self.what = what
        self.errors: list[bytes] = []  # the relays' stderr (e.g. the service refused)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._closed = False
        threading.Thread(target=self._accept, name=f"forward {what}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            stream = self._open_stream()
        except Exception as e:  # the engine refused the exec: the client sees a closed socket
            self.errors.append(str(e).encode())
            client.close()
            return
        upload = threading.Thread(target=self._pump_up, args=(client, stream), daemon=True)
        upload.start()
        try:
            _demultiplex(stream, client, self.errors)
        except OSError:
            pass
        finally:
            _close(client, stream)

    @staticmethod
    def _pump_up(client: socket.socket, stream: Stream) -> None:
        try:
            _upload(client, stream)
        except OSError:
            pass
        finally:
            _close(client, stream)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()


def _close(client: socket.socket, stream: Stream) -> None:
    with contextlib.suppress(OSError):
        client.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        client.close()
    with contextlib.suppress(OSError):
        stream.close()
