"""Ticket sync to a fake Jira: one ticket per finding, exactly once, following its state."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import ConfigError, Settings, load_settings
from bot.tickets import Check, TicketSync, jira_sync
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import OutboxItem, Ticket
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.fakes.jira import FakeJira
from tests.ledger.helpers import findings, obs, only_finding, scan

CATALOG = load_catalog()


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    """A fake Jira Server with the default workflow and one user."""
    with FakeJira() as fake:
        fake.add_user(name="alice", email="alice@example.com")
        yield fake


def sync(
    jira: FakeJira,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    check: Check | None = None,
    **extra: object,
) -> TicketSync:
    """The Jira sync as `tickets sync` builds it, pointed at the fake."""
    settings = Settings.model_validate(
        {
            "tickets": {
                "jira": {
                    "enabled": True,
                    "url": jira.url,
                    "token": "pat",
                    "users": {"UALICE": "alice"},
                    "timeout": 5,
                    **extra,
                }
            }
        }
    )
    return jira_sync(
        settings=settings, catalog=CATALOG, sessions=sessions, clock=clock, check=check
    )


def issue_of(jira: FakeJira, finding_id: int) -> dict[str, object]:
    """The single Jira issue whose description names the finding."""
    found = [
        i for i in jira.issues.values() if f"finding #{finding_id}\n" in i["fields"]["description"]
    ]
    assert len(found) == 1, [i["key"] for i in found]
    return found[0]


def test_every_finding_gets_one_ticket_and_a_quiet_rescan_calls_jira_not_at_all(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Three findings make three issues; a rescan that changed nothing makes zero Jira calls."""
    scan(sessions, clock, [obs("vol-1", severity="critical"), obs("vol-2"), obs("vol-3")])
    tickets = sync(jira, sessions, clock)

    first = tickets.run_once()
    calls = len(jira.calls)
    scan(sessions, clock, [obs("vol-1", severity="critical"), obs("vol-2"), obs("vol-3")])
    again = tickets.run_once()

    assert (first["planned"], first["delivered"]) == (3, 3)
    assert len(jira.issues) == 3
    assert (again["planned"], again["delivered"]) == (0, 0)
    assert len(jira.calls) == calls
    critical = issue_of(jira, findings(sessions)[0].id)["fields"]
    assert critical["priority"] == {"name": "Highest"}  # type: ignore[index]


def test_a_crash_after_jira_created_the_issue_adopts_it(
    jira: FakeJira,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between Jira's reply and the local commit: the restart adopts, never duplicates."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = sync(jira, sessions, clock)

    class CrashError(Exception):
        pass

    real_create = tickets.sink.create

    def create_then_crash(finding: object) -> object:
        real_create(finding)  # type: ignore[arg-type]
        raise CrashError  # the process dies before its transaction commits

    monkeypatch.setattr(tickets.sink, "create", create_then_crash)
    with pytest.raises(CrashError):
        tickets.run_once()
    monkeypatch.setattr(tickets.sink, "create", real_create)
    restarted = sync(jira, sessions, clock)
    restarted.run_once()

    assert len(jira.issues) == 1
    with sessions() as session:
        ticket = session.scalar(select(Ticket))
        item = session.scalar(select(OutboxItem).where(OutboxItem.kind == "create"))
        assert ticket is not None
        assert item is not None
        assert ticket.key == "SEC-1"
        assert item.result == {"key": "SEC-1", "adopted": True}


def test_claim_resolve_and_reopen_follow_the_finding(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Claimed: assigned to the mapped Jira user; resolved: Done with why; back: reopened."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = sync(jira, sessions, clock)
    tickets.run_once()
    fid = only_finding(sessions).id

    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=fid, user="UALICE", now=clock())
    tickets.run_once()
    assigned = issue_of(jira, fid)["fields"]["assignee"]  # type: ignore[index]
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=fid, user="UALICE", now=clock(), note="fixed")
    tickets.run_once()
    closed = issue_of(jira, fid)["fields"]["status"]["name"]  # type: ignore[index]
    clock.advance(days=1)
    scan(sessions, clock, [obs("vol-1")])  # still failing: the scan reopens it
    tickets.run_once()

    issue = issue_of(jira, fid)["fields"]
    assert assigned["name"] == "alice"  # type: ignore[index]
    assert closed == "Done"
    assert issue["status"]["name"] == "To Do"  # type: ignore[index]
    comments = [c["body"] for c in issue["comment"]["comments"]]  # type: ignore[index]
    assert comments == [
        "compliancebot: resolved by UALICE: fixed",
        "compliancebot: reopened again (the finding fails again)",
    ]


def test_rate_limit_waits_for_retry_after_then_creates_once(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A 429 keeps the work queued until Retry-After has passed; then one issue is created."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = sync(jira, sessions, clock)
    tickets.sink.validate()  # connected, so the failure hits the create
    jira.fail("POST", "issue", status=429, retry_after=120)

    first = tickets.run_once()
    clock.advance(seconds=60)
    early = tickets.run_once()
    clock.advance(seconds=61)
    late = tickets.run_once()

    assert (first["retrying"], early["delivered"], late["delivered"]) == (1, 0, 1)
    assert len(jira.issues) == 1


def test_a_refused_field_is_recorded_with_jiras_message_not_retried(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A 400 from Jira marks the work failed with Jira's message; later rounds leave it."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = sync(jira, sessions, clock)
    jira.priorities = [p for p in jira.priorities if p["name"] != "High"]

    tickets.run_once()
    clock.advance(hours=1)
    later = tickets.run_once()

    with sessions() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.kind == "create"))
        assert item is not None
        assert item.status == "failed"
        assert "The priority selected is invalid: High" in (item.last_error or "")
    assert later["delivered"] + later["retrying"] + later["failed"] == 0
    assert jira.issues == {}


def test_findings_below_the_threshold_get_no_ticket(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """With min_severity high, a low finding stays out of Jira."""
    scan(sessions, clock, [obs("vol-1", severity="low"), obs("vol-2", severity="high")])
    tickets = sync(jira, sessions, clock, min_severity="high")

    tickets.run_once()

    assert len(jira.issues) == 1


def test_config_check_names_a_project_that_does_not_exist(jira: FakeJira, tmp_path: Path) -> None:
    """`config check` with Jira on asks Jira and names the projects that do exist."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env.update(
        COMPLIANCEBOT_TICKETS__JIRA__ENABLED="true",
        COMPLIANCEBOT_TICKETS__JIRA__URL=jira.url,
        COMPLIANCEBOT_TICKETS__JIRA__TOKEN="pat-secret-123",
        COMPLIANCEBOT_TICKETS__JIRA__PROJECT="OPS",
    )
    result = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "config", "check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    assert "jira.project 'OPS' does not exist; projects: SEC" in result.stderr
    assert "pat-secret-123" not in result.stdout + result.stderr


def test_jira_token_in_the_config_file_is_refused(tmp_path: Path) -> None:
    """A Jira token written in the config file is refused, naming the variable to use."""
    path = tmp_path / "compliancebot.yaml"
    path.write_text("tickets:\n  jira:\n    enabled: true\n    token: abc\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert f"{path}:4: tickets.jira.token" in str(caught.value)
    assert "COMPLIANCEBOT_TICKETS__JIRA__TOKEN" in str(caught.value)


def test_jira_enabled_without_credentials_says_which_to_set() -> None:
    """Turning Jira on without credentials names both ways to give them."""
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            environ={
                "COMPLIANCEBOT_TICKETS__JIRA__ENABLED": "true",
                "COMPLIANCEBOT_TICKETS__JIRA__URL": "https://acme.atlassian.net",
            },
        )

    assert "COMPLIANCEBOT_TICKETS__JIRA__API_TOKEN (Cloud)" in str(caught.value)
    assert "COMPLIANCEBOT_TICKETS__JIRA__TOKEN (Server / Data Center)" in str(caught.value)
