"""The event stream: recorded in the change's transaction, routed by each sink's filter, never
twice for the same event and sink, and finding events in the same OCSF as `--format ocsf`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.output import ocsf_event as exported_ocsf_event
from ledger import events, outbox
from ledger.db import transaction
from ledger.events import NewEvent, Stream, Subscription
from ledger.models import Event, Finding, OutboxItem
from rules.catalog import Severity, load_catalog
from tests.conftest import FakeClock
from tests.ledger.helpers import RULE, obs, scan

ALL = Subscription(sink="webhook")


def _count(sessions: sessionmaker[Session], model: type[Event] | type[OutboxItem]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _items(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        return sorted(
            (i.sink, str(i.payload["event"])) for i in session.scalars(select(OutboxItem))
        )


def _event(kind: str = "scan.finished", **kw: object) -> NewEvent:
    from datetime import UTC, datetime

    values: dict[str, object] = {
        "kind": kind,
        "occurred_at": datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        "severity": "info",
        "body": {"schema": events.EVENT_SCHEMA, "kind": kind},
    }
    values.update(kw)
    return NewEvent(**values)  # type: ignore[arg-type]


def test_an_event_of_a_rolled_back_change_is_never_recorded_nor_sent(
    sessions: sessionmaker[Session],
) -> None:
    """The change fails after recording its event: no event, no outbox item survives."""

    def change_that_fails() -> None:
        with transaction(sessions) as session:
            events.record_many(session, [_event()], sinks=[ALL])
            raise RuntimeError("the change failed after recording its event")

    with pytest.raises(RuntimeError):
        change_that_fails()

    assert _count(sessions, Event) == 0
    assert _count(sessions, OutboxItem) == 0


def test_an_event_is_recorded_with_one_item_per_sink_keyed_by_its_id(
    sessions: sessionmaker[Session],
) -> None:
    """Committed: the event once, one outbox item for each sink, under sink and event id."""
    sinks = [ALL, Subscription(sink="splunk")]
    with transaction(sessions) as session:
        (event_id,) = events.record_many(session, [_event()], sinks=sinks)
    with transaction(sessions) as session:
        # The same event enqueued again (a retried recording) adds nothing.
        for sub in sinks:
            again = outbox.enqueue(
                session=session,
                sink=sub.sink,
                kind=events.OUTBOX_KIND,
                key=events.outbox_key(sub.sink, event_id),
                payload={"event": event_id},
                now=_event().occurred_at,
            )
            assert again is False

    assert _items(sessions) == [("splunk", event_id), ("webhook", event_id)]
    with sessions() as session:
        stored = events.get(session, event_id)
        assert stored is not None
        assert stored.body["id"] == event_id
        assert events.envelope(stored)["occurred_at"] == "2026-11-01T09:00:00Z"


@pytest.mark.parametrize(
    ("sub", "taken"),
    [
        (Subscription(sink="s"), {"a", "b", "c", "d"}),
        (Subscription(sink="s", kinds=frozenset({"finding.created"})), {"a", "b"}),
        (Subscription(sink="s", min_severity=Severity.high), {"a", "d"}),
        (Subscription(sink="s", frameworks=frozenset({"hipaa"})), {"a"}),
        (Subscription(sink="s", accounts=frozenset({"prod"})), {"a", "b"}),
        (
            Subscription(
                sink="s",
                kinds=frozenset({"finding.created"}),
                min_severity=Severity.critical,
                accounts=frozenset({"prod"}),
            ),
            {"a"},
        ),
    ],
)
def test_each_sink_gets_only_the_events_its_filter_takes(
    sessions: sessionmaker[Session], sub: Subscription, taken: set[str]
) -> None:
    """Kinds, a severity floor, frameworks and accounts: every filter given must match."""
    new = {
        "a": _event(
            "finding.created", severity="critical", frameworks=("hipaa", "soc2"), account="prod"
        ),
        "b": _event("finding.created", severity="low", frameworks=("soc2",), account="prod"),
        "c": _event("scan.finished", severity="info"),  # no account, no framework
        "d": _event("audit.chain_broken", severity="critical"),
    }
    with transaction(sessions) as session:
        ids = events.record_many(session, list(new.values()), sinks=[sub])
    by_id = dict(zip(ids, new, strict=True))

    assert {by_id[event_id] for _sink, event_id in _items(sessions)} == taken


def test_without_a_configured_stream_nothing_is_recorded(sessions: sessionmaker[Session]) -> None:
    """No sink enabled: recording is a no-op that stores nothing."""
    with transaction(sessions) as session:
        assert (
            events.record(
                session,
                kind="scan.started",
                occurred_at=_event().occurred_at,
                severity="info",
                body={},
            )
            is None
        )

    assert _count(sessions, Event) == 0


def test_unknown_kinds_and_severities_are_refused(sessions: sessionmaker[Session]) -> None:
    """A caller's typo in a kind or a severity is an error naming the valid ones."""
    with sessions() as session:
        with pytest.raises(events.UnknownKindError, match=r"finding\.created"):
            events.record_many(session, [_event("finding.creatd")], sinks=[ALL])
        with pytest.raises(ValueError, match="severe"):
            events.record_many(session, [_event(severity="severe")], sinks=[ALL])


def test_event_ids_are_unique_and_ordered_by_time() -> None:
    """Ids made later sort later; ten thousand made at once are all different."""
    from datetime import UTC, datetime, timedelta

    at = datetime(2026, 11, 1, tzinfo=UTC)
    many = {events.new_id(at) for _ in range(10_000)}
    assert len(many) == 10_000
    assert events.new_id(at) < events.new_id(at + timedelta(milliseconds=1))


def test_finding_events_carry_the_ocsf_compliance_finding_of_the_export(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A scan's new finding, recorded through the session's stream: the OCSF document is the
    one `findings --format ocsf` writes, with the event's id, kind and time."""
    catalog = load_catalog()
    scan(sessions, clock, [obs("vol-1", severity="critical", title="<b>x</b> & [y]")])
    # The stream from here on: the scan's own events (tests/ledger/test_event_wiring.py) aside.
    events.use_stream(sessions, Stream(sinks=(ALL,), rules=catalog.rule, product_version="9.9"))
    with transaction(sessions) as session:
        finding = session.scalars(select(Finding)).one()
        (event_id,) = events.record_findings(
            session, changes=[(finding.id, "finding.created")], now=clock(), actor="scanner"
        )
        exported = exported_ocsf_event(
            finding, catalog.rule(RULE), product_version="9.9", now=clock()
        )

    with sessions() as session:
        event = events.get(session, event_id)
        assert event is not None
        body = event.body
    assert event.body_schema == "ocsf/1.1.0/2003"
    assert event.severity == "critical"
    assert event.account == finding.account
    assert event.frameworks == sorted(catalog.rule(RULE).frameworks)  # type: ignore[union-attr]
    assert body["class_uid"] == 2003
    assert body["metadata"]["uid"] == event_id
    assert body["metadata"]["event_code"] == "finding.created"
    assert body["activity_id"] == 1
    assert body["time"] == int(clock().timestamp() * 1000)
    assert body["unmapped"]["actor"] == "scanner"
    for key in ("finding_info", "compliance", "resources", "cloud", "severity_id", "status"):
        assert body[key] == exported[key]
    assert _items(sessions) == [("webhook", event_id)]


def test_task_scan_and_audit_events_have_their_documented_shape(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A scan, a task occurrence and an audit break (recorded once however often it is found
    again): the JSON of docs/events.md."""
    from datetime import date

    from ledger import services
    from ledger.models import TaskOccurrence

    events.use_stream(sessions, Stream(sinks=(ALL,)))
    with transaction(sessions) as session:
        started = services.start_scan(session=session, now=clock(), trigger="cli", scope={})
        scan_id = events.record_scan(session, kind="scan.partial", scan=started, now=clock())
        occurrence = TaskOccurrence(
            task_id="access_review",
            due_on=date(2026, 11, 2),
            due_at=clock(),
            status="open",
            created_at=clock(),
        )
        session.add(occurrence)
        session.flush()
        task_id = events.record_task(
            session,
            kind="task.escalated",
            occurrence=occurrence,
            now=clock(),
            title="Quarterly access review",
            frameworks=["soc2"],
        )
        audit_id = events.record_audit_break(
            session,
            now=clock(),
            detail={"first_bad_seq": 7, "reason": "hash mismatch"},
            once="audit-break:7",
        )
    with transaction(sessions) as session:  # the same break, found again the next night
        again = events.record_audit_break(
            session, now=clock(), detail={"first_bad_seq": 7}, once="audit-break:7"
        )
    assert again is None

    with sessions() as session:
        got = {i: events.get(session, str(i)) for i in (scan_id, task_id, audit_id)}
    scan_event, task_event, audit_event = (got[scan_id], got[task_id], got[audit_id])
    assert scan_event is not None
    assert task_event is not None
    assert audit_event is not None
    assert scan_event.severity == "medium"
    assert scan_event.body["scan"]["scan_id"] == started.id
    assert scan_event.body["schema"] == "compliancebot.event/1"
    assert task_event.severity == "medium"
    assert task_event.frameworks == ["soc2"]
    assert task_event.body["task"]["task_id"] == "access_review"
    assert task_event.body["task"]["due_on"] == "2026-11-02"
    assert audit_event.severity == "critical"
    assert audit_event.body["audit"] == {"first_bad_seq": 7, "reason": "hash mismatch"}
    assert len(_items(sessions)) == 4  # and start_scan's own scan.started


def test_a_big_scan_records_its_findings_events_a_chunk_at_a_time(
    sessions: sessionmaker[Session], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven new findings read and recorded two at a time: seven events, in the given order,
    one outbox item each; an id that no longer exists is skipped."""
    monkeypatch.setattr(events, "CHUNK", 2)
    scan(sessions, clock, [obs(f"vol-{i}") for i in range(7)])
    events.use_stream(sessions, Stream(sinks=(ALL,)))  # the scan's own events aside
    with transaction(sessions) as session:
        found = session.scalars(select(Finding.id).order_by(Finding.id)).all()
        ids = events.record_findings(
            session,
            changes=[(f, "finding.created") for f in found] + [(999_999, "finding.created")],
            now=clock(),
        )

    assert len(ids) == 7
    with sessions() as session:
        subjects = [events.get(session, i).subject for i in ids]  # type: ignore[union-attr]
    assert subjects == [f"finding:{f}" for f in found]
    assert len(_items(sessions)) == 7
