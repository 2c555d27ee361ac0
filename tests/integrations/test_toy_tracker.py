"""A new tracker is one module: a toy one, declared and registered in this file alone, is
configured from the environment, gets tickets through the normal sync, and is heard from at
POST /toy/webhook, with no line of bot/ naming it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from bot.metrics import Metrics
from bot.settings import ConfigError, load_settings, missing_secrets, require_secrets
from bot.tickets import ticket_syncs
from bot.webhooks import tracker_routes
from integrations.tickets import Changes, TicketFinding, TicketRef
from integrations.trackers import (
    Secret,
    Tracker,
    TrackerSecret,
    TrackerSettings,
    Webhook,
    register,
    unregister,
)
from rules.catalog import load_catalog
from tests.cli import run_cli
from tests.conftest import FakeClock
from tests.fakes.asgi import running
from tests.ledger.helpers import findings, obs, only_finding, scan

CATALOG = load_catalog()
HOOK_SECRET = "toy-hook-secret-of-32-characters"


# ---- the toy tracker: everything a tracker module declares -----------------------------------


class ToySettings(TrackerSettings):
    """tickets.toy: the toy's own keys, next to the ones every tracker has."""

    project: str = "TOY"
    labels: list[str] = []
    api_key: Secret = None


class ToySink:
    """An in-memory tracker: tickets by key, each with its fingerprint, state and comments."""

    name = "toy"

    def __init__(self, project: str, labels: Sequence[str]) -> None:
        self.project = project
        self.labels = list(labels)
        self.tickets: dict[str, dict[str, Any]] = {}

    def _ref(self, key: str) -> TicketRef:
        ticket = self.tickets[key]
        return TicketRef(
            sink=self.name,
            key=key,
            url=f"https://toy.example/{key}",
            done=ticket["done"],
            fingerprint=ticket["fingerprint"],
        )

    def validate(self) -> list[str]:
        """Nothing to check against: the toy has every project."""
        return []

    def find(self, fingerprint: str) -> TicketRef | None:
        """The ticket carrying the fingerprint, if any."""
        keys = [k for k, t in self.tickets.items() if t["fingerprint"] == fingerprint]
        return self._ref(keys[0]) if keys else None

    def create(self, finding: TicketFinding) -> TicketRef:
        """A new ticket in the project."""
        key = f"{self.project}-{len(self.tickets) + 1}"
        self.tickets[key] = {
            "fingerprint": finding.fingerprint,
            "title": finding.title,
            "labels": list(self.labels),
            "done": False,
            "assignee": None,
            "comments": [],
        }
        return self._ref(key)

    def close(self, ref: TicketRef, comment: str, *, status: str = "resolved") -> None:
        """Done, with a comment."""
        self.tickets[ref.key]["done"] = True
        self.comment(ref, comment)

    def reopen(self, ref: TicketRef, comment: str, *, status: str = "open") -> None:
        """Open again, with a comment."""
        self.tickets[ref.key]["done"] = False
        self.comment(ref, comment)

    def progress(self, ref: TicketRef, status: str) -> None:
        """The toy shows no progress."""

    def assign(self, ref: TicketRef, user: str | None) -> None:
        """Give it to someone."""
        self.tickets[ref.key]["assignee"] = user

    def comment(self, ref: TicketRef, text: str) -> None:
        """Add a comment."""
        self.tickets[ref.key]["comments"].append(text)

    def changed_since(self, since: datetime, now: datetime) -> Changes:
        """Nothing polled: the toy speaks through its webhook."""
        return Changes()

    def lookup(self, keys: Sequence[str]) -> dict[str, TicketRef | None]:
        """The tickets by key (None: gone)."""
        return {key: self._ref(key) if key in self.tickets else None for key in keys}


def toy_missing_secrets(section: ToySettings) -> list[str]:
    """The toy needs its API key when enabled."""
    if section.enabled and section.api_key is None:
        return [f"tickets.toy is enabled but has no key: set {TOY.variable('api_key')}"]
    return []


def toy_sink(section: ToySettings) -> ToySink:
    """The toy sink as configured."""
    return ToySink(section.project, section.labels)


def toy_signature(body: bytes, secret: str) -> str:
    """The toy signs a delivery's body: hex HMAC-SHA256 in X-Toy-Signature."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def toy_verify(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    secret: str,
    section: ToySettings,
) -> bool:
    """The signature matches the body."""
    given = headers.get("X-Toy-Signature", "")
    return hmac.compare_digest(given.encode(), toy_signature(body, secret).encode())


def toy_parse(
    sink: ToySink, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> TicketRef | None:
    """{"id": delivery id, "key": ticket key, "status": "done" | "open"}."""
    key, delivery = payload.get("key"), payload.get("id")
    if not isinstance(key, str) or not isinstance(delivery, str):
        return None
    return TicketRef(
        sink=sink.name,
        key=key,
        url=f"https://toy.example/{key}",
        done=payload.get("status") == "done",
        change=(delivery,),
    )


TOY: Tracker[ToySettings, ToySink] = Tracker(
    name="toy",
    title="Toy",
    settings=ToySettings,
    factory=toy_sink,
    secrets=(TrackerSecret("api_key"), TrackerSecret("webhook_secret", 32, "make one up")),
    missing_secrets=toy_missing_secrets,
    webhook=Webhook(verify=toy_verify, parse=toy_parse),
)


@pytest.fixture
def toy() -> Iterator[Tracker[ToySettings, ToySink]]:
    """The toy tracker registered for the test, and gone after it."""
    register(TOY)
    yield TOY
    unregister(TOY.name)


ENVIRON = {
    "COMPLIANCEBOT_TICKETS__TOY__ENABLED": "true",
    "COMPLIANCEBOT_TICKETS__TOY__PROJECT": "OPS",
    "COMPLIANCEBOT_TICKETS__TOY__LABELS": '["compliance", "aws"]',
    "COMPLIANCEBOT_TICKETS__TOY__API_KEY": "toy-api-key",
    "COMPLIANCEBOT_TICKETS__TOY__WEBHOOK_SECRET": HOOK_SECRET,
}


def toy_of(sinks: Sequence[object]) -> ToySink:
    """The one toy sink among the syncs' sinks."""
    (sink,) = sinks
    assert isinstance(sink, ToySink)
    return sink


# ---- the tests -----------------------------------------------------------------------------


def test_a_registered_tracker_is_configured_from_the_environment_and_gets_tickets(
    toy: Tracker[ToySettings, ToySink], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """COMPLIANCEBOT_TICKETS__TOY__* configure the toy (a list as JSON too); the normal sync
    round gives each finding one ticket there, and a second round calls for nothing more."""
    settings = load_settings(None, environ=ENVIRON)
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])

    syncs = ticket_syncs(settings=settings, catalog=CATALOG, sessions=sessions, clock=clock)
    first = syncs[0].run_once()
    again = syncs[0].run_once()

    sink = toy_of([s.sink for s in syncs])
    assert settings.tickets.of(toy).labels == ["compliance", "aws"]
    assert settings.tickets.toy.enabled
    assert (first["planned"], first["delivered"]) == (2, 2)
    assert (again["planned"], again["delivered"]) == (0, 0)
    assert sorted(sink.tickets) == ["OPS-1", "OPS-2"]
    assert {t["fingerprint"] for t in sink.tickets.values()} == {
        f.fingerprint for f in findings(sessions)
    }
    assert all(t["labels"] == ["compliance", "aws"] for t in sink.tickets.values())


def test_a_signed_toy_delivery_closing_a_ticket_resolves_its_finding(
    toy: Tracker[ToySettings, ToySink], sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """POST /toy/webhook exists because the toy has a webhook: a wrongly signed delivery is
    refused (401), a signed one saying the ticket is done resolves the finding, once."""
    settings = load_settings(None, environ=ENVIRON)
    scan(sessions, clock, [obs("vol-1")])
    syncs = {
        s.sink.name: s
        for s in ticket_syncs(settings=settings, catalog=CATALOG, sessions=sessions, clock=clock)
    }
    syncs["toy"].run_once()
    (key,) = toy_of([s.sink for s in syncs.values()]).tickets
    body = json.dumps({"id": "delivery-1", "key": key, "status": "done"}).encode()
    woken: list[str] = []
    metrics = Metrics()
    app = Starlette(
        routes=tracker_routes(
            syncs=syncs,
            settings=settings,
            metrics=metrics,
            wake={"toy": lambda: woken.append("toy")},
        )
    )

    with running(app) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        forged = client.post("/toy/webhook", content=body, headers={"X-Toy-Signature": "00"})
        still_open = only_finding(sessions).status
        signed = {"X-Toy-Signature": toy_signature(body, HOOK_SECRET)}
        answer = client.post("/toy/webhook", content=body, headers=signed)
        again = client.post("/toy/webhook", content=body, headers=signed)

    assert forged.status_code == 401
    assert still_open == "open"
    assert answer.status_code == 200
    assert answer.json()["closed"] == 1
    assert again.json()["duplicate"] == 1  # the same delivery again changes nothing
    assert only_finding(sessions).status == "resolved"
    assert only_finding(sessions).resolved_by == f"toy:{key}"
    assert woken == ["toy"]
    assert (
        metrics.registry.get_sample_value(
            "compliancebot_tracker_webhooks_total", {"tracker": "toy", "status": "200"}
        )
        == 2
    )


def test_the_toys_secrets_are_in_the_secrets_table(
    toy: Tracker[ToySettings, ToySink], tmp_path: Path
) -> None:
    """The toy's declared secrets are treated as every secret is: one missing is named with its
    variable, a short webhook secret is refused with its minimum, and one written in the
    config file is refused naming the variable to use instead."""
    without_key = {k: v for k, v in ENVIRON.items() if not k.endswith("__API_KEY")}
    config = tmp_path / "compliancebot.yaml"
    config.write_text("tickets:\n  toy:\n    enabled: true\n    api_key: abc\n")

    with pytest.raises(ConfigError) as missing:
        require_secrets(missing_secrets(load_settings(None, environ=without_key)))
    with pytest.raises(ConfigError) as short:
        load_settings(None, environ={**ENVIRON, "COMPLIANCEBOT_TICKETS__TOY__WEBHOOK_SECRET": "x"})
    with pytest.raises(ConfigError) as in_file:
        load_settings(config, environ={})

    assert "set COMPLIANCEBOT_TICKETS__TOY__API_KEY" in str(missing.value)
    assert (
        "environment variable COMPLIANCEBOT_TICKETS__TOY__WEBHOOK_SECRET: "
        "tickets.toy.webhook_secret: too short (1 character, at least 32 needed): make one up"
    ) in str(short.value)
    assert f"{config}:4: tickets.toy.api_key: a secret does not belong" in str(in_file.value)
    assert "COMPLIANCEBOT_TICKETS__TOY__API_KEY" in str(in_file.value)


def test_an_unknown_tracker_section_names_the_known_ones(
    toy: Tracker[ToySettings, ToySink], tmp_path: Path
) -> None:
    """tickets.github (no such tracker) is an error at its variable or file:line naming every
    registered tracker, the toy too; a problem in a known section is reported with it."""
    config = tmp_path / "compliancebot.yaml"
    config.write_text("tickets:\n  jira:\n    timeout: 0\n  github:\n    enabled: true\n")

    with pytest.raises(ConfigError) as from_env:
        load_settings(None, environ={"COMPLIANCEBOT_TICKETS__GITHUB__ENABLED": "true"})
    with pytest.raises(ConfigError) as from_file:
        load_settings(config, environ={})

    assert (
        "environment variable COMPLIANCEBOT_TICKETS__GITHUB__ENABLED: tickets.github: "
        "unknown tracker 'github'; known: jira, toy, trello"
    ) in str(from_env.value)
    assert (
        f"{config}:4: tickets.github: unknown tracker 'github'; known: jira, toy, trello"
    ) in str(from_file.value)
    assert f"{config}:3: tickets.jira.timeout: Input should be greater than 0" in str(
        from_file.value
    )


def test_config_check_names_the_known_trackers_for_an_unknown_section(tmp_path: Path) -> None:
    """`config check` with a section for a tracker that does not exist exits 2 naming the
    built-in ones."""
    config = tmp_path / "compliancebot.yaml"
    config.write_text("tickets:\n  linear:\n    enabled: true\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}

    result = run_cli(
        "config", "check", env={**env, "COMPLIANCEBOT_CONFIG": str(config)}, cwd=tmp_path
    )

    assert result.returncode == 2
    assert "tickets.linear: unknown tracker 'linear'; known: jira, trello" in result.stderr
