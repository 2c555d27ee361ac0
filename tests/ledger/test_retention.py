"""What the ledger forgets: delivered outbox items past the retention, old delivery records."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ledger import outbox
from ledger.db import transaction
from ledger.inbound import first_delivery
from ledger.models import OutboxItem, OutboxStatus, ProcessedEvent
from ledger.retention import prune
from tests.conftest import FakeClock


def test_prune_forgets_only_what_is_delivered_and_old(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Delivered 31 days ago goes with a 30-day retention; delivered yesterday, pending and
    failed items stay; delivery records go after a week, a fresh one stays and still stops a
    replay."""
    start = clock()
    with transaction(sessions) as session:
        for key in ("old-delivered", "new-delivered", "old-pending", "old-failed"):
            outbox.enqueue(
                session=session, sink="slack", kind="reply", key=key, payload={}, now=start
            )
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.key.in_(["old-delivered", "new-delivered"]))
            .values(status=OutboxStatus.delivered, delivered_at=start)
        )
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.key == "old-failed")
            .values(status=OutboxStatus.failed)
        )
    assert first_delivery(sessions=sessions, key="slack:old", source="slack", at=start)
    clock.advance(days=30)
    with transaction(sessions) as session:
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.key == "new-delivered")
            .values(delivered_at=clock() - timedelta(days=1))
        )
    assert first_delivery(sessions=sessions, key="slack:new", source="slack", at=clock())
    clock.advance(days=1)

    with transaction(sessions) as session:
        pruned = prune(session=session, now=clock(), outbox_days=30)

    with sessions() as session:
        items = sorted(session.scalars(select(OutboxItem.key)))
        events = sorted(session.scalars(select(ProcessedEvent.event_id)))
    assert pruned == {"outbox": 1, "events": 1}
    assert items == ["new-delivered", "old-failed", "old-pending"]
    assert events == ["slack:new"]
    assert not first_delivery(sessions=sessions, key="slack:new", source="slack", at=clock())
