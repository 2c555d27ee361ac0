"""A local Socket Mode server: Slack's side of the websocket the bot opens in Socket Mode.

On connect it says hello; a test sends envelopes (slash commands, interactions, events) and
waits for the bot's acknowledgement of each, with its response payload.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve


class FakeSocketModeServer:
    """One websocket endpoint on 127.0.0.1 speaking Slack's Socket Mode envelopes."""

    def __init__(self) -> None:
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._connection: ServerConnection | None = None
        self._cond = threading.Condition()
        self.acks: dict[str, dict[str, Any]] = {}

    def start(self) -> FakeSocketModeServer:
        """Listen on a free port."""
        self._server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the connection and the server."""
        if self._connection is not None:
            self._connection.close()
        if self._server is not None:
            self._server.shutdown()

    @property
    def url(self) -> str:
        """What apps.connections.open hands the client."""
        assert self._server is not None
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link"

    def _handle(self, connection: ServerConnection) -> None:
        with self._cond:
            self._connection = connection
            self._cond.notify_all()
        connection.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "connection_info": {"app_id": "A0001"},
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                }
            )
        )
        try:
            for raw in connection:
                message = json.loads(raw)
                if "envelope_id" in message:
                    with self._cond:
                        self.acks[message["envelope_id"]] = message
                        self._cond.notify_all()
        except ConnectionClosed:
            pass

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Block until the client has connected."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._connection is not None, timeout):
                raise AssertionError("the Socket Mode client never connected")

    def send_envelope(
        self, type_: str, payload: dict[str, Any], *, accepts_response_payload: bool = True
    ) -> str:
        """Deliver one envelope to the client; returns its id."""
        envelope_id = str(uuid.uuid4())
        assert self._connection is not None, "wait_connected() first"
        self._connection.send(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "type": type_,
                    "payload": payload,
                    "accepts_response_payload": accepts_response_payload,
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
        )
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The client's acknowledgement of one envelope."""
        with self._cond:
            if not self._cond.wait_for(lambda: envelope_id in self.acks, timeout):
                raise AssertionError(f"no ack for envelope {envelope_id}")
            return self.acks[envelope_id]
