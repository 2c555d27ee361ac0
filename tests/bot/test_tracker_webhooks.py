"""POST /jira/webhook and /trello/webhook: verified, read, applied; bad deliveries refused."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from bot.metrics import Metrics
from bot.settings import Settings
from bot.tickets import ticket_syncs
from bot.webhooks import tracker_routes
from integrations.ticket_sync import TicketSync
from integrations.tickets import fingerprint_label
from ledger.models import AuditEntry, Ticket
from ledger.verification import Check, Recheck
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
                wake={name: functools.partial(self.woken.append, name) for name in self.syncs},
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
    assert again.json()["duplicate"] == 1  # Jira's retry of the same event changes nothing
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


# ---- matched by the key we recorded; each change applied once --------------------------------


def still_failing(asked: list[str]) -> Check:
    """A re-check that always finds the resource still failing, noting what it was asked."""

    def check(rule_id: str, account: str, region: str, resource_id: str) -> Recheck:
        asked.append(resource_id)
        return Recheck("fail", f"{resource_id} is still unencrypted", 1)

    return check


def ticket_keys(sessions: sessionmaker[Session]) -> list[str]:
    """The ticket keys the ledger holds."""
    with sessions() as session:
        return list(session.scalars(select(Ticket.key).order_by(Ticket.id)))


def audited(sessions: sessionmaker[Session], action: str) -> list[AuditEntry]:
    """The audit entries of one action."""
    with sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def _post(client: httpx.Client, delivery: tuple[bytes, dict[str, str]]) -> httpx.Response:
    """POST a Jira delivery (body and headers) to the webhook."""
    body, headers = delivery
    return client.post("/jira/webhook", content=body, headers=headers)


def test_a_foreign_jira_issue_with_a_findings_label_neither_rebinds_nor_resolves(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Anyone's issue carrying our cb- label and closed: ignored; our ticket and finding stay."""
    jira, _trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["jira"].run_once()
    label = fingerprint_label(only_finding(sessions).fingerprint)
    foreign = jira.add_issue("SEC", "not the bot's", ["compliancebot", label])
    jira.set_status(foreign, "Done")
    body, headers = jira.delivery("jira:issue_updated", foreign, secret=JIRA_SECRET)

    answer = hooks.client.post("/jira/webhook", content=body, headers=headers)
    hooks.syncs["jira"].run_once()

    assert answer.status_code == 200
    assert (answer.json()["closed"], answer.json()["unknown"]) == (0, 1)
    assert only_finding(sessions).status == "open"
    assert ticket_keys(sessions) == ["SEC-1"]
    assert jira.issues["SEC-1"]["fields"]["status"]["name"] == "To Do"


def test_a_deleted_event_for_a_foreign_key_keeps_our_ticket(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Someone deletes their own issue carrying our label: our ticket is kept, none is made."""
    jira, _trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["jira"].run_once()
    label = fingerprint_label(only_finding(sessions).fingerprint)
    foreign = jira.add_issue("SEC", "decoy", [label])
    body, headers = jira.delivery("jira:issue_deleted", foreign, secret=JIRA_SECRET)
    jira.delete(foreign)

    answer = hooks.client.post("/jira/webhook", content=body, headers=headers)
    hooks.syncs["jira"].run_once()

    assert answer.status_code == 200
    assert (answer.json()["deleted"], answer.json()["unknown"]) == (0, 1)
    assert ticket_keys(sessions) == ["SEC-1"]
    assert sorted(jira.issues) == ["SEC-1"]
    assert audited(sessions, "ticket.deleted") == []


def test_an_issue_moved_to_another_project_is_followed_once_jira_confirms_it(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Our issue moved to OPS and closed there: Jira answers for the old key, so it is followed."""
    jira, _trello = trackers
    scan(sessions, clock, [obs("vol-1")])
    hooks.syncs["jira"].run_once()
    jira.add_project("OPS", "Operations")
    moved = jira.move("SEC-1", "OPS")
    jira.set_status(moved, "Done")
    body, headers = jira.delivery("jira:issue_updated", moved, secret=JIRA_SECRET)

    answer = hooks.client.post("/jira/webhook", content=body, headers=headers)

    assert answer.json()["closed"] == 1
    assert only_finding(sessions).status == "resolved"
    assert ticket_keys(sessions) == ["OPS-1"]
    (entry,) = audited(sessions, "ticket.moved")
    assert entry.detail == {"sink": "jira", "from": "SEC-1", "to": "OPS-1"}


def test_the_same_jira_delivery_twice_rechecks_once_and_comments_once(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Jira retries a delivery after the bot reopened: nothing again; a new close is news."""
    jira, _trello = trackers
    asked: list[str] = []
    tickets = hooks.syncs["jira"]
    tickets.check = still_failing(asked)
    scan(sessions, clock, [obs("vol-1")])
    tickets.run_once()
    jira.set_status("SEC-1", "Done")
    delivery = jira.delivery("jira:issue_updated", "SEC-1", secret=JIRA_SECRET)

    first = _post(hooks.client, delivery)
    tickets.run_once()  # the re-check fails: the finding and the issue are open again
    again = _post(hooks.client, delivery)
    tickets.run_once()
    comments = len(jira.issues["SEC-1"]["fields"]["comment"]["comments"])
    status = jira.issues["SEC-1"]["fields"]["status"]["name"]
    jira.set_status("SEC-1", "Done")  # a person closes it again: another change
    jira.issues["SEC-1"]["fields"]["updated"] = "2099-01-01T00:00:00.000+0000"
    later = _post(hooks.client, jira.delivery("jira:issue_updated", "SEC-1", secret=JIRA_SECRET))

    assert first.json()["closed"] == 1
    assert again.json()["duplicate"] == 1
    assert (comments, status) == (1, "To Do")
    assert later.json()["closed"] == 1
    assert asked == ["vol-1"]  # the second re-check is queued, not yet run


def test_a_delivery_without_an_identifier_is_known_by_its_change(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """No identifier (Jira Server): the same change again, however delivered, is a replay."""
    jira, _trello = trackers
    asked: list[str] = []
    tickets = hooks.syncs["jira"]
    tickets.check = still_failing(asked)
    scan(sessions, clock, [obs("vol-1")])
    tickets.run_once()
    jira.set_status("SEC-1", "Done")
    event = jira.webhook("jira:issue_updated", "SEC-1")
    url = f"/jira/webhook?secret={JIRA_SECRET}"

    first = hooks.client.post(url, json=event)
    tickets.run_once()
    plain = hooks.client.post(url, json=event)
    other = hooks.client.post(
        url, json=event, headers={"X-Atlassian-Webhook-Identifier": "another-webhook-same-change"}
    )
    tickets.run_once()

    assert first.json()["closed"] == 1
    assert (plain.json()["duplicate"], other.json()["duplicate"]) == (1, 1)
    assert asked == ["vol-1"]
    assert len(jira.issues["SEC-1"]["fields"]["comment"]["comments"]) == 1


def test_the_same_trello_action_twice_rechecks_once_and_comments_once(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Trello redelivers an archive after the bot reopened the card: nothing happens again."""
    _jira, trello = trackers
    asked: list[str] = []
    tickets = hooks.syncs["trello"]
    tickets.check = still_failing(asked)
    scan(sessions, clock, [obs("vol-1")])
    tickets.run_once()
    (card_id,) = trello.cards
    body, headers = trello.webhook(
        trello.archive(card_id), callback_url=CALLBACK, secret=TRELLO_SECRET
    )

    first = hooks.client.post("/trello/webhook", content=body, headers=headers)
    tickets.run_once()
    again = hooks.client.post("/trello/webhook", content=body, headers=headers)
    tickets.run_once()

    assert first.json()["closed"] == 1
    assert again.json()["duplicate"] == 1
    assert asked == ["vol-1"]
    assert len(trello.comments(card_id)) == 1
    assert trello.cards[card_id]["closed"] is False


def test_a_trello_action_delivered_by_webhook_is_not_applied_again_by_polling(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
) -> None:
    """Webhook first, then the poll reads the same board action: no second re-check or comment."""
    _jira, trello = trackers
    asked: list[str] = []
    tickets = hooks.syncs["trello"]
    tickets.check = still_failing(asked)
    scan(sessions, clock, [obs("vol-1")])
    tickets.run_once()
    (card_id,) = trello.cards
    body, headers = trello.webhook(
        trello.move(card_id, "Done"), callback_url=CALLBACK, secret=TRELLO_SECRET
    )
    hooks.client.post("/trello/webhook", content=body, headers=headers)
    tickets.run_once()
    writes = [c for c in trello.calls if c.method != "GET"]

    polled = tickets.poll(force=True)
    tickets.run_once()

    assert polled is not None
    assert polled["closed"] == 0
    assert [c for c in trello.calls if c.method != "GET"] == writes
    assert asked == ["vol-1"]
    assert len(trello.comments(card_id)) == 1


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.one_of(st.sampled_from(["SEC-1", "SEC-2", "sec-1"]), st.text(max_size=300), _JSON),
    fields=_JSON,
    user=_JSON,
    identifier=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=500),
)
def test_any_shape_of_jira_delivery_is_answered_and_never_rebinds(
    trackers: tuple[FakeJira, FakeTrello],
    sessions: sessionmaker[Session],
    clock: FakeClock,
    hooks: Hooks,
    key: object,
    fields: object,
    user: object,
    identifier: str,
) -> None:
    """Whatever a signed delivery holds (keys, fields, ids of any shape): 200, our ticket kept."""
    if not ticket_keys(sessions):
        scan(sessions, clock, [obs("vol-1")])
        hooks.syncs["jira"].run_once()
    label = fingerprint_label(only_finding(sessions).fingerprint)
    if isinstance(fields, dict):
        fields = {**fields, "labels": [label]}  # claims to be our finding's ticket
    event = {
        "webhookEvent": "jira:issue_updated",
        "user": user,
        "issue": {"key": key, "fields": fields},
    }

    answer = hooks.client.post(
        f"/jira/webhook?secret={JIRA_SECRET}",
        json=event,
        headers={"X-Atlassian-Webhook-Identifier": identifier} if identifier else {},
    )

    assert answer.status_code == 200, answer.text
    assert ticket_keys(sessions) == ["SEC-1"]
