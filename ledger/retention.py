"""What the ledger forgets, and when: delivered outbox items and handled inbound deliveries.

The audit trail is append-only: it leaves the database only through the verified archive
(ledger/archive.py), as do old finding events and scans; findings, tickets and task occurrences
are the record and stay.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete
from sqlalchemy.orm import Session

from ledger.models import OutboxItem, OutboxStatus, ProcessedEvent

# How long a handled delivery is remembered: far longer than Slack retries an event or takes
# a signed request (five minutes).
INBOUND_DAYS = 7


def prune(
    *, session: Session, now: datetime, outbox_days: int, inbound_days: int = INBOUND_DAYS
) -> dict[str, int]:
    """Delete outbox items delivered over `outbox_days` ago and inbound delivery records over
    `inbound_days` old; returns how many of each ("outbox", "events")."""
    items = _deleted(
        session,
        delete(OutboxItem).where(
            OutboxItem.status == OutboxStatus.delivered,
            OutboxItem.delivered_at < now - timedelta(days=outbox_days),
        ),
    )
    events = _deleted(
        session,
        delete(ProcessedEvent).where(ProcessedEvent.at < now - timedelta(days=inbound_days)),
    )
    return {"outbox": items, "events": events}


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE; how many rows it removed."""
    # A DELETE's result is a CursorResult (with rowcount); Session.execute declares a Result.
    return int(cast("CursorResult[Any]", session.execute(statement)).rowcount or 0)
