"""The compliance calendar: occurrences, reminders at their lead times, escalation, snooze,
completion with evidence, delivery to Slack and the ICS feed. The clock is injected."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from icalendar import Calendar
from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from bot.ics import feed_url
from bot.reminders import ReminderSweep, TaskBook, check_calendar, evidence_store
from bot.server import build_asgi, build_services
from bot.settings import Settings
from bot.slack.delivery import SlackDelivery
from bot.slack.task_blocks import tasks_list_blocks, when
from ledger import tasks as occurrences
from ledger.db import transaction
from ledger.models import Finding, OutboxItem, TaskOccurrence
from ledger.services import LedgerError
from ledger.tasks import CalendarClock, EvidenceTooLargeError, store_evidence_file
from rules.catalog import load_catalog
from rules.tasks import load_tasks
from tests.conftest import FakeClock
from tests.fakes.asgi import running
from tests.fakes.slack import FakeSlack
from tests.ledger.helpers import obs, scan

CATALOG = load_catalog()
OWNER, CHANNEL, MANAGER = "U0OWNER", "C0TASKS", "C0MANAGER"

TASK = """\
id: firewall_review
title: Review the firewall rules
policy: Configuration Management
description: Look at every rule.
procedure: Export, compare, fix.
controls:
  soc2: [CC6.6]
recurrence: FREQ=MONTHLY;BYMONTHDAY=15
start: 2026-01-15
owner: {owner}
channel: {channel}
reminders: [7d, 1d, due]
evidence: {evidence}
"""


def task_dir(
    root: Path, n: int = 1, *, evidence: str = "note", owner: str = OWNER, channel: str = CHANNEL
) -> Path:
    """A user task directory with `n` copies of the monthly task (ids firewall_review...)."""
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        task_id = "firewall_review" + (f"_{i}" if i else "")
        text = TASK.format(owner=owner, channel=channel, evidence=evidence).replace(
            "id: firewall_review", f"id: {task_id}"
        )
        (root / "tasks" / f"{task_id}.yaml").write_text(text)
    return root


def settings_for(root: Path, **calendar: Any) -> Settings:
    """The calendar on, with only the user's tasks (the built-ins disabled)."""
    builtin = sorted(load_tasks(frameworks=CATALOG.frameworks).tasks)
    values: dict[str, Any] = {
        "enabled": True,
        "timezone": "Europe/Berlin",
        "paths": [str(root)],
        "disabled": builtin,
        "escalation": {"to": MANAGER, "after_days": 2, "every_days": 2},
        "horizon_days": 60,
        **calendar,
    }
    return Settings.model_validate({"calendar": values})


def book_for(settings: Settings) -> TaskBook:
    """The task book as `serve` builds it."""
    calendar = settings.calendar
    tasks = load_tasks(
        frameworks=CATALOG.frameworks, extra_paths=calendar.paths, disabled=calendar.disabled
    )
    return TaskBook(tasks=tasks, calendar=calendar, frameworks=CATALOG.frameworks)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """One monthly task (due on the 15th, 09:00 Berlin) owned by a user, with a channel."""
    return task_dir(tmp_path / "mytasks")


def sweep_for(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock, **calendar: Any
) -> ReminderSweep:
    """The reminder sweep over the user's tasks."""
    settings = settings_for(root, **calendar)
    book = book_for(settings)
    return ReminderSweep(
        tasks=book.tasks, calendar=settings.calendar, sessions=sessions, clock=clock
    )


def recorded(sessions: sessionmaker[Session]) -> list[str]:
    """Outbox keys recorded by sweeps, in order."""
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxItem.key)
                .where(OutboxItem.kind.in_(["task_remind", "task_escalate"]))
                .order_by(OutboxItem.id)
            )
        )


def occurrence(sessions: sessionmaker[Session], day: str) -> TaskOccurrence:
    """The occurrence due on a date."""
    with sessions() as session:
        found = session.scalar(
            select(TaskOccurrence).where(
                TaskOccurrence.due_on == datetime.fromisoformat(day).date()
            )
        )
        assert found is not None
        return found


def test_reminders_go_out_at_each_lead_time_once(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """7 days, 1 day and due: to the owner's DM and the channel, once each, however often swept."""
    clock.now = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # due 2026-12-15 08:00 UTC (09:00 CET)
    sweep = sweep_for(root, sessions, clock)

    first = sweep.run_once()
    quiet = recorded(sessions)
    clock.now = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)  # exactly 7 days before
    sweep.run_once()
    sweep.run_once()
    week = recorded(sessions)
    clock.now = datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    sweep.run_once()
    clock.now = datetime(2026, 12, 15, 8, 0, tzinfo=UTC)
    sweep.run_once()

    occ = occurrence(sessions, "2026-12-15").id
    assert first["occurrences"] == 2  # 2026-12-15 and 2027-01-15 within 60 days
    assert quiet == []
    assert week == [
        f"calendar:remind:{occ}:lead604800:{OWNER}",
        f"calendar:remind:{occ}:lead604800:{CHANNEL}",
    ]
    assert recorded(sessions)[2:] == [
        f"calendar:remind:{occ}:lead86400:{OWNER}",
        f"calendar:remind:{occ}:lead86400:{CHANNEL}",
        f"calendar:remind:{occ}:lead0:{OWNER}",
        f"calendar:remind:{occ}:lead0:{CHANNEL}",
    ]


def test_after_downtime_only_the_latest_reminder_goes_out(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Down from 10 days before to 12 hours before: the 1-day reminder, not a burst."""
    clock.now = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    sweep = sweep_for(root, sessions, clock)
    sweep.run_once()

    clock.now = datetime(2026, 12, 14, 20, 0, tzinfo=UTC)
    sweep.run_once()

    assert [k.split(":")[3] for k in recorded(sessions)] == ["lead86400", "lead86400"]


def test_overdue_occurrences_escalate_on_a_cadence(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Escalated to the manager 2 days after the due date, then every 2 days; never twice."""
    clock.now = datetime(2026, 12, 15, 8, 0, tzinfo=UTC)
    sweep = sweep_for(root, sessions, clock)
    sweep.run_once()
    occ = occurrence(sessions, "2026-12-15").id

    escalated = []
    for day in (16, 17, 18, 19, 20, 21):
        clock.now = datetime(2026, 12, day, 9, 0, tzinfo=UTC)
        sweep.run_once()
        sweep.run_once()
        escalated.append(len([k for k in recorded(sessions) if ":escalate:" in k]))

    assert escalated == [0, 1, 1, 2, 2, 3]
    assert f"calendar:escalate:{occ}:0" in recorded(sessions)


BERLIN = CalendarClock("Europe/Berlin", time(9, 0))  # as settings_for sets the calendar


def test_four_hours_past_due_is_overdue_for_the_escalation_the_feed_and_completion(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Due today at 09:00 (Berlin), now 13:00: escalated at once (after_days 0), the feed
    says "overdue since 09:00 today" (not "due today"), and completing it now is late."""
    clock.now = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
    escalation = {"to": MANAGER, "after_days": 0, "every_days": 2}
    token = "a-feed-token-long-enough-for-any-minimum-0123456789"
    sweep = sweep_for(root, sessions, clock, escalation=escalation)
    sweep.run_once()
    occ = occurrence(sessions, "2026-12-15").id
    services = build_services(
        settings=settings_for(root, escalation=escalation, feed_token=token),
        catalog=CATALOG,
        engine=sessions.kw["bind"],
        clock=clock,
    )
    asgi = build_asgi(
        app=None,
        services=services,
        engine=sessions.kw["bind"],
        executor=ThreadPoolExecutor(max_workers=1),
    )

    with running(asgi) as url, httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        answer = http.get("/calendar.ics", params={"token": token})
    with transaction(sessions) as session:
        done = occurrences.complete(
            session=session,
            occurrence_id=occ,
            task=sweep.tasks.tasks["firewall_review"],
            user="alice",
            now=clock(),
            note="reviewed",
        )
        on_time = done.on_time

    event = Calendar.from_ical(answer.content).walk("VEVENT")[0]
    assert f"calendar:escalate:{occ}:0" in recorded(sessions)
    assert str(event["description"]).startswith(
        "Configuration Management: overdue since 09:00 today"
    )
    assert on_time is False


@given(minutes=st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60))
@example(minutes=0)
@example(minutes=1)
@example(minutes=4 * 60)
@example(minutes=-1)
def test_overdue_has_one_meaning_in_every_view(minutes: int) -> None:
    """However far from the due instant: a reminder, `/compliance tasks`, `tasks list`, the
    App Home and the feed call it overdue exactly when the escalation would and a completion
    would be late."""
    settings, book = _escalating_at_once()
    due_at = BERLIN.due_at(date(2026, 12, 15))
    now = due_at + timedelta(minutes=minutes)
    row = TaskOccurrence(
        id=7, task_id="firewall_review", due_on=date(2026, 12, 15), due_at=due_at, status="open"
    )
    sweep = ReminderSweep(
        tasks=book.tasks, calendar=settings.calendar, sessions=sessionmaker(), clock=lambda: now
    )

    view = book.view(row, now)
    assert view is not None
    listed = json.dumps(tasks_list_blocks([view], horizon_days=30))

    late = occurrences.past_due(due_at, now)
    assert view.overdue is late
    assert (sweep._round(due_at, now) >= 0) is late
    assert when(view).startswith("overdue") is late
    assert ("(1 overdue" in listed) is late
    assert (":red_circle:" in listed) is late
    if not late and view.days_left == 0:
        assert when(view) == "due today"


@functools.cache
def _escalating_at_once() -> tuple[Settings, TaskBook]:
    """The monthly task, escalated as soon as it is overdue; loaded once for the examples."""
    where = Path(tempfile.mkdtemp(prefix="one-task-"))
    atexit.register(shutil.rmtree, where, True)
    settings = settings_for(
        task_dir(where), escalation={"to": MANAGER, "after_days": 0, "every_days": 1}
    )
    return settings, book_for(settings)


def test_a_snoozed_occurrence_is_quiet_until_the_date_then_reminded_once(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Snoozed after the 7-day reminder until the 11th: nothing meanwhile, one reminder when
    the snooze ends (at the calendar's due time that day)."""
    clock.now = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    sweep = sweep_for(root, sessions, clock)
    sweep.run_once()
    occ = occurrence(sessions, "2026-12-15").id
    with transaction(sessions) as session:
        occurrences.snooze(
            session=session,
            occurrence_id=occ,
            user=OWNER,
            until=date(2026, 12, 11),
            clock=BERLIN,
            now=clock(),
            max_days=14,
        )
    before = len(recorded(sessions))
    until = datetime(2026, 12, 11, 8, 0, tzinfo=UTC)  # 09:00 in Berlin

    clock.now = until - timedelta(minutes=1)
    sweep.run_once()
    during = len(recorded(sessions))
    clock.now = until
    sweep.run_once()
    sweep.run_once()

    assert occurrence(sessions, "2026-12-15").snoozed_until == until
    assert during == before
    assert recorded(sessions)[before:] == [
        f"calendar:remind:{occ}:snooze{int(until.timestamp())}:{OWNER}",
        f"calendar:remind:{occ}:snooze{int(until.timestamp())}:{CHANNEL}",
    ]


def test_a_snooze_is_limited_and_must_be_in_the_future(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Past the configured maximum, today or in the past: refused with the reason."""
    clock.now = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    sweep_for(root, sessions, clock).run_once()
    occ = occurrence(sessions, "2026-12-15").id
    errors = {}

    for name, day in (("too far", 38), ("today", 8), ("past", 7)):
        with transaction(sessions) as session, pytest.raises(LedgerError) as refused:
            occurrences.snooze(
                session=session,
                occurrence_id=occ,
                user=OWNER,
                until=date(2026, 12, 8) + timedelta(days=day - 8),
                clock=BERLIN,
                now=clock(),
                max_days=14,
            )
        errors[name] = str(refused.value)

    assert errors == {
        "too far": "a task can be snoozed for at most 14 days (until 2026-12-22)",
        "today": "the snooze date 2026-12-08 must be in the future (after 2026-12-08)",
        "past": "the snooze date 2026-12-07 must be in the future (after 2026-12-08)",
    }
    assert occurrence(sessions, "2026-12-15").snoozed_until is None


@given(
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    max_days=st.integers(min_value=1, max_value=365),
)
@example(minute=7 * 60, max_days=14)  # 07:00 in Berlin, before the 09:00 due time
@example(minute=20 * 60, max_days=14)  # after it
@example(minute=0, max_days=1)
@example(minute=24 * 60 - 1, max_days=1)
def test_the_snooze_limit_is_in_calendar_days_whatever_the_time_of_day(
    minute: int, max_days: int
) -> None:
    """Today + max_snooze_days is accepted and one day more refused, at any time of the day:
    before the due time as after it (the limit is counted in the calendar's days)."""
    now = (datetime(2026, 12, 8, tzinfo=BERLIN.zone) + timedelta(minutes=minute)).astimezone(UTC)
    sessions, occ = _scratch_occurrence()
    results = []
    for extra in (0, 1):
        until = date(2026, 12, 8) + timedelta(days=max_days + extra)
        try:
            with transaction(sessions) as session:
                occurrences.snooze(
                    session=session,
                    occurrence_id=occ,
                    user=OWNER,
                    until=until,
                    clock=BERLIN,
                    now=now,
                    max_days=max_days,
                )
            results.append("kept")
        except LedgerError as exc:
            results.append(str(exc))

    last = date(2026, 12, 8) + timedelta(days=max_days)
    assert results == ["kept", f"a task can be snoozed for at most {max_days} days (until {last})"]


@functools.cache
def _scratch_occurrence() -> tuple[sessionmaker[Session], int]:
    """One open occurrence (due 2027-06-01) in a migrated SQLite ledger made once per run:
    a property test's examples share it (migrating per example would take seconds)."""
    from ledger import db

    where = Path(tempfile.mkdtemp(prefix="snooze-"))
    atexit.register(shutil.rmtree, where, True)
    engine = db.make_engine(f"sqlite:///{where / 'ledger.db'}")
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with transaction(sessions) as session:
        row = TaskOccurrence(
            task_id="firewall_review",
            due_on=date(2027, 6, 1),
            due_at=BERLIN.due_at(date(2027, 6, 1)),
            status="open",
            escalations=0,
            created_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
        session.add(row)
        session.flush()
        occ = row.id
    return sessions, occ


def test_completing_needs_the_evidence_the_task_asks_for(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """note / link / file tasks refuse completion without theirs; done is done once."""
    clock.now = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    results = {}
    for evidence in ("note", "link", "file"):
        root = task_dir(tmp_path / evidence, evidence=evidence)
        sweep = sweep_for(root, sessions, clock)
        task = sweep.tasks.tasks["firewall_review"]
        sweep.run_once()
        occ = occurrence(sessions, "2026-12-15").id
        with transaction(sessions) as session, pytest.raises(LedgerError) as refused:
            occurrences.complete(
                session=session, occurrence_id=occ, task=task, user="alice", now=clock()
            )
        results[evidence] = str(refused.value)
        with transaction(sessions) as session:
            session.query(TaskOccurrence).delete()

    assert results == {
        "note": "this task needs a note saying what was done",
        "link": "this task needs a link to the evidence (a document, a ticket, a report)",
        "file": "this task needs a file as evidence (an export, a report, a screenshot)",
    }


def test_completion_records_who_when_evidence_and_timeliness(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Done after the due instant is late; the file is kept by SHA-256; a second done fails."""
    root = task_dir(tmp_path / "t", evidence="file")
    clock.now = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    sweep = sweep_for(root, sessions, clock)
    sweep.run_once()
    task = sweep.tasks.tasks["firewall_review"]
    occ = occurrence(sessions, "2026-12-15").id
    kept = store_evidence_file(tmp_path / "evidence", "export.csv", [b"user,access\n"])
    clock.now = datetime(2026, 12, 15, 9, 0, tzinfo=UTC)  # an hour late

    with transaction(sessions) as session:
        occurrences.complete(
            session=session, occurrence_id=occ, task=task, user="alice", now=clock(), file=kept
        )
    with transaction(sessions) as session, pytest.raises(LedgerError) as again:
        occurrences.complete(
            session=session, occurrence_id=occ, task=task, user="bob", now=clock(), file=kept
        )
    clock.advance(days=1)
    sweep.run_once()

    done = occurrence(sessions, "2026-12-15")
    assert (done.status, done.completed_by, done.on_time) == ("done", "alice", False)
    assert done.evidence_sha256 == kept.sha256
    assert Path(kept.location).read_bytes() == b"user,access\n"
    assert "already completed by alice" in str(again.value)
    assert not [k for k in recorded(sessions) if ":escalate:" in k]


def test_a_sweep_issues_the_same_queries_for_ten_or_two_hundred_tasks(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Constant queries: not one per task nor per occurrence."""
    clock.now = datetime(2026, 12, 15, 8, 0, tzinfo=UTC)
    counts = []
    for n in (10, 200):
        root = task_dir(tmp_path / f"n{n}", n)
        sweep = sweep_for(root, sessions, clock)
        engine = sessions.kw["bind"]
        statements: list[str] = []

        def count(*args: Any, log: list[str] = statements) -> None:
            log.append(str(args[2])[:40])

        event.listen(engine, "before_cursor_execute", count)
        try:
            sweep.run_once()
        finally:
            event.remove(engine, "before_cursor_execute", count)
        counts.append(len(statements))

    assert counts[0] == counts[1]


# ---- Slack and the feed -------------------------------------------------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1."""
    with FakeSlack() as fake:
        yield fake


def test_reminders_reach_the_owners_dm_and_the_channel_with_buttons(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock, fake_slack: FakeSlack
) -> None:
    """The Slack worker posts each recorded reminder: the DM via conversations.open."""
    settings = settings_for(root).model_copy(
        update={
            "slack": Settings.model_validate(
                {
                    "slack": {
                        "enabled": True,
                        "api_url": fake_slack.base_url,
                        "bot_token": "xoxb-test",
                        "signing_secret": "s",
                        "channel": "C0FINDINGS",
                        "max_retries": 0,
                    }
                }
            ).slack
        }
    )
    services = build_services(
        settings=settings, catalog=CATALOG, engine=sessions.kw["bind"], clock=clock
    )
    assert isinstance(services.delivery, SlackDelivery)
    clock.now = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    sweep_for(root, sessions, clock).run_once()

    services.delivery.run_once()
    services.delivery.run_once()

    dm = fake_slack.messages[fake_slack.dm_channel(OWNER)]
    channel = fake_slack.messages[CHANNEL]
    assert len(dm) == len(channel) == 1
    assert channel[0]["text"] == "Review the firewall rules: due in 7 days (2026-12-15)"
    actions = next(b for b in channel[0]["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [
        "task.done",
        "task.snooze",
        "task.reassign",
    ]


def test_the_calendar_feed_parses_back_with_tasks_and_remediation_due_dates(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """GET /calendar.ics?token=: all-day events for occurrences and open findings' SLAs."""
    clock.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    scan(sessions, clock, [obs("vol-1", severity="high")])
    settings = settings_for(root, feed_token="feed-secret")
    services = build_services(
        settings=settings, catalog=CATALOG, engine=sessions.kw["bind"], clock=clock
    )
    sweep_for(root, sessions, clock).run_once()
    asgi = build_asgi(
        app=None,
        services=services,
        engine=sessions.kw["bind"],
        executor=ThreadPoolExecutor(max_workers=1),
    )

    with running(asgi) as url, httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        wrong = http.get("/calendar.ics", params={"token": "guess"})
        answer = http.get("/calendar.ics", params={"token": "feed-secret"})

    with sessions() as session:
        finding = session.scalar(select(Finding))
    assert finding is not None
    events = {str(e["uid"]): e for e in Calendar.from_ical(answer.content).walk("VEVENT")}
    assert wrong.status_code == 401
    assert answer.headers["content-type"].startswith("text/calendar")
    task_events = [e for uid, e in events.items() if uid.startswith("task-")]
    assert [str(e["summary"]) for e in task_events] == ["Review the firewall rules"] * 2
    assert sorted(e.decoded("dtstart").isoformat() for e in task_events) == [
        "2026-11-15",
        "2026-12-15",
    ]
    fix = events[f"finding-{finding.id}@compliancebot"]
    assert fix.decoded("dtstart").isoformat() == "2026-12-01"  # high: 30 days after first seen
    assert str(fix["summary"]).startswith("Fix [HIGH] EBS volumes are encrypted at rest")


def test_evidence_can_be_kept_in_s3_with_its_checksum(moto_world: None) -> None:
    """calendar.evidence_bucket: the file goes to s3://bucket/prefix/<sha256>/<name>."""
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="acme-evidence")
    settings = Settings.model_validate(
        {"calendar": {"evidence_bucket": "s3://acme-evidence/compliance"}}
    )
    content = b"training completion report"

    kept = evidence_store(settings)("report.pdf", [content[:8], content[8:]])

    digest = hashlib.sha256(content).hexdigest()
    assert kept.location == f"s3://acme-evidence/compliance/{digest}/report.pdf"
    stored = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket="acme-evidence", Key=f"compliance/{digest}/report.pdf"
    )
    assert stored["Body"].read() == content
    assert stored["ServerSideEncryption"] == "AES256"


MB = 1024 * 1024


def chunks(total: int, *, fail_after: int | None = None) -> Iterator[bytes]:
    """`total` bytes in 256 KB chunks, as a download arrives; a broken connection after
    `fail_after` bytes."""
    sent = 0
    while sent < total:
        if fail_after is not None and sent >= fail_after:
            raise httpx.ReadError("connection reset")
        piece = min(256 * 1024, total - sent)
        sent += piece
        yield b"e" * piece


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (lambda: chunks(3 * MB), "report.bin is over 1 MB, the most an evidence file may be"),
        (lambda: chunks(MB, fail_after=512 * 1024), "connection reset"),
    ],
    ids=["oversized", "broken"],
)
def test_an_oversized_or_broken_evidence_stream_leaves_no_file(
    tmp_path: Path, stream: Any, error: str
) -> None:
    """calendar.max_evidence_mb 1: a 3 MB stream stops past 1 MB, a broken one stops where it
    broke; either way evidence_dir holds nothing, not even a partial file."""
    settings = Settings.model_validate(
        {"calendar": {"evidence_dir": str(tmp_path / "evidence"), "max_evidence_mb": 1}}
    )

    with pytest.raises((EvidenceTooLargeError, httpx.ReadError)) as caught:
        evidence_store(settings)("report.bin", stream())

    assert error in str(caught.value)
    assert [p for p in (tmp_path / "evidence").rglob("*") if p.is_file()] == []


def test_an_oversized_evidence_stream_puts_nothing_in_s3(moto_world: None) -> None:
    """calendar.evidence_bucket with max_evidence_mb 1: a 3 MB stream is refused, the bucket
    stays empty."""
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="acme-evidence")
    settings = Settings.model_validate(
        {"calendar": {"evidence_bucket": "s3://acme-evidence/c", "max_evidence_mb": 1}}
    )

    with pytest.raises(EvidenceTooLargeError):
        evidence_store(settings)("big.bin", chunks(3 * MB))

    assert s3.list_objects_v2(Bucket="acme-evidence").get("KeyCount") == 0


@given(name=st.text(max_size=300), content=st.binary(max_size=64))
@example(name="\U0001f600" * 120 + ".pdf", content=b"wide")
@example(name="../../..", content=b"up")
def test_any_evidence_file_name_stays_inside_its_hash_folder(name: str, content: bytes) -> None:
    """Whatever an uploader calls the file ('..', '/etc/passwd', 'a\\b', control characters,
    300 wide characters), it is kept as evidence_dir/<sha256>/<one short name> with its bytes."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "evidence"

        kept = store_evidence_file(root, name, [content])

        where = Path(kept.location)
        assert where.parent == root / hashlib.sha256(content).hexdigest()
        assert where.read_bytes() == content
        assert where.name not in ("", ".", "..")
        assert len(where.name.encode()) <= 200
        assert sorted(p for p in root.rglob("*") if p.is_file()) == [where]


def test_an_evidence_bucket_that_is_not_an_s3_url_is_refused() -> None:
    """A bucket given without s3:// is a configuration error naming the key."""
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"calendar": {"evidence_bucket": "acme-evidence"}})

    assert "calendar.evidence_bucket" in str(caught.value)


def test_a_users_own_feed_has_only_their_tasks_and_claims(
    root: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """?user=&token=: that user's occurrences and claimed findings; their token is theirs."""
    clock.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    scan(sessions, clock, [obs("vol-1", severity="high"), obs("vol-2", severity="high")])
    with transaction(sessions) as session:
        mine, theirs = session.scalars(select(Finding).order_by(Finding.id)).all()
        mine.assignee, theirs.assignee = OWNER, "U0OTHER"
    settings = settings_for(root, feed_token="feed-secret")
    services = build_services(
        settings=settings, catalog=CATALOG, engine=sessions.kw["bind"], clock=clock
    )
    sweep_for(root, sessions, clock).run_once()
    asgi = build_asgi(
        app=None,
        services=services,
        engine=sessions.kw["bind"],
        executor=ThreadPoolExecutor(max_workers=1),
    )
    own = urlsplit(feed_url("https://bot.example.com", "feed-secret", OWNER))
    other = feed_url("https://bot.example.com", "feed-secret", "U0OTHER")

    with running(asgi) as url, httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        owner_feed = http.get(f"{own.path}?{own.query}")
        borrowed = http.get(
            "/calendar.ics",
            params={"user": "U0OTHER", "token": dict(parse_qsl(own.query))["token"]},
        )
        other_feed = http.get("/calendar.ics?" + urlsplit(other).query)

    def uids(response: httpx.Response) -> list[str]:
        return sorted(str(e["uid"]) for e in Calendar.from_ical(response.content).walk("VEVENT"))

    assert borrowed.status_code == 401
    assert [u.split("-")[0] for u in uids(owner_feed)] == ["finding", "task", "task"]
    assert f"finding-{mine.id}@compliancebot" in uids(owner_feed)
    assert uids(other_feed) == [f"finding-{theirs.id}@compliancebot"]


# ---- what `config check` and `serve` refuse ------------------------------------------------


def test_calendar_problems_are_each_one_line_at_the_owner_line(tmp_path: Path) -> None:
    """An unmapped owner role and a group owner with no channel anywhere: each problem is one
    line, file:10: owner: what is wrong (the task's owner line)."""
    root = tmp_path / "mytasks"
    (root / "tasks").mkdir(parents=True)
    for task_id, owner in (("auditor_review", "auditors"), ("group_review", "S0OPS")):
        text = TASK.format(owner=owner, channel="", evidence="note")
        text = text.replace("id: firewall_review", f"id: {task_id}").replace("channel: \n", "")
        (root / "tasks" / f"{task_id}.yaml").write_text(text)
    settings = settings_for(root, owners={"it": "U0123ABCD"})

    problems = check_calendar(book_for(settings).tasks, settings.calendar)

    assert problems == [
        f"{root / 'tasks' / 'auditor_review.yaml'}:10: owner: owner role 'auditors' is not in "
        "calendar.owners (defined: it)",
        f"{root / 'tasks' / 'group_review.yaml'}:10: owner: the owner S0OPS is a user group, "
        "and neither the task (channel) nor calendar.channel names a channel to remind it in",
    ]
