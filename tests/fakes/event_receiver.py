"""Fake receivers of the event stream over real HTTP on 127.0.0.1: a webhook endpoint that
verifies the HMAC signature as docs/events.md tells receivers to, and a Splunk HTTP Event
Collector.

Both record the event ids they took and count the same id taken again (a duplicate), and can be
told to answer 429 with Retry-After, 503, 400 forever, an oversized or forged answer, or to
act on a delivery and then reset the connection before answering (the sender cannot know it
landed). Keep-alive HTTP/1.1, as a real endpoint behind a load balancer speaks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024
REPLAY_WINDOW = 300  # seconds


@dataclass
class Answer:
    """One scripted answer: a status (with headers and body), or a reset after acting."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset_after_acting: bool = False


class _Server:
    """A threaded HTTP/1.1 server on a free port of 127.0.0.1 calling `handle(request)`."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def send(request: BaseHTTPRequestHandler, answer: Answer) -> None:
    """Write an answer (Content-Length always: the connection stays open)."""
    request.send_response(answer.status)
    for name, value in answer.headers.items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(answer.body)))
    request.end_headers()
    try:
        request.wfile.write(answer.body)
    except (ConnectionResetError, BrokenPipeError):
        # The client stopped reading (a capped read of an oversized answer): its right.
        request.close_connection = True


def reset(request: BaseHTTPRequestHandler) -> None:
    """Close with RST (SO_LINGER 0): the client sees a reset, not an answer."""
    request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.close_connection = True
    request.connection.close()


def read_body(request: BaseHTTPRequestHandler) -> bytes | None:
    """The body, or None (answered 413/411) when it is too big or has no length."""
    length = request.headers.get("Content-Length")
    if length is None or not length.isdigit():
        send(request, Answer(411, b'{"message":"length required"}'))
        return None
    if int(length) > MAX_BODY:
        send(request, Answer(413, b'{"message":"too large"}', {"Connection": "close"}))
        request.close_connection = True
        return None
    return request.rfile.read(int(length))


class _Recorder:
    """Event ids taken, duplicates counted, scripted answers queued."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken: list[str] = []  # every id acted on, in order, repeats included
        self.refused: list[str] = []  # why requests were refused (bad signature, stale...)
        self.script: list[Answer] = []
        self.always: Answer | None = None
        self.requests = 0

    def answer_next(self, *answers: Answer) -> None:
        """The next requests get these answers, in order."""
        with self.lock:
            self.script.extend(answers)

    def answer_always(self, answer: Answer | None) -> None:
        """Every request gets this answer (None: back to normal)."""
        with self.lock:
            self.always = answer

    def _scripted(self) -> Answer | None:
        with self.lock:
            self.requests += 1
            if self.always is not None:
                return self.always
            return self.script.pop(0) if self.script else None

    def _take(self, event_id: str) -> None:
        with self.lock:
            self.taken.append(event_id)

    @property
    def ids(self) -> set[str]:
        """The distinct event ids taken."""
        with self.lock:
            return set(self.taken)

    @property
    def duplicates(self) -> int:
        """Deliveries of an id already taken (a receiver drops them by id)."""
        with self.lock:
            return sum(n - 1 for n in Counter(self.taken).values())


class WebhookReceiver(_Recorder):
    """A webhook endpoint that verifies the signature and the timestamp, as documented."""

    def __init__(self, secret: str, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.secret = secret.encode()
        self.clock = clock
        self.bodies: dict[str, dict[str, Any]] = {}
        self.keep_bodies = True
        # Every Nth verified delivery is taken, then its connection reset (0: never).
        self.reset_every = 0
        self._verified = 0
        self._server = _Server(self._handle)

    @property
    def url(self) -> str:
        return self._server.url + "/hooks/compliancebot"

    def stop(self) -> None:
        self._server.stop()

    def _refuse(self, request: BaseHTTPRequestHandler, status: int, why: str) -> None:
        with self.lock:
            self.refused.append(why)
        send(request, Answer(status, json.dumps({"message": why}).encode()))

    def _handle(self, request: BaseHTTPRequestHandler) -> None:  # noqa: PLR0911 - one per refusal
        body = read_body(request)
        if body is None:
            return
        scripted = self._scripted()
        if scripted is not None and not scripted.reset_after_acting:
            send(request, scripted)
            return
        # What docs/events.md tells a receiver to do, in this order: timestamp within the
        # window, signature over "<timestamp>.<body>" compared in constant time, then parse.
        stamp = request.headers.get("X-Compliancebot-Timestamp", "")
        signature = request.headers.get("X-Compliancebot-Signature", "")
        if not (stamp.isascii() and stamp.isdigit()):
            self._refuse(request, 400, "no timestamp")
            return
        if abs(self.clock().timestamp() - int(stamp)) > REPLAY_WINDOW:
            self._refuse(request, 400, "stale timestamp")
            return
        expected = (
            "v1=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, signature):
            self._refuse(request, 401, "bad signature")
            return
        event = json.loads(body)
        if event.get("id") != request.headers.get("X-Compliancebot-Event-Id"):
            self._refuse(request, 400, "id header and body differ")
            return
        self._take(event["id"])
        with self.lock:
            if self.keep_bodies:
                self.bodies[event["id"]] = event
            self._verified += 1
            if self.reset_every and self._verified % self.reset_every == 0:
                scripted = Answer(reset_after_acting=True)
        if scripted is not None:  # acted, then the connection drops before the answer
            reset(request)
            return
        send(request, Answer(204))


def _hec_documents(body: bytes) -> list[Any] | None:
    """HEC takes one JSON object or several back to back in one body, all or none (None: one
    of them is not JSON)."""
    docs = []
    text, at, decoder = body.decode("utf-8", errors="replace"), 0, json.JSONDecoder()
    try:
        while at < len(text):
            while at < len(text) and text[at].isspace():
                at += 1
            if at == len(text):
                break
            doc, at = decoder.raw_decode(text, at)
            docs.append(doc)
    except ValueError:
        return None
    return docs


class FakeHec(_Recorder):
    """A Splunk HTTP Event Collector: /services/collector/event, `Authorization: Splunk`."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.channels: list[str | None] = []
        self._acks = 0
        self._server = _Server(self._handle)

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()

    @staticmethod
    def _hec(
        request: BaseHTTPRequestHandler, status: int, text: str, code: int, **extra: Any
    ) -> None:
        body = json.dumps({"text": text, "code": code, **extra}).encode()
        send(request, Answer(status, body, {"Content-Type": "application/json"}))

    def _handle(self, request: BaseHTTPRequestHandler) -> None:  # noqa: PLR0911 - one per refusal
        body = read_body(request)
        if body is None:
            return
        if request.path != "/services/collector/event":
            self._hec(request, 404, "The requested URL was not found on this server.", 404)
            return
        auth = request.headers.get("Authorization", "")
        if not auth:
            self._hec(request, 401, "Token is required", 2)
            return
        if not hmac.compare_digest(auth, f"Splunk {self.token}"):
            self._hec(request, 403, "Invalid token", 4)
            return
        scripted = self._scripted()
        if scripted is not None and not scripted.reset_after_acting:
            send(request, scripted)
            return
        docs = _hec_documents(body)
        if docs is None:
            self._hec(request, 400, "Invalid data format", 6)
            return
        if not docs:
            self._hec(request, 400, "No data", 5)
            return
        if any(not isinstance(doc, dict) or "event" not in doc for doc in docs):
            self._hec(request, 400, "Event field is required", 12)
            return
        for doc in docs:
            self._take(str((doc.get("fields") or {}).get("event_id")))
        channel = request.headers.get("X-Splunk-Request-Channel")
        with self.lock:
            self.events.extend(docs)
            self.channels.extend(channel for _ in docs)
            self._acks += 1
            ack = self._acks
        if scripted is not None:
            reset(request)
            return
        self._hec(request, 200, "Success", 0, **({"ackId": ack} if channel else {}))
