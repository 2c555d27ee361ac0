"""Every change the ledger makes tells the event stream, in its own transaction."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from ledger import audit, events, services, tasks
from ledger.db import transaction
from ledger.events import Stream, Subscription
from ledger.models import Event, OutboxItem, TaskOccurrence
from rules.catalog import load_catalog
from rules.tasks import load_tasks
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, only_finding, scan

CATALOG = load_catalog()


def told(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Event.kind).order_by(Event.occurred_at, Event.id)))


def stream(sessions: sessionmaker[Session]) -> None:
    events.use_stream(sessions, Stream(sinks=(Subscription(sink="webhook"),), rules=CATALOG.rule))


def test_a_findings_life_is_told_event_by_event(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    stream(sessions)
    seen: list[str] = []

    def step() -> list[str]:
        """The events told since the last step (the same instant's in any order: sorted)."""
        now = told(sessions)
        new = list(now)
        for k in seen:
            new.remove(k)
        seen[:] = now
        return sorted(new)

    scan(sessions, clock, [obs("vol-1", severity="critical")])
    assert step() == ["finding.created", "scan.finished", "scan.started"]
    # The same failure with a new detail; a person's actions; the failure back; the fix.
    scan(sessions, clock, [dataclasses.replace(obs("vol-1", severity="critical"), detail="x: 1")])
    assert step() == ["finding.detail_changed", "scan.finished", "scan.started"]
    finding = only_finding(sessions)
    with transaction(sessions) as session:
        services.claim(session=session, finding_id=finding.id, user="alice", now=clock())
    assert step() == ["finding.claimed"]
    with transaction(sessions) as session:
        services.resolve(session=session, finding_id=finding.id, user="alice", now=clock())
    assert step() == ["finding.resolved"]
    again = dataclasses.replace(obs("vol-1", severity="critical"), detail="x: 1")
    scan(sessions, clock, [again])
    assert step() == ["finding.reopened", "scan.finished", "scan.started"]
    scan(sessions, clock, [obs("vol-1", verdict="pass")])
    assert step() == ["finding.resolved", "scan.finished", "scan.started"]
    with sessions() as session:
        items = session.scalars(select(OutboxItem).where(OutboxItem.sink == "webhook")).all()
    assert len(items) == len(told(sessions))  # one delivery per event, for the one sink


def test_a_rolled_back_change_tells_nothing(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    stream(sessions)
    scan(sessions, clock, [obs("vol-1")])
    before = told(sessions)
    finding = only_finding(sessions)
    session = sessions()
    services.claim(session=session, finding_id=finding.id, user="alice", now=clock())
    session.rollback()
    session.close()
    assert told(sessions) == before


def test_without_a_stream_nothing_is_stored(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    scan(sessions, clock, [obs("vol-1")])
    assert told(sessions) == []


def test_task_events_are_told(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    stream(sessions)
    book = load_tasks(frameworks=CATALOG.frameworks)
    task = book.tasks["access_review_weekly"]
    with transaction(sessions) as session:
        tasks.materialize(
            session=session,
            tasks=[task],
            clock=tasks.CalendarClock(),
            now=clock(),
            horizon=timedelta(days=8),
        )
    with sessions() as session:
        occurrence_id = session.scalars(select(TaskOccurrence.id)).first()
    assert occurrence_id is not None
    with transaction(sessions) as session:
        tasks.reassign(
            session=session, occurrence_id=occurrence_id, user="alice", to="U0BOB0001", now=clock()
        )
    assert told(sessions) == ["task.reassigned"]
    with transaction(sessions) as session:
        tasks.complete(
            session=session,
            occurrence_id=occurrence_id,
            task=task,
            user="U0BOB0001",
            now=clock(),
            note="removed 2 stale accounts",
        )
    assert sorted(told(sessions)) == ["task.completed", "task.reassigned"]
    with sessions() as session:
        done = session.scalars(select(Event).where(Event.kind == "task.completed")).one()
    assert set(done.frameworks) == {"hipaa", "soc2"}


def test_a_broken_chain_is_told_once(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    stream(sessions)
    scan(sessions, clock, [obs("vol-1")])
    engine = sessions.kw["bind"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE chain_seq = 1"))
    for _ in range(2):  # two nights: one event
        with transaction(sessions) as session:
            audit.nightly_check(session=session, key=None, now=clock(), channel=None)
    assert told(sessions).count("audit.chain_broken") == 1
