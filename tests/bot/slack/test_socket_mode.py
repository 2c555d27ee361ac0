"""Socket Mode: the same app answers over a websocket it opens itself (no public URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from sqlalchemy.orm import Session, sessionmaker

from bot.slack.app import build_app
from tests.bot.slack.conftest import (
    CHANNEL,
    StubAws,
    TrackingExecutor,
    make_services,
    slack_settings,
)
from tests.conftest import FakeClock
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_socket import FakeSocketModeServer
from tests.ledger.helpers import obs, scan


@pytest.fixture
def socket_server() -> Iterator[FakeSocketModeServer]:
    """Slack's end of the Socket Mode websocket, on 127.0.0.1."""
    server = FakeSocketModeServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_slash_command_over_socket_mode(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    fake_slack: FakeSlack,
    socket_server: FakeSocketModeServer,
) -> None:
    """With slack.mode socket, `/compliance status` arrives on the websocket and is answered."""
    scan(sessions, clock, [obs("vol-1", severity="critical")])
    settings = slack_settings(fake_slack, mode="socket", signing_secret=None, app_token="xapp-test")
    services = make_services(sessions, clock, settings, StubAws())
    executor = TrackingExecutor()
    app = build_app(services, executor=executor)
    fake_slack.socket_url = socket_server.url
    handler = SocketModeHandler(app, "xapp-test", web_client=services.client)
    handler.connect()  # type: ignore[no-untyped-call]  # unannotated in slack_bolt
    try:
        socket_server.wait_connected()
        envelope = socket_server.send_envelope(
            "slash_commands",
            {
                "command": "/compliance",
                "text": "status",
                "user_id": "UALICE",
                "channel_id": CHANNEL,
                "team_id": "T0001",
                "response_url": fake_slack.response_url(),
                "trigger_id": "t1",
            },
        )
        ack = socket_server.wait_for_ack(envelope)
    finally:
        handler.close()  # type: ignore[no-untyped-call]  # unannotated in slack_bolt
        executor.drain()

    assert fake_slack.calls_to("apps.connections.open")[0].token == "xapp-test"
    text = "\n".join(b["text"]["text"] for b in ack["payload"]["blocks"] if "text" in b)
    assert "Compliance status" in text
    assert "1 critical" in text
