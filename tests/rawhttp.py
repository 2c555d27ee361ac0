"""HTTP over a raw socket, as an attacker sends it: headers that lie, bodies that never end."""

from __future__ import annotations

import select
import socket
from urllib.parse import urlsplit

CHUNK = 64 * 1024


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)


def status_of(response: bytes) -> int | None:
    line = response.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/") else None


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    try:
        while piece := sock.recv(65536):  # the server closes after a refusal
            data += piece
    except OSError:  # reset after the answer: what arrived is what we have
        pass
    return data


def declared_post(url: str, path: str, length: int) -> bytes:
    """Send only the headers of a POST declaring `length` bytes; return the answer's head."""
    with _connect(url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        return _read_response(sock)


def chunked_post(url: str, path: str, total: int) -> tuple[int | None, int]:
    """Stream up to `total` bytes chunked (no Content-Length) until the server answers or
    hangs up; return the answer's status (None if the reset lost it) and the bytes sent."""
    sent = 0
    with _connect(url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"%x\r\n" % CHUNK + b"{" * CHUNK + b"\r\n"
        while sent < total:
            answered, _, _ = select.select([sock], [], [], 0)  # a poll, not a wait
            if answered:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server closed the connection: it stopped reading
                break
            sent += CHUNK
        return status_of(_read_response(sock)), sent
