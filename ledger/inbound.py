"""Inbound deliveries already handled: a Slack event or signed request, a tracker's change.

Each is recorded in `processed_events` under a bounded key, so a retry, a redelivery or a
replay is applied once. The retention job prunes the records after a week.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.models import ProcessedEvent


def delivery_key(source: str, raw: str) -> str:
    """`<source>:<sha256>`: ids a sender chooses are hashed, bounded in length and content."""
    return f"{source}:{hashlib.sha256(raw.encode()).hexdigest()}"


def seen(*, session: Session, keys: Iterable[str]) -> bool:
    """Whether any of these deliveries was recorded before."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return False
    found = session.scalar(
        select(ProcessedEvent.event_id).where(ProcessedEvent.event_id.in_(wanted)).limit(1)
    )
    return found is not None


def remember(*, session: Session, keys: Iterable[str], source: str, at: datetime) -> None:
    """Record deliveries in the caller's transaction, with the change they brought.

    A replica recording the same key first makes the commit fail on the primary key: the
    caller's change is rolled back with it, so it is applied once.
    """
    for key in dict.fromkeys(keys):
        if session.get(ProcessedEvent, key) is None:
            session.add(ProcessedEvent(event_id=key[:128], source=source[:32], at=at))


def is_duplicate(exc: IntegrityError) -> bool:
    """Whether a failed commit was another replica recording the same delivery first."""
    return ProcessedEvent.__tablename__ in str(exc.orig)


def first_delivery(*, sessions: sessionmaker[Session], key: str, source: str, at: datetime) -> bool:
    """Record `key` now; False when it was recorded before (a retry or a replay: do nothing)."""
    try:
        with transaction(sessions) as session:
            # Added unconditionally: the primary key, not a read first, decides who was first.
            session.add(ProcessedEvent(event_id=key[:128], source=source[:32], at=at))
    except IntegrityError:  # someone recorded it first, maybe concurrently
        return False
    return True
