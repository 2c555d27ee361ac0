"""`serve`'s HTTP face against hostile clients: oversized bodies, secrets in URLs, health probes.

The app is built as `serve` builds it (bot.server.build_asgi with the tracker webhooks) and
served by uvicorn on 127.0.0.1; oversized bodies go over a raw socket, as an attacker sends them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.server import build_asgi, build_services
from bot.settings import Settings
from bot.tickets import ticket_syncs
from bot.webhooks import tracker_routes
from ledger import db
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.fakes.asgi import running
from tests.fakes.jira import FakeJira
from tests.fakes.trello import KEY, TOKEN, FakeTrello
from tests.logs import captured_logs
from tests.rawhttp import CHUNK, chunked_post, declared_post, status_of

CATALOG = load_catalog()
JIRA_SECRET = "jira-hook-secret-0123456789abcdef-SECRETJ"
TRELLO_SECRET = "trello-app-secret-0123456789abcdef-SECRETT"
FEED_TOKEN = "feed-token-0123456789abcdef-SECRETF"
LIMIT = 64 * 1024
FIFTY_MB = 50 * 1024 * 1024


@dataclass
class Counting:
    """Wraps the ASGI app as uvicorn sees it: what the app read of each body, what it answered."""

    app: ASGIApp
    read: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        index = len(self.read)
        self.read.append(0)

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.read[index] += len(message.get("body", b""))
            return message

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(int(message["status"]))
            await send(message)

        await self.app(scope, counted_receive, watched_send)


@dataclass
class Served:
    url: str
    counting: Counting
    settings: Settings


def _settings(jira: FakeJira, trello: FakeTrello, max_body: int) -> Settings:
    return Settings.model_validate(
        {
            "server": {"max_body_bytes": max_body},
            "calendar": {"enabled": True, "feed_token": FEED_TOKEN},
            "tickets": {
                "jira": {
                    "enabled": True,
                    "url": jira.url,
                    "token": "pat",
                    "webhook_secret": JIRA_SECRET,
                    "timeout": 5,
                },
                "trello": {
                    "enabled": True,
                    "api_url": trello.url,
                    "api_key": KEY,
                    "token": TOKEN,
                    "board": "Compliance",
                    "webhook_secret": TRELLO_SECRET,
                    "webhook_url": "https://bot.example.com/trello/webhook",
                    "timeout": 5,
                },
            },
        }
    )


@contextmanager
def serving(
    sessions: sessionmaker[Session], clock: FakeClock, *, max_body: int = LIMIT
) -> Iterator[Served]:
    """`serve`'s ASGI app (no Slack) with both tracker webhooks and the calendar feed."""
    with FakeJira() as jira, FakeTrello() as trello:
        trello.add_board("Compliance")
        settings = _settings(jira, trello, max_body)
        engine = sessions.kw["bind"]
        services = build_services(settings=settings, catalog=CATALOG, engine=engine, clock=clock)
        syncs = ticket_syncs(settings=settings, catalog=CATALOG, sessions=sessions, clock=clock)
        asgi = build_asgi(
            app=None,
            services=services,
            engine=engine,
            executor=ThreadPoolExecutor(max_workers=1),
            extra_routes=tracker_routes(
                syncs={s.sink.name: s for s in syncs},
                settings=settings,
                metrics=services.metrics,
                wake={},
            ),
        )
        counting = Counting(asgi)
        with running(counting) as url:
            yield Served(url=url, counting=counting, settings=settings)


@pytest.fixture
def served(sessions: sessionmaker[Session], clock: FakeClock) -> Iterator[Served]:
    """The app on a free port with server.max_body_bytes = 64 KiB."""
    with serving(sessions, clock) as s:
        yield s


# ---- body limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/jira/webhook", "/trello/webhook", "/slack/events"])
def test_a_declared_oversized_body_gets_413_before_anything_is_read(
    served: Served, path: str
) -> None:
    """A POST announcing 300 MB is refused at once (413, the setting named); nothing is read."""
    answer = declared_post(served.url, path, 300 * 1024 * 1024)

    assert status_of(answer) == 413
    assert b"server.max_body_bytes (65536 bytes)" in answer
    assert b"connection: close" in answer.lower()
    assert served.counting.read == [0]


@pytest.mark.parametrize("path", ["/jira/webhook?secret=" + JIRA_SECRET, "/trello/webhook"])
def test_a_streamed_body_past_the_limit_gets_413_and_the_server_stops_reading(
    served: Served, path: str
) -> None:
    """50 MB chunked to a webhook: 413 past 64 KiB after reading ~64 KiB; less is read whole."""
    status, sent = chunked_post(served.url, path, FIFTY_MB)

    assert served.counting.statuses == [413]
    assert status in (413, None)  # the server may reset the connection with the answer
    read = served.counting.read[0]
    assert LIMIT < read <= LIMIT + 4 * CHUNK
    assert sent < FIFTY_MB // 2  # it hung up instead of draining the upload
    # A delivery just under the limit is still read whole.
    body = json.dumps({"pad": "x" * (LIMIT - 100)}).encode()
    answer = httpx.post(f"{served.url}{path}", content=body, timeout=10)
    assert answer.status_code != 413
    assert served.counting.read[-1] == len(body)


def test_max_body_bytes_is_validated_with_its_key() -> None:
    """server.max_body_bytes is a setting (default 1 MiB); below 1 KiB is an error naming it."""
    assert Settings().server.max_body_bytes == 1024 * 1024
    assert (
        Settings.model_validate({"server": {"max_body_bytes": 2048}}).server.max_body_bytes == 2048
    )
    with pytest.raises(ValueError, match=r"max_body_bytes\n.*greater than or equal to 1024"):
        Settings.model_validate({"server": {"max_body_bytes": 10}})


# ---- logs ----------------------------------------------------------------------------------


def test_access_lines_are_json_without_query_strings(served: Served) -> None:
    """Requests carrying the feed token and the webhook secret are logged without them, as JSON."""
    with captured_logs("debug", "json") as logs, httpx.Client(timeout=10) as http:
        feed = http.get(f"{served.url}/calendar.ics?token={FEED_TOKEN}")
        wrong = http.get(f"{served.url}/calendar.ics?user=U1&token=SECRETGUESS{FEED_TOKEN}")
        hook = http.post(f"{served.url}/jira/webhook?secret={JIRA_SECRET}", json={"x": 1})
        odd = http.get(f"{served.url}/%0a%7B%22level%22%3A%22critical%22%7D?key=SECRETK")

    assert (feed.status_code, wrong.status_code, hook.status_code) == (200, 401, 200)
    assert odd.status_code == 404
    records = logs.records()  # every line is a JSON object
    assert "SECRET" not in logs.text
    access = [r for r in records if r["event"] == "http.request"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("GET", "/calendar.ics", 200),
        ("GET", "/calendar.ics", 401),
        ("POST", "/jira/webhook", 200),
        ("GET", "/%0a%7B%22level%22%3A%22critical%22%7D", 404),
    ]
    assert all(isinstance(r["duration_ms"], float) for r in access)


def test_readyz_says_not_ready_without_internals_and_logs_the_reason_once(
    db_url: str, clock: FakeClock
) -> None:
    """/readyz on an unmigrated database: 503 {"status": "unavailable"}; the why is logged once."""
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    try:
        with (
            serving(sessions, clock) as s,
            captured_logs("info", "json") as logs,
            httpx.Client(timeout=10) as http,
        ):
            down = [http.get(f"{s.url}/readyz") for _ in range(3)]
            db.upgrade(engine)
            up = [http.get(f"{s.url}/readyz") for _ in range(2)]
    finally:
        engine.dispose()

    assert {(a.status_code, a.text) for a in down} == {(503, '{"status":"unavailable"}')}
    assert {a.status_code for a in up} == {200}
    events = [r for r in logs.records() if r["event"].startswith("serve.")]
    assert [r["event"] for r in events] == ["serve.not_ready", "serve.ready_again"]
    assert "db upgrade" in events[0]["reason"]
