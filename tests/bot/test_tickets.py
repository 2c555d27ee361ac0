"""Ticket sync to a fake Jira: one ticket per finding, exactly once, following its state."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import ConfigError, Settings, load_settings
from bot.tickets import jira_sink, jira_sync, ticket_syncs
from integrations.ticket_sync import TicketSync, slack_link
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import AuditEntry, OutboxItem, SlackMessage, Ticket
from ledger.verification import Check, Recheck
from rules.catalog import load_catalog
from rules.errors import CompliancebotError
from tests.cli import cli_command, run_cli
from tests.conftest import FakeClock
from tests.fakes.jira import FakeJira
from tests.fakes.trello import KEY, TOKEN, FakeTrello
from tests.integrations.rendered import jira_text
from tests.ledger.helpers import RULE, events, findings, obs, only_finding, scan

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
    assert assigned["name"] == "alice"
    assert closed == "Done"
    assert issue["status"]["name"] == "To Do"  # type: ignore[index]
    # As Jira shows them: the sink escapes comments for wiki markup.
    comments = [jira_text(c["body"]) for c in issue["comment"]["comments"]]  # type: ignore[index]
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


def test_a_short_retry_after_is_waited_out_and_the_round_goes_on(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A 429 with Retry-After 2: the round pauses 2 s, goes on, and the item comes back."""
    scan(sessions, clock, [obs("vol-1"), obs("vol-2"), obs("vol-3")])
    tickets = sync(jira, sessions, clock)
    slept: list[float] = []
    tickets.sleep = slept.append
    tickets.sink.validate()
    jira.fail("POST", "issue", status=429, retry_after=2)

    first = tickets.run_once()
    made = len(jira.issues)
    clock.advance(seconds=6)  # the item's own backoff (5 s) is longer than Retry-After
    tickets.run_once()

    assert slept == [2.0]
    assert (first["delivered"], first["retrying"], made) == (2, 1, 2)
    assert len(jira.issues) == 3


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
    result = run_cli("config", "check", env=env, cwd=tmp_path)

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
    """Jira on without credentials loads; making its client names both ways to give them."""
    settings = load_settings(
        None,
        environ={
            "COMPLIANCEBOT_TICKETS__JIRA__ENABLED": "true",
            "COMPLIANCEBOT_TICKETS__JIRA__URL": "https://acme.atlassian.net",
        },
    )
    with pytest.raises(ConfigError) as caught:
        jira_sink(settings)

    assert "COMPLIANCEBOT_TICKETS__JIRA__API_TOKEN (Cloud)" in str(caught.value)
    assert "COMPLIANCEBOT_TICKETS__JIRA__TOKEN (Server / Data Center)" in str(caught.value)


# ---- back from the tracker ------------------------------------------------------------------


def rechecks(verdict: str, detail: str) -> tuple[Check, list[str]]:
    """A re-check that always answers `verdict`, and the resources it was asked about."""
    asked: list[str] = []

    def check(rule_id: str, account: str, region: str, resource_id: str) -> Recheck:
        asked.append(resource_id)
        return Recheck(verdict, detail, 1)

    return check, asked


def test_a_ticket_closed_in_jira_that_still_fails_is_reopened_with_the_reason(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Closed by a person: resolved pending a re-check; it still fails, so both reopen."""
    scan(sessions, clock, [obs("vol-1")])
    check, asked = rechecks("fail", "vol-1 is still unencrypted")
    tickets = sync(jira, sessions, clock, check=check, poll_interval=60)
    tickets.run_once()
    fid = only_finding(sessions).id

    jira.set_status("SEC-1", "Done")
    clock.advance(minutes=2)
    tickets.run_once()

    finding = only_finding(sessions)
    issue = issue_of(jira, fid)["fields"]
    assert asked == ["vol-1"]
    assert (finding.status, finding.verification) == ("open", "failed")
    assert [(e.kind, e.actor) for e in events(sessions, fid)][-2:] == [
        ("resolved", "jira:SEC-1"),
        ("verification_failed", "scanner"),
    ]
    assert issue["status"]["name"] == "To Do"  # type: ignore[index]
    assert [jira_text(c["body"]) for c in issue["comment"]["comments"]] == [  # type: ignore[index]
        "compliancebot: open again: re-check still fails: vol-1 is still unencrypted"
    ]


def test_a_ticket_closed_in_jira_that_now_passes_stays_closed(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The re-check passes: the finding is resolved and verified; Jira is left alone."""
    scan(sessions, clock, [obs("vol-1")])
    check, _ = rechecks("pass", "vol-1 now complies")
    tickets = sync(jira, sessions, clock, check=check, poll_interval=60)
    tickets.run_once()
    jira.set_status("SEC-1", "Done")
    clock.advance(minutes=2)
    moves = len(jira.calls_to("POST", "issue/SEC-1/transitions"))

    tickets.run_once()
    clock.advance(minutes=2)
    tickets.run_once()

    finding = only_finding(sessions)
    assert (finding.status, finding.verification) == ("resolved", "verified")
    assert finding.resolution_note == "closed in Jira"
    assert len(jira.calls_to("POST", "issue/SEC-1/transitions")) == moves
    assert jira.issues["SEC-1"]["fields"]["comment"]["comments"] == []


def test_a_ticket_reopened_in_jira_reopens_the_finding(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A person reopens the ticket of a resolved finding: the finding is reopened, once."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = sync(jira, sessions, clock, poll_interval=60)
    tickets.run_once()
    fid = only_finding(sessions).id
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=fid, user="UALICE", now=clock(), note="ok")
    tickets.run_once()

    jira.set_status("SEC-1", "To Do")
    clock.advance(minutes=2)
    tickets.run_once()
    moves = len(jira.calls_to("POST", "issue/SEC-1/transitions"))
    clock.advance(minutes=2)
    tickets.run_once()

    finding = only_finding(sessions)
    assert finding.status == "reopened"
    assert events(sessions, fid)[-1].actor == "jira:SEC-1"
    assert len(jira.calls_to("POST", "issue/SEC-1/transitions")) == moves == 1


def test_a_ticket_deleted_in_jira_is_recreated_only_while_the_finding_is_open(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Deleted (a webhook says so): an open finding gets a new ticket; a resolved one none."""
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])
    tickets = sync(jira, sessions, clock)
    tickets.run_once()
    open_id, resolved_id = (f.id for f in findings(sessions))
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=resolved_id, user="bob", now=clock())
    tickets.run_once()
    open_key = issue_of(jira, open_id)["key"]
    resolved_key = issue_of(jira, resolved_id)["key"]
    deliveries = [jira.webhook("jira:issue_deleted", str(k)) for k in (open_key, resolved_key)]
    jira.delete(str(open_key))
    jira.delete(str(resolved_key))

    got = tickets.receive(
        [r for r in (tickets.sink.ref_from_event(d) for d in deliveries) if r]  # type: ignore[attr-defined]
    )
    tickets.run_once()

    assert got["deleted"] == 2
    assert sorted(jira.issues) == ["SEC-3"]
    assert issue_of(jira, open_id)["key"] == "SEC-3"
    with sessions() as session:
        actions = session.scalars(
            select(AuditEntry.object_id).where(AuditEntry.action == "ticket.deleted")
        ).all()
    assert sorted(actions) == sorted([str(open_id), str(resolved_id)])


def test_a_ticket_found_deleted_on_update_is_made_again(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """No webhook: the update meets a 404, the ticket is forgotten and a new one made."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = sync(jira, sessions, clock)
    tickets.run_once()
    fid = only_finding(sessions).id
    jira.delete("SEC-1")
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=fid, user="UALICE", now=clock())

    tickets.run_once()

    assert list(jira.issues) == ["SEC-2"]
    assert jira.issues["SEC-2"]["fields"]["assignee"]["name"] == "alice"


def test_jira_takes_only_the_routed_accounts_and_frameworks(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """accounts narrows by target; frameworks by the controls the finding's rule serves."""
    other = "dynamodb_pitr_enabled"  # cites no PCI DSS control
    scan(
        sessions,
        clock,
        [obs("vol-1"), obs("vol-2", account="444455556666"), obs("table-1", rule_id=other)],
    )
    assert "pci_dss" in CATALOG.rules[RULE].frameworks
    assert "pci_dss" not in CATALOG.rules[other].frameworks

    sync(jira, sessions, clock, accounts=["444455556666"]).run_once()
    by_account = [i["fields"]["summary"] for i in jira.issues.values()]
    jira.issues.clear()
    sync(jira, sessions, clock, frameworks=["pci_dss"]).run_once()
    by_framework = sorted(i["fields"]["summary"] for i in jira.issues.values())

    assert [s.split(": ")[-1] for s in by_account] == ["vol-2"]
    # vol-2 has its ticket already; table-1's rule serves no PCI DSS control.
    assert [s.split(": ")[-1] for s in by_framework] == ["vol-1"]


def test_an_unknown_framework_in_the_routing_names_the_known_ones(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A typo in tickets.jira.frameworks is an error listing the frameworks there are."""
    with pytest.raises(CompliancebotError) as caught:
        sync(jira, sessions, clock, frameworks=["hippa"])

    assert "tickets.jira.frameworks: unknown framework 'hippa'; known: " in str(caught.value)
    assert "hipaa" in str(caught.value)


def test_the_ticket_links_to_the_findings_slack_message(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """When the bot posted the finding in Slack, the ticket body links to that message."""
    scan(sessions, clock, [obs("vol-1")])
    fid = only_finding(sessions).id
    with transaction(sessions) as session:
        session.add(
            SlackMessage(
                kind="finding",
                finding_id=fid,
                channel="C0123ABCD",
                ts="1700000000.000200",
                thread_ts="1700000000.000100",
                rendered_version=1,
                posted_at=clock(),
                updated_at=clock(),
            )
        )
    tickets = sync(jira, sessions, clock)
    tickets.link = slack_link("https://acme.slack.com/")

    tickets.run_once()

    assert (
        "Discussion: https://acme.slack.com/archives/C0123ABCD/p1700000000000200"
        "?thread_ts=1700000000.000100&cid=C0123ABCD"
    ) in str(issue_of(jira, fid)["fields"]["description"])  # type: ignore[index]


# ---- Trello ---------------------------------------------------------------------------------


@pytest.fixture
def trello() -> Iterator[FakeTrello]:
    """A fake Trello with the board "Compliance"."""
    with FakeTrello() as fake:
        fake.add_board("Compliance")
        yield fake


def trello_sync(
    trello: FakeTrello,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    check: Check | None = None,
) -> TicketSync:
    """The Trello sync as `serve` builds it, pointed at the fake."""
    settings = Settings.model_validate(
        {
            "tickets": {
                "trello": {
                    "enabled": True,
                    "api_url": trello.url,
                    "api_key": KEY,
                    "token": TOKEN,
                    "board": "Compliance",
                    "labels": {"high": "high"},
                    "users": {"UALICE": trello.person["id"]},
                    "poll_interval": 60,
                    "timeout": 5,
                }
            }
        }
    )
    (only,) = ticket_syncs(
        settings=settings, catalog=CATALOG, sessions=sessions, clock=clock, check=check
    )
    return only


def test_trello_cards_follow_the_finding_and_come_back(
    trello: FakeTrello, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Open: To Do; claimed: Doing, assigned; resolved: Done; moved back by a person: reopened."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = trello_sync(trello, sessions, clock)
    tickets.run_once()
    fid = only_finding(sessions).id
    (card_id,) = trello.cards

    def where() -> str:
        return str(trello.lists[trello.cards[card_id]["idList"]]["name"])

    created = where()
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=fid, user="UALICE", now=clock())
    tickets.run_once()
    claimed = (where(), list(trello.cards[card_id]["idMembers"]))
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=fid, user="UALICE", now=clock(), note="done")
    tickets.run_once()
    resolved = where()
    trello.move(card_id, "To Do")
    clock.advance(minutes=2)
    tickets.run_once()

    assert created == "To Do"
    assert claimed == ("Doing", [trello.person["id"]])
    assert resolved == "Done"
    assert only_finding(sessions).status == "reopened"
    assert events(sessions, fid)[-1].actor == f"trello:{card_id}"
    assert trello.comments(card_id) == ["compliancebot: resolved by UALICE: done"]


def test_trello_card_archived_by_a_person_is_rechecked(
    trello: FakeTrello, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Archived in Trello counts as closed: re-checked, and unarchived to To Do if it fails."""
    scan(sessions, clock, [obs("vol-1")])
    check, asked = rechecks("fail", "still unencrypted")
    tickets = trello_sync(trello, sessions, clock, check=check)
    tickets.run_once()
    (card_id,) = trello.cards

    trello.archive(card_id)
    clock.advance(minutes=2)
    tickets.run_once()

    card = trello.cards[card_id]
    assert asked == ["vol-1"]
    assert only_finding(sessions).status == "open"
    assert (card["closed"], trello.lists[card["idList"]]["name"]) == (False, "To Do")
    assert trello.comments(card_id) == [
        "compliancebot: open again: re-check still fails: still unencrypted"
    ]


def test_a_sync_process_killed_after_jira_created_the_issue_adopts_it_on_restart(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock, db_url: str, tmp_path: Path
) -> None:
    """SIGKILL while Jira's reply is on its way: the restarted sync adopts the issue."""
    scan(sessions, clock, [obs("vol-1")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env.update(
        COMPLIANCEBOT_DATABASE__URL=db_url,
        COMPLIANCEBOT_TICKETS__JIRA__ENABLED="true",
        COMPLIANCEBOT_TICKETS__JIRA__URL=jira.url,
        COMPLIANCEBOT_TICKETS__JIRA__TOKEN="pat",
    )
    command = cli_command("tickets", "sync")
    jira.hold_reply("POST", "issue", seconds=60)

    doomed = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        jira.wait_for(lambda fake: len(fake.issues) == 1, timeout=60)
    finally:
        doomed.kill()
        doomed.wait(30)
    restarted = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )

    assert restarted.returncode == 0, restarted.stderr
    assert list(jira.issues) == ["SEC-1"]
    with sessions() as session:
        ticket = session.scalar(select(Ticket))
        item = session.scalar(select(OutboxItem).where(OutboxItem.kind == "create"))
    assert ticket is not None
    assert ticket.key == "SEC-1"
    assert item is not None
    assert item.result == {"key": "SEC-1", "adopted": True}


# ---- polling: each change once, deletions noticed ----------------------------------------------


def writes(trello: FakeTrello) -> int:
    """Requests that change something on the fake Trello."""
    return sum(1 for c in trello.calls if c.method != "GET")


def test_three_trello_poll_rounds_with_nothing_new_write_nothing(
    trello: FakeTrello, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A person's archive is applied once; three more rounds make 0 writes and 0 comments."""
    scan(sessions, clock, [obs("vol-1")])
    check, asked = rechecks("fail", "still unencrypted")
    tickets = trello_sync(trello, sessions, clock, check=check)
    tickets.run_once()
    (card_id,) = trello.cards
    trello.archive(card_id)
    clock.advance(minutes=2)
    tickets.run_once()  # applied: re-checked, unarchived with a comment
    before = (writes(trello), len(trello.comments(card_id)))

    for _ in range(3):
        clock.advance(minutes=2)
        tickets.run_once()

    assert before[1] == 1
    assert (writes(trello), len(trello.comments(card_id))) == before
    assert asked == ["vol-1"]
    assert only_finding(sessions).status == "open"


def test_a_trello_poll_asks_from_the_last_action_it_saw_not_from_our_clock(
    trello: FakeTrello, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Our clock a month behind Trello's: the next poll asks from the last action it saw."""
    scan(sessions, clock, [obs("vol-1")])
    tickets = trello_sync(trello, sessions, clock)
    tickets.run_once()
    (card_id,) = trello.cards
    trello.move(card_id, "Doing")
    clock.advance(minutes=2)
    tickets.run_once()
    newest = trello.actions[0]["date"]
    clock.advance(minutes=2)

    tickets.run_once()

    asked = [c.params["since"] for c in trello.calls if c.path.endswith("/actions")]
    # A second before the newest action (another may share its instant), whatever our clock says.
    assert datetime.fromisoformat(asked[-1]) == datetime.fromisoformat(newest) - timedelta(
        seconds=1
    )


def test_a_jira_issue_deleted_with_webhooks_off_is_made_again_by_polling(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """No webhook: a poll round notices the deleted issue and the open finding gets a new one."""
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])
    tickets = sync(jira, sessions, clock, poll_interval=60)
    tickets.run_once()
    open_id, resolved_id = (f.id for f in findings(sessions))
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=resolved_id, user="bob", now=clock())
    clock.advance(minutes=2)
    tickets.run_once()
    jira.delete(str(issue_of(jira, open_id)["key"]))

    clock.advance(minutes=2)
    got = tickets.run_once()

    assert got["polled_gone"] == 1
    assert issue_of(jira, open_id)["key"] == "SEC-3"
    assert sorted(jira.issues) == ["SEC-2", "SEC-3"]
    with sessions() as session:
        gone = session.scalars(
            select(AuditEntry.object_id).where(AuditEntry.action == "ticket.deleted")
        ).all()
    assert gone == [str(open_id)]


def test_the_existence_check_rotates_through_more_tickets_than_one_batch(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Two tickets asked about per round: a deletion among five is found within three rounds."""
    scan(sessions, clock, [obs(f"vol-{n}") for n in range(1, 6)])
    tickets = sync(jira, sessions, clock)
    tickets.run_once()
    jira.delete("SEC-5")
    searches = len(jira.calls_to("GET", "search"))

    rounds = []
    for _ in range(3):
        clock.advance(minutes=1)
        rounds.append(tickets.check_existing(limit=2))

    assert [r["checked"] for r in rounds] == [2, 2, 2]
    assert [r["gone"] for r in rounds] == [0, 0, 1]
    assert len(jira.calls_to("GET", "search")) - searches == 3  # one JQL search per round
    tickets.run_once()
    assert sorted(jira.issues) == ["SEC-1", "SEC-2", "SEC-3", "SEC-4", "SEC-6"]
