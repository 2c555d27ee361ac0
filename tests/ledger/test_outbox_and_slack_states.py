"""The outbox and the Slack-facing lifecycle: snooze, re-check verdicts, re-render versions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker

from ledger import outbox
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import Base, OutboxStatus
from ledger.services import LedgerError
from tests.conftest import FakeClock
from tests.ledger.helpers import events, obs, only_finding, scan


def test_migrations_match_the_models(sessions: sessionmaker[Session]) -> None:
    """The migrated schema is exactly what the models declare: no change forgot its migration."""
    with sessions() as session:
        context = MigrationContext.configure(session.connection())
        assert compare_metadata(context, Base.metadata) == []


def test_outbox_records_an_intent_once(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """The same key recorded twice (two replicas, a retried job) is one item."""
    with transaction(sessions) as session:
        first = outbox.enqueue(
            session=session, sink="slack", kind="summary", key="k1", payload={"a": 1}, now=clock()
        )
        again = outbox.enqueue(
            session=session, sink="slack", kind="summary", key="k1", payload={"a": 2}, now=clock()
        )
    with sessions() as session:
        items = outbox.due(session=session, sink="slack", now=clock())
        assert (first, again, len(items), items[0].payload) == (True, False, 1, {"a": 1})


def test_outbox_backoff_and_retry_after(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """A failed attempt waits (longer each time, at least Retry-After) before it is due again."""
    with transaction(sessions) as session:
        outbox.enqueue(session=session, sink="slack", kind="x", key="k", payload={}, now=clock())
    with transaction(sessions) as session:
        item = outbox.due(session=session, sink="slack", now=clock())[0]
        outbox.retry_later(item=item, now=clock(), error="ratelimited", retry_after=120)
    with sessions() as session:
        assert outbox.due(session=session, sink="slack", now=clock() + timedelta(seconds=119)) == []
        assert (
            len(outbox.due(session=session, sink="slack", now=clock() + timedelta(seconds=121)))
            == 1
        )
    assert outbox.backoff(1) < outbox.backoff(3) <= outbox.backoff(30) == timedelta(minutes=15)


def test_failed_items_wait_for_a_retry_by_hand(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A permanent refusal is not retried until `slack retry` queues it again."""
    with transaction(sessions) as session:
        outbox.enqueue(session=session, sink="slack", kind="x", key="k", payload={}, now=clock())
    with transaction(sessions) as session:
        item = outbox.due(session=session, sink="slack", now=clock())[0]
        outbox.failed(item=item, now=clock(), error="channel_not_found")
    with transaction(sessions) as session:
        assert outbox.due(session=session, sink="slack", now=clock() + timedelta(days=1)) == []
        assert outbox.counts(session=session, sink="slack") == {OutboxStatus.failed: 1}
        assert outbox.retry_failed(session=session, sink="slack", now=clock()) == 1
    with sessions() as session:
        assert len(outbox.due(session=session, sink="slack", now=clock())) == 1


def test_every_visible_change_bumps_the_version(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Claim, resolve and a scan's reopen each bump the version; a plain rescan does not."""
    scan(sessions, clock, [obs("vol-1")])
    start = only_finding(sessions).version
    scan(sessions, clock, [obs("vol-1")])
    assert only_finding(sessions).version == start
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=only_finding(sessions).id, user="U1", now=clock())
    with transaction(sessions) as session:
        ledger.resolve(
            session=session, finding_id=only_finding(sessions).id, user="U1", now=clock()
        )
    scan(sessions, clock, [obs("vol-1")])
    assert only_finding(sessions).version == start + 3
    assert only_finding(sessions).status == "reopened"


@pytest.mark.parametrize(
    ("verdict", "status", "verification", "kind"),
    [
        ("fail", "claimed", "failed", "verification_failed"),
        ("pass", "resolved", "verified", "verified"),
        ("unknown", "resolved", "unverified", "verification_unknown"),
    ],
)
def test_recheck_verdicts(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    verdict: str,
    status: str,
    verification: str,
    kind: str,
) -> None:
    """A failing re-check puts a claimed finding back with its owner; others keep it resolved."""
    scan(sessions, clock, [obs("vol-1")])
    fid = only_finding(sessions).id
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=fid, user="U1", now=clock())
        ledger.resolve(session=session, finding_id=fid, user="U1", now=clock(), verify=True)
    with transaction(sessions) as session:
        ledger.verify_resolution(
            session=session, finding_id=fid, verdict=verdict, now=clock(), detail="d"
        )

    after = only_finding(sessions)
    assert (after.status, after.verification, after.assignee) == (status, verification, "U1")
    assert events(sessions, fid)[-1].kind == kind


def test_a_recheck_never_overrides_a_newer_decision(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """If the finding was reopened while the re-check ran, the re-check's answer is dropped."""
    scan(sessions, clock, [obs("vol-1")])
    fid = only_finding(sessions).id
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=fid, user="U1", now=clock(), verify=True)
        ledger.reopen(session=session, finding_id=fid, user="U2", now=clock())
    with transaction(sessions) as session:
        ledger.verify_resolution(
            session=session, finding_id=fid, verdict="pass", now=clock(), detail="d"
        )

    assert only_finding(sessions).status == "reopened"


def test_snooze_needs_a_future_date_and_an_active_finding(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Snoozing records who and until when; a past date or a resolved finding is refused."""
    scan(sessions, clock, [obs("vol-1")])
    fid = only_finding(sessions).id
    with (
        transaction(sessions) as session,
        pytest.raises(LedgerError, match="must be in the future"),
    ):
        ledger.snooze(session=session, finding_id=fid, user="U1", until=clock(), now=clock())
    with transaction(sessions) as session:
        ledger.snooze(
            session=session,
            finding_id=fid,
            user="U1",
            until=clock() + timedelta(days=3),
            now=clock(),
        )
    after = only_finding(sessions)
    assert (after.status, after.snoozed_by) == ("open", "U1")
    with transaction(sessions) as session:
        ledger.resolve(session=session, finding_id=fid, user="U1", now=clock())
    with transaction(sessions) as session, pytest.raises(LedgerError, match="cannot be snoozed"):
        ledger.snooze(
            session=session,
            finding_id=fid,
            user="U1",
            until=clock() + timedelta(days=3),
            now=clock(),
        )
