"""Domain rules written once in the ledger: an acceptance in force, the snooze limit, the
evidence a task needs. Every caller (a scan, the posture, Slack, the CLI) gets the same answer."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ledger import queries, services
from ledger import tasks as occurrences
from ledger.db import transaction
from ledger.models import Finding, FindingStatus, OutboxItem
from ledger.services import LedgerError, LimitError
from rules.catalog import load_catalog
from rules.tasks import Evidence
from tests.conftest import FakeClock
from tests.ledger.helpers import events, obs, only_finding, scan

CATALOG = load_catalog()


def set_acceptance(
    sessions: sessionmaker[Session], finding_id: int, status: str, until: datetime | None
) -> None:
    """Put a finding in a state directly (an ending the ledger itself never writes included)."""
    with transaction(sessions) as session:
        session.execute(
            update(Finding)
            .where(Finding.id == finding_id)
            .values(status=status, accepted_by="cto", accepted_reason="r", accepted_until=until)
        )


@pytest.mark.parametrize(
    ("status", "until_days", "in_force"),
    [
        (FindingStatus.accepted, 30, True),
        (FindingStatus.accepted, 0, False),  # ends this instant: no longer in force
        (FindingStatus.accepted, -1, False),
        (FindingStatus.accepted, None, False),  # no end date: never in force
        (FindingStatus.open, 30, False),
    ],
)
def test_an_acceptance_in_force_reads_the_same_on_a_finding_and_in_a_query(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    status: FindingStatus,
    until_days: int | None,
    in_force: bool,
) -> None:
    """A finding shown as accepted is exactly one the posture counts as accepted and not
    failing; a lapsed one is failing in both."""
    scan(sessions, clock, [obs()])
    fid = only_finding(sessions).id
    until = None if until_days is None else clock() + timedelta(days=until_days)
    set_acceptance(sessions, fid, status, until)
    now = clock()

    with sessions() as session:
        finding = session.get_one(Finding, fid)
        in_sql, lapsed_sql = session.execute(
            select(Finding.acceptance_in_force(now), Finding.acceptance_lapsed(now)).where(
                Finding.id == fid
            )
        ).one()
        posture = queries.posture(session=session, catalog=CATALOG, now=now)

    assert finding.acceptance_in_force(now) is in_force
    assert bool(in_sql) is in_force
    lapsed = status == FindingStatus.accepted and not in_force
    assert finding.acceptance_lapsed(now) is lapsed
    assert bool(lapsed_sql) is lapsed
    assert finding.is_failing(now) is (not in_force)
    assert posture.accepted == (1 if in_force else 0)
    assert posture.open_by_severity["high"] == (0 if in_force else 1)


def test_an_acceptance_without_an_end_date_is_reopened_by_the_next_scan(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """An accepted finding with no end date (written outside the ledger) is not in force: the
    scan counts it failing and reopens it, saying why."""
    scan(sessions, clock, [obs()])
    fid = only_finding(sessions).id
    set_acceptance(sessions, fid, FindingStatus.accepted, None)

    counts = scan(sessions, clock, [obs()])

    assert counts.accepted_expired == 1
    assert counts.by_severity == {"high": 1}
    assert only_finding(sessions).status == FindingStatus.open
    last = events(sessions, fid)[-1]
    assert (last.kind, last.note) == ("acceptance_expired", "risk acceptance had no end date")


def test_a_scan_within_an_acceptance_does_not_count_it_failing(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A failing resource under an acceptance in force is not in the scan's failing counts."""
    scan(sessions, clock, [obs()])
    fid = only_finding(sessions).id
    set_acceptance(sessions, fid, FindingStatus.accepted, clock() + timedelta(days=3))

    counts = scan(sessions, clock, [obs()])

    assert (counts.by_severity, counts.still_failing, counts.accepted_expired) == ({}, 0, 0)


def test_acceptance_problems_name_every_field_at_fault_at_once(clock: FakeClock) -> None:
    """A blank reason and a past date are both reported, by field; accept_risk's own refusal
    is the first of them."""
    now = clock()
    past = now - timedelta(days=1)

    assert services.acceptance_problems(reason=" ", until=past, now=now) == {
        "reason": "a risk acceptance needs a reason",
        "until": f"the acceptance expiry {past:%Y-%m-%d} must be in the future",
    }
    assert services.acceptance_problems(reason="r", until=None, now=now) == {
        "until": "a risk acceptance needs an end date"
    }
    assert services.acceptance_problems(reason="r", until=now + timedelta(days=5), now=now) == {}


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


@pytest.mark.parametrize(("days", "allowed"), [(7, True), (8, False)])
def test_the_ledger_caps_a_finding_snooze_in_calendar_days(
    sessions: sessionmaker[Session], clock: FakeClock, days: int, allowed: bool
) -> None:
    """With max_days 7, the end of the 7th day is allowed and the 8th refused, naming the last
    day and the field at fault; the refusal is a LimitError so a caller can name its setting."""
    scan(sessions, clock, [obs()])
    fid = only_finding(sessions).id
    until = _end_of(clock().date() + timedelta(days=days))

    with transaction(sessions) as session:
        if allowed:
            services.snooze(
                session=session, finding_id=fid, user="U1", until=until, now=clock(), max_days=7
            )
        else:
            with pytest.raises(LimitError) as caught:
                services.snooze(
                    session=session,
                    finding_id=fid,
                    user="U1",
                    until=until,
                    now=clock(),
                    max_days=7,
                )
            assert caught.value.field == "until"
            assert str(caught.value) == (
                "a finding can be snoozed for at most 7 days: pick 2026-11-08 or earlier, "
                "not 2026-11-09"
            )

    assert (only_finding(sessions).snoozed_until is not None) is allowed


def test_a_snooze_in_the_past_names_the_date_field(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A past snooze date is refused with the field at fault, so a form shows it beside it."""
    scan(sessions, clock, [obs()])
    fid = only_finding(sessions).id

    with transaction(sessions) as session, pytest.raises(LedgerError) as caught:
        services.snooze(session=session, finding_id=fid, user="U1", until=clock(), now=clock())

    assert caught.value.field == "until"
    assert not isinstance(caught.value, LimitError)


@pytest.mark.parametrize(
    ("required", "note", "link", "has_file", "problems"),
    [
        (Evidence.none, None, None, False, {}),
        (Evidence.note, " ", None, False, {"note": "this task needs a note saying what was done"}),
        (Evidence.note, "done", None, False, {}),
        (
            Evidence.link,
            None,
            None,
            False,
            {"link": "this task needs a link to the evidence (a document, a ticket, a report)"},
        ),
        (
            Evidence.link,
            None,
            "see drive",
            False,
            {"link": "the link must start with https:// or http://"},
        ),
        (Evidence.link, None, "https://docs.example/restore", False, {}),
        (
            Evidence.file,
            "n",
            None,
            False,
            {"file": "this task needs a file as evidence (an export, a report, a screenshot)"},
        ),
        (Evidence.file, None, None, True, {}),
        (
            Evidence.note,
            None,
            "ftp://x",
            False,
            {
                "note": "this task needs a note saying what was done",
                "link": "the link must start with https:// or http://",
            },
        ),
    ],
)
def test_the_evidence_rules_name_each_field_at_fault(
    required: Evidence,
    note: str | None,
    link: str | None,
    has_file: bool,
    problems: dict[str, str],
) -> None:
    """What a task's evidence lacks, per field: the Slack modal shows each beside its field,
    and completing refuses the first (whoever completes it)."""
    assert (
        occurrences.evidence_problems(required, note=note, link=link, has_file=has_file) == problems
    )


def test_a_reminder_is_recorded_once_whoever_records_it(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The same reminder and escalation recorded twice (a second sweep, a second replica) is
    one outbox item each, with the key and payload the Slack worker reads."""
    reminder = occurrences.Reminder(7, "U0OWNER", "reassigned")
    escalation = occurrences.Escalation(7, "C0LEADS", 2)

    with transaction(sessions) as session:
        first = occurrences.record_notices(
            session=session,
            sink="slack",
            now=clock(),
            reminders=[reminder],
            escalations=[escalation],
        )
    with transaction(sessions) as session:
        again = occurrences.record_notices(
            session=session,
            sink="slack",
            now=clock(),
            reminders=[reminder],
            escalations=[escalation],
        )

    with sessions() as session:
        items = [
            (i.kind, i.key, i.payload)
            for i in session.scalars(select(OutboxItem).order_by(OutboxItem.id))
        ]
    assert (first, again) == ((1, 1), (0, 0))
    assert items == [
        (
            "task_remind",
            "calendar:remind:7:reassigned:U0OWNER",
            {"occurrence_id": 7, "to": "U0OWNER", "tag": "reassigned"},
        ),
        (
            "task_escalate",
            "calendar:escalate:7:2",
            {"occurrence_id": 7, "to": "C0LEADS", "round": 2},
        ),
    ]
