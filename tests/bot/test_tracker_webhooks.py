"""POST /jira/webhook and /trello/webhook: verified, read, applied; bad deliveries refused."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from bot.metrics import Metrics
from bot.settings import Settings
from bot.tickets import TicketSync, ticket_syncs
from bot.webhooks import tracker_routes
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.fakes.asgi import running
from tests.fakes.jira import FakeJira
from tests.fakes.trello import KEY, TOKEN, FakeTrello
from tests.ledger.helpers import obs, only_finding, scan

CATALOG = load_catalog()
JIRA_SECRET = "jira-hook-secret"
TRELLO_SECRET = "trello-app-secret"
CALLBACK = "https://bot.example.com/trello/webhook"


@pytest.fixture
def trackers() -> Iterator[tuple[FakeJira, FakeTrello]]:
    """A fake Jira and a fake Trello with the board "Compliance"."""
    with FakeJira() as jira, FakeTrello() as trello:
        trello.add_board("Compliance")
        yield jira, trello


class Hooks:
    """The webhook endpoints over both trackers, and their syncs."""

    def __init__(
        self, jira: FakeJira, trello: FakeTrello, sessions: sessionmaker[Session], clock: FakeClock
    ) -> None:
        self.settings = Settings.model_validate(
            {
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
                        "webhook_url": CALLBACK,
                        "timeout": 5,
                    },
                }
            }
        )
        syncs = ticket_syncs(
            settings=self.settings, catalog=CATALOG, sessions=sessions, clock=clock
        )
        self.syncs: dict[str, TicketSync] = {s.sink.name: s for s in syncs}
        self.woken: list[str] = []
        self.metrics = Metrics()
        app = Starlette(
            routes=tracker_routes(
                syncs=self.syncs,
                settings=self.settings,
                metrics=self.metrics,
                wake={name: (lambda n=name: self.woken.append(n)) for name in self.syncs},
            )
        )
        self._server = running(app)
        self.url = self._server.__enter__()
        self.client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def close(self) -> None:
        """Stop the server."""
        self.client.close()
        self._server.__exit__(None, None, None)


@pytest.fixture
def hooks(
    trackers: tuple[FakeJira, FakeTrello], sessions: sessionmaker[Session], clock: FakeClock
) -> Iterator[Hooks]:
    """The webhook endpoints served over real HTTP on 127.0.0.1."""
    served = Hooks(*trackers, sessions, clock)
    yield served
    served.close()


def test_a_signed_jira_delivery_closes_the_finding(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Jira Cloud signs with X-Hub-Signature; the closed issue resolves the finding."""
    jira, _trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["jira"].run_once()
    jira.set_status("SEC-1", "Done")
    body = json.dumps(jira.webhook("jira:issue_updated", "SEC-1")).encode()
    signature = hmac.new(JIRA_SECRET.encode(), body, hashlib.sha256).hexdigest()

    answer = hooks.client.post(
        "/jira/webhook", content=body, headers={"X-Hub-Signature": f"sha256={signature}"}
    )
    again = hooks.client.post(
        "/jira/webhook", content=body, headers={"X-Hub-Signature": f"sha256={signature}"}
    )

    assert answer.status_code == 200
    assert answer.json()["closed"] == 1
    assert again.json()["unchanged"] == 1  # Jira's retry of the same event changes nothing
    assert only_finding(sessions).status == "resolved"
    assert hooks.woken == ["jira"]


def test_jira_delivery_with_the_secret_in_the_url_is_accepted(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Jira Server cannot sign: the secret rides in the webhook URL."""
    jira, _trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["jira"].run_once()
    jira.set_status("SEC-1", "Done")

    answer = hooks.client.post(
        f"/jira/webhook?secret={JIRA_SECRET}", json=jira.webhook("jira:issue_updated", "SEC-1")
    )

    assert answer.status_code == 200
    assert only_finding(sessions).status == "resolved"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/jira/webhook", {}, 401),
        ("/jira/webhook?secret=guess", {}, 401),
        ("/jira/webhook", {"X-Hub-Signature": "sha256=00"}, 401),
        ("/trello/webhook", {}, 401),
        ("/trello/webhook", {"X-Trello-Webhook": "AAAA"}, 401),
    ],
)
def test_unsigned_or_wrongly_signed_deliveries_are_refused(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    path: str,
    headers: dict[str, str],
    status: int,
    hooks: Hooks,
) -> None:
    """No secret, a wrong one, a bad signature: 401, and the ledger is untouched."""
    jira, _trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["jira"].run_once()
    jira.set_status("SEC-1", "Done")

    answer = hooks.client.post(
        path, content=json.dumps(jira.webhook("jira:issue_updated", "SEC-1")), headers=headers
    )

    assert answer.status_code == status
    assert only_finding(sessions).status == "open"


def test_a_malformed_delivery_says_what_is_wrong(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """A body that is not JSON, or not an object: 400 naming the problem."""

    broken = hooks.client.post(f"/jira/webhook?secret={JIRA_SECRET}", content=b"{not json")
    listed = hooks.client.post(f"/jira/webhook?secret={JIRA_SECRET}", content=b"[1, 2]")

    assert broken.status_code == 400
    assert "the body is not JSON" in broken.json()["error"]
    assert listed.status_code == 400
    assert listed.json()["error"] == "the body is not a JSON object"


def test_a_webhook_that_is_not_configured_says_what_to_set(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Without a webhook secret the endpoint is off, and says which key turns it on."""
    hooks.settings.tickets.jira.webhook_secret = None

    answer = hooks.client.post("/jira/webhook", json={})

    assert answer.status_code == 404
    assert "tickets.jira.webhook_secret" in answer.json()["error"]


def test_trello_checks_the_callback_then_a_signed_move_is_applied(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """HEAD answers 200 (webhook creation); a signed move to Done resolves the finding."""
    _jira, trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["trello"].run_once()
    (card_id,) = trello.cards
    body, headers = trello.webhook(
        trello.move(card_id, "Done"), callback_url=CALLBACK, secret=TRELLO_SECRET
    )

    head = hooks.client.head("/trello/webhook")
    answer = hooks.client.post("/trello/webhook", content=body, headers=headers)

    assert head.status_code == 200
    assert answer.status_code == 200
    assert answer.json()["closed"] == 1
    assert only_finding(sessions).status == "resolved"
    assert only_finding(sessions).resolved_by == f"trello:{card_id}"


def test_trello_deliveries_of_the_bots_own_moves_are_not_news(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """A late delivery of the bot's own move changes nothing."""
    _jira, trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["trello"].run_once()
    hooks.syncs["trello"].sink.close(  # the bot moves it (not through the ledger)
        hooks.syncs["trello"].sink.find(only_finding(sessions).fingerprint),  # type: ignore[arg-type]
        "moved by the bot",
    )
    own = next(a for a in trello.actions if a["type"] == "updateCard")
    body, headers = trello.webhook(own, callback_url=CALLBACK, secret=TRELLO_SECRET)

    answer = hooks.client.post("/trello/webhook", content=body, headers=headers)

    assert answer.status_code == 200
    assert answer.json()["closed"] == 0
    assert only_finding(sessions).status == "open"
