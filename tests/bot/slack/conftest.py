"""A running bot over real HTTP: the ASGI app under uvicorn, Slack faked on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.orm import Session, sessionmaker

from bot.scanning import ScanOutcome
from bot.server import build_asgi, build_services
from bot.settings import Settings, SlackSettings
from bot.slack.app import BotServices, build_app
from ledger.verification import Recheck
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.fakes.asgi import running
from tests.fakes.slack import FakeSlack, block_errors

SECRET = "test-signing-secret"
CHANNEL = "C0COMPLY"
APPROVER = "UAPPROVER"


class TrackingExecutor(ThreadPoolExecutor):
    """Runs listeners like Bolt's default pool, and lets a test wait for all of them."""

    def __init__(self) -> None:
        super().__init__(max_workers=8, thread_name_prefix="test-listener")
        self._futures: list[Future[Any]] = []
        self._lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        with self._lock:
            self._futures.append(future)
        return future

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every listener started so far has finished (re-raising its error)."""
        with self._lock:
            pending = list(self._futures)
        for future in pending:
            future.result(timeout)


@dataclass
class StubAws:
    """What the scanner and the re-check answer, set by each test."""

    verdict: str = "pass"
    detail: str = "vol-1 now complies"
    rechecks: list[tuple[str, str, str, str]] = field(default_factory=list)
    scans: list[tuple[str | None, str]] = field(default_factory=list)


@dataclass
class Bot:
    url: str
    services: BotServices
    executor: TrackingExecutor
    slack: FakeSlack
    sessions: sessionmaker[Session]
    clock: FakeClock
    aws: StubAws
    http: httpx.Client

    def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        secret: str = SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        """POST to /slack/events, signed as Slack signs, at the bot's (injected) clock."""
        ts = str(timestamp if timestamp is not None else int(self.clock().timestamp()))
        sent = {"Content-Type": content_type, **(headers or {})}
        if signed:
            sent["X-Slack-Request-Timestamp"] = ts
            signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
            assert signature is not None
            sent["X-Slack-Signature"] = signature
        return self.http.post(f"{self.url}/slack/events", content=body, headers=sent)

    def command(self, text: str, *, user: str = "UALICE", channel: str = CHANNEL) -> Any:
        """Send `/compliance <text>` as Slack does: form fields."""
        body = urlencode(
            {
                "token": "legacy",
                "team_id": "T0001",
                "channel_id": channel,
                "user_id": user,
                "user_name": user.lower(),
                "command": "/compliance",
                "text": text,
                "response_url": self.slack.response_url(),
                "trigger_id": "trigger-1",
            }
        )
        response = self.post(body)
        assert response.status_code == 200, response.text
        answer = response.json() if response.content else None
        # Slack checks an acknowledgement's blocks as it checks a post's: so does this test.
        assert block_errors((answer or {}).get("blocks")) == [], answer
        return answer

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "UALICE",
        message: dict[str, Any] | None = None,
        ephemeral: bool = False,
    ) -> httpx.Response:
        """Click a button: a block_actions payload in the `payload` form field."""
        container: dict[str, Any] = {"type": "message", "is_ephemeral": ephemeral}
        if message is not None:
            container.update(channel_id=message["channel"], message_ts=message["ts"])
        payload = {
            "type": "block_actions",
            "team": {"id": "T0001"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0001"},
            "api_app_id": "A0001",
            "trigger_id": f"trigger-{action_id}",
            "response_url": self.slack.response_url(),
            "container": container,
            "channel": {"id": message["channel"] if message else CHANNEL},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": "1.0",
                }
            ],
        }
        if message is not None:
            payload["message"] = {"ts": message["ts"], "blocks": message.get("blocks", [])}
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def submit(
        self, callback_id: str, private_metadata: str, values: dict[str, Any], user: str
    ) -> httpx.Response:
        """Submit a modal: a view_submission payload."""
        payload = {
            "type": "view_submission",
            "team": {"id": "T0001"},
            "user": {"id": user, "team_id": "T0001"},
            "api_app_id": "A0001",
            "view": {
                "id": "V1",
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": values},
            },
        }
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def deliver(self) -> dict[str, int]:
        """One round of the delivery worker, as `serve` runs it every few seconds."""
        return self.services.delivery.run_once()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1."""
    fake = FakeSlack()
    fake.start()
    fake.add_user(APPROVER, name="approver", email="approver@example.com")
    fake.add_user("UALICE", name="alice", email="alice@example.com")
    try:
        yield fake
    finally:
        fake.stop()


def slack_settings(fake: FakeSlack, **overrides: Any) -> Settings:
    """Slack on, pointed at the fake, with one approver and no SDK-level retries."""
    values: dict[str, Any] = {
        "enabled": True,
        "api_url": fake.base_url,
        "bot_token": "xoxb-test",
        "signing_secret": SECRET,
        "channel": CHANNEL,
        "approvers": [APPROVER],
        "max_retries": 0,
        "cache_seconds": 0,
        "timeout": 5,
        **overrides,
    }
    return Settings(slack=SlackSettings(**values))


def make_services(
    sessions: sessionmaker[Session], clock: FakeClock, settings: Settings, aws: StubAws
) -> BotServices:
    """The bot's services as `serve` wires them, with AWS stubbed by `aws`."""
    services = build_services(
        settings=settings,
        catalog=load_catalog(),
        engine=sessions.kw["bind"],
        clock=clock,
    )

    def scan(account: str | None, trigger: str) -> ScanOutcome:
        aws.scans.append((account, trigger))
        raise RuntimeError("no AWS in this test")

    def recheck(rule_id: str, account: str, region: str, resource_id: str) -> Recheck:
        aws.rechecks.append((rule_id, account, region, resource_id))
        return Recheck(aws.verdict, aws.detail, 3)

    services.scan, services.recheck = scan, recheck
    return services


@contextmanager
def serving(
    sessions: sessionmaker[Session], fake_slack: FakeSlack, clock: FakeClock, settings: Settings
) -> Iterator[Bot]:
    """The bot as `serve` builds it, serving /slack/events on a free port."""
    aws = StubAws()
    services = make_services(sessions, clock, settings, aws)
    executor = TrackingExecutor()
    app = build_app(services, executor=executor)
    engine = sessions.kw["bind"]
    asgi = build_asgi(app=app, services=services, engine=engine, executor=executor)
    with running(asgi) as url, httpx.Client(timeout=10, trust_env=False) as http:
        yield Bot(
            url=url,
            services=services,
            executor=executor,
            slack=fake_slack,
            sessions=sessions,
            clock=clock,
            aws=aws,
            http=http,
        )
        executor.drain()


@pytest.fixture
def bot(sessions: sessionmaker[Session], fake_slack: FakeSlack, clock: FakeClock) -> Iterator[Bot]:
    """The bot serving /slack/events on a free port, on SQLite or PostgreSQL."""
    with serving(sessions, fake_slack, clock, slack_settings(fake_slack)) as served:
        yield served
